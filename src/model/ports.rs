//! Published ports: parsing Docker's `-p` syntax
//! (`[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]`) into
//! checked values, and the rules that say when two mappings clash.
//!
//! Pure: nothing here looks at the kernel or the state, so every spelling
//! mistake is caught (and unit-tested) before a command touches anything.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::subnet::Family;

use serde::Serialize;

/// First and last host port berth picks when a spec gives none. The range
/// is the IANA dynamic range minus Linux's default ephemeral ports
/// (32768-60999 overlaps it; berth stays above 49152 like Docker does and
/// below 61000 where Linux's own ephemeral range ends).
pub const AUTO_PORT_FIRST: u16 = 49153;
pub const AUTO_PORT_LAST: u16 = 60999;

/// A transport protocol a port can be published for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The IANA protocol number, which both nf_tables (`meta l4proto`)
    /// and conntrack key on: the one fact the firewall and the kernel
    /// layer share about a protocol, so neither needs the other.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `-p` value as the user wrote it, checked but with the host port maybe
/// still to be picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PortSpec {
    /// 0.0.0.0 (the default) means every local address of both families,
    /// `::` every IPv6 address.
    pub host_ip: IpAddr,
    /// First host port; None: berth picks `count` consecutive free ones.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// Number of ports (1 for a single port).
    pub count: u16,
    pub proto: Proto,
}

/// One published port or range, host side fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// 0.0.0.0 means every local address of both families, `::` every
    /// IPv6 address.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    /// Number of ports (1 for a single port); both ranges have this length.
    pub count: u16,
    pub proto: Proto,
}

/// The JSON shape of a published port in `ps/inspect/connect --json`. The
/// `_end` fields appear only for ranges.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct PortView {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port_end: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_port_end: Option<u16>,
}

impl PortSpec {
    /// Parses one `-p` value; the error is one line naming the spec.
    pub fn parse(spec: &str) -> Result<PortSpec, String> {
        let bad = |why: String| format!("invalid port mapping {spec:?}: {why}");
        let (rest, proto) = match spec.rsplit_once('/') {
            // Docker accepts "80/TCP" as well.
            Some((rest, p)) => (
                rest,
                Proto::parse(&p.to_ascii_lowercase()).ok_or_else(|| {
                    bad(format!(
                        "unknown protocol {p:?} (expected tcp, udp or sctp)"
                    ))
                })?,
            ),
            None => (spec, Proto::Tcp),
        };
        // An IPv6 HOST_IP is written in brackets, as Docker does:
        // `[2001:db8::1]:8080:80`, `[::]::80`.
        let (ip6, rest) = match rest.strip_prefix('[') {
            Some(r) => {
                let (inside, after) = r
                    .split_once(']')
                    .ok_or_else(|| bad("an IPv6 host address needs its closing ']'".into()))?;
                let after = after.strip_prefix(':').ok_or_else(|| {
                    bad("expected [IPV6]:[HOST_PORT]:CONTAINER_PORT[/PROTO]".into())
                })?;
                let ip = inside
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| bad(format!("{inside:?} is not an IPv6 address")))?;
                (Some(ip), after)
            }
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match (ip6, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => (Some(*ip), (!h.is_empty()).then_some(*h), *c),
            (Some(_), [h, c]) => (None, (!h.is_empty()).then_some(*h), *c),
            _ => {
                return Err(bad(
                    "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (an IPv6 HOST_IP in brackets)".into()
                ))
            }
        };
        let host_ip = match (ip6, ip) {
            (Some(v6), _) => IpAddr::V6(v6),
            (None, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (None, Some(ip)) => IpAddr::V4(ip.parse::<Ipv4Addr>().map_err(|_| {
                bad(format!(
                    "{ip:?} is not an IPv4 address (write an IPv6 one in brackets)"
                ))
            })?),
        };
        let (c_first, c_last) = parse_range(container).map_err(bad)?;
        let count = c_last - c_first + 1;
        let host_port = match host {
            // berth picks the host ports: a range longer than the ones it
            // picks from can never be published.
            None if u32::from(count) > u32::from(AUTO_PORT_LAST - AUTO_PORT_FIRST) + 1 => {
                return Err(bad(format!(
                    "berth picks host ports from {AUTO_PORT_FIRST}-{AUTO_PORT_LAST}, fewer than the {count} of {container}; give HOST_PORT-END:{container}"
                )))
            }
            None => None,
            Some(h) => {
                let (h_first, h_last) = parse_range(h).map_err(bad)?;
                if h_last - h_first + 1 != count {
                    return Err(bad(format!(
                        "host range {h} and container range {container} differ in length"
                    )));
                }
                Some(h_first)
            }
        };
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port: c_first,
            count,
            proto,
        })
    }

    /// The mapping with the host port fixed (`first` when none was given).
    pub fn with_host_port(&self, first: u16) -> PortMapping {
        PortMapping {
            host_ip: self.host_ip,
            host_port: self.host_port.unwrap_or(first),
            container_port: self.container_port,
            count: self.count,
            proto: self.proto,
        }
    }
}

