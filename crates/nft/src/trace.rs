//! nf_tables trace events: what the kernel reports, chain by chain, for a
//! packet marked with `meta nftrace set 1` ([`crate::Rule::nftrace`]).
//! The kernel multicasts one NFT_MSG_TRACE message per decision on the
//! NFNLGRP_NFTRACE group, and only while someone listens, so the listener
//! must be open before the packet is sent.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::error::{NftError, Result};
use crate::netlink::{parse_msgs, Attrs, Msg, NFNL_SUBSYS_NFTABLES};
use crate::types::{Family, Verdict};

/// The nfnetlink multicast group of trace events.
const NFNLGRP_NFTRACE: u32 = 9;
const NFT_MSG_TRACE: u16 = 17;

const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_MARK: u16 = 14;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;

const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Why a trace event was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// A rule matched and gave a verdict (`continue` for a rule without one).
    Rule,
    /// The end of a regular chain: back to the chain that jumped.
    Return,
    /// The end of a base chain: its policy decides.
    Policy,
    /// A type this code does not know.
    Other(u32),
}

/// One NFT_MSG_TRACE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// The same for every event of one packet.
    pub id: u32,
    /// The family of the table (`inet`, `bridge`, ...).
    pub family: Option<Family>,
    pub table: String,
    pub chain: String,
    pub kind: TraceKind,
    /// The rule's handle (for [`TraceKind::Rule`]).
    pub handle: Option<u64>,
    /// The rule's verdict, or the chain's policy (accept or drop).
    pub verdict: Option<Verdict>,
    /// Interface indexes the packet came in by and goes out by, when known.
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    pub mark: Option<u32>,
    /// The protocol the hook processed (NFPROTO_IPV4 = 2, NFPROTO_BRIDGE = 7).
    pub nfproto: Option<u32>,
}

/// Decodes one netlink message; None when it is not a trace event.
fn decode(m: &Msg<'_>) -> Option<TraceEvent> {
    if m.ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE {
        return None;
    }
    let a: Attrs<'_> = m.nf_attrs();
    let kind = match a.be32(NFTA_TRACE_TYPE)? {
        1 => TraceKind::Policy,
        2 => TraceKind::Return,
        3 => TraceKind::Rule,
        n => TraceKind::Other(n),
    };
    let verdict = match kind {
        TraceKind::Policy => a
            .be32(NFTA_TRACE_POLICY)
            .and_then(|p| Verdict::from_code(p as i32, None)),
        _ => a.nested(NFTA_TRACE_VERDICT).and_then(|v| {
            Verdict::from_code(v.be32(NFTA_VERDICT_CODE)? as i32, v.str(NFTA_VERDICT_CHAIN))
        }),
    };
    Some(TraceEvent {
        // Only ever compared for equality: its byte order does not matter.
        id: a
            .get(NFTA_TRACE_ID)
            .and_then(|d| d.get(..4))
            .map(|d| u32::from_ne_bytes(d.try_into().unwrap()))
            .unwrap_or(0),
        family: Family::from_raw(m.nf_family()),
        table: a.str(NFTA_TRACE_TABLE).unwrap_or_default(),
        chain: a.str(NFTA_TRACE_CHAIN).unwrap_or_default(),
        kind,
        handle: a.be64(NFTA_TRACE_RULE_HANDLE),
        verdict,
        iif: a.be32(NFTA_TRACE_IIF),
        oif: a.be32(NFTA_TRACE_OIF),
        mark: a.be32(NFTA_TRACE_MARK),
        nfproto: a.be32(NFTA_TRACE_NFPROTO),
    })
}

/// A socket subscribed to the trace group of the caller's network namespace.
pub struct TraceListener {
    sock: Socket,
}

