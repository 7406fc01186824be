//! The walk's decisions from plain facts: each known cause of a drop, and
//! the passes, as the rendered trace a user reads.

use std::net::Ipv4Addr;

use expect_test::{expect, Expect};

use super::walk::*;
use crate::kernel::RouteHop;
use crate::model::{names, Endpoint, Mac, Network, NetworkPolicy, PortSpec, Proto};

/// The IPv4 side of the hand-made world below, which is IPv4 only.
mod v4 {
    use std::net::Ipv4Addr;

    use crate::model::{Endpoint, Ipv4Net, Network};

    pub fn ip(e: &Endpoint) -> Ipv4Addr {
        e.ip4().expect("an IPv4 endpoint")
    }

    pub fn gateway(n: &Network) -> Ipv4Addr {
        n.gateway4().expect("an IPv4 network")
    }

    pub fn subnet(n: &Network) -> Ipv4Net {
        n.net4().expect("an IPv4 network")
    }
}

fn network(id: i64, name: &str, third: u8, policy: NetworkPolicy) -> Network {
    Network {
        id,
        name: name.into(),
        subnets: vec![crate::model::Subnet {
            net: format!("10.{third}.0.0/24").parse().unwrap(),
            gateway: Some(std::net::IpAddr::V4(Ipv4Addr::new(10, third, 0, 1))),
        }],
        bridge: format!("berth-{name}"),
        mtu: 1500,
        link_group: names::network_link_group(id),
        route_table: 0x6265_0000 + id as u32,
        policy,
        driver: Default::default(),
    }
}

fn endpoint(net: &Network, name: &str, last: u8, ports: &[&str]) -> Endpoint {
    let o = v4::subnet(net).network().octets();
    let ip = Ipv4Addr::new(o[0], o[1], o[2], last);
    Endpoint {
        id: i64::from(last),
        network: net.name.clone(),
        name: name.into(),
        netns: name.into(),
        netns_inode: 4026532000 + u64::from(last) + 100 * net.id as u64,
        ips: vec![std::net::IpAddr::V4(ip)],
        mac: Mac::from_ipv4(ip),
        ifname: "eth0".into(),
        host_ifname: names::host_veth_name(&net.name, name),
        default_route: crate::model::Families::V4,
        ports: ports
            .iter()
            .map(|p| PortSpec::parse(p).unwrap().with_host_port(0))
            .collect(),
        bandwidth: Default::default(),
        allow_spoofing: false,
        metric: None,
    }
}

fn hop(kind: &str, oif: &str, gateway: Option<Ipv4Addr>, prefsrc: Option<Ipv4Addr>) -> RouteHop {
    RouteHop {
        oif: Some(oif.into()),
        gateway: gateway.map(Into::into),
        prefsrc: prefsrc.map(Into::into),
        table: 254,
        kind: kind.into(),
    }
}

const UPLINK_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// web (10.90/24: a, b), db (10.91/24: c); a publishes 8080->80.
struct World {
    web: Network,
    db: Network,
    a: Endpoint,
    b: Endpoint,
    c: Endpoint,
}

fn world(web_policy: NetworkPolicy) -> World {
    let web = network(1, "web", 90, web_policy);
    let db = network(2, "db", 91, NetworkPolicy::default());
    let a = endpoint(&web, "a", 2, &["8080:80"]);
    let b = endpoint(&web, "b", 3, &[]);
    let c = endpoint(&db, "c", 2, &[]);
    World { web, db, a, b, c }
}

impl World {
    fn facts(&self, src: Source, dst: Ipv4Addr, label: &str, flow: Flow) -> Facts {
        Facts {
            networks: vec![self.web.clone(), self.db.clone()],
            endpoints: vec![self.a.clone(), self.b.clone(), self.c.clone()],
            src,
            dst_label: label.into(),
            dst: dst.into(),
            flow,
            src_route: None,
            ingress: None,
            host_route: None,
            dst_local: false,
            host_listens: false,
            ip_forward: Some(true),
            br_netfilter: Some(false),
            table: TableCheck::Matches,
            foreign_drops: Vec::new(),
            state: true,
        }
    }

