//! Podman itself, driven as a user would, with berth installed as its
//! `netavark` (and once with the stock netavark, which validates the
//! harness: a failure there is the harness's, not berth's). Skipped, loudly,
//! when Podman is not installed. See tests/util/podman.rs.

mod util;

use util::podman::{podman_or_skip, PodmanClient, STOCK_NETAVARK};
use util::*;

/// The harness works with the netavark Podman ships: a network, a
/// container with a published port, and traffic to it from the host.
#[test]
fn harness_runs_podman_with_stock_netavark() {
    let Some(p) = podman_or_skip("harness_runs_podman_with_stock_netavark", STOCK_NETAVARK) else {
        return;
    };
    p.ok(&["network", "create", "--subnet", "10.77.0.0/24", "n1"]);
    p.run_server(
        "c1",
        &["--network", "n1", "-p", "8080:80"],
        "tcp-serve",
        "0.0.0.0:80",
    );
    // From 127.0.0.1 the connection is masqueraded to the gateway.
    let seen = p.sb.assert_tcp(None, "127.0.0.1:8080");
    assert_eq!(seen, "10.77.0.1", "source the container saw");
    let ip = p.ip_of("c1", "n1");
    assert!(in_subnet(&ip, "10.77.0.0/24"), "{ip}");
    p.ok(&["rm", "-f", "-t", "0", "c1"]);
}

