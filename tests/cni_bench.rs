//! Benchmark (not a timed test; `#[ignore]`d): per-container CNI ADD and
//! DEL with 4 published ports each, berth against the reference chain
//! bridge + host-local + portmap (/usr/lib/cni), 100 containers, each in
//! its own sandbox; 100 ADDs (then DELs) started at once against 100 in a
//! row (a node starting its pods); and GC of 1000 stale attachments. Run
//! with
//!
//! ```sh
//! cargo test --release --test cni_bench -- --ignored --nocapture
//! ```

mod util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

const COUNT: usize = 100;
const PORTS: usize = 4;

/// Runs one plugin (`program`) with `CNI_COMMAND=command` in the sandbox
/// host; returns stdout as JSON (Null when empty) and the time it took.
fn plugin(
    sb: &Sandbox,
    program: &str,
    command: &str,
    id: &str,
    netns: &str,
    stdin: &str,
) -> (Value, Duration) {
    let mut c: Command = sb.command(None, program, &[]);
    c.env("BERTH_STATE_DIR", STATE_DIR)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{program} {command} {id}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        took,
    )
}

fn mappings(i: usize) -> Value {
    let ports: Vec<Value> = (0..PORTS)
        .map(|p| json!({"hostPort": 20000 + i * PORTS + p, "containerPort": 80 + p, "protocol": "tcp"}))
        .collect();
    json!(ports)
}

fn summary(what: &str, times: &[Duration]) {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mut sorted: Vec<f64> = times.iter().map(ms).collect();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    let first: f64 = times[..10].iter().map(ms).sum::<f64>() / 10.0;
    let last: f64 = times[times.len() - 10..].iter().map(ms).sum::<f64>() / 10.0;
    eprintln!(
        "{what:<34} median {median:7.1} ms   first 10 {first:7.1} ms   last 10 {last:7.1} ms"
    );
}

fn netns_batch(sb: &Sandbox, n: usize) {
    sb.sh_ok(&format!(
        "for i in $(seq 0 {}); do ip netns add n$i; ip -n n$i link set lo up; done",
        n - 1
    ));
}

