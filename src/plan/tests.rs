use super::*;
use crate::kernel::fake::FakeKernel;
use crate::model::Mac;

const GW: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 1);

fn bridge_plan() -> Plan {
    let subnet: IpNet = "10.90.0.0/24".parse().unwrap();
    let mut plan = Plan::new();
    plan.push(Step::CreateBridge {
        name: "berth-web".into(),
        mtu: 1500,
        mac: Mac::from_ipv4(GW),
        group: crate::model::names::BRIDGE_GROUP,
    });
    plan.push(Step::AddAddress {
        ifname: "berth-web".into(),
        ip: IpAddr::V4(GW),
        subnet,
    });
    plan.push(Step::SetSysctl {
        key: crate::kernel::sysctl::Key::ip_forward(),
        value: "1".into(),
    });
    plan
}

#[test]
fn renders_equivalent_commands_in_order() {
    assert_eq!(
        bridge_plan().render(),
        vec![
            "ip link add berth-web mtu 1500 address 02:42:0a:5a:00:01 group 1650786304 up type bridge mcast_snooping 0",
            "ip addr add 10.90.0.1/24 brd 10.90.0.255 dev berth-web",
            "sysctl -w net.ipv4.ip_forward=1",
        ]
    );
}

#[test]
fn failure_undoes_applied_steps_in_reverse_and_names_the_step() {
    let mut k = FakeKernel {
        sysctl_value: "0".into(),
        fail_on: Some("add_address".into()),
        ..Default::default()
    };
    let err = bridge_plan().apply(&mut k).unwrap_err().to_string();
    assert!(err.contains("ip addr add 10.90.0.1/24"), "{err}");
    assert_eq!(
        k.log,
        vec![
            "create_bridge berth-web 1500 group 0x62650000",
            "add_address berth-web 10.90.0.1/24",
            "delete_link berth-web"
        ]
    );
}

#[test]
fn sysctl_is_restored_only_if_it_was_changed() {
    let mut plan = bridge_plan();
    plan.push(Step::CreateNetns { name: "x".into() });
    let mut k = FakeKernel {
        sysctl_value: "0".into(),
        fail_on: Some("create_netns".into()),
        ..Default::default()
    };
    plan.apply(&mut k).unwrap_err();
    assert_eq!(
        &k.log[k.log.len() - 2..],
        [
            "write_sysctl net.ipv4.ip_forward=0",
            "delete_link berth-web"
        ]
    );

    let mut k = FakeKernel {
        sysctl_value: "1".into(),
        fail_on: Some("create_netns".into()),
        ..Default::default()
    };
    plan.apply(&mut k).unwrap_err();
    assert!(
        !k.log.iter().any(|l| l.starts_with("write_sysctl")),
        "{:?}",
        k.log
    );
}

#[test]
fn veth_and_inside_render_for_named_and_path_namespaces() {
    let subnet: IpNet = "10.90.0.0/24".parse().unwrap();
    let pair = VethPair {
        host_ifname: "vb0123".into(),
        bridge: "berth-web".into(),
        link_group: 7,
        netns: "/run/netns/c1".into(),
        ifname: "eth0".into(),
        mac: Mac::from_ipv4(Ipv4Addr::new(10, 90, 0, 2)),
        mtu: 1500,
    };
    assert_eq!(
        Step::CreateVeth(pair).render(),
        vec![
            "ip link add vb0123 mtu 1500 group 7 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns c1",
            "ip link set vb0123 addrgenmode none",
        ]
    );
    let config = InsideConfig {
        rename_from: None,
        ifname: "eth0".into(),
        addresses: vec![(IpAddr::V4(Ipv4Addr::new(10, 90, 0, 2)), subnet)],
        default_via: vec![IpAddr::V4(GW)],
        metric: None,
    };
    let lines = Step::ConfigureInside {
        netns: "/proc/42/ns/net".into(),
        config,
    }
    .render();
    assert_eq!(
        lines.last().unwrap(),
        "nsenter --net=/proc/42/ns/net ip route add default via 10.90.0.1"
    );
}

