//! berth as Podman's netavark, called directly with the JSON Podman 4.3
//! sends (captured from a real Podman run): every field, and every way a
//! request can be wrong. Each failure must answer exactly `{"error":"..."}`
//! on stdout with exit code 1 and change nothing.

mod util;

use std::process::Output;

use serde_json::{json, Value};
use util::*;

/// A request like Podman's for container `name` on network `net`.
fn request(name: &str, net: &str, ip: &str, extra: Value) -> Value {
    let mut v = json!({
        "container_id": format!("{name}0000000000000000000000000000000000000000000000000000000000"),
        "container_name": name,
        "port_mappings": [],
        "networks": {
            net: {"static_ips": [ip], "aliases": [name], "interface_name": "eth0"}
        },
        "network_info": {
            net: {
                "name": net, "id": "cd7104c31a8bee1e", "driver": "bridge",
                "network_interface": format!("pm-{net}"),
                "created": "2026-11-24T16:28:23.426817946Z",
                "subnets": [{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}],
                "ipv6_enabled": false, "internal": false, "dns_enabled": false,
                "ipam_options": {"driver": "host-local"}
            }
        }
    });
    merge(&mut v, extra);
    v
}

/// Runs `berth netavark ARGS` with `req` given by `--file`.
fn netavark(sb: &Sandbox, args: &[&str], req: &Value) -> Output {
    netavark_with(sb, args, req, &[])
}

/// [`netavark`] with extra environment variables (Podman passes some).
fn netavark_with(sb: &Sandbox, args: &[&str], req: &Value, env: &[(&str, &str)]) -> Output {
    let path = std::env::temp_dir().join(format!(
        "berth-netavark-{}-{}.json",
        std::process::id(),
        sb.pid()
    ));
    std::fs::write(&path, req.to_string()).unwrap();
    let mut all = vec![
        "netavark",
        "--config",
        "/run/containers/networks",
        "--rootless=false",
    ];
    all.extend(["--file", path.to_str().unwrap()]);
    all.extend_from_slice(args);
    let mut c = sb.berth_command(&all);
    c.envs(env.iter().copied());
    let out = run_timeout(c, CMD_TIMEOUT);
    let _ = std::fs::remove_file(&path);
    out
}

/// Setup that must succeed; returns the status block.
fn setup_ok(sb: &Sandbox, netns: &str, req: &Value) -> Value {
    let out = netavark(sb, &["setup", &format!("/run/netns/{netns}")], req);
    assert_ok_ctx(&out, &format!("netavark setup {netns}"));
    parse_json(&out, "status block")
}

/// A failure in netavark's format: exactly `{"error": ...}` on stdout,
/// exit code 1; returns the message.
fn assert_netavark_error(out: &Output, needle: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout {}", stdout(out));
    let v: Value = serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {}", stdout(out)));
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "{v}");
    let msg = obj["error"]
        .as_str()
        .expect("error is a string")
        .to_string();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    msg
}

