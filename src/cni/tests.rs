//! The CNI verbs' decisions against the fake kernel and a temporary state,
//! without root: ADD makes the network on first use and attaches in one
//! transaction, CHECK compares the state, the namespace and the maps, DEL
//! detaches whatever is left, GC detaches what the runtime no longer
//! lists.

use serde_json::{json, Value};

use super::config::{self, Env};
use super::error::*;
use super::verb;
use crate::commands::tests::{host, Host};

const NETNS: &str = "/var/run/netns/cni-1";

fn env(command: &str, id: &str) -> Env {
    Env {
        command: command.into(),
        container_id: Some(id.into()),
        netns: Some(NETNS.into()),
        ifname: Some("eth0".into()),
        args: None,
    }
}

fn conf(extra: Value) -> config::NetConf {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "type": "berth",
        "subnet": "10.88.0.0/16",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    config::parse(c.to_string().as_bytes()).unwrap()
}

fn add(h: &mut Host, id: &str, extra: Value) -> Result<Value, CniError> {
    verb(&mut h.ctx, &env("ADD", id), &conf(extra)).map(|v| v.unwrap())
}

#[test]
fn add_makes_the_network_and_the_endpoint_in_one_transaction() {
    let mut h = host();
    h.fake().add_namespace(NETNS);
    let ports = json!({"runtimeConfig": {"portMappings": [
        {"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": ""}]}});
    let result = add(&mut h, "c1", ports.clone()).unwrap();
    assert_eq!(result["ips"][0]["address"], "10.88.0.2/16");
    assert_eq!(result["interfaces"][1]["sandbox"], NETNS);
    assert_eq!(
        h.rows(),
        [
            "network pods 10.88.0.0/16 ready",
            "endpoint pods/cni-c1-eth0 10.88.0.2 ready"
        ]
    );
    let elements = &h.fake().nft_elements;
    assert!(
        elements
            .iter()
            .any(|(map, e)| map == "published4_any" && format!("{e:?}").contains("8080")),
        "{elements:?}"
    );
    // A second ADD for the same attachment is the runtime's mistake.
    let err = add(&mut h, "c1", ports).unwrap_err();
    assert_eq!(err.code, CODE_EXISTS, "{}", err.msg);
    // A config that contradicts the network is a config error, and makes nothing.
    h.fake().add_namespace("/var/run/netns/cni-2");
    let mut e = env("ADD", "c2");
    e.netns = Some("/var/run/netns/cni-2".into());
    let err = verb(&mut h.ctx, &e, &conf(json!({"subnet": "10.77.0.0/16"}))).unwrap_err();
    assert_eq!(err.code, CODE_BAD_CONFIG, "{}", err.msg);
    assert_eq!(h.rows().len(), 2);
}

#[test]
fn a_failed_add_takes_back_the_network_it_made() {
    let mut h = host();
    h.fake().add_namespace(NETNS);
    let bad = json!({"runtimeConfig": {"ips": ["10.99.0.9/24"]}});
    let err = add(&mut h, "c1", bad.clone()).unwrap_err();
    assert!(err.msg.contains("10.99.0.9"), "{}", err.msg);
    // The first ADD of a state directory is planned first: nothing at all.
    assert!(h.ctx.store_read_only().unwrap().is_none());
    assert!(!h.ctx.state_dir.exists());
    assert!(h.host_links().is_empty());
    // With a state already there, the network made is taken back.
    h.network("other", "10.66.0.0/24");
    let err = add(&mut h, "c1", bad).unwrap_err();
    assert!(err.msg.contains("10.99.0.9"), "{}", err.msg);
    assert_eq!(h.rows(), ["network other 10.66.0.0/24 ready"]);
    assert_eq!(h.host_links(), ["berth-other"]);
}

