//! End-to-end tests of `berth connect|disconnect|ps`: veths, addresses,
//! routes and real traffic between namespaces, each in its own sandbox.

mod util;

use std::collections::HashSet;
use std::time::Duration;

use util::*;

/// Default IPv4 routes in `netns`.
fn default_routes(sb: &Sandbox, netns: &str) -> Vec<serde_json::Value> {
    sb.routes(Some(netns))
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect()
}

#[test]
fn two_namespaces_on_one_network_reach_each_other_the_gateway_and_the_host() {
    one_network_traffic(None);
}

#[test]
fn one_network_traffic_without_bridge_netfilter() {
    one_network_traffic(Some("0"));
}

/// `bridge_nf`: value for net.bridge.bridge-nf-call-iptables in the sandbox
/// (None: leave the kernel's default, which is 1 on this machine).
fn one_network_traffic(bridge_nf: Option<&str>) {
    let sb = Sandbox::new();
    if let Some(v) = bridge_nf {
        sb.sh_ok(&format!(
            "echo {v} > /proc/sys/net/bridge/bridge-nf-call-iptables"
        ));
        assert_eq!(sb.sysctl("net.bridge.bridge-nf-call-iptables"), v);
    }
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    sb.add_netns("b");
    let ea = sb.connect("alpha", "a", &[]);
    let eb = sb.connect("alpha", "b", &[]);
    assert_eq!(ea["ip"], "10.90.0.2", "first connect gets .2: {ea}");
    assert_eq!(eb["ip"], "10.90.0.3", "second connect gets .3: {eb}");
    for (ep, ns) in [(&ea, "a"), (&eb, "b")] {
        assert_eq!(ep["network"], "alpha", "{ep}");
        assert_eq!(ep["name"], ns, "--name defaults to the netns name: {ep}");
        assert_eq!(ep["prefix_len"], 24, "{ep}");
        assert_eq!(ep["gateway"], "10.90.0.1", "{ep}");
        assert_eq!(ep["ifname"], "eth0", "{ep}");

        // Oracle inside the namespace.
        let ip = field(ep, "ip");
        assert_eq!(sb.ipv4_addrs(Some(ns), "eth0"), vec![format!("{ip}/24")]);
        let eth0 = sb.link(Some(ns), "eth0").expect("eth0");
        assert!(eth0["flags"].to_string().contains("\"UP\""), "{eth0}");
        assert_eq!(eth0["address"], ep["mac"], "MAC reported vs kernel: {eth0}");
        let lo = sb.link(Some(ns), "lo").expect("lo");
        assert!(lo["flags"].to_string().contains("\"UP\""), "lo down: {lo}");
        let defaults = default_routes(&sb, ns);
        assert_eq!(defaults.len(), 1, "{defaults:?}");
        assert_eq!(defaults[0]["gateway"], "10.90.0.1", "{defaults:?}");
        assert_eq!(defaults[0]["dev"], "eth0", "{defaults:?}");

        // Oracle on the host: the host end is a port of the bridge, and up.
        let host_if = field(ep, "host_ifname");
        assert!(host_if.len() <= 15, "{host_if}");
        let l = sb.link(None, &host_if).expect("host end of the veth");
        assert_eq!(l["master"], "berth-alpha", "{l}");
        assert!(l["flags"].to_string().contains("\"UP\""), "{l}");
    }

    let ps = sb.endpoints();
    assert_eq!(ps.len(), 2, "{ps:?}");
    let insp = sb.berth_json(&["network", "inspect", "alpha", "--json"])[0].clone();
    assert_eq!(insp["endpoint_count"], 2, "{insp}");
    assert_eq!(
        insp["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{insp}"
    );

    // Traffic: a <-> b over TCP, UDP and ICMP; source addresses preserved.
    let _tb = sb.tcp_server(Some("b"), "0.0.0.0:7000");
    let _ub = sb.udp_server(Some("b"), "0.0.0.0:7001");
    let _ta = sb.tcp_server(Some("a"), "0.0.0.0:7000");
    assert_eq!(sb.assert_tcp(Some("a"), "10.90.0.3:7000"), "10.90.0.2");
    assert_eq!(sb.assert_udp(Some("a"), "10.90.0.3:7001"), "10.90.0.2");
    assert_eq!(sb.assert_tcp(Some("b"), "10.90.0.2:7000"), "10.90.0.3");
    sb.assert_ping(Some("a"), "10.90.0.3");
    sb.assert_ping(Some("b"), "10.90.0.2");

    // Each reaches the gateway; the host reaches both.
    sb.assert_ping(Some("a"), "10.90.0.1");
    sb.assert_ping(Some("b"), "10.90.0.1");
    let _th = sb.tcp_server(None, "10.90.0.1:7002");
    assert_eq!(sb.assert_tcp(Some("a"), "10.90.0.1:7002"), "10.90.0.2");
    sb.assert_ping(None, "10.90.0.2");
    sb.assert_ping(None, "10.90.0.3");
    assert_eq!(sb.assert_tcp(None, "10.90.0.3:7000"), "10.90.0.1");
    assert_eq!(sb.assert_udp(None, "10.90.0.3:7001"), "10.90.0.1");
}

#[test]
fn namespace_reaches_the_hosts_uplink_address_via_its_default_route() {
    // Seed 01, "Using bridge as a gateway".
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    sb.connect("alpha", "a", &[]);
    sb.assert_ping(Some("a"), &inet.host_ip);
    let _srv = sb.tcp_server(None, &format!("{}:7100", inet.host_ip));
    let seen = sb.assert_tcp(Some("a"), &format!("{}:7100", inet.host_ip));
    assert_eq!(seen, "10.90.0.2", "host-local traffic keeps its source");
}

#[test]
fn connect_options_name_ip_mac_ifname() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("c");
    let ep = sb.connect(
        "alpha",
        "c",
        &[
            "--name",
            "web",
            "--ip",
            "10.90.0.77",
            "--mac",
            "02:aa:bb:cc:dd:ee",
            "--ifname",
            "eth7",
        ],
    );
    assert_eq!(ep["name"], "web", "{ep}");
    assert_eq!(ep["ip"], "10.90.0.77", "{ep}");
    assert_eq!(ep["mac"], "02:aa:bb:cc:dd:ee", "{ep}");
    assert_eq!(ep["ifname"], "eth7", "{ep}");
    let l = sb.link(Some("c"), "eth7").expect("eth7 in c");
    assert_eq!(l["address"], "02:aa:bb:cc:dd:ee", "{l}");
    assert_eq!(sb.ipv4_addrs(Some("c"), "eth7"), vec!["10.90.0.77/24"]);
    assert!(sb.link(Some("c"), "eth0").is_none(), "unexpected eth0");
    let ps = sb.endpoints();
    assert!(ps.iter().any(|e| e["name"] == "web"), "{ps:?}");
    sb.assert_ping(None, "10.90.0.77");

    // The reserved address is skipped by allocation.
    sb.add_netns("d");
    let ed = sb.connect("alpha", "d", &[]);
    assert_ne!(ed["ip"], "10.90.0.77", "{ed}");
}