#[test]
fn setup_uses_every_field_and_teardown_removes_everything() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let req = request(
        "c1",
        "web",
        "10.77.0.50",
        json!({
            "port_mappings": [
                {"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"},
                {"host_ip": "127.0.0.1", "container_port": 9000, "host_port": 9100, "range": 3, "protocol": "tcp,udp"}
            ],
            "networks": {"web": {"static_mac": "02:11:22:33:44:55", "interface_name": "ens5"}},
            "network_info": {"web": {"dns_enabled": true, "options": {"mtu": "1400", "isolate": "true", "metric": "50"},
                                     "some_future_field": [1, 2]}},
            "another_future_field": {}
        }),
    );
    let status = setup_ok(&sb, "c1", &req);
    assert_eq!(
        status,
        json!({"web": {
            "dns_search_domains": ["dns.podman"],
            "dns_server_ips": ["10.77.0.1"],
            "interfaces": {"ens5": {
                "mac_address": "02:11:22:33:44:55",
                "subnets": [{"ipnet": "10.77.0.50/24", "gateway": "10.77.0.1"}]
            }}
        }})
    );
    // The kernel, by an independent oracle.
    let eth = sb.link(Some("c1"), "ens5").expect("ens5 in c1");
    assert_eq!(eth["address"], "02:11:22:33:44:55");
    assert_eq!(eth["mtu"], 1400);
    assert_eq!(sb.ipv4_addrs(Some("c1"), "ens5"), ["10.77.0.50/24"]);
    let routes = sb.routes(Some("c1"));
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.77.0.1"),
        "{routes:?}"
    );
    assert_eq!(sb.ipv4_addrs(None, "pm-web"), ["10.77.0.1/24"]);
    // berth's view: Podman's network and endpoint, marked.
    let n = sb.network("web");
    assert_eq!(n["owner"], "podman");
    assert_eq!(n["bridge"], "pm-web");
    assert_eq!(n["mtu"], 1400);
    let eps = sb.endpoints();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["name"], "c1");
    assert_eq!(eps[0]["owner"], "podman");
    assert_eq!(eps[0]["container_id"], req["container_id"]);
    assert_eq!(eps[0]["ports"].as_array().unwrap().len(), 3, "{}", eps[0]);
    let inspect = sb.berth_json(&["network", "inspect", "web", "--json"])[0].clone();
    assert_eq!(inspect["owner"], "podman");
    assert_eq!(inspect["endpoints"][0]["container_id"], req["container_id"]);
    assert!(sb.berth_ok(&["network", "ls"]).contains("podman"));
    assert!(sb.berth_ok(&["ps"]).contains("podman"));
    assert!(sb
        .berth_ok(&["network", "inspect", "web"])
        .contains("owner:     podman"));
    // The ports answer (TCP from the host; the range on 127.0.0.1).
    let _srv = sb.tcp_server(Some("c1"), "0.0.0.0:80");
    let _rng = sb.tcp_server(Some("c1"), "0.0.0.0:9001");
    let _udp = sb.udp_server(Some("c1"), "0.0.0.0:9002");
    sb.assert_tcp(None, "127.0.0.1:8080");
    sb.assert_tcp(None, "127.0.0.1:9101");
    sb.assert_udp(None, "127.0.0.1:9102");

    // Teardown: nothing on stdout, everything gone; twice is fine.
    for round in 0..2 {
        let out = netavark(&sb, &["teardown", "/run/netns/c1"], &req);
        assert_ok_ctx(&out, &format!("teardown {round}"));
        assert_eq!(stdout(&out), "", "teardown prints nothing");
    }
    assert!(sb.networks().is_empty());
    assert!(sb.endpoints().is_empty());
    assert!(sb.link(None, "pm-web").is_none());
    assert!(sb.link(Some("c1"), "ens5").is_none());
    let nft = stdout(&sb.cmd("nft", &["list", "ruleset"]));
    assert!(!nft.contains("inet berth"), "{nft}");
}

#[test]
fn network_lives_from_first_to_last_container_and_teardown_survives_a_gone_netns() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    sb.add_netns("c2");
    let r1 = request("c1", "web", "10.77.0.2", json!({}));
    let r2 = request("c2", "web", "10.77.0.3", json!({}));
    setup_ok(&sb, "c1", &r1);
    setup_ok(&sb, "c2", &r2);
    assert_eq!(sb.network("web")["endpoint_count"], 2);
    // Containers of one network reach each other.
    let _srv = sb.tcp_server(Some("c2"), "10.77.0.3:80");
    sb.assert_tcp(Some("c1"), "10.77.0.3:80");
    // c1's namespace disappears before its teardown (Podman's cleanup after
    // a crash): the teardown still succeeds and forgets it.
    sb.sh_ok("ip netns del c1");
    let out = netavark(&sb, &["teardown", "/run/netns/c1"], &r1);
    assert_ok_ctx(&out, "teardown after the netns is gone");
    assert_eq!(sb.network("web")["endpoint_count"], 1, "web stays for c2");
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c2"], &r2),
        "last teardown",
    );
    assert!(
        sb.networks().is_empty(),
        "the last container takes the network"
    );
    assert!(sb.link(None, "pm-web").is_none());
}

#[test]
fn internal_network_and_two_networks_at_once() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let mut req = request("c1", "web", "10.77.0.2", json!({}));
    let second = request(
        "c1",
        "int",
        "10.78.0.2",
        json!({
            "networks": {"int": {"interface_name": "eth1"}},
            "network_info": {"int": {"internal": true,
                "subnets": [{"subnet": "10.78.0.0/24", "gateway": "10.78.0.1"}]}}
        }),
    );
    merge(
        &mut req,
        json!({"networks": second["networks"], "network_info": second["network_info"]}),
    );
    let status = setup_ok(&sb, "c1", &req);
    assert_eq!(
        status["int"]["interfaces"]["eth1"]["subnets"][0]["ipnet"],
        "10.78.0.2/24"
    );
    assert_eq!(
        status["web"]["interfaces"]["eth0"]["subnets"][0]["ipnet"],
        "10.77.0.2/24"
    );
    assert_eq!(sb.network("int")["internal"], true);
    // One default route, through the first (non-internal) network.
    let defaults: Vec<Value> = sb
        .routes(Some("c1"))
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["gateway"], "10.77.0.1");
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &req),
        "teardown",
    );
    assert!(sb.networks().is_empty());
}

