//! End-to-end tests of published ports (`-p`): every reachability path,
//! with br_netfilter on and off, HOST_IP binding, ranges, auto-picked ports,
//! clashes, the UDP conntrack flush, and no leftover map elements. Each test
//! builds its own sandbox; traffic goes only to its own namespaces.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::*;

/// Host address as seen from outside (the sandbox's uplink address).
const HOST: &str = "203.0.113.1";

/// The elements of one of berth's published-port maps (`nft -j`).
fn map_elements(sb: &Sandbox, map: &str) -> Vec<Value> {
    let out = sb.cmd("nft", &["-j", "list", "map", "inet", "berth", map]);
    assert_ok_ctx(&out, &format!("nft list map {map}"));
    let v = parse_json(&out, "nft -j");
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("map"))
        .and_then(|m| m.get("elem"))
        .and_then(|e| e.as_array().cloned())
        .unwrap_or_default()
}

fn all_elements(sb: &Sandbox) -> usize {
    ["published4", "published4_any", "published4_ranges"]
        .iter()
        .map(|m| map_elements(sb, m).len())
        .sum()
}

/// web (10.90.0.0/24) with server `c` publishing 8080->80/tcp and
/// 8081->81/udp and its neighbour `n`; other (10.91.0.0/24) with `o`.
fn five_paths(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("other", "10.91.0.0/24");
    for ns in ["c", "n", "o"] {
        sb.add_netns(ns);
    }
    let ep = sb.connect("web", "c", &["-p", "8080:80", "-p", "8081:81/udp"]);
    assert_eq!(ep["ports"].as_array().unwrap().len(), 2, "{ep}");
    sb.connect("web", "n", &[]);
    sb.connect("other", "o", &[]);
    let _tcp = sb.tcp_server(Some("c"), "0.0.0.0:80");
    let _udp = sb.udp_server(Some("c"), "0.0.0.0:81");

    for (port, udp) in [("8080", false), ("8081", true)] {
        let check = |from: Option<&str>, ip: &str| -> String {
            let addr = format!("{ip}:{port}");
            if udp {
                sb.assert_udp(from, &addr)
            } else {
                sb.assert_tcp(from, &addr)
            }
        };
        // 1. Another machine, with its address preserved.
        assert_eq!(check(Some(&inet.netns), HOST), inet.peer_ip, "source kept");
        // 2. The host itself: its addresses and 127.0.0.1.
        check(None, HOST);
        check(None, "10.90.0.1");
        check(None, "127.0.0.1");
        // 3. A neighbour on the same network.
        check(Some("n"), HOST);
        // 4. The container itself (hairpin).
        check(Some("c"), HOST);
        // 5. A container on another, isolated network.
        check(Some("o"), HOST);
    }
    // The isolation itself still holds: `o` cannot reach `c` directly.
    assert!(!sb.tcp(Some("o"), "10.90.0.2:80").status.success());
}

#[test]
fn published_ports_answer_on_every_path_with_br_netfilter() {
    five_paths(true);
}

#[test]
fn published_ports_answer_on_every_path_without_br_netfilter() {
    five_paths(false);
}

#[test]
fn host_ip_binds_a_mapping_to_that_address_only() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    sb.connect(
        "web",
        "c",
        &["-p", "127.0.0.1:9000:80", "-p", &format!("{HOST}:9001:80")],
    );
    let _srv = sb.tcp_server(Some("c"), "0.0.0.0:80");
    sb.assert_tcp(None, "127.0.0.1:9000");
    assert!(!sb.tcp(None, &format!("{HOST}:9000")).status.success());
    assert!(!sb
        .tcp(Some(&inet.netns), &format!("{HOST}:9000"))
        .status
        .success());
    assert_eq!(
        sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:9001")),
        inet.peer_ip
    );
    assert!(!sb.tcp(None, "127.0.0.1:9001").status.success());
    assert!(!sb.tcp(None, "10.90.0.1:9001").status.success());
}

