//! End-to-end tests of berth's egress: masquerade to a fake internet, no
//! way in from it, and `--uplink` policy routing, each in its own sandbox.

mod util;

use util::*;

/// Wires `c` to the host by hand the way a network would (address, default
/// route via the host), without berth: nothing forwards or masquerades.
fn wire_by_hand(sb: &Sandbox, ns: &str) {
    sb.sh_ok(&format!(
        "ip link add vhand type veth peer name eth0 netns {ns} && \
         ip addr add 10.90.0.1/24 dev vhand && ip link set vhand up && \
         ip -n {ns} addr add 10.90.0.2/24 dev eth0 && ip -n {ns} link set eth0 up && \
         ip -n {ns} route add default via 10.90.0.1"
    ));
}

#[test]
fn containers_reach_the_internet_masqueraded_only_once_berth_made_the_network() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    let public = format!("{}:8080", inet.public_ip);
    sb.add_netns("c");

    // Without berth: the same addressing does not get out.
    wire_by_hand(&sb, "c");
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), "0");
    assert!(
        !sb.tcp(Some("c"), &public).status.success(),
        "reached the internet without berth"
    );
    sb.sh_ok("ip link del vhand");

    sb.create_network("alpha", "10.90.0.0/24");
    sb.connect("alpha", "c", &[]);
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), "1");
    let seen = sb.assert_tcp(Some("c"), &public);
    assert_eq!(
        seen, inet.host_ip,
        "the server sees the host's uplink address"
    );
    let _usrv = sb.udp_server(Some(&inet.netns), "0.0.0.0:8081");
    let seen = sb.assert_udp(Some("c"), &format!("{}:8081", inet.peer_ip));
    assert_eq!(seen, inet.host_ip);
    sb.assert_ping(Some("c"), &inet.public_ip);
}

#[test]
fn no_masquerade_keeps_the_container_address() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.sh_ok("ip -n internet route add 10.90.0.0/24 via 203.0.113.1");
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    sb.berth_ok(&[
        "network",
        "create",
        "routed",
        "--subnet",
        "10.90.0.0/24",
        "--no-masquerade",
    ]);
    sb.add_netns("c");
    sb.connect("routed", "c", &[]);
    let seen = sb.assert_tcp(Some("c"), &format!("{}:8080", inet.public_ip));
    assert_eq!(seen, "10.90.0.2");
}

#[test]
fn the_internet_cannot_open_connections_to_a_container_but_replies_come_back() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("c");
    sb.connect("alpha", "c", &[]);
    // The internet knows the way to the subnet, so only the firewall stops it.
    sb.sh_ok("ip -n internet route add 10.90.0.0/24 via 203.0.113.1");
    let _in_c = sb.tcp_server(Some("c"), "0.0.0.0:7000");
    let _udp_c = sb.udp_server(Some("c"), "0.0.0.0:7001");
    assert!(!sb.tcp(Some(&inet.netns), "10.90.0.2:7000").status.success());
    assert!(!sb.udp(Some(&inet.netns), "10.90.0.2:7001").status.success());
    assert!(!sb.ping(Some(&inet.netns), "10.90.0.2").status.success());
    // The host itself still reaches the container (not forwarded).
    assert_eq!(sb.assert_tcp(None, "10.90.0.2:7000"), "10.90.0.1");
    // Container-initiated traffic and its replies pass.
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    let _usrv = sb.udp_server(Some(&inet.netns), "0.0.0.0:8081");
    sb.assert_tcp(Some("c"), &format!("{}:8080", inet.public_ip));
    sb.assert_udp(Some("c"), &format!("{}:8081", inet.public_ip));
}

/// A second way out: namespace `isp2` on `uplink1` (host 10.55.0.1/24, isp2
/// 10.55.0.2/24), which also holds the "public" 198.51.100.1.
fn second_uplink(sb: &Sandbox) {
    sb.add_netns("isp2");
    sb.sh_ok(
        "ip link add uplink1 type veth peer name eth0 netns isp2 && \
         ip addr add 10.55.0.1/24 dev uplink1 && ip link set uplink1 up && \
         ip -n isp2 addr add 10.55.0.2/24 dev eth0 && ip -n isp2 link set eth0 up && \
         ip -n isp2 addr add 198.51.100.1/32 dev lo && \
         ip -n isp2 route add default via 10.55.0.1",
    );
}