/// `N` or `N-M` with 1 <= N <= M <= 65535.
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let first = parse_port(a)?;
    let last = parse_port(b)?;
    if last < first {
        return Err(format!("range {s} ends before it starts"));
    }
    Ok((first, last))
}

fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("port {s} is out of range (1-65535)")),
    }
}

impl PortMapping {
    pub fn host_last(&self) -> u16 {
        self.host_port + (self.count - 1)
    }

    pub fn container_last(&self) -> u16 {
        self.container_port + (self.count - 1)
    }

    /// Whether the mapping is on every address of the families it covers
    /// (0.0.0.0: both; `::`: IPv6).
    pub fn is_any_address(&self) -> bool {
        self.host_ip.is_unspecified()
    }

    /// Whether the mapping answers on addresses of `family`: 0.0.0.0 on
    /// both, any other address on its own.
    pub fn covers(&self, family: Family) -> bool {
        self.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) || Family::of(self.host_ip) == family
    }

    /// Whether a packet could match both: same protocol, overlapping host
    /// ports, and addresses that overlap (0.0.0.0 overlaps every address,
    /// `::` every IPv6 address).
    pub fn clashes_with(&self, other: &PortMapping) -> bool {
        let addresses = |a: &PortMapping, b: &PortMapping| {
            a.host_ip == b.host_ip
                || a.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                || (a.is_any_address() && b.host_ip.is_ipv6())
        };
        self.proto == other.proto
            && self.host_port <= other.host_last()
            && other.host_port <= self.host_last()
            && (addresses(self, other) || addresses(other, self))
    }

    /// The host address as it is written in a `-p` spec and the listing:
    /// an IPv6 one in brackets.
    pub fn host_ip_text(&self) -> String {
        match self.host_ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }
    }

    /// Host ports paired with container ports, one per port.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map(|i| (self.host_port + i, self.container_port + i))
    }

    pub fn view(&self) -> PortView {
        let range = self.count > 1;
        PortView {
            host_ip: self.host_ip.to_string(),
            host_port: self.host_port,
            container_port: self.container_port,
            proto: self.proto.as_str(),
            host_port_end: range.then(|| self.host_last()),
            container_port_end: range.then(|| self.container_last()),
        }
    }
}

