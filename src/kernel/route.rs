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

/// Every IPv4 route of the main table, in one dump.
pub fn main_routes(rtnl: &mut Rtnl) -> io::Result<Vec<RouteFact>> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
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
        let mut fact = RouteFact {
            dst: None,
            prefix_len: route.header.destination_prefix_length,
            gateway: None,
            oif: None,
        };
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(d)) if fact.dst.is_none() => {
                    fact.dst = Some(*d)
                }
                RouteAttribute::Gateway(RouteAddress::Inet(g)) if fact.gateway.is_none() => {
                    fact.gateway = Some(*g)
                }
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
                        .push(Ipv4Net::new_truncating(dst, route.prefix_len));
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
            out.connected
                .push(Ipv4Net::new_truncating(addr.ip, addr.prefix_len));
        }
    }
    Ok(out)
}
