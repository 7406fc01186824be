use super::*;
use crate::model::{NetworkPolicy, Uplink};

fn net(name: &str, policy: NetworkPolicy) -> Network {
    Network {
        id: 1,
        name: name.into(),
        subnet: "10.90.0.0/24".parse().unwrap(),
        gateway: "10.90.0.1".parse().unwrap(),
        bridge: format!("berth-{name}"),
        mtu: 1500,
        link_group: 1,
        route_table: 2,
        policy,
    }
}

#[test]
fn first_network_brings_the_table_and_its_undo_removes_it() {
    let c = add_network(&net("web", NetworkPolicy::default()), false, "t");
    let lines = c.batch.render();
    assert_eq!(lines[0], "add table inet berth");
    assert!(lines.contains(&"add rule inet berth forward iifname vmap @fwd_from".to_string()));
    assert!(lines.contains(
        &"add rule inet berth web-nat ip saddr 10.90.0.0/24 oifname != \"berth-web\" masquerade"
            .to_string()
    ));
    assert_eq!(c.undo.render(), vec!["delete table inet berth"]);
}

#[test]
fn later_networks_add_only_their_part() {
    let c = add_network(&net("web", NetworkPolicy::default()), true, "t");
    let lines = c.batch.render();
    assert!(lines.iter().all(|l| !l.contains("add table")), "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l.contains("web-") || l.contains("berth-web") || l.contains("10.90.0.0/24")));
    assert_eq!(
        c.undo,
        remove_network(&net("web", NetworkPolicy::default()), false, "t").batch
    );
}

#[test]
fn options_shape_the_out_chain() {
    let policy = NetworkPolicy {
        masquerade: true,
        icc: false,
        internal: true,
        deny_egress: vec!["10.0.0.0/8".parse().unwrap()],
        uplink: Some(Uplink {
            ifname: "eth1".into(),
            gateway: "192.0.2.1".parse().unwrap(),
        }),
        log_drops: true,
        dns: true,
        cluster_cidrs: Vec::new(),
    };
    let lines = add_network(&net("db", policy), true, "t").batch.render();
    let out: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("add rule inet berth db-out"))
        .collect();
    assert_eq!(
        out,
        vec![
            "add rule inet berth db-out ct state invalid goto db-drop",
            "add rule inet berth db-out oifname \"berth-db\" goto db-drop",
            "add rule inet berth db-out ip daddr 10.0.0.0/8 goto db-reject",
            "add rule inet berth db-out goto db-drop",
        ]
    );
    // Internal networks are not masqueraded.
    assert!(lines.iter().all(|l| !l.contains("masquerade")), "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("log prefix \"berth db drop: \"")));
}

#[test]
fn removing_the_last_network_removes_the_table_and_undo_rebuilds_it() {
    let n = net("web", NetworkPolicy::default());
    let c = remove_network(&n, true, "t");
    assert_eq!(c.batch.render(), vec!["delete table inet berth"]);
    assert_eq!(c.undo, add_network(&n, false, "t").batch);
}

#[test]
fn published_ports_become_map_elements_only() {
    use crate::model::PortSpec;
    let ip = "10.90.0.2".parse().unwrap();
    let m = |s: &str| PortSpec::parse(s).unwrap().with_host_port(49153);
    let ports = [
        m("8080:80"),
        m("127.0.0.1:5353:53/udp"),
        m("9000-9010:9000-9010"),
        m("7100-7101:80-81/sctp"),
    ];
    let c = ports::publish(ip, &ports);
    assert_eq!(
        c.batch.render(),
        vec![
            "add element inet berth published4 { 127.0.0.1 . udp . 5353 : 10.90.0.2 . 53 }",
            "add element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80, \
             sctp . 7100 : 10.90.0.2 . 80, sctp . 7101 : 10.90.0.2 . 81 }",
            "add element inet berth published4_ranges { 0.0.0.0/0 . tcp . 9000-9010 : 10.90.0.2 }",
        ]
    );
    assert!(c
        .undo
        .render()
        .iter()
        .all(|l| l.starts_with("delete element")));
    assert_eq!(ports::unpublish(ip, &ports).undo, c.batch);
    assert!(ports::publish(ip, &[]).batch.is_empty());
}

