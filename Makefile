# authrelay - one plain GNU Makefile (see README.md).
#
#   make            build build/authrelay
#   make run        install what is missing, build, start the demo gateway
#   make check      install what is missing, build, run unit + integration tests
#   make asan       the same tests on an ASan+UBSan build (build-asan/)
#   make fuzz       build the libFuzzer targets and run each briefly
#   make ci         check + asan + fuzz (what .ci/run does)
#   make format-check

BUILD    ?= build
CC       ?= cc
PKGS     := libevent libevent_openssl libevent_pthreads openssl ldap inih libcares
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -largon2 -lpthread
WARN     := -Wall -Wextra -Wformat=2 -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
            -Wno-unused-parameter -Werror
CFLAGS   ?= -O2 -g
SANFLAGS ?=
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS  ?=
PYTHON   := /usr/bin/python3

# Every module lives in src/<part>/; src/main.c only dispatches sub-commands.
LIB_SRCS := $(sort $(wildcard src/*/*.c))
SRCS     := $(LIB_SRCS) src/main.c
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libauthrelay.a
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run check unit integration asan fuzz ci format format-check clean bench

all: $(BUILD)/authrelay

$(BUILD)/authrelay: $(BUILD)/src/main.o $(LIB_A)
	$(CC) $(SANFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# Tests link the archive, so each pulls in only the modules it uses.
$(LIB_A): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(LIB_A) $(PKG_LIBS) -lcmocka

deps:
	@sh scripts/install-deps.sh

run: deps all
	@sh scripts/demo.sh $(BUILD)/authrelay

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/authrelay
	AUTHRELAY_BIN=$(abspath $(BUILD)/authrelay) $(PYTHON) -m pytest -q -p no:cacheprovider \
		tests/integration $(PYTEST_ARGS)

check: deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory integration

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit integration

fuzz:
	@$(MAKE) --no-print-directory -f fuzz/Makefile FUZZ_TIME=$${FUZZ_TIME:-30}

ci: format-check check asan fuzz

format:
	clang-format -i $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS)

format-check:
	clang-format --dry-run --Werror $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS)

bench:
	@sh bench/run.sh

clean:
	rm -rf build build-asan build-fuzz

-include $(OBJS:.o=.d)
