//! berth's nftables table read back with `nft -j` as an oracle: its shape,
//! that connects do not change it, `network rm`, `reset`, `--dry-run`, and
//! the warning about another firewall's forward drop policy.

mod util;

use serde_json::Value;
use util::*;

fn berth_table(sb: &Sandbox) -> Vec<Value> {
    let out = sb.cmd("nft", &["-j", "list", "table", "inet", "berth"]);
    assert_ok_ctx(&out, "nft -j list table inet berth");
    let v = parse_json(&out, "nft -j");
    as_array(v["nftables"].clone())
}

fn of_kind(list: &[Value], kind: &str) -> Vec<Value> {
    list.iter().filter_map(|o| o.get(kind).cloned()).collect()
}

fn names(list: &[Value], kind: &str) -> Vec<String> {
    let mut v: Vec<String> = of_kind(list, kind)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Map elements as (key, verdict text).
fn elements(list: &[Value], map: &str) -> Vec<String> {
    let m = of_kind(list, "map")
        .into_iter()
        .find(|m| m["name"] == map)
        .unwrap_or_else(|| panic!("no map {map}"));
    let mut v: Vec<String> = m["elem"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn ruleset_matches_intent_and_does_not_grow_with_containers() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "beta",
        "--subnet",
        "10.91.0.0/24",
        "--no-icc",
        "--internal",
    ]);
    let t = berth_table(&sb);
    let mut chains = names(&t, "chain");
    // The table is marked with the instance id of the state that owns it.
    let owner: Vec<String> = chains
        .iter()
        .filter(|c| c.starts_with("owner-"))
        .cloned()
        .collect();
    assert_eq!(owner.len(), 1, "{chains:?}");
    assert_eq!(owner[0].len(), "owner-".len() + 16, "{owner:?}");
    chains.retain(|c| !c.starts_with("owner-"));
    assert_eq!(
        chains,
        vec![
            "alpha-in",
            "alpha-nat",
            "alpha-out",
            "beta-in",
            "beta-out",
            "forward",
            "input",
            "output",
            "postrouting",
            "prerouting"
        ]
    );
    let base: Vec<Value> = of_kind(&t, "chain")
        .into_iter()
        .filter(|c| c.get("hook").is_some())
        .collect();
    let fwd = base.iter().find(|c| c["name"] == "forward").unwrap();
    assert_eq!(fwd["hook"], "forward");
    assert_eq!(
        fwd["policy"], "accept",
        "berth never drops others' traffic by policy"
    );
    let post = base.iter().find(|c| c["name"] == "postrouting").unwrap();
    assert_eq!(post["type"], "nat");
    let input = base.iter().find(|c| c["name"] == "input").unwrap();
    assert_eq!(input["policy"], "accept");
    let fwd_from = elements(&t, "fwd_from");
    assert_eq!(fwd_from.len(), 2, "{fwd_from:?}");
    assert!(fwd_from[0].contains("berth-alpha") && fwd_from[0].contains("alpha-out"));
    // Internal: no masquerade element.
    let nat = elements(&t, "nat_from");
    assert_eq!(nat.len(), 1, "{nat:?}");
    assert!(nat[0].contains("alpha-nat"), "{nat:?}");
    let text = stdout(&sb.cmd("nft", &["list", "table", "inet", "berth"]));
    assert!(
        text.contains("ip saddr 10.90.0.0/24 oifname != \"berth-alpha\" masquerade"),
        "{text}"
    );
    assert!(
        text.contains("oifname \"berth-beta\" counter"),
        "no-icc drop: {text}"
    );
    assert!(
        text.contains("iifname @bridges ip daddr 127.0.0.0/8 ct status ! dnat counter"),
        "loopback protection: {text}"
    );
    let bridge = sb.ip_json(&["-d", "link", "show", "berth-beta"]);
    assert_eq!(
        bridge[0]["linkinfo"]["info_data"]["nf_call_iptables"], 1,
        "{bridge}"
    );

    let rules_before = of_kind(&t, "rule").len();
    let elems_before = elements(&t, "fwd_to");
    for i in 0..4 {
        let ns = format!("c{i}");
        sb.add_netns(&ns);
        sb.connect(if i % 2 == 0 { "alpha" } else { "beta" }, &ns, &[]);
    }
    let after = berth_table(&sb);
    assert_eq!(of_kind(&after, "rule").len(), rules_before);
    assert_eq!(elements(&after, "fwd_to"), elems_before);
    assert_eq!(
        normalize(&after),
        normalize(&t),
        "connect changed the ruleset"
    );

    // rm takes the network's part away; the last rm takes the table.
    sb.berth_ok(&["network", "rm", "beta", "--force"]);
    let t = berth_table(&sb);
    assert!(!names(&t, "chain").iter().any(|c| c.starts_with("beta-")));
    assert_eq!(elements(&t, "fwd_from").len(), 1);
    sb.berth_ok(&["network", "rm", "alpha", "--force"]);
    let out = sb.cmd("nft", &["-j", "list", "ruleset"]);
    assert!(!stdout(&out).contains("berth"), "{}", stdout(&out));
}

