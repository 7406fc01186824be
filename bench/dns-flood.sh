#!/bin/bash
# DNS under a flood from one network: how a calm network's latency moves
# while another network sends berth's server 50,000 queries a second.
#
#   sudo bench/dns-flood.sh [path/to/berth]     (default: target/release/berth)
#
# Everything runs in a private sandbox (network, mount and PID namespaces);
# the upstream is berth-probe's fake DNS server in a namespace of its own.
# Networks `flood` (client f1) and `calm` (client c1, 20 names). c1 asks
# its gateway at a fixed 2000 queries/s (dnsperf -v records each query's
# latency) first alone, then while f1 floods:
#   local names      - its own gateway, names of its network (the server's CPU)
#   unanswered names - its own gateway, names upstream never answers (the
#                      forward slots)
#   another server   - the fake upstream, with the same rate: what the
#                      flood's packets cost the machine when berth's server
#                      has no part in them (the control)
# On a machine shared with other work, run it as `nice -n -10 ...` with
# PIN=1 (below), so that the flood, not the neighbours, is what moves.
# The four runs are interleaved over ROUNDS rounds, so that a busy moment
# of the machine falls on all of them alike. Reports p50/p99/p99.9 of c1
# for each run, what the flood achieved and the server's CPU share, and
# at the end the median p99 of each kind and its ratio to the unloaded one
# (the target: at most 2).
set -euo pipefail
if [ -z "${BENCH_DNS_SANDBOX:-}" ]; then
    exec env BENCH_DNS_SANDBOX=1 unshare --net --mount --pid --fork --mount-proc \
        --propagation private "$0" "$@"
fi
B=$(realpath "${1:-target/release/berth}")
P=$(dirname "$B")/berth-probe
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-5}
FLOOD_QPS=${FLOOD_QPS:-50000}
CALM_QPS=${CALM_QPS:-2000}
for tool in dnsperf "$B" "$P"; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing" >&2; exit 0; }
done
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/bench
ip link set lo up
export BERTH_STATE_DIR=/run/berth-state
HZ=$(getconf CLK_TCK)

ip netns add internet
ip link add uplink0 type veth peer name eth0 netns internet
ip addr add 203.0.113.1/24 dev uplink0 && ip link set uplink0 up
ip -n internet addr add 203.0.113.2/24 dev eth0 && ip -n internet link set eth0 up
ip -n internet link set lo up && ip -n internet addr add 198.51.100.1/32 dev lo
ip -n internet route add default via 203.0.113.1 && ip route add default via 203.0.113.2
ip netns exec internet "$P" dns-serve 198.51.100.1:53 >/dev/null &
printf 'nameserver 198.51.100.1\n' >/run/bench/resolv.conf
mount --bind /run/bench/resolv.conf /etc/resolv.conf

$B network create flood --subnet 10.210.0.0/24 >/dev/null
$B network create calm --subnet 10.211.0.0/24 >/dev/null
ip netns add f1 && $B connect flood f1 >/dev/null
ip netns add c1 && $B connect calm c1 >/dev/null
for i in $(seq 0 19); do
    ip netns add "n$i" && $B connect calm "n$i" >/dev/null
    echo "n$i A"
done >/run/bench/calm.txt
for i in $(seq 0 99); do echo "f1 A"; done >/run/bench/flood-local.txt
for i in $(seq 0 99); do echo "slow.n$i.example.com A"; done >/run/bench/flood-upstream.txt
SPID=$(cat $BERTH_STATE_DIR/dns.pid)
# With PIN=1 the flood's generator runs on the last CPU and everything else
# (the server, the calm client) on the others: the generator's own CPU use
# does not then crowd the machine, as a cgroup CPU limit on the flooding
# container would keep it from doing.
PIN_FLOOD=
if [ "${PIN:-0}" = 1 ] && [ "$(nproc)" -gt 1 ]; then
    last=$(($(nproc) - 1))
    taskset -acp "0-$((last - 1))" "$SPID" >/dev/null
    taskset -cp "0-$((last - 1))" $$ >/dev/null
    PIN_FLOOD="taskset -c $last"
