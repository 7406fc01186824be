#!/bin/bash
# Process start and the read-only commands, side by side with /bin/true in
# one run: `--version`, `ps` on an empty state, then `ps`, `network ls`,
# `network inspect` and `port` with COUNTS endpoints (4 published ports
# each). Every round runs each command once, in turn (/bin/true A B A B
# ...), so that all of them see the same machine; the figures are medians
# of ROUNDS rounds, with their ratio to /bin/true's median of the same run.
#
#   bench/startup.sh BERTH [BERTH2 ...]          (ROUNDS=300 COUNTS="100 1000")
#
# Several builds are measured interleaved in the same rounds (the state is
# set up once, with the first). Everything runs in a private sandbox
# (fresh network, mount and PID namespaces, tmpfs state); nothing reaches
# the real host.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BERTH [BERTH2 ...]" >&2; exit 2; }
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done
if [ -z "${BERTH_STARTUP_SANDBOXED:-}" ]; then
    exec env BERTH_STARTUP_SANDBOXED=1 unshare --net --mount --pid --fork --mount-proc \
        --propagation private "$0" "${bins[@]}"
fi
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/state
ip link set lo up
export BERTH_STATE_DIR=/run/state
berth=${bins[0]}
ROUNDS=${ROUNDS:-300}
COUNTS=${COUNTS:-"100 1000"}

# measure TITLE CMD... : one line per command, CMDs separated by `;;`.
measure() {
    python3 - "$ROUNDS" "$@" <<'EOF'
import os, shlex, statistics, sys
rounds, title = int(sys.argv[1]), sys.argv[2]
cmds = [shlex.split(c) for c in " ".join(sys.argv[3:]).split(";;")]
null = os.open("/dev/null", os.O_WRONLY)
acts = [(os.POSIX_SPAWN_DUP2, null, 1)]
times = [[] for _ in cmds]
faults = [[] for _ in cmds]
def once(c):
    t = time.perf_counter_ns()
    pid = os.posix_spawn(c[0], c, os.environ, file_actions=acts)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"{' '.join(c)}: exit status {status}")
    return (time.perf_counter_ns() - t) / 1e6, usage.ru_minflt
import time
for c in cmds:
    for _ in range(3):
        once(c)
for _ in range(rounds):
    for i, c in enumerate(cmds):
        t, f = once(c)
        times[i].append(t)
        faults[i].append(f)
floor = statistics.median(times[0])
print(f"== {title}: median of {rounds} interleaved rounds")
for i, c in enumerate(cmds):
    m = statistics.median(times[i])
    s = sorted(times[i])
    p90 = s[int(0.9 * (len(s) - 1))]
    name = " ".join(os.path.basename(a) if a.startswith("/") else a for a in c)
    print(f"{m:7.3f} ms  p90 {p90:7.3f}  x{m / floor:5.2f}  +{m - floor:6.3f} ms"
          f"  faults {statistics.median(faults[i]):4.0f}  {name}")
EOF
}

# each ARGS: the command line once per build, joined for `measure`.
each() {
    local out=""
    for b in "${bins[@]}"; do out+=" ;; $b $*"; done
    echo "$out"
}

measure "start-up" /bin/true $(each --version) $(each ps)

made=0
for count in $COUNTS; do
    if [ "$made" = 0 ]; then
        "$berth" network create bench --subnet 10.200.0.0/16 >/dev/null
    fi
    batch=$(mktemp)
    for i in $(seq $((made + 1)) "$count"); do echo "netns add ep$i"; done >"$batch"
    ip -batch "$batch"
    rm -f "$batch"
    for i in $(seq $((made + 1)) "$count"); do
        "$berth" connect bench "ep$i" -p 80 -p 81 -p 82 -p 83 >/dev/null
    done
    made=$count
    measure "$count endpoints" /bin/true $(each ps) $(each network ls) \
        $(each network inspect bench) $(each port ep1)
done
