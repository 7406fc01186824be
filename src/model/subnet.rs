//! Subnets of both families over `ipnet`: which prefixes a network may
//! use, the addresses a subnet can lend to containers, overlap, and the
//! ranges no network may use. One set of rules for IPv4 and IPv6, so IPAM,
//! the commands and the reconcile handle both in one place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::Error;

/// Smallest prefix length berth accepts for a network (a /8).
pub const MIN_PREFIX: u8 = 8;
/// Largest IPv4 prefix length that still leaves a gateway and one container.
pub const MAX_PREFIX: u8 = 30;
/// Largest IPv6 prefix length berth accepts: /120 (256 addresses). Longer
/// prefixes leave too little room for the gateway, the subnet-router
/// anycast address and containers to be worth a bridge.
pub const MAX_PREFIX6: u8 = 120;

/// An address family, for messages and per-family choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The largest prefix length a network of the family may have.
    pub fn max_prefix(self) -> u8 {
        match self {
            Family::V4 => MAX_PREFIX,
            Family::V6 => MAX_PREFIX6,
        }
    }
}

/// A set of families, as bits (IPv4 1, IPv6 2): which plain default
/// routes an endpoint gave its namespace. The bits are what the store
/// keeps, so a row of an IPv4-only berth (1) reads as IPv4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Families(u8);

impl Families {
    pub const NONE: Families = Families(0);
    pub const V4: Families = Families(1);
    pub const V6: Families = Families(2);
    /// Every family (of those the endpoint has addresses in).
    pub const ALL: Families = Families(3);

    pub fn of(family: Family) -> Families {
        match family {
            Family::V4 => Families::V4,
            Family::V6 => Families::V6,
        }
    }

    pub fn has(self, family: Family) -> bool {
        self.0 & Families::of(family).0 != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }

    pub fn with(self, family: Family) -> Families {
        Families(self.0 | Families::of(family).0)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Families {
        Families(bits & 3)
    }

    /// Its families, IPv4 first.
    pub fn iter(self) -> impl Iterator<Item = Family> {
        [Family::V4, Family::V6]
            .into_iter()
            .filter(move |f| self.has(*f))
    }
}

/// One subnet of a network: at most one per family. The gateway is the
/// bridge's address in it (None: a network whose gateway is not berth's,
/// or none at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub net: IpNet,
    pub gateway: Option<IpAddr>,
}

impl Subnet {
    pub fn family(&self) -> Family {
        Family::of_net(&self.net)
    }

    /// Subnets and gateways in one line: `10.89.0.0/24 via 10.89.0.1,
    /// fd..::/64 via fd..::1` (or `no subnet`).
    pub fn list_text(subnets: &[Subnet]) -> String {
        if subnets.is_empty() {
            return "no subnet".into();
        }
        subnets
            .iter()
            .map(|s| match s.gateway {
                Some(g) => format!("{} via {g}", s.net),
                None => s.net.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A prefix's address as a number (IPv4 in the low 32 bits), so one piece
/// of arithmetic serves both families.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of the family of `like`.
pub fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Total bits of the family of `net`.
fn bits(net: &IpNet) -> u8 {
    net.max_prefix_len()
}

/// The prefix of length `prefix` holding `ip` (host bits cleared).
pub fn truncating(ip: IpAddr, prefix: u8) -> IpNet {
    let max = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    IpNet::new(ip, prefix.min(max))
        .expect("prefix within the family's length")
        .trunc()
}

/// The IPv4 prefix of length `prefix` holding `ip`.
pub fn v4_truncating(ip: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(ip, prefix.min(32))
        .expect("prefix within 32")
        .trunc()
}

/// Whether two prefixes share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    Family::of_net(a) == Family::of_net(b) && (a.contains(&b.network()) || b.contains(&a.network()))
}

/// The first address usable by a host (the conventional gateway): the
/// network address plus one. In IPv6 the network address itself is the
/// subnet-router anycast address (RFC 4291 2.6.1), never a host's.
pub fn first_host(net: &IpNet) -> IpAddr {
    from_u128(net.network(), to_u128(net.network()) + 1)
}

/// The last address usable by a host: before the broadcast address in
/// IPv4; the last address of the prefix in IPv6 (which has none).
pub fn last_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4.broadcast()) - 1)),
        IpNet::V6(v6) => IpAddr::V6(v6.broadcast()),
    }
}

/// True when `ip` may be lent to a host: inside `net`, and neither the
/// network (IPv6: subnet-router anycast) nor the IPv4 broadcast address.
pub fn is_host(net: &IpNet, ip: IpAddr) -> bool {
    if !net.contains(&ip) || ip == net.network() {
        return false;
    }
    match net {
        IpNet::V4(v4) => ip != IpAddr::V4(v4.broadcast()),
        IpNet::V6(_) => true,
    }
}

/// The prefix that follows `net` at the same length, if any.
pub fn next(net: &IpNet) -> Option<IpNet> {
    let host_bits = u32::from(bits(net) - net.prefix_len());
    let size = 1u128.checked_shl(host_bits)?;
    let max = match net {
        IpNet::V4(_) => u128::from(u32::MAX),
        IpNet::V6(_) => u128::MAX,
    };
    let n = to_u128(net.network()).checked_add(size)?;
    (n <= max).then(|| truncating(from_u128(net.network(), n), net.prefix_len()))
}

