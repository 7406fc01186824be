//! `berth inspect TARGET`: one namespace on two networks, with published
//! ports and aliases, seen as text and as JSON; a TARGET that names
//! nothing is one line, exit 2.

mod util;

use serde_json::Value;
use util::*;

/// c1 on web (a port, an alias) and on db; c2 on web.
fn setup(sb: &Sandbox) {
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("db", "10.91.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.berth_ok(&[
        "connect", "web", "c1", "--name", "api", "-p", "8080:80", "--alias", "backend",
    ]);
    sb.berth_ok(&["connect", "db", "c1"]);
    sb.berth_ok(&["connect", "web", "c2"]);
    // A neighbour entry to show: c1 talks to c2.
    sb.assert_ping(Some("c1"), "10.90.0.3");
}

#[test]
fn inspect_shows_one_namespace_on_two_networks() {
    let sb = Sandbox::new();
    setup(&sb);
    let text = sb.berth_ok(&["inspect", "c1"]);
    for want in [
        "namespace /run/netns/c1",
        "eth0 veth UP mtu 1500 mac 02:42:0a:5a:00:02 peer vb",
        "eth1 veth UP",
        "eth0 10.90.0.2/24",
        "eth1 10.91.0.2/24",
        "default via 10.90.0.1 dev eth0",
        "10.91.0.0/24 dev eth1",
        "10.90.0.3 dev eth0 lladdr 02:42:0a:5a:00:03",
        "api on web: 10.90.0.2/24",
        "c1 on db: 10.91.0.2/24",
        "dns names: api, backend",
        "0.0.0.0:8080->80/tcp (api)",
        "resolver: berth's DNS server at 10.90.0.1:53",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // By endpoint name, the same namespace.
    let by_name = sb.berth_ok(&["inspect", "api"]);
    assert!(by_name.contains("namespace /run/netns/c1"), "{by_name}");
    // The peer named is the host side the state records.
    let eps = sb.endpoints();
    let api = eps.iter().find(|e| e["name"] == "api").unwrap();
    let host = api["host_ifname"].as_str().unwrap();
    assert!(text.contains(&format!("peer {host} (host)")), "{text}");
}

#[test]
fn inspect_json_has_the_fields() {
    let sb = Sandbox::new();
    setup(&sb);
    let v = sb.berth_json(&["inspect", "c1", "--json"]);
    let arr = |k: &str| {
        v[k].as_array()
            .unwrap_or_else(|| panic!("{k}: {v:#}"))
            .clone()
    };
    let links = arr("links");
    let eth0 = links.iter().find(|l| l["name"] == "eth0").expect("eth0");
    assert_eq!(eth0["state"], "UP");
    assert_eq!(eth0["mtu"], 1500);
    assert_eq!(eth0["mac"], "02:42:0a:5a:00:02");
    assert!(eth0["peer"].as_str().unwrap().starts_with("vb"), "{eth0}");
    assert!(arr("addresses")
        .iter()
        .any(|a| a["dev"] == "eth1" && a["address"] == "10.91.0.2/24"));
    assert!(arr("routes")
        .iter()
        .any(|r| r["route"] == "default via 10.90.0.1 dev eth0"));
    assert!(arr("neighbours")
        .iter()
        .any(|n| n["address"] == "10.90.0.3" && n["dev"] == "eth0"));
    let eps = arr("endpoints");
    assert_eq!(eps.len(), 2, "{eps:#?}");
    let api = eps.iter().find(|e| e["name"] == "api").unwrap();
    assert_eq!(api["network"], "web");
    assert_eq!(api["address"], "10.90.0.2/24");
    assert_eq!(api["ports"], serde_json::json!(["0.0.0.0:8080->80/tcp"]));
    assert_eq!(api["dns_names"], serde_json::json!(["api", "backend"]));
    assert_eq!(arr("published_ports").len(), 1);
    assert_eq!(v["resolver"], "10.90.0.1:53");
    // The kernel is the oracle for the links.
    let ip: Value = sb.ip_json_in(Some("c1"), &["link", "show"]);
    let names: Vec<&str> = ip
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    let ours: Vec<&str> = links.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(ours, names);
}

#[test]
fn a_namespace_berth_never_connected_is_shown_without_endpoints() {
    let sb = Sandbox::new();
    sb.add_netns("plain");
    let text = sb.berth_ok(&["inspect", "plain"]);
    assert!(text.contains("lo loopback"), "{text}");
    assert!(
        text.contains("(none: berth has not connected this namespace)"),
        "{text}"
    );
}

#[test]
fn an_unknown_target_is_one_line_and_exit_2() {
    let sb = Sandbox::new();
    setup(&sb);
    let out = sb.berth(&["inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
    assert!(stdout(&out).is_empty());
}
