#!/bin/sh
# SPDX-License-Identifier: ISC
# Install the Debian packages authrelay needs to build, run and test, if any
# is missing. The lists are scripts/deps/*.txt, one package per line, one file
# per area (core, ldap, upstream MTAs...). Packaged daemons (slapd, postfix...)
# are kept from starting system instances: the tests start their own on free
# loopback ports.
set -e
dir=$(dirname "$0")/deps
PKGS=$(cat "$dir"/*.txt | sed 's/#.*//' | tr -s ' \t\n' ' ')
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# No service may start during installation (exit 101 = action forbidden).
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
