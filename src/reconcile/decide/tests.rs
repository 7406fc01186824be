//! Every kind of disagreement between state and kernel, decided without
//! root: the rendered plan is the snapshot a reviewer reads.

use expect_test::{expect, Expect};

use super::*;
use crate::model::{names, Mac, NetworkPolicy, PortSpec};
use std::net::Ipv4Addr;

fn web() -> Network {
    Network {
        id: 1,
        name: "web".into(),
        subnets: vec![crate::model::Subnet {
            net: "10.90.0.0/24".parse().unwrap(),
            gateway: Some(std::net::IpAddr::V4(Ipv4Addr::new(10, 90, 0, 1))),
        }],
        bridge: "berth-web".into(),
        mtu: 1500,
        link_group: names::network_link_group(1),
        route_table: 0x6265_0001,
        policy: NetworkPolicy::default(),
        driver: Default::default(),
    }
}

fn endpoint(id: i64, name: &str, last: u8, ports: &[&str]) -> Endpoint {
    let ip = Ipv4Addr::new(10, 90, 0, last);
    Endpoint {
        id,
        network: "web".into(),
        name: name.into(),
        netns: name.into(),
        netns_inode: 4026532000 + id as u64,
        ips: vec![std::net::IpAddr::V4(ip)],
        mac: Mac::from_ipv4(ip),
        ifname: "eth0".into(),
        host_ifname: names::host_veth_name("web", name),
        default_route: crate::model::Families::V4,
        metric: None,
        ports: ports
            .iter()
            .map(|p| PortSpec::parse(p).unwrap().with_host_port(0))
            .collect(),
        bandwidth: Default::default(),
        allow_spoofing: false,
    }
}

fn link(name: &str, kind: &str, group: u32) -> LinkFact {
    LinkFact {
        name: name.into(),
        index: 0,
        group,
        kind: kind.into(),
        master: None,
        up: true,
        mac: None,
    }
}

fn bridge() -> LinkFact {
    LinkFact {
        index: 7,
        ..link("berth-web", "bridge", names::BRIDGE_GROUP)
    }
}

fn veth_of(e: &Endpoint) -> LinkFact {
    LinkFact {
        master: Some(bridge().index),
        ..link(&e.host_ifname, "veth", names::network_link_group(1))
    }
}

/// Kernel facts that match the state `desired` exactly.
fn matching(desired: &Desired) -> Observed {
    let nets: Vec<Network> = desired.networks.iter().map(|(n, _)| n.clone()).collect();
    let mut links = vec![bridge()];
    links.extend(desired.endpoints.iter().map(|(e, _)| veth_of(e)));
    let mut published: Vec<(IpAddr, Vec<PortMapping>)> = desired
        .endpoints
        .iter()
        .filter(|(e, _)| !e.ports.is_empty())
        .flat_map(|(e, _)| e.ips.iter().map(|ip| (*ip, e.ports.clone())))
        .collect();
    for n in nets.iter().filter(|n| n.policy.dns) {
        let g = n.gateway4().unwrap();
        published.push((g.into(), crate::dns::port_redirects(g, desired.dns_port)));
    }
    let guards = firewall::guard::elements(desired.endpoints.iter().map(|(e, _)| e));
    let fresh = firewall::rebuild(
        &nets,
        &published,
        &guards,
        firewall::Tables::default(),
        &desired.instance,
    );
    let (table, guard_table) = expected_fingerprints(&nets, &desired.instance);
    Observed {
        links,
        table,
        guard_table,
        addresses: Some(
            nets.iter()
                .flat_map(|n| {
                    n.subnets
                        .iter()
                        .map(|s| (n.bridge.clone(), s.gateway.unwrap(), s.net.prefix_len()))
                })
                .collect(),
        ),
        ip_forward: Some(true),
        elements: Some(expected_elements(&fresh.batch)),
        ..Default::default()
    }
}