/// Requests that must fail with netavark's error format and change nothing.
#[test]
fn bad_requests_fail_in_netavark_format_and_change_nothing() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    sb.add_netns("c2");
    // c1 holds host port 8080 on network web.
    let held = request(
        "c1",
        "web",
        "10.77.0.2",
        json!({"port_mappings": [{"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"}]}),
    );
    setup_ok(&sb, "c1", &held);
    let ok = request("c2", "web", "10.77.0.3", json!({}));
    let with = |extra: Value| {
        let mut r = ok.clone();
        merge(&mut r, extra);
        r
    };
    let mut two_networks = with(json!({
        "networks": {"zzz": {"static_ips": ["10.79.0.1"], "interface_name": "eth1"}},
        "network_info": {"zzz": {"name": "zzz", "driver": "bridge", "network_interface": "pm-zzz",
            "subnets": [{"subnet": "10.79.0.0/24", "gateway": "10.79.0.1"}]}}
    }));
    // The second network fails (its address is its gateway) after the first
    // one was made: the first one must be taken back.
    two_networks["networks"]["web"] =
        json!({"static_ips": ["10.77.0.3"], "interface_name": "eth0"});
    let cases: Vec<(&str, Vec<&str>, Value, &str)> = vec![
        (
            "macvlan with an ipvlan mode",
            vec!["setup", "/run/netns/c2"],
            with(
                json!({"network_info": {"web": {"driver": "macvlan", "options": {"mode": "l2"}}}}),
            ),
            "unknown macvlan mode",
        ),
        (
            "ipvlan with a macvlan mode",
            vec!["setup", "/run/netns/c2"],
            with(
                json!({"network_info": {"web": {"driver": "ipvlan", "options": {"mode": "vepa"}}}}),
            ),
            "unknown ipvlan mode",
        ),
        (
            "a bridge network Podman now calls macvlan",
            vec!["setup", "/run/netns/c2"],
            with(json!({"network_info": {"web": {"driver": "macvlan"}}})),
            "in use as bridge",
        ),
        (
            "unknown driver",
            vec!["setup", "/run/netns/c2"],
            with(json!({"network_info": {"web": {"driver": "tunnel"}}})),
            "unknown network driver",
        ),
        (
            "port taken",
            vec!["setup", "/run/netns/c2"],
            with(
                json!({"port_mappings": [{"host_ip": "", "container_port": 81, "host_port": 8080, "range": 1, "protocol": "tcp"}]}),
            ),
            "8080",
        ),
        (
            "bad protocol",
            vec!["setup", "/run/netns/c2"],
            with(
                json!({"port_mappings": [{"host_ip": "", "container_port": 81, "host_port": 8081, "range": 1, "protocol": "tcp,gre"}]}),
            ),
            "gre",
        ),
        (
            "address in none of the subnets",
            vec!["setup", "/run/netns/c2"],
            with(json!({"network_info": {"web": {"subnets": [{"subnet": "fd00::/64"}]}}})),
            "10.77.0.3 is in none of the network's subnets (fd00::/64)",
        ),
        (
            "two subnets of one family",
            vec!["setup", "/run/netns/c2"],
            with(
                json!({"network_info": {"web": {"subnets": [{"subnet": "10.77.0.0/24"}, {"subnet": "10.78.0.0/24"}]}}}),
            ),
            "more than one IPv4 subnet",
        ),
        (
            "no address for the IPv6 subnet",
            vec!["setup", "/run/netns/c2"],
            with(
                json!({"network_info": {"web": {"subnets": [{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}, {"subnet": "fd00::/64"}]}}}),
            ),
            "no static_ips address in subnet fd00::/64",
        ),
        (
            "a network in use that Podman now defines dual-stack",
            vec!["setup", "/run/netns/c2"],
            with(json!({
                "networks": {"web": {"static_ips": ["10.77.0.3", "fd00::3"]}},
                "network_info": {"web": {"subnets": [{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}, {"subnet": "fd00::/64"}]}}
            })),
            "not 10.77.0.0/24 via 10.77.0.1, fd00::/64 via fd00::1",
        ),
        (
            "address taken",
            vec!["setup", "/run/netns/c2"],
            with(json!({"networks": {"web": {"static_ips": ["10.77.0.2"]}}})),
            "10.77.0.2",
        ),
        (
            "second network fails",
            vec!["setup", "/run/netns/c2"],
            two_networks,
            "gateway",
        ),
        (
            "no network_info",
            vec!["setup", "/run/netns/c2"],
            json!({"container_id": "x", "container_name": "c2", "networks": {"web": {"static_ips": ["10.77.0.3"], "interface_name": "eth0"}}, "network_info": {}}),
            "network_info",
        ),
        (
            "rootless",
            vec!["--rootless", "true", "setup", "/run/netns/c2"],
            ok.clone(),
            "rootless",
        ),
        (
            "no such command",
            vec!["frobnicate"],
            ok.clone(),
            "frobnicate",
        ),
    ];
    let before = sb.snapshot();
    for (what, args, req, needle) in cases {
        let out = netavark(&sb, &args, &req);
        assert_netavark_error(&out, needle);
        sb.snapshot().assert_same(&before, what);
    }
    // A missing namespace or options file: netavark's words, alone (Podman
    // and netavark's own tests read stdout and stderr as one JSON value).
    let out = netavark(&sb, &["setup", "/run/netns/nope"], &ok);
    let msg = assert_netavark_error(&out, "invalid namespace path");
    assert_eq!(
        msg,
        "invalid namespace path: IO error: No such file or directory (os error 2)"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sb.sh(&format!(
        "BERTH_STATE_DIR={STATE_DIR} {BERTH} netavark --config /x --file /run/nope.json setup /run/netns/c2"
    ));
    let msg = assert_netavark_error(&out, "failed to load network options");
    assert_eq!(
        msg,
        "failed to load network options: IO error: No such file or directory (os error 2)"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.snapshot()
        .assert_same(&before, "missing namespace or file");
    // Bad JSON, on stdin as Podman sends it.
    let out = sb.sh(&format!(
        "echo '{{\"container_id\": ' | BERTH_STATE_DIR={STATE_DIR} {BERTH} netavark --config /x setup /run/netns/c2"
    ));
    assert_netavark_error(&out, "invalid network options JSON");
    sb.snapshot().assert_same(&before, "bad JSON");
}

#[test]
fn version_and_the_netavark_name() {
    let sb = Sandbox::new();
    let v: Value = parse_json(&sb.berth(&["netavark", "version"]), "version");
    for key in ["version", "commit", "build_time", "target"] {
        assert!(v[key].is_string(), "{v}");
    }
    let out = sb.berth(&["netavark", "--version"]);
    assert_ok(&out);
    assert!(stdout(&out).starts_with("netavark "), "{}", stdout(&out));
    // After berth's global options, with their state directory.
    sb.add_netns("c1");
    let req = request("c1", "web", "10.77.0.2", json!({}));
    let path = std::env::temp_dir().join(format!("berth-netavark-sd-{}.json", sb.pid()));
    std::fs::write(&path, req.to_string()).unwrap();
    let file = path.to_str().unwrap();
    let out = sb.berth(&[
        "--state-dir",
        "/run/other",
        "netavark",
        "--file",
        file,
        "setup",
        "/run/netns/c1",
    ]);
    assert_ok_ctx(&out, "berth --state-dir /run/other netavark setup");
    let other = sb.berth_json(&["--state-dir", "/run/other", "ps", "--json"]);
    assert_eq!(other.as_array().unwrap().len(), 1, "{other}");
    assert!(
        sb.endpoints().is_empty(),
        "the default state dir is untouched"
    );
    let out = sb.berth(&[
        "--dry-run",
        "netavark",
        "--file",
        file,
        "teardown",
        "/run/netns/c1",
    ]);
    assert_fails_with(&out, 2, "--dry-run");
    let _ = std::fs::remove_file(&path);
    // Invoked under the name `netavark` (how Podman finds it).
    let out = sb.sh_ok(&format!(
        "ln -s {BERTH} /run/netavark && /run/netavark version"
    ));
    let w: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v, w);
}

