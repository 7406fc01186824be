use super::*;
use crate::model::{NetworkPolicy, Uplink};

fn net(name: &str, policy: NetworkPolicy) -> Network {
    Network {
        id: 1,
        name: name.into(),
        subnets: vec![crate::model::Subnet {
            net: "10.90.0.0/24".parse().unwrap(),
            gateway: Some("10.90.0.1".parse().unwrap()),
        }],
        bridge: format!("berth-{name}"),
        mtu: 1500,
        link_group: 1,
        route_table: 2,
        policy,
        driver: Default::default(),
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
    // The anti-spoofing table comes with it, and goes with it.
    assert!(lines.contains(&"add table bridge berth".to_string()));
    assert_eq!(
        c.undo.render(),
        vec!["delete table inet berth", "delete table bridge berth"]
    );
}

#[test]
fn later_networks_add_only_their_part() {
    let c = add_network(&net("web", NetworkPolicy::default()), true, "t");
    let lines = c.batch.render();
    assert!(lines.iter().all(|l| !l.contains("add table")), "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("web-")
        || l.contains("berth-web")
        || l.contains("10.90.0.0/24")
        || l.contains("10.90.0.1 . ")));
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
        host_access: true,
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
    // The guard's table goes in a step of its own, after the veths.
    let routing: Vec<String> = add_network(&n, false, "t")
        .batch
        .render()
        .into_iter()
        .filter(|l| !l.contains(" bridge berth"))
        .collect();
    assert_eq!(c.undo.render(), routing);
    let guards = remove_guards(true, &[], &[]);
    assert_eq!(guards.batch.render(), vec!["delete table bridge berth"]);
    assert_eq!(guards.undo.render()[0], "add table bridge berth");
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
                for (host_access, dns) in [(true, true), (false, true), (false, false)] {
                    out.push(NetworkPolicy {
                        masquerade,
                        internal,
                        log_drops,
                        host_access,
                        dns,
                        ..Default::default()
                    });
                }
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
        remove_all(Tables::both(true)).batch,
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
        remove_all(Tables::both(true)).batch.render(),
        vec!["delete table inet berth", "delete table bridge berth"]
    );
    assert_eq!(
        remove_all(Tables {
            routing: false,
            guard: true
        })
        .batch
        .render(),
        vec!["delete table bridge berth"]
    );
    assert!(remove_all(Tables::both(false)).batch.is_empty());
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

fn endpoint(name: &str, last: u8, inode: u64) -> crate::model::Endpoint {
    let ip = std::net::Ipv4Addr::new(10, 90, 0, last);
    crate::model::Endpoint {
        id: i64::from(last),
        network: "web".into(),
        name: name.into(),
        netns: name.into(),
        netns_inode: inode,
        ips: vec![std::net::IpAddr::V4(ip)],
        mac: crate::model::Mac::from_ipv4(ip),
        ifname: "eth0".into(),
        host_ifname: format!("vb{name}"),
        default_route: crate::model::Families::V4,
        metric: None,
        ports: Vec::new(),
        bandwidth: Default::default(),
        allow_spoofing: false,
    }
}