fi
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# calm LABEL: c1's latency at CALM_QPS for SECONDS_PER_RUN; prints
# "p50 p99 p999" in ms on the last line.
calm() {
    ip netns exec c1 dnsperf -s 10.211.0.1 -d /run/bench/calm.txt -l "$SECONDS_PER_RUN" \
        -Q "$CALM_QPS" -c 1 -t 2 -v 2>/dev/null >/run/bench/calm.out || true
    awk '/^> / {print $NF * 1000}' /run/bench/calm.out | sort -n >/run/bench/lat.txt
    local lost
    lost=$(awk '/Queries lost/ {print $3}' /run/bench/calm.out)
    awk -v l="$1" -v lost="${lost:-?}" '{v[NR] = $1} END {
        printf "%-28s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  (%d answered, %s lost)\n",
            l, v[int(NR * 0.5)], v[int(NR * 0.99)], v[int(NR * 0.999)], NR, lost }' /run/bench/lat.txt
}

p99() { awk '{v[NR] = $1} END { printf "%.3f", v[int(NR * 0.99)] }' /run/bench/lat.txt; }

# flooded FILE LABEL: c1's latency while f1 floods with FILE.
flooded() {
    local before after
    before=$(cpu "$SPID")
    ip netns exec f1 $PIN_FLOOD dnsperf -s "${3:-10.210.0.1}" -d "$1" -l $((SECONDS_PER_RUN + 2)) \
        -Q "$FLOOD_QPS" -c 8 -q 20000 -t 1 >/run/bench/flood.out 2>&1 &
    local fpid=$!
    sleep 1
    calm "$2"
    wait "$fpid" || true
    after=$(cpu "$SPID")
    awk -v hz="$HZ" -v c="$((after - before))" -v s="$((SECONDS_PER_RUN + 2))" '
        /Queries sent/ {sent = $3} /Queries completed/ {done_ = $3}
        /Queries per second/ {qps = $4}
        END { printf "    flood: %d sent, %d answered (%.0f answered/s), server CPU %.0f%%\n",
              sent, done_, qps, 100 * c / hz / s }' /run/bench/flood.out
}

echo "== c1 on network calm at ${CALM_QPS} qps; f1 on network flood at ${FLOOD_QPS} qps; ${ROUNDS} rounds of ${SECONDS_PER_RUN}s runs, interleaved"
: >/run/bench/p99-unloaded; : >/run/bench/p99-local; : >/run/bench/p99-upstream
: >/run/bench/p99-control
echo "www.example.com A" >/run/bench/control.txt
for r in $(seq 1 "$ROUNDS"); do
    echo "-- round $r"
    calm "unloaded"
    p99 >>/run/bench/p99-unloaded; echo >>/run/bench/p99-unloaded
    flooded /run/bench/flood-local.txt "flood of local names"
    p99 >>/run/bench/p99-local; echo >>/run/bench/p99-local
    flooded /run/bench/flood-upstream.txt "flood of unanswered names"
    p99 >>/run/bench/p99-upstream; echo >>/run/bench/p99-upstream
    flooded /run/bench/control.txt "flood of another server" 198.51.100.1
    p99 >>/run/bench/p99-control; echo >>/run/bench/p99-control
done
median() { sort -n "$1" | awk '{v[NR] = $1} END { printf "%.3f", v[int((NR + 1) / 2)] }'; }
base=$(median /run/bench/p99-unloaded)
local_=$(median /run/bench/p99-local)
up=$(median /run/bench/p99-upstream)
control=$(median /run/bench/p99-control)
awk -v b="$base" -v l="$local_" -v u="$up" -v c="$control" 'BEGIN {
    printf "== median p99: unloaded %.3f ms; flood of local names %.3f ms (x%.2f); flood of unanswered names %.3f ms (x%.2f); the same flood at another server %.3f ms (x%.2f)\n",
        b, l, l / b, u, u / b, c, c / b }'