#[test]
fn ranges_auto_ports_and_leftover_free_disconnect() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    let ep = sb.connect(
        "web",
        "c",
        &[
            "-p",
            "7000-7002:7000-7002",
            "-p",
            "7100-7101:80-81/udp",
            "-p",
            "80",
        ],
    );
    // The same-numbers range is one element; the shifted one, one per port
    // (any-address single ports live in the hash map published4_any).
    assert_eq!(map_elements(&sb, "published4_ranges").len(), 1);
    assert_eq!(map_elements(&sb, "published4_any").len(), 3);
    assert_eq!(map_elements(&sb, "published4").len(), 0);
    let ports = ep["ports"].as_array().unwrap();
    assert_eq!(ports[0]["host_port"], 7000);
    assert_eq!(ports[0]["host_port_end"], 7002);
    assert_eq!(ports[1]["proto"], "udp");
    let auto = ports[2]["host_port"].as_u64().unwrap();
    assert!((49153..=60999).contains(&auto), "{ep}");
    assert_eq!(ports[2]["container_port"], 80);
    assert_eq!(ports[2]["host_ip"], "0.0.0.0");

    let _servers: Vec<Bg> = ["7000", "7001", "7002", "80"]
        .iter()
        .map(|p| sb.tcp_server(Some("c"), &format!("0.0.0.0:{p}")))
        .collect();
    let _u: Vec<Bg> = ["80", "81"]
        .iter()
        .map(|p| sb.udp_server(Some("c"), &format!("0.0.0.0:{p}")))
        .collect();
    for p in ["7000", "7001", "7002", &auto.to_string()] {
        let seen = sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:{p}"));
        assert_eq!(seen, inet.peer_ip);
        sb.assert_tcp(None, &format!("127.0.0.1:{p}"));
    }
    assert!(!sb
        .tcp(Some(&inet.netns), &format!("{HOST}:7003"))
        .status
        .success());
    for p in ["7100", "7101"] {
        sb.assert_udp(Some(&inet.netns), &format!("{HOST}:{p}"));
    }

    // ps shows them, in text and JSON.
    let ps = sb.berth_ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:7000-7002->7000-7002/tcp"), "{ps}");
    assert!(ps.contains(&format!("0.0.0.0:{auto}->80/tcp")), "{ps}");
    assert_eq!(sb.endpoints()[0]["ports"].as_array().unwrap().len(), 3);
    let inspect = sb.berth_json(&["network", "inspect", "web", "--json"])[0].clone();
    assert_eq!(inspect["endpoints"][0]["ports"], ep["ports"]);

    // A second auto port does not reuse the first.
    sb.add_netns("d");
    let ep2 = sb.connect("web", "d", &["-p", "80"]);
    assert_ne!(ep2["ports"][0]["host_port"].as_u64().unwrap(), auto);

    sb.berth_ok(&["disconnect", "web", "c"]);
    sb.berth_ok(&["disconnect", "web", "d"]);
    assert_eq!(all_elements(&sb), 0, "leftover published elements");
    assert!(!sb
        .tcp(Some(&inet.netns), &format!("{HOST}:7000"))
        .status
        .success());
    // Freed ports can be published again.
    sb.connect("web", "c", &["-p", "7000-7002:7000-7002"]);
}

#[test]
fn a_taken_host_port_is_refused_naming_the_holder_and_nothing_changes() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("db", "10.91.0.0/24");
    sb.add_netns("c");
    sb.add_netns("d");
    sb.connect(
        "web",
        "c",
        &["-p", "8080:80", "-p", "127.0.0.1:5353:53/udp"],
    );
    let before = sb.snapshot();
    for spec in [
        "8080:81",
        "127.0.0.1:8080:80",
        "8079-8081:8079-8081",
        "5353:53/udp",
    ] {
        let out = sb.berth(&["connect", "db", "d", "-p", spec]);
        assert_fails_with(&out, 2, "already published by endpoint web/c");
        sb.snapshot().assert_same(&before, spec);
    }
    // Same port, other protocol or other address: fine.
    sb.connect(
        "db",
        "d",
        &["-p", "8080:80/udp", "-p", "127.0.0.2:5353:53/udp"],
    );
    // Two clashing specs in one request.
    sb.add_netns("e");
    let out = sb.berth(&["connect", "db", "e", "-p", "9000:80", "-p", "9000:81"]);
    assert_fails_with(&out, 2, "clashes with");
}