#[test]
fn addresses_are_handed_out_after_the_last_one_and_not_reused_at_once() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    for ns in ["a", "b", "c"] {
        sb.add_netns(ns);
    }
    assert_eq!(sb.connect("alpha", "a", &[])["ip"], "10.90.0.2");
    assert_eq!(sb.connect("alpha", "b", &[])["ip"], "10.90.0.3");
    sb.berth_ok(&["disconnect", "alpha", "a"]);
    let ec = sb.connect("alpha", "c", &[]);
    assert_eq!(
        ec["ip"], "10.90.0.4",
        "next free after the last handed out: {ec}"
    );
}

#[test]
fn namespaces_on_two_networks_route_to_their_own_gateway() {
    let sb = Sandbox::new();
    sb.create_network("n1", "10.90.1.0/24");
    sb.create_network("n2", "10.90.2.0/24");
    for ns in ["a", "b", "c"] {
        sb.add_netns(ns);
    }
    sb.connect("n1", "a", &[]);
    sb.connect("n2", "b", &[]);
    let d = default_routes(&sb, "a");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["gateway"], "10.90.1.1", "{d:?}");
    let d = default_routes(&sb, "b");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["gateway"], "10.90.2.1", "{d:?}");
    sb.assert_ping(Some("a"), "10.90.1.1");
    sb.assert_ping(Some("b"), "10.90.2.1");

    // c is on both: exactly one default route (the first network's), and a
    // subnet route for the second.
    let e1 = sb.connect("n1", "c", &[]);
    let e2 = sb.connect("n2", "c", &["--ifname", "eth1"]);
    assert_eq!(e1["ifname"], "eth0", "{e1}");
    assert_eq!(e2["ifname"], "eth1", "{e2}");
    let routes = sb.routes(Some("c"));
    let defaults: Vec<_> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(defaults.len(), 1, "exactly one default route: {routes:?}");
    assert_eq!(defaults[0]["gateway"], "10.90.1.1", "{routes:?}");
    assert_eq!(defaults[0]["dev"], "eth0", "{routes:?}");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "10.90.2.0/24" && r["dev"] == "eth1"),
        "subnet route for the second network: {routes:?}"
    );
    sb.assert_ping(Some("c"), "10.90.1.1");
    sb.assert_ping(Some("c"), "10.90.2.1");
    let ps = sb.endpoints();
    assert_eq!(ps.len(), 4, "{ps:?}");
}

