#!/bin/bash
# DNS benchmark: berth's server against aardvark-dns (as netavark runs it:
# a config directory with one file per network, `-p 53 run`), each serving
# the same names, measured with dnsperf from one client namespace.
#
#   sudo bench/dns.sh [path/to/berth]     (default: target/release/berth)
#
# Everything runs in a private sandbox (network, mount and PID namespaces);
# the "upstream" is berth-probe's fake DNS server in a namespace of its own,
# the same one for both servers.
# berth's server is berth-dns when it sits beside berth (cargo builds both).
# Reports, per server: queries/s, queries per second of server CPU time,
# for local names and for a mix with half the queries forwarded upstream;
# p50/p99 latency at a fixed 5000 qps for both (ROUNDS rounds, the servers
# interleaved); resident memory with 100, 1000 and 10,000 names; and the
# time from a connect's notification to the server answering the new name,
# at 100 and 10,000 names (bench/dns-rows.py).
set -euo pipefail
if [ -z "${BENCH_DNS_SANDBOX:-}" ]; then
    exec env BENCH_DNS_SANDBOX=1 unshare --net --mount --pid --fork --mount-proc \
        --propagation private "$0" "$@"
fi
B=$(realpath "${1:-target/release/berth}")
P=$(dirname "$B")/berth-probe
AARD=${AARDVARK:-/usr/lib/podman/aardvark-dns}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
ROWS=$(dirname "$(realpath "$0")")/dns-rows.py
for tool in dnsperf python3 "$AARD" "$B" "$P"; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing" >&2; exit 0; }
done
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/aard /run/bench
ip link set lo up
export BERTH_STATE_DIR=/run/berth-state
HZ=$(getconf CLK_TCK)

# The upstream: 198.51.100.1 in namespace `internet`, behind uplink0.
ip netns add internet
ip link add uplink0 type veth peer name eth0 netns internet
ip addr add 203.0.113.1/24 dev uplink0 && ip link set uplink0 up
ip -n internet addr add 203.0.113.2/24 dev eth0 && ip -n internet link set eth0 up
ip -n internet link set lo up && ip -n internet addr add 198.51.100.1/32 dev lo
ip -n internet route add default via 203.0.113.1 && ip route add default via 203.0.113.2
ip netns exec internet "$P" dns-serve 198.51.100.1:53 >/dev/null &
printf 'nameserver 198.51.100.1\n' >/run/bench/resolv.conf
mount --bind /run/bench/resolv.conf /etc/resolv.conf

# berth: network `bench` with 100 endpoints n0..n99, the client on it too.
$B network create bench --subnet 10.200.0.0/16 >/dev/null
# aardvark's network: a berth bridge without berth's DNS.
$B network create aard --no-dns --subnet 10.201.0.0/16 >/dev/null
ip netns add client
$B connect bench client >/dev/null
$B connect aard client >/dev/null
{ echo 10.201.0.1; echo "client 10.201.0.2  client"; } >/run/aard/aard
for i in $(seq 0 99); do
    ip netns add "n$i"
    $B connect bench "n$i" >/dev/null
    echo "ctr$i 10.201.$((i / 200)).$((i % 200 + 10))  n$i" >>/run/aard/aard
done
"$AARD" --config /run/aard -p 53 run >/dev/null 2>&1
sleep 0.5
APID=$(cat /run/aard/aardvark.pid)
BPID=$(cat $BERTH_STATE_DIR/dns.pid)
# `berth-dns` when it sits beside berth, else berth itself.
echo "== berth's server: $(tr '\0' ' ' <"/proc/$BPID/cmdline")"

for i in $(seq 0 99); do echo "n$i A"; done >/run/bench/local.txt
for i in $(seq 0 99); do
    if ((i % 2)); then echo "n$i A"; else echo "www$i.example.com A"; fi
done >/run/bench/mixed.txt

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Resident memory, and of it what is anonymous (heap, stacks) and what
# file pages (the binary and libraries touched).
rss() { awk '/^(VmRSS|RssAnon|RssFile)/ {v[$1] = $2} END {
    printf "%d kB (anon %d, file %d)", v["VmRSS:"], v["RssAnon:"], v["RssFile:"] }' "/proc/$1/status"; }

# throughput NAME PID SERVER FILE: saturating run.
throughput() {
    local before after out qps done_
    before=$(cpu "$2")
    out=$(ip netns exec client dnsperf -s "$3" -d "$4" -l "$SECONDS_PER_RUN" -c 4 -q 200 2>&1)
    after=$(cpu "$2")
    qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
    done_=$(awk '/Queries completed/ {print $3}' <<<"$out")
    lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
    awk -v n="$1" -v f="$(basename "$4" .txt)" -v q="$qps" -v d="$done_" -v l="$lost" \
        -v c="$(((after - before)))" -v hz="$HZ" 'BEGIN {
        cs = c / hz; printf "%-9s %-6s %9.0f qps  lost %-6s server CPU %5.2f s  %8.0f queries per CPU second\n",
        n, f, q, l, cs, (cs > 0 ? d / cs : 0) }'
}

