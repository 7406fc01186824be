//! IPv6 frames for `raw-send` and `raw-recv`: a UDP packet with any source
//! address (spoofing), and the neighbour discovery messages a container can
//! forge (a Neighbour Advertisement claiming a neighbour's address, a
//! Neighbour Solicitation); and the lines `raw-recv` prints for them.
//!
//! Neighbour discovery messages go out with hop limit 255, as RFC 4861
//! requires of them (a receiver drops any other), so a forged one is
//! judged by the firewall and not by that check.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::frames::{checksum, ethernet, show_mac, Mac};

pub const ETH_P_IPV6: u16 = 0x86dd;
const NEXTHDR_UDP: u8 = 17;
const NEXTHDR_ICMPV6: u8 = 58;
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
/// The NA flag Override (0x20); Solicited is 0x40, Router 0x80.
pub const NA_OVERRIDE: u8 = 0x20;

/// The Ethernet destination of an IPv6 multicast address (33:33 and its
/// low 32 bits), or None for unicast.
pub fn multicast_mac(dst: Ipv6Addr) -> Option<Mac> {
    let o = dst.octets();
    (o[0] == 0xff).then_some([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let o = target.octets();
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0xff, 0x02]);
    a[11..13].copy_from_slice(&[0x01, 0xff]);
    a[13..].copy_from_slice(&o[13..]);
    Ipv6Addr::from(a)
}

/// The checksum of an upper-layer packet over IPv6 (RFC 8200 8.1).
fn upper_checksum(src: Ipv6Addr, dst: Ipv6Addr, next: u8, body: &[u8]) -> u16 {
    let len = (body.len() as u32).to_be_bytes();
    let pseudo: Vec<u8> = [
        &src.octets()[..],
        &dst.octets()[..],
        &len[..],
        &[0, 0, 0, next],
    ]
    .concat();
    checksum(&[&pseudo, body])
}

