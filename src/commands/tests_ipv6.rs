//! IPv6 decisions against the fake kernel: dual-stack and IPv6-only
//! networks (their subnets, gateways and forwarding), endpoints with an
//! address per family, each family's default route and its heir, the
//! reconcile of a lost IPv6 gateway, and bad IPv6 input changing nothing.

use std::net::IpAddr;

use expect_test::expect;

use super::tests::{attach, host, Host};
use super::*;
use crate::error::Error;
use crate::model::{Families, Family};
use crate::request::{DetachRequest, EndpointRef, NetworkRequest, SubnetRequest};

fn dual(name: &str, v4: &str, v6: &str) -> NetworkRequest {
    let mut req = NetworkRequest::new(name);
    req.subnets = Some(vec![
        SubnetRequest::given(v4.parse().unwrap(), None),
        SubnetRequest::given(v6.parse().unwrap(), None),
    ]);
    req
}

fn six_only(name: &str) -> NetworkRequest {
    let mut req = NetworkRequest::new(name);
    req.subnets = Some(vec![SubnetRequest::auto(Family::V6)]);
    req
}

fn make(h: &mut Host, req: NetworkRequest) -> crate::model::Network {
    create_network(&mut h.ctx, req).unwrap().applied().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_dual_stack_network_plans_both_gateways_and_both_forwardings() {
    let mut h = host();
    let plan = h.plan(|ctx| create_network(ctx, dual("web", "10.90.0.0/24", "fd00:90::/64")));
    let lines: Vec<&str> = plan.lines().filter(|l| !l.starts_with("nft ")).collect();
    expect![[r#"
        sysctl -w net.ipv6.conf.all.forwarding=1
        ip link add berth-web mtu 1500 address 02:42:0a:5a:00:01 group 1650786304 up type bridge mcast_snooping 0
        sysctl -w net.ipv6.conf.berth-web.accept_dad=0
        ip addr add 10.90.0.1/24 brd 10.90.0.255 dev berth-web
        ip -6 addr add fd00:90::1/64 dev berth-web nodad
        sysctl -w net.ipv4.conf.berth-web.route_localnet=1
        sysctl -w net.ipv4.ip_forward=1"#]]
    .assert_eq(&lines.join("\n"));
    let n = make(&mut h, dual("web", "10.90.0.0/24", "fd00:90::/64"));
    assert_eq!(n.gateways(), [ip("10.90.0.1"), ip("fd00:90::1")]);
    // Reset puts both forwarding settings back as berth found them.
    let plan = h.plan(reset);
    assert!(plan.contains("sysctl -w net.ipv4.ip_forward=0"), "{plan}");
    assert!(
        plan.contains("sysctl -w net.ipv6.conf.all.forwarding=0"),
        "{plan}"
    );
}

#[test]
fn an_ipv6_only_network_takes_a_64_of_the_hosts_ula_48_and_no_ipv4() {
    let mut h = host();
    let n = make(&mut h, six_only("six"));
    let s = n.subnet6().expect("an IPv6 subnet");
    assert!(n.subnet4().is_none());
    assert_eq!(s.net.prefix_len(), 64);
    let ula = {
        let mut store = h.ctx.store_read_only().unwrap().unwrap();
        let tx = store.read().unwrap();
        tx.ula_prefix().unwrap()
    };
    assert!(
        crate::model::IpNet::V6(ula).contains(&s.net),
        "{} in {ula}",
        s.net
    );
    assert_eq!(s.gateway, Some(crate::model::subnet::first_host(&s.net)));
    // The next one is the next /64, whatever the host routes elsewhere.
    let m = make(&mut h, six_only("six2"));
    assert_ne!(m.subnets[0].net, n.subnets[0].net);
    assert!(crate::model::IpNet::V6(ula).contains(&m.subnets[0].net));
    // Only IPv6 forwarding is turned on for it.
    assert_eq!(
        h.fake()
            .sysctls
            .get("net.ipv6.conf.all.forwarding")
            .map(String::as_str),
        Some("1")
    );
    assert!(!h.fake().sysctls.contains_key("net.ipv4.ip_forward"));
}

#[test]
fn a_dual_stack_endpoint_gets_an_address_and_a_default_route_per_family() {
    let mut h = host();
    make(&mut h, dual("web", "10.90.0.0/24", "fd00:90::/64"));
    h.netns("c1");
    let plan = h.plan(|ctx| connect(ctx, attach("web", "c1", &[])));
    let lines: Vec<&str> = plan.lines().filter(|l| !l.starts_with("nft ")).collect();
    expect![[r#"
        ip link add vb6c39f18610fe mtu 1500 group 1650786305 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns c1
        ip link set vb6c39f18610fe addrgenmode none
        ip -n c1 link set lo up
        ip -n c1 link set eth0 addrgenmode none
        ip -n c1 link set eth0 up
        ip -n c1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0
        ip -n c1 -6 addr add fd00:90::2/64 dev eth0 nodad
        ip -n c1 route add default via 10.90.0.1
        ip -n c1 -6 route add default via fd00:90::1"#]]
    .assert_eq(&lines.join("\n"));
    // Its anti-spoofing elements hold both addresses.
    assert!(plan.contains("allowed6"), "{plan}");
    let e = h.connect("web", "c1", &[]);
    assert_eq!(e.ips, [ip("10.90.0.2"), ip("fd00:90::2")]);
    assert_eq!(e.default_route, Families::ALL);
    let fake = h.fake();
    assert_eq!(fake.default_routes6.len(), 1);
    assert_eq!(fake.default_routes6[0].1, ip("fd00:90::1"));
    assert!(fake.addrs6.iter().any(|(_, a)| a.ip == ip("fd00:90::2")));
    // --ip6 picks the IPv6 address; IPv4 comes from the pool.
    h.netns("c2");
    let mut req = attach("web", "c2", &[]);
    req.ips = vec![ip("fd00:90::42")];
    let c2 = connect(&mut h.ctx, req).unwrap().applied().unwrap().0;
    assert_eq!(c2.ips, [ip("10.90.0.3"), ip("fd00:90::42")]);
    // The next automatic IPv6 lease follows the last one handed out.
    h.netns("c3");
    let c3 = h.connect("web", "c3", &[]);
    assert_eq!(c3.ips, [ip("10.90.0.4"), ip("fd00:90::43")]);
}

#[test]
fn each_familys_default_route_comes_from_the_first_endpoint_with_it_and_has_its_own_heir() {
    let mut h = host();
    h.network("four", "10.91.0.0/24");
    make(&mut h, dual("web", "10.90.0.0/24", "fd00:90::/64"));
    h.netns("c1");
    let four = h.connect("four", "c1", &[]);
    assert_eq!(four.default_route, Families::V4);
    // The namespace has its IPv4 route: the dual-stack network gives IPv6's.
    let web = h.connect("web", "c1", &[]);
    assert_eq!(web.default_route, Families::V6);
    assert_eq!(h.fake().default_routes.len(), 1);
    assert_eq!(h.fake().default_routes6.len(), 1);
    // `four` goes: its IPv4 route moves to web's IPv4 gateway, and web
    // records that it gives both now.
    let detach = || DetachRequest::new("four", EndpointRef::Target("c1".into()));
    let plan = h.plan(|ctx| disconnect(ctx, detach()));
    assert!(
        plan.ends_with("ip -n c1 route replace default via 10.90.0.1\n"),
        "{plan}"
    );
    disconnect(&mut h.ctx, detach()).unwrap();
    let mut store = h.ctx.store_read_only().unwrap().unwrap();
    let tx = store.read().unwrap();
    let web = tx.endpoint(web.id).unwrap().unwrap();
    assert_eq!(web.default_route, Families::ALL);
}

#[test]
fn the_reconcile_puts_a_lost_ipv6_gateway_back() {
    let mut h = host();
    make(&mut h, dual("web", "10.90.0.0/24", "fd00:90::/64"));
    h.fake().addrs6.clear();
    let plan = h.plan(maintain::up);
    assert!(
        plan.contains("ip -6 addr replace fd00:90::1/64 dev berth-web nodad"),
        "{plan}"
    );
    assert!(!plan.contains("ip addr replace 10.90.0.1"), "{plan}");
}

#[test]
fn bad_ipv6_requests_change_nothing() {
    let mut h = host();
    h.network("four", "10.91.0.0/24");
    make(&mut h, dual("web", "10.90.0.0/24", "fd00:90::/64"));
    h.netns("c1");
    let before = (h.rows(), h.host_links());
    let mut gw_outside = NetworkRequest::new("db");
    gw_outside.subnets = Some(vec![SubnetRequest::given(
        "fd00:91::/64".parse().unwrap(),
        Some(ip("fd00:92::1")),
    )]);
    let mut anycast = NetworkRequest::new("db");
    anycast.subnets = Some(vec![SubnetRequest::given(
        "fd00:91::/64".parse().unwrap(),
        Some(ip("fd00:91::")),
    )]);
    let mut overlap = NetworkRequest::new("db");
    overlap.subnets = Some(vec![SubnetRequest::given(
        "fd00:90::/48".parse().unwrap(),
        None,
    )]);
    let mut twice = NetworkRequest::new("db");
    twice.subnets = Some(vec![
        SubnetRequest::auto(Family::V6),
        SubnetRequest::auto(Family::V6),
    ]);
    for (req, needle) in [
        (gw_outside, "fd00:92::1"),
        (anycast, "fd00:91::"),
        (overlap, "overlaps network \"web\""),
        (twice, "more than one IPv6 subnet"),
    ] {
        let err = create_network(&mut h.ctx, req).err().expect("refused");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let mut no_v6 = attach("four", "c1", &[]);
    no_v6.ips = vec![ip("fd00:91::5")];
    let mut outside = attach("web", "c1", &[]);
    outside.ips = vec![ip("fd00:99::5")];
    let mut gateway = attach("web", "c1", &[]);
    gateway.ips = vec![ip("fd00:90::1")];
    let mut two = attach("web", "c1", &[]);
    two.ips = vec![ip("fd00:90::5"), ip("fd00:90::6")];
    for (req, needle) in [
        (no_v6, "network \"four\" has no IPv6 subnet"),
        (outside, "fd00:99::5"),
        (gateway, "gateway"),
        (two, "only one IPv6 address"),
    ] {
        let err = connect(&mut h.ctx, req).err().expect("refused");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!((h.rows(), h.host_links()), before);
}
