//! Benchmark (not a timed test; `#[ignore]`d): rootless networking side
//! by side in one run, interleaved over rounds so that a busy moment of
//! the machine falls on every variant alike.
//!
//! TCP throughput through a published port into a container (a client in
//! another namespace, through the host's port) and out of it (the
//! container sending to that namespace), for:
//!
//! - berth's rootless networks: pasta into the user's namespace, the
//!   user's bridge, berth's DNAT;
//! - pasta as a container's own network (`berth run` without root: pasta
//!   into the command's namespace, as later Podmans' `--network pasta`);
//! - slirp4netns as a container's own network with its own port
//!   forwarding (`berth run` with `BERTH_ROOTLESS_NET=slirp4netns`);
//! - rootless Podman 4.3.1 itself with its stock netavark on a bridge
//!   network: slirp4netns into its rootless network namespace, and its
//!   `rootlessport` for the published port;
//! - rootful berth, for reference.
//!
//! And connect latency: `berth connect` of an existing sandbox to a
//! network, rootless against rootful, one berth process each time (what a
//! user or a runtime pays).
//!
//! cargo test --release --test rootless_bench -- --ignored --nocapture

mod util;

use std::process::Output;
use std::time::{Duration, Instant};

use util::podman::{PodmanClient, STOCK_NETAVARK};
use util::podman_rootless::RootlessPodman;
use util::users::{add_user, User};
use util::{stdout, Sandbox, PROBE};

const ROUNDS: usize = 3;
const SECONDS: &str = "3";
const CONNECTS: usize = 20;

