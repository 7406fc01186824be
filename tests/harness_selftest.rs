//! Checks of the test harness and of `berth-probe` themselves, using only
//! `ip` inside a sandbox (no berth CLI), so a failure in the core tests can
//! be told apart from a broken harness.

mod util;

use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

#[test]
fn sandbox_is_isolated_and_cleaned_up() {
    let sb = Sandbox::new();
    assert_ne!(
        std::fs::read_link(sb.host_netns_path()).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    assert_eq!(sb.link_names(None), vec!["lo"]);
    assert!(sb.netns_list().is_empty());
    let name = format!("selftest{}", std::process::id());
    sb.add_netns(&name);
    assert_eq!(sb.netns_list(), vec![name.clone()]);
    // The real host's /run/netns does not see it.
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    let holder = sb.pid();
    let bg = sb.spawn_in_netns(
        Some(&name),
        "sh",
        &["-c", "echo ready; exec sleep 1000"],
        true,
    );
    let bg_pid = bg.pid();
    assert!(sb.processes().contains(&bg_pid));
    std::mem::forget(bg); // left for the sandbox's drop to end
    drop(sb);
    std::thread::sleep(Duration::from_millis(100));
    for pid in [holder, bg_pid] {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        assert!(!alive, "process {pid} survived the sandbox");
    }
}

#[test]
fn probes_work_between_hand_made_namespaces() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    let _t = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8000");
    let _u = sb.udp_server(Some(&inet.netns), "0.0.0.0:8001");
    assert_eq!(sb.assert_tcp(None, "198.51.100.1:8000"), inet.host_ip);
    assert_eq!(sb.assert_udp(None, "198.51.100.1:8001"), inet.host_ip);
    sb.assert_ping(None, &inet.public_ip);
    sb.assert_ping(Some(&inet.netns), &inet.host_ip);

    // Failures are reported, bounded, with exit 1.
    let out = sb.probe(
        None,
        &["tcp-connect", "198.51.100.1:8999", "--timeout-ms", "500"],
    );
    assert_fails_with(&out, 1, "refused");
    let out = sb.probe(None, &["ping", "203.0.113.77", "--timeout-ms", "500"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = sb.probe(None, &["udp-send", "203.0.113.77:9", "--timeout-ms", "500"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = sb.probe(None, &["tcp-connect", "nonsense"]);
    assert_fails_with(&out, 2, "nonsense");

    let _sink = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["tcp-sink", "0.0.0.0:8002"],
        true,
    );
    let out = sb.probe(
        None,
        &["tcp-throughput", "198.51.100.1:8002", "--seconds", "0.3"],
    );
    assert_ok(&out);
    assert!(stdout(&out).starts_with("mbit_per_sec "), "{out:?}");
    let out = sb.probe(None, &["tcp-rate", "198.51.100.1:8000", "--seconds", "0.3"]);
    assert_ok(&out);
    assert!(stdout(&out).starts_with("connections_per_sec "), "{out:?}");
}

#[test]
fn snapshot_is_stable_and_sees_changes() {
    let sb = Sandbox::new();
    sb.internet();
    sb.add_veth("v0", "v1");
    let a = sb.snapshot();
    std::thread::sleep(Duration::from_millis(1500));
    sb.snapshot().assert_same(&a, "nothing was done");
    sb.sh_ok("ip addr add 10.5.0.1/24 dev v0");
    assert_ne!(sb.snapshot(), a, "an address change must show");
}

#[test]
fn background_process_signal_and_wait() {
    let sb = Sandbox::new();
    let mut bg = sb.spawn_in_netns(
        None,
        "sh",
        &[
            "-c",
            "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        ],
        true,
    );
    assert!(bg.running());
    bg.signal(Signal::SIGTERM);
    let st = bg.wait_timeout(Duration::from_secs(5)).expect("exited");
    assert_eq!(st.code(), Some(3));
    let out = run_timeout(
        sb.command(None, "sleep", &["5"]),
        Duration::from_millis(200),
    );
    assert!(!out.status.success() && stderr(&out).contains("killed"));
}
