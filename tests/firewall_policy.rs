//! End-to-end tests of berth's forwarding policy: isolation between
//! networks, `--no-icc`, `--internal`, `--deny-egress` and `--log-drops`,
//! in both br_netfilter modes where bridged traffic matters.

mod util;

use util::*;

fn set_bridge_nf(sb: &Sandbox, v: &str) {
    sb.sh_ok(&format!(
        "echo {v} > /proc/sys/net/bridge/bridge-nf-call-iptables"
    ));
    assert_eq!(sb.sysctl("net.bridge.bridge-nf-call-iptables"), v);
}

fn fails(sb: &Sandbox, from: &str, addr: &str) {
    let out = sb.tcp(Some(from), addr);
    assert!(
        !out.status.success(),
        "{from} -> {addr} should be blocked: {}",
        stdout(&out)
    );
}

/// alpha (a1, a2), beta (b1) and gamma --no-icc (g1, g2).
fn isolation_and_icc(bridge_nf: &str) {
    let sb = Sandbox::new();
    set_bridge_nf(&sb, bridge_nf);
    sb.create_network("alpha", "10.90.0.0/24");
    sb.create_network("beta", "10.91.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "gamma",
        "--subnet",
        "10.92.0.0/24",
        "--no-icc",
    ]);
    let mut servers = vec![];
    for (net, ns) in [
        ("alpha", "a1"),
        ("alpha", "a2"),
        ("beta", "b1"),
        ("gamma", "g1"),
        ("gamma", "g2"),
    ] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
        servers.push(sb.tcp_server(Some(ns), "0.0.0.0:7000"));
    }
    // Neighbours on alpha.
    assert_eq!(sb.assert_tcp(Some("a1"), "10.90.0.3:7000"), "10.90.0.2");
    assert_eq!(sb.assert_tcp(Some("a2"), "10.90.0.2:7000"), "10.90.0.3");
    // alpha <-> beta, both ways, and gamma too.
    fails(&sb, "a1", "10.91.0.2:7000");
    fails(&sb, "b1", "10.90.0.2:7000");
    fails(&sb, "b1", "10.92.0.2:7000");
    fails(&sb, "g1", "10.90.0.3:7000");
    assert!(!sb.ping(Some("a1"), "10.91.0.2").status.success());
    // --no-icc: gamma's neighbours do not reach each other...
    fails(&sb, "g1", "10.92.0.3:7000");
    fails(&sb, "g2", "10.92.0.2:7000");
    assert!(!sb.ping(Some("g1"), "10.92.0.3").status.success());
    // ...but do reach their gateway and the host reaches them.
    sb.assert_ping(Some("g1"), "10.92.0.1");
    assert_eq!(sb.assert_tcp(None, "10.92.0.2:7000"), "10.92.0.1");
    // The setting did not change berth's result, nor was it changed.
    assert_eq!(sb.sysctl("net.bridge.bridge-nf-call-iptables"), bridge_nf);
}

#[test]
fn networks_are_isolated_and_no_icc_holds_with_bridge_netfilter() {
    isolation_and_icc("1");
}

#[test]
fn networks_are_isolated_and_no_icc_holds_without_bridge_netfilter() {
    isolation_and_icc("0");
}

#[test]
fn internal_network_has_no_way_out_and_no_default_route() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    sb.berth_ok(&[
        "network",
        "create",
        "vault",
        "--subnet",
        "10.93.0.0/24",
        "--internal",
    ]);
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("i1");
    sb.add_netns("i2");
    let e = sb.connect("vault", "i1", &[]);
    sb.connect("vault", "i2", &[]);
    let routes = sb.routes(Some("i1"));
    assert!(
        !routes.iter().any(|r| r["dst"] == "default"),
        "internal endpoint got a default route: {routes:?}"
    );
    assert_eq!(e["gateway"], "10.93.0.1");
    // Even with a default route added by hand, nothing is forwarded out.
    sb.sh_ok("ip -n i1 route add default via 10.93.0.1");
    fails(&sb, "i1", &format!("{}:8080", inet.public_ip));
    fails(&sb, "i1", &format!("{}:8080", inet.peer_ip));
    // The host and neighbours are reachable.
    let _h = sb.tcp_server(None, "10.93.0.1:7100");
    assert_eq!(sb.assert_tcp(Some("i1"), "10.93.0.1:7100"), "10.93.0.2");
    let _n = sb.tcp_server(Some("i2"), "0.0.0.0:7000");
    assert_eq!(sb.assert_tcp(Some("i1"), "10.93.0.3:7000"), "10.93.0.2");
    // A namespace on an internal network and a normal one gets its default
    // route from the normal one.
    sb.add_netns("both");
    sb.connect("vault", "both", &[]);
    sb.connect("alpha", "both", &[]);
    let defaults: Vec<_> = sb
        .routes(Some("both"))
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["gateway"], "10.90.0.1", "{defaults:?}");
    sb.assert_tcp(Some("both"), &format!("{}:8080", inet.public_ip));
}