#[test]
#[ignore]
fn bench_berth_against_bridge_host_local_portmap() {
    // berth.
    let berth = berth_under_test();
    let sb = Sandbox::new();
    netns_batch(&sb, COUNT);
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for i in 0..COUNT {
        let conf = json!({"cniVersion": "1.0.0", "name": "bench", "type": "berth",
            "subnet": "10.80.0.0/16", "runtimeConfig": {"portMappings": mappings(i)}})
        .to_string();
        add.push(
            plugin(
                &sb,
                &berth,
                "ADD",
                &format!("c{i}"),
                &format!("n{i}"),
                &conf,
            )
            .1,
        );
    }
    // Every fifth DEL is followed by a bare `ip link del` of a veth made as
    // a container's (the reference: what any tool's veth delete waits).
    let mut bare = Vec::new();
    for i in 0..COUNT {
        let conf = json!({"cniVersion": "1.0.0", "name": "bench", "type": "berth"}).to_string();
        del.push(
            plugin(
                &sb,
                &berth,
                "DEL",
                &format!("c{i}"),
                &format!("n{i}"),
                &conf,
            )
            .1,
        );
        if i % 5 == 0 {
            sb.sh_ok(&format!(
                "ip link add bref0 type veth peer name bref0 netns n{i} && ip link set bref0 up"
            ));
            let c = sb.command(None, "ip", &["link", "del", "bref0"]);
            let t = Instant::now();
            assert_ok(&run_timeout(c, CMD_TIMEOUT));
            bare.push(t.elapsed());
        }
    }
    summary("berth ADD (4 ports)", &add);
    summary("berth DEL", &del);
    summary("bare `ip link del` of a veth", &bare);
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    eprintln!(
        "berth DEL / bare veth delete, medians: x{:.2}",
        median(&del) / median(&bare)
    );
    drop(sb);

    // The reference chain, as libcni runs a conflist: bridge (with
    // host-local) then portmap with the bridge's result; DEL in reverse.
    let sb = Sandbox::new();
    netns_batch(&sb, COUNT);
    let bridge = json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge",
        "bridge": "cni-bench", "isGateway": true, "ipMasq": true, "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": "/run/cni-host-local",
                 "ranges": [[{"subnet": "10.81.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}});
    let (mut add, mut del) = (Vec::new(), Vec::new());
    let mut results = Vec::new();
    for i in 0..COUNT {
        let (res, t1) = plugin(
            &sb,
            "/usr/lib/cni/bridge",
            "ADD",
            &format!("c{i}"),
            &format!("n{i}"),
            &bridge.to_string(),
        );
        let pm = json!({"cniVersion": "1.0.0", "name": "bench", "type": "portmap",
            "runtimeConfig": {"portMappings": mappings(i)}, "prevResult": res});
        let (res, t2) = plugin(
            &sb,
            "/usr/lib/cni/portmap",
            "ADD",
            &format!("c{i}"),
            &format!("n{i}"),
            &pm.to_string(),
        );
        add.push(t1 + t2);
        results.push(res);
    }
    for (i, res) in results.iter().enumerate() {
        let pm = json!({"cniVersion": "1.0.0", "name": "bench", "type": "portmap",
            "runtimeConfig": {"portMappings": mappings(i)}, "prevResult": res});
        let (_, t1) = plugin(
            &sb,
            "/usr/lib/cni/portmap",
            "DEL",
            &format!("c{i}"),
            &format!("n{i}"),
            &pm.to_string(),
        );
        let mut b = bridge.clone();
        b["prevResult"] = res.clone();
        let (_, t2) = plugin(
            &sb,
            "/usr/lib/cni/bridge",
            "DEL",
            &format!("c{i}"),
            &format!("n{i}"),
            &b.to_string(),
        );
        del.push(t1 + t2);
    }
    summary("bridge+host-local+portmap ADD", &add);
    summary("bridge+host-local+portmap DEL", &del);
}

#[test]
#[ignore]
fn bench_gc_of_1000_stale_attachments() {
    let berth = berth_under_test();
    let sb = Sandbox::new();
    let n = 1000;
    netns_batch(&sb, n);
    let conf = json!({"cniVersion": "1.1.0", "name": "gc", "type": "berth",
        "subnet": "10.82.0.0/20"})
    .to_string();
    for i in 0..n {
        plugin(
            &sb,
            &berth,
            "ADD",
            &format!("s{i}"),
            &format!("n{i}"),
            &conf,
        );
    }
    let gc = json!({"cniVersion": "1.1.0", "name": "gc", "type": "berth",
        "cni.dev/valid-attachments": []})
    .to_string();
    let (_, took) = plugin(&sb, &berth, "GC", "-", "n0", &gc);
    eprintln!("GC of {n} stale attachments (their namespaces alive): {took:?}");
    assert!(sb.endpoints().is_empty());
}

/// The shell line running berth's plugin for `verb` on container `i`
/// (4 published ports); a failure prints `FAIL<i>`.
fn plugin_line(verb: &str, i: usize) -> String {
    let berth = berth_under_test();
    let conf = json!({"cniVersion": "1.0.0", "name": "churn", "type": "berth",
        "subnet": "10.83.0.0/16", "runtimeConfig": {"portMappings": mappings(i)}});
    format!(
        "printf '%s' '{conf}' | CNI_COMMAND={verb} CNI_CONTAINERID=c{i} CNI_NETNS=/run/netns/n{i} \
         CNI_IFNAME=eth0 BERTH_STATE_DIR={STATE_DIR} {berth} >/dev/null 2>/run/err{i} || echo FAIL{i}"
    )
}

/// Runs `verb` for every container, in a row or all at once, timed
/// inside the sandbox (one shell, no per-call `nsenter`); panics on any
/// failure.
fn churn(sb: &Sandbox, verb: &str, at_once: bool) -> Duration {
    let sep = if at_once { " &\n" } else { "\n" };
    let lines: Vec<String> = (0..COUNT).map(|i| plugin_line(verb, i)).collect();
    let script = format!("{}{sep}wait", lines.join(sep));
    let start = Instant::now();
    let out = sb.sh_ok(&script);
    let took = start.elapsed();
    let failed = stdout(&out);
    assert!(
        !failed.contains("FAIL"),
        "{verb} ({}): {failed} {}",
        if at_once { "at once" } else { "in a row" },
        stdout(&sb.sh("cat /run/err*"))
    );
    took
}

/// After the ADDs: one ready endpoint, address and veth per container,
/// no address twice, four map elements each.
fn assert_consistent(sb: &Sandbox) {
    sb.assert_endpoints_distinct(COUNT, PORTS, "10.83.");
    assert_eq!(berth_veths(sb), COUNT);
}

fn berth_veths(sb: &Sandbox) -> usize {
    let veths = stdout(&sb.cmd("ip", &["-o", "link", "show", "type", "veth"]));
    veths.lines().filter(|l| l.contains(": vb")).count()
}

fn assert_nothing_left(sb: &Sandbox) {
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert_eq!(berth_veths(sb), 0);
    let elements = stdout(&sb.cmd("nft", &["list", "map", "inet", "berth", "published4_any"]));
    assert_eq!(elements.matches(" : 10.83.").count(), 0, "{elements}");
}

/// 100 ADDs with 4 ports each in a row, their DELs in a row; then, in a
/// fresh sandbox, 100 ADDs started at once and their DELs at once. The
/// state and the kernel are checked after each round (no error, no
/// duplicate address, every map element, nothing left after the DELs).
/// Alternated `ROUNDS` times, so that both see the same machine.
#[test]
#[ignore]
fn bench_parallel_adds_against_adds_in_a_row() {
    const ROUNDS: usize = 3;
    let (mut row_add, mut row_del, mut par_add, mut par_del) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        for at_once in [false, true] {
            let sb = Sandbox::new();
            netns_batch(&sb, COUNT);
            let add = churn(&sb, "ADD", at_once);
            assert_consistent(&sb);
            let del = churn(&sb, "DEL", at_once);
            assert_nothing_left(&sb);
            let (a, d) = if at_once {
                (&mut par_add, &mut par_del)
            } else {
                (&mut row_add, &mut row_del)
            };
            a.push(add);
            d.push(del);
        }
    }
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let ratio = |p: &[Duration], r: &[Duration]| {
        p.iter().sum::<Duration>().as_secs_f64() / r.iter().sum::<Duration>().as_secs_f64()
    };
    eprintln!("berth CNI, {COUNT} containers x {PORTS} ports, {ROUNDS} rounds each:");
    eprintln!(
        "  ADD in a row {} ms, at once {} ms (x{:.2}), no error",
        ms(&row_add),
        ms(&par_add),
        ratio(&par_add, &row_add)
    );
    eprintln!(
        "  DEL in a row {} ms, at once {} ms (x{:.2}), nothing left",
        ms(&row_del),
        ms(&par_del),
        ratio(&par_del, &row_del)
    );
}
