#!/bin/sh
# SPDX-License-Identifier: ISC
# make bench: install what is missing (scripts/deps/*.txt, bench.txt among
# them), build authrelay and the load generators, then run the comparison
# (bench/bench.py): authrelay and the peer (Postfix + Dovecot SASL) against the
# same slapd with 10,000 users, on loopback, same points, one table.
#
#   make bench                 the full matrix (about 15-20 minutes)
#   BENCH_QUICK=1 make bench   a short smoke run (about 3 minutes)
#
# As root (losetup, mkfs.ext4) the run's directory, and so both spools, is a
# journaled ext4 made for it on a loop device; BENCH_LOOP=0 or BENCH_DIR=DIR
# choose otherwise (bench/bench.py says more).
#
# Results: build/bench/results.md and results.json; bench/RESULTS.md holds
# the figures we publish, with the commands and the machine.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make --no-print-directory all
make --no-print-directory -f bench/Makefile
# 10,000 idle connections on each side, plus the load generator's own: take
# 65536 descriptors where we may, else the hard limit.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 bench/bench.py "$@"
