//! berth as Podman's netavark for macvlan and ipvlan networks, called
//! directly with the JSON Podman sends (`driver`, `network_interface` as
//! the parent, options `mode` and `mtu`, `static_mac`, `internal`): the
//! status block as netavark returns it, the children as the kernel shows
//! them, traffic to a namespace on the parent's side, and a teardown that
//! leaves the sandbox as it was.

mod util;

use std::process::Output;

use serde_json::{json, Value};
use util::*;

/// A Podman request for container `name` on the macvlan/ipvlan network
/// `net` of parent `up0`, address `ip` of 192.168.50.0/24.
fn request(name: &str, net: &str, driver: &str, ip: &str, extra: Value) -> Value {
    let mut v = json!({
        "container_id": format!("{name}0000000000000000000000000000000000000000000000000000000000"),
        "container_name": name,
        "networks": {
            net: {"static_ips": [ip], "interface_name": "eth0"}
        },
        "network_info": {
            net: {
                "name": net, "id": "2f259bab93aaaaa2", "driver": driver,
                "network_interface": "up0",
                "subnets": [{"subnet": "192.168.50.0/24", "gateway": "192.168.50.1"}],
                "ipv6_enabled": false, "internal": false, "dns_enabled": false,
                "ipam_options": {"driver": "host-local"}
            }
        }
    });
    merge(&mut v, extra);
    v
}

fn netavark(sb: &Sandbox, verb: &str, netns: &str, req: &Value) -> Output {
    let path = std::env::temp_dir().join(format!(
        "berth-netavark-mv-{}-{}.json",
        std::process::id(),
        sb.pid()
    ));
    std::fs::write(&path, req.to_string()).unwrap();
    let netns = format!("/run/netns/{netns}");
    let out = run_timeout(
        sb.berth_command(&[
            "netavark",
            "--config",
            "/run/containers/networks",
            "--file",
            path.to_str().unwrap(),
            verb,
            &netns,
        ]),
        CMD_TIMEOUT,
    );
    let _ = std::fs::remove_file(&path);
    out
}

fn setup_ok(sb: &Sandbox, netns: &str, req: &Value) -> Value {
    let out = netavark(sb, "setup", netns, req);
    assert_ok_ctx(&out, &format!("netavark setup {netns}"));
    parse_json(&out, "status block")
}

/// The LAN namespace `lan` (192.168.50.1/24 on `lanif`) behind the
/// parent `up0`, and a container namespace `c1`.
fn lan() -> Sandbox {
    let sb = Sandbox::new();
    sb.add_netns("lan");
    sb.add_netns("c1");
    sb.sh_ok(
        "ip link add up0 type veth peer name lanif netns lan && ip link set up0 up && \
         ip -n lan link set lanif up && ip -n lan addr add 192.168.50.1/24 dev lanif",
    );
    sb
}

fn eth0(sb: &Sandbox) -> Value {
    sb.ip_json_in(Some("c1"), &["-d", "link", "show", "eth0"])[0].clone()
}

#[test]
fn macvlan_setup_answers_as_netavark_and_teardown_leaves_nothing() {
    let sb = lan();
    let before = sb.snapshot();
    let req = request(
        "c1",
        "mv",
        "macvlan",
        "192.168.50.5",
        json!({
            "networks": {"mv": {"static_mac": "aa:bb:cc:dd:ee:ff"}},
            "network_info": {"mv": {"options": {"mode": "private", "mtu": "1400"}}}
        }),
    );
    let status = setup_ok(&sb, "c1", &req);
    assert_eq!(
        status,
        json!({"mv": {
            "dns_search_domains": [],
            "dns_server_ips": [],
            "interfaces": {"eth0": {
                "mac_address": "aa:bb:cc:dd:ee:ff",
                "subnets": [{"ipnet": "192.168.50.5/24", "gateway": "192.168.50.1"}]
            }}
        }})
    );
    let link = eth0(&sb);
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan", "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private", "{link}");
    assert_eq!(link["mtu"], 1400, "{link}");
    assert_eq!(link["address"], "aa:bb:cc:dd:ee:ff", "{link}");
    assert_eq!(sb.ipv4_addrs(Some("c1"), "eth0"), vec!["192.168.50.5/24"]);
    // netavark's default route, with its default metric.
    let defaults: Vec<Value> = sb
        .routes(Some("c1"))
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["gateway"], "192.168.50.1", "{defaults:?}");
    assert_eq!(defaults[0]["metric"], 100, "{defaults:?}");
    let _lan = sb.tcp_server(Some("lan"), "192.168.50.1:8080");
    assert_eq!(
        sb.assert_tcp(Some("c1"), "192.168.50.1:8080"),
        "192.168.50.5"
    );
    let _c1 = sb.tcp_server(Some("c1"), "192.168.50.5:8081");
    assert_eq!(
        sb.assert_tcp(Some("lan"), "192.168.50.5:8081"),
        "192.168.50.1"
    );

    let out = netavark(&sb, "teardown", "c1", &req);
    assert_ok_ctx(&out, "teardown");
    assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
    assert!(
        sb.networks().is_empty(),
        "the last container takes the network"
    );
    sb.snapshot().assert_same(&before, "after teardown");
}