/// `--metric N` adds a default route of the endpoint's own beside the
/// namespace's plain one (as `ip route add default via GW metric N`
/// would), and it goes with the endpoint: disconnecting the plain one's
/// network leaves it and hands nothing to it.
#[test]
fn metric_gives_a_second_default_route_that_goes_with_its_endpoint() {
    let sb = Sandbox::new();
    sb.create_network("n1", "10.90.1.0/24");
    sb.create_network("n2", "10.90.2.0/24");
    sb.add_netns("c");
    sb.connect("n1", "c", &[]);
    let dry = sb.berth_ok(&["connect", "n2", "c", "--metric", "200", "--dry-run"]);
    assert!(
        dry.contains("route prepend default via 10.90.2.1 metric 200"),
        "{dry}"
    );
    sb.connect("n2", "c", &["--metric", "200"]);
    let pairs = |sb: &Sandbox| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = default_routes(sb, "c")
            .iter()
            .map(|r| {
                (
                    r["gateway"].as_str().unwrap().to_string(),
                    r["metric"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        pairs(&sb),
        [("10.90.1.1".to_string(), 0), ("10.90.2.1".to_string(), 200)]
    );
    sb.berth_ok(&["disconnect", "n1", "c"]);
    assert_eq!(pairs(&sb), [("10.90.2.1".to_string(), 200)]);
    sb.assert_ping(Some("c"), "10.90.2.1");
    sb.berth_ok(&["disconnect", "n2", "c"]);
    assert!(pairs(&sb).is_empty());
}

#[test]
fn disconnect_twice_and_after_the_namespace_was_deleted() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    sb.add_netns("b");
    let ea = sb.connect("alpha", "a", &[]);
    let eb = sb.connect("alpha", "b", &[]);

    sb.berth_ok(&["disconnect", "alpha", "a"]);
    assert!(
        sb.link(None, &field(&ea, "host_ifname")).is_none(),
        "veth left"
    );
    assert!(sb.link(Some("a"), "eth0").is_none(), "eth0 left in a");
    assert_eq!(sb.endpoints().len(), 1);
    // Again: nothing matches. An error naming what is connected, unless
    // --force asks for "nothing to do".
    let again = sb.berth(&["disconnect", "alpha", "a"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(
        err.contains("\"a\" is not connected") && err.contains("b (b)"),
        "{err}"
    );
    let forced = sb.berth_out_ok(&["disconnect", "alpha", "a", "--force"]);
    let said = format!("{}{}", stdout(&forced), stderr(&forced)).to_lowercase();
    assert!(
        said.contains("nothing"),
        "should say nothing to do: {said:?}"
    );

    sb.sh_ok("ip netns del b");
    sb.berth_ok(&["disconnect", "alpha", "b"]);
    let ps = sb.endpoints();
    assert!(
        ps.is_empty(),
        "endpoint of deleted netns still listed: {ps:?}"
    );
    // The kernel removes the veth with its namespace (asynchronously).
    let host_if = field(&eb, "host_ifname");
    assert!(
        sb.wait_link_gone(None, &host_if, Duration::from_secs(5)),
        "veth {host_if} left"
    );
    // The lease is free again for a new connect (network not exhausted).
    sb.add_netns("c");
    sb.connect("alpha", "c", &[]);
}

#[test]
fn connect_by_path_and_by_pid() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("p");
    let ep = sb.connect("alpha", "/run/netns/p", &["--name", "bypath"]);
    assert_eq!(ep["name"], "bypath", "{ep}");
    assert_eq!(
        sb.ipv4_addrs(Some("p"), "eth0"),
        vec![format!("{}/24", field(&ep, "ip"))]
    );

    // A process in its own namespace, not under /run/netns.
    let holder = sb.spawn(
        sb.command(
            None,
            "unshare",
            &["--net", "sh", "-c", "echo ready; exec sleep 1000"],
        ),
        true,
    );
    let target = format!("pid:{}", holder.pid());
    let ep = sb.connect("alpha", &target, &["--name", "bypid"]);
    let ip = field(&ep, "ip");
    let addrs = sb.cmd(
        "nsenter",
        &[
            &format!("--net=/proc/{}/ns/net", holder.pid()),
            "ip",
            "-j",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert_ok_ctx(&addrs, "ip addr in the pid's namespace");
    assert!(stdout(&addrs).contains(&ip), "{addrs:?}");
    sb.assert_ping(None, &ip);
    sb.berth_ok(&["disconnect", "alpha", &target]);
}

#[test]
fn fifty_concurrent_connects() {
    const N: usize = 50;
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let names: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
    sb.sh_ok(&format!(
        "for n in {}; do ip netns add $n || exit 1; done",
        names.join(" ")
    ));
    let cmds = names
        .iter()
        .map(|n| sb.berth_command(&["connect", "alpha", n, "--json"]))
        .collect();
    let outs = run_all(cmds, Duration::from_secs(60));
    let mut ips = HashSet::new();
    for (n, out) in names.iter().zip(&outs) {
        assert_ok_ctx(out, &format!("berth connect alpha {n}"));
        let ep = parse_json(out, "connect");
        let ip = field(&ep, "ip");
        assert!(in_subnet(&ip, "10.90.0.0/24"), "{ep}");
        assert!(
            !["10.90.0.0", "10.90.0.1", "10.90.0.255"].contains(&ip.as_str()),
            "{ep}"
        );
        // Oracle: the address is really on eth0 in that namespace.
        assert_eq!(
            sb.ipv4_addrs(Some(n), "eth0"),
            vec![format!("{ip}/24")],
            "{n}"
        );
        ips.insert(ip);
    }
    assert_eq!(ips.len(), N, "distinct addresses: {ips:?}");
    let ps = sb.endpoints();
    assert_eq!(ps.len(), N, "berth ps --json lists {}", ps.len());
    let listed: HashSet<String> = ps.iter().map(|e| field(e, "ip")).collect();
    assert_eq!(listed, ips);
    for ip in &ips {
        sb.assert_ping(None, ip);
    }
}

#[test]
fn exhausted_subnet_is_refused_and_freed_addresses_are_reused_after_wrapping() {
    let sb = Sandbox::new();
    // A /29 has .1 (gateway) and .2-.6 for endpoints.
    sb.create_network("small", "10.90.0.0/29");
    for i in 1..=6 {
        sb.add_netns(&format!("c{i}"));
    }
    let ips: Vec<String> = (1..=5)
        .map(|i| field(&sb.connect("small", &format!("c{i}"), &[]), "ip"))
        .collect();
    assert_eq!(
        ips,
        [
            "10.90.0.2",
            "10.90.0.3",
            "10.90.0.4",
            "10.90.0.5",
            "10.90.0.6"
        ]
    );
    let before = sb.snapshot();
    let out = sb.berth(&["connect", "small", "c6"]);
    assert!(!out.status.success(), "connect to a full /29: {out:?}");
    assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{out:?}");
    assert!(
        stderr(&out).contains("small"),
        "should name the network: {out:?}"
    );
    sb.snapshot()
        .assert_same(&before, "connect to a full network");

    sb.berth_ok(&["disconnect", "small", "c3"]);
    let ep = sb.connect("small", "c6", &[]);
    assert_eq!(ep["ip"], "10.90.0.4", "the only free address: {ep}");
    sb.assert_ping(None, "10.90.0.4");
}

#[test]
fn connecting_a_namespace_twice_to_one_network_is_refused() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    sb.connect("alpha", "a", &[]);
    let before = sb.snapshot();
    for extra in [&[][..], &["--ifname", "eth1"][..], &["--name", "other"][..]] {
        let mut args = vec!["connect", "alpha", "a"];
        args.extend_from_slice(extra);
        let out = sb.berth(&args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{out:?}");
        sb.snapshot()
            .assert_same(&before, &format!("berth {}", args.join(" ")));
    }
}

#[test]
fn concurrent_connects_asking_for_the_same_ip_one_wins() {
    const N: usize = 8;
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let names: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    for n in &names {
        sb.add_netns(n);
    }
    let cmds = names
        .iter()
        .map(|n| sb.berth_command(&["connect", "alpha", n, "--ip", "10.90.0.42"]))
        .collect();
    let outs = run_all(cmds, Duration::from_secs(60));
    let winners: Vec<&String> = names
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.status.success())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one may get 10.90.0.42: {outs:?}");
    let ps = sb.endpoints();
    assert_eq!(ps.len(), 1, "{ps:?}");
    for n in &names {
        let has_eth0 = sb.link(Some(n), "eth0").is_some();
        assert_eq!(has_eth0, n == winners[0], "eth0 in {n}");
    }
    sb.assert_ping(None, "10.90.0.42");
}

#[test]
fn fifty_concurrent_disconnects_leave_nothing_behind() {
    const N: usize = 50;
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let names: Vec<String> = (0..N).map(|i| format!("d{i}")).collect();
    sb.sh_ok(&format!(
        "for n in {}; do ip netns add $n || exit 1; done",
        names.join(" ")
    ));
    let links_before = sb.link_names(None);
    let cmds = names
        .iter()
        .map(|n| sb.berth_command(&["connect", "alpha", n]))
        .collect();
    for (n, out) in names.iter().zip(run_all(cmds, Duration::from_secs(60))) {
        assert_ok_ctx(&out, &format!("berth connect alpha {n}"));
    }
    assert_eq!(sb.endpoints().len(), N);
    let cmds = names
        .iter()
        .map(|n| sb.berth_command(&["disconnect", "alpha", n]))
        .collect();
    for (n, out) in names.iter().zip(run_all(cmds, Duration::from_secs(60))) {
        assert_ok_ctx(&out, &format!("berth disconnect alpha {n}"));
    }
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    // The veths wait a moment in the pending group, then go in one batch.
    assert!(
        sb.wait_no_pending(Duration::from_secs(5)),
        "links still pending after 5 s: {:?}",
        sb.pending_links()
    );
    assert_eq!(sb.link_names(None), links_before, "veths left on the host");
    for n in &names {
        assert!(sb.link(Some(n), "eth0").is_none(), "eth0 left in {n}");
    }
    let net = sb.network("alpha");
    assert_eq!(net["endpoint_count"], 0, "{net}");
}

#[test]
fn disconnect_after_the_target_process_exited_succeeds() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let mut holder = sb.spawn(
        sb.command(
            None,
            "unshare",
            &["--net", "sh", "-c", "echo ready; exec sleep 1000"],
        ),
        true,
    );
    let target = format!("pid:{}", holder.pid());
    let ep = sb.connect("alpha", &target, &[]);
    holder.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(holder.wait_timeout(Duration::from_secs(5)).is_some());
    sb.berth_ok(&["disconnect", "alpha", &target]);
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert!(
        sb.wait_link_gone(None, &field(&ep, "host_ifname"), Duration::from_secs(5)),
        "veth left"
    );
}