#[test]
fn check_compares_state_namespace_and_maps_then_del_removes_all() {
    let mut h = host();
    h.fake().add_namespace(NETNS);
    let ports = json!({"runtimeConfig": {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}});
    let result = add(&mut h, "c1", ports.clone()).unwrap();
    let mut with_prev = ports.clone();
    with_prev["prevResult"] = result;
    verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev.clone())).unwrap();

    // The runtime asks for other ports than berth publishes.
    let mut other = with_prev.clone();
    other["runtimeConfig"]["portMappings"][0]["hostPort"] = 9090.into();
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(other)).unwrap_err();
    assert_eq!(err.code, CODE_CHECK_FAILED);
    assert!(err.msg.contains("published ports differ"), "{}", err.msg);

    // Someone deleted the map element.
    h.fake().nft_elements.clear();
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev.clone())).unwrap_err();
    assert!(err.msg.contains("lacks the element"), "{}", err.msg);

    verb(&mut h.ctx, &env("DEL", "c1"), &conf(json!({}))).unwrap();
    assert_eq!(h.rows(), ["network pods 10.88.0.0/16 ready"]);
    // The veth waits, out of service, for the supervisor to delete it.
    let links = h.host_links();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(
        links[0] == "berth-pods" && crate::model::names::is_pending_name(&links[1]),
        "{links:?}"
    );
    assert_eq!(h.pending.borrow().last(), Some(&1));
    // Nothing left: DEL succeeds again, and CHECK knows no such container.
    verb(&mut h.ctx, &env("DEL", "c1"), &conf(json!({}))).unwrap();
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev)).unwrap_err();
    assert_eq!(err.code, CODE_UNKNOWN_CONTAINER);
}