/// Handles and counters aside.
fn normalize(v: &[Value]) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("handle");
                m.remove("metainfo");
                m.remove("counter");
                for x in m.values_mut() {
                    walk(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = scrub(Value::Array(v.to_vec()));
    walk(&mut v);
    v
}

#[test]
fn reset_leaves_the_host_as_before_the_first_berth_command() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.sh_ok("ip link add uplink1 type veth peer name up1peer && ip addr add 10.55.0.1/24 dev uplink1 && ip link set uplink1 up && ip link set up1peer up");
    // Someone else's table stays.
    sb.sh_ok("nft add table inet mine && nft add chain inet mine c");
    let before = sb.snapshot();
    let rules_before = stdout(&sb.cmd("ip", &["-4", "rule", "show"]));
    let all_routes_before = stdout(&sb.cmd("ip", &["-4", "route", "show", "table", "all"]));
    let ruleset_before = stdout(&sb.cmd("nft", &["list", "ruleset"]));

    sb.create_network("alpha", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "beta",
        "--subnet",
        "10.91.0.0/24",
        "--no-icc",
        "--log-drops",
        "--deny-egress",
        "10.0.0.0/8",
        "--uplink",
        "uplink1",
        "--uplink-gateway",
        "10.55.0.2",
    ]);
    for (net, ns) in [("alpha", "a"), ("beta", "b")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    sb.assert_tcp(Some("a"), &format!("{}:8080", inet.public_ip));

    let dry = sb.berth_ok(&["reset", "--dry-run"]);
    assert!(dry.contains("nft 'delete table inet berth'"), "{dry}");
    assert!(dry.contains("ip rule del from 10.91.0.0/24"), "{dry}");
    let out = sb.berth_ok(&["reset"]);
    assert!(out.contains("2 network(s)"), "{out}");
    // The namespaces were the test's; berth's devices in them are gone.
    for ns in ["a", "b"] {
        sb.wait_link_gone(Some(ns), "eth0", std::time::Duration::from_secs(5));
        sb.sh_ok(&format!("ip netns del {ns}"));
    }
    sb.snapshot().assert_same(&before, "after reset");
    assert_eq!(stdout(&sb.cmd("ip", &["-4", "rule", "show"])), rules_before);
    assert_eq!(
        stdout(&sb.cmd("ip", &["-4", "route", "show", "table", "all"])),
        all_routes_before
    );
    assert_eq!(stdout(&sb.cmd("nft", &["list", "ruleset"])), ruleset_before);
    // A second reset has nothing to do and still succeeds.
    sb.berth_ok(&["reset"]);
    sb.snapshot().assert_same(&before, "after a second reset");
}

#[test]
fn dry_run_prints_the_nft_changes_and_changes_nothing() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let out = sb.berth_ok(&[
        "network",
        "create",
        "alpha",
        "--subnet",
        "10.90.0.0/24",
        "--dry-run",
    ]);
    assert!(out.contains("ip link add berth-alpha"), "{out}");
    assert!(out.contains("nft 'add table inet berth'"), "{out}");
    assert!(
        out.contains("nft 'add element inet berth fwd_from { \"berth-alpha\" : jump alpha-out }'"),
        "{out}"
    );
    sb.snapshot().assert_same(&before, "dry run");
    // Each printed nft line is a valid command: run them for real.
    for line in out.lines().filter(|l| l.starts_with("nft '")) {
        sb.sh_ok(line);
    }
    let t = berth_table(&sb);
    assert!(names(&t, "chain").contains(&"alpha-out".to_string()));
}

#[test]
fn a_foreign_forward_drop_policy_is_warned_about() {
    let sb = Sandbox::new();
    sb.sh_ok(
        "nft add table ip filter && \
         nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'",
    );
    let out = sb.berth(&["network", "create", "alpha", "--subnet", "10.90.0.0/24"]);
    assert_ok_ctx(&out, "network create");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("ip filter") && err.contains("FORWARD"),
        "{err}"
    );
    // Without such a chain there is no warning.
    sb.sh_ok("nft delete table ip filter");
    let out = sb.berth(&["network", "create", "beta", "--subnet", "10.91.0.0/24"]);
    assert_ok_ctx(&out, "network create");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// The suite runs with `BERTH_NFT_MAX_KERNEL` (see util); this proves the
/// guard is really in force by lowering it below what berth needs, and
/// that a refused batch changes nothing.
#[test]
fn the_kernel_guard_refuses_what_an_older_kernel_lacks() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let mut c = sb.berth_command(&["network", "create", "alpha", "--subnet", "10.90.0.0/24"]);
    c.env("BERTH_NFT_MAX_KERNEL", "5.5");
    let out = run_timeout(c, CMD_TIMEOUT);
    assert_fails_with(
        &out,
        1,
        "needs Linux 5.6, newer than BERTH_NFT_MAX_KERNEL=5.5",
    );
    sb.snapshot()
        .assert_same(&before, "refused by the kernel guard");
    // At the supported minimum, create and remove (plain deletes) pass.
    sb.berth_ok(&["network", "create", "alpha", "--subnet", "10.90.0.0/24"]);
    sb.berth_ok(&[
        "network",
        "create",
        "beta",
        "--subnet",
        "10.91.0.0/24",
        "--log-drops",
    ]);
    sb.add_netns("a");
    sb.connect(
        "alpha",
        "a",
        &["-p", "8080:80", "-p", "127.0.0.1:5353:53/udp"],
    );
    sb.berth_ok(&["disconnect", "alpha", "a"]);
    sb.berth_ok(&["network", "rm", "beta"]);
    sb.berth_ok(&["network", "rm", "alpha"]);
    let out = sb.cmd("nft", &["list", "tables"]);
    assert!(!stdout(&out).contains("berth"), "{}", stdout(&out));
}
