//! End-to-end tests of `berth network create|ls|inspect|rm`: bridges,
//! gateways, subnet selection, refusals and `--dry-run`, each in its own
//! sandbox, with `ip -j` as an independent oracle.

mod util;

use util::*;

#[test]
fn create_ls_inspect_rm() {
    let sb = Sandbox::new();
    sb.berth_ok(&["network", "create", "alpha", "--subnet", "10.90.0.0/24"]);

    let net = sb.network("alpha");
    assert_eq!(net["subnet"], "10.90.0.0/24", "{net}");
    assert_eq!(net["gateway"], "10.90.0.1", "{net}");
    assert_eq!(net["bridge"], "berth-alpha", "{net}");
    assert_eq!(net["mtu"], 1500, "{net}");
    assert_eq!(net["endpoint_count"], 0, "{net}");

    // Oracle: the bridge exists, is up, carries the gateway address.
    let br = sb
        .link(None, "berth-alpha")
        .expect("bridge berth-alpha missing on the host");
    let flags = br["flags"].to_string();
    assert!(flags.contains("\"UP\""), "bridge not up: {br}");
    assert_eq!(br["mtu"], 1500, "{br}");
    let d = sb.ip_json(&["-d", "link", "show", "berth-alpha"]);
    assert_eq!(d[0]["linkinfo"]["info_kind"], "bridge", "{d}");
    assert_eq!(sb.ipv4_addrs(None, "berth-alpha"), vec!["10.90.0.1/24"]);
    assert!(
        sb.routes(None)
            .iter()
            .any(|r| r["dst"] == "10.90.0.0/24" && r["dev"] == "berth-alpha"),
        "no connected route for the subnet: {:?}",
        sb.routes(None)
    );
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), "1");

    let insp = sb.berth_json(&["network", "inspect", "alpha", "--json"])[0].clone();
    assert_eq!(insp["name"], "alpha", "{insp}");
    assert_eq!(insp["subnet"], "10.90.0.0/24", "{insp}");
    assert_eq!(insp["endpoints"], serde_json::json!([]), "{insp}");

    sb.berth_ok(&["network", "rm", "alpha"]);
    assert!(sb.networks().is_empty(), "{:?}", sb.networks());
    assert!(sb.link(None, "berth-alpha").is_none(), "bridge left behind");
    assert!(
        !sb.routes(None).iter().any(|r| r["dst"] == "10.90.0.0/24"),
        "route left behind"
    );
}

#[test]
fn auto_subnet_picks_first_free_and_skips_host_routes_and_addresses() {
    let sb = Sandbox::new();
    sb.add_veth("pad0", "pad1");
    sb.sh_ok("ip route add 10.89.0.0/24 dev pad0");

    sb.berth_ok(&["network", "create", "one"]);
    let one = sb.network("one");
    assert_eq!(
        one["subnet"], "10.89.1.0/24",
        "10.89.0.0/24 is routed: {one}"
    );
    assert_eq!(one["gateway"], "10.89.1.1", "{one}");
    assert_eq!(
        sb.ipv4_addrs(None, &field(&one, "bridge")),
        vec!["10.89.1.1/24"]
    );

    // An address in a smaller range overlapping the next /24 also blocks it.
    sb.sh_ok("ip addr add 10.89.2.9/28 dev pad1");
    sb.berth_ok(&["network", "create", "two"]);
    let two = sb.network("two");
    assert_eq!(
        two["subnet"], "10.89.3.0/24",
        "10.89.2.0/24 is in use: {two}"
    );

    // The route is gone: its range is free again, and no berth network has it.
    sb.sh_ok("ip route del 10.89.0.0/24 dev pad0");
    sb.berth_ok(&["network", "create", "three"]);
    assert_eq!(sb.network("three")["subnet"], "10.89.0.0/24");
    // Next free one after all of those.
    sb.berth_ok(&["network", "create", "four"]);
    assert_eq!(sb.network("four")["subnet"], "10.89.4.0/24");
}

