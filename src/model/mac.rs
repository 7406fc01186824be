//! MAC addresses: parsing and checking user-given ones, and deriving one from
//! an endpoint's IPv4 address when none is given.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast MAC that embeds the IPv4 address, as
    /// Docker does: unique on a bridge because the address is, and readable.
    pub fn from_ipv4(ip: Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// The MACs an endpoint at `ip` may be given when none is asked for,
    /// in order: [`Mac::from_ipv4`] first, then the same with the second
    /// octet counted on (`02:43:...`, ...), for when an endpoint that
    /// asked for its own MAC already holds the readable one. Every
    /// candidate embeds the address, so no two endpoints' lists meet, and
    /// none is the bridge's (the gateway's first candidate).
    pub fn derived_candidates(ip: IpAddr) -> impl Iterator<Item = Mac> {
        let o = low_octets(ip);
        (0..=255u8).map(move |i| Mac([0x02, 0x42u8.wrapping_add(i), o[0], o[1], o[2], o[3]]))
    }

    /// [`Mac::from_ipv4`] of either family: an IPv6 address gives its last
    /// four octets (an IPv6-only endpoint's MAC is as stable and as unique
    /// on its bridge as its address's interface identifier).
    pub fn from_ip(ip: IpAddr) -> Mac {
        let o = low_octets(ip);
        Mac([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// Parses and checks a MAC for use on an interface.
    pub fn parse_unicast(text: &str) -> Result<Mac, Error> {
        let mac: Mac = text.parse()?;
        if mac.0[0] & 1 == 1 {
            return Err(Error::invalid(format!(
                "invalid MAC {text:?}: it is a multicast address"
            )));
        }
        if mac.0 == [0; 6] {
            return Err(Error::invalid(format!("invalid MAC {text:?}: all zeros")));
        }
        Ok(mac)
    }
}

impl FromStr for Mac {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            Error::invalid(format!(
                "invalid MAC {text:?}: expected six hex bytes like 02:42:0a:5a:00:02"
            ))
        };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for b in bytes.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(bytes))
    }
}

/// The four octets a derived MAC embeds: the IPv4 address, or the last
/// four of an IPv6 one.
fn low_octets(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        assert_eq!(
            Mac::parse_unicast("02:42:0A:5a:00:02").unwrap().to_string(),
            "02:42:0a:5a:00:02"
        );
        for bad in [
            "zz:00:00:00:00:00",
            "02:42:0a:5a:00",
            "02:42:0a:5a:00:02:03",
            "0242.0a5a.0002",
            "2:42:a:5a:0:2",
        ] {
            assert!(Mac::parse_unicast(bad).is_err(), "{bad}");
        }
        assert!(Mac::parse_unicast("01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
        assert!(Mac::parse_unicast("00:00:00:00:00:00").is_err());
    }

    #[test]
    fn derived_candidates_start_readable_and_stay_distinct() {
        let ip = Ipv4Addr::new(10, 90, 0, 2);
        let all: Vec<Mac> = Mac::derived_candidates(IpAddr::V4(ip)).collect();
        assert_eq!(all[0], Mac::from_ipv4(ip));
        assert_eq!(all[1].to_string(), "02:43:0a:5a:00:02");
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 256);
        assert!(all.iter().all(|m| m.0[0] == 0x02));
    }

    #[test]
    fn derived_is_unicast_local() {
        let m = Mac::from_ipv4(Ipv4Addr::new(10, 90, 0, 2));
        assert_eq!(m.to_string(), "02:42:0a:5a:00:02");
        assert!(Mac::parse_unicast(&m.to_string()).is_ok());
        // An IPv6 address gives its last four octets.
        let m = Mac::from_ip("fd00:1::a5a:2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:0a:5a:00:02");
        let m = Mac::from_ip("fd00:1::10:5a00:2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:5a:00:00:02");
    }
}
