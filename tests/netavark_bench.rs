//! Benchmark (not a timed test, ignored by default): berth as netavark
//! against the stock netavark, fed the same JSON, in a sandbox.
//!
//! ```sh
//! cargo test --release --test netavark_bench -- --ignored --nocapture
//! ```
//!
//! 1. `netavark setup` then `teardown` for 100 containers with 4 published
//!    TCP ports each on one network, one process per call (as Podman runs
//!    it); median, p90, and first 10 against last 10.
//! 2. `podman run --rm` end to end, 15 runs each, with one published port.
//! 3. For reference, `berth connect` with the same 4 ports, 100 times.
//! 4. (`bench_parallel_setups_against_setups_in_a_row`) 100 setups, then
//!    100 teardowns, started at once against the same in a row, with the
//!    state and the kernel checked after each round; the stock netavark
//!    likewise, for reference.
//!
//! Every call goes through `nsenter` into the sandbox, which costs both
//! sides the same ~1 ms.

mod util;

use std::time::{Duration, Instant};

use serde_json::json;
use util::podman::{podman_or_skip, PodmanClient, IMAGE, STOCK_NETAVARK};
use util::*;

const CONTAINERS: usize = 100;
const PORTS: usize = 4;
const RUNS: usize = 15;

fn request(i: usize) -> serde_json::Value {
    let ports: Vec<_> = (0..PORTS)
        .map(|p| {
            json!({"host_ip": "", "container_port": 80 + p, "host_port": 10000 + i * PORTS + p,
                   "range": 1, "protocol": "tcp"})
        })
        .collect();
    json!({
        "container_id": format!("{i:064x}"),
        "container_name": format!("c{i}"),
        "port_mappings": ports,
        "networks": {"bench": {"static_ips": [format!("10.77.{}.{}", (i + 2) / 256, (i + 2) % 256)],
                               "aliases": [format!("c{i}")], "interface_name": "eth0"}},
        "network_info": {"bench": {
            "name": "bench", "id": "b".repeat(64), "driver": "bridge",
            "network_interface": "podman9",
            "subnets": [{"subnet": "10.77.0.0/16", "gateway": "10.77.0.1"}],
            "ipv6_enabled": false, "internal": false, "dns_enabled": false,
            "ipam_options": {"driver": "host-local"}}}
    })
}

struct Stats(Vec<Duration>);

impl Stats {
    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }
    fn median(v: &[Duration]) -> f64 {
        let mut v = v.to_vec();
        v.sort();
        Self::ms(v[v.len() / 2])
    }
    fn line(&self, what: &str) -> String {
        let mut s = self.0.clone();
        s.sort();
        let p90 = s[(s.len() * 9 / 10).min(s.len() - 1)];
        let n = self.0.len().min(10);
        format!(
            "{what:<34} median {:>7.1} ms  p90 {:>7.1} ms  first {n} {:>7.1} -> last {n} {:>7.1} ms",
            Self::median(&self.0),
            Self::ms(p90),
            Self::median(&self.0[..n]),
            Self::median(&self.0[self.0.len() - n..]),
        )
    }
}

/// A bare `ip link del` of a veth made as a container's (peer in the
/// namespace `netns`), through the same `nsenter`: what deleting a veth
/// costs whoever asks (the kernel waits for an RCU grace period).
fn bare_veth_delete(sb: &Sandbox, netns: &str) -> Duration {
    sb.sh_ok(&format!(
        "ip link add bref0 type veth peer name bref0 netns {netns} && ip link set bref0 up"
    ));
    let c = sb.command(None, "ip", &["link", "del", "bref0"]);
    let t = Instant::now();
    let out = run_timeout(c, CMD_TIMEOUT);
    let took = t.elapsed();
    assert_ok(&out);
    took
}