# latency NAME SERVER FILE: p50/p99 at a fixed 5000 qps (dnsperf -v prints
# each query's latency); the p99 also goes to /run/bench/p99.NAME.FILE.
latency() {
    local f
    f=$(basename "$3" .txt)
    ip netns exec client dnsperf -s "$2" -d "$3" -l 5 -Q 5000 -c 1 -v 2>/dev/null |
        awk '/^> / {print $NF * 1000}' | sort -n |
        awk -v n="$1" -v f="$f" -v out="/run/bench/p99.$1.$f" '{v[NR] = $1} END {
            printf "%-9s %-6s p50 %.3f ms  p99 %.3f ms at 5000 qps (%d queries)\n", n, f, v[int(NR * 0.5)], v[int(NR * 0.99)], NR
            printf "%.3f\n", v[int(NR * 0.99)] >>out }'
}
median() { sort -n "$1" | awk '{v[NR] = $1} END {printf "%.3f", v[int((NR + 1) / 2)]}'; }

echo "== throughput (dnsperf: 4 clients, 200 outstanding, ${SECONDS_PER_RUN}s)"
throughput berth "$BPID" 10.200.0.1 /run/bench/local.txt
throughput aardvark "$APID" 10.201.0.1 /run/bench/local.txt
throughput berth "$BPID" 10.200.0.1 /run/bench/mixed.txt
throughput aardvark "$APID" 10.201.0.1 /run/bench/mixed.txt
echo "== latency ($ROUNDS rounds, interleaved)"
for r in $(seq "$ROUNDS"); do
    for f in local mixed; do
        latency berth 10.200.0.1 /run/bench/$f.txt
        latency aardvark 10.201.0.1 /run/bench/$f.txt
    done
done
for f in local mixed; do
    echo "== p99 median, $f: berth $(median /run/bench/p99.berth.$f) ms, aardvark $(median /run/bench/p99.aardvark.$f) ms"
done
echo "== memory with 100 names: berth $(rss "$BPID"), aardvark $(rss "$APID")"
echo "== berth, a connect's notification to the new name answered, 100 names: $(
    ip netns exec client python3 "$ROWS" reload "$BERTH_STATE_DIR" bench 10.200.0.1 50)"

# 1000 names: 900 more endpoints; the last 100 connects are timed (each
# includes the server's reload of every name).
for i in $(seq 100 999); do
    ip netns add "n$i"
    ((i < 900)) && $B connect bench "n$i" >/dev/null
    echo "ctr$i 10.201.$((i / 200)).$((i % 200 + 10))  n$i" >>/run/aard/aard
done
t0=$(date +%s%N)
for i in $(seq 900 999); do $B connect bench "n$i" >/dev/null; done
spent=$(($(date +%s%N) - t0))
kill -HUP "$APID"
sleep 1
ip netns exec client dig +short @10.200.0.1 n999 | grep -q . || echo "berth: n999 does not resolve"
ip netns exec client dig +short @10.201.0.1 n999 | grep -q . || echo "aardvark: n999 does not resolve"
echo "== memory with 1000 names: berth $(rss "$BPID"), aardvark $(rss "$APID")"
echo "== berth connect, the last 100 of 1000 (process start and the DNS reload included): $((spent / 1000000))e-2 ms each"
# For reference: connects to a network without DNS, the same way.
$B network create plain --no-dns --subnet 10.202.0.0/20 >/dev/null
for i in $(seq 0 99); do ip netns add "p$i"; done
t0=$(date +%s%N)
for i in $(seq 0 99); do $B connect plain "p$i" >/dev/null; done
echo "== berth connect to a network without DNS, for reference: $((($(date +%s%N) - t0) / 1000000))e-2 ms each"
t0=$(date +%s%N)
$B disconnect bench n999 >/dev/null
ip netns exec client dig +short +time=1 +tries=1 @10.200.0.1 n999 | grep -q . && echo "berth: n999 still resolves"
echo "== berth disconnect with 1000 names, then the name gone: $((($(date +%s%N) - t0) / 1000000)) ms"

# 10,000 names: rows written as a connect commits them (no veths: a bridge
# takes 1024 ports), the server told to read everything again; aardvark gets
# the same number of names in its file. No berth command runs from here on.
last=$(python3 "$ROWS" fill "$BERTH_STATE_DIR" bench 10000)
for i in $(seq 1000 $((10000 - 1))); do
    echo "ctr$i 10.201.$((i / 200)).$((i % 200 + 10))  n$i"
done >>/run/aard/aard
kill -HUP "$BPID" "$APID"
sleep 2
ip netns exec client dig +short @10.200.0.1 "$last" | grep -q . || echo "berth: $last does not resolve"
ip netns exec client dig +short @10.201.0.1 n9999 | grep -q . || echo "aardvark: n9999 does not resolve"
echo "== memory with 10,000 names: berth $(rss "$BPID"), aardvark $(rss "$APID")"
for r in $(seq "$ROUNDS"); do
    latency berth10k 10.200.0.1 /run/bench/local.txt
    latency aardvark10k 10.201.0.1 /run/bench/local.txt
done
echo "== berth, a connect's notification to the new name answered, 10,000 names: $(
    ip netns exec client python3 "$ROWS" reload "$BERTH_STATE_DIR" bench 10.200.0.1 50)"
