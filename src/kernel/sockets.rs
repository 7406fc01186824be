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

use std::net::Ipv4Addr;

use crate::model::Proto;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_is_seen_on_its_address_and_on_any() {
        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(port_in_use(Proto::Udp, Ipv4Addr::LOCALHOST, port));
        assert!(port_in_use(Proto::Udp, Ipv4Addr::UNSPECIFIED, port));
        drop(held);
        assert!(!port_in_use(Proto::Udp, Ipv4Addr::LOCALHOST, port));
    }
}
