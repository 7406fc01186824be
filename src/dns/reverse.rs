//! Reading reverse names: `d.c.b.a.in-addr.arpa` and the 32 nibbles of
//! `ip6.arpa` (least significant first) as the address they name, a
//! shorter run of labels as the prefix it names, and anything else under
//! those zones as malformed below the prefix its well-formed labels name.
//! Pure; the caller decides from the prefix whether the name is berth's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

const V4_ZONE: &str = "in-addr.arpa";
const V6_ZONE: &str = "ip6.arpa";

/// What a name under `in-addr.arpa` or `ip6.arpa` names.
#[derive(Debug, PartialEq, Eq)]
pub enum Reverse {
    /// Every label: one address.
    Address(IpAddr),
    /// Fewer labels: the node of a prefix (`1.10.in-addr.arpa` is
    /// 10.1.0.0/16), which holds no record of its own.
    Partial(IpNet),
    /// A label that is no octet or nibble, or one too many: no address
    /// has this name. The prefix is what the labels nearest the zone name.
    Malformed(IpNet),
}

/// `name` (lower-cased, no trailing dot) read as a reverse name; None if
/// it is under neither zone.
pub fn parse(name: &str) -> Option<Reverse> {
    if let Some(labels) = labels_under(name, V4_ZONE) {
        return Some(read(labels, 4, 8, octet));
    }
    labels_under(name, V6_ZONE).map(|labels| read(labels, 32, 4, nibble))
}

/// The labels of `name` below `zone`, nearest the zone first.
fn labels_under<'a>(name: &'a str, zone: &str) -> Option<impl Iterator<Item = &'a str>> {
    let rest = if name == zone {
        ""
    } else {
        name.strip_suffix(zone)?.strip_suffix('.')?
    };
    Some(rest.split('.').rev().filter(move |_| !rest.is_empty()))
}

/// Reads up to `count` labels of `bits` each (`value` parses one) into an
/// address, most significant first.
fn read<'a>(
    labels: impl Iterator<Item = &'a str>,
    count: u32,
    bits: u32,
    value: fn(&str) -> Option<u8>,
) -> Reverse {
    let width = count * bits;
    let mut addr: u128 = 0;
    let mut seen = 0;
    let mut malformed = false;
    for label in labels {
        match value(label) {
            Some(v) if seen < count => {
                addr |= u128::from(v) << (width - bits * (seen + 1));
                seen += 1;
            }
            _ => {
                malformed = true;
                break;
            }
        }
    }
    let ip = if width == 32 {
        IpAddr::V4(Ipv4Addr::from(addr as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    };
    let prefix = IpNet::new(ip, (seen * bits) as u8).expect("a length within the family");
    if malformed {
        Reverse::Malformed(prefix)
    } else if seen == count {
        Reverse::Address(ip)
    } else {
        Reverse::Partial(prefix)
    }
}

/// A decimal octet as written in `in-addr.arpa`: 0-255, no leading zero
/// (`02` names no address).
fn octet(label: &str) -> Option<u8> {
    let ok = !label.is_empty()
        && label.len() <= 3
        && label.bytes().all(|b| b.is_ascii_digit())
        && (label == "0" || !label.starts_with('0'));
    ok.then(|| label.parse().ok()).flatten()
}

/// One hexadecimal digit, as `ip6.arpa` writes each nibble.
fn nibble(label: &str) -> Option<u8> {
    match label.as_bytes() {
        [b] => (*b as char).to_digit(16).map(|d| d as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The ip6.arpa name of an address, written out independently.
    fn v6_name(ip: &str) -> String {
        let ip: Ipv6Addr = ip.parse().unwrap();
        let hex: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
        let mut labels: Vec<String> = hex.chars().rev().map(String::from).collect();
        labels.push("ip6.arpa".into());
        labels.join(".")
    }

    #[test]
    fn full_names_are_addresses() {
        assert_eq!(
            parse("2.0.1.10.in-addr.arpa"),
            Some(Reverse::Address("10.1.0.2".parse().unwrap()))
        );
        for ip in ["fd00:abcd::2", "2001:db8:0:1::ff", "::1", "ffff::"] {
            assert_eq!(
                parse(&v6_name(ip)),
                Some(Reverse::Address(ip.parse().unwrap())),
                "{ip}"
            );
        }
        assert_eq!(parse("example.com"), None);
        assert_eq!(parse("x.arpa"), None);
        assert_eq!(parse("2.0.1.10.xin-addr.arpa"), None);
    }

    #[test]
    fn shorter_names_are_prefixes() {
        assert_eq!(
            parse("1.10.in-addr.arpa"),
            Some(Reverse::Partial(net("10.1.0.0/16")))
        );
        assert_eq!(
            parse("in-addr.arpa"),
            Some(Reverse::Partial(net("0.0.0.0/0")))
        );
        assert_eq!(parse("ip6.arpa"), Some(Reverse::Partial(net("::/0"))));
        // The 16 nibbles of fd00:abcd::/64, and of a /68 below it.
        let full = v6_name("fd00:abcd::");
        let labels: Vec<&str> = full.split('.').collect();
        let slash64 = labels[16..].join(".");
        assert_eq!(
            parse(&slash64),
            Some(Reverse::Partial(net("fd00:abcd::/64")))
        );
        let slash68 = labels[15..].join(".");
        assert_eq!(
            parse(&slash68),
            Some(Reverse::Partial(net("fd00:abcd::/68")))
        );
        assert_eq!(
            parse("d.f.ip6.arpa"),
            Some(Reverse::Partial(net("fd00::/8")))
        );
    }

    #[test]
    fn malformed_names_keep_the_prefix_their_good_labels_name() {
        let full = v6_name("fd00:abcd::2");
        let below = |extra: &str, keep: usize| {
            let labels: Vec<&str> = full.split('.').collect();
            format!("{extra}.{}", labels[32 - keep..].join("."))
        };
        // A 33rd label under a full address.
        assert_eq!(
            parse(&format!("0.{full}")),
            Some(Reverse::Malformed(net("fd00:abcd::2/128")))
        );
        // Labels that are no nibble: two digits, not hex, empty.
        for bad in ["10", "g", "", "0x1"] {
            assert_eq!(
                parse(&below(bad, 18)),
                Some(Reverse::Malformed(net("fd00:abcd::/72"))),
                "{bad:?}"
            );
        }
        assert_eq!(parse("x.ip6.arpa"), Some(Reverse::Malformed(net("::/0"))));
        for bad in [
            "256.0.1.10",
            "02.0.1.10",
            "1.2.0.1.10",
            "a.1.10",
            "-1.0.1.10",
        ] {
            assert!(
                matches!(
                    parse(&format!("{bad}.in-addr.arpa")),
                    Some(Reverse::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse("x.0.1.10.in-addr.arpa"),
            Some(Reverse::Malformed(net("10.1.0.0/24")))
        );
    }
}