#[test]
fn bad_specs_get_one_line_and_change_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    let before = sb.snapshot();
    for spec in [
        "0:80",
        "70000:80",
        "80-90:80-85",
        "abc",
        "1.2.3.4.5:80:80",
        "80/icmp",
    ] {
        let out = sb.berth(&["connect", "web", "c", "-p", spec]);
        assert_fails_with(&out, 2, &format!("invalid port mapping {spec:?}"));
        let out = sb.berth(&["run", "--net", "web", "-p", spec, "--", "true"]);
        assert_fails_with(&out, 2, &format!("invalid port mapping {spec:?}"));
        sb.snapshot().assert_same(&before, spec);
    }
}

#[test]
fn dry_run_shows_the_element_batch_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    let before = sb.snapshot();
    let out = sb.berth_ok(&[
        "--dry-run",
        "connect",
        "web",
        "c",
        "-p",
        "8080:80",
        "-p",
        "53/udp",
    ]);
    sb.snapshot().assert_same(&before, "dry run");
    let add = out
        .lines()
        .find(|l| l.starts_with("nft 'add element inet berth published4_any {"))
        .unwrap_or_else(|| panic!("no element line in\n{out}"));
    assert!(add.contains("tcp . 8080 : 10.90.0.2 . 80"), "{add}");
    assert!(
        out.contains("conntrack -D -p udp --orig-port-dst 49153"),
        "{out}"
    );
    assert!(out.contains("hairpin on"), "{out}");
    // The line is what nft itself accepts.
    sb.sh_ok(add);
    assert_eq!(map_elements(&sb, "published4_any").len(), 2);
}

#[test]
fn udp_flows_follow_a_replaced_server_at_once() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    let client = |sb: &Sandbox| {
        let out = sb.probe(
            Some(&inet.netns),
            &[
                "udp-send",
                &format!("{HOST}:5000"),
                "--source-port",
                "40000",
                "--timeout-ms",
                "1500",
            ],
        );
        assert_ok_ctx(&out, "udp from a fixed source port");
        seen_source(&stdout(&out))
    };
    // A flow to the port exists before anything is published: its entry
    // (not DNATed) would otherwise catch the client's datagrams.
    assert!(!sb
        .probe(
            Some(&inet.netns),
            &[
                "udp-send",
                &format!("{HOST}:5000"),
                "--source-port",
                "40000",
                "--timeout-ms",
                "300"
            ],
        )
        .status
        .success());
    sb.add_netns("c1");
    sb.connect("web", "c1", &["-p", "5000:5000/udp"]);
    let srv1 = sb.udp_server(Some("c1"), "0.0.0.0:5000");
    assert_eq!(client(&sb), inet.peer_ip);
    drop(srv1);
    sb.berth_ok(&["disconnect", "web", "c1"]);
    sb.add_netns("c2");
    let ep = sb.connect("web", "c2", &["-p", "5000:5000/udp"]);
    assert_ne!(ep["ip"], "10.90.0.2");
    let _srv2 = sb.udp_server(Some("c2"), "0.0.0.0:5000");
    assert_eq!(client(&sb), inet.peer_ip);
}