/// The report, then the plan, without the firewall batch's many lines.
fn check(d: &Decision, want: Expect) {
    let mut out = d.report.join("\n");
    out.push_str("\n--\n");
    for step in &d.plan.steps {
        match step {
            Step::Nft { batch, .. } => out.push_str(&format!(
                "nft batch of {} changes (first: {})\n",
                batch.ops().len(),
                batch.render().first().cloned().unwrap_or_default()
            )),
            other => {
                for line in other.render() {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
    }
    want.assert_eq(&out);
}

#[test]
fn agreement_changes_nothing_but_confirms() {
    let c1 = endpoint(1, "c1", 2, &["8080:80"]);
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1, Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let d = decide(&desired, &matching(&desired), Scope::default());
    assert!(d.drop_endpoints.is_empty() && d.drop_networks.is_empty());
    check(
        &d,
        expect![[r#"

            --
        "#]],
    );
}

#[test]
fn what_was_lost_by_hand_is_put_back_and_only_that() {
    let c1 = endpoint(1, "c1", 2, &["8080:80"]);
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1, Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    // A published port's element deleted, the gateway address removed and
    // forwarding turned off, by hand: the chains are all there.
    for elements in observed.elements.as_mut().unwrap().values_mut() {
        elements.retain(|e| !format!("{e:?}").contains("8080"));
    }
    observed.addresses.as_mut().unwrap().clear();
    observed.ip_forward = Some(false);
    let d = decide(&desired, &observed, Scope::default());
    check(
        &d,
        expect![[r#"
            put the gateway address 10.90.0.1 back on bridge berth-web
            put the elements of berth's sets and maps back as the state says
            turned net.ipv4.ip_forward back on
            --
            ip addr replace 10.90.0.1/24 brd 10.90.0.255 dev berth-web
            nft batch of 1 changes (first: add element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80 })
            sysctl -w net.ipv4.ip_forward=1
        "#]],
    );
    // Not looked at is not known to match: everything is ensured.
    let unknown = Observed {
        elements: None,
        addresses: None,
        ip_forward: None,
        ..matching(&desired)
    };
    let d = decide(&desired, &unknown, Scope::default());
    assert_eq!(d.plan.steps.len(), 3, "{:?}", lines(&d.plan));
    assert!(d.report.is_empty(), "{:?}", d.report);
}

#[test]
fn after_a_reboot_the_network_is_rebuilt_and_dead_endpoints_dropped() {
    let c1 = endpoint(1, "c1", 2, &["8080:80"]);
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1, Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let d = decide(&desired, &Observed::default(), Scope::default());
    assert_eq!(d.drop_endpoints, vec![1]);
    check(
        &d,
        expect![[r#"
            removed endpoint web/c1: its namespace is gone
            re-created bridge berth-web of network web
            re-created the firewall table
            re-created the anti-spoofing table
            --
            ip link add berth-web mtu 1500 address 02:42:0a:5a:00:01 group 1650786304 up type bridge mcast_snooping 0
            ip addr add 10.90.0.1/24 brd 10.90.0.255 dev berth-web
            sysctl -w net.ipv4.conf.berth-web.route_localnet=1
            nft batch of 105 changes (first: add table inet berth)
            sysctl -w net.ipv4.ip_forward=1
        "#]],
    );
}

#[test]
fn interrupted_connect_is_undone_and_interrupted_disconnect_finished() {
    let c1 = endpoint(1, "c1", 2, &[]);
    let c2 = endpoint(2, "c2", 3, &[]);
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1.clone(), Status::Creating), (c2, Status::Removing)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    // c1's veth was made before the crash; c2's was already deleted.
    let mut observed = matching(&desired);
    observed
        .links
        .retain(|l| l.name != names::host_veth_name("web", "c2"));
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(d.drop_endpoints, vec![1, 2]);
    check(
        &d,
        expect![[r#"
            undid the interrupted connect of web/c1
            finished the interrupted disconnect of web/c2
            put the elements of berth's sets and maps back as the state says
            --
            ip link del vb6c39f18610fe
            nft batch of 2 changes (first: delete element bridge berth allowed4 { "vb6b39f1860f4b" . 02:42:0a:5a:00:03 . 10.90.0.3, "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2 })
        "#]],
    );
}

#[test]
fn a_deleted_veth_is_recreated_while_its_namespace_lives() {
    let c1 = endpoint(1, "c1", 2, &["80"]);
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1, Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    observed.links.retain(|l| l.kind == "bridge");
    observed.netns_alive.insert(1);
    let d = decide(&desired, &observed, Scope::default());
    assert!(d.drop_endpoints.is_empty());
    check(
        &d,
        expect![[r#"
            re-created the veth vb6c39f18610fe of web/c1
            --
            ip link add vb6c39f18610fe mtu 1500 group 1650786305 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns c1
            ip link set vb6c39f18610fe addrgenmode none
            ip -n c1 link set lo up
            ip -n c1 link set eth0 addrgenmode none
            ip -n c1 link set eth0 up
            ip -n c1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0
            ip -n c1 route add default via 10.90.0.1
            ip link set vb6c39f18610fe type bridge_slave hairpin on
        "#]],
    );
}

/// An endpoint with its own default route (netavark's metric) gets it
/// back, with its metric, when its veth is re-created.
#[test]
fn a_recreated_veth_gets_its_default_route_back_with_its_metric() {
    let c1 = Endpoint {
        metric: Some(200),
        ..endpoint(1, "c1", 2, &[])
    };
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1, Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    observed.links.retain(|l| l.kind == "bridge");
    observed.netns_alive.insert(1);
    let d = decide(&desired, &observed, Scope::default());
    let text = lines(&d.plan);
    assert!(
        text.contains("ip -n c1 route prepend default via 10.90.0.1 metric 200"),
        "{text}"
    );
}

#[test]
fn interrupted_network_create_and_gc_sweep_remove_only_berths_devices() {
    let desired = Desired {
        networks: vec![(web(), Status::Creating)],
        endpoints: vec![],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = Observed {
        links: vec![bridge()],
        ..Default::default()
    };
    // A leftover veth in a berth group, and devices berth cannot prove it
    // made: a veth-shaped name outside berth's groups, a foreign bridge.
    observed
        .links
        .push(link("vb0123456789ab", "veth", names::network_link_group(9)));
    observed.links.push(link("vbffffffffffff", "veth", 0));
    observed.links.push(link("docker0", "bridge", 0));
    observed
        .links
        .push(link("berth-old", "bridge", names::BRIDGE_GROUP));
    let d = decide(&desired, &observed, Scope { sweep: true });
    assert_eq!(d.drop_networks, vec![1]);
    check(
        &d,
        expect![[r#"
            undid the interrupted creation of network web
            removed leftover veth vb0123456789ab that no state row knows
            removed leftover bridge berth-old that no state row knows
            --
            ip link del berth-web
            ip link del vb0123456789ab
            ip link del berth-old
        "#]],
    );
}

#[test]
fn a_killed_run_is_reclaimed() {
    let c1 = endpoint(1, "run-77", 2, &[]);
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1, Status::Ready)],
        sandboxes: vec![Sandbox {
            name: "run-77".into(),
            owner_pid: 77,
            owner_start: 1,
        }],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    observed.dead_sandboxes.insert("run-77".into());
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(d.drop_endpoints, vec![1]);
    assert_eq!(d.drop_sandboxes, vec!["run-77".to_string()]);
    check(
        &d,
        expect![[r#"
            reclaimed web/run-77 of a `run` that was killed
            removed namespace run-77 of a `run` that was killed
            put the elements of berth's sets and maps back as the state says
            --
            ip link del vb8923df65c048
            ip netns del run-77
            nft batch of 2 changes (first: delete element bridge berth allowed4 { "vb8923df65c048" . 02:42:0a:5a:00:02 . 10.90.0.2 })
        "#]],
    );
}

#[test]
fn a_flushed_table_is_reported_and_rebuilt() {
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    for count in observed.table.as_mut().unwrap().values_mut() {
        *count = 0;
    }
    let d = decide(&desired, &observed, Scope::default());
    assert!(
        d.report[0].starts_with("rebuilt the firewall table"),
        "{:?}",
        d.report
    );
}

fn lines(plan: &Plan) -> String {
    plan.render().join("\n")
}

#[test]
fn connect_decides_the_veth_inside_setup_ports_and_what_to_do_with_a_leftover() {
    let c1 = Endpoint {
        metric: Some(50),
        ..endpoint(1, "c1", 2, &["8080:80", "5353:53/udp"])
    };
    let netns = std::path::PathBuf::from("/run/netns/c1");
    let fresh = connect_plan(&web(), &c1, netns.clone(), None, &[]).unwrap();
    expect![[r#"
        nft 'add element bridge berth guarded { "vb6c39f18610fe" }'
        nft 'add element bridge berth allowed4 { "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2 }'
        nft 'add element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80, udp . 5353 : 10.90.0.2 . 53 }'
        ip link add vb6c39f18610fe mtu 1500 group 1650786305 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns c1
        ip link set vb6c39f18610fe addrgenmode none
        ip -n c1 link set lo up
        ip -n c1 link set eth0 addrgenmode none
        ip -n c1 link set eth0 up
        ip -n c1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0
        ip -n c1 route prepend default via 10.90.0.1 metric 50
        ip link set vb6c39f18610fe type bridge_slave hairpin on
        conntrack -D -p udp --orig-port-dst 5353"#]]
    .assert_eq(&lines(&fresh));
    // A veth of berth's (name and group) in the way is replaced first...
    let berths = names::network_link_group(1);
    let replaced = connect_plan(&web(), &c1, netns.clone(), Some(berths), &[]).unwrap();
    assert_eq!(replaced.render()[0], "ip link del vb6c39f18610fe");
    // ...a device of the same name berth cannot prove it made is refused.
    let err = connect_plan(&web(), &c1, netns, Some(0), &[]).unwrap_err();
    assert!(err.to_string().contains("berth did not make"), "{err}");
}

#[test]
fn disconnect_decides_ports_first_then_the_veth_then_the_route_heir() {
    let c1 = endpoint(1, "c1", 2, &["5353:53/udp"]);
    let heir = Some((
        std::path::PathBuf::from("/run/netns/c1"),
        vec![std::net::IpAddr::V4(Ipv4Addr::new(10, 91, 0, 1))],
    ));
    expect![[r#"
        nft 'delete element inet berth published4_any { udp . 5353 : 10.90.0.2 . 53 }'
        conntrack -D -p udp --orig-port-dst 5353
        ip -n c1 link set eth0 down
        ip -n c1 link set eth0 name vp6c39f18610fe
        ip link set vb6c39f18610fe down nomaster
        ip link set vb6c39f18610fe group 1650851839 name vp6c39f18610fe
        nft 'delete element bridge berth guarded { "vb6c39f18610fe" }'
        nft 'delete element bridge berth allowed4 { "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2 }'
        ip -n c1 route replace default via 10.91.0.1"#]]
    .assert_eq(&lines(&disconnect_plan(
        &c1,
        true,
        Some(std::path::PathBuf::from("/run/netns/c1")),
        heir.clone(),
        std::slice::from_ref(&c1),
    )));
    // A `run` sandbox's namespace takes its veth (and routes) with it.
    expect![[r#"
        nft 'delete element inet berth published4_any { udp . 5353 : 10.90.0.2 . 53 }'
        conntrack -D -p udp --orig-port-dst 5353
        nft 'delete element bridge berth guarded { "vb6c39f18610fe" }'
        nft 'delete element bridge berth allowed4 { "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2 }'"#]]
    .assert_eq(&lines(&disconnect_plan(
        &c1,
        false,
        None,
        heir,
        std::slice::from_ref(&c1),
    )));
}

/// c1 limited both ways: 20 Mbit/s towards it, 5 Mbit/s from it.
fn limited(e: Endpoint) -> Endpoint {
    Endpoint {
        bandwidth: crate::model::Bandwidth {
            inbound: Some(crate::model::Limit::at_rate(20_000_000)),
            outbound: Some(crate::model::Limit::at_rate(5_000_000)),
        },
        ..e
    }
}

fn ifb_of(e: &Endpoint) -> LinkFact {
    link(
        &names::ifb_name(&e.host_ifname),
        "ifb",
        names::network_link_group(1),
    )
}

#[test]
fn connect_shapes_the_veth_and_an_ifb_and_takes_over_berths_leftover_ifb() {
    let c1 = limited(endpoint(1, "c1", 2, &[]));
    let mut plan = Plan::new();
    connect_bandwidth(&web(), &c1, None, &mut plan).unwrap();
    expect![[r#"
        tc qdisc replace dev vb6c39f18610fe root handle 1: tbf rate 20mbit burst 16384b limit 141384b
        ip link add ib6c39f18610fe mtu 1500 group 1650786305 type ifb
        ip link set ib6c39f18610fe addrgenmode none
        ip link set ib6c39f18610fe up
        tc qdisc replace dev ib6c39f18610fe root handle 1: tbf rate 5mbit burst 16384b limit 47634b
        tc qdisc replace dev vb6c39f18610fe handle ffff: ingress
        tc filter replace dev vb6c39f18610fe parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 action mirred egress redirect dev ib6c39f18610fe"#]]
    .assert_eq(&lines(&plan));
    // berth's ifb of the same name in the network's group is used...
    let mut plan = Plan::new();
    connect_bandwidth(&web(), &c1, Some(names::network_link_group(1)), &mut plan).unwrap();
    assert!(!lines(&plan).contains("type ifb"), "{}", lines(&plan));
    // ...in another of berth's groups, replaced...
    let mut plan = Plan::new();
    connect_bandwidth(&web(), &c1, Some(names::DOOMED_GROUP), &mut plan).unwrap();
    assert!(
        lines(&plan).contains("ip link del ib6c39f18610fe\nip link add ib6c39f18610fe"),
        "{}",
        lines(&plan)
    );
    // ...and one berth cannot prove it made is refused.
    let err = connect_bandwidth(&web(), &c1, Some(0), &mut Plan::new()).unwrap_err();
    assert!(err.to_string().contains("ib6c39f18610fe"), "{err}");
    // Inbound only: no ifb at all.
    let mut in_only = c1.clone();
    in_only.bandwidth.outbound = None;
    let mut plan = Plan::new();
    connect_bandwidth(&web(), &in_only, None, &mut plan).unwrap();
    assert_eq!(plan.steps.len(), 1, "{}", lines(&plan));
}

#[test]
fn disconnect_takes_the_veth_and_its_ifb_out_together() {
    let c1 = limited(endpoint(1, "c1", 2, &[]));
    expect![[r#"
        ip link set vb6c39f18610fe down nomaster
        ip link set vb6c39f18610fe group 1650851839 name vp6c39f18610fe
        ip link set ib6c39f18610fe down nomaster
        ip link set ib6c39f18610fe group 1650851839 name vq6c39f18610fe"#]]
    .assert_eq(&lines(&disconnect_plan(&c1, true, None, None, &[])));
    assert!(matches!(
        disconnect_plan(&c1, true, None, None, &[]).steps[0],
        Step::TakeOut(_)
    ));
    // The namespace takes the veth, not the ifb, which is the host's.
    expect!["ip link del ib6c39f18610fe"].assert_eq(&lines(&disconnect_plan(
        &c1,
        false,
        None,
        None,
        &[],
    )));
}

#[test]
fn a_recreated_veth_is_shaped_again_and_uses_the_ifb_that_outlived_it() {
    let c1 = limited(endpoint(1, "c1", 2, &[]));
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1.clone(), Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    observed.links.retain(|l| l.kind == "bridge");
    observed.links.push(ifb_of(&c1));
    observed.netns_alive.insert(1);
    let d = decide(&desired, &observed, Scope::default());
    check(
        &d,
        expect![[r#"
            re-created the veth vb6c39f18610fe of web/c1
            --
            ip link add vb6c39f18610fe mtu 1500 group 1650786305 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns c1
            ip link set vb6c39f18610fe addrgenmode none
            ip -n c1 link set lo up
            ip -n c1 link set eth0 addrgenmode none
            ip -n c1 link set eth0 up
            ip -n c1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0
            ip -n c1 route add default via 10.90.0.1
            tc qdisc replace dev vb6c39f18610fe root handle 1: tbf rate 20mbit burst 16384b limit 141384b
            tc qdisc replace dev ib6c39f18610fe root handle 1: tbf rate 5mbit burst 16384b limit 47634b
            tc qdisc replace dev vb6c39f18610fe handle ffff: ingress
            tc filter replace dev vb6c39f18610fe parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 action mirred egress redirect dev ib6c39f18610fe
        "#]],
    );
}

#[test]
fn a_lost_ifb_is_recreated_and_a_dead_endpoints_ifb_removed() {
    let c1 = limited(endpoint(1, "c1", 2, &[]));
    let c2 = limited(endpoint(2, "c2", 3, &[]));
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1.clone(), Status::Ready), (c2.clone(), Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    // c1's ifb was deleted by hand; c2's namespace died (its veth with
    // it), its ifb is left in the host.
    let mut observed = matching(&desired);
    observed.links.retain(|l| l.name != c2.host_ifname);
    observed.links.push(ifb_of(&c2));
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(d.drop_endpoints, vec![2]);
    check(
        &d,
        expect![[r#"
            removed endpoint web/c2: its namespace is gone
            re-created the ifb ib6c39f18610fe of web/c1
            put the elements of berth's sets and maps back as the state says
            --
            ip link del ib6b39f1860f4b
            ip link add ib6c39f18610fe mtu 1500 group 1650786305 type ifb
            ip link set ib6c39f18610fe addrgenmode none
            ip link set ib6c39f18610fe up
            tc qdisc replace dev ib6c39f18610fe root handle 1: tbf rate 5mbit burst 16384b limit 47634b
            tc qdisc replace dev vb6c39f18610fe handle ffff: ingress
            tc filter replace dev vb6c39f18610fe parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 action mirred egress redirect dev ib6c39f18610fe
            nft batch of 2 changes (first: delete element bridge berth allowed4 { "vb6b39f1860f4b" . 02:42:0a:5a:00:03 . 10.90.0.3 })
        "#]],
    );
}

#[test]
fn gc_sweeps_ifbs_no_row_knows_and_only_berths() {
    let c1 = limited(endpoint(1, "c1", 2, &[]));
    let desired = Desired {
        networks: vec![(web(), Status::Ready)],
        endpoints: vec![(c1.clone(), Status::Ready)],
        sandboxes: vec![],
        instance: "ab".into(),
        dns_port: 53,
    };
    let mut observed = matching(&desired);
    observed.links.push(ifb_of(&c1));
    observed
        .links
        .push(link("ib0123456789ab", "ifb", names::network_link_group(1)));
    observed.links.push(link("ibffffffffffff", "ifb", 0));
    observed.links.push(link("ifb0", "ifb", 0));
    let d = decide(&desired, &observed, Scope { sweep: true });
    let report = d.report.join("\n");
    assert_eq!(
        report, "removed leftover ifb ib0123456789ab that no state row knows",
        "{report}"
    );
    assert!(lines(&d.plan).contains("ip link del ib0123456789ab"));
    assert!(!lines(&d.plan).contains("ibffffffffffff"));
}

/// A macvlan network `lan` on `up0` with endpoints `a` (id 1) and `b`.
fn macvlan_state() -> Desired {
    let lan = Network {
        id: 2,
        name: "lan".into(),
        link_group: names::network_link_group(2),
        driver: crate::model::Driver::Macvlan {
            parent: "up0".into(),
            mode: Default::default(),
        },
        ..web()
    };
    let child = |id: i64, name: &str| Endpoint {
        network: "lan".into(),
        host_ifname: names::child_name("lan", name),
        ..endpoint(id, name, 10 + id as u8, &[])
    };
    Desired {
        networks: vec![(lan, Status::Ready)],
        endpoints: vec![
            (child(1, "a"), Status::Ready),
            (child(2, "b"), Status::Ready),
        ],
        ..Default::default()
    }
}

#[test]
fn macvlan_endpoints_live_with_their_namespace_and_parent_and_need_no_firewall() {
    let desired = macvlan_state();
    let observed = Observed {
        links: vec![link("up0", "veth", 0)],
        netns_alive: [1, 2].into(),
        children: [1, 2].into(),
        ip_forward: Some(false),
        ..Default::default()
    };
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(
        d,
        Decision::default(),
        "nothing to do, no table, no forwarding"
    );
}

#[test]
fn a_lost_child_is_recreated_and_a_lost_parent_or_namespace_drops_the_endpoint() {
    let desired = macvlan_state();
    // a's child was deleted by hand; b's namespace is gone.
    let observed = Observed {
        links: vec![link("up0", "veth", 0)],
        netns_alive: [1].into(),
        ..Default::default()
    };
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(d.drop_endpoints, vec![2]);
    assert!(
        matches!(&d.plan.steps[0], Step::CreateChild { child, ifname }
        if child.temp_name == names::child_name("lan", "a") && ifname == "eth0")
    );
    assert!(
        matches!(&d.plan.steps[1], Step::ConfigureInside { config, .. }
        if config.rename_from.as_deref() == Some(names::child_name("lan", "a").as_str()))
    );
    assert_eq!(d.plan.steps.len(), 2, "{:?}", d.plan.steps);
    // The parent went: the kernel took the children; both rows go, and
    // nothing is asked of the kernel.
    let observed = Observed {
        netns_alive: [1, 2].into(),
        ..Default::default()
    };
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(d.drop_endpoints, vec![1, 2]);
    assert!(d.plan.is_empty(), "{:?}", d.plan.steps);
    assert!(
        d.report[0].contains("parent interface up0 is gone"),
        "{:?}",
        d.report
    );
}

#[test]
fn an_interrupted_macvlan_connect_is_undone_inside_its_namespace() {
    let mut desired = macvlan_state();
    desired.endpoints[1].1 = Status::Creating;
    let observed = Observed {
        links: vec![link("up0", "veth", 0)],
        netns_alive: [1].into(),
        children: [1].into(),
        ..Default::default()
    };
    let d = decide(&desired, &observed, Scope::default());
    assert_eq!(d.drop_endpoints, vec![2]);
    assert_eq!(
        d.plan.steps,
        vec![Step::DeleteChild {
            netns: "/run/netns/b".into(),
            names: vec![names::child_name("lan", "b"), "eth0".into()],
            group: names::network_link_group(2),
        }]
    );
}