impl TraceListener {
    /// Joins NFNLGRP_NFTRACE (needs CAP_NET_ADMIN).
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| NftError::io("socket", e))?;
        sock.bind_auto().map_err(|e| NftError::io("bind", e))?;
        sock.add_membership(NFNLGRP_NFTRACE)
            .map_err(|e| NftError::io("joining the trace group", e))?;
        // A burst of events (every rule of every chain, for each packet)
        // must not overflow the queue before it is read.
        let size: libc::c_int = 4 << 20;
        // SAFETY: a plain setsockopt with a c_int of the right size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(TraceListener { sock })
    }

    /// The events that arrive within `wait` (fewer if none are queued by
    /// then); returns at once with what is queued when `wait` is zero.
    pub fn read(&self, wait: Duration) -> Result<Vec<TraceEvent>> {
        let deadline = Instant::now() + wait;
        let fd = self.sock.as_raw_fd();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, valid for the call.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NftError::io("poll", e));
            }
            if n == 0 {
                return Ok(out);
            }
            // SAFETY: `buf` is valid for its length.
            let r =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                    // The queue overflowed: some events are lost, the rest
                    // still tell what they tell.
                    Some(libc::ENOBUFS) => continue,
                    _ => return Err(NftError::io("recv", e)),
                }
            }
            out.extend(parse_msgs(&buf[..r as usize])?.iter().filter_map(decode));
            if left.is_zero() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::MsgBuf;

    fn event(build: impl FnOnce(&mut MsgBuf)) -> Option<TraceEvent> {
        let mut b = MsgBuf::new();
        let m = b.begin_msg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE, 0, 0, 1, 0);
        build(&mut b);
        b.end_msg(m);
        let msgs = parse_msgs(&b.buf).unwrap();
        decode(&msgs[0])
    }

    #[test]
    fn a_rule_event_and_a_policy_event_decode() {
        let e = event(|b| {
            b.attr_be32(NFTA_TRACE_NFPROTO, 2);
            b.attr_be32(NFTA_TRACE_TYPE, 3);
            b.attr(NFTA_TRACE_ID, &0x1234u32.to_ne_bytes());
            b.attr_str(NFTA_TRACE_CHAIN, "web-out");
            b.attr_str(NFTA_TRACE_TABLE, "berth");
            b.attr_be64(NFTA_TRACE_RULE_HANDLE, 12);
            let n = b.nest_begin(NFTA_TRACE_VERDICT);
            b.attr_be32(NFTA_VERDICT_CODE, (-3i32) as u32);
            b.attr_str(NFTA_VERDICT_CHAIN, "isolate");
            b.nest_end(n).unwrap();
            b.attr_be32(NFTA_TRACE_IIF, 7);
        })
        .unwrap();
        assert_eq!(e.id, 0x1234);
        assert_eq!(e.family, Some(Family::Inet));
        assert_eq!((e.table.as_str(), e.chain.as_str()), ("berth", "web-out"));
        assert_eq!(e.kind, TraceKind::Rule);
        assert_eq!(e.handle, Some(12));
        assert_eq!(e.verdict, Some(Verdict::Jump("isolate".into())));
        assert_eq!((e.iif, e.oif, e.nfproto), (Some(7), None, Some(2)));

        let p = event(|b| {
            b.attr_be32(NFTA_TRACE_TYPE, 1);
            b.attr_str(NFTA_TRACE_CHAIN, "forward");
            b.attr_str(NFTA_TRACE_TABLE, "foreign");
            b.attr_be32(NFTA_TRACE_POLICY, 0);
        })
        .unwrap();
        assert_eq!(p.kind, TraceKind::Policy);
        assert_eq!(p.verdict, Some(Verdict::Drop));
        assert_eq!(p.handle, None);
    }

    #[test]
    fn other_messages_are_not_events() {
        let mut b = MsgBuf::new();
        let m = b.begin_msg(NFNL_SUBSYS_NFTABLES << 8, 0, 0, 1, 0);
        b.end_msg(m);
        assert_eq!(decode(&parse_msgs(&b.buf).unwrap()[0]), None);
    }
}