    /// From a's namespace to `dst`, with the routes the kernel would give.
    fn sent_by_a(&self, dst: Ipv4Addr, label: &str, flow: Flow) -> Facts {
        let mut f = self.facts(
            Source::Namespace {
                label: "a".into(),
                netns: "a".into(),
                endpoints: vec![self.a.clone()],
            },
            dst,
            label,
            flow,
        );
        let on_link = v4::subnet(&self.web).contains(&dst);
        f.src_route = Some(hop(
            "unicast",
            "eth0",
            (!on_link).then_some(v4::gateway(&self.web)),
            Some(v4::ip(&self.a)),
        ));
        f.host_route = Some(self.host_route(dst));
        f.dst_local = dst == v4::gateway(&self.web) || dst == UPLINK_HOST;
        f
    }

    fn host_route(&self, dst: Ipv4Addr) -> RouteHop {
        for n in [&self.web, &self.db] {
            if v4::subnet(n).contains(&dst) {
                return hop("unicast", &n.bridge, None, Some(v4::gateway(n)));
            }
        }
        hop("unicast", "uplink0", Some(PEER), Some(UPLINK_HOST))
    }

    /// From the LAN peer's namespace `lan` behind uplink0.
    fn sent_by_lan(&self, dst: Ipv4Addr, label: &str, flow: Flow) -> Facts {
        let mut f = self.facts(
            Source::Namespace {
                label: "lan".into(),
                netns: "lan".into(),
                endpoints: Vec::new(),
            },
            dst,
            label,
            flow,
        );
        f.src_route = Some(hop("unicast", "eth0", None, Some(PEER)));
        f.ingress = Some(hop("unicast", "uplink0", None, Some(UPLINK_HOST)));
        f.dst_local = dst == UPLINK_HOST;
        let target = dnat(
            &f.networks,
            &f.endpoints,
            dst.into(),
            f.dst_local,
            flow,
            false,
        )
        .and_then(|d| match d.to {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        })
        .unwrap_or(dst);
        f.host_route = Some(self.host_route(target));
        f
    }
}

fn check(f: &Facts, expect: Expect) {
    expect.assert_eq(&(walk(f).render().join("\n") + "\n"));
}

fn tcp(port: u16) -> Flow {
    Flow::Port(Proto::Tcp, port)
}

