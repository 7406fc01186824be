//! Listening sockets for the probe's servers. An "any" address of either
//! family (`0.0.0.0:P` or `[::]:P`) listens on both families: one socket
//! each, the IPv6 one IPv6-only, so every peer shows as the address it
//! really has (never `::ffff:a.b.c.d`). The other family's socket is a
//! best effort: a namespace without IPv6 (or with the port taken there)
//! still serves the family that was asked for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::{fail, Failure};

/// The addresses to bind for `addr`: itself, then for an "any" address the
/// other family's "any" (on the port the first gets, when it was 0).
fn plan(addr: SocketAddr) -> (SocketAddr, Option<SocketAddr>) {
    if !addr.ip().is_unspecified() {
        return (addr, None);
    }
    let other = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    (addr, Some(SocketAddr::new(other, addr.port())))
}

/// A socket of `ty` bound to `addr` (IPv6-only when it is an IPv6 one).
pub fn bound(addr: SocketAddr, ty: Type, proto: Option<Protocol>) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), ty, proto)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        sock.set_reuse_address(true)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Binds `addr` and, for an "any" address, the other family's too.
fn both<T>(
    addr: SocketAddr,
    open: impl Fn(SocketAddr) -> std::io::Result<T>,
    port_of: impl Fn(&T) -> Option<u16>,
) -> Result<Vec<T>, Failure> {
    let (first, other) = plan(addr);
    let s = open(first).map_err(|e| fail(format!("cannot listen on {first}: {e}")))?;
    let mut out = Vec::new();
    if let Some(mut other) = other {
        if other.port() == 0 {
            other.set_port(port_of(&s).unwrap_or(0));
        }
        if let Ok(o) = open(other) {
            out.push(o);
        }
    }
    out.insert(0, s);
    Ok(out)
}

/// Listening stream sockets (TCP, or SCTP with `proto`) for `addr`.
pub fn streams(addr: SocketAddr, proto: Option<Protocol>) -> Result<Vec<TcpListener>, Failure> {
    both(
        addr,
        |a| {
            let s = bound(a, Type::STREAM, proto)?;
            s.listen(128)?;
            Ok(TcpListener::from(s))
        },
        |l| l.local_addr().ok().map(|a| a.port()),
    )
}

/// UDP sockets for `addr`.
pub fn datagrams(addr: SocketAddr) -> Result<Vec<UdpSocket>, Failure> {
    both(
        addr,
        |a| bound(a, Type::DGRAM, None).map(UdpSocket::from),
        |s| s.local_addr().ok().map(|a| a.port()),
    )
}

/// A peer's address as it should be shown: an IPv4 peer that reached an
/// IPv6 socket as `::ffff:a.b.c.d` is shown as `a.b.c.d`.
pub fn shown(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Runs `serve` on every socket but the last on a thread of its own and
/// on the last in this thread.
pub fn serve_all<T: Send + 'static>(
    socks: Vec<T>,
    serve: fn(T) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut socks = socks;
    let last = socks.pop().expect("one socket at least");
    for s in socks {
        std::thread::spawn(move || serve(s));
    }
    serve(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_addresses_take_both_families() {
        let a: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(plan(a), (a, Some("[::]:80".parse().unwrap())));
        let b: SocketAddr = "[::]:0".parse().unwrap();
        assert_eq!(plan(b), (b, Some("0.0.0.0:0".parse().unwrap())));
        let c: SocketAddr = "[fd00::2]:80".parse().unwrap();
        assert_eq!(plan(c), (c, None));
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:5".parse().unwrap();
        assert_eq!(shown(mapped), "10.0.0.2:5".parse().unwrap());
    }
}
