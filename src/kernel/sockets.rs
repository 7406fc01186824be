//! Whether a host socket holds a port, found by trying to bind one. Used to
//! warn when a published port shadows a host service (the DNAT wins, so the
//! service would silently stop answering on that address) and to skip such
//! ports when berth picks one itself.
//!
//! Why a bind and not /proc/net/tcp or sock_diag: those walk the kernel's
//! whole socket hash tables, which are sized by host memory and shared by
//! all namespaces (reading /proc/net/tcp of an empty namespace takes ~7 ms
//! here), while a bind is one lookup in the port's hash bucket (~10 µs).
//! A bind to 0.0.0.0:PORT fails when any socket holds PORT on any address;
//! a bind to HOST_IP:PORT when one holds it on HOST_IP or 0.0.0.0, which is
//! exactly which sockets a mapping would shadow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::model::Proto;

/// Whether some host socket is bound to `port` on `ip`, or on every
/// address: 0.0.0.0 stands for every address of both families (a mapping
/// there shadows sockets of either), `::` for every IPv6 one.
pub fn port_in_use_ip(proto: Proto, ip: IpAddr, port: u16) -> bool {
    match ip {
        // One dual-stack bind to [::] meets the sockets of both families
        // (an IPv4 one on any of its addresses too): as cheap as IPv4's
        // one bind. Without IPv6 in the kernel, IPv4's alone.
        IpAddr::V4(v4) if v4.is_unspecified() => {
            match port_in_use6(proto, Ipv6Addr::UNSPECIFIED, port, false) {
                Some(in_use) => in_use,
                None => port_in_use(proto, v4, port),
            }
        }
        IpAddr::V4(v4) => port_in_use(proto, v4, port),
        IpAddr::V6(v6) => port_in_use6(proto, v6, port, true).unwrap_or(false),
    }
}

/// The IPv6 form of [`port_in_use`]; with `only_v6` (IPV6_V6ONLY) only
/// IPv6 sockets (and dual-stack ones, which hold the IPv6 side too) count.
/// None when the kernel has no IPv6 (or no such protocol).
fn port_in_use6(proto: Proto, ip: Ipv6Addr, port: u16, only_v6: bool) -> Option<bool> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (ty, num) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
        Proto::Sctp => (Type::STREAM, Protocol::from(libc::IPPROTO_SCTP)),
    };
    let socket = Socket::new(Domain::IPV6, ty, Some(num)).ok()?;
    socket.set_only_v6(only_v6).ok()?;
    if proto != Proto::Udp {
        socket.set_reuse_address(true).ok()?;
    }
    let addr = SocketAddr::new(IpAddr::V6(ip), port);
    Some(matches!(socket.bind(&addr.into()), Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE)))
}

/// Whether some host socket is bound to `port` on `ip` (or on every
/// address). No SO_REUSEADDR, so a TCP socket that only connected out from
/// that port counts too; for picking a port, avoiding it is right anyway.
pub fn port_in_use(proto: Proto, ip: Ipv4Addr, port: u16) -> bool {
    let (ty, num) = match proto {
        Proto::Tcp => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        Proto::Udp => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        Proto::Sctp => (libc::SOCK_STREAM, libc::IPPROTO_SCTP),
    };
    // SAFETY: plain socket syscalls on a descriptor this function owns and
    // closes; the address is a fully initialised sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, num);
        if fd < 0 {
            // No such protocol in this kernel: nothing can hold the port.
            return false;
        }
        if proto != Proto::Udp {
            reuse_address(fd);
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let in_use = rc < 0 && *libc::__errno_location() == libc::EADDRINUSE;
        libc::close(fd);
        in_use
    }
}

