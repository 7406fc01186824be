//! IPv4 subnets: parsing, containment, overlap, and the addresses a subnet
//! can lend to containers.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::Error;

/// Smallest prefix length berth accepts for a network (a /8).
pub const MIN_PREFIX: u8 = 8;
/// Largest prefix length that still leaves a gateway and one container.
pub const MAX_PREFIX: u8 = 30;

/// An IPv4 prefix such as `10.90.0.0/24`. Always normalised: host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// Builds a prefix, clearing any host bits of `addr`.
    pub fn new_truncating(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let prefix = prefix.min(32);
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn netmask(&self) -> u32 {
        mask(self.prefix)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.netmask())
    }

    /// First address usable by a host (the conventional gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Last address usable by a host.
    pub fn last_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.broadcast()) - 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.netmask() == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = mask(shorter);
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// True when `ip` may be lent to a host: inside, and neither the network
    /// nor the broadcast address.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.addr && ip != self.broadcast()
    }

    /// The prefix that follows this one at the same length, if any.
    pub fn next(&self) -> Option<Ipv4Net> {
        let size = 1u64 << (32 - self.prefix);
        let next = u64::from(u32::from(self.addr)) + size;
        (next <= u64::from(u32::MAX))
            .then(|| Ipv4Net::new_truncating(Ipv4Addr::from(next as u32), self.prefix))
    }

    /// Parses a network subnet as the user gives it and checks it can hold a
    /// gateway and at least one container.
    pub fn parse_network(text: &str) -> Result<Ipv4Net, Error> {
        let net = parse_exact(text)?;
        check_not_reserved("subnet", &net)?;
        if net.prefix < MIN_PREFIX {
            return Err(Error::invalid(format!(
                "subnet {text:?} is too large: the prefix must be /{MIN_PREFIX} to /{MAX_PREFIX}"
            )));
        }
        if net.prefix > MAX_PREFIX {
            return Err(Error::invalid(format!(
                "subnet {text:?} is too small: it leaves no address for a container (use /{MAX_PREFIX} or shorter)"
            )));
        }
        Ok(net)
    }
}

/// Ranges no network may use: the kernel treats their addresses
/// specially (loopback, "this network", link-local, multicast, reserved
/// and broadcast), so a bridge there would not route as a network.
pub const RESERVED: [(Ipv4Addr, u8, &str); 5] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\""),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved, with the broadcast address 255.255.255.255",
    ),
];

/// The reserved range `net` overlaps, with what it is.
pub fn reserved_overlap(net: &Ipv4Net) -> Option<(Ipv4Net, &'static str)> {
    RESERVED
        .iter()
        .map(|&(a, p, what)| (Ipv4Net::new_truncating(a, p), what))
        .find(|(r, _)| r.overlaps(net))
}

/// Refuses a subnet in a reserved range, naming both.
pub fn check_not_reserved(what: &str, net: &Ipv4Net) -> Result<(), Error> {
    match reserved_overlap(net) {
        Some((range, name)) => Err(Error::invalid(format!(
            "{what} {net} is in {range} ({name}), which no network may use"
        ))),
        None => Ok(()),
    }
}

/// Parses a CIDR whose host bits are zero.
fn parse_exact(text: &str) -> Result<Ipv4Net, Error> {
    let net: Ipv4Net = text.parse()?;
    if u32::from(net.addr) != u32::from(parse_addr_part(text)?) {
        return Err(Error::invalid(format!(
            "subnet {text:?} has host bits set; did you mean {net}?"
        )));
    }
    Ok(net)
}

/// Parses the base of a subnet pool: any prefix a network could be cut
/// from (up to /MAX_PREFIX), host bits zero.
pub fn parse_pool_base(text: &str) -> Result<Ipv4Net, Error> {
    let net = parse_exact(text)?;
    check_not_reserved("pool", &net)?;
    if net.prefix > MAX_PREFIX {
        return Err(Error::invalid(format!(
            "pool {text:?} is too small: it leaves no address for a container (use /{MAX_PREFIX} or shorter)"
        )));
    }
    Ok(net)
}