#[test]
fn auto_subnet_ignores_the_default_route() {
    let sb = Sandbox::new();
    sb.internet(); // host gets a default route via 203.0.113.2
    sb.berth_ok(&["network", "create", "one"]);
    assert_eq!(sb.network("one")["subnet"], "10.89.0.0/24");
}

#[test]
fn explicit_subnet_clashing_with_a_host_route_is_refused() {
    let sb = Sandbox::new();
    sb.add_veth("pad0", "pad1");
    sb.sh_ok("ip route add 10.89.0.0/16 dev pad0");
    let before = sb.snapshot();
    let out = sb.berth(&["network", "create", "clash", "--subnet", "10.89.5.0/24"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("10.89.0.0/16") || err.contains("pad0"),
        "message should name the clashing route: {err:?}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    sb.snapshot()
        .assert_same(&before, "refused clashing subnet");
}

#[test]
fn explicit_subnet_clashing_with_another_network_is_refused() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let before = sb.snapshot();
    for subnet in ["10.90.0.128/25", "10.90.0.0/24", "10.0.0.0/8"] {
        let out = sb.berth(&["network", "create", "beta", "--subnet", subnet]);
        assert_fails_with(&out, 2, "alpha");
        sb.snapshot()
            .assert_same(&before, &format!("refused subnet {subnet}"));
    }
    // A neighbouring range is fine.
    sb.berth_ok(&["network", "create", "beta", "--subnet", "10.90.1.0/24"]);
}

#[test]
fn custom_gateway_bridge_and_mtu() {
    let sb = Sandbox::new();
    sb.berth_ok(&[
        "network",
        "create",
        "custom",
        "--subnet",
        "10.90.8.0/24",
        "--gateway",
        "10.90.8.254",
        "--bridge",
        "brtest",
        "--mtu",
        "1400",
    ]);
    let net = sb.network("custom");
    assert_eq!(net["gateway"], "10.90.8.254", "{net}");
    assert_eq!(net["bridge"], "brtest", "{net}");
    assert_eq!(net["mtu"], 1400, "{net}");
    let br = sb.link(None, "brtest").expect("bridge brtest missing");
    assert_eq!(br["mtu"], 1400, "{br}");
    assert_eq!(sb.ipv4_addrs(None, "brtest"), vec!["10.90.8.254/24"]);

    sb.add_netns("c1");
    let ep = sb.connect("custom", "c1", &[]);
    let ip = field(&ep, "ip");
    assert!(
        in_subnet(&ip, "10.90.8.0/24") && ip != "10.90.8.254",
        "{ep}"
    );
    assert_eq!(ep["gateway"], "10.90.8.254", "{ep}");
    let eth0 = sb.link(Some("c1"), "eth0").expect("eth0 in c1");
    assert_eq!(eth0["mtu"], 1400, "container end MTU: {eth0}");
    let routes = sb.routes(Some("c1"));
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.90.8.254"),
        "default route via custom gateway: {routes:?}"
    );
    sb.assert_ping(Some("c1"), "10.90.8.254");
}

#[test]
fn long_network_name_gets_a_bridge_name_that_fits() {
    let sb = Sandbox::new();
    let name = "averyverylongnetworkname";
    sb.berth_ok(&["network", "create", name, "--subnet", "10.90.3.0/24"]);
    let net = sb.network(name);
    let bridge = field(&net, "bridge");
    assert!(bridge.len() <= 15, "bridge name too long: {bridge:?}");
    assert!(sb.link(None, &bridge).is_some(), "bridge {bridge} missing");
    assert_eq!(sb.ipv4_addrs(None, &bridge), vec!["10.90.3.1/24"]);
}

#[test]
fn rm_refuses_while_endpoints_are_connected_unless_forced() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("web1");
    let ep = sb.connect("alpha", "web1", &[]);
    let host_if = field(&ep, "host_ifname");

    let before = sb.snapshot();
    let out = sb.berth(&["network", "rm", "alpha"]);
    assert_fails_with(&out, 2, "web1");
    sb.snapshot().assert_same(&before, "refused network rm");

    sb.berth_ok(&["network", "rm", "alpha", "--force"]);
    assert!(sb.networks().is_empty(), "{:?}", sb.networks());
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert!(sb.link(None, "berth-alpha").is_none(), "bridge left behind");
    assert!(sb.link(None, &host_if).is_none(), "host veth left behind");
    assert!(sb.link(Some("web1"), "eth0").is_none(), "eth0 left in web1");
    // The namespace itself was not berth's to delete.
    assert!(sb.netns_list().contains(&"web1".to_string()));
}