/// Lets a probing bind of a stream socket pass over connections that are
/// only waiting out TIME_WAIT on the port: they hold it against a plain
/// bind, yet no process listens there and a mapping shadows nothing (a
/// published port freed a moment ago, whose forwarded connections on
/// `[::1]` closed first, is the common case). A listener still refuses
/// the bind. UDP has no TIME_WAIT, and there the option would let the
/// bind share a port with a socket that set it too.
///
/// # Safety
/// `fd` must be an open socket.
unsafe fn reuse_address(fd: libc::c_int) {
    let on: libc::c_int = 1;
    libc::setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &on as *const libc::c_int as *const libc::c_void,
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    );
}

/// Whether `ip` is an address of this host: a bind to it succeeds only
/// then (EADDRNOTAVAIL otherwise). 127.0.0.0/8 is all local.
pub fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Which process holds `port` (for the error that names it): the socket's
/// inode from /proc/net, then the process with that socket open. Slow
/// (milliseconds) and only used once a clash is certain.
pub fn port_holder_process(proto: Proto, port: u16) -> Option<String> {
    let tables: &[&str] = match proto {
        Proto::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => &["/proc/net/udp", "/proc/net/udp6"],
        Proto::Sctp => return None,
    };
    let mut inodes = Vec::new();
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // TCP: listening sockets (state 0A); UDP: any bound socket.
            let listening = proto != Proto::Tcp || *state == "0A";
            if local_port == Some(port) && listening && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    None
}

/// Whether a DNS server answers at `server:port` over UDP within
/// `timeout`: one query for the root's NS records, and any reply with the
/// query's id counts (an error code is still an answer from a live server).
pub fn dns_answers(server: IpAddr, port: u16, timeout: std::time::Duration) -> bool {
    let any: IpAddr = match server {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let Ok(sock) = std::net::UdpSocket::bind((any, 0)) else {
        return false;
    };
    if sock.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let mut query = Vec::with_capacity(17);
    query.extend_from_slice(&id.to_be_bytes());
    // Recursion desired, one question: ". IN NS".
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
    if sock.send_to(&query, (server, port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if n >= 2 && from.ip() == server && buf[..2] == id.to_be_bytes() => {
                return true
            }
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_is_seen_on_its_address_and_on_any() {
        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(port_in_use(Proto::Udp, Ipv4Addr::LOCALHOST, port));
        assert!(port_in_use(Proto::Udp, Ipv4Addr::UNSPECIFIED, port));
        let holder = port_holder_process(Proto::Udp, port).expect("found");
        assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        );
        drop(held);
        assert!(!port_in_use(Proto::Udp, Ipv4Addr::LOCALHOST, port));
    }

    /// 0.0.0.0 stands for both families: an IPv4 socket on one address
    /// and an IPv6 one on ::1 are both seen through it; an IPv6 address
    /// sees only IPv6 sockets.
    #[test]
    fn every_address_covers_both_families() {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p4 = v4.local_addr().unwrap().port();
        let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        assert!(port_in_use_ip(Proto::Udp, any, p4));
        assert!(!port_in_use_ip(Proto::Udp, Ipv6Addr::LOCALHOST.into(), p4));
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            let p6 = v6.local_addr().unwrap().port();
            assert!(port_in_use_ip(Proto::Udp, any, p6));
            assert!(port_in_use_ip(Proto::Udp, Ipv6Addr::LOCALHOST.into(), p6));
            assert!(!port_in_use_ip(Proto::Udp, Ipv4Addr::LOCALHOST.into(), p6));
        }
        drop(v4);
        assert!(!port_in_use_ip(Proto::Udp, any, p4));
    }

    #[test]
    fn local_addresses() {
        assert!(is_local_address(Ipv4Addr::LOCALHOST.into()));
        assert!(is_local_address(Ipv4Addr::new(127, 0, 0, 2).into()));
        // TEST-NET-3: documentation-only, never a host's address here.
        assert!(!is_local_address(Ipv4Addr::new(203, 0, 113, 254).into()));
        // The documentation prefix is no host's either.
        assert!(!is_local_address("2001:db8::fe".parse().unwrap()));
    }
}
