//! Guards against input that used to pass and then break things quietly:
//! two endpoints of one bridge with one MAC, a `--mac` equal to the
//! bridge's, a TARGET that names one endpoint's namespace and another
//! endpoint, and CNI input a runtime should never get away with (a
//! failing ADD leaving a state directory, container IDs with '/' or a
//! newline, IDs whose endpoint names used to clash). Each test runs in its
//! own sandbox.

mod util;

use serde_json::{json, Value};
use util::cni::{cni, Run};
use util::*;

/// A derived MAC (02:42 and the address) that another endpoint of the
/// bridge already has as its explicit `--mac` is not handed out again:
/// the later endpoint gets another, and both keep their traffic.
#[test]
fn a_derived_mac_never_repeats_an_explicit_one() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("a");
    sb.add_netns("b");
    // a takes .2 but the MAC that .3 would derive.
    let ea = sb.connect("web", "a", &["--mac", "02:42:0a:5a:00:03"]);
    let eb = sb.connect("web", "b", &[]);
    assert_eq!(
        (ea["ip"].as_str(), eb["ip"].as_str()),
        (Some("10.90.0.2"), Some("10.90.0.3"))
    );
    let mac_a = sb.link(Some("a"), "eth0").expect("eth0 in a")["address"].clone();
    let mac_b = sb.link(Some("b"), "eth0").expect("eth0 in b")["address"].clone();
    assert_eq!(mac_a, "02:42:0a:5a:00:03");
    assert_ne!(mac_a, mac_b, "two ports of one bridge with one MAC");
    assert_eq!(eb["mac"], mac_b, "the MAC reported is the kernel's");
    // Both answer: with one MAC, the bridge would deliver to one of them.
    let _sa = sb.tcp_server(Some("a"), "10.90.0.2:7000");
    let _sb = sb.tcp_server(Some("b"), "10.90.0.3:7000");
    sb.add_netns("c");
    sb.connect("web", "c", &[]);
    assert_eq!(sb.assert_tcp(Some("c"), "10.90.0.2:7000"), "10.90.0.4");
    assert_eq!(sb.assert_tcp(Some("c"), "10.90.0.3:7000"), "10.90.0.4");
}

/// `--mac` equal to the bridge's own MAC is refused, naming the bridge,
/// and nothing changes.
#[test]
fn the_bridges_mac_is_refused_as_an_endpoints() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let bridge = sb.link(None, "berth-web").expect("the bridge");
    let bridge_mac = bridge["address"].as_str().unwrap().to_string();
    assert_eq!(bridge_mac, "02:42:0a:5a:00:01");
    sb.add_netns("a");
    sb.assert_refused(
        &["connect", "web", "a", "--mac", &bridge_mac],
        "bridge berth-web",
    );
    // The same MAC spelled in capitals is the same MAC.
    sb.assert_refused(
        &["connect", "web", "a", "--mac", "02:42:0A:5A:00:01"],
        "bridge berth-web",
    );
}

