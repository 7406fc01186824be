#!/bin/bash
# Connect latency of two berth builds, interleaved in one run so that both
# see the same machine: `berth bench` in-process (1000 namespaces, 4
# published ports each) and with one berth process per connect (100
# namespaces, 4 ports), alternating A B A B ... ROUNDS times.
#
#   bench/connect-ab.sh OLD/berth NEW/berth [ROUNDS]
#
# Each `berth bench` isolates itself in a private sandbox (fresh network
# and mount namespaces); nothing reaches the real host.
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); ROUNDS=${3:-3}
median() { grep -o "^$1 .*median [0-9.]* ms" | grep -o 'median [0-9.]*' | awk '{print $2}'; }
for r in $(seq 1 "$ROUNDS"); do
    for build in A B; do
        bin=${!build}
        inproc=$("$bin" bench --count 1000 --ports 4 2>&1 | median connect)
        cli=$("$bin" bench --count 100 --ports 4 --cli 2>&1 | median connect)
        echo "round $r build $build: in-process connect median $inproc ms, CLI connect median $cli ms"
    done
done