#[test]
fn the_guard_table_checks_mac_address_and_arp_per_port() {
    let mut b = berth_nft::Batch::new();
    guard::create(&mut b);
    expect_test::expect![[r#"
        add table bridge berth
        add set bridge berth guarded { type ifname; }
        add set bridge berth allowed4 { type ifname . ether_addr . ipv4_addr; }
        add set bridge berth allowed6 { type ifname . ether_addr . ipv6_addr; }
        add set bridge berth targets6 { typeof iifname . ether saddr . @th,64,128; }
        add chain bridge berth prerouting { type filter hook prerouting priority filter; policy accept; }
        add chain bridge berth guard
        add rule bridge berth prerouting iifname @guarded jump guard
        add rule bridge berth guard ether type ip iifname . ether saddr . ip saddr @allowed4 return
        add rule bridge berth guard ether type arp iifname . ether saddr . arp saddr ip @allowed4 iifname . arp saddr ether . arp saddr ip @allowed4 return
        add rule bridge berth guard ether type ip6 icmpv6 type nd-neighbor-advert iifname . ether saddr . @th,64,128 != @targets6 counter drop
        add rule bridge berth guard ether type ip6 iifname . ether saddr . ip6 saddr @allowed6 return
        add rule bridge berth guard counter drop"#]]
    .assert_eq(&b.render().join("\n"));
}

#[test]
fn guard_elements_are_each_port_with_its_mac_and_its_namespaces_addresses() {
    let a = endpoint("a", 2, 1);
    // `b` and `b2` are one namespace on two networks.
    let b = endpoint("b", 3, 2);
    let b2 = crate::model::Endpoint {
        network: "other".into(),
        ..endpoint("b2", 4, 2)
    };
    let router = crate::model::Endpoint {
        allow_spoofing: true,
        ..endpoint("r", 5, 3)
    };
    let render = |e: &guard::Elements| -> Vec<String> {
        let mut batch = berth_nft::Batch::new();
        e.apply(&mut batch, berth_nft::ElemOp::Add);
        batch.render()
    };
    expect_test::expect![[r#"
        [
            "add element bridge berth guarded { \"vba\", \"vbb\", \"vbb2\" }",
            "add element bridge berth allowed4 { \"vba\" . 02:42:0a:5a:00:02 . 10.90.0.2, \"vbb\" . 02:42:0a:5a:00:03 . 10.90.0.3, \"vbb\" . 02:42:0a:5a:00:03 . 10.90.0.4, \"vbb2\" . 02:42:0a:5a:00:04 . 10.90.0.3, \"vbb2\" . 02:42:0a:5a:00:04 . 10.90.0.4 }",
        ]
    "#]]
    .assert_debug_eq(&render(&guard::elements([&a, &b, &b2, &router])));
    // A router's port has no guard, but its address is its namespace's.
    let router_too = crate::model::Endpoint {
        allow_spoofing: false,
        ..endpoint("r2", 6, 3)
    };
    let both = guard::elements([&router, &router_too]);
    assert_eq!(both.guarded.len(), 1);
    assert_eq!(both.allowed4.len(), 2, "{both:?}");
}

#[test]
fn a_guard_change_is_the_difference_and_its_undo_the_inverse() {
    let b = endpoint("b", 3, 2);
    let b2 = endpoint("b2", 4, 2);
    // Connecting b2 next to b: b2's port, and each port with the other's
    // address; nothing of b's own is touched.
    let c = guard::change(&[&b], &[&b, &b2]);
    expect_test::expect![[r#"
        add element bridge berth guarded { "vbb2" }
        add element bridge berth allowed4 { "vbb" . 02:42:0a:5a:00:03 . 10.90.0.4, "vbb2" . 02:42:0a:5a:00:04 . 10.90.0.3, "vbb2" . 02:42:0a:5a:00:04 . 10.90.0.4 }"#]]
    .assert_eq(&c.batch.render().join("\n"));
    // Disconnecting it again is the exact inverse.
    let back = guard::change(&[&b, &b2], &[&b]);
    assert_eq!(back.batch, c.undo);
    assert_eq!(back.undo, c.batch);
    // Nothing changes, nothing is sent.
    assert!(guard::change(&[&b], &[&b]).batch.is_empty());
}

#[test]
fn prerouting_never_translates_loopback_and_dns_listeners_outrank_every_address_mappings() {
    let lines = add_network(&net("web", NetworkPolicy::default()), false, "t")
        .batch
        .render();
    let of = |chain: &str| -> Vec<String> {
        let prefix = format!("add rule inet berth {chain} ");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    };
    let pre = of("prerouting");
    assert_eq!(pre[0], "ip daddr 127.0.0.0/8 return", "{pre:#?}");
    let dns = "ip daddr . meta l4proto . th dport @dns4 return";
    let at = |rules: &[String], needle: &str| rules.iter().position(|r| r.contains(needle));
    let dns6 = "ip6 daddr . meta l4proto . th dport @dns6 return";
    // The host's own connections to [::1] go to the userspace forwarder:
    // `output` returns on them right before the IPv6 lookups; prerouting
    // never sees ::1 (the kernel drops it on any interface but lo).
    let mut out = of("output");
    let lo = at(&out, "ip6 daddr ::1 return").expect("output leaves [::1] alone");
    assert_eq!(at(&out, "@published6"), Some(lo + 1), "{out:#?}");
    assert_eq!(at(&pre, "::1"), None, "{pre:#?}");
    out.remove(lo);
    for rules in [&pre[1..], &out[..]] {
        // IPv4's lookups, then IPv6's in the same order.
        let six = at(rules, "@published6").expect("the IPv6 lookups");
        let (v4, v6) = rules.split_at(six);
        let d = at(v4, dns).expect("the dns4 rule");
        assert!(v4[..d].iter().all(|r| r.ends_with("map @published4")));
        assert!(v4[d + 1..]
            .iter()
            .all(|r| r.contains("@published4_any") || r.contains("@published4_ranges")));
        let d = at(v6, dns6).expect("the dns6 rule");
        assert!(
            v6[..d].iter().all(|r| r.starts_with("meta nfproto ipv6")
                && r.ends_with("dnat ip6 to ip6 daddr . meta l4proto . th dport map @published6")),
            "{v6:#?}"
        );
        assert!(v6[d + 1..]
            .iter()
            .all(|r| r.starts_with("meta nfproto ipv6")
                && (r.contains("@published6_any") || r.contains("@published6_ranges"))));
    }
    // The host's own connections to 127.0.0.1 are translated in output.
    assert!(!of("output").iter().any(|r| r.contains("127.0.0.0/8")));
    // The network's DNS listeners.
    assert!(lines.contains(
        &"add element inet berth dns4 { 10.90.0.1 . udp . 53, 10.90.0.1 . tcp . 53 }".to_string()
    ));
    let no_dns = NetworkPolicy {
        dns: false,
        ..Default::default()
    };
    let lines = add_network(&net("web", no_dns), true, "t").batch.render();
    assert!(!lines.iter().any(|l| l.contains("dns4")), "{lines:#?}");
}

#[test]
fn no_host_access_and_internal_networks_are_dispatched_from_input_and_dnat() {
    let policy = NetworkPolicy {
        host_access: false,
        internal: true,
        ..Default::default()
    };
    let lines = add_network(&net("vault", policy), true, "t").batch.render();
    let host: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("add rule inet berth vault-host"))
        .collect();
    expect_test::expect![[r#"
        [
            "add rule inet berth vault-host ct state established,related accept",
            "add rule inet berth vault-host ip daddr 10.90.0.1 meta l4proto udp th dport 53 accept",
            "add rule inet berth vault-host ip daddr 10.90.0.1 meta l4proto tcp th dport 53 accept",
            "add rule inet berth vault-host ct status dnat ct original ip daddr 10.90.0.1 accept",
            "add rule inet berth vault-host counter drop",
        ]
    "#]]
    .assert_debug_eq(&host);
    for want in [
        "add element inet berth input_from { \"berth-vault\" : jump vault-host }",
        "add element inet berth dnat_from { \"berth-vault\" : jump vault-out }",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want}\n{lines:#?}"
        );
    }
    // The defaults have neither.
    let lines = add_network(&net("web", NetworkPolicy::default()), false, "t")
        .batch
        .render();
    assert!(!lines.iter().any(|l| l.contains("web-host")
        || l.starts_with("add element inet berth input_from")
        || l.starts_with("add element inet berth dnat_from")));
    for want in [
        "add rule inet berth input iifname vmap @input_from",
        "add rule inet berth forward ct status dnat iifname vmap @dnat_from",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want}\n{lines:#?}"
        );
    }
}

/// A dual-stack network's part of the ruleset: every rule that names an
/// address has its IPv6 twin (NAT66, `--deny-egress`, `--cluster-cidr`,
/// DNS on the IPv6 gateway), neighbour discovery reaches the host under
/// `--no-host-access`, and the subnet and listeners are in the IPv6 sets.
#[test]
fn a_dual_stack_network_has_each_rule_for_both_families() {
    let policy = NetworkPolicy {
        deny_egress: vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8:bad::/48".parse().unwrap(),
        ],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:244::/56".parse().unwrap(),
        ],
        host_access: false,
        ..NetworkPolicy::default()
    };
    let mut n = net("web", policy);
    n.subnets.push(crate::model::Subnet {
        net: "fd00:90::/64".parse().unwrap(),
        gateway: Some("fd00:90::1".parse().unwrap()),
    });
    let lines = add_network(&n, true, "t").batch.render();
    let rules: Vec<&str> = lines
        .iter()
        .filter(|l| {
            l.starts_with("add rule inet berth web-") || l.starts_with("add element inet berth")
        })
        .map(String::as_str)
        .collect();
    expect_test::expect![[r#"
        add rule inet berth web-out ct state invalid counter drop
        add rule inet berth web-out oifname "berth-web" accept
        add rule inet berth web-out ip daddr 192.0.2.0/24 counter reject with icmpx admin-prohibited
        add rule inet berth web-out ip6 daddr 2001:db8:bad::/48 counter reject with icmpx admin-prohibited
        add rule inet berth web-out oifname @bridges counter drop
        add rule inet berth web-out accept
        add rule inet berth web-in ct state invalid counter drop
        add rule inet berth web-in ip saddr 10.244.0.0/16 accept
        add rule inet berth web-in ip6 saddr fd00:244::/56 accept
        add rule inet berth web-in counter drop
        add rule inet berth web-nat ip daddr 10.244.0.0/16 return
        add rule inet berth web-nat ip6 daddr fd00:244::/56 return
        add rule inet berth web-nat ip saddr 10.90.0.0/24 oifname != "berth-web" masquerade
        add rule inet berth web-nat ip6 saddr fd00:90::/64 oifname != "berth-web" masquerade
        add element inet berth nat_from { "berth-web" : jump web-nat }
        add rule inet berth web-host ct state established,related accept
        add rule inet berth web-host icmpv6 type 135-136 accept
        add rule inet berth web-host ip daddr 10.90.0.1 meta l4proto udp th dport 53 accept
        add rule inet berth web-host ip daddr 10.90.0.1 meta l4proto tcp th dport 53 accept
        add rule inet berth web-host ct status dnat ct original ip daddr 10.90.0.1 accept
        add rule inet berth web-host ip6 daddr fd00:90::1 meta l4proto udp th dport 53 accept
        add rule inet berth web-host ip6 daddr fd00:90::1 meta l4proto tcp th dport 53 accept
        add rule inet berth web-host ct status dnat ct original ip6 daddr fd00:90::1 accept
        add rule inet berth web-host counter drop
        add element inet berth input_from { "berth-web" : jump web-host }
        add element inet berth dns4 { 10.90.0.1 . udp . 53, 10.90.0.1 . tcp . 53 }
        add element inet berth dns6 { fd00:90::1 . udp . 53, fd00:90::1 . tcp . 53 }
        add element inet berth bridges { "berth-web" }
        add element inet berth subnets4 { 10.90.0.0/24 }
        add element inet berth subnets6 { fd00:90::/64 }
        add element inet berth fwd_from { "berth-web" : jump web-out }
        add element inet berth fwd_to { "berth-web" : jump web-in }"#]]
    .assert_eq(&rules.join("\n"));
}

/// A dual-stack container's `-p 8080:80` answers in both families, each
/// to its own address; a mapping bound to an IPv6 address only in IPv6's.
#[test]
fn published_ports_go_into_each_family_the_mapping_answers_on() {
    use crate::model::PortSpec;
    let m = |s: &str| PortSpec::parse(s).unwrap().with_host_port(0);
    let ports = [
        m("8080:80"),
        m("[2001:db8::1]:8081:81"),
        m("127.0.0.1:53:53/udp"),
    ];
    let render = |ip: &str| {
        let mut b = berth_nft::Batch::new();
        ports::elements_op(&mut b, berth_nft::ElemOp::Add, ip.parse().unwrap(), &ports);
        b.render().join("\n")
    };
    expect_test::expect![[r#"
        add element inet berth published4 { 127.0.0.1 . udp . 53 : 10.90.0.2 . 53 }
        add element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80 }"#]]
    .assert_eq(&render("10.90.0.2"));
    expect_test::expect![[r#"
        add element inet berth published6 { 2001:db8::1 . tcp . 8081 : fd00:90::2 . 81 }
        add element inet berth published6_any { tcp . 8080 : fd00:90::2 . 80 }"#]]
    .assert_eq(&render("fd00:90::2"));
}