/// What a reboot or a crashed Podman leaves: state rows whose kernel side
/// is gone. The next setup starts again instead of failing.
#[test]
fn setup_recovers_from_state_the_kernel_lost() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let r1 = request("c1", "web", "10.77.0.2", json!({}));
    setup_ok(&sb, "c1", &r1);
    // The container's namespace vanished without a teardown; the same
    // container name comes back as a new container in a new namespace.
    sb.sh_ok("ip netns del c1");
    sb.add_netns("c1b");
    let mut again = request("c1", "web", "10.77.0.2", json!({}));
    again["container_id"] = json!("f".repeat(64));
    setup_ok(&sb, "c1b", &again);
    let eps = sb.endpoints();
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["netns"], "/run/netns/c1b");
    // A "reboot": the bridge and the ruleset are gone, the state is not.
    let veth = eps[0]["host_ifname"].as_str().unwrap().to_string();
    sb.sh_ok("ip netns del c1b && ip link del pm-web && nft delete table inet berth");
    // The kernel tears a deleted namespace's veth down in the background,
    // after `ip netns del` returns; a reboot leaves none.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while sb.link(None, &veth).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    sb.add_netns("c2");
    setup_ok(&sb, "c2", &request("c2", "web", "10.77.0.3", json!({})));
    assert!(sb.link(None, "pm-web").is_some(), "bridge made again");
    assert_eq!(sb.endpoints().len(), 1);
    let _srv = sb.tcp_server(Some("c2"), "10.77.0.3:80");
    sb.assert_tcp(None, "10.77.0.3:80");
}