#[test]
fn uplink_sends_a_networks_traffic_out_of_the_chosen_interface() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    second_uplink(&sb);
    let _srv1 = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    let _srv2 = sb.tcp_server(Some("isp2"), "0.0.0.0:8080");
    let public = format!("{}:8080", inet.public_ip);

    // uplink1 has no gateway in the host's routes: it must be given.
    let before = sb.snapshot();
    let out = sb.berth(&[
        "network",
        "create",
        "viaisp2",
        "--subnet",
        "10.91.0.0/24",
        "--uplink",
        "uplink1",
    ]);
    assert_fails_with(&out, 2, "uplink1");
    let out = sb.berth(&[
        "network",
        "create",
        "viaisp2",
        "--subnet",
        "10.91.0.0/24",
        "--uplink",
        "nosuch0",
    ]);
    assert_fails_with(&out, 2, "nosuch0");
    let out = sb.berth(&[
        "network",
        "create",
        "viaisp2",
        "--subnet",
        "10.91.0.0/24",
        "--uplink",
        "uplink1",
        "--uplink-gateway",
        "10.66.0.9",
    ]);
    assert_fails_with(&out, 2, "10.66.0.9");
    sb.snapshot().assert_same(&before, "bad --uplink input");

    sb.create_network("plain", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "viaisp2",
        "--subnet",
        "10.91.0.0/24",
        "--uplink",
        "uplink1",
        "--uplink-gateway",
        "10.55.0.2",
    ]);
    // The default uplink's gateway is found in the host's routes.
    sb.berth_ok(&[
        "network",
        "create",
        "viainet",
        "--subnet",
        "10.92.0.0/24",
        "--uplink",
        "uplink0",
    ]);
    let n = sb.network("viainet");
    assert_eq!(n["uplink_gateway"], "203.0.113.2", "{n}");

    for (net, ns) in [("plain", "p"), ("viaisp2", "v2"), ("viainet", "vi")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    assert_eq!(sb.assert_tcp(Some("p"), &public), "203.0.113.1");
    assert_eq!(sb.assert_tcp(Some("v2"), &public), "10.55.0.1");
    assert_eq!(sb.assert_tcp(Some("vi"), &public), "203.0.113.1");
    // The host reaches the uplinked containers directly (not via the uplink).
    let _c = sb.tcp_server(Some("v2"), "0.0.0.0:7000");
    assert_eq!(sb.assert_tcp(None, "10.91.0.2:7000"), "10.91.0.1");
    sb.assert_ping(Some("v2"), "10.91.0.1");

    // The oracle: berth's rule and table.
    let rules = sb.ip_json(&["-4", "rule", "show"]);
    let ours: Vec<_> = as_array(rules)
        .into_iter()
        .filter(|r| r["src"] == "10.91.0.0")
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["iif"], "berth-viaisp2", "{ours:?}");
    let table = ours[0]["table"].as_str().unwrap().to_string();
    let routes = sb.ip_json(&["-4", "route", "show", "table", &table]);
    assert_eq!(as_array(routes.clone()).len(), 1, "{routes}");
    assert_eq!(routes[0]["gateway"], "10.55.0.2", "{routes}");
    assert_eq!(routes[0]["dev"], "uplink1", "{routes}");

    // rm takes them away again.
    sb.berth_ok(&["network", "rm", "viaisp2", "--force"]);
    let rules = sb.ip_json(&["-4", "rule", "show"]);
    assert!(
        !as_array(rules.clone())
            .iter()
            .any(|r| r["src"] == "10.91.0.0"),
        "{rules}"
    );
    let out = sb.cmd("ip", &["-4", "route", "show", "table", &table]);
    assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
}