/// A dual-stack endpoint's inside: both addresses (IPv6 without DAD) and
/// a default route per family, rendered as `ip -6` lines.
#[test]
fn ipv6_lines_render_as_ip_dash_6() {
    let config = InsideConfig {
        rename_from: None,
        ifname: "eth0".into(),
        addresses: vec![
            (
                "10.90.0.2".parse().unwrap(),
                "10.90.0.0/24".parse().unwrap(),
            ),
            ("fd00:1::2".parse().unwrap(), "fd00:1::/64".parse().unwrap()),
        ],
        default_via: vec!["10.90.0.1".parse().unwrap(), "fd00:1::1".parse().unwrap()],
        metric: None,
    };
    let lines = Step::ConfigureInside {
        netns: "/run/netns/c1".into(),
        config,
    }
    .render();
    assert_eq!(
        lines,
        [
            "ip -n c1 link set lo up",
            "ip -n c1 link set eth0 addrgenmode none",
            "ip -n c1 link set eth0 up",
            "ip -n c1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0",
            "ip -n c1 -6 addr add fd00:1::2/64 dev eth0 nodad",
            "ip -n c1 route add default via 10.90.0.1",
            "ip -n c1 -6 route add default via fd00:1::1",
        ]
    );
    let step = Step::AddAddress {
        ifname: "berth-web".into(),
        ip: "fd00:1::1".parse().unwrap(),
        subnet: "fd00:1::/64".parse().unwrap(),
    };
    assert_eq!(
        step.render(),
        ["ip -6 addr add fd00:1::1/64 dev berth-web nodad"]
    );
}

#[test]
fn a_failed_nft_batch_undoes_the_bridge_and_a_later_failure_the_batch() {
    use berth_nft::{Batch, Family, Table};
    let t = Table::new(Family::Inet, "berth");
    let mut batch = Batch::new();
    batch.add_table(&t);
    let mut undo = Batch::new();
    undo.delete_table(&t);
    let mut plan = bridge_plan();
    plan.push(Step::Nft { batch, undo });
    plan.push(Step::CreateNetns { name: "x".into() });
    assert!(plan
        .render()
        .contains(&"nft 'add table inet berth'".to_string()));
    let mut k = FakeKernel {
        sysctl_value: "1".into(),
        fail_on: Some("create_netns".into()),
        ..Default::default()
    };
    plan.apply(&mut k).unwrap_err();
    assert_eq!(
        &k.log[k.log.len() - 3..],
        [
            "create_netns x",
            "nft delete table inet berth",
            "delete_link berth-web"
        ]
    );
}

/// A plan applied to the fake leaves what the real kernel would: what
/// CNI's CHECK reads back from it is the connect's work.
#[test]
fn a_connect_plan_leaves_the_facts_a_check_reads() {
    let subnet: IpNet = "10.90.0.0/24".parse().unwrap();
    let mut k = FakeKernel::default();
    k.create_bridge("berth-web", 1500, Mac([2, 0x42, 10, 90, 0, 1]), 0x6265_0000)
        .unwrap();
    k.add_namespace("/run/netns/c1");
    let mut plan = Plan::new();
    plan.push(Step::CreateVeth(VethPair {
        host_ifname: "vb1".into(),
        bridge: "berth-web".into(),
        link_group: 0x6265_0001,
        netns: "/run/netns/c1".into(),
        ifname: "eth0".into(),
        mac: Mac::from_ipv4(Ipv4Addr::new(10, 90, 0, 2)),
        mtu: 1500,
    }));
    plan.push(Step::ConfigureInside {
        netns: "/run/netns/c1".into(),
        config: InsideConfig {
            rename_from: None,
            ifname: "eth0".into(),
            addresses: vec![(IpAddr::V4(Ipv4Addr::new(10, 90, 0, 2)), subnet)],
            default_via: vec![IpAddr::V4(GW)],
            metric: None,
        },
    });
    plan.apply(&mut k).unwrap();
    let inside = k.netns_facts(Some(Path::new("/run/netns/c1"))).unwrap();
    let eth0 = inside.link("eth0").expect("eth0");
    assert!(eth0.up);
    assert_eq!(eth0.mac, Some(Mac::from_ipv4(Ipv4Addr::new(10, 90, 0, 2))));
    assert!(inside.has_address(eth0.index, Ipv4Addr::new(10, 90, 0, 2), 24));
    assert_eq!(inside.default_gateways, [GW]);
    assert!(inside.link("lo").unwrap().up);
    let host = k.netns_facts(None).unwrap();
    assert_eq!(
        host.link("vb1").unwrap().master,
        host.link("berth-web").map(|b| b.index)
    );
}
