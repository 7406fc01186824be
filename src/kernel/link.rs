//! Link requests over rtnetlink: bridges, veth pairs whose peer is born in
//! another namespace, bringing links up, and deleting one link or a whole
//! link group in one request.

use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData,
    InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::rtnl::Rtnl;
use crate::error::errno_of;
use crate::model::names::DOOMED_GROUP;
use crate::model::Mac;

/// What a new veth pair looks like: the host end goes on a bridge, the peer
/// is created directly in the container's namespace, both up.
pub struct VethSpec<'a> {
    pub host_ifname: &'a str,
    /// The bridge the host end joins; None leaves it a plain routed link.
    pub bridge_index: Option<u32>,
    pub link_group: u32,
    pub peer_ifname: &'a str,
    pub peer_netns: &'a std::fs::File,
    pub peer_mac: [u8; 6],
    pub mtu: u32,
}

/// A macvlan or ipvlan child of the host link `parent_index`, created
/// directly in the namespace `netns` (down, so that it can be renamed
/// there).
pub struct ChildSpec<'a> {
    pub name: &'a str,
    pub parent_index: u32,
    pub driver: &'a crate::model::Driver,
    pub netns: &'a std::fs::File,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub group: u32,
}

fn up_header() -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg
}

/// The index of the link called `name`, or None if there is none.
pub fn index_of(rtnl: &mut Rtnl, name: &str) -> io::Result<Option<u32>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let mut found = None;
    match rtnl_get(rtnl, msg) {
        Ok(links) => {
            if let Some(link) = links.first() {
                found = Some(link.header.index);
            }
            Ok(found)
        }
        Err(e) if errno_of(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The link group of the link called `name`, or None if there is none.
pub fn group_of(rtnl: &mut Rtnl, name: &str) -> io::Result<Option<u32>> {
    Ok(get(rtnl, name)?.map(|link| link.group))
}

fn rtnl_get(rtnl: &mut Rtnl, msg: LinkMessage) -> io::Result<Vec<LinkMessage>> {
    // A GETLINK by name answers with one message and no DONE, so it is sent
    // as a plain request whose reply is collected by `request_reply`.
    rtnl.request_reply(RouteNetlinkMessage::GetLink(msg))
        .map(|replies| {
            replies
                .into_iter()
                .filter_map(|m| match m {
                    RouteNetlinkMessage::NewLink(l) => Some(l),
                    _ => None,
                })
                .collect()
        })
}

pub(crate) fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// Creates an up bridge with a fixed MAC. A bridge left to pick its own
/// takes the lowest MAC of its ports, so it would change as containers come
/// and go, and every port added would rescan all ports to recompute it.
pub fn create_bridge(
    rtnl: &mut Rtnl,
    name: &str,
    mtu: u32,
    mac: [u8; 6],
    group: u32,
) -> io::Result<()> {
    let mut msg = up_header();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    // The group is set in the creating request itself, so a bridge berth
    // made carries berth's mark from its first instant (see `LinkFact`).
    msg.attributes.push(LinkAttribute::Group(group));
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    // Multicast snooping off: with it on, every port added makes the
    // bridge walk per-port multicast state, which made the veth request of a
    // connect ~0.3 ms slower at 1000 ports. Without snooping the bridge
    // floods multicast like a plain switch, which is all berth's IPv4
    // containers need.
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)])),
    ]));
    rtnl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Creates a veth pair in one request: host end up, on the bridge, in the
/// network's link group; peer, with its MAC, inside the target namespace.
///
/// The host end's `addrgenmode none` (`no_ipv6_addresses`) goes in the
/// same datagram, right behind it: the kernel handles the two in order,
/// before the host end can have carrier (its peer is still down), in one
/// round trip instead of two.
pub fn create_veth(rtnl: &mut Rtnl, spec: &VethSpec) -> io::Result<()> {
    rtnl.batch(vec![
        (veth_message(spec), NLM_F_CREATE | NLM_F_EXCL),
        (no_ipv6_addresses_message(spec.host_ifname), 0),
    ])
    .map(drop)
}

