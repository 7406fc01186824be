//! Policy routing over rtnetlink, for `--uplink`: a default route in one of
//! berth's own routing tables, the `ip rule` that sends a subnet's traffic
//! to it, and reading which gateways and prefixes an interface has.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::addr;
use super::rtnl::Rtnl;
use crate::error::errno_of;
use crate::model::Ipv4Net;

/// What the host's main table and addresses say about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceRoutes {
    /// Gateways of main-table routes through the interface, default routes first.
    pub gateways: Vec<Ipv4Addr>,
    /// Prefixes directly reachable on it (its addresses' prefixes and its
    /// routes without gateway).
    pub connected: Vec<Ipv4Net>,
}

fn table_route(table: u32, gateway: Ipv4Addr, index: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes.push(RouteAttribute::Table(table));
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    msg.attributes.push(RouteAttribute::Oif(index));
    msg
}

/// `ip route add default via GATEWAY dev INDEX table TABLE`
pub fn add_table_default(
    rtnl: &mut Rtnl,
    table: u32,
    gateway: Ipv4Addr,
    index: u32,
) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewRoute(table_route(table, gateway, index)),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// `ip route del default table TABLE`; Ok(false) if there was none.
pub fn delete_table_default(rtnl: &mut Rtnl, table: u32) -> io::Result<bool> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.scope = RouteScope::NoWhere;
    msg.attributes.push(RouteAttribute::Table(table));
    match rtnl.request(RouteNetlinkMessage::DelRoute(msg), 0) {
        Ok(()) => Ok(true),
        Err(e) if errno_of(&e) == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

fn source_rule(subnet: Ipv4Net, iif: &str, table: u32, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.src_len = subnet.prefix_len();
    msg.header.action = RuleAction::ToTable;
    msg.attributes
        .push(RuleAttribute::Source(IpAddr::V4(subnet.network())));
    msg.attributes.push(RuleAttribute::Iifname(iif.to_string()));
    msg.attributes.push(RuleAttribute::Table(table));
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg
}

/// `ip rule add from SUBNET iif IIF lookup TABLE priority PRIORITY`
pub fn add_source_rule(
    rtnl: &mut Rtnl,
    subnet: Ipv4Net,
    iif: &str,
    table: u32,
    priority: u32,
) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewRule(source_rule(subnet, iif, table, priority)),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// `ip rule del from SUBNET iif IIF lookup TABLE priority PRIORITY`;
/// Ok(false) if there was no such rule.
pub fn delete_source_rule(
    rtnl: &mut Rtnl,
    subnet: Ipv4Net,
    iif: &str,
    table: u32,
    priority: u32,
) -> io::Result<bool> {
    match rtnl.request(
        RouteNetlinkMessage::DelRule(source_rule(subnet, iif, table, priority)),
        0,
    ) {
        Ok(()) => Ok(true),
        Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One IPv4 route of the main table, as far as berth reads routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFact {
    /// None for a default route (the kernel sends no destination then).
    pub dst: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Index of the outgoing link.
    pub oif: Option<u32>,
}

/// One route of either family of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpRouteFact {
    pub dst: Option<IpAddr>,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// Every IPv4 route of the main table, in one dump.
pub fn main_routes(rtnl: &mut Rtnl) -> io::Result<Vec<RouteFact>> {
    let v4 = |ip: Option<IpAddr>| match ip {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    };
    Ok(main_routes_of(rtnl, AddressFamily::Inet)?
        .into_iter()
        .map(|r| RouteFact {
            dst: v4(r.dst),
            prefix_len: r.prefix_len,
            gateway: v4(r.gateway),
            oif: r.oif,
        })
        .collect())
}

/// Every IPv6 route of the main table, in one dump.
pub fn main_routes6(rtnl: &mut Rtnl) -> io::Result<Vec<IpRouteFact>> {
    main_routes_of(rtnl, AddressFamily::Inet6)
}

fn main_routes_of(rtnl: &mut Rtnl, family: AddressFamily) -> io::Result<Vec<IpRouteFact>> {
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    let mut out = Vec::new();
    for msg in rtnl.dump(RouteNetlinkMessage::GetRoute(req))? {
        let RouteNetlinkMessage::NewRoute(route) = msg else {
            continue;
        };
        // Tables above 255 are named only by the attribute.
        let table = route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(route.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            continue;
        }
        let mut fact = IpRouteFact {
            dst: None,
            prefix_len: route.header.destination_prefix_length,
            gateway: None,
            oif: None,
        };
        let ip = |a: &RouteAddress| match a {
            RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
            RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        };
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Destination(d) if fact.dst.is_none() => fact.dst = ip(d),
                RouteAttribute::Gateway(g) if fact.gateway.is_none() => fact.gateway = ip(g),
                RouteAttribute::Oif(i) if fact.oif.is_none() => fact.oif = Some(*i),
                _ => {}
            }
        }
        out.push(fact);
    }
    Ok(out)
}

/// Gateways and connected prefixes of the link `index`, from the main
/// table and the link's addresses.
pub fn iface_routes(rtnl: &mut Rtnl, index: u32) -> io::Result<IfaceRoutes> {
    let mut out = IfaceRoutes::default();
    let mut defaults = Vec::new();
    let mut others = Vec::new();
    for route in main_routes(rtnl)? {
        if route.oif != Some(index) {
            continue;
        }
        match route.gateway {
            Some(g) if route.prefix_len == 0 => defaults.push(g),
            Some(g) => others.push(g),
            None => {
                if let Some(dst) = route.dst {
                    out.connected
                        .push(crate::model::subnet::v4_truncating(dst, route.prefix_len));
                }
            }
        }
    }
    out.gateways = defaults;
    for g in others {
        if !out.gateways.contains(&g) {
            out.gateways.push(g);
        }
    }
    for addr in addr::ipv4_addresses(rtnl)? {
        if addr.index == index {
            out.connected.push(crate::model::subnet::v4_truncating(
                addr.ip,
                addr.prefix_len,
            ));
        }
    }
    Ok(out)
}

/// What the kernel answers to `ip route get`: the route it would take.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteHop {
    /// The outgoing link's name (None when the route has none).
    pub oif: Option<String>,
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub prefsrc: Option<IpAddr>,
    pub table: u32,
    /// `unicast`, `local`, `broadcast`, `unreachable`, `blackhole`,
    /// `prohibit`, ... as `ip route` spells route types.
    #[serde(rename = "type")]
    pub kind: String,
}

