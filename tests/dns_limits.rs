//! The DNS server's limits, end to end: what one container (or a host on
//! no berth network) can hold of the server is its own share, and never
//! another network's. Each test has an attacker on network `a`, a
//! well-behaved neighbour on the same network and a client on network
//! `b`; the upstream resolver is `berth-probe dns-serve` in the sandbox's
//! "internet" namespace, which never answers `slow.*` names.
//!
//! Also the two classes of TCP denial of service aardvark-dns had: a
//! connection that sends nothing, or part of a message, must hold up no
//! one else (CVE-2024-8418: connections served one at a time), and a
//! truncated message followed by a reset must not send the server into a
//! busy loop (CVE-2026-35406).

mod util;

use std::time::{Duration, Instant};

use util::dns::*;
use util::*;

const GW_A: &str = "10.90.0.1";
const GW_B: &str = "10.92.0.1";

/// Networks `a` (attacker `bad`, neighbour `good`) and `b` (`other`), and
/// an upstream in the internet namespace that the host's resolv.conf
/// names. Returns the upstream (kept alive by the caller).
fn setup(sb: &Sandbox) -> (Internet, Bg) {
    let inet = sb.internet();
    let upstream = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["dns-serve", &format!("{}:53", inet.public_ip)],
        true,
    );
    host_resolv(sb, &format!("nameserver {}\\n", inet.public_ip));
    sb.create_network("a", "10.90.0.0/24");
    sb.create_network("b", "10.92.0.0/24");
    for (net, ns) in [("a", "bad"), ("a", "good"), ("b", "other")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    (inet, upstream)
}

/// Both clients that did nothing wrong are served over TCP, by name.
fn innocent_tcp_clients_are_served(sb: &Sandbox, when: &str) {
    assert_eq!(
        short(sb, "other", GW_B, &["+tcp", "other"]),
        vec!["10.92.0.2"],
        "{when}: another network over TCP"
    );
    assert_eq!(
        short(sb, "good", GW_A, &["+tcp", "bad"]),
        vec!["10.90.0.2"],
        "{when}: the neighbour on the same network over TCP"
    );
}

/// `connected N failed N still-open N` from `berth-probe tcp-hold`.
fn held(out: &str) -> (usize, usize) {
    let num = |key: &str| -> usize {
        out.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {out:?}"))
    };
    (num("connected"), num("still-open"))
}

#[test]
fn tcp_connections_held_by_one_container_stop_no_one_else() {
    if !have_dig("tcp_connections_held_by_one_container_stop_no_one_else") {
        return;
    }
    let sb = Sandbox::new();
    let _up = setup(&sb);
    innocent_tcp_clients_are_served(&sb, "before");
    // More connections than the whole server used to allow, held idle.
    let mut hold = sb.spawn_in_netns(
        Some("bad"),
        PROBE,
        &[
            "tcp-hold",
            &format!("{GW_A}:53"),
            "--count",
            "300",
            "--seconds",
            "4",
        ],
        true,
    );
    innocent_tcp_clients_are_served(&sb, "while one container holds 300 connections");
    assert!(hold.wait_timeout(Duration::from_secs(20)).is_some());
    let (connected, open) = held(&hold.stdout());
    // The kernel completes the handshakes; the server resets the excess.
    assert!(connected > 200, "{}", hold.stdout());
    // Its own share, and not one more, stayed open.
    assert!(open > 0 && open <= 16, "{}", hold.stdout());
}

#[test]
fn tcp_connections_from_a_host_on_no_berth_network_are_closed_at_once() {
    if !have_dig("tcp_connections_from_a_host_on_no_berth_network_are_closed_at_once") {
        return;
    }
    let sb = Sandbox::new();
    let (inet, _up) = setup(&sb);
    // The "internet" routes to the host, and so to the gateway address.
    let mut hold = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &[
            "tcp-hold",
            &format!("{GW_A}:53"),
            "--count",
            "300",
            "--seconds",
            "3",
        ],
        true,
    );
    innocent_tcp_clients_are_served(&sb, "while a foreign host opens 300 connections");
    assert_eq!(
        status(&sb, &inet.netns, GW_A, &["www.example.com"]),
        "REFUSED"
    );
    assert!(hold.wait_timeout(Duration::from_secs(20)).is_some());
    let (connected, open) = held(&hold.stdout());
    assert!(connected > 0, "{}", hold.stdout());
    assert_eq!(
        open,
        0,
        "a refused client kept connections: {}",
        hold.stdout()
    );
}

