//! Everything one namespace holds, as `berth inspect` and `berth doctor`
//! show it: links (state, MAC, MTU, peer), addresses of both families,
//! the IPv4 routes of every table and the neighbours. Four dumps.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridge, InfoData, LinkAttribute, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::rtnl::Rtnl;
use crate::model::Mac;

/// One link in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkDetail {
    pub index: u32,
    pub name: String,
    pub kind: String,
    /// The operational state as `ip` shows it (UP, DOWN, UNKNOWN, ...).
    pub state: String,
    pub mac: Option<Mac>,
    pub mtu: u32,
    /// The index of the peer (a veth's other end), in this namespace or,
    /// when `peer_netnsid` is set, in another one.
    pub peer_index: Option<u32>,
    pub peer_netnsid: Option<i32>,
    /// The index of the bridge the link is a port of.
    pub master: Option<u32>,
    pub group: u32,
    /// A bridge's `nf_call_iptables` option (None: not a bridge).
    pub nf_call_iptables: Option<bool>,
    /// A bridge's `nf_call_ip6tables` option (None: not a bridge).
    pub nf_call_ip6tables: Option<bool>,
}

/// An address of either family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrDetail {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
}

/// An IPv4 route of any table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDetail {
    pub table: u32,
    pub dst: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub metric: Option<u32>,
    /// Unicast, local, broadcast, blackhole, ... as `ip` names it.
    pub kind: String,
}

/// A neighbour (ARP or NDP) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourDetail {
    pub index: u32,
    pub ip: IpAddr,
    pub mac: Option<Mac>,
    /// REACHABLE, STALE, PERMANENT, ... as `ip neigh` shows it.
    pub state: String,
}

/// What a namespace holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetnsDetails {
    pub links: Vec<LinkDetail>,
    pub addrs: Vec<AddrDetail>,
    pub routes: Vec<RouteDetail>,
    pub neighbours: Vec<NeighbourDetail>,
}

impl NetnsDetails {
    pub fn link_name(&self, index: u32) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.as_str())
    }
}

fn state_text(s: &State) -> String {
    match s {
        State::Unknown => "UNKNOWN".into(),
        State::NotPresent => "NOTPRESENT".into(),
        State::Down => "DOWN".into(),
        State::LowerLayerDown => "LOWERLAYERDOWN".into(),
        State::Testing => "TESTING".into(),
        State::Dormant => "DORMANT".into(),
        State::Up => "UP".into(),
        State::Other(n) => format!("state {n}"),
        _ => "UNKNOWN".into(),
    }
}

fn neighbour_state(s: NeighbourState) -> String {
    match s {
        NeighbourState::Incomplete => "INCOMPLETE".into(),
        NeighbourState::Reachable => "REACHABLE".into(),
        NeighbourState::Stale => "STALE".into(),
        NeighbourState::Delay => "DELAY".into(),
        NeighbourState::Probe => "PROBE".into(),
        NeighbourState::Failed => "FAILED".into(),
        NeighbourState::Noarp => "NOARP".into(),
        NeighbourState::Permanent => "PERMANENT".into(),
        NeighbourState::None => "NONE".into(),
        NeighbourState::Other(n) => format!("state {n}"),
        _ => "UNKNOWN".into(),
    }
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(bytes).ok().map(Mac)
}

fn link_of(msg: LinkMessage) -> LinkDetail {
    let mut l = LinkDetail {
        index: msg.header.index,
        name: String::new(),
        kind: String::new(),
        state: String::new(),
        mac: None,
        mtu: 0,
        peer_index: None,
        peer_netnsid: None,
        master: None,
        group: 0,
        nf_call_iptables: None,
        nf_call_ip6tables: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::OperState(s) => l.state = state_text(&s),
            LinkAttribute::Address(a) => l.mac = mac_of(&a),
            LinkAttribute::Mtu(m) => l.mtu = m,
            LinkAttribute::Link(i) => l.peer_index = Some(i),
            LinkAttribute::LinkNetNsId(id) => l.peer_netnsid = Some(id),
            LinkAttribute::Controller(m) => l.master = Some(m),
            LinkAttribute::Group(g) => l.group = g,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => l.kind = k.to_string(),
                        LinkInfo::Data(InfoData::Bridge(opts)) => {
                            for o in opts {
                                match o {
                                    InfoBridge::NfCallIpTables(on) => l.nf_call_iptables = Some(on),
                                    InfoBridge::NfCallIp6Tables(on) => {
                                        l.nf_call_ip6tables = Some(on)
                                    }
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // A link's own index as its "link" says nothing.
    if l.peer_index == Some(l.index) && l.peer_netnsid.is_none() {
        l.peer_index = None;
    }
    l
}

/// Reads the details of the namespace `rtnl` is bound to.
pub fn read(rtnl: &mut Rtnl) -> io::Result<NetnsDetails> {
    let mut out = NetnsDetails::default();
    for msg in rtnl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
        if let RouteNetlinkMessage::NewLink(l) = msg {
            out.links.push(link_of(l));
        }
    }
    for msg in rtnl.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
        let RouteNetlinkMessage::NewAddress(a) = msg else {
            continue;
        };
        let ip = a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let ip = ip.or_else(|| {
            a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = ip {
            out.addrs.push(AddrDetail {
                index: a.header.index,
                ip,
                prefix_len: a.header.prefix_len,
            });
        }
    }
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    for msg in rtnl.dump(RouteNetlinkMessage::GetRoute(req))? {
        let RouteNetlinkMessage::NewRoute(r) = msg else {
            continue;
        };
        let mut d = RouteDetail {
            table: u32::from(r.header.table),
            dst: None,
            prefix_len: r.header.destination_prefix_length,
            gateway: None,
            oif: None,
            metric: None,
            kind: format!("{:?}", r.header.kind).to_lowercase(),
        };
        for attr in &r.attributes {
            match attr {
                RouteAttribute::Table(t) => d.table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(a)) => d.dst = Some(*a),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => d.gateway = Some(*g),
                RouteAttribute::Oif(i) => d.oif = Some(*i),
                RouteAttribute::Priority(p) => d.metric = Some(*p),
                _ => {}
            }
        }
        out.routes.push(d);
    }
    let mut req = NeighbourMessage::default();
    req.header.family = AddressFamily::Unspec;
    for msg in rtnl.dump(RouteNetlinkMessage::GetNeighbour(req))? {
        let RouteNetlinkMessage::NewNeighbour(n) = msg else {
            continue;
        };
        let mut ip = None;
        let mut mac = None;
        for attr in &n.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    ip = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    ip = Some(IpAddr::V6(*a))
                }
                NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
                _ => {}
            }
        }
        if let Some(ip) = ip {
            out.neighbours.push(NeighbourDetail {
                index: n.header.ifindex,
                ip,
                mac,
                state: neighbour_state(n.header.state),
            });
        }
    }
    Ok(out)
}

/// A base chain on the input or forward hook of some table, with the
/// rules that could drop what it sees: its own drop/reject rules and
/// those of the chains it jumps to (one level, which covers Docker's
/// DOCKER-USER and ufw's ufw-* chains).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterChain {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// "input" or "forward".
    pub hook: String,
    pub priority: i32,
    pub policy_drop: bool,
    /// Each as `CHAIN handle N: TEXT`.
    pub dropping_rules: Vec<String>,
}