#[test]
fn deny_egress_rejects_one_range_and_not_another() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    sb.berth_ok(&[
        "network",
        "create",
        "alpha",
        "--subnet",
        "10.90.0.0/24",
        "--deny-egress",
        "198.51.100.0/24",
        "--deny-egress",
        "192.0.2.7",
        "--log-drops",
    ]);
    sb.add_netns("c");
    sb.connect("alpha", "c", &[]);
    let out = sb.tcp(Some("c"), &format!("{}:8080", inet.public_ip));
    assert!(!out.status.success(), "denied range reached");
    assert_eq!(
        sb.assert_tcp(Some("c"), &format!("{}:8080", inet.peer_ip)),
        inet.host_ip
    );
    // Logged drops: the reject chain of the network counted the packet and
    // logs with a prefix naming the network.
    let text = stdout(&sb.cmd("nft", &["list", "chain", "inet", "berth", "alpha-reject"]));
    assert!(
        text.contains("log prefix \"berth alpha reject: \""),
        "{text}"
    );
    assert!(text.contains("limit rate"), "{text}");
    assert!(!text.contains("packets 0 "), "nothing counted: {text}");
}

#[test]
fn bad_firewall_input_changes_nothing() {
    let sb = Sandbox::new();
    sb.internet();
    sb.create_network("alpha", "10.90.0.0/24");
    let before = sb.snapshot();
    for (args, needle) in [
        (vec!["--deny-egress", "10.0.0.0/33"], "10.0.0.0/33"),
        (vec!["--deny-egress", "nonsense"], "nonsense"),
        (vec!["--deny-egress", "10.0.0.1/8"], "10.0.0.1/8"),
        (vec!["--uplink", "nosuch0"], "nosuch0"),
        (vec!["--uplink-gateway", "203.0.113.2"], "--uplink"),
        (vec!["--internal", "--uplink", "uplink0"], "--internal"),
        (
            vec!["--uplink", "uplink0", "--uplink-gateway", "10.1.2.3"],
            "10.1.2.3",
        ),
    ] {
        let mut full = vec!["network", "create", "beta", "--subnet", "10.91.0.0/24"];
        full.extend(args);
        let out = sb.berth(&full);
        assert_fails_with(&out, 2, needle);
    }
    sb.snapshot().assert_same(&before, "bad firewall options");
}

/// CVE-2020-8558: bridges have route_localnet (for published 127.0.0.1
/// ports), so without a rule a container that routes 127.0.0.0/8 to its
/// gateway reaches the host's services listening only on 127.0.0.1.
fn loopback_services_stay_private(bridge_nf: &str) {
    let sb = Sandbox::new();
    set_bridge_nf(&sb, bridge_nf);
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c");
    sb.add_netns("d");
    sb.connect("web", "c", &["-p", "127.0.0.1:9000:80"]);
    sb.connect("web", "d", &[]);
    let _web = sb.tcp_server(Some("c"), "0.0.0.0:80");
    let _private = sb.tcp_server(None, "127.0.0.1:7000");
    // The attacker in d: accept loopback addresses on eth0, and send
    // 127.0.0.0/8 to the gateway's MAC ahead of the local table.
    sb.sh_ok(
        "ip netns exec d sh -c '\
         echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && \
         echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet && \
         ip route add 127.0.0.0/8 via 10.90.0.1 dev eth0 table 200 && \
         ip rule add pref 10 to 127.0.0.0/8 lookup 200 && \
         ip rule add pref 100 lookup local && ip rule del pref 0'",
    );
    fails(&sb, "d", "127.0.0.1:7000");
    let drops = sb.sh_ok("nft -j list chain inet berth input");
    let v = parse_json(&drops, "nft -j list chain inet berth input");
    let counted = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.get("counter").map(|c| c["packets"].as_u64().unwrap_or(0)))
        .sum::<u64>();
    assert!(counted > 0, "the input drop counted nothing: {v}");
    // Published on 127.0.0.1, the port still answers the host.
    sb.assert_tcp(None, "127.0.0.1:9000");
    // The control: without berth's input rule, the same route does reach
    // the host's loopback service (so the refusal above is the rule's).
    sb.sh_ok("nft flush chain inet berth input");
    sb.assert_tcp(Some("d"), "127.0.0.1:7000");
}

#[test]
fn containers_cannot_reach_host_loopback_services_without_br_netfilter() {
    loopback_services_stay_private("0");
}

#[test]
fn containers_cannot_reach_host_loopback_services_with_br_netfilter() {
    loopback_services_stay_private("1");
}