#[test]
fn gc_detaches_every_attachment_the_runtime_no_longer_lists() {
    let mut h = host();
    for i in 1..=3 {
        let path = format!("/var/run/netns/cni-{i}");
        h.fake().add_namespace(path.as_str());
        let mut e = env("ADD", &format!("c{i}"));
        e.netns = Some(path);
        verb(&mut h.ctx, &e, &conf(json!({}))).unwrap();
    }
    let keep = json!({"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]});
    let before = h.fake().log.len();
    verb(&mut h.ctx, &env("GC", "-"), &conf(keep)).unwrap();
    let rows = h.rows();
    assert_eq!(
        rows,
        [
            "network pods 10.88.0.0/16 ready",
            "endpoint pods/cni-c2-eth0 10.88.0.3 ready"
        ]
    );
    // Both stale veths went in one request (and their anti-spoofing
    // elements in one batch after).
    let deletes: Vec<&String> = h.fake().log[before..]
        .iter()
        .filter(|l| l.starts_with("delete_link"))
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
}

#[test]
fn endpoint_names_differ_for_every_valid_pair_also_in_lower_case() {
    use super::verbs::endpoint_name;
    let long = "f".repeat(60);
    let pairs = [
        ("c1", "eth0"),
        ("c1", "net1"),
        ("c1-net1", "eth0"),
        ("c1", "net1-eth0"),
        ("C1", "eth0"),
        ("c1", "ETH0"),
        (&format!("{long}0001")[..], "eth0"),
        (&format!("{long}0002")[..], "eth0"),
        ("c1", "eth@0"),
        ("c1", "eth_0"),
    ];
    let names: Vec<String> = pairs.iter().map(|(i, f)| endpoint_name(i, f)).collect();
    assert_eq!(names[0], "cni-c1-eth0", "readable when it reads back");
    assert_eq!(names[2], "cni-c1-net1-eth0");
    let lower: std::collections::HashSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(lower.len(), pairs.len(), "{names:#?}");
    for n in &names {
        crate::model::names::check_name("endpoint", n).unwrap();
    }
    assert!(
        names[6].starts_with("cni-ffffffffffff-eth0-"),
        "{}",
        names[6]
    );
}

#[test]
fn container_ids_outside_the_specs_alphabet_are_code_4() {
    let mut h = host();
    h.fake().add_namespace(NETNS);
    for id in ["a/b", "a\nb", "a b", "ä"] {
        let err = add(&mut h, id, json!({})).unwrap_err();
        assert_eq!(err.code, CODE_BAD_ENV, "{id:?}: {}", err.msg);
    }
    assert!(
        h.ctx.store_read_only().unwrap().is_none(),
        "nothing recorded"
    );
    // DEL stays lenient: it identifies the attachment, whatever the ID.
    let del = verb(&mut h.ctx, &env("DEL", "a/b"), &conf(json!({})));
    assert!(del.is_ok(), "{:?}", del.err().map(|e| e.msg));
}

#[test]
fn the_bandwidth_capability_is_read_in_every_spelling_and_checked() {
    use crate::model::Limit;
    // go-cni's Go field names, with containerd's "no burst given".
    let go = conf(json!({"runtimeConfig": {"bandwidth": {
        "IngressRate": 20_000_000u64, "IngressBurst": 4_294_967_295u64,
        "EgressRate": 5_000_000u64, "EgressBurst": 4_294_967_295u64}}}));
    assert_eq!(go.bandwidth.inbound, Some(Limit::at_rate(20_000_000)));
    assert_eq!(go.bandwidth.outbound, Some(Limit::at_rate(5_000_000)));
    // The reference plugin's keys, with a burst of the runtime's own.
    let tags = conf(json!({"runtimeConfig": {"bandwidth": {
        "ingressRate": 1_000_000, "ingressBurst": 800_000}}}));
    assert_eq!(
        tags.bandwidth.inbound,
        Some(Limit {
            rate: 1_000_000,
            burst: 100_000
        })
    );
    assert_eq!(tags.bandwidth.outbound, None);
    // CRI-O sends zeros when the pod has no limits.
    let zeros = conf(json!({"runtimeConfig": {"bandwidth": {
        "ingressRate": 0, "ingressBurst": 0, "egressRate": 0, "egressBurst": 0}}}));
    assert!(zeros.bandwidth.is_unlimited());
    for bad in [
        json!({"ingressRate": -1}),
        json!({"egressRate": "10mbit"}),
        json!([1]),
    ] {
        let text = json!({"cniVersion": "1.0.0", "name": "pods", "type": "berth",
                          "runtimeConfig": {"bandwidth": bad}})
        .to_string();
        let err = config::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err.code, CODE_BAD_CONFIG, "{bad}: {}", err.msg);
        assert!(err.msg.contains("bandwidth"), "{}", err.msg);
    }

    let mut h = host();
    h.fake().add_namespace(NETNS);
    let extra = json!({"runtimeConfig": {"bandwidth": {
        "ingressRate": 20_000_000, "egressRate": 5_000_000}}});
    let result = add(&mut h, "c1", extra.clone()).unwrap();
    let host_veth = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let ifb = crate::model::names::ifb_name(&host_veth);
    assert_eq!(
        h.fake().tc_of(&host_veth),
        [format!("redirect {ifb}"), "tbf 20mbit".into()]
    );
    let mut with_prev = extra.clone();
    with_prev["prevResult"] = result;
    verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev.clone())).unwrap();
    // Other limits than berth applied: CHECK fails.
    let mut other = with_prev.clone();
    other["runtimeConfig"]["bandwidth"]["egressRate"] = 6_000_000.into();
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(other)).unwrap_err();
    assert_eq!(err.code, CODE_CHECK_FAILED);
    assert!(err.msg.contains("bandwidth differs"), "{}", err.msg);
    // DEL takes the ifb with the veth.
    verb(&mut h.ctx, &env("DEL", "c1"), &conf(extra)).unwrap();
    assert!(h.fake().link_in(None, &ifb).is_none());
}