fn veth_message(spec: &VethSpec) -> RouteNetlinkMessage {
    // The peer cannot be created up: veth refuses to open a device whose
    // other end is not linked yet (ENOTCONN); it is brought up from inside.
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(spec.peer_ifname.to_string()));
    peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
    peer.attributes
        .push(LinkAttribute::Address(spec.peer_mac.to_vec()));
    peer.attributes
        .push(LinkAttribute::NetNsFd(spec.peer_netns.as_raw_fd()));

    let mut msg = up_header();
    msg.attributes
        .push(LinkAttribute::IfName(spec.host_ifname.to_string()));
    msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
    msg.attributes.push(LinkAttribute::Group(spec.link_group));
    if let Some(bridge) = spec.bridge_index {
        msg.attributes.push(LinkAttribute::Controller(bridge));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    RouteNetlinkMessage::NewLink(msg)
}

/// Creates a macvlan/ipvlan child in one request: RTM_NEWLINK with
/// IFLA_LINK (the parent, in the sender's namespace), IFLA_NET_NS_FD (where
/// the child lives), the kind and its mode, and berth's link group.
pub fn create_child(rtnl: &mut Rtnl, spec: &ChildSpec) -> io::Result<()> {
    use crate::model::{Driver, IpvlanMode, MacvlanMode};
    use netlink_packet_route::link::{
        InfoIpVlan, InfoMacVlan, IpVlanMode as IpMode, MacVlanMode as MacMode,
    };
    let (kind, data) = match spec.driver {
        Driver::Macvlan { mode, .. } => (
            InfoKind::MacVlan,
            InfoData::MacVlan(vec![InfoMacVlan::Mode(match mode {
                MacvlanMode::Private => MacMode::Private,
                MacvlanMode::Vepa => MacMode::Vepa,
                MacvlanMode::Bridge => MacMode::Bridge,
                MacvlanMode::Passthru => MacMode::Passthrough,
                MacvlanMode::Source => MacMode::Source,
            })]),
        ),
        Driver::Ipvlan { mode, .. } => (
            InfoKind::IpVlan,
            InfoData::IpVlan(vec![InfoIpVlan::Mode(match mode {
                IpvlanMode::L2 => IpMode::L2,
                IpvlanMode::L3 => IpMode::L3,
                IpvlanMode::L3s => IpMode::L3S,
            })]),
        ),
        Driver::Bridge => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(spec.name.to_string()));
    msg.attributes.push(LinkAttribute::Link(spec.parent_index));
    msg.attributes
        .push(LinkAttribute::NetNsFd(spec.netns.as_raw_fd()));
    msg.attributes.push(LinkAttribute::Group(spec.group));
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(kind),
        LinkInfo::Data(data),
    ]));
    rtnl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Renames the (down) link `index` to `name`.
pub fn rename(rtnl: &mut Rtnl, index: u32, name: &str) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    rtnl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Creates an ifb device, down, in `group` (berth's mark, set in the
/// creating request as for veths). An ifb passes what is redirected to it
/// through its own qdisc and back on its way; berth shapes a container's
/// outgoing traffic there.
pub fn create_ifb(rtnl: &mut Rtnl, name: &str, mtu: u32, group: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg.attributes.push(LinkAttribute::Group(group));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
    rtnl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Stops the kernel from giving the link `name` IPv6 addresses of its own
/// (`addrgenmode none`), so it sends no DAD, MLD or router solicitations.
/// berth networks are IPv4; without this, every new port's IPv6 chatter is
/// flooded by the bridge to every other port, and a connect costs more the
/// more containers there are. The kernel refuses this attribute on link
/// creation, so it is set right after, before the link has carrier.
pub fn no_ipv6_addresses(rtnl: &mut Rtnl, name: &str) -> io::Result<()> {
    rtnl.request(no_ipv6_addresses_message(name), 0)
}

/// `ip link set NAME addrgenmode none`, as a request for a batch.
pub fn no_ipv6_addresses_message(name: &str) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    RouteNetlinkMessage::SetLink(msg)
}

/// `ip link set NAME up`, the link named rather than indexed (the kernel
/// looks the name up), so that it needs no GETLINK first.
pub fn up_by_name_message(name: &str) -> RouteNetlinkMessage {
    let mut msg = up_header();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::SetLink(msg)
}

/// A GETLINK of the link called `name`, for a batch; its reply is read
/// with [`index_in`].
pub fn get_by_name_message(name: &str) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::GetLink(msg)
}