fn parse_addr_part(text: &str) -> Result<Ipv4Addr, Error> {
    let (addr, _) = text.split_once('/').unwrap_or((text, ""));
    addr.parse().map_err(|_| {
        Error::invalid(format!(
            "invalid subnet {text:?}: expected IPv4 CIDR like 10.90.0.0/24"
        ))
    })
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            Error::invalid(format!(
                "invalid subnet {text:?}: expected IPv4 CIDR like 10.90.0.0/24"
            ))
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Ipv4Net::new_truncating(addr, prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4 address given for `what`; an IPv6 one is refused, naming it.
pub fn ipv4_of(what: &str, ip: std::net::IpAddr) -> Result<Ipv4Addr, Error> {
    match ip {
        std::net::IpAddr::V4(v4) => Ok(v4),
        std::net::IpAddr::V6(v6) => Err(Error::invalid(format!(
            "invalid {what} {v6}: berth's networks are IPv4 (expected an IPv4 address)"
        ))),
    }
}

/// An IPv4 prefix given for `what`; an IPv6 one is refused, naming it.
pub fn ipv4_net_of(what: &str, net: ipnet::IpNet) -> Result<Ipv4Net, Error> {
    match net {
        ipnet::IpNet::V4(v4) => Ok(Ipv4Net::new_truncating(v4.addr(), v4.prefix_len())),
        ipnet::IpNet::V6(v6) => Err(Error::invalid(format!(
            "invalid {what} {v6}: berth's networks are IPv4 (expected an IPv4 CIDR)"
        ))),
    }
}

impl Ipv4Net {
    /// A network's subnet from a parsed prefix: IPv4, not reserved, and
    /// with room for a gateway and a container.
    pub fn network_of(net: ipnet::IpNet) -> Result<Ipv4Net, Error> {
        Ipv4Net::parse_network(&ipv4_net_of("subnet", net)?.to_string())
    }
}

/// Parses a plain IPv4 address given for `what` (e.g. "--ip").
pub fn parse_ipv4(what: &str, text: &str) -> Result<Ipv4Addr, Error> {
    text.parse()
        .map_err(|_| Error::invalid(format!("invalid {what} {text:?}: expected an IPv4 address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(net("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "10.0.0.0/33",
            "banana",
            "10.0.0.0",
            "10.0.0/24",
            "10.0.0.0/",
            "10.0.0.0/+4",
            "10.0.0.0/024",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn network_subnets_are_checked() {
        assert!(Ipv4Net::parse_network("10.90.0.0/24").is_ok());
        assert!(Ipv4Net::parse_network("10.90.0.0/30").is_ok());
        let e = Ipv4Net::parse_network("10.90.0.0/31")
            .unwrap_err()
            .to_string();
        assert!(e.contains("too small") && e.contains("10.90.0.0/31"), "{e}");
        assert!(Ipv4Net::parse_network("10.90.0.0/32").is_err());
        assert!(Ipv4Net::parse_network("10.0.0.0/4").is_err());
        let e = Ipv4Net::parse_network("10.90.0.5/24")
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.90.0.0/24"), "{e}");
    }

    #[test]
    fn host_ranges() {
        let n = net("10.90.0.0/24");
        assert_eq!(n.first_host(), Ipv4Addr::new(10, 90, 0, 1));
        assert_eq!(n.last_host(), Ipv4Addr::new(10, 90, 0, 254));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 90, 0, 255));
        assert!(n.is_host(Ipv4Addr::new(10, 90, 0, 254)));
        assert!(!n.is_host(Ipv4Addr::new(10, 90, 0, 255)));
        assert!(!n.is_host(Ipv4Addr::new(10, 90, 0, 0)));
        assert!(!n.is_host(Ipv4Addr::new(10, 91, 0, 1)));
    }

    #[test]
    fn overlap_is_symmetric_and_prefix_aware() {
        assert!(net("172.18.0.0/16").overlaps(&net("172.18.5.0/24")));
        assert!(net("172.18.5.0/24").overlaps(&net("172.18.0.0/16")));
        assert!(!net("172.18.0.0/16").overlaps(&net("172.19.0.0/16")));
        assert!(net("0.0.0.0/0").overlaps(&net("10.0.0.0/8")));
    }

    #[test]
    fn next_walks_and_stops_at_the_end() {
        assert_eq!(net("10.89.0.0/24").next(), Some(net("10.89.1.0/24")));
        assert_eq!(net("10.89.255.0/24").next(), Some(net("10.90.0.0/24")));
        assert_eq!(net("255.255.255.0/24").next(), None);
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
        ] {
            let e = Ipv4Net::parse_network(text).unwrap_err().to_string();
            assert!(e.contains(text) && e.contains(range), "{text}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
        for ok in [
            "10.0.0.0/8",
            "1.0.0.0/8",
            "126.255.255.0/24",
            "128.0.0.0/8",
            "169.253.0.0/16",
            "223.255.255.0/24",
        ] {
            assert!(Ipv4Net::parse_network(ok).is_ok(), "{ok}");
        }
        assert!(parse_pool_base("127.0.0.0/8").is_err());
        assert!(parse_pool_base("10.0.0.0/8").is_ok());
    }
}