impl RouteHop {
    /// What a failed lookup means: no route at all.
    pub fn unreachable() -> RouteHop {
        RouteHop {
            oif: None,
            gateway: None,
            prefsrc: None,
            table: u32::from(RouteHeader::RT_TABLE_MAIN),
            kind: "unreachable".into(),
        }
    }
}

fn kind_name(kind: RouteType) -> String {
    match kind {
        RouteType::Unicast => "unicast",
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        _ => "other",
    }
    .to_string()
}

/// `ip route get DST [from SRC]`: one RTM_GETROUTE, answered with the
/// route the kernel's own lookup picks (policy rules included). A lookup
/// the kernel refuses for want of a route (ENETUNREACH, EHOSTUNREACH,
/// EINVAL for an unusable source) is a route of type `unreachable`.
/// The family is the destination's (a source of the other one is left out).
pub fn get(rtnl: &mut Rtnl, dst: IpAddr, src: Option<IpAddr>) -> io::Result<RouteHop> {
    let route_address = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    };
    let full = if dst.is_ipv4() { 32 } else { 128 };
    let mut msg = RouteMessage::default();
    msg.header.address_family = match dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = full;
    // The real table number even when it is above 255.
    msg.header.flags = netlink_packet_route::route::RouteFlags::LookupTable;
    msg.attributes
        .push(RouteAttribute::Destination(route_address(dst)));
    if let Some(src) = src.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
        msg.header.source_prefix_length = full;
        msg.attributes
            .push(RouteAttribute::Source(route_address(src)));
    }
    let replies = match rtnl.request_reply(RouteNetlinkMessage::GetRoute(msg)) {
        Ok(r) => r,
        Err(e)
            if matches!(
                errno_of(&e),
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::EINVAL)
            ) =>
        {
            return Ok(RouteHop::unreachable())
        }
        Err(e) => return Err(e),
    };
    let Some(route) = replies.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) => Some(r),
        _ => None,
    }) else {
        return Ok(RouteHop::unreachable());
    };
    let mut hop = RouteHop {
        oif: None,
        gateway: None,
        prefsrc: None,
        table: u32::from(route.header.table),
        kind: kind_name(route.header.kind),
    };
    let mut oif = None;
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Table(t) => hop.table = *t,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => hop.gateway = Some((*g).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => hop.gateway = Some((*g).into()),
            RouteAttribute::PrefSource(RouteAddress::Inet(p)) => hop.prefsrc = Some((*p).into()),
            RouteAttribute::PrefSource(RouteAddress::Inet6(p)) => hop.prefsrc = Some((*p).into()),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if let Some(index) = oif {
        hop.oif = Some(link_name(rtnl, index)?.unwrap_or_else(|| format!("if{index}")));
    }
    Ok(hop)
}