/// Waits up to 10 s for `cond`, failing with `what`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "not true after 10 s: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The acceptance scenario: Podman with berth as its netavark, driven as a
/// user would. One sandbox and a few containers, shared by every check to
/// keep the run short.
#[test]
fn podman_runs_its_containers_on_berth() {
    // The harness links BERTH into Podman's helper directory as `netavark`.
    let Some(p) = podman_or_skip("podman_runs_its_containers_on_berth", BERTH) else {
        return;
    };
    let sb = &p.sb;
    // Podman asks its network backend for its version.
    let info = p.ok(&["info", "--format", "{{.Host.NetworkBackend}}"]);
    assert_eq!(info, "netavark");
    let inet = sb.internet();
    let public = sb.tcp_server(Some(&inet.netns), &format!("{}:80", inet.public_ip));

    p.ok(&["network", "create", "--subnet", "10.77.0.0/24", "web"]);
    p.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.78.0.0/24",
        "int",
    ]);
    p.ok(&[
        "network",
        "create",
        "-o",
        "isolate=true",
        "--subnet",
        "10.79.0.0/24",
        "iso",
    ]);

    // A server with a fixed address and MAC, a port, a port range and UDP.
    p.run_server(
        "srv",
        &[
            "--network",
            "web",
            "--ip",
            "10.77.0.50",
            "--mac-address",
            "02:11:22:33:44:55",
            "-p",
            "8080:80",
            "-p",
            "9000-9002:9000-9002",
            "-p",
            "5353:53/udp",
        ],
        "tcp-serve",
        "0.0.0.0:80",
    );
    p.ok(&[
        "exec",
        "-d",
        "srv",
        "berth-probe",
        "tcp-serve",
        "0.0.0.0:9001",
    ]);
    p.ok(&[
        "exec",
        "-d",
        "srv",
        "berth-probe",
        "udp-serve",
        "0.0.0.0:53",
    ]);
    // Clients: a neighbour, one on two networks, one isolated, one internal,
    // one on the default network, one with no network.
    let idle = ["tcp-serve", "0.0.0.0:7"];
    p.run_server("nb", &["--network", "web"], idle[0], idle[1]);
    p.run_server("two", &["--network", "web,iso"], idle[0], idle[1]);
    p.run_server("isoc", &["--network", "iso"], idle[0], idle[1]);
    p.run_server("intc", &["--network", "int"], idle[0], idle[1]);
    p.run_server("defc", &[], idle[0], idle[1]);
    p.run_server("nonet", &["--network", "none"], idle[0], idle[1]);

    // berth sees Podman's networks and containers, marked as Podman's.
    for (name, bridge) in [
        ("web", "podman1"),
        ("int", "podman2"),
        ("iso", "podman3"),
        ("podman", "podman0"),
    ] {
        let n = sb.network(name);
        assert_eq!(n["owner"], "podman", "{n}");
        assert_eq!(n["bridge"], bridge, "{n}");
    }
    assert_eq!(sb.network("int")["internal"], true);
    let eps = sb.endpoints();
    let srv_ep = eps
        .iter()
        .find(|e| e["name"] == "srv")
        .expect("srv in berth ps");
    assert_eq!(srv_ep["ip"], "10.77.0.50");
    assert_eq!(srv_ep["mac"], "02:11:22:33:44:55");
    assert_eq!(srv_ep["owner"], "podman");
    let srv_id = p.ok(&["inspect", "srv", "--format", "{{.Id}}"]);
    assert_eq!(srv_ep["container_id"], srv_id.as_str());
    assert_eq!(srv_ep["ports"].as_array().unwrap().len(), 3, "{srv_ep}");
    assert_eq!(p.ip_of("srv", "web"), "10.77.0.50");
    let mac = p.ok(&[
        "inspect",
        "srv",
        "--format",
        "{{.NetworkSettings.Networks.web.MacAddress}}",
    ]);
    assert_eq!(mac, "02:11:22:33:44:55");
    // Two networks: two interfaces, two addresses; none: only lo.
    let two_web = p.ip_of("two", "web");
    let two_iso = p.ip_of("two", "iso");
    assert!(in_subnet(&two_web, "10.77.0.0/24") && in_subnet(&two_iso, "10.79.0.0/24"));
    assert_eq!(eps.iter().filter(|e| e["name"] == "two").count(), 2);
    assert!(!eps.iter().any(|e| e["name"] == "nonet"));
    let nonet_links = p.ok(&["exec", "nonet", "ip", "-o", "link"]);
    assert_eq!(nonet_links.lines().count(), 1, "{nonet_links}");

    // Names, through berth's DNS on the network's gateway (the
    // resolv.conf Podman writes from the answer of berth's setup): the
    // container's name, NAME.dns.podman, and none from another network.
    for name in ["srv", "srv.dns.podman", "SRV"] {
        let found = p.ok(&["exec", "nb", "nslookup", name]);
        assert!(found.contains("10.77.0.50"), "nslookup {name}: {found}");
    }
    let other = p.podman(&["exec", "nb", "nslookup", "isoc"]);
    assert!(
        !other.status.success(),
        "isoc (another network) resolved from web"
    );

    let check_published = |when: &str| {
        // From outside: the client's address is kept.
        let seen = sb.assert_tcp(Some(&inet.netns), &format!("{}:8080", inet.host_ip));
        assert_eq!(seen, inet.peer_ip, "{when}: outside -> 8080");
        // From the host, by 127.0.0.1 and by its address.
        sb.assert_tcp(None, "127.0.0.1:8080");
        sb.assert_tcp(None, &format!("{}:8080", inet.host_ip));
        // The range and UDP.
        sb.assert_tcp(Some(&inet.netns), &format!("{}:9001", inet.host_ip));
        sb.assert_udp(Some(&inet.netns), &format!("{}:5353", inet.host_ip));
        // From another container, through the host's address.
        let out = p.probe_in("nb", &["tcp-connect", &format!("{}:8080", inet.host_ip)]);
        assert_ok_ctx(&out, &format!("{when}: container nb -> host:8080"));
    };
    check_published("after run");
    // One firewall: berth's tables (routing and anti-spoofing), and no
    // netavark/iptables chains.
    let tables = stdout(&sb.cmd("nft", &["list", "tables"]));
    assert_eq!(
        tables.trim(),
        "table inet berth\ntable bridge berth",
        "{tables}"
    );

    // Containers reach each other by address; the default network and the
    // web network go out; isolated and internal networks hold.
    assert_ok_ctx(
        &p.probe_in("nb", &["tcp-connect", "10.77.0.50:80"]),
        "nb -> srv",
    );
    assert_ok_ctx(
        &p.probe_in("two", &["tcp-connect", "10.77.0.50:80"]),
        "two -> srv",
    );
    let public_addr = format!("{}:80", inet.public_ip);
    assert_ok_ctx(
        &p.probe_in("nb", &["tcp-connect", &public_addr]),
        "web -> internet",
    );
    assert_ok_ctx(
        &p.probe_in("defc", &["tcp-connect", &public_addr]),
        "podman -> internet",
    );
    let short = ["--timeout-ms", "500"];
    let denied = |from: &str, to: &str| {
        let out = p.probe_in(from, &["tcp-connect", to, short[0], short[1]]);
        assert!(
            !out.status.success(),
            "{from} -> {to} should be blocked: {}",
            stdout(&out)
        );
    };
    denied("isoc", "10.77.0.50:80");
    denied("defc", "10.77.0.50:80");
    denied("intc", &public_addr);
    denied("intc", &format!("{two_iso}:7"));
    let intc_routes = p.ok(&["exec", "intc", "ip", "route"]);
    assert!(
        !intc_routes.contains("default"),
        "internal: no default route: {intc_routes}"
    );

    // `podman network reload` keeps the published ports working.
    p.ok(&["network", "reload", "srv"]);
    check_published("after reload");
    p.ok(&["network", "reload", "--all"]);
    check_published("after reload --all");

    // `podman network connect/disconnect` on a running container with
    // published ports: one network more, then less; the ports stay.
    p.ok(&["network", "connect", "iso", "srv"]);
    let srv_iso = p.ip_of("srv", "iso");
    assert!(in_subnet(&srv_iso, "10.79.0.0/24"), "{srv_iso}");
    let to_iso = format!("{srv_iso}:80");
    assert_ok_ctx(
        &p.probe_in("isoc", &["tcp-connect", &to_iso]),
        "isoc -> srv on iso",
    );
    check_published("after network connect");
    p.ok(&["network", "disconnect", "iso", "srv"]);
    denied("isoc", &to_iso);
    check_published("after network disconnect");

    // `podman rm -f` leaves no veth, map element or state row; the network
    // goes with its last container. (Podman's own cleanup process may be
    // the one tearing down, just after `rm` returns: hence "eventually".)
    let veth = srv_ep["host_ifname"].as_str().unwrap().to_string();
    p.ok(&["rm", "-f", "-t", "0", "srv"]);
    eventually("srv's veth, map elements and state row are gone", || {
        let nft = stdout(&sb.cmd("nft", &["list", "table", "inet", "berth"]));
        sb.link(None, &veth).is_none()
            && !nft.contains("10.77.0.50")
            && !sb.endpoints().iter().any(|e| e["name"] == "srv")
    });
    p.ok(&["rm", "-f", "-t", "0", "nb", "two"]);
    eventually("network web and bridge podman1 are gone", || {
        !sb.networks().iter().any(|n| n["name"] == "web") && sb.link(None, "podman1").is_none()
    });
    p.ok(&["rm", "-f", "-t", "0", "isoc", "intc", "defc", "nonet"]);
    eventually("no network or endpoint is left", || {
        sb.networks().is_empty() && sb.endpoints().is_empty()
    });
    let nft = stdout(&sb.cmd("nft", &["list", "ruleset"]));
    assert!(
        !nft.contains("berth"),
        "table inet berth outlived the last network:\n{nft}"
    );
    drop(public);
}