/// Ranges no network may use: the kernel treats their addresses
/// specially (loopback, "this network", link-local, multicast, reserved
/// and broadcast; IPv4-mapped and the documentation-free others of IPv6),
/// so a bridge there would not route as a network.
pub const RESERVED: [(&str, &str); 10] = [
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    (
        "240.0.0.0/4",
        "reserved, with the broadcast address 255.255.255.255",
    ),
    ("::/96", "unspecified, loopback and IPv4-compatible"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
];

/// The reserved range `net` overlaps, with what it is.
pub fn reserved_overlap(net: &IpNet) -> Option<(IpNet, &'static str)> {
    RESERVED
        .iter()
        .map(|&(r, what)| (r.parse::<IpNet>().expect("valid reserved range"), what))
        .find(|(r, _)| overlaps(r, net))
}

/// Refuses a subnet in a reserved range, naming both.
pub fn check_not_reserved(what: &str, net: &IpNet) -> Result<(), Error> {
    match reserved_overlap(net) {
        Some((range, name)) => Err(Error::invalid(format!(
            "{what} {net} is in {range} ({name}), which no network may use"
        ))),
        None => Ok(()),
    }
}

/// A network's subnet from a parsed prefix: not reserved, no host bits,
/// and with room for a gateway and a container (IPv4 /8../30, IPv6
/// /8../120).
pub fn network_of(net: IpNet) -> Result<IpNet, Error> {
    if net.trunc() != net {
        return Err(Error::invalid(format!(
            "subnet {net} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    check_not_reserved("subnet", &net)?;
    let max = Family::of_net(&net).max_prefix();
    if net.prefix_len() < MIN_PREFIX {
        return Err(Error::invalid(format!(
            "subnet {net} is too large: the prefix must be /{MIN_PREFIX} to /{max}"
        )));
    }
    if net.prefix_len() > max {
        return Err(Error::invalid(format!(
            "subnet {net} is too small: the prefix must be /{max} or shorter"
        )));
    }
    Ok(net)
}

/// Parses a network subnet as the user gives it (either family).
pub fn parse_network(text: &str) -> Result<IpNet, Error> {
    let net: IpNet = text.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "invalid subnet {text:?}: expected a CIDR like 10.90.0.0/24 or fd00:1::/64"
        ))
    })?;
    network_of(net)
}

/// Parses the base of a subnet pool: any prefix a network could be cut
/// from, host bits zero, not reserved.
pub fn parse_pool_base(text: &str) -> Result<IpNet, Error> {
    let net: IpNet = text.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "invalid subnet {text:?}: expected a CIDR like 10.200.0.0/16 or fd00:1::/48"
        ))
    })?;
    if net.trunc() != net {
        return Err(Error::invalid(format!(
            "subnet {text:?} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    check_not_reserved("pool", &net)?;
    let max = Family::of_net(&net).max_prefix();
    if net.prefix_len() > max {
        return Err(Error::invalid(format!(
            "pool {text:?} is too small: it leaves no address for a container (use /{max} or shorter)"
        )));
    }
    Ok(net)
}

/// The IPv4 prefixes among `nets` (what the IPv4-only parts of the
/// firewall and the runtimes' front doors take).
pub fn v4_nets(nets: &[IpNet]) -> Vec<Ipv4Net> {
    nets.iter()
        .filter_map(|n| match n {
            IpNet::V4(v4) => Some(*v4),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// The IPv6 prefixes among `nets`.
pub fn v6_nets(nets: &[IpNet]) -> Vec<Ipv6Net> {
    nets.iter()
        .filter_map(|n| match n {
            IpNet::V6(v6) => Some(*v6),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// An IPv4 address given for `what`; an IPv6 one is refused, naming it.
pub fn ipv4_of(what: &str, ip: IpAddr) -> Result<Ipv4Addr, Error> {
    match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => Err(Error::invalid(format!(
            "invalid {what} {v6}: expected an IPv4 address"
        ))),
    }
}

/// The unique local /48 of a host (RFC 4193): `fd` and its 40-bit global
/// ID.
pub fn ula_prefix(global_id: [u8; 5]) -> Ipv6Net {
    let g = global_id;
    let addr = Ipv6Addr::new(
        0xfd00 | u16::from(g[0]),
        u16::from_be_bytes([g[1], g[2]]),
        u16::from_be_bytes([g[3], g[4]]),
        0,
        0,
        0,
        0,
        0,
    );
    Ipv6Net::new(addr, 48).expect("48 is a valid IPv6 prefix length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn network_subnets_are_checked() {
        assert!(parse_network("10.90.0.0/24").is_ok());
        assert!(parse_network("10.90.0.0/30").is_ok());
        let e = parse_network("10.90.0.0/31").unwrap_err().to_string();
        assert!(e.contains("too small") && e.contains("10.90.0.0/31"), "{e}");
        assert!(parse_network("10.90.0.0/32").is_err());
        assert!(parse_network("10.0.0.0/4").is_err());
        let e = parse_network("10.90.0.5/24").unwrap_err().to_string();
        assert!(e.contains("10.90.0.0/24"), "{e}");
        assert!(parse_network("fd00:1::/64").is_ok());
        assert!(parse_network("fd00:1::/120").is_ok());
        let e = parse_network("fd00:1::/121").unwrap_err().to_string();
        assert!(e.contains("fd00:1::/121") && e.contains("/120"), "{e}");
        let e = parse_network("fc00::/7").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        let e = parse_network("fd00:1::5/64").unwrap_err().to_string();
        assert!(e.contains("did you mean fd00:1::/64"), "{e}");
        let e = parse_network("fd00:::/64").unwrap_err().to_string();
        assert!(e.contains("fd00:::/64"), "{e}");
    }

    #[test]
    fn host_ranges_of_both_families() {
        let n = net("10.90.0.0/24");
        assert_eq!(first_host(&n), ip("10.90.0.1"));
        assert_eq!(last_host(&n), ip("10.90.0.254"));
        assert!(is_host(&n, ip("10.90.0.254")));
        assert!(!is_host(&n, ip("10.90.0.255")));
        assert!(!is_host(&n, ip("10.90.0.0")));
        assert!(!is_host(&n, ip("10.91.0.1")));
        let n = net("fd00:1::/64");
        assert_eq!(first_host(&n), ip("fd00:1::1"));
        assert_eq!(last_host(&n), ip("fd00:1::ffff:ffff:ffff:ffff"));
        assert!(!is_host(&n, ip("fd00:1::")), "subnet-router anycast");
        assert!(is_host(&n, ip("fd00:1::ffff:ffff:ffff:ffff")));
        assert!(!is_host(&n, ip("fd00:2::1")));
        assert!(!is_host(&n, ip("10.0.0.1")));
    }

    #[test]
    fn overlap_is_symmetric_prefix_aware_and_per_family() {
        assert!(overlaps(&net("172.18.0.0/16"), &net("172.18.5.0/24")));
        assert!(overlaps(&net("172.18.5.0/24"), &net("172.18.0.0/16")));
        assert!(!overlaps(&net("172.18.0.0/16"), &net("172.19.0.0/16")));
        assert!(overlaps(&net("0.0.0.0/0"), &net("10.0.0.0/8")));
        assert!(overlaps(&net("fd00::/8"), &net("fd12:3456::/64")));
        assert!(!overlaps(&net("::/0"), &net("10.0.0.0/8")));
    }

    #[test]
    fn next_walks_and_stops_at_the_end() {
        assert_eq!(next(&net("10.89.0.0/24")), Some(net("10.89.1.0/24")));
        assert_eq!(next(&net("10.89.255.0/24")), Some(net("10.90.0.0/24")));
        assert_eq!(next(&net("255.255.255.0/24")), None);
        assert_eq!(next(&net("fd00:0:0:ffff::/64")), Some(net("fd00:0:1::/64")));
        assert_eq!(next(&net("ffff:ffff:ffff:ffff::/64")), None);
    }

    #[test]
    fn reserved_ranges_are_refused_by_name() {
        for (text, range) in [
            ("127.0.0.0/8", "127.0.0.0/8 (loopback)"),
            ("127.1.2.0/24", "127.0.0.0/8 (loopback)"),
            ("0.0.0.0/8", "0.0.0.0/8"),
            ("169.254.0.0/24", "169.254.0.0/16 (link-local)"),
            ("224.0.0.0/8", "224.0.0.0/4 (multicast)"),
            ("239.255.255.0/24", "224.0.0.0/4 (multicast)"),
            ("240.0.0.0/24", "240.0.0.0/4 (reserved"),
            (
                "255.255.255.0/30",
                "240.0.0.0/4 (reserved, with the broadcast address 255.255.255.255)",
            ),
            ("fe80::/64", "fe80::/10 (link-local)"),
            ("ff02::/64", "ff00::/8 (multicast)"),
            ("::ffff:10.0.0.0/120", "::ffff:0.0.0.0/96 (IPv4-mapped)"),
            ("::/64", "::/96"),
        ] {
            let e = parse_network(text).unwrap_err().to_string();
            assert!(e.contains(range), "{text}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
        for ok in [
            "10.0.0.0/8",
            "1.0.0.0/8",
            "126.255.255.0/24",
            "128.0.0.0/8",
            "169.253.0.0/16",
            "223.255.255.0/24",
            "2001:db8::/64",
            "fd12:3456:789a:1::/64",
        ] {
            assert!(parse_network(ok).is_ok(), "{ok}");
        }
        assert!(parse_pool_base("127.0.0.0/8").is_err());
        assert!(parse_pool_base("10.0.0.0/8").is_ok());
        assert!(parse_pool_base("fd00::/8").is_ok());
    }

    #[test]
    fn the_ula_prefix_carries_the_global_id() {
        assert_eq!(
            ula_prefix([0x12, 0x34, 0x56, 0x78, 0x9a]).to_string(),
            "fd12:3456:789a::/48"
        );
    }
}
