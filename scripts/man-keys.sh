#!/bin/sh
# SPDX-License-Identifier: ISC
# man-keys.sh [--strict] BINARY TEMPLATE OUTPUT - authrelay.conf(5) with its
# key list: the line ".\" @KEYS@" of TEMPLATE becomes the output of
# `BINARY show-config --reference=mdoc`, the reference generated from the
# settings table the parser uses, so the page cannot drift from the code.
#
# A binary without that command (built before the settings table) gets a
# pointer to the README's configuration reference instead, with a warning
# on stderr; with --strict (`make man`) that is an error.
set -eu
strict=no
if [ "${1:-}" = "--strict" ]; then
	strict=yes
	shift
fi
[ $# -eq 3 ] || { echo "usage: $0 [--strict] BINARY TEMPLATE OUTPUT" >&2; exit 64; }
bin=$1 template=$2 out=$3
keys=$(mktemp)
trap 'rm -f "$keys"' EXIT
if "$bin" show-config --reference=mdoc >"$keys" 2>/dev/null && [ -s "$keys" ]; then
	:
elif [ "$strict" = yes ]; then
	echo "$0: '$bin show-config --reference=mdoc' failed: no generated key list" >&2
	echo "$0: for authrelay.conf(5) (the settings table has not landed?)" >&2
	exit 1
else
	echo "WARNING: $0: '$bin show-config --reference=mdoc' failed;" >&2
	echo "WARNING: authrelay.conf(5) points to the README for the keys instead" >&2
	cat >"$keys" <<'MDOC'
Every key, with its type, default, range and meaning, is described in
the section
.Dq Configuration reference
of README.md, installed in
.Pa /usr/share/doc/authrelay/ .
MDOC
fi
awk -v keys="$keys" '
	$0 == ".\\\" @KEYS@" { while ((getline line < keys) > 0) print line; found = 1; next }
	{ print }
	END { if (!found) { print "man-keys.sh: no @KEYS@ line in the template" > "/dev/stderr"; exit 1 } }
' "$template" >"$out"
