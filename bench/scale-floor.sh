#!/bin/bash
# The kernel's own cost of one container's veth as the host fills up:
# iproute2 (no berth) does the kernel steps of a connect, with 100 and
# with COUNT (default 10000) such veths already there (each with its
# peer in a namespace of its own), spread over 20 bridges.
# Medians of ROUNDS (default 50) timed additions at each size, and of a
# dump of every link. This is the floor a flat connect (and a reconcile,
# which reads the dump) is measured against: what grows here grows in
# any tool's.
#
#   bench/scale-floor.sh               (COUNT=10000 ROUNDS=50)
#
# Runs in a private sandbox (fresh network, mount and PID namespaces,
# tmpfs /run); nothing reaches the real host.
set -euo pipefail
if [ -z "${BERTH_FLOOR_SANDBOXED:-}" ]; then
    exec env BERTH_FLOOR_SANDBOXED=1 unshare --net --mount --pid --fork --mount-proc \
        --propagation private "$0" "$@"
fi
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
ip link set lo up
COUNT=${COUNT:-10000}
ROUNDS=${ROUNDS:-50}
for b in $(seq 0 19); do ip link add br$b type bridge; ip link set br$b up; done
made=0
# fill N: namespaces and veths up to N, in batches (untimed).
fill() {
    local batch
    batch=$(mktemp)
    for i in $(seq $((made + 1)) "$1"); do
        echo "netns add f$i"
    done >"$batch"
    ip -batch "$batch"
    for i in $(seq $((made + 1)) "$1"); do
        echo "link add h$i type veth peer name eth0 netns f$i"
        echo "link set h$i master br$((i % 20)) up"
    done >"$batch"
    ip -batch "$batch"
    rm -f "$batch"
    made=$1
}
# dump N: one dump of every link, as `ip` reads it (a reconcile's
# observation reads the same dump), median of 5.
dump() {
    python3 - "$1" <<'PY'
import statistics, subprocess, sys, time
t = []
for _ in range(5):
    start = time.perf_counter()
    subprocess.run(["ip", "-o", "link", "show"], check=True, stdout=subprocess.DEVNULL)
    t.append((time.perf_counter() - start) * 1000)
print(f"with {sys.argv[1]:>6} veths present: `ip -o link show` (one dump of every link), median of 5"
      f" {statistics.median(t):.1f} ms")
PY
}
# timed N: ROUNDS containers attached with the kernel steps of berth's
# connect, each an `ip` command (veth with its peer in the namespace,
# bridge port and up; inside: lo up, address, eth0 up, default route;
# hairpin), their removal untimed; the median.
timed() {
    python3 - "$ROUNDS" "$1" <<'PY'
import statistics, subprocess, sys, time
rounds, size = int(sys.argv[1]), sys.argv[2]
def ip(*args):
    subprocess.run(["ip", *args], check=True)
t = []
for r in range(rounds):
    ns, veth, b = f"t{r}", f"x{r}", r % 20
    ip("netns", "add", ns)
    start = time.perf_counter()
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", veth, "master", f"br{b}", "up")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "addr", "add", f"10.{100 + b}.200.{r + 1}/16", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "route", "add", "default", "via", f"10.{100 + b}.0.1")
    ip("link", "set", veth, "type", "bridge_slave", "hairpin", "on")
    t.append((time.perf_counter() - start) * 1000)
    ip("netns", "del", ns)
print(f"with {size:>6} veths present: iproute2, the kernel steps of one connect (7 processes),"
      f" median of {rounds} {statistics.median(t):.2f} ms")
PY
}
fill 100
timed 100
dump 100
fill "$COUNT"
timed "$COUNT"
dump "$COUNT"
