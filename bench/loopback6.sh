#!/bin/bash
# Published ports over IPv6: the [::1] forwarder (berth's background
# server relays in user space) against the in-kernel paths, side by side in
# one run, in both br_netfilter modes:
#   [::1]:8080            the userspace forwarder
#   [2001:db8:1::1]:8080  the host's IPv6 address (DNAT in-kernel)
#   127.0.0.1:8080        IPv4 loopback (DNAT + route_localnet in-kernel)
#   [fd00:90::2]:80       the container itself (no translation), reference
# Connections/s: `berth-probe tcp-rate` (connect, one line each way,
# close), paths interleaved, ROUNDS rounds, median per path. Round trip:
# 2000 one-line exchanges on one connection (python3 client and echo
# server, TCP_NODELAY; the interpreter's cost is in every path alike),
# median and p99 of the median round. Throughput: 2 s of `tcp-throughput`
# to a sink, counted at the sender.
#
#   bench/loopback6.sh [path/to/berth] [ROUNDS]   (default target/release/berth, 5)
#
# Everything runs in a private sandbox (network, mount and PID namespaces).
set -euo pipefail
if [ -z "${BENCH_LO6_SANDBOX:-}" ]; then
    exec env BENCH_LO6_SANDBOX=1 unshare --net --mount --pid --fork --mount-proc \
        --propagation private "$0" "$@"
fi
B=$(realpath "${1:-target/release/berth}")
P=$(dirname "$B")/berth-probe
ROUNDS=${2:-5}
RATE_SECONDS=${RATE_SECONDS:-0.5}
for tool in "$B" "$P" python3; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing" >&2; exit 0; }
done
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
ip link set lo up
export BERTH_STATE_DIR=/run/berth-state
# Ephemeral ports and conntrack entries of earlier rounds must not throttle
# later ones.
sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"

# A host IPv6 address on an uplink veth, as a host's global address.
ip link add uplink0 type veth peer name uplink1
ip addr add 2001:db8:1::1/64 dev uplink0 nodad
ip link set uplink0 up && ip link set uplink1 up

rtt() {  # ADDR PORT -> "median_us p99_us"
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.connect((host, port))
f = s.makefile("rb")
times = []
for i in range(2000):
    t = time.perf_counter()
    s.sendall(b"x\n")
    f.readline()
    times.append(time.perf_counter() - t)
times.sort()
print("%.1f %.1f" % (times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6))
PY
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

run_mode() {
    local brnf=$1
    sysctl -qw net.bridge.bridge-nf-call-iptables="$brnf" net.bridge.bridge-nf-call-ip6tables="$brnf"
    "$B" network create web --subnet 10.90.0.0/24 --subnet6 fd00:90::/64 >/dev/null
    ip netns add c
    "$B" connect web c -p 8080:80 -p 8082:82 -p 8083:83 >/dev/null
    ip netns exec c sysctl -qw net.ipv4.tcp_tw_reuse=1
    ip netns exec c "$P" tcp-serve '[::]:80' >/dev/null &
    local srv=$!
    ip netns exec c "$P" tcp-sink '[::]:82' >/dev/null &
    local sink=$!
    # The round trips' echo server: one write per line, TCP_NODELAY.
    ip netns exec c python3 -c '
import socket, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 83)); s.listen(64)
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
' &
    local echo=$!
    sleep 0.3
    sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 2>/dev/null || true
    local paths=("[::1]:8080" "[2001:db8:1::1]:8080" "127.0.0.1:8080" "[fd00:90::2]:80")
    local names=("[::1] forwarder" "host IPv6 address (kernel)" "127.0.0.1 (kernel)" "container direct")
    local tputs=("[::1]:8082" "[2001:db8:1::1]:8082" "127.0.0.1:8082" "[fd00:90::2]:82")
    local echos=("[::1]:8083" "[2001:db8:1::1]:8083" "127.0.0.1:8083" "[fd00:90::2]:83")
    declare -A rates
    for r in $(seq 1 "$ROUNDS"); do
        for i in "${!paths[@]}"; do
            v=$("$P" tcp-rate "${paths[$i]}" --seconds "$RATE_SECONDS" | awk '{print $2}')
            rates[$i]="${rates[$i]:-} $v"
        done
    done
    echo "bridge-nf-call-ip6tables=$brnf ($ROUNDS rounds of ${RATE_SECONDS}s each path, interleaved)"
    printf '  %-28s %12s %8s %14s %10s %12s\n' path "conn/s" "vs [::1]" "rtt median us" "rtt p99" "Mbit/s"
    local base
    base=$(echo "${rates[0]}" | tr ' ' '\n' | grep . | median)
    for i in "${!paths[@]}"; do
        local m rt addr port tp
        m=$(echo "${rates[$i]}" | tr ' ' '\n' | grep . | median)
        addr=${echos[$i]%:*}; addr=${addr#[}; addr=${addr%]}; port=${echos[$i]##*:}
        rt=$(rtt "$addr" "$port")
        tp=$("$P" tcp-throughput "${tputs[$i]}" --seconds 2 | awk '{print $2}')
        printf '  %-28s %12.0f %8.2f %14s %10s %12.0f\n' "${names[$i]}" "$m" \
            "$(awk -v a="$m" -v b="$base" 'BEGIN {print a / b}')" ${rt} "$tp"
    done
    kill "$srv" "$sink" "$echo"
    wait "$srv" "$sink" "$echo" 2>/dev/null || true
    "$B" disconnect web c >/dev/null
    "$B" network rm web >/dev/null
    ip netns del c
}

run_mode 1
run_mode 0