/// The index of the link a GETLINK answered with.
pub fn index_in(replies: &[RouteNetlinkMessage]) -> Option<u32> {
    replies.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
        _ => None,
    })
}

/// Makes the bridge `name` pass its bridged IPv4 frames through the
/// iptables/nftables hooks (`nf_call_iptables`) whatever the namespace-wide
/// `net.bridge.bridge-nf-call-iptables` says, so that berth's forward chain
/// sees traffic between two ports of the bridge in every mode.
pub fn set_bridge_nf_call_iptables(
    rtnl: &mut Rtnl,
    name: &str,
    on: bool,
    ipv6: bool,
) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let mut data = vec![InfoBridge::NfCallIpTables(on)];
    if ipv6 {
        // The same for bridged IPv6 frames (`nf_call_ip6tables`).
        data.push(InfoBridge::NfCallIp6Tables(on));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(data)),
    ]));
    rtnl.request(RouteNetlinkMessage::NewLink(msg), 0)
}

/// Sets one IPv4 per-device setting (`IPV4_DEVCONF_*` number `id`) of the
/// link `name`: RTM_SETLINK with IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF
/// holding the one setting, which the kernel validates and applies like a
/// write to /proc/sys/net/ipv4/conf/NAME/.
pub fn set_ipv4_devconf(rtnl: &mut Rtnl, name: &str, id: u16, value: u32) -> io::Result<()> {
    const IFLA_INET_CONF: u16 = 1;
    const NLA_F_NESTED: u16 = 1 << 15;
    let mut setting = Vec::with_capacity(8);
    setting.extend_from_slice(&8u16.to_ne_bytes());
    setting.extend_from_slice(&id.to_ne_bytes());
    setting.extend_from_slice(&value.to_ne_bytes());
    let conf = DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, setting);
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::Other(conf),
        ])]));
    rtnl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Sets a bridge port's hairpin mode, so a container can reach itself
/// through an address the host translates back to it.
///
/// The port is named, not indexed: the kernel looks the name up, which
/// spares a GETLINK round trip.
pub fn set_hairpin(rtnl: &mut Rtnl, name: &str, on: bool) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )])),
    ]));
    // RTM_SETLINK ignores IFLA_LINKINFO; port options change through
    // RTM_NEWLINK on the existing link (what `ip link set ... type
    // bridge_slave` sends).
    rtnl.request(RouteNetlinkMessage::NewLink(msg), 0)
}