/// `0.0.0.0:8080->80/tcp`, `127.0.0.1:9000-9010->9000-9010/udp`
/// An endpoint's mappings as one line, as `ps` shows them:
/// `0.0.0.0:8080->80/tcp, 0.0.0.0:8443->443/tcp` (empty for none).
pub fn published_text(ports: &[PortMapping]) -> String {
    let mut out = String::new();
    for (i, p) in ports.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = fmt::Write::write_fmt(&mut out, format_args!("{p}"));
    }
    out
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(
                f,
                "{}:{}->{}/{}",
                self.host_ip_text(),
                self.host_port,
                self.container_port,
                self.proto
            )
        } else {
            write!(
                f,
                "{}:{}-{}->{}-{}/{}",
                self.host_ip_text(),
                self.host_port,
                self.host_last(),
                self.container_port,
                self.container_last(),
                self.proto
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap()
    }

    #[test]
    fn docker_spellings_parse() {
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                host_port: Some(8080),
                container_port: 80,
                count: 1,
                proto: Proto::Tcp
            }
        );
        assert_eq!(p("8080:80/TCP"), p("8080:80/tcp"));
        assert_eq!(p("53/Udp").proto, Proto::Udp);
        let s = p("127.0.0.1:5353:53/udp");
        assert_eq!(s.host_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (s.host_port, s.container_port, s.proto),
            (Some(5353), 53, Proto::Udp)
        );
        let s = p("9000-9010:9000-9010");
        assert_eq!(
            (s.host_port, s.container_port, s.count),
            (Some(9000), 9000, 11)
        );
        let s = p("80");
        assert_eq!((s.host_port, s.container_port, s.count), (None, 80, 1));
        let s = p("10.0.0.1::80/sctp");
        assert_eq!(s.host_ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((s.host_port, s.proto), (None, Proto::Sctp));
        assert_eq!(p("7000-7002").count, 3);
        assert_eq!(p("65535:1").host_port, Some(65535));
        // IPv6 host addresses, in brackets.
        let s = p("[2001:db8::1]:8080:80");
        assert_eq!(s.host_ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!((s.host_port, s.container_port), (Some(8080), 80));
        let s = p("[::1]::53/udp");
        assert_eq!(s.host_ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s.host_port, s.proto), (None, Proto::Udp));
        let s = p("[::]:9000-9001:9000-9001");
        assert!(s.host_ip.is_unspecified() && s.host_ip.is_ipv6());
        assert_eq!(
            p("[2001:db8::1]:8080:80").with_host_port(0).to_string(),
            "[2001:db8::1]:8080->80/tcp"
        );
    }

    #[test]
    fn bad_specs_name_themselves_in_one_line() {
        for (spec, why) in [
            ("0:80", "port 0 is out of range"),
            ("70000:80", "port 70000 is out of range"),
            ("1-65535", "fewer than the 65535 of 1-65535"),
            ("80-90:80-85", "differ in length"),
            ("abc", "\"abc\" is not a port number"),
            ("1.2.3.4.5:80:80", "not an IPv4 address"),
            ("[::1:80:80", "closing ']'"),
            ("[fd00::zz]:80:80", "\"fd00::zz\" is not an IPv6 address"),
            ("[::1]80:80", "expected [IPV6]"),
            ("[::1]:1:80:80", "expected"),
            ("::1:80:80", "expected"),
            ("80/icmp", "unknown protocol \"icmp\""),
            ("80:", "\"\" is not a port number"),
            ("90-80:90-80", "ends before it starts"),
            ("1:2:3:4", "expected"),
            ("-5", "not a port number"),
            ("+5", "not a port number"),
        ] {
            let e = PortSpec::parse(spec).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid port mapping {spec:?}: ")) && e.contains(why),
                "{spec}: {e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn clashes_follow_address_protocol_and_overlap() {
        let m = |ip: [u8; 4], port: u16, count: u16, proto: Proto| PortMapping {
            host_ip: IpAddr::V4(Ipv4Addr::from(ip)),
            host_port: port,
            container_port: 1,
            count,
            proto,
        };
        let any = m([0, 0, 0, 0], 8080, 1, Proto::Tcp);
        let lo = m([127, 0, 0, 1], 8080, 1, Proto::Tcp);
        let other = m([10, 0, 0, 1], 8080, 1, Proto::Tcp);
        assert!(any.clashes_with(&lo) && lo.clashes_with(&any));
        assert!(!lo.clashes_with(&other));
        assert!(!any.clashes_with(&m([0, 0, 0, 0], 8080, 1, Proto::Udp)));
        assert!(any.clashes_with(&m([0, 0, 0, 0], 8070, 11, Proto::Tcp)));
        assert!(!any.clashes_with(&m([0, 0, 0, 0], 8070, 10, Proto::Tcp)));
        // `::` is every IPv6 address: it meets 0.0.0.0 and IPv6 ones only.
        let v6 = |ip: &str| PortMapping {
            host_ip: ip.parse().unwrap(),
            ..lo
        };
        let any6 = v6("::");
        assert!(any6.clashes_with(&any) && any.clashes_with(&any6));
        assert!(any6.clashes_with(&v6("::1")) && v6("::1").clashes_with(&any6));
        assert!(!any6.clashes_with(&lo) && !lo.clashes_with(&any6));
        assert!(any.clashes_with(&v6("::1")));
        assert!(!v6("::1").clashes_with(&v6("::2")));
        assert!(any.covers(Family::V6) && any.covers(Family::V4));
        assert!(any6.covers(Family::V6) && !any6.covers(Family::V4));
        assert!(lo.covers(Family::V4) && !lo.covers(Family::V6));
    }

    #[test]
    fn display_and_view() {
        let m = p("9000-9002:9100-9102/udp").with_host_port(0);
        assert_eq!(m.to_string(), "0.0.0.0:9000-9002->9100-9102/udp");
        assert_eq!(
            m.pairs().collect::<Vec<_>>(),
            vec![(9000, 9100), (9001, 9101), (9002, 9102)]
        );
        assert_eq!(m.view().host_port_end, Some(9002));
        let m = p("80").with_host_port(49153);
        assert_eq!(m.to_string(), "0.0.0.0:49153->80/tcp");
        assert_eq!(m.view().host_port_end, None);
    }
}