#[test]
fn dry_run_changes_nothing_and_prints_commands() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    sb.add_netns("b");
    let ep = sb.connect("alpha", "a", &[]);
    assert_eq!(ep["ip"], "10.90.0.2", "{ep}");
    let before = sb.snapshot();

    let out = sb.berth_out_ok(&[
        "network",
        "create",
        "beta",
        "--subnet",
        "10.91.0.0/24",
        "--dry-run",
    ]);
    let text = stdout(&out);
    assert!(text.contains("ip "), "no ip commands printed: {text:?}");
    assert!(
        text.contains("10.91.0.1/24"),
        "gateway address not in plan: {text:?}"
    );
    sb.snapshot()
        .assert_same(&before, "network create --dry-run");

    let out = sb.berth_out_ok(&["connect", "alpha", "b", "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("ip "), "no ip commands printed: {text:?}");
    assert!(
        text.contains("10.90.0.3"),
        "planned address not shown: {text:?}"
    );
    sb.snapshot().assert_same(&before, "connect --dry-run");

    let out = sb.berth_out_ok(&["disconnect", "alpha", "a", "--dry-run"]);
    assert!(stdout(&out).contains("ip "), "{out:?}");
    sb.snapshot().assert_same(&before, "disconnect --dry-run");

    let out = sb.berth_out_ok(&["network", "rm", "alpha", "--force", "--dry-run"]);
    assert!(stdout(&out).contains("ip "), "{out:?}");
    sb.snapshot()
        .assert_same(&before, "network rm --force --dry-run");

    // Dry runs reserved nothing: the real operations get what was planned.
    sb.berth_ok(&["network", "create", "beta", "--subnet", "10.91.0.0/24"]);
    let ep = sb.connect("alpha", "b", &[]);
    assert_eq!(ep["ip"], "10.90.0.3", "{ep}");
}

#[test]
fn concurrent_creates_get_distinct_subnets() {
    const N: usize = 10;
    let sb = Sandbox::new();
    let cmds = (0..N)
        .map(|i| sb.berth_command(&["network", "create", &format!("net{i}")]))
        .collect();
    let outs = run_all(cmds, std::time::Duration::from_secs(60));
    for (i, out) in outs.iter().enumerate() {
        assert_ok_ctx(out, &format!("berth network create net{i}"));
    }
    let nets = sb.networks();
    assert_eq!(nets.len(), N, "{nets:?}");
    let mut subnets: Vec<String> = nets.iter().map(|n| field(n, "subnet")).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), N, "subnets must be distinct: {nets:?}");
    let mut bridges: Vec<String> = nets.iter().map(|n| field(n, "bridge")).collect();
    bridges.sort();
    bridges.dedup();
    assert_eq!(bridges.len(), N, "{nets:?}");
    for n in &nets {
        let subnet = field(n, "subnet");
        let (base, _) = subnet.split_once('/').unwrap();
        assert!(in_subnet(base, "10.89.0.0/16"), "from the pool: {subnet}");
        let gw = field(n, "gateway");
        assert_eq!(
            sb.ipv4_addrs(None, &field(n, "bridge")),
            vec![format!("{gw}/24")]
        );
    }
}

#[test]
fn dry_run_create_on_a_fresh_host_shows_the_sysctl_and_sets_nothing() {
    let sb = Sandbox::new();
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), "0");
    let before = sb.snapshot();
    let out = sb.berth_out_ok(&["network", "create", "alpha", "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("ip link add"), "{text:?}");
    assert!(
        text.contains("sysctl"),
        "ip_forward step not shown: {text:?}"
    );
    sb.snapshot()
        .assert_same(&before, "network create --dry-run");
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), "0");
}