/// Times setup of every container, then teardown of every container,
/// every fifth teardown followed by a bare veth delete (the reference).
fn setup_teardown(binary: &str) -> (Stats, Stats, Stats) {
    let sb = Sandbox::new();
    sb.sh_ok(&format!(
        "for i in $(seq 0 {}); do ip netns add c$i; done; mkdir -p /run/nvconf",
        CONTAINERS - 1
    ));
    let dir = std::env::temp_dir().join(format!("berth-nvbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let call = |verb: &str, i: usize| -> Duration {
        let file = dir.join(format!("c{i}.json"));
        std::fs::write(&file, request(i).to_string()).unwrap();
        timed_netavark(&sb, binary, &file, verb, &format!("/run/netns/c{i}"))
    };
    let setup = (0..CONTAINERS).map(|i| call("setup", i)).collect();
    let (mut teardown, mut bare) = (Vec::new(), Vec::new());
    for i in 0..CONTAINERS {
        teardown.push(call("teardown", i));
        if i % 5 == 0 {
            bare.push(bare_veth_delete(&sb, &format!("c{i}")));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (Stats(setup), Stats(teardown), Stats(bare))
}

/// The same work through berth's own CLI (`berth connect` with 4 ports,
/// through the same `nsenter`): what netavark mode adds on top of it.
fn baseline_connect() -> Stats {
    let sb = Sandbox::new();
    sb.sh_ok(&format!(
        "for i in $(seq 0 {}); do ip netns add c$i; done",
        CONTAINERS - 1
    ));
    sb.berth_ok(&["network", "create", "bench", "--subnet", "10.77.0.0/16"]);
    let times = (0..CONTAINERS)
        .map(|i| {
            let ports: Vec<String> = (0..PORTS)
                .map(|p| format!("{}:{}", 10000 + i * PORTS + p, 80 + p))
                .collect();
            let netns = format!("c{i}");
            let mut args = vec!["connect", "bench", &netns];
            for p in &ports {
                args.extend(["-p", p]);
            }
            let t = Instant::now();
            sb.berth_ok(&args);
            t.elapsed()
        })
        .collect();
    Stats(times)
}

/// Times `podman run --rm` with one published port.
fn podman_run(netavark: &str) -> Option<Stats> {
    let p = podman_or_skip("podman run --rm benchmark", netavark)?;
    p.ok(&["network", "create", "--subnet", "10.77.0.0/24", "n1"]);
    // A first run outside the figures: it copies the image into storage.
    let run = [
        "run",
        "--rm",
        "--network",
        "n1",
        "-p",
        "8080:80",
        IMAGE,
        "true",
    ];
    p.ok(&run);
    let times = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            p.ok(&run);
            t.elapsed()
        })
        .collect();
    Some(Stats(times))
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_netavark_setup_teardown_and_podman_run() {
    let mut lines = vec![format!(
        "netavark setup/teardown, {CONTAINERS} containers x {PORTS} published ports, one network:"
    )];
    let mut binaries = vec![("berth", berth_under_test())];
    for stock in [STOCK_NETAVARK, "/usr/libexec/podman/netavark"] {
        if std::path::Path::new(stock).exists() {
            binaries.push(("stock netavark", stock.to_string()));
        }
    }
    for (name, path) in &binaries {
        // berth must be called by the name Podman uses.
        let bin = if *name == "berth" {
            let link =
                std::env::temp_dir().join(format!("berth-nvbench-bin-{}", std::process::id()));
            std::fs::create_dir_all(&link).unwrap();
            let link = link.join("netavark");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(path, &link).unwrap();
            link.to_string_lossy().into_owned()
        } else {
            path.clone()
        };
        let version = stdout(&run_timeout(
            {
                let mut c = std::process::Command::new(&bin);
                c.arg("--version");
                c
            },
            CMD_TIMEOUT,
        ));
        let (setup, teardown, bare) = setup_teardown(&bin);
        lines.push(setup.line(&format!("{name} ({}) setup", version.trim())));
        lines.push(teardown.line(&format!("{name} ({}) teardown", version.trim())));
        lines.push(bare.line("  bare `ip link del` of a veth, same run"));
        lines.push(format!(
            "  teardown / bare veth delete, medians: x{:.2}",
            Stats::median(&teardown.0) / Stats::median(&bare.0)
        ));
        if *name == "berth" {
            // Right after, so that both see the same machine load.
            lines.push(baseline_connect().line("berth connect, 4 ports (reference)"));
        }
    }
    lines.push(format!("podman run --rm, {RUNS} runs, one published port:"));
    for (name, path) in &binaries {
        if let Some(s) = podman_run(path) {
            lines.push(s.line(name));
        }
    }
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("berth-nvbench-bin-{}", std::process::id())),
    );
    for l in lines {
        println!("{l}");
    }
}

/// The shell line running `binary`'s `verb` for container `i` (request
/// file in `dir`); a failure prints `FAIL<i>` and keeps its output.
fn netavark_line(binary: &str, dir: &std::path::Path, verb: &str, i: usize) -> String {
    let d = dir.display();
    format!(
        "BERTH_STATE_DIR={STATE_DIR} {binary} --config /run/nvconf --rootless=false \
         --file {d}/c{i}.json {verb} /run/netns/c{i} >{d}/out-{verb}-{i} 2>&1 || echo FAIL{i}"
    )
}