/// `podman network connect` on a running container: a second setup for
/// the same container and namespace, with only the new network and all the
/// container's ports again. The ports are published once and stay until
/// the network that holds them is torn down.
#[test]
fn network_connect_adds_a_network_to_a_running_container() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let ports = json!({"port_mappings": [
        {"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"}]});
    let web = request("c1", "web", "10.77.0.2", ports.clone());
    setup_ok(&sb, "c1", &web);
    let mut more = request("c1", "more", "10.78.0.2", ports);
    merge(
        &mut more,
        json!({"networks": {"more": {"interface_name": "eth1"}},
               "network_info": {"more": {"subnets": [{"subnet": "10.78.0.0/24", "gateway": "10.78.0.1"}]}}}),
    );
    let status = setup_ok(&sb, "c1", &more);
    assert_eq!(
        status["more"]["interfaces"]["eth1"]["subnets"][0]["ipnet"],
        "10.78.0.2/24"
    );
    let _srv = sb.tcp_server(Some("c1"), "0.0.0.0:80");
    sb.assert_tcp(None, "127.0.0.1:8080");
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &more),
        "teardown more",
    );
    assert!(!sb.networks().iter().any(|n| n["name"] == "more"));
    sb.assert_tcp(None, "127.0.0.1:8080");
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &web),
        "teardown web",
    );
    assert!(sb.networks().is_empty());
}

/// The container's default routes as (gateway, metric), sorted.
fn default_routes(sb: &Sandbox, netns: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = sb
        .routes(Some(netns))
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .map(|r| {
            (
                r["gateway"].as_str().unwrap_or("").to_string(),
                r["metric"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

/// As netavark: one default route per network with its metric (100 when
/// the options name none, so two networks may share one), and taking one
/// network away (`podman network disconnect`) leaves the other's route.
/// A veth lost by hand gets its route back, metric and all, from `up`.
#[test]
fn each_network_gives_a_default_route_with_its_metric() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let net = |name: &str, ifname: &str, third: u8, metric: Option<&str>| {
        let subnet = format!("10.{third}.0.0/24");
        let mut options = json!({});
        if let Some(m) = metric {
            options = json!({"metric": m});
        }
        request(
            "c1",
            name,
            &format!("10.{third}.0.2"),
            json!({"networks": {name: {"interface_name": ifname}},
                   "network_info": {name: {"network_interface": format!("pm-{name}"),
                       "subnets": [{"subnet": subnet, "gateway": format!("10.{third}.0.1")}],
                       "options": options}}}),
        )
    };
    let mut req = net("web", "eth0", 77, None);
    let same = net("same", "eth1", 78, None);
    let far = net("far", "eth2", 79, Some("200"));
    for r in [&same, &far] {
        merge(
            &mut req,
            json!({"networks": r["networks"], "network_info": r["network_info"]}),
        );
    }
    setup_ok(&sb, "c1", &req);
    let all = vec![
        ("10.77.0.1".to_string(), 100),
        ("10.78.0.1".to_string(), 100),
        ("10.79.0.1".to_string(), 200),
    ];
    assert_eq!(default_routes(&sb, "c1"), all);
    // `podman network disconnect c1 web`: the others stay.
    assert_ok_ctx(
        &netavark(
            &sb,
            &["teardown", "/run/netns/c1"],
            &net("web", "eth0", 77, None),
        ),
        "teardown web",
    );
    assert_eq!(default_routes(&sb, "c1"), all[1..].to_vec());
    // A veth deleted by hand: `up` re-creates it with its route and metric.
    let far_veth = sb
        .endpoints()
        .into_iter()
        .find(|e| e["network"] == "far")
        .expect("far's endpoint")["host_ifname"]
        .as_str()
        .unwrap()
        .to_string();
    sb.sh_ok(&format!("ip link del {far_veth}"));
    assert_eq!(default_routes(&sb, "c1"), all[1..2].to_vec());
    sb.berth_ok(&["up"]);
    assert_eq!(default_routes(&sb, "c1"), all[1..].to_vec());
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &req),
        "teardown",
    );
    assert!(default_routes(&sb, "c1").is_empty());
    assert!(sb.networks().is_empty());
}

/// Podman accepts network names of up to 250 bytes (its `NAME.json`
/// must fit a file name); such a network works and goes with its last
/// container.
#[test]
fn a_network_name_as_long_as_podmans_works() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let name = "p".repeat(250);
    let req = request(
        "c1",
        &name,
        "10.77.0.2",
        json!({"network_info": {&name: {"network_interface": "podman9"}}}),
    );
    let status = setup_ok(&sb, "c1", &req);
    assert_eq!(
        status[&name]["interfaces"]["eth0"]["subnets"][0]["ipnet"],
        "10.77.0.2/24"
    );
    sb.assert_ping(Some("c1"), "10.77.0.1");
    assert_eq!(sb.networks()[0]["name"], name.as_str());
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &req),
        "teardown",
    );
    assert!(sb.networks().is_empty());
}