#[test]
fn create_connect_disconnect_rm_leaves_the_host_as_it_was() {
    let sb = Sandbox::new();
    sb.internet();
    sb.add_netns("a");
    let net_state = |sb: &Sandbox| {
        let s = sb.snapshot().0;
        s.into_iter()
            .filter(|(k, _)| {
                k.ends_with(": links") || k.ends_with(": addrs") || k.ends_with(": routes")
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = net_state(&sb);
    sb.create_network("alpha", "10.90.0.0/24");
    sb.connect("alpha", "a", &[]);
    sb.berth_ok(&["disconnect", "alpha", "a"]);
    sb.berth_ok(&["network", "rm", "alpha"]);
    Snapshot(net_state(&sb)).assert_same(&Snapshot(before), "after create/connect/disconnect/rm");
    assert!(sb.networks().is_empty());
}

/// A dot in a network (so bridge) name stays inside one sysctl path
/// segment: `net.ipv4.conf.berth-a.b.route_localnet` split on dots names a
/// file that does not exist.
#[test]
fn a_dotted_network_name_works_end_to_end() {
    let sb = Sandbox::new();
    let dry = sb.berth_ok(&[
        "--dry-run",
        "network",
        "create",
        "a.b",
        "--subnet",
        "10.90.0.0/24",
    ]);
    let line = "sysctl -w net.ipv4.conf.berth-a/b.route_localnet=1";
    assert!(dry.lines().any(|l| l == line), "{dry}");
    sb.berth_ok(&["network", "create", "a.b", "--subnet", "10.90.0.0/24"]);
    assert_eq!(field(&sb.network("a.b"), "bridge"), "berth-a.b");
    let path = "/proc/sys/net/ipv4/conf/berth-a.b/route_localnet";
    assert_eq!(stdout(&sb.cmd("cat", &[path])).trim(), "1");
    // What --dry-run prints names the same key for sysctl(8).
    let out = sb.cmd("sysctl", &["-n", "net.ipv4.conf.berth-a/b.route_localnet"]);
    if out.status.success() {
        assert_eq!(stdout(&out).trim(), "1");
    } else {
        crate::skip_line!("SKIP sysctl(8) check: {}", stderr(&out).trim());
    }

    sb.add_netns("c1");
    sb.add_netns("c2");
    let c1 = sb.connect("a.b", "c1", &["-p", "127.0.0.1:9000:80"]);
    sb.connect("a.b", "c2", &[]);
    let _srv = sb.tcp_server(Some("c1"), "0.0.0.0:80");
    let ip1 = field(&c1, "ip");
    sb.assert_tcp(Some("c2"), &format!("{ip1}:80"));
    // 127.0.0.1 needs route_localnet on the bridge.
    sb.assert_tcp(None, "127.0.0.1:9000");
    sb.berth_ok(&["disconnect", "a.b", "c1"]);
    sb.berth_ok(&["network", "rm", "a.b", "--force"]);
    assert!(sb.link(None, "berth-a.b").is_none(), "bridge left behind");
}

/// A VPN's 10.0.0.0/9 route covers the whole 10.89-10.127 pool: berth falls
/// back to 172.17-31, then 192.168, as Docker does.
#[test]
fn auto_subnet_falls_back_when_a_vpn_takes_10_0_0_0_9() {
    let sb = Sandbox::new();
    sb.add_veth("vpn0", "vpn1");
    sb.sh_ok("ip route add 10.0.0.0/9 dev vpn0");
    sb.berth_ok(&["network", "create", "one"]);
    let one = sb.network("one");
    assert_eq!(one["subnet"], "172.17.0.0/24", "{one}");
    sb.add_netns("c1");
    sb.add_netns("c2");
    let c1 = sb.connect("one", "c1", &[]);
    sb.connect("one", "c2", &[]);
    let _srv = sb.tcp_server(Some("c1"), "0.0.0.0:80");
    sb.assert_tcp(Some("c2"), &format!("{}:80", field(&c1, "ip")));

    // Docker's range routed too: 192.168 is next.
    sb.sh_ok("ip route add 172.16.0.0/12 dev vpn0");
    sb.berth_ok(&["network", "create", "two"]);
    assert_eq!(sb.network("two")["subnet"], "192.168.0.0/24");
}

fn berth_with_config(sb: &Sandbox, config: &str, args: &[&str]) -> std::process::Output {
    let mut c = sb.berth_command(args);
    c.env("BERTH_CONFIG", config);
    run_timeout(c, CMD_TIMEOUT)
}

#[test]
fn subnet_pools_come_from_the_config_file() {
    let sb = Sandbox::new();
    let cfg = "/run/berth-config.json";
    sb.sh_ok(&format!(
        r#"printf '%s' '{{"default-address-pools":[{{"base":"10.200.0.0/16","size":26}}]}}' > {cfg}"#
    ));
    for name in ["one", "two"] {
        let out = berth_with_config(&sb, cfg, &["network", "create", name]);
        assert_ok_ctx(&out, "network create with a config file");
    }
    assert_eq!(sb.network("one")["subnet"], "10.200.0.0/26");
    assert_eq!(sb.network("two")["subnet"], "10.200.0.64/26");

    // A malformed file: one line naming the file and the value, exit 2,
    // nothing changed.
    let before = sb.snapshot();
    sb.sh_ok(&format!(
        r#"printf '%s' '{{"default-address-pools":[{{"base":"10.200.0.0/16","size":33}}]}}' > {cfg}"#
    ));
    let out = berth_with_config(&sb, cfg, &["network", "create", "three"]);
    assert_fails_with(
        &out,
        2,
        &format!("config file {cfg}: default-address-pools[0].size 33"),
    );
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
    sb.snapshot()
        .assert_same(&before, "refused malformed config");
    sb.sh_ok(&format!("printf '%s' '{{\"default-address' > {cfg}"));
    let out = berth_with_config(&sb, cfg, &["network", "create", "three"]);
    assert_fails_with(&out, 2, &format!("config file {cfg}: not valid JSON"));
    // An explicit subnet does not need the pools.
    let out = berth_with_config(
        &sb,
        cfg,
        &["network", "create", "three", "--subnet", "10.90.0.0/24"],
    );
    assert_ok_ctx(&out, "network create --subnet with a broken config file");
    // A file BERTH_CONFIG names must exist.
    let out = berth_with_config(&sb, "/run/nope.json", &["network", "create", "four"]);
    assert_fails_with(&out, 2, "config file /run/nope.json: cannot read it");
}

/// Network names as long as Podman's (250 bytes: its `NAME.json` must fit
/// a file name): the readable nftables chain names (`NAME-reject`) and log
/// prefixes would not fit the kernel's limits, and stand-ins are used. One
/// byte more is refused, naming the limit.
#[test]
fn a_network_name_as_long_as_podmans_works_and_one_longer_is_refused() {
    let sb = Sandbox::new();
    let name = "n".repeat(250);
    sb.berth_ok(&[
        "network",
        "create",
        &name,
        "--subnet",
        "10.95.0.0/24",
        "--log-drops",
    ]);
    sb.add_netns("c1");
    sb.connect(&name, "c1", &[]);
    sb.assert_ping(Some("c1"), "10.95.0.1");
    let nft = stdout(&sb.cmd("nft", &["-j", "list", "table", "inet", "berth"]));
    let v: serde_json::Value = serde_json::from_str(&nft).unwrap();
    let chains: Vec<String> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["chain"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        chains
            .iter()
            .any(|c| c.ends_with("-reject") && c.contains('~')),
        "{chains:?}"
    );
    assert!(chains.iter().all(|c| c.len() <= 255), "{chains:?}");
    assert!(sb.berth_ok(&["up"]).contains("already matches"));
    sb.berth_ok(&["disconnect", &name, "c1"]);
    sb.berth_ok(&["network", "rm", &name]);
    assert!(sb.networks().is_empty());

    let longer = "n".repeat(251);
    let out = sb.berth(&["network", "create", &longer]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("251 bytes: at most 250"),
        "{}",
        stderr(&out)
    );
}