/// Every container's `verb`, in a row or all at once, timed inside the
/// sandbox (one shell, no per-call `nsenter`); the containers that
/// failed.
fn churn(
    sb: &Sandbox,
    binary: &str,
    dir: &std::path::Path,
    verb: &str,
    at_once: bool,
) -> (Duration, Vec<String>) {
    let sep = if at_once { " &\n" } else { "\n" };
    let lines: Vec<String> = (0..CONTAINERS)
        .map(|i| netavark_line(binary, dir, verb, i))
        .collect();
    let script = format!("{}{sep}wait", lines.join(sep));
    let start = Instant::now();
    let out = sb.sh(&script);
    let took = start.elapsed();
    let failed = stdout(&out)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("FAIL"))
        .map(|i| {
            let text =
                std::fs::read_to_string(dir.join(format!("out-{verb}-{i}"))).unwrap_or_default();
            format!("c{i}: {}", text.trim())
        })
        .collect();
    (took, failed)
}

/// berth's state and kernel after the setups: every container's address
/// in its namespace, its four map elements, one veth each.
fn assert_berth_consistent(sb: &Sandbox) {
    sb.assert_endpoints_distinct(CONTAINERS, PORTS, "10.77.");
    for i in [0, CONTAINERS / 2, CONTAINERS - 1] {
        let want = format!("10.77.{}.{}/16", (i + 2) / 256, (i + 2) % 256);
        assert_eq!(sb.ipv4_addrs(Some(&format!("c{i}")), "eth0"), [want]);
    }
}

fn assert_berth_empty(sb: &Sandbox) {
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert!(sb.networks().is_empty(), "{:?}", sb.networks());
    let veths = stdout(&sb.cmd("ip", &["-o", "link", "show", "type", "veth"]));
    assert_eq!(
        veths.lines().filter(|l| l.contains(": vb")).count(),
        0,
        "{veths}"
    );
}

/// 100 `netavark setup`s (4 ports each), then their teardowns, started at
/// once against the same in a row, alternated twice in fresh sandboxes.
/// berth must finish every call without error and leave the state and
/// kernel consistent; the stock netavark is timed the same way and its
/// failures counted, for reference.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_parallel_setups_against_setups_in_a_row() {
    let dir = std::env::temp_dir().join(format!("berth-nvchurn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..CONTAINERS {
        std::fs::write(dir.join(format!("c{i}.json")), request(i).to_string()).unwrap();
    }
    let berth = format!("{} netavark", berth_under_test());
    let mut binaries = vec![("berth", berth)];
    if std::path::Path::new(STOCK_NETAVARK).exists() {
        binaries.push(("stock netavark", STOCK_NETAVARK.to_string()));
    }
    let mut lines = vec![format!(
        "netavark setup/teardown, {CONTAINERS} containers x {PORTS} ports, in a row against at once (ms, two rounds):"
    )];
    for (name, binary) in &binaries {
        let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
        let mut failures = [[0usize; 2]; 2];
        for _ in 0..2 {
            for (k, at_once) in [false, true].into_iter().enumerate() {
                let sb = Sandbox::new();
                sb.sh_ok(&format!(
                    "for i in $(seq 0 {}); do ip netns add c$i; done; mkdir -p /run/nvconf",
                    CONTAINERS - 1
                ));
                for (v, verb) in ["setup", "teardown"].into_iter().enumerate() {
                    let (took, failed) = churn(&sb, binary, &dir, verb, at_once);
                    if *name == "berth" {
                        assert!(failed.is_empty(), "berth {verb}: {failed:?}");
                        if v == 0 {
                            assert_berth_consistent(&sb);
                        } else {
                            assert_berth_empty(&sb);
                        }
                    } else if !failed.is_empty() {
                        eprintln!("{name} {verb}: {} failed, e.g. {}", failed.len(), failed[0]);
                    }
                    times[v][k].push(took);
                    failures[v][k] += failed.len();
                }
            }
        }
        let ms = |v: &[Duration]| {
            v.iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let sum = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
        for (v, verb) in ["setup", "teardown"].into_iter().enumerate() {
            lines.push(format!(
                "  {name} {verb}: in a row {} ({} failed), at once {} ({} failed): x{:.2}",
                ms(&times[v][0]),
                failures[v][0],
                ms(&times[v][1]),
                failures[v][1],
                sum(&times[v][1]) / sum(&times[v][0])
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for l in lines {
        println!("{l}");
    }
}