/// The name of link `index` (one GETLINK by index).
fn link_name(rtnl: &mut Rtnl, index: u32) -> io::Result<Option<String>> {
    let mut msg = netlink_packet_route::link::LinkMessage::default();
    msg.header.index = index;
    match rtnl.request_reply(RouteNetlinkMessage::GetLink(msg)) {
        Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(super::link::fact_of(l).name),
            _ => None,
        })),
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    use super::*;
    use crate::kernel::fake_rtnl::{self, addr, route, Answer};

    const MAIN: u8 = RouteHeader::RT_TABLE_MAIN;

    #[test]
    fn only_the_main_table_is_read() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![Answer::Replies(vec![
            route(MAIN, None, Some(gw), 2),
            route(255, Some((Ipv4Addr::new(127, 0, 0, 1), 32)), None, 1),
        ])]);
        assert_eq!(
            main_routes(&mut rtnl).unwrap(),
            [RouteFact {
                dst: None,
                prefix_len: 0,
                gateway: Some(gw),
                oif: Some(2),
            }]
        );
    }

    #[test]
    fn an_interface_has_its_default_gateways_first_and_its_connected_prefixes() {
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![
                route(
                    MAIN,
                    Some((Ipv4Addr::new(198, 51, 100, 0), 24)),
                    Some(Ipv4Addr::new(192, 0, 2, 9)),
                    2,
                ),
                route(MAIN, None, Some(Ipv4Addr::new(192, 0, 2, 1)), 2),
                route(MAIN, Some((Ipv4Addr::new(203, 0, 113, 0), 24)), None, 2),
                route(MAIN, None, Some(Ipv4Addr::new(10, 0, 0, 1)), 3),
            ]),
            Answer::Replies(vec![
                addr(2, Ipv4Addr::new(192, 0, 2, 5), 24),
                addr(3, Ipv4Addr::new(10, 0, 0, 5), 8),
            ]),
        ]);
        let got = iface_routes(&mut rtnl, 2).unwrap();
        assert_eq!(
            got.gateways,
            [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 9)]
        );
        assert_eq!(
            got.connected,
            [
                "203.0.113.0/24".parse::<Ipv4Net>().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_source_rule_names_subnet_bridge_table_and_priority() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Ack, Answer::Errno(libc::ENOENT)]);
        let subnet: Ipv4Net = "10.90.0.0/24".parse().unwrap();
        add_source_rule(&mut rtnl, subnet, "berth-web", 0x6265_0001, 10000).unwrap();
        assert!(!delete_source_rule(&mut rtnl, subnet, "berth-web", 0x6265_0001, 10000).unwrap());
        let sent = sent.sent();
        assert_eq!(
            sent[0].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        let RouteNetlinkMessage::NewRule(rule) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert_eq!(rule.header.src_len, 24);
        assert_eq!(rule.header.action, RuleAction::ToTable);
        assert_eq!(
            rule.attributes,
            [
                RuleAttribute::Source(IpAddr::V4(Ipv4Addr::new(10, 90, 0, 0))),
                RuleAttribute::Iifname("berth-web".into()),
                RuleAttribute::Table(0x6265_0001),
                RuleAttribute::Priority(10000),
            ]
        );
        assert!(matches!(sent[1].message, RouteNetlinkMessage::DelRule(_)));
    }
}