#[test]
fn run_publishes_and_cleans_up_and_network_rm_force_removes_mappings() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("keep", "10.91.0.0/24");
    let mut run = sb.spawn_berth(
        &[
            "run",
            "--net",
            "web",
            "-p",
            "8090:80",
            "--",
            PROBE,
            "tcp-serve",
            "0.0.0.0:80",
        ],
        true,
    );
    assert_eq!(
        sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8090")),
        inet.peer_ip
    );
    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(run.wait_timeout(Duration::from_secs(10)).is_some());
    assert_eq!(all_elements(&sb), 0, "run left mappings behind");

    sb.add_netns("c");
    sb.add_netns("k");
    sb.connect(
        "web",
        "c",
        &["-p", "8080:80", "-p", "9000-9001:9000-9001/udp"],
    );
    sb.connect("keep", "k", &["-p", "8081:80"]);
    sb.berth_ok(&["network", "rm", "web", "--force"]);
    assert_eq!(map_elements(&sb, "published4_any").len(), 1);
    assert_eq!(map_elements(&sb, "published4_ranges").len(), 0);
    // The freed port can be published again.
    sb.add_netns("c2");
    sb.connect("keep", "c2", &["-p", "8080:80"]);
    sb.berth_ok(&["reset"]);
    let out = sb.cmd("nft", &["list", "table", "inet", "berth"]);
    assert!(!out.status.success(), "table left after reset");
}

#[test]
fn a_port_a_host_process_holds_is_refused_naming_it_unless_forced() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.92.0.0/24",
        "--internal",
    ]);
    sb.add_netns("c");
    let _host = sb.tcp_server(None, "0.0.0.0:8500");
    // Refused, each in one line naming the problem, with nothing changed:
    // a port a host process holds, an address the host does not have, an
    // internal network.
    for (args, names) in [
        (
            &["connect", "web", "c", "-p", "8500:80"][..],
            "berth-probe (pid",
        ),
        (
            &["connect", "web", "c", "-p", "192.0.2.77:8501:80"][..],
            "192.0.2.77",
        ),
        (&["connect", "iso", "c", "-p", "8502:80"][..], "--internal"),
    ] {
        sb.assert_refused(args, names);
    }
    let out = sb.berth_out_ok(&["connect", "web", "c", "-p", "8500:80", "--force-publish"]);
    let err = stderr(&out);
    assert!(err.contains("warning") && err.contains("tcp/8500"), "{err}");
    // An auto-picked port skips ports host sockets hold.
    let _host2 = sb.tcp_server(None, "0.0.0.0:49153");
    sb.add_netns("d");
    let ep = sb.connect("web", "d", &["-p", "80"]);
    assert_eq!(ep["ports"][0]["host_port"], 49154);
}

#[test]
fn sctp_is_published_when_the_kernel_has_it() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    let probe = sb.probe(
        Some("c"),
        &["sctp-connect", "127.0.0.1:1", "--timeout-ms", "200"],
    );
    if probe.status.code() == Some(3) {
        println!("skipped: {}", stderr(&probe).trim());
        return;
    }
    sb.connect("web", "c", &["-p", "3868:3868/sctp"]);
    let _srv = sb.spawn_in_netns(Some("c"), PROBE, &["sctp-serve", "0.0.0.0:3868"], true);
    let out = sb.probe(
        Some(&inet.netns),
        &["sctp-connect", &format!("{HOST}:3868")],
    );
    assert_ok_ctx(&out, "sctp from outside");
    assert_eq!(seen_source(&stdout(&out)), inet.peer_ip);
}

#[test]
fn a_port_only_waiting_out_time_wait_is_free_to_publish() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    // A host service that answered a connection and closed first, then
    // stopped listening: its side of the connection waits out TIME_WAIT on
    // the port, which no process holds any more.
    sb.sh_ok(
        "python3 -c 'import socket\n\
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
l.bind((\"127.0.0.1\", 8600)); l.listen()\n\
c = socket.create_connection((\"127.0.0.1\", 8600)); a, _ = l.accept()\n\
a.close(); c.recv(1); c.close(); l.close()'",
    );
    let waiting = stdout(&sb.sh_ok("ss -Htan state time-wait '( sport = :8600 )'"));
    assert!(
        !waiting.trim().is_empty(),
        "no TIME_WAIT on 8600 to test with"
    );
    let ep = sb.connect("web", "c", &["-p", "8600:80"]);
    assert_eq!(ep["ports"][0]["host_port"], 8600);
    // A listener still holds the port.
    let _host = sb.tcp_server(None, "0.0.0.0:8601");
    sb.add_netns("d");
    sb.assert_refused(
        &["connect", "web", "d", "-p", "8601:80"],
        "berth-probe (pid",
    );
}
