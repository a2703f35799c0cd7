# SPDX-License-Identifier: ISC
# authrelay - one plain GNU Makefile (see README.md).
#
#   make            build build/authrelay
#   make run        install what is missing, build, start the demo gateway
#   make check      install what is missing, build, run unit + integration tests
#   make asan       the same tests on an ASan+UBSan build (build-asan/)
#   make fuzz       build the libFuzzer targets and run each briefly
#   make ci         check + asan + fuzz (what .ci/run does)
#   make format-check
#   make man        the manual pages (build/man/), strictly: see below
#   make install    binary, sample config, man pages, systemd unit, sysusers.d
#                   and tmpfiles.d files under $(DESTDIR)$(PREFIX), the fail2ban
#                   filter and jail under $(DESTDIR)$(SYSCONFDIR)/fail2ban
#   make deb        the Debian package (../authrelay_*.deb, via debian/)
#
# CPPFLAGS, CFLAGS and LDFLAGS come from the environment when set (as
# dpkg-buildflags sets them, with their hardening flags), and reach every
# object and the link. Warnings are errors only where WERROR says so: in
# `make check`, asan, fuzz and CI, never in a packager's build.

VERSION  := 0.1.0
BUILD    ?= build
CC       ?= cc
PKGS     := libevent libevent_openssl libevent_pthreads openssl ldap libcares libseccomp hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -largon2 -lunistring -lpthread
WARN     := -Wall -Wextra -Wformat=2 -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
            -Wno-unused-parameter
WERROR   ?=
CPPFLAGS ?=
CFLAGS   ?= -O2 -g
SANFLAGS ?=
LDFLAGS  ?=
PYTHON   := /usr/bin/python3

# Where `make install` puts things. The configuration lives in
# $(SYSCONFDIR)/authrelay whatever the prefix (the daemon's default -c).
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/authrelay
SYSCONFDIR  ?= /etc
SYSTEMDDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DESTDIR     ?=

DEFS := -DAUTHRELAY_VERSION='"$(VERSION)"' -DAUTHRELAY_SYSCONFDIR='"$(SYSCONFDIR)"'
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE $(DEFS) $(WARN) $(WERROR) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) \
             $(PKG_CFLAGS) -MMD -MP
CHECK_FLAGS := WERROR=-Werror