fn mbit(out: &Output, what: &str) -> f64 {
    util::assert_ok_ctx(out, what);
    stdout(out)
        .lines()
        .find_map(|l| l.strip_prefix("mbit_per_sec "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: no rate in {:?}", stdout(out)))
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn eventually(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One variant: how to measure into the container through its published
/// port, and over a connection the container opens: sending (out) and
/// receiving (down).
struct Variant<'a> {
    name: &'static str,
    into: Box<dyn Fn() -> f64 + 'a>,
    out: Box<dyn Fn(&str) -> f64 + 'a>,
}

/// Waits until a sink takes a stream on `target` from the internet
/// namespace.
fn wait_port(sb: &Sandbox, inet: &util::Internet, target: &str) {
    assert!(
        eventually(20, || sb
            .probe(
                Some(&inet.netns),
                &["tcp-throughput", target, "--seconds", "0.2"]
            )
            .status
            .success()),
        "{target} never took a stream"
    );
}

fn into_from_internet(sb: &Sandbox, inet: &util::Internet, port: u16) -> f64 {
    let target = format!("{}:{port}", inet.host_ip);
    let out = sb.probe(
        Some(&inet.netns),
        &["tcp-throughput", &target, "--seconds", SECONDS],
    );
    mbit(&out, &format!("into {target}"))
}

#[test]
#[ignore]
fn bench_rootless_throughput_and_connect_latency() {
    // The user's sandbox: berth rootless (networks, pasta, slirp4netns)
    // and rootful berth.
    let sb = Sandbox::with_pid_namespace();
    let user: User = add_user(&sb, "bench", 61200);
    let inet = sb.internet();
    let sink_out = format!("{}:9000", inet.peer_ip);
    let _outside_sink = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["tcp-sink", "0.0.0.0:9000"],
        true,
    );
    let _outside_source = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["tcp-source", "0.0.0.0:9001"],
        true,
    );

    // berth rootless network.
    user.berth_ok(
        &sb,
        &["network", "create", "bench", "--subnet", "10.70.0.0/24"],
    );
    user.berth_ok(
        &sb,
        &[
            "run",
            "-d",
            "--net",
            "bench",
            "--name",
            "rl",
            "-p",
            "8081:80",
            "--",
            PROBE,
            "tcp-sink",
            "0.0.0.0:80",
        ],
    );
    // pasta and slirp4netns, each the container's own network.
    let mut pasta_cmd = user.berth_command(
        &sb,
        &[
            "run",
            "-q",
            "-p",
            "8082:80",
            "--",
            PROBE,
            "tcp-sink",
            "0.0.0.0:80",
        ],
    );
    pasta_cmd.env("BERTH_ROOTLESS_NET", "pasta");
    let _pasta = sb.spawn(pasta_cmd, true);
    let mut slirp_cmd = user.berth_command(
        &sb,
        &[
            "run",
            "-q",
            "-p",
            "8083:80",
            "--",
            PROBE,
            "tcp-sink",
            "0.0.0.0:80",
        ],
    );
    slirp_cmd.env("BERTH_ROOTLESS_NET", "slirp4netns");
    let _slirp = sb.spawn(slirp_cmd, true);
    // Rootful berth.
    sb.create_network("rootful", "10.71.0.0/24");
    sb.berth_ok(&[
        "run",
        "-d",
        "--net",
        "rootful",
        "--name",
        "rf",
        "-p",
        "8085:80",
        "--",
        PROBE,
        "tcp-sink",
        "0.0.0.0:80",
    ]);

    // Rootless Podman 4.3.1 with its stock netavark, in a sandbox of its own.
    let podman = util::podman_rootless::missing()
        .map(|why| skip_line!("SKIP the rootless Podman variant: {why}"))
        .is_none()
        .then(|| RootlessPodman::new(STOCK_NETAVARK, "pbench", 61210));
    let pinet = podman.as_ref().map(|p| {
        let i = p.sb.internet();
        let servers = [
            p.sb.spawn_in_netns(Some("internet"), PROBE, &["tcp-sink", "0.0.0.0:9000"], true),
            p.sb.spawn_in_netns(
                Some("internet"),
                PROBE,
                &["tcp-source", "0.0.0.0:9001"],
                true,
            ),
        ];
        (i, servers)
    });
    if let Some(p) = &podman {
        p.ok(&["network", "create", "pn"]);
        p.run_server(
            "psink",
            &["--network", "pn", "-p", "8084:80"],
            "tcp-sink",
            "0.0.0.0:80",
        );
    }

    for port in [8081, 8082, 8083, 8085] {
        wait_port(&sb, &inet, &format!("{}:{port}", inet.host_ip));
    }
    if let (Some(p), Some((i, _))) = (&podman, &pinet) {
        wait_port(&p.sb, i, &format!("{}:8084", i.host_ip));
    }

    let source_out = format!("{}:9001", inet.peer_ip);
    // berth-probe's sending (tcp-throughput, to the sink) or receiving
    // (tcp-download, from the source) run after `prefix`.
    let tp = |prefix: &[&str], mode: &str| -> Vec<String> {
        let target = if mode == "tcp-download" {
            &source_out
        } else {
            &sink_out
        };
        let mut v: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        v.extend([
            PROBE.to_string(),
            mode.into(),
            target.clone(),
            "--seconds".into(),
            SECONDS.into(),
        ]);
        v
    };
    let helper_run = |helper: &'static str, mode: &str| {
        let args = tp(&["run", "-q", "--"], mode);
        let mut c = user.berth_command(&sb, &as_strs(&args));
        c.env("BERTH_ROOTLESS_NET", helper);
        mbit(&util::run_timeout(c, util::CMD_TIMEOUT), helper)
    };
    let mut variants: Vec<Variant> = vec![
        Variant {
            name: "berth rootless network (pasta + bridge + DNAT)",
            into: Box::new(|| into_from_internet(&sb, &inet, 8081)),
            out: Box::new(|mode| {
                let args = tp(&["exec", "rl", "--"], mode);
                mbit(&user.berth(&sb, &as_strs(&args)), "rl")
            }),
        },
        Variant {
            name: "pasta, the container's own network",
            into: Box::new(|| into_from_internet(&sb, &inet, 8082)),
            out: Box::new(|mode| helper_run("pasta", mode)),
        },
        Variant {
            name: "slirp4netns, the container's own network",
            into: Box::new(|| into_from_internet(&sb, &inet, 8083)),
            out: Box::new(|mode| helper_run("slirp4netns", mode)),
        },
        Variant {
            name: "rootful berth (bridge + DNAT on the host)",
            into: Box::new(|| into_from_internet(&sb, &inet, 8085)),
            out: Box::new(|mode| {
                let args = tp(&["exec", "rf", "--"], mode);
                mbit(&sb.berth(&as_strs(&args)), "rf")
            }),
        },
    ];
    if let (Some(p), Some((i, _))) = (&podman, &pinet) {
        variants.push(Variant {
            name: "rootless Podman 4.3.1 bridge (slirp4netns + rootlessport)",
            into: Box::new(move || into_from_internet(&p.sb, i, 8084)),
            out: Box::new(move |mode| {
                let port = if mode == "tcp-download" { 9001 } else { 9000 };
                let target = format!("{}:{port}", i.peer_ip);
                let out = p.podman(&[
                    "exec",
                    "psink",
                    "berth-probe",
                    mode,
                    &target,
                    "--seconds",
                    SECONDS,
                ]);
                mbit(&out, "psink")
            }),
        });
    }

    let mut results: Vec<[Vec<f64>; 3]> = vec![Default::default(); variants.len()];
    for round in 0..ROUNDS {
        for (i, v) in variants.iter().enumerate() {
            let a = (v.into)();
            let b = (v.out)("tcp-throughput");
            let c = (v.out)("tcp-download");
            eprintln!(
                "round {round}: {}: into {a:.0}, out {b:.0}, down {c:.0} Mbit/s",
                v.name
            );
            results[i][0].push(a);
            results[i][1].push(b);
            results[i][2].push(c);
        }
    }
    println!("\nTCP throughput, median of {ROUNDS} rounds of {SECONDS} s (Mbit/s):");
    println!("{:<60} {:>8} {:>8} {:>8}", "variant", "into", "out", "down");
    let mut medians = Vec::new();
    for (v, r) in variants.iter().zip(results.iter_mut()) {
        let m = [median(&mut r[0]), median(&mut r[1]), median(&mut r[2])];
        println!("{:<60} {:>8.0} {:>8.0} {:>8.0}", v.name, m[0], m[1], m[2]);
        medians.push((v.name, m));
    }
    let (_, b) = medians[0];
    for (name, m) in &medians[1..] {
        println!(
            "berth rootless network / {name}: into x{:.2}, out x{:.2}, down x{:.2}",
            b[0] / m[0],
            b[1] / m[1],
            b[2] / m[2]
        );
    }

    // Connect latency: disconnect untimed, connect timed, one process each.
    user.berth_ok(
        &sb,
        &[
            "run", "-d", "--net", "bench", "--name", "lat", "--", "sleep", "600",
        ],
    );
    sb.berth_ok(&[
        "run", "-d", "--net", "rootful", "--name", "lat", "--", "sleep", "600",
    ]);
    let mut rootless = Vec::new();
    let mut rootful = Vec::new();
    for _ in 0..CONNECTS {
        user.berth_ok(&sb, &["disconnect", "bench", "lat"]);
        let t = Instant::now();
        user.berth_ok(&sb, &["connect", "bench", "lat"]);
        rootless.push(t.elapsed().as_secs_f64() * 1000.0);
        sb.berth_ok(&["disconnect", "rootful", "lat"]);
        let t = Instant::now();
        sb.berth_ok(&["connect", "rootful", "lat"]);
        rootful.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (rl, rf) = (median(&mut rootless), median(&mut rootful));
    println!(
        "\nconnect latency, median of {CONNECTS} (one berth process each): rootless {rl:.1} ms, rootful {rf:.1} ms, ratio {:.2}",
        rl / rf
    );
}