/// Podman starts and removes containers in parallel: the first setup makes
/// the network, the last teardown removes it, whatever the interleaving.
#[test]
fn parallel_setups_and_teardowns_share_one_network() {
    let sb = Sandbox::new();
    const N: usize = 8;
    let dir = std::env::temp_dir().join(format!("berth-netavark-par-{}", sb.pid()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..N {
        sb.add_netns(&format!("c{i}"));
        let req = request(
            &format!("c{i}"),
            "web",
            &format!("10.77.0.{}", i + 2),
            json!({}),
        );
        std::fs::write(dir.join(format!("c{i}.json")), req.to_string()).unwrap();
    }
    let all = |verb: &str| {
        let script = format!(
            "pids=; for i in $(seq 0 {}); do \
               BERTH_STATE_DIR={STATE_DIR} {BERTH} netavark --file {}/c$i.json {verb} /run/netns/c$i > {}/out-{verb}-$i & \
               pids=\"$pids $!\"; \
             done; fail=0; for p in $pids; do wait $p || fail=1; done; exit $fail",
            N - 1,
            dir.display(),
            dir.display()
        );
        let out = sb.sh(&script);
        let outputs: Vec<String> = (0..N)
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("out-{verb}-{i}"))).unwrap_or_default()
            })
            .collect();
        assert_ok_ctx(&out, &format!("{N} parallel {verb}s: {outputs:?}"));
    };
    all("setup");
    assert_eq!(sb.networks().len(), 1);
    assert_eq!(sb.network("web")["endpoint_count"], N);
    let _srv = sb.tcp_server(Some("c0"), "10.77.0.2:80");
    sb.assert_tcp(Some(&format!("c{}", N - 1)), "10.77.0.2:80");
    all("teardown");
    assert!(sb.networks().is_empty());
    assert!(sb.link(None, "pm-web").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Podman starting 50 containers at once, each with 4 published ports,
/// then stopping them at once: every setup and teardown succeeds, the
/// state and the kernel agree after the setups (each namespace has its
/// address, each endpoint its four port rows and map elements, one veth
/// each), and the teardowns leave nothing (no network, endpoint, veth,
/// bridge or table).
#[test]
fn fifty_parallel_setups_then_teardowns_leave_nothing_behind() {
    let sb = Sandbox::new();
    const N: usize = 50;
    let dir = std::env::temp_dir().join(format!("berth-netavark-par50-{}", sb.pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let ip = |i: usize| format!("10.77.0.{}", i + 2);
    for i in 0..N {
        sb.add_netns(&format!("c{i}"));
        let ports: Vec<Value> = (0..4)
            .map(|p| {
                json!({"host_ip": "", "container_port": 80 + p, "host_port": 30000 + i * 4 + p,
                       "range": 1, "protocol": "tcp"})
            })
            .collect();
        let req = request(
            &format!("c{i}"),
            "web",
            &ip(i),
            json!({"port_mappings": ports}),
        );
        std::fs::write(dir.join(format!("c{i}.json")), req.to_string()).unwrap();
    }
    let all = |verb: &str| {
        let script = format!(
            "pids=; for i in $(seq 0 {}); do \
               BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} netavark --file {d}/c$i.json {verb} /run/netns/c$i > {d}/out-{verb}-$i 2>&1 & \
               pids=\"$pids $!\"; \
             done; fail=0; for p in $pids; do wait $p || fail=1; done; exit $fail",
            N - 1,
            d = dir.display(),
        );
        let out = sb.sh(&script);
        let failed: Vec<String> = (0..N)
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("out-{verb}-{i}"))).unwrap_or_default()
            })
            .filter(|o| o.contains("error"))
            .collect();
        assert_ok_ctx(&out, &format!("{N} parallel {verb}s: {failed:?}"));
        assert!(failed.is_empty(), "{verb}: {failed:?}");
    };
    all("setup");
    let endpoints = sb.endpoints();
    assert_eq!(endpoints.len(), N);
    for i in 0..N {
        let netns = format!("c{i}");
        assert_eq!(
            sb.ipv4_addrs(Some(&netns), "eth0"),
            [format!("{}/24", ip(i))],
            "{netns}"
        );
        let row = endpoints
            .iter()
            .find(|e| e["netns"].as_str().is_some_and(|n| n.ends_with(&netns)))
            .unwrap_or_else(|| panic!("{netns} in ps: {endpoints:?}"));
        assert_eq!(row["ip"], ip(i).as_str());
        assert_eq!(row["status"], "up");
        assert_eq!(row["ports"].as_array().map_or(0, Vec::len), 4, "{row}");
    }
    let elements = stdout(&sb.cmd("nft", &["list", "map", "inet", "berth", "published4_any"]));
    assert_eq!(elements.matches(" : 10.77.0.").count(), 4 * N, "{elements}");
    assert_eq!(sb.host_veth_count(), N);
    // A published port of one container works from another (through
    // the host's gateway address, DNATed by the map).
    let _srv = sb.tcp_server(Some("c7"), &format!("{}:80", ip(7)));
    sb.assert_tcp(Some("c3"), &format!("10.77.0.1:{}", 30000 + 7 * 4));

    all("teardown");
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert!(sb.networks().is_empty(), "{:?}", sb.networks());
    assert_eq!(sb.host_veth_count(), 0);
    assert!(sb.link(None, "pm-web").is_none());
    assert!(!sb
        .cmd("nft", &["list", "table", "inet", "berth"])
        .status
        .success());
    for i in 0..N {
        assert!(sb.link(Some(&format!("c{i}")), "eth0").is_none(), "c{i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn netavark_dns_port_moves_the_server_and_port_53_still_answers() {
    let sb = Sandbox::new();
    if !sb.cmd("sh", &["-c", "command -v dig"]).status.success() {
        crate::skip_line!("SKIP netavark_dns_port_moves_the_server_and_port_53_still_answers: dig (dnsutils) is not installed");
        return;
    }
    sb.add_netns("a");
    sb.add_netns("b");
    let dns_on = json!({"network_info": {"web": {"dns_enabled": true}}});
    let port = [("NETAVARK_DNS_PORT", "5353")];
    for (name, ip) in [("a", "10.77.0.2"), ("b", "10.77.0.3")] {
        let out = netavark_with(
            &sb,
            &["setup", &format!("/run/netns/{name}")],
            &request(name, "web", ip, dns_on.clone()),
            &port,
        );
        assert_ok_ctx(&out, &format!("setup {name}"));
    }
    // The container asks its gateway on port 53, as Podman's resolv.conf
    // says; the server itself listens on 5353.
    let dig = |port: &str| {
        let out = sb.in_netns(
            "b",
            "dig",
            &[
                "+short",
                "+time=2",
                "+tries=1",
                "-p",
                port,
                "@10.77.0.1",
                "a.dns.podman",
            ],
        );
        stdout(&out).trim().to_string()
    };
    assert_eq!(dig("53"), "10.77.0.2");
    assert_eq!(dig("5353"), "10.77.0.2");
    // Another port while a network has DNS is refused, in netavark's format.
    let out = netavark_with(
        &sb,
        &["setup", "/run/netns/a"],
        &request("c", "web", "10.77.0.4", dns_on),
        &[("NETAVARK_DNS_PORT", "6000")],
    );
    assert_netavark_error(&out, "NETAVARK_DNS_PORT 6000");
}

/// `netavark update NETWORK --network-dns-servers A,B` (Podman 4.7's
/// `podman network update --dns-add/--dns-drop`) and setup's
/// `network_dns_servers`: that network's containers' queries for other
/// names go to its servers; "" gives them the host's resolvers back. An
/// update of a network berth does not have is no error (no container runs).
#[test]
fn update_sets_the_networks_upstream_dns_servers() {
    if !util::dns::have_dig("update_sets_the_networks_upstream_dns_servers") {
        return;
    }
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.sh_ok("ip -n internet addr add 198.51.100.2/32 dev lo");
    let host_dns = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["dns-serve", "198.51.100.1:53"],
        true,
    );
    let net_dns = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["dns-serve", "198.51.100.2:53"],
        true,
    );
    util::dns::host_resolv(&sb, "nameserver 198.51.100.1\\n");
    sb.add_netns("c1");
    let req = request(
        "c1",
        "web",
        "10.77.0.2",
        json!({"network_info": {"web": {"dns_enabled": true,
                                         "network_dns_servers": ["198.51.100.2"]}}}),
    );
    setup_ok(&sb, "c1", &req);
    let ask = |name: &str| util::dns::short(&sb, "c1", "10.77.0.1", &[name]);
    assert_eq!(ask("one.example.com"), ["192.0.2.10"]);
    assert!(net_dns.stdout().contains("query one.example.com"));
    assert!(!host_dns.stdout().contains("one.example.com"));

    let update = |servers: &str| {
        let out = netavark(
            &sb,
            &["update", "web", "--network-dns-servers", servers],
            &json!({}),
        );
        assert_ok_ctx(&out, &format!("update {servers:?}"));
        assert_eq!(stdout(&out), "", "update prints nothing");
    };
    update("");
    assert_eq!(ask("two.example.com"), ["192.0.2.10"]);
    assert!(host_dns.stdout().contains("query two.example.com"));
    assert!(!net_dns.stdout().contains("two.example.com"));
    update("198.51.100.2");
    assert_eq!(ask("three.example.com"), ["192.0.2.10"]);
    assert!(net_dns.stdout().contains("query three.example.com"));

    // No such network in berth (no container runs): Podman's definition
    // alone changes.
    let out = netavark(
        &sb,
        &["update", "idle", "--network-dns-servers", "1.1.1.1"],
        &json!({}),
    );
    assert_ok_ctx(&out, "update of a network without containers");
    let out = netavark(
        &sb,
        &[
            "update",
            "web",
            "--network-dns-servers",
            "8.8.8.8,dns.example",
        ],
        &json!({}),
    );
    assert_netavark_error(&out, "dns.example");
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &req),
        "teardown",
    );
}

