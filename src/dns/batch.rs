//! Datagrams several to a system call: `recvmmsg` takes up to [`BATCH`]
//! queries waiting on a listener at once, `sendmmsg` sends their replies
//! at once. Under load the system calls were most of the server's own
//! time per answer (perf, bench/dns.sh saturating run: the kernel's entry,
//! file lookup and per-call socket locking for each datagram each way);
//! one quiet query still costs one call each way.
//!
//! The buffers are the thread's, not the listener's: the runtime has one
//! thread and a batch is read, answered and sent without yielding, so one
//! set serves every listener (a network costs no buffer of its own).

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::SockAddr;

/// Datagrams read per call, at most; also how many one listener handles
/// before it lets the others run (see `server.rs`).
pub const BATCH: usize = 8;
/// The biggest query read; longer ones are cut (and answered FORMERR).
const QUERY_MAX: usize = 4096;

/// The datagrams of one `recvmmsg`.
pub struct Received {
    bufs: Box<[[u8; QUERY_MAX]; BATCH]>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    count: usize,
}

thread_local! {
    static RECEIVED: RefCell<Received> = RefCell::new(Received {
        bufs: vec![[0u8; QUERY_MAX]; BATCH]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!()),
        lens: [0; BATCH],
        peers: [None; BATCH],
        count: 0,
    });
}

impl Received {
    /// Each datagram read, with its sender.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        (0..self.count).filter_map(|i| Some((&self.bufs[i][..self.lens[i]], self.peers[i]?)))
    }
}

/// Reads what waits on `sock` (never blocks: `WouldBlock` when nothing
/// does) and hands it to `f`, on this thread's buffers.
pub fn receive<T>(sock: &impl AsRawFd, f: impl FnOnce(&Received) -> T) -> io::Result<T> {
    RECEIVED.with(|cell| {
        let mut r = cell.borrow_mut();
        recv(sock.as_raw_fd(), &mut r)?;
        Ok(f(&r))
    })
}

fn recv(fd: RawFd, r: &mut Received) -> io::Result<()> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..BATCH {
        let iov = iovs[i].write(libc::iovec {
            iov_base: r.bufs[i].as_mut_ptr().cast(),
            iov_len: QUERY_MAX,
        });
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = iov;
        h.msg_iovlen = 1;
    }
    // SAFETY: every header points at a buffer and an address of its own,
    // alive for the call, with their true sizes.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        r.count = 0;
        return Err(io::Error::last_os_error());
    }
    r.count = n as usize;
    for i in 0..r.count {
        r.lens[i] = (hdrs[i].msg_len as usize).min(QUERY_MAX);
        r.peers[i] = address(&names[i]);
    }
    Ok(())
}

/// A sender's address as the kernel wrote it.
fn address(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends as many of `replies` as the socket takes now, in order, in one
/// call; returns how many went (the rest are the caller's to send).
pub fn send(sock: &impl AsRawFd, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let count = replies.len().min(BATCH);
    if count == 0 {
        return Ok(0);
    }
    let names: Vec<SockAddr> = replies[..count]
        .iter()
        .map(|(_, p)| SockAddr::from(*p))
        .collect();
    let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..count {
        let iov = iovs[i].write(libc::iovec {
            iov_base: replies[i].0.as_ptr() as *mut libc::c_void,
            iov_len: replies[i].0.len(),
        });
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = names[i].as_ptr() as *mut libc::c_void;
        h.msg_namelen = names[i].len();
        h.msg_iov = iov;
        h.msg_iovlen = 1;
    }
    // SAFETY: every header points at a reply and an address alive for the
    // call, with their true sizes; the kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;

    #[test]
    fn several_datagrams_in_one_call_each_way_with_their_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"one", server.local_addr().unwrap()).unwrap();
        a.send_to(b"two", server.local_addr().unwrap()).unwrap();
        // Queued: both come in one call, in order, from `a`.
        let got = receive(&server, |r| {
            r.iter().map(|(d, p)| (d.to_vec(), p)).collect::<Vec<_>>()
        })
        .unwrap();
        let from = a.local_addr().unwrap();
        assert_eq!(got, [(b"one".to_vec(), from), (b"two".to_vec(), from)]);
        // Nothing left: WouldBlock, not a wait.
        let err = receive(&server, |_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let replies: Vec<(Vec<u8>, SocketAddr)> =
            (0..3).map(|i| (vec![b'0' + i; 5], from)).collect();
        assert_eq!(send(&server, &replies).unwrap(), 3);
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        for i in 0..3 {
            let (n, peer) = a.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], peer),
                (&[b'0' + i; 5][..], server.local_addr().unwrap())
            );
        }
    }

    #[test]
    fn an_ipv6_sender_keeps_its_address() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            eprintln!("SKIP: no IPv6 loopback here");
            return;
        };
        let c = UdpSocket::bind("[::1]:0").unwrap();
        c.send_to(b"q", server.local_addr().unwrap()).unwrap();
        let got = receive(&server, |r| r.iter().map(|(_, p)| p).collect::<Vec<_>>()).unwrap();
        assert_eq!(got, [c.local_addr().unwrap()]);
    }
}