#[test]
fn neighbours_pass_bridged_and_the_forward_hook_sees_them_only_with_br_netfilter() {
    let w = world(NetworkPolicy::default());
    let f = w.sent_by_a(v4::ip(&w.b), "b", tcp(80));
    check(
        &f,
        expect![[r#"
            trace a -> b (10.90.0.3), 80/tcp
             1. berth's tables inet berth and bridge berth match the state
                  $ nft list table inet berth
             2. route lookup in a: unicast dev eth0 src 10.90.0.2 table main
                  $ ip -n a route get 10.90.0.3
             3. eth0 of a -> veth vb9e2e096203a1 -> bridge berth-web (network web)
                  bridge berth prerouting -> guard: vb9e2e096203a1 . 02:42:0a:5a:00:02 . 10.90.0.2 is in @allowed4: return
                  $ ip link show master berth-web
             4. 10.90.0.3 is on web's subnet 10.90.0.0/24: bridged on berth-web (no routing)
                  br_netfilter off (net.bridge.bridge-nf-call-iptables = 0): no inet hook sees the bridged packet
                  $ bridge fdb show br berth-web
                reply: replies from b are bridged back the same way
            PASS: a and b are neighbours on network web
        "#]],
    );
    // A foreign forward drop matters only when the bridged packet meets
    // the forward hook.
    let mut f = f;
    f.foreign_drops = vec!["table inet filter chain forward".into()];
    assert!(walk(&f).verdict.pass);
    f.br_netfilter = Some(true);
    check(
        &f,
        expect![[r#"
            trace a -> b (10.90.0.3), 80/tcp
             1. berth's tables inet berth and bridge berth match the state
                  $ nft list table inet berth
             2. route lookup in a: unicast dev eth0 src 10.90.0.2 table main
                  $ ip -n a route get 10.90.0.3
             3. eth0 of a -> veth vb9e2e096203a1 -> bridge berth-web (network web)
                  bridge berth prerouting -> guard: vb9e2e096203a1 . 02:42:0a:5a:00:02 . 10.90.0.2 is in @allowed4: return
                  $ ip link show master berth-web
             4. 10.90.0.3 is on web's subnet 10.90.0.0/24: bridged on berth-web (no routing)
                  br_netfilter on (net.bridge.bridge-nf-call-iptables = 1): the bridged packet also passes the inet forward hook
                  $ bridge fdb show br berth-web
             5. forward: iifname vmap @fwd_from -> web-out: oifname "berth-web" accept
                  $ nft list chain inet berth web-out
             6. table inet filter chain forward hooks forward with policy drop
                  $ nft list chain inet filter forward
            DROP: table inet filter chain forward has policy drop: berth's accept does not end it, so unless one of its rules accepts this flow the packet is dropped; accept berth's traffic in that chain, or remove it (table inet filter chain forward)
        "#]],
    );
}

#[test]
fn no_icc_drops_neighbours_in_both_br_netfilter_modes() {
    let w = world(NetworkPolicy {
        icc: false,
        ..Default::default()
    });
    for br in [Some(false), Some(true)] {
        let mut f = w.sent_by_a(v4::ip(&w.b), "b", Flow::Ping);
        f.br_netfilter = br;
        let t = walk(&f);
        assert!(!t.verdict.pass);
        assert!(t.verdict.reason.contains("--no-icc"), "{t:?}");
        assert_eq!(t.steps.last().unwrap().chain.as_deref(), Some("web-out"));
    }
}

#[test]
fn isolated_networks_drop_in_the_source_networks_out_chain() {
    let w = world(NetworkPolicy::default());
    check(
        &w.sent_by_a(v4::ip(&w.c), "c", Flow::Ping),
        expect![[r#"
            trace a -> c (10.91.0.2), icmp echo
             1. berth's tables inet berth and bridge berth match the state
                  $ nft list table inet berth
             2. route lookup in a: unicast via 10.90.0.1 dev eth0 src 10.90.0.2 table main
                  $ ip -n a route get 10.91.0.2
             3. eth0 of a -> veth vb9e2e096203a1 -> bridge berth-web (network web)
                  bridge berth prerouting -> guard: vb9e2e096203a1 . 02:42:0a:5a:00:02 . 10.90.0.2 is in @allowed4: return
                  $ ip link show master berth-web
             4. routed by the host: net.ipv4.ip_forward = 1
                  $ sysctl net.ipv4.ip_forward
             5. host route lookup: unicast dev berth-db src 10.91.0.1 table main
                  $ ip route get 10.91.0.2 from 10.90.0.2 iif berth-web
             6. forward: iifname vmap @fwd_from -> web-out: oifname @bridges drop
                  $ nft list chain inet berth web-out
            DROP: networks web and db are isolated; connect a to db: berth connect db a
        "#]],
    );
}

#[test]
fn egress_passes_masqueraded_unless_internal_or_denied() {
    let w = world(NetworkPolicy::default());
    check(
        &w.sent_by_a(PEER, "the world", tcp(8080)),
        expect![[r#"
            trace a -> the world (203.0.113.2), 8080/tcp
             1. berth's tables inet berth and bridge berth match the state
                  $ nft list table inet berth
             2. route lookup in a: unicast via 10.90.0.1 dev eth0 src 10.90.0.2 table main
                  $ ip -n a route get 203.0.113.2
             3. eth0 of a -> veth vb9e2e096203a1 -> bridge berth-web (network web)
                  bridge berth prerouting -> guard: vb9e2e096203a1 . 02:42:0a:5a:00:02 . 10.90.0.2 is in @allowed4: return
                  $ ip link show master berth-web
             4. routed by the host: net.ipv4.ip_forward = 1
                  $ sysctl net.ipv4.ip_forward
             5. host route lookup: unicast via 203.0.113.2 dev uplink0 src 203.0.113.1 table main
                  $ ip route get 203.0.113.2 from 10.90.0.2 iif berth-web
             6. forward: iifname vmap @fwd_from -> web-out: accept
                  $ nft list chain inet berth web-out
             7. postrouting: iifname vmap @nat_from -> web-nat: ip saddr 10.90.0.0/24 oifname != "berth-web" masquerade
                  $ nft list chain inet berth web-nat
                reply: replies: forward's first rule, ct state established,related accept
                reply: the masquerade is undone on the reply by conntrack
            PASS: leaves by uplink0 via 203.0.113.2 towards the world
        "#]],
    );
    let w = world(NetworkPolicy {
        internal: true,
        ..Default::default()
    });
    let t = walk(&w.sent_by_a(PEER, "the world", tcp(8080)));
    expect!["network web is --internal: nothing leaves it beyond the host; connect a to a network that is not --internal"]
        .assert_eq(&format!("{}; {}", t.verdict.reason, t.verdict.fix.unwrap()));
    let w = world(NetworkPolicy {
        deny_egress: vec!["203.0.113.0/24".parse().unwrap()],
        ..Default::default()
    });
    let t = walk(&w.sent_by_a(PEER, "the world", tcp(8080)));
    assert_eq!(t.steps.last().unwrap().verdict.as_deref(), Some("reject"));
    expect!["network web denies egress to 203.0.113.0/24 (--deny-egress): rejected"]
        .assert_eq(&t.verdict.reason);
}

#[test]
fn a_published_port_is_found_by_its_element_and_a_missing_one_is_named() {
    let w = world(NetworkPolicy::default());
    check(
        &w.sent_by_lan(UPLINK_HOST, "the host", tcp(8080)),
        expect![[r#"
            trace lan -> the host (203.0.113.1), 8080/tcp
             1. berth's tables inet berth and bridge berth match the state
                  $ nft list table inet berth
             2. route lookup in lan: unicast dev eth0 src 203.0.113.2 table main
                  $ ip -n lan route get 203.0.113.1
             3. leaves lan by eth0, which is not a berth endpoint
             4. enters the host by uplink0 (the host's route back to 203.0.113.2)
                  $ ip route get 203.0.113.2
             5. prerouting: dnat to 10.90.0.2:80 (endpoint a of web) by element tcp . 8080 : 10.90.0.2 . 80 of map published4_any
                  $ nft list map inet berth published4_any
             6. routed by the host: net.ipv4.ip_forward = 1
                  $ sysctl net.ipv4.ip_forward
             7. host route lookup: unicast dev berth-web src 10.90.0.1 table main
                  $ ip route get 10.90.0.2 from 203.0.113.2 iif uplink0
             8. forward: ct status dnat accept (a published port's connection)
                  $ nft list chain inet berth forward
                reply: replies: forward's first rule, ct state established,related accept
                reply: the reply's source 10.90.0.2:80 is translated back to 203.0.113.1 by conntrack
            PASS: published port 8080/tcp -> 10.90.0.2:80 of a (web) lets it in
        "#]],
    );
    let t = walk(&w.sent_by_lan(UPLINK_HOST, "the host", tcp(8081)));
    expect!["published port 8081/tcp not found on 203.0.113.1 and no host socket holds it; berth connect NETWORK NETNS -p 8081:CONTAINER_PORT/tcp"]
        .assert_eq(&format!("{}; {}", t.verdict.reason, t.verdict.fix.unwrap()));
    // A host socket on the port answers instead.
    let mut f = w.sent_by_lan(UPLINK_HOST, "the host", tcp(8081));
    f.host_listens = true;
    assert!(walk(&f).verdict.pass);
    // Straight to the container from outside: no way in.
    let t = walk(&w.sent_by_lan(v4::ip(&w.a), "a", tcp(80)));
    assert_eq!(t.steps.last().unwrap().chain.as_deref(), Some("web-in"));
    assert!(!t.verdict.pass);
}

#[test]
fn from_the_host_the_output_hook_translates_loopback_too() {
    let w = world(NetworkPolicy::default());
    let mut f = w.facts(Source::Host, Ipv4Addr::LOCALHOST, "the host", tcp(8080));
    f.dst_local = true;
    f.host_route = Some(w.host_route(v4::ip(&w.a)));
    check(
        &f,
        expect![[r#"
            trace host -> the host (127.0.0.1), 8080/tcp
             1. berth's tables inet berth and bridge berth match the state
                  $ nft list table inet berth
             2. output: dnat to 10.90.0.2:80 (endpoint a of web) by element tcp . 8080 : 10.90.0.2 . 80 of map published4_any
                  $ nft list map inet berth published4_any
             3. route lookup on the host: unicast dev berth-web src 10.90.0.1 table main
                  $ ip route get 10.90.0.2
             4. postrouting: oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade
                  $ nft list chain inet berth postrouting
             5. out by bridge berth-web (network web): the host's own packets meet no filter of berth's
                reply: the reply's source 10.90.0.2:80 is translated back to 127.0.0.1 by conntrack
            PASS: published port 8080/tcp -> 10.90.0.2:80 of a (web)
        "#]],
    );
}

#[test]
fn ip_forward_off_drops_what_is_routed() {
    let w = world(NetworkPolicy::default());
    let mut f = w.sent_by_a(PEER, "the world", Flow::Ping);
    f.ip_forward = Some(false);
    let t = walk(&f);
    expect!["net.ipv4.ip_forward is 0: the host forwards nothing; berth up puts it back (sysctl -w net.ipv4.ip_forward=1)"]
        .assert_eq(&format!("{}; {}", t.verdict.reason, t.verdict.fix.unwrap()));
}

#[test]
fn no_host_access_leaves_dns_only_and_the_loopback_guard_holds() {
    let w = world(NetworkPolicy {
        host_access: false,
        ..Default::default()
    });
    let t = walk(&w.sent_by_a(v4::gateway(&w.web), "the host", tcp(22)));
    assert_eq!(t.steps.last().unwrap().chain.as_deref(), Some("web-host"));
    assert!(t.verdict.reason.contains("--no-host-access"), "{t:?}");
    let mut f = w.sent_by_a(v4::gateway(&w.web), "the host", Flow::Port(Proto::Udp, 53));
    f.host_listens = true;
    assert!(walk(&f).verdict.pass);
}

#[test]
fn a_table_that_differs_from_the_state_makes_the_verdict_untrusted() {
    let w = world(NetworkPolicy::default());
    let mut f = w.sent_by_a(v4::ip(&w.c), "c", Flow::Ping);
    f.table = TableCheck::Missing;
    let t = walk(&f);
    assert!(!t.trusted);
    expect!["DROP: networks web and db are isolated; connect a to db: berth connect db a (untrusted: berth's tables do not match the state; run `berth up`)"]
        .assert_eq(t.render().last().unwrap());
}

#[test]
fn the_dnat_lookup_follows_the_skeletons_map_order() {
    let w = world(NetworkPolicy::default());
    let mut a = w.a.clone();
    a.ports = vec![
        PortSpec::parse("203.0.113.1:9000:90")
            .unwrap()
            .with_host_port(0),
        PortSpec::parse("9000:91").unwrap().with_host_port(0),
        PortSpec::parse("7000-7002:7000-7002/udp")
            .unwrap()
            .with_host_port(0),
    ];
    let nets = [w.web.clone()];
    let eps = [a];
    let d = |ip: Ipv4Addr, flow, local, host| dnat(&nets, &eps, ip.into(), local, flow, host);
    // A given address wins over any address.
    assert_eq!(d(UPLINK_HOST, tcp(9000), true, false).unwrap().to_port, 90);
    assert_eq!(
        d(v4::gateway(&w.web), tcp(9000), true, false)
            .unwrap()
            .to_port,
        91
    );
    let r = d(UPLINK_HOST, Flow::Port(Proto::Udp, 7001), true, false).unwrap();
    assert_eq!(
        (r.map, r.element.as_str()),
        (
            "published4_ranges",
            "0.0.0.0/0 . udp . 7000-7002 : 10.90.0.2"
        )
    );
    // Not a host address, or loopback from an interface: never translated.
    assert!(d(PEER, tcp(9000), false, false).is_none());
    assert!(d(Ipv4Addr::LOCALHOST, tcp(9000), true, false).is_none());
    assert!(d(Ipv4Addr::LOCALHOST, tcp(9000), true, true).is_some());
    // The DNS listener of a DNS network's gateway is never shadowed.
    let eps = [Endpoint {
        ports: vec![PortSpec::parse("53:53/udp").unwrap().with_host_port(0)],
        ..w.a.clone()
    }];
    assert!(dnat(
        &nets,
        &eps,
        v4::gateway(&w.web).into(),
        true,
        Flow::Port(Proto::Udp, 53),
        false
    )
    .is_none());
    assert!(dnat(
        &nets,
        &eps,
        UPLINK_HOST.into(),
        true,
        Flow::Port(Proto::Udp, 53),
        false
    )
    .is_some());
}

#[test]
fn destinations_of_both_families_parse() {
    use super::parse_destination as p;
    let ok = |t: &str| p(t).unwrap();
    assert_eq!(ok("fd00:90::2"), ("fd00:90::2".into(), Flow::Ping));
    assert_eq!(ok("[fd00:90::2]"), ("fd00:90::2".into(), Flow::Ping));
    assert_eq!(ok("[fd00:90::2]:80"), ("fd00:90::2".into(), tcp(80)));
    assert_eq!(
        ok("[::1]:53/udp"),
        ("::1".into(), Flow::Port(Proto::Udp, 53))
    );
    assert_eq!(ok("10.90.0.2:80"), ("10.90.0.2".into(), tcp(80)));
    assert_eq!(ok("web/a:80"), ("web/a".into(), tcp(80)));
    assert_eq!(ok("pid:42"), ("pid:42".into(), Flow::Ping));
    for bad in ["[fd00::2", "[nope]:80", "[fd00::2]80", "[fd00::2]:0"] {
        assert!(p(bad).is_err(), "{bad}");
    }
}