/// Brings the link with `index` up.
pub fn set_up(rtnl: &mut Rtnl, index: u32) -> io::Result<()> {
    let mut msg = up_header();
    msg.header.index = index;
    rtnl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Makes `index` a port of the bridge `master` (a bridge deleted and
/// re-created loses its ports; the veths themselves survive).
pub fn set_master(rtnl: &mut Rtnl, index: u32, master: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Controller(master));
    rtnl.request(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Deletes the link called `name`; Ok(false) if there was none.
pub fn delete(rtnl: &mut Rtnl, name: &str) -> io::Result<bool> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    match rtnl.request(RouteNetlinkMessage::DelLink(msg), 0) {
        Ok(()) => Ok(true),
        Err(e) if errno_of(&e) == Some(libc_enodev()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes every link in `group` with one request: the kernel then waits
/// for one RCU grace period for all of them instead of one each.
pub fn delete_group(rtnl: &mut Rtnl, group: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    match rtnl.request(RouteNetlinkMessage::DelLink(msg), 0) {
        // An empty group is not an error for berth.
        Err(e) if errno_of(&e) == Some(libc_enodev()) => Ok(()),
        other => other,
    }
}

/// Takes the link called `name` out of service without deleting it (a
/// delete waits for an RCU grace period; none of these does, each is one
/// round trip of ~40 µs): down and, with `group`, off its bridge; then
/// renamed to `pending` (the kernel refuses to rename a link that is up),
/// in the same request moved into `group` (the kernel sets the group
/// before it renames). Ok(false): no such link. EEXIST (a link already
/// has the name `pending`) is the caller's to handle.
pub fn take_out(
    rtnl: &mut Rtnl,
    name: &str,
    pending: &str,
    group: Option<u32>,
) -> io::Result<bool> {
    let Some(index) = index_of(rtnl, name)? else {
        return Ok(false);
    };
    let mut down = LinkMessage::default();
    down.header.index = index;
    down.header.change_mask = LinkFlags::Up;
    if group.is_some() {
        down.attributes.push(LinkAttribute::Controller(0));
    }
    let gone = |e: &io::Error| errno_of(e) == Some(libc_enodev());
    match rtnl.request(RouteNetlinkMessage::SetLink(down), 0) {
        Err(e) if gone(&e) => return Ok(false),
        other => other?,
    }
    let mut rename = LinkMessage::default();
    rename.header.index = index;
    if let Some(group) = group {
        rename.attributes.push(LinkAttribute::Group(group));
    }
    rename
        .attributes
        .push(LinkAttribute::IfName(pending.to_string()));
    match rtnl.request(RouteNetlinkMessage::SetLink(rename), 0) {
        // Deleted meanwhile (with its namespace, or with the group).
        Err(e) if gone(&e) => Ok(false),
        Err(e) => Err(e),
        Ok(()) => Ok(true),
    }
}

/// Moves the link called `name` into `group`; Ok(false) if there is none.
pub fn set_group(rtnl: &mut Rtnl, name: &str, group: u32) -> io::Result<bool> {
    match rtnl.request(RouteNetlinkMessage::SetLink(group_message(name, group)), 0) {
        Ok(()) => Ok(true),
        Err(e) if errno_of(&e) == Some(libc_enodev()) => Ok(false),
        Err(e) => Err(e),
    }
}

fn group_message(name: &str, group: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::Group(group));
    msg
}

/// Moves each of `names` that exists into `names::DOOMED_GROUP`, then
/// deletes the group in one request (one RCU grace period in all); returns
/// how many were deleted. A link gone already (with its namespace) is not
/// an error.
pub fn delete_together(rtnl: &mut Rtnl, names: &[String]) -> io::Result<usize> {
    let mut moved = 0;
    for name in names {
        if set_group(rtnl, name, DOOMED_GROUP)? {
            moved += 1;
        }
    }
    if moved > 0 {
        delete_group(rtnl, DOOMED_GROUP)?;
    }
    Ok(moved)
}

/// What berth needs to know of one link: enough to tell its own devices
/// (by name and link group) from everyone else's, and what CNI's CHECK
/// compares (MAC, bridge, up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFact {
    pub name: String,
    pub index: u32,
    pub group: u32,
    /// "bridge", "veth", ... or "" when the kernel names no kind.
    pub kind: String,
    /// Index of the bridge the link is a port of.
    pub master: Option<u32>,
    pub up: bool,
    /// None for links without an Ethernet address (`lo` has all zeros,
    /// which is one; tunnels may have none).
    pub mac: Option<Mac>,
}

pub(super) fn fact_of(link: LinkMessage) -> LinkFact {
    let mut fact = LinkFact {
        name: String::new(),
        index: link.header.index,
        group: 0,
        kind: String::new(),
        master: None,
        up: link.header.flags.contains(LinkFlags::Up),
        mac: None,
    };
    for attr in link.attributes {
        match attr {
            LinkAttribute::IfName(n) => fact.name = n,
            LinkAttribute::Group(g) => fact.group = g,
            LinkAttribute::Controller(m) => fact.master = Some(m),
            LinkAttribute::Address(bytes) => {
                if let Ok(b) = <[u8; 6]>::try_from(bytes.as_slice()) {
                    fact.mac = Some(Mac(b));
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        fact.kind = kind.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    fact
}

/// Every link of the namespace in one dump (about 1 ms for 1000 links).
pub fn dump(rtnl: &mut Rtnl) -> io::Result<Vec<LinkFact>> {
    let replies = rtnl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(fact_of(link)),
            _ => None,
        })
        .collect())
}

/// The names of the calling thread's namespace's links, from its
/// /proc/net/dev; None when it cannot be read (no /proc).
pub fn names_in_proc() -> Option<std::collections::HashSet<String>> {
    // thread-self: the namespace of this thread, which is the host's
    // (berth enters namespaces only on threads of their own).
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    Some(names_in_net_dev(&text))
}

/// The link names of a /proc/net/dev text: two heading lines, then one
/// line a link, `NAME: counters` (a name holds no `:` or space).
fn names_in_net_dev(text: &str) -> std::collections::HashSet<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// The link called `name`, with one GETLINK by name rather than a dump of
/// every link (the host side of a busy node has thousands); None if there
/// is none.
pub fn get(rtnl: &mut Rtnl, name: &str) -> io::Result<Option<LinkFact>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    match rtnl_get(rtnl, msg) {
        Ok(links) => Ok(links.into_iter().next().map(fact_of)),
        Err(e) if errno_of(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

    use super::*;
    use crate::kernel::fake_rtnl::{self, Answer, Sent};

    const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

    fn named(name: &str, index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
        match fake_rtnl::link(name, index, attributes) {
            RouteNetlinkMessage::NewLink(msg) => msg,
            _ => unreachable!("a link"),
        }
    }

    #[test]
    fn link_names_are_read_from_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
berth-web: 1296      18    0    0    0     0          0         0     1026      13    0    0    0     0       0          0
vb0123456789abc:    0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";
        let mut names: Vec<String> = names_in_net_dev(text).into_iter().collect();
        names.sort();
        assert_eq!(names, ["berth-web", "lo", "vb0123456789abc"]);
    }

    #[test]
    fn a_bridge_is_made_up_in_its_group_with_its_mac_and_without_snooping() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        let mac = [2, 0x42, 10, 90, 0, 1];
        create_bridge(&mut rtnl, "berth-web", 1400, mac, 0x6265_0000).unwrap();
        let mut want = up_header();
        want.attributes = vec![
            LinkAttribute::IfName("berth-web".into()),
            LinkAttribute::Group(0x6265_0000),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)])),
            ]),
        ];
        assert_eq!(
            sent.sent(),
            [Sent {
                flags: CREATE,
                message: RouteNetlinkMessage::NewLink(want)
            }]
        );
    }

    #[test]
    fn an_ifb_is_made_down_in_its_group() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        create_ifb(&mut rtnl, "ib0123", 1400, 0x6265_0001).unwrap();
        let mut want = LinkMessage::default();
        want.attributes = vec![
            LinkAttribute::IfName("ib0123".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Group(0x6265_0001),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]),
        ];
        assert_eq!(
            sent.sent(),
            [Sent {
                flags: CREATE,
                message: RouteNetlinkMessage::NewLink(want)
            }]
        );
    }

    #[test]
    fn a_veth_is_one_request_with_the_peer_born_in_the_namespace() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        let netns = std::fs::File::open("/dev/null").unwrap();
        let spec = VethSpec {
            host_ifname: "vb0123",
            bridge_index: Some(7),
            link_group: 0x6265_0001,
            peer_ifname: "eth0",
            peer_netns: &netns,
            peer_mac: [2, 0x42, 10, 90, 0, 2],
            mtu: 1500,
        };
        create_veth(&mut rtnl, &spec).unwrap();
        assert_eq!(sent.datagrams(), 1, "one round trip");
        let sent = sent.sent();
        assert_eq!(sent.len(), 2, "the pair, then its addrgenmode: {sent:?}");
        assert_eq!(sent[1].message, no_ipv6_addresses_message("vb0123"));
        assert_eq!(sent[0].flags, CREATE);
        let RouteNetlinkMessage::NewLink(host) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert_eq!(host.header.flags, LinkFlags::Up, "the host end is up");
        let peer = named(
            "eth0",
            0,
            vec![
                LinkAttribute::Mtu(1500),
                LinkAttribute::Address(vec![2, 0x42, 10, 90, 0, 2]),
                LinkAttribute::NetNsFd(netns.as_raw_fd()),
            ],
        );
        assert_eq!(
            host.attributes,
            [
                LinkAttribute::IfName("vb0123".into()),
                LinkAttribute::Mtu(1500),
                LinkAttribute::Group(0x6265_0001),
                LinkAttribute::Controller(7),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
                ]),
            ]
        );
    }

    #[test]
    fn moving_into_a_group_names_the_link_and_a_missing_one_is_not_an_error() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Ack, Answer::Errno(libc::ENODEV)]);
        assert!(set_group(&mut rtnl, "vb1", 42).unwrap());
        assert!(!set_group(&mut rtnl, "vb2", 42).unwrap());
        let sent = sent.sent();
        assert_eq!(sent[0].flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(
            sent[0].message,
            RouteNetlinkMessage::SetLink(named("vb1", 0, vec![LinkAttribute::Group(42)]))
        );
    }

    #[test]
    fn taking_out_brings_down_unbridges_then_renames_into_the_group() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![fake_rtnl::link("vb1", 9, vec![])]),
            Answer::Ack,
            Answer::Ack,
        ]);
        assert!(take_out(&mut rtnl, "vb1", "vp1", Some(42)).unwrap());
        let sent = sent.sent();
        assert_eq!(sent.len(), 3, "a lookup and two changes: {sent:?}");
        let mut down = LinkMessage::default();
        down.header.index = 9;
        down.header.change_mask = LinkFlags::Up;
        down.attributes.push(LinkAttribute::Controller(0));
        assert_eq!(sent[1].message, RouteNetlinkMessage::SetLink(down));
        let mut rename = LinkMessage::default();
        rename.header.index = 9;
        rename.attributes = vec![
            LinkAttribute::Group(42),
            LinkAttribute::IfName("vp1".into()),
        ];
        assert_eq!(sent[2].message, RouteNetlinkMessage::SetLink(rename));

        // A peer (no group): down and renamed, nothing about a bridge.
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![fake_rtnl::link("eth0", 2, vec![])]),
            Answer::Ack,
            Answer::Errno(libc::EEXIST),
        ]);
        let err = take_out(&mut rtnl, "eth0", "vp1", None).unwrap_err();
        assert_eq!(errno_of(&err), Some(libc::EEXIST));
        let sent = sent.sent();
        match &sent[1].message {
            RouteNetlinkMessage::SetLink(m) => assert!(m.attributes.is_empty(), "{m:?}"),
            other => panic!("{other:?}"),
        }

        // Gone before or meanwhile: not an error, nothing taken out.
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![Answer::Errno(libc::ENODEV)]);
        assert!(!take_out(&mut rtnl, "vb2", "vp2", Some(42)).unwrap());
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![fake_rtnl::link("vb3", 4, vec![])]),
            Answer::Ack,
            Answer::Errno(libc::ENODEV),
        ]);
        assert!(!take_out(&mut rtnl, "vb3", "vp3", Some(42)).unwrap());
    }

    #[test]
    fn a_group_is_deleted_in_one_request_and_an_empty_one_is_no_error() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Errno(libc::ENODEV)]);
        delete_group(&mut rtnl, 42).unwrap();
        let mut want = LinkMessage::default();
        want.attributes.push(LinkAttribute::Group(42));
        assert_eq!(sent.sent()[0].message, RouteNetlinkMessage::DelLink(want));
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![Answer::Errno(libc::EPERM)]);
        assert!(delete_group(&mut rtnl, 42).is_err());
    }

    #[test]
    fn a_link_is_read_by_name_with_its_mac_bridge_and_group() {
        let reply = fake_rtnl::link(
            "vb1",
            9,
            vec![
                LinkAttribute::Address(vec![2, 0x42, 10, 90, 0, 2]),
                LinkAttribute::Controller(7),
                LinkAttribute::Group(42),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
            ],
        );
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![reply]),
            Answer::Errno(libc::ENODEV),
        ]);
        let link = get(&mut rtnl, "vb1").unwrap().expect("found");
        assert_eq!(
            link,
            LinkFact {
                name: "vb1".into(),
                index: 9,
                group: 42,
                kind: "veth".into(),
                master: Some(7),
                up: false,
                mac: Some(Mac([2, 0x42, 10, 90, 0, 2])),
            }
        );
        assert_eq!(get(&mut rtnl, "vb2").unwrap(), None);
        assert_eq!(
            sent.sent()[0].message,
            RouteNetlinkMessage::GetLink(named("vb1", 0, vec![]))
        );
    }

    #[test]
    fn a_dump_reads_every_link() {
        let mut up = named("lo", 1, vec![LinkAttribute::Address(vec![0; 6])]);
        up.header.flags = LinkFlags::Up;
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Replies(vec![
            RouteNetlinkMessage::NewLink(up),
            fake_rtnl::link("tun0", 2, vec![]),
        ])]);
        let links = dump(&mut rtnl).unwrap();
        assert_eq!(sent.sent()[0].flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(links.len(), 2);
        assert!(links[0].up);
        assert_eq!(links[0].mac, Some(Mac([0; 6])));
        assert_eq!((links[1].name.as_str(), links[1].mac), ("tun0", None));
    }
}