#[test]
fn forwards_flooded_by_one_container_leave_other_networks_served() {
    if !have_dig("forwards_flooded_by_one_container_leave_other_networks_served") {
        return;
    }
    let sb = Sandbox::new();
    let _up = setup(&sb);
    assert_eq!(status(&sb, "other", GW_B, &["www.example.com"]), "NOERROR");
    // 1000 queries/s that upstream never answers: each would hold a slot
    // for the 4 s budget.
    let mut flood = sb.spawn_in_netns(
        Some("bad"),
        PROBE,
        &[
            "dns-flood",
            &format!("{GW_A}:53"),
            "--name",
            "slow.example.com",
            "--qps",
            "1000",
            "--seconds",
            "7",
            "--linger-ms",
            "500",
        ],
        false,
    );
    std::thread::sleep(Duration::from_millis(2500));
    let until = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0;
    while Instant::now() < until {
        assert_eq!(
            status(&sb, "other", GW_B, &["www.example.com"]),
            "NOERROR",
            "another network, round {rounds}"
        );
        assert_eq!(
            status(&sb, "good", GW_A, &["www.example.com"]),
            "NOERROR",
            "the neighbour on the same network, round {rounds}"
        );
        rounds += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(flood.wait_timeout(Duration::from_secs(20)).is_some());
    let out = flood.stdout();
    let num = |key: &str| -> u64 {
        out.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {out:?}"))
    };
    // The flood itself was told at once that it is over its share.
    assert!(num("sent") > 5000, "{out}");
    assert!(num("servfail") > 3000, "{out}");
    eprintln!("flood: {}", out.trim());
}

#[test]
fn a_silent_or_half_sent_tcp_connection_holds_up_no_one() {
    if !have_dig("a_silent_or_half_sent_tcp_connection_holds_up_no_one") {
        return;
    }
    let sb = Sandbox::new();
    let _up = setup(&sb);
    let addr = format!("{GW_A}:53");
    let _idle = sb.spawn_in_netns(
        Some("bad"),
        PROBE,
        &["tcp-hold", &addr, "--count", "1", "--seconds", "8"],
        true,
    );
    let _partial = sb.spawn_in_netns(
        Some("bad"),
        PROBE,
        &[
            "tcp-hold",
            &addr,
            "--count",
            "1",
            "--seconds",
            "8",
            "--partial",
        ],
        true,
    );
    for (ns, gw, name, ip) in [
        ("good", GW_A, "good", "10.90.0.3"),
        ("other", GW_B, "other", "10.92.0.2"),
        ("bad", GW_A, "good", "10.90.0.3"),
    ] {
        let t = Instant::now();
        let out = dig(&sb, ns, gw, &["+short", "+time=1", name]);
        assert_eq!(stdout(&out).trim(), ip, "{ns} over UDP");
        let out = dig(&sb, ns, gw, &["+short", "+time=1", "+tcp", name]);
        assert_eq!(stdout(&out).trim(), ip, "{ns} over TCP");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{ns}: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn truncated_tcp_queries_reset_by_the_client_cost_no_cpu_afterwards() {
    if !have_dig("truncated_tcp_queries_reset_by_the_client_cost_no_cpu_afterwards") {
        return;
    }
    let sb = Sandbox::new();
    let _up = setup(&sb);
    let pid = server_pid(&sb).expect("the server runs");
    let out = sb.probe(
        Some("bad"),
        &["tcp-reset", &format!("{GW_A}:53"), "--count", "50"],
    );
    assert_ok_ctx(&out, "tcp-reset");
    // Some may have met the client's share full and been reset first.
    let done: u32 = stdout(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(done >= 16, "{}", stdout(&out));
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    // 2 s at 100 ticks/s: a busy loop would spend about 200.
    assert!(
        spent < 20,
        "the server spent {spent} ticks in 2 s after the resets"
    );
    assert_eq!(server_pid(&sb), Some(pid));
    assert_eq!(
        short(&sb, "good", GW_A, &["+tcp", "bad"]),
        vec!["10.90.0.2"]
    );
    assert_eq!(short(&sb, "other", GW_B, &["other"]), vec!["10.92.0.2"]);
}