/// Namespace `x` holds endpoint `one`; endpoint `x` lives in namespace
/// `y`. `disconnect web x` could mean either: it is refused, naming both,
/// and the unambiguous spellings work.
#[test]
fn disconnect_refuses_a_target_that_is_a_namespace_and_another_endpoint() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("x");
    sb.add_netns("y");
    sb.connect("web", "x", &["--name", "one"]);
    sb.connect("web", "y", &["--name", "x"]);
    let before = sb.snapshot();
    let out = sb.berth(&["disconnect", "web", "x"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for needle in [
        "ambiguous",
        "\"one\"",
        "\"x\"",
        "/run/netns/x",
        "/run/netns/y",
    ] {
        assert!(err.contains(needle), "should name {needle}: {err}");
    }
    sb.snapshot().assert_same(&before, "the refused disconnect");

    // The namespace by its path: endpoint `one` goes.
    let out = sb.berth_ok(&["disconnect", "web", "/run/netns/x"]);
    assert!(out.contains("disconnected one"), "{out}");
    // Now only one thing is called x: the endpoint.
    let out = sb.berth_ok(&["disconnect", "web", "x"]);
    assert!(out.contains("disconnected x"), "{out}");
    assert!(sb.endpoints().is_empty());
}

/// `exec x` with a namespace `x` and an endpoint `x` in namespace `y` is
/// refused the same way; an endpoint name that is no namespace's enters
/// the endpoint's namespace.
#[test]
fn exec_refuses_an_ambiguous_target_and_enters_an_endpoint_by_name() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("x");
    sb.add_netns("y");
    sb.connect("web", "x", &["--name", "one"]);
    sb.connect("web", "y", &["--name", "x"]);
    let out = sb.berth(&["exec", "x", "--", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "ran in one of them: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for needle in ["ambiguous", "/run/netns/x", "/run/netns/y", "\"x\""] {
        assert!(err.contains(needle), "should name {needle}: {err}");
    }
    // By path, each is reached.
    let addr = |target: &str| {
        let out = sb.berth_ok(&[
            "exec", target, "--", "ip", "-4", "-o", "addr", "show", "eth0",
        ]);
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(addr("/run/netns/x"), "10.90.0.2/24");
    assert_eq!(addr("/run/netns/y"), "10.90.0.3/24");
    // `one` is no namespace: it is the endpoint in x.
    assert_eq!(addr("one"), "10.90.0.2/24");
    // A dry run resolves the same way.
    let plan = sb.berth(&["exec", "--dry-run", "x", "--", "true"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
}

fn add(sb: &Sandbox, id: &str, netns: &str, conf: &Value) -> Run {
    cni(
        sb,
        "ADD",
        &[
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &format!("/run/netns/{netns}")),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    )
}

fn conf(state_dir: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "pods", "type": "berth",
                       "subnet": "10.77.0.0/24", "stateDir": state_dir});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn exists(sb: &Sandbox, path: &str) -> bool {
    sb.sh(&format!("test -e {path}")).status.success()
}

/// An ADD berth refuses (a reserved subnet, an address outside the
/// subnet) leaves no state directory behind; the first ADD that succeeds
/// makes it.
#[test]
fn a_failing_add_creates_no_state_directory() {
    let sb = Sandbox::new();
    sb.add_netns("p1");
    let dir = "/run/cni-fresh/state";
    for (extra, what) in [
        (json!({"subnet": "127.0.0.0/24"}), "a reserved subnet"),
        (
            json!({"runtimeConfig": {"ips": ["10.78.0.9"]}}),
            "an address outside the subnet",
        ),
    ] {
        let r = add(&sb, "c1", "p1", &conf(dir, extra));
        assert_ne!(r.code, 0, "{what}: {}", r.out);
        assert!(
            r.out["code"].as_u64().is_some(),
            "{what}: {} {}",
            r.out,
            r.err
        );
        assert!(!exists(&sb, dir), "{what}: the ADD left {dir} behind");
        assert!(!exists(&sb, "/run/cni-fresh"), "{what}: its parent too");
    }
    assert!(sb.link(None, "berth-pods").is_none(), "no bridge either");
    let r = add(&sb, "c1", "p1", &conf(dir, json!({})));
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(exists(&sb, &format!("{dir}/berth.db")));
}

/// Container IDs with characters the spec does not allow are refused with
/// code 4 before anything is made.
#[test]
fn container_ids_outside_the_specs_alphabet_are_refused() {
    let sb = Sandbox::new();
    sb.add_netns("p1");
    let c = conf(STATE_DIR, json!({}));
    for id in ["a/b", "../../etc", "abc\ndef", "with space", "semi;colon"] {
        let r = add(&sb, id, "p1", &c);
        assert_eq!(r.code, 1, "{id:?}: {} {}", r.out, r.err);
        assert_eq!(r.out["code"], 4, "{id:?}: {}", r.out);
        let msg = r.out["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("CNI_CONTAINERID"), "{id:?}: {msg}");
        assert!(
            sb.link(None, "berth-pods").is_none(),
            "{id:?}: made a bridge"
        );
        assert!(sb.endpoints().is_empty(), "{id:?}");
    }
    // The spec's whole alphabet passes.
    let r = add(&sb, "Az09-_.x", "p1", &c);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
}

/// Valid IDs that used to give one endpoint name (sharing their first 44
/// characters, or differing only in case, which DNS names fold) each get
/// an endpoint, and DEL takes each one's own.
#[test]
fn valid_container_ids_never_share_an_endpoint_name() {
    let sb = Sandbox::new();
    let c = conf(STATE_DIR, json!({})).to_string();
    let long = "f".repeat(60);
    let ids = [
        format!("{long}0001"),
        format!("{long}0002"),
        "Pod-A".to_string(),
        "pod-a".to_string(),
        "pod-a-eth0".to_string(),
    ];
    for (i, id) in ids.iter().enumerate() {
        let netns = format!("p{i}");
        sb.add_netns(&netns);
        let r = cni(
            &sb,
            "ADD",
            &[
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", &format!("/run/netns/{netns}")),
                ("CNI_IFNAME", "eth0"),
            ],
            &c,
        );
        assert_eq!(r.code, 0, "{id}: {} {}", r.out, r.err);
    }
    let names: std::collections::HashSet<String> = sb
        .endpoints()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(names.len(), ids.len(), "{names:?}");
    assert!(
        names.contains("cni-pod-a-eth0"),
        "readable when it can be: {names:?}"
    );
    // Each DEL removes its own attachment and no other.
    for (i, id) in ids.iter().enumerate() {
        let r = cni(
            &sb,
            "DEL",
            &[
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", &format!("/run/netns/p{i}")),
                ("CNI_IFNAME", "eth0"),
            ],
            &c,
        );
        assert_eq!(r.code, 0, "DEL {id}: {} {}", r.out, r.err);
        assert_eq!(sb.endpoints().len(), ids.len() - i - 1, "after DEL {id}");
    }
}