#[test]
fn the_skeleton_has_the_published_port_rules_and_masquerades() {
    let lines = add_network(&net("web", NetworkPolicy::default()), false, "t")
        .batch
        .render();
    for want in [
        "add rule inet berth prerouting meta l4proto tcp fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4",
        "add rule inet berth output meta l4proto udp fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4_ranges",
        "add rule inet berth postrouting oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade",
        "add rule inet berth postrouting ct status dnat ip saddr @subnets4 ip daddr @subnets4 masquerade",
        "add element inet berth subnets4 { 10.90.0.0/24 }",
        "add chain inet berth input { type filter hook input priority filter; policy accept; }",
        "add rule inet berth input iifname @bridges ip daddr 127.0.0.0/8 ct status & (dnat) == 0 counter drop",
    ] {
        assert!(lines.iter().any(|l| l == want), "missing {want}\n{lines:#?}");
    }
}

fn policies() -> Vec<NetworkPolicy> {
    let mut out = Vec::new();
    for masquerade in [true, false] {
        for internal in [true, false] {
            for log_drops in [true, false] {
                out.push(NetworkPolicy {
                    masquerade,
                    internal,
                    log_drops,
                    ..Default::default()
                });
            }
        }
    }
    out
}

#[test]
fn removing_a_network_deletes_exactly_the_chains_and_elements_it_added() {
    for policy in policies() {
        let n = net("web", policy.clone());
        let added = add_network(&n, true, "t").batch.render();
        let removed = remove_network(&n, false, "t").batch.render();
        let chains = |lines: &[String], verb: &str| -> Vec<String> {
            let mut v: Vec<String> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{verb} chain ")))
                .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            chains(&added, "add"),
            chains(&removed, "delete"),
            "{policy:?}"
        );
        let maps = |lines: &[String], verb: &str| -> Vec<String> {
            let mut v: Vec<String> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{verb} element inet berth ")))
                .map(|l| l.split(' ').next().unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(maps(&added, "add"), maps(&removed, "delete"), "{policy:?}");
    }
}

#[test]
fn every_batch_berth_builds_fits_linux_5_10() {
    use berth_nft::KernelVersion;
    let ip = "10.90.0.2".parse().unwrap();
    let ports = [crate::model::PortSpec::parse("8080:80")
        .unwrap()
        .with_host_port(8080)];
    let mut batches = vec![
        ports::publish(ip, &ports).batch,
        ports::publish(ip, &ports).undo,
        ports::unpublish(ip, &ports).batch,
        remove_all(true).batch,
    ];
    for policy in policies() {
        let n = net("web", policy);
        for exists in [true, false] {
            let c = add_network(&n, exists, "t");
            batches.extend([c.batch, c.undo]);
            let c = remove_network(&n, !exists, "t");
            batches.extend([c.batch, c.undo]);
        }
    }
    for b in &batches {
        for op in b.ops() {
            let (message, since) = op.requirement();
            assert!(
                since <= KernelVersion::new(5, 10),
                "{} needs {message} (Linux {since})",
                op.render()
            );
        }
    }
}

#[test]
fn reset_deletes_the_table_only_when_it_exists() {
    assert_eq!(
        remove_all(true).batch.render(),
        vec!["delete table inet berth"]
    );
    assert!(remove_all(false).batch.is_empty());
}

#[test]
fn cluster_cidrs_are_let_in_and_not_masqueraded() {
    let policy = NetworkPolicy {
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        ..NetworkPolicy::default()
    };
    let lines = add_network(&net("pods", policy), true, "t").batch.render();
    let of = |chain: &str| -> Vec<String> {
        let prefix = format!("add rule inet berth {chain} ");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    };
    let inward = of("pods-in");
    assert_eq!(inward[1], "ip saddr 10.244.0.0/16 accept", "{inward:?}");
    let nat = of("pods-nat");
    assert_eq!(nat[0], "ip daddr 10.244.0.0/16 return", "{nat:?}");
    assert!(nat[1].ends_with("masquerade"), "{nat:?}");
}

#[test]
fn protocols_map_to_their_nftables_names_by_number() {
    use crate::model::Proto;
    for p in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
        assert_eq!(ports::l4proto(p).to_string(), p.as_str());
    }
}
