//! What berth's supervisor waits on: links that go away (rtnetlink's link
//! group, read as events rather than polled), processes that end (pidfds,
//! which also work for processes that are not our children), the signals
//! that ask it to stop, and one `poll` over all of them with a timeout.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

/// rtnetlink's multicast group of link changes (RTNLGRP_LINK).
const LINK_GROUP: u32 = 1;

/// A link change the supervisor cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link is gone: its name and link group.
    Deleted { name: String, group: u32 },
    /// Events were lost (the socket's buffer overflowed): look at
    /// everything again.
    Lost,
}

/// A socket that hears of link changes in this network namespace.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    /// Subscribes. Open it before reading the links it is to complement, so
    /// that no deletion falls between the two.
    pub fn open() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(LINK_GROUP)?;
        socket.set_non_blocking(true)?;
        // A namespace deleted with many veths sends a burst of events.
        let _ = socket.set_rx_buf_sz(1 << 20);
        Ok(LinkEvents {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The events waiting now (none when nothing happened).
    pub fn read(&mut self) -> io::Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        loop {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(events),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    events.push(LinkEvent::Lost);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            events.extend(parse(&self.buf[..n]));
        }
    }
}

impl AsFd for LinkEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the socket's descriptor lives as long as `self`.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }
}

/// The deletions in one datagram of link notifications.
fn parse(mut bytes: &[u8]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) else {
            // Unreadable: better to look at everything than to miss one.
            out.push(LinkEvent::Lost);
            break;
        };
        let len = msg.header.length as usize;
        if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) = msg.payload {
            let fact = super::link::fact_of(link);
            out.push(LinkEvent::Deleted {
                name: fact.name,
                group: fact.group,
            });
        }
        if len == 0 {
            break;
        }
        bytes = bytes.get((len + 3) & !3..).unwrap_or_default();
    }
    out
}

/// A process to be told of the end of, by PID; None when it has ended
/// already or the PID has been reused since `start` (its start time).
pub fn watch_process(pid: u32, start: u64) -> io::Result<Option<OwnedFd>> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Ok(None);
    };
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: a descriptor just returned to us and owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked after the pidfd exists: if the process is the one that
    // started then, the pidfd refers to it and will say when it ends.
    if !super::process::alive(pid as u32, start) {
        return Ok(None);
    }
    Ok(Some(fd))
}

/// SIGTERM and SIGINT as a descriptor to poll rather than a handler, so
/// that a process asked to stop can finish what it is doing and say so.
pub struct StopSignals {
    fd: nix::sys::signalfd::SignalFd,
}

impl StopSignals {
    /// Blocks the two signals for this thread (and the threads it starts)
    /// and opens the descriptor that receives them.
    pub fn open() -> io::Result<StopSignals> {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(StopSignals { fd })
    }

    /// Whether a stop signal has arrived.
    pub fn arrived(&self) -> bool {
        matches!(self.fd.read_signal(), Ok(Some(_)))
    }
}

impl AsFd for StopSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until one of `fds` is readable (or hung up), at most `timeout`;
/// returns which ones are. An interrupted wait returns none.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid array of pollfd of the given length.
    let rc = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(polled
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};

    fn message(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        bytes
    }

    fn link(name: &str, group: u32) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l.attributes.push(LinkAttribute::Group(group));
        l
    }

    #[test]
    fn deletions_are_read_with_their_group_and_new_links_are_not() {
        let mut bytes = message(RouteNetlinkMessage::NewLink(link("vbnew", 7)));
        bytes.extend(message(RouteNetlinkMessage::DelLink(link("vb0123", 9))));
        bytes.extend(message(RouteNetlinkMessage::DelLink(link("eth9", 0))));
        assert_eq!(
            parse(&bytes),
            vec![
                LinkEvent::Deleted {
                    name: "vb0123".into(),
                    group: 9
                },
                LinkEvent::Deleted {
                    name: "eth9".into(),
                    group: 0
                },
            ]
        );
        assert_eq!(parse(&[1, 2, 3]), vec![LinkEvent::Lost]);
    }

    #[test]
    fn an_ended_process_is_not_watched_and_a_live_one_is() {
        let me = std::process::id();
        let start = super::super::process::start_time(me).unwrap();
        let fd = watch_process(me, start)
            .unwrap()
            .expect("this process runs");
        assert_eq!(
            wait_readable(&[fd.as_fd()], Duration::ZERO).unwrap(),
            vec![false]
        );
        // A wrong start time: a reused PID is no one we watch.
        assert!(watch_process(me, start + 1).unwrap().is_none());
        // Told when a process that is not waited for ends.
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = super::super::process::start_time(pid).unwrap();
        let fd = watch_process(pid, start).unwrap().expect("sleep runs");
        assert_eq!(
            wait_readable(&[fd.as_fd()], Duration::from_secs(5)).unwrap(),
            vec![true]
        );
        child.wait().unwrap();
    }
}