#[test]
fn macvlan_internal_gives_no_default_route_and_every_mode_is_made() {
    let sb = lan();
    let req = request(
        "c1",
        "mv",
        "macvlan",
        "192.168.50.6",
        json!({"network_info": {"mv": {"internal": true}}}),
    );
    setup_ok(&sb, "c1", &req);
    let routes = sb.routes(Some("c1"));
    assert!(routes.iter().all(|r| r["dst"] != "default"), "{routes:?}");
    assert_ok(&netavark(&sb, "teardown", "c1", &req));

    for mode in ["bridge", "private", "vepa", "passthru", "source"] {
        let req = request(
            "c1",
            "mv",
            "macvlan",
            "192.168.50.7",
            json!({"network_info": {"mv": {"options": {"mode": mode}}}}),
        );
        setup_ok(&sb, "c1", &req);
        let link = eth0(&sb);
        assert_eq!(link["linkinfo"]["info_data"]["mode"], mode, "{link}");
        assert_eq!(link["mtu"], 1500, "the parent's MTU: {link}");
        assert_ok(&netavark(&sb, "teardown", "c1", &req));
        assert!(sb.link(Some("c1"), "eth0").is_none(), "mode {mode}");
    }
}

#[test]
fn a_bad_mode_published_ports_and_a_taken_name_are_refused_and_leave_nothing() {
    let sb = lan();
    let before = sb.snapshot();
    let bad = request(
        "c1",
        "mv",
        "macvlan",
        "192.168.50.8",
        json!({"network_info": {"mv": {"options": {"mode": "l3"}}}}),
    );
    let out = netavark(&sb, "setup", "c1", &bad);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("unknown macvlan mode"),
        "{}",
        stdout(&out)
    );
    let ports = request(
        "c1",
        "mv",
        "macvlan",
        "192.168.50.8",
        json!({"port_mappings": [{"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"}]}),
    );
    let out = netavark(&sb, "setup", "c1", &ports);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("cannot publish ports on network \\\"mv\\\""),
        "{}",
        stdout(&out)
    );
    sb.snapshot().assert_same(&before, "after refusals");
    // An interface of that name in the container: refused, and neither
    // the container nor the host keeps a child under another name.
    sb.sh_ok("ip -n c1 link add eth0 type veth peer name peer0");
    let ok = request("c1", "mv", "macvlan", "192.168.50.8", json!({}));
    let out = netavark(&sb, "setup", "c1", &ok);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let names = sb.link_names(Some("c1"));
    assert_eq!(names.len(), 3, "lo, eth0, peer0 only: {names:?}");
    assert!(sb.link_names(None).iter().all(|l| !l.starts_with("vc")));
}

#[test]
fn ipvlan_setup_and_teardown() {
    let sb = lan();
    let out = sb.sh("ip link add ipvltest link up0 type ipvlan mode l2 && ip link del ipvltest");
    if !out.status.success() {
        crate::skip_line!(
            "SKIP ipvlan_setup_and_teardown: this kernel cannot make ipvlan links ({})",
            stderr(&out).trim()
        );
        return;
    }
    let before = sb.snapshot();
    let req = request(
        "c1",
        "iv",
        "ipvlan",
        "192.168.50.9",
        json!({"network_info": {"iv": {"options": {"mode": "l2"}}}}),
    );
    let status = setup_ok(&sb, "c1", &req);
    let parent = sb.link(None, "up0").unwrap();
    assert_eq!(
        status["iv"]["interfaces"]["eth0"]["mac_address"], parent["address"],
        "{status}"
    );
    let link = eth0(&sb);
    assert_eq!(link["linkinfo"]["info_kind"], "ipvlan", "{link}");
    let _lan = sb.tcp_server(Some("lan"), "192.168.50.1:8080");
    assert_eq!(
        sb.assert_tcp(Some("c1"), "192.168.50.1:8080"),
        "192.168.50.9"
    );
    assert_ok(&netavark(&sb, "teardown", "c1", &req));
    sb.snapshot().assert_same(&before, "after teardown");
}
