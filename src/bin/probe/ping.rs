//! `ping ADDR`: ICMP echo (IPv4) or ICMPv6 echo (IPv6) over a raw socket,
//! until one reply from ADDR or the timeout. `ADDR` may carry a zone for a
//! link-local address (`fe80::1%eth0`).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use super::{fail, usage, Failure};

/// ICMP echo request / reply types of each family.
const ECHO4: (u8, u8) = (8, 0);
const ECHO6: (u8, u8) = (128, 129);

/// `ADDR` or `ADDR%ZONE` (an interface name or index) as a destination.
pub fn parse(s: &str) -> Result<SocketAddr, Failure> {
    let bad = || usage(format!("bad address {s:?}"));
    let (addr, zone) = match s.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    match (ip, zone) {
        (IpAddr::V4(_), Some(_)) => Err(bad()),
        (ip, None) => Ok(SocketAddr::new(ip, 0)),
        (IpAddr::V6(a), Some(z)) => {
            let index = match z.parse::<u32>() {
                Ok(i) => i,
                Err(_) => {
                    let name = std::ffi::CString::new(z).map_err(|_| bad())?;
                    // SAFETY: a NUL-terminated name.
                    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
                    if i == 0 {
                        return Err(fail(format!("no interface {z:?} here")));
                    }
                    i
                }
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(a, 0, 0, index)))
        }
    }
}

fn icmp_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A raw ICMP or ICMPv6 socket. It speaks sendto/recvfrom with the
/// family's sockaddr, which is all std's UdpSocket does.
fn raw_socket(v6: bool) -> Result<UdpSocket, Failure> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    let (family, proto) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
        .map_err(|e| fail(format!("cannot open raw ICMP socket (root needed): {e}")))?;
    Ok(UdpSocket::from(fd))
}

pub fn ping(dest: SocketAddr, timeout: Duration) -> Result<(), Failure> {
    let ip = dest.ip();
    let v6 = dest.is_ipv6();
    let (request, reply) = if v6 { ECHO6 } else { ECHO4 };
    let sock = raw_socket(v6)?;
    let ident = (std::process::id() & 0xffff) as u16;
    let deadline = Instant::now() + timeout;
    let interval = Duration::from_millis(300);
    let mut buf = vec![0u8; 65536];
    let mut seq: u16 = 0;
    loop {
        if Instant::now() >= deadline {
            return Err(fail(format!("timeout: no echo reply from {ip}")));
        }
        seq = seq.wrapping_add(1);
        let mut pkt = vec![request, 0, 0, 0];
        pkt.extend_from_slice(&ident.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(b"berth-probe-ping");
        // The kernel fills in an ICMPv6 checksum itself (it covers the
        // pseudo-header, which only the kernel knows for sure).
        if !v6 {
            let sum = icmp_checksum(&pkt);
            pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        if let Err(e) = sock.send_to(&pkt, dest) {
            // Unreachable networks fail at once; keep trying until the deadline.
            if Instant::now() + interval >= deadline {
                return Err(fail(format!("error: sending echo to {ip}: {e}")));
            }
            std::thread::sleep(interval);
            continue;
        }
        let wait_until = (Instant::now() + interval).min(deadline);
        loop {
            let left = wait_until.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            sock.set_read_timeout(Some(left)).map_err(fail)?;
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => continue,
            };
            // A raw IPv4 socket hands over the IP header too; an ICMPv6
            // one only the ICMPv6 message.
            let data = &buf[..n];
            let skip = match (v6, data.first()) {
                (true, _) => 0,
                (false, Some(b)) => usize::from(b & 0x0f) * 4,
                (false, None) => continue,
            };
            let Some(icmp) = data.get(skip..).filter(|i| i.len() >= 8) else {
                continue;
            };
            let id = u16::from_be_bytes([icmp[4], icmp[5]]);
            if icmp[0] == reply && id == ident && from.ip() == ip {
                println!("echo reply from {ip}");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_zone() {
        let ok = |s: &str| parse(s).ok();
        assert_eq!(ok("10.0.0.1"), "10.0.0.1:0".parse().ok());
        assert_eq!(ok("fd00::1"), "[fd00::1]:0".parse().ok());
        assert_eq!(ok("fe80::1%1"), "[fe80::1%1]:0".parse().ok());
        assert!(parse("10.0.0.1%1").is_err());
        assert!(parse("fd00::1::2").is_err());
    }
}