/// Whether berth's `inet` table exists.
fn has_berths_table(sb: &Sandbox) -> bool {
    stdout(&sb.cmd("nft", &["list", "tables"])).contains("inet berth")
}

/// `firewall-reload` restores berth's rules once after a firewall reload
/// flushed them; `firewalld-reload` runs as a service and restores them
/// after each such reload by itself. A published port answers again.
#[test]
fn firewall_reloads_restore_berths_rules() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let req = request(
        "c1",
        "web",
        "10.77.0.2",
        json!({"port_mappings": [
            {"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"}]}),
    );
    setup_ok(&sb, "c1", &req);
    let _srv = sb.tcp_server(Some("c1"), "0.0.0.0:80");
    sb.assert_tcp(None, "127.0.0.1:8080");

    // Once. Without a state there is nothing to do, and no error.
    sb.sh_ok("nft flush ruleset");
    assert!(!has_berths_table(&sb));
    let out = netavark(&sb, &["firewall-reload"], &json!({}));
    assert_ok_ctx(&out, "firewall-reload");
    assert_eq!(stdout(&out), "");
    assert!(has_berths_table(&sb));
    sb.assert_tcp(None, "127.0.0.1:8080");

    // As a service: twice flushed, twice restored, within seconds.
    let service = sb.spawn_berth(&["netavark", "firewalld-reload"], false);
    for round in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        sb.sh_ok("nft flush ruleset");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !has_berths_table(&sb) {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: not restored: {}",
                service.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        sb.assert_tcp(None, "127.0.0.1:8080");
    }
    drop(service);
    assert_ok_ctx(
        &netavark(&sb, &["teardown", "/run/netns/c1"], &req),
        "teardown",
    );
}
