#!/bin/sh
# SPDX-License-Identifier: ISC
# add-spdx.sh - put "SPDX-License-Identifier: ISC" (see LICENSE) at the top
# of every source file git knows: *.c *.h as a C comment; *.py *.sh *.mk,
# Makefiles and other scripts with a #! line as a # comment, after the #!
# line. Idempotent: a file that names an SPDX licence in its first three
# lines is left alone, so it can be re-run after merging other branches.
#
#   sh scripts/add-spdx.sh          add the line where it is missing
#   sh scripts/add-spdx.sh --check  list the files without it; exit 1 if any
set -eu
cd "$(dirname "$0")/.."
tag="SPDX-License-Identifier: ISC"

# The comment style of a file: c, hash, or nothing when it is not source.
style() {
	case "$1" in
	*.c | *.h) echo c ;;
	*.py | *.sh | *.mk | Makefile | */Makefile | debian/rules) echo hash ;;
	*)
		case "${1##*/}" in
		*.*) ;; # another kind of file (.md, .txt, .conf, ...)
		*) head -c 2 "$1" | grep -q '^#!' && echo hash || true ;;
		esac
		;;
	esac
}

# Source files without the line, one per line.
missing() {
	git ls-files | while IFS= read -r f; do
		[ -f "$f" ] && [ ! -L "$f" ] || continue
		[ -n "$(style "$f")" ] || continue
		head -n 3 "$f" | grep -Eq '^(/\*|#|//) SPDX-License-Identifier:' || echo "$f"
	done
}

if [ "${1:-}" = "--check" ]; then
	list=$(missing)
	[ -z "$list" ] && exit 0
	echo "$list"
	exit 1
fi

missing | while IFS= read -r f; do
	tmp="$f.spdx.$$"
	if [ "$(style "$f")" = c ]; then
		{ echo "/* $tag */"; cat "$f"; } >"$tmp"
	elif head -n 1 "$f" | grep -q '^#!'; then
		{ head -n 1 "$f"; echo "# $tag"; tail -n +2 "$f"; } >"$tmp"
	else
		{ echo "# $tag"; cat "$f"; } >"$tmp"
	fi
	chmod "$(stat -c %a "$f")" "$tmp" # scripts stay executable
	mv "$tmp" "$f"
	echo "spdx: $f"
done