/// Ethernet + IPv6 header + `body`.
fn packet(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hops: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut f = ethernet(dst_mac, src_mac, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(body.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, hops]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(body);
    f
}

/// A UDP datagram from `src`:`sport` to `dst`:`dport`, whatever `src` is.
pub fn udp_frame(
    dst_mac: Mac,
    src_mac: Mac,
    (src, sport): (Ipv6Addr, u16),
    (dst, dport): (Ipv6Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(len.into());
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    // Over IPv6 a zero UDP checksum is invalid: 0 is sent as 0xffff.
    let sum = match upper_checksum(src, dst, NEXTHDR_UDP, &udp) {
        0 => 0xffff,
        x => x,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    packet(dst_mac, src_mac, src, dst, NEXTHDR_UDP, 64, &udp)
}

/// What a neighbour discovery message says.
pub struct Nd {
    /// 135 (solicitation) or 136 (advertisement).
    pub ty: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    /// NA flags (R, S, O); 0 for a solicitation.
    pub flags: u8,
    /// The link-layer address option: the target's MAC in an NA, the
    /// sender's in an NS (left out when the NS comes from ::, for DAD).
    pub lladdr: Option<Mac>,
}

/// An NS or NA in a frame.
pub fn nd_frame(dst_mac: Mac, src_mac: Mac, nd: &Nd) -> Vec<u8> {
    let mut icmp = vec![nd.ty, 0, 0, 0];
    icmp.extend_from_slice(&[nd.flags, 0, 0, 0]);
    icmp.extend_from_slice(&nd.target.octets());
    if let Some(mac) = nd.lladdr {
        // Option 1: source link-layer address (NS); 2: target's (NA).
        let opt = if nd.ty == ND_NEIGHBOR_ADVERT { 2 } else { 1 };
        icmp.extend_from_slice(&[opt, 1]);
        icmp.extend_from_slice(&mac);
    }
    let sum = upper_checksum(nd.src, nd.dst, NEXTHDR_ICMPV6, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    packet(dst_mac, src_mac, nd.src, nd.dst, NEXTHDR_ICMPV6, 255, &icmp)
}

/// What `raw-recv` asks of an IPv6 frame.
pub struct Want6<'a> {
    pub udp_dport: Option<u16>,
    pub payload: Option<&'a str>,
    /// Neighbour discovery messages (NS and NA).
    pub nd: bool,
    /// Only ND messages about this target.
    pub target: Option<Ipv6Addr>,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"))
}

/// One line for an IPv6 frame (its Ethernet payload `body`, sent from
/// `mac`) that `want` asks for, or None. Extension headers are not
/// followed: the probe's own frames carry none.
pub fn describe(mac: &[u8], body: &[u8], want: &Want6) -> Option<String> {
    if body.len() < 40 || body[0] >> 4 != 6 {
        return None;
    }
    let (next, src, dst) = (body[6], addr(&body[8..24]), addr(&body[24..40]));
    let rest = &body[40..];
    match next {
        NEXTHDR_UDP if !want.nd && rest.len() >= 8 => {
            let dport = u16::from_be_bytes([rest[2], rest[3]]);
            if want.udp_dport.is_some_and(|p| p != dport) {
                return None;
            }
            let payload = String::from_utf8_lossy(&rest[8..]).into_owned();
            if want.payload.is_some_and(|p| !payload.contains(p)) {
                return None;
            }
            let sport = u16::from_be_bytes([rest[0], rest[1]]);
            Some(format!(
                "udp {} {} -> {} {}",
                show_mac(mac),
                SocketAddr::new(IpAddr::V6(src), sport),
                SocketAddr::new(IpAddr::V6(dst), dport),
                payload.trim_end()
            ))
        }
        NEXTHDR_ICMPV6
            if want.nd
                && rest.len() >= 24
                && matches!(rest[0], ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT) =>
        {
            let target = addr(&rest[8..24]);
            if want.target.is_some_and(|t| t != target) {
                return None;
            }
            let lladdr = rest
                .get(24..32)
                .filter(|o| matches!(o[0], 1 | 2) && o[1] == 1)
                .map(|o| show_mac(&o[2..8]))
                .unwrap_or_else(|| "none".into());
            let kind = if rest[0] == ND_NEIGHBOR_ADVERT {
                "na"
            } else {
                "ns"
            };
            Some(format!(
                "{kind} src {src} dst {dst} target {target} flags {:#04x} lladdr {lladdr} hops {} (frame from {})",
                rest[4],
                body[7],
                show_mac(mac)
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn multicast_addresses_map_to_their_groups() {
        assert_eq!(solicited_node(v6("fd00::12:3456")), v6("ff02::1:ff12:3456"));
        assert_eq!(
            multicast_mac(v6("ff02::1:ff12:3456")),
            Some([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
        assert_eq!(multicast_mac(v6("fd00::1")), None);
    }

    #[test]
    fn a_forged_advertisement_reads_back() {
        let mac = [2, 0, 0, 0, 0, 0x77];
        let nd = Nd {
            ty: ND_NEIGHBOR_ADVERT,
            src: v6("fd00::77"),
            dst: v6("ff02::1"),
            target: v6("fd00::2"),
            flags: NA_OVERRIDE,
            lladdr: Some(mac),
        };
        let f = nd_frame([0x33, 0x33, 0, 0, 0, 1], mac, &nd);
        assert_eq!(f.len(), 14 + 40 + 32);
        // The ICMPv6 checksum verifies: summing the message with its
        // pseudo-header gives zero.
        let body = &f[14..];
        assert_eq!(upper_checksum(nd.src, nd.dst, 58, &body[40..]), 0);
        let want = Want6 {
            udp_dport: None,
            payload: None,
            nd: true,
            target: Some(v6("fd00::2")),
        };
        assert_eq!(
            describe(&f[6..12], body, &want).unwrap(),
            "na src fd00::77 dst ff02::1 target fd00::2 flags 0x20 \
             lladdr 02:00:00:00:00:77 hops 255 (frame from 02:00:00:00:00:77)"
        );
        let other = Want6 {
            target: Some(v6("fd00::3")),
            ..want
        };
        assert_eq!(describe(&f[6..12], body, &other), None);
    }

    #[test]
    fn a_spoofed_datagram_reads_back() {
        let f = udp_frame(
            [0xff; 6],
            [2, 0, 0, 0, 0, 1],
            (v6("2001:db8::66"), 4000),
            (v6("fd00::2"), 9),
            b"hello",
        );
        let body = &f[14..];
        assert_eq!(
            upper_checksum(v6("2001:db8::66"), v6("fd00::2"), 17, &body[40..]),
            0
        );
        let want = Want6 {
            udp_dport: Some(9),
            payload: Some("hell"),
            nd: false,
            target: None,
        };
        assert_eq!(
            describe(&f[6..12], body, &want).unwrap(),
            "udp 02:00:00:00:00:01 [2001:db8::66]:4000 -> [fd00::2]:9 hello"
        );
    }
}