#[test]
fn a_runtimes_aliases_name_the_attachment_unless_invalid_or_taken() {
    let mut h = host();
    h.fake().add_namespace(NETNS);
    h.fake().add_namespace("/var/run/netns/cni-2");
    let names = |list: Value| json!({"runtimeConfig": {"aliases": {"pods": list, "other": ["x"]}}});
    let mut e = env("ADD", "c1");
    e.args = Some("IgnoreUnknown=1;K8S_POD_NAME=web".into());
    let wanted = names(json!(["www", "bad name", "0123456789ab", "WWW"]));
    verb(&mut h.ctx, &e, &conf(wanted)).unwrap();
    // Another container wanting a name c1 holds (any case) still starts.
    let mut e = env("ADD", "c2");
    e.netns = Some("/var/run/netns/cni-2".into());
    e.args = Some("K8S_POD_NAME=WEB".into());
    verb(&mut h.ctx, &e, &conf(names(json!(["www", "db"])))).unwrap();
    // Without the capability, K8S_POD_NAME names nothing.
    h.fake().add_namespace("/var/run/netns/cni-3");
    let mut e = env("ADD", "c3");
    e.netns = Some("/var/run/netns/cni-3".into());
    e.args = Some("K8S_POD_NAME=plain".into());
    verb(&mut h.ctx, &e, &conf(json!({}))).unwrap();

    let mut store = crate::store::Store::open_read_only(&h.ctx.state_dir)
        .unwrap()
        .unwrap();
    let tx = store.read().unwrap();
    let net = tx.network("pods").unwrap().unwrap();
    let aliases = |ep: &str| {
        let e = tx.endpoint_by_name(net.id, ep).unwrap().unwrap();
        tx.aliases_of(e.id).unwrap()
    };
    assert_eq!(aliases("cni-c1-eth0"), ["web", "www", "0123456789ab"]);
    assert_eq!(aliases("cni-c2-eth0"), ["db"]);
    assert!(aliases("cni-c3-eth0").is_empty());
    assert_eq!(tx.dns_name_holder(net.id, "plain").unwrap(), None);
}

/// A dual-stack network from host-local's `ranges`: an address, a route
/// and the published ports in each family; CHECK compares both families;
/// DEL releases both addresses.
#[test]
fn dual_stack_add_check_and_del_cover_both_families() {
    let mut h = host();
    h.fake().add_namespace(NETNS);
    let extra = json!({
        "subnet": null,
        "ipam": {"type": "host-local", "ranges": [
            [{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:88::/64"}]]},
        "runtimeConfig": {
            "ips": ["fd00:88::50/64"],
            "portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::"}]}});
    let result = add(&mut h, "c1", extra.clone()).unwrap();
    assert_eq!(
        result["ips"],
        json!([
            {"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 1},
            {"address": "fd00:88::50/64", "gateway": "fd00:88::1", "interface": 1}])
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "::/0", "gw": "fd00:88::1"}])
    );
    assert_eq!(
        h.rows(),
        [
            "network pods 10.88.0.0/16,fd00:88::/64 ready",
            "endpoint pods/cni-c1-eth0 10.88.0.2,fd00:88::50 ready"
        ]
    );
    let maps: Vec<String> = h
        .fake()
        .nft_elements
        .iter()
        .map(|(m, _)| m.clone())
        .filter(|m| m.starts_with("published"))
        .collect();
    assert_eq!(maps, ["published4_any", "published6_any"], "one per family");
    let mut with_prev = extra.clone();
    with_prev["prevResult"] = result.clone();
    verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev.clone())).unwrap();

    // A prevResult without the IPv6 address does not match.
    let mut four_only = with_prev.clone();
    four_only["prevResult"]["ips"] = json!([result["ips"][0]]);
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(four_only)).unwrap_err();
    assert_eq!(err.code, CODE_CHECK_FAILED);
    assert!(err.msg.contains("fd00:88::50/64"), "{}", err.msg);

    // The IPv6 default route gone.
    let routes = std::mem::take(&mut h.fake().default_routes6);
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev.clone())).unwrap_err();
    assert!(err.msg.contains("via fd00:88::1"), "{}", err.msg);
    h.fake().default_routes6 = routes;
    verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev.clone())).unwrap();

    // The IPv6 map element gone.
    h.fake().nft_elements.retain(|(m, _)| m != "published6_any");
    let err = verb(&mut h.ctx, &env("CHECK", "c1"), &conf(with_prev)).unwrap_err();
    assert!(err.msg.contains("published6_any"), "{}", err.msg);

    verb(&mut h.ctx, &env("DEL", "c1"), &conf(json!({}))).unwrap();
    assert_eq!(h.rows(), ["network pods 10.88.0.0/16,fd00:88::/64 ready"]);
    // Both addresses are free again.
    let again = add(&mut h, "c2", extra).unwrap();
    assert_eq!(again["ips"][1]["address"], "fd00:88::50/64");
}