# Every module lives in src/<part>/; src/main.c only dispatches sub-commands.
LIB_SRCS := $(sort $(wildcard src/*/*.c))
SRCS     := $(LIB_SRCS) src/main.c
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libauthrelay.a
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Helpers every unit test may use (tests/unit/support/ut_*.h): an archive too,
# so a test links only the helpers it calls and their OpenSSL or pthread needs.
UT_SRCS    := $(sort $(wildcard tests/unit/support/ut_*.c))
UT_OBJS    := $(UT_SRCS:%.c=$(BUILD)/%.o)
UT_A       := $(BUILD)/tests/libut.a
# Manual pages. authrelay.conf(5)'s key list is generated from the settings
# table (`authrelay show-config --reference=mdoc`) by scripts/man-keys.sh;
# a binary without that command gets a pointer to the README instead and a
# warning, except under `make man`, which fails on it.
MAN_PAGES  := $(BUILD)/man/authrelay.8 $(BUILD)/man/authrelay.conf.5
# `make deb` builds from a copy of the tree in DEB_DIR, where the package
# lands too (dpkg-buildpackage writes into the source's parent directory).
DEB_DIR    ?= $(BUILD)/deb

.PHONY: all deps run check unit integration asan fuzz ci format format-check clean bench \
        man man-check install deb

all: $(BUILD)/authrelay

$(BUILD)/authrelay: $(BUILD)/src/main.o $(LIB_A)
	$(CC) $(CFLAGS) $(SANFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# Tests link the archive, so each pulls in only the modules it uses.
$(LIB_A): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(UT_A): $(UT_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/unit/support/%.o: tests/unit/support/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(UT_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -Itests/unit $(LDFLAGS) -o $@ $< $(UT_A) $(LIB_A) $(PKG_LIBS) \
		-lcmocka

deps:
	@sh scripts/install-deps.sh

run: deps all
	@sh scripts/demo.sh $(BUILD)/authrelay

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/authrelay $(MAN_PAGES)
	AUTHRELAY_BIN=$(abspath $(BUILD)/authrelay) $(PYTHON) -m pytest -q -p no:cacheprovider \
		tests/integration $(PYTEST_ARGS)

check: deps
	@$(MAKE) --no-print-directory $(CHECK_FLAGS) all unit
	@$(MAKE) --no-print-directory $(CHECK_FLAGS) integration

asan:
	@$(MAKE) --no-print-directory $(CHECK_FLAGS) BUILD=build-asan \
		CFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit integration

fuzz:
	@$(MAKE) --no-print-directory -f fuzz/Makefile FUZZ_TIME=$${FUZZ_TIME:-30}

ci: format-check check asan fuzz

format:
	clang-format -i $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS) $(UT_SRCS) \
		$(wildcard tests/unit/support/*.h)

format-check:
	clang-format --dry-run --Werror $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS) $(UT_SRCS) \
		$(wildcard tests/unit/support/*.h)

bench:
	@sh bench/run.sh

MAN_SED := sed -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@VERSION@|$(VERSION)|g'

man: $(BUILD)/authrelay $(BUILD)/man/authrelay.8
	sh scripts/man-keys.sh --strict $(BUILD)/authrelay man/authrelay.conf.5.in \
		$(BUILD)/man/authrelay.conf.5.tmp
	$(MAN_SED) $(BUILD)/man/authrelay.conf.5.tmp > $(BUILD)/man/authrelay.conf.5
	rm -f $(BUILD)/man/authrelay.conf.5.tmp
	mandoc -Tlint -Wwarning $(MAN_PAGES)

$(BUILD)/man/authrelay.8: man/authrelay.8
	@mkdir -p $(dir $@)
	$(MAN_SED) $< > $@

$(BUILD)/man/authrelay.conf.5: man/authrelay.conf.5.in scripts/man-keys.sh $(BUILD)/authrelay
	@mkdir -p $(dir $@)
	sh scripts/man-keys.sh $(BUILD)/authrelay $< $@.tmp
	$(MAN_SED) $@.tmp > $@
	rm -f $@.tmp

$(BUILD)/authrelay.service: etc/authrelay.service.in
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

# The sample config is installed only where none exists: an admin's edited
# file is never overwritten (the Debian package has dpkg's conffile handling).
install: all $(MAN_PAGES) $(BUILD)/authrelay.service
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/authrelay \
		$(DESTDIR)$(SYSCONFDIR)/fail2ban/filter.d $(DESTDIR)$(SYSCONFDIR)/fail2ban/jail.d
	install -m 0755 $(BUILD)/authrelay $(DESTDIR)$(SBINDIR)/authrelay
	install -m 0644 $(BUILD)/man/authrelay.8 $(DESTDIR)$(MANDIR)/man8/authrelay.8
	install -m 0644 $(BUILD)/man/authrelay.conf.5 $(DESTDIR)$(MANDIR)/man5/authrelay.conf.5
	install -m 0644 $(BUILD)/authrelay.service $(DESTDIR)$(SYSTEMDDIR)/authrelay.service
	install -m 0644 etc/authrelay.sysusers $(DESTDIR)$(SYSUSERSDIR)/authrelay.conf
	install -m 0644 etc/authrelay.tmpfiles $(DESTDIR)$(TMPFILESDIR)/authrelay.conf
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 etc/authrelay.conf $(DESTDIR)$(DOCDIR)/authrelay.conf.example
	install -m 0644 etc/fail2ban/filter.d/authrelay.conf \
		$(DESTDIR)$(SYSCONFDIR)/fail2ban/filter.d/authrelay.conf
	install -m 0644 etc/fail2ban/jail.d/authrelay.conf \
		$(DESTDIR)$(SYSCONFDIR)/fail2ban/jail.d/authrelay.conf
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/authrelay/authrelay.conf ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/authrelay/authrelay.conf"; \
	else \
		echo "install -m 0644 etc/authrelay.conf $(DESTDIR)$(SYSCONFDIR)/authrelay/authrelay.conf"; \
		install -m 0644 etc/authrelay.conf $(DESTDIR)$(SYSCONFDIR)/authrelay/authrelay.conf; \
	fi

deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/authrelay-$(VERSION)
	tar -cf - --exclude=./.git --exclude='./build*' --exclude=./var . | \
		tar -C $(DEB_DIR)/authrelay-$(VERSION) -xf -
	cd $(DEB_DIR)/authrelay-$(VERSION) && dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb

clean:
	rm -rf build build-asan build-fuzz

-include $(OBJS:.o=.d) $(UT_OBJS:.o=.d) $(UNIT_BINS:=.d)
