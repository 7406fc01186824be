//! Conntrack cleanup over ctnetlink: delete the IPv4 entries whose original tuple
//! matches a protocol, destination address and port. A port mapping change must
//! flush stale UDP entries, or existing flows keep their old (pre-DNAT) path.

use crate::error::{NftError, Result};
use crate::netlink::*;
use crate::types::L4Proto;
use std::net::Ipv4Addr;

const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
// CTA_FILTER_FLAG(...) bits of net/netfilter/nf_internals.h.
const CTA_FILTER_F_IP_DST: u32 = 1 << 1;
const CTA_FILTER_F_PROTO_NUM: u32 = 1 << 3;
const CTA_FILTER_F_PROTO_DST_PORT: u32 = 1 << 5;
const AF_INET: u8 = libc::AF_INET as u8;

/// Original tuple, zone and id of an entry to delete.
type Victim = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Which entries to delete: original-direction protocol, destination and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtMatch {
    /// Layer 4 protocol (udp/tcp).
    pub proto: L4Proto,
    /// Original destination address; `None` matches any.
    pub dst: Option<Ipv4Addr>,
    /// Original destination port.
    pub dport: u16,
}

/// A ctnetlink connection.
pub struct Conntrack {
    sock: NlSocket,
    /// The kernel refused a filtered delete once: use the dump from then on.
    no_filtered_delete: bool,
}

impl Conntrack {
    /// Opens a ctnetlink socket in the caller's network namespace.
    pub fn open() -> Result<Self> {
        Ok(Conntrack {
            sock: NlSocket::open()?,
            no_filtered_delete: false,
        })
    }

    /// Deletes the matching IPv4 entries (in every zone).
    ///
    /// One `IPCTNL_MSG_CT_DELETE` carrying a `CTA_FILTER` lets the kernel walk
    /// its table and delete the matches itself, without a dump; the kernel
    /// does not say how many it deleted, so that returns `Ok(None)`. A kernel
    /// without filtered deletes (it reads the partial tuple as an exact one
    /// and refuses it with EINVAL, or EOPNOTSUPP) gets [`delete_by_dump`],
    /// which returns `Ok(Some(count))`.
    ///
    /// [`delete_by_dump`]: Conntrack::delete_by_dump
    pub fn delete(&mut self, m: &CtMatch) -> Result<Option<usize>> {
        if !self.no_filtered_delete {
            match self.delete_filtered(m) {
                Ok(()) => return Ok(None),
                Err(e) if matches!(e.errno(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                    self.no_filtered_delete = true;
                }
                Err(e) => return Err(e),
            }
        }
        self.delete_by_dump(m).map(Some)
    }

    /// Kernel-side flush: `CTA_TUPLE_ORIG` holds the values, `CTA_FILTER`'s
    /// `CTA_FILTER_ORIG_FLAGS` says which of its fields must match. The
    /// request always carries `CTA_TUPLE_ORIG`, so a kernel that ignores
    /// `CTA_FILTER` takes it for an exact (and incomplete, hence refused)
    /// tuple and never for a flush of the whole table.
    fn delete_filtered(&mut self, m: &CtMatch) -> Result<()> {
        let mut flags = CTA_FILTER_F_PROTO_NUM | CTA_FILTER_F_PROTO_DST_PORT;
        let seq = self.sock.next_seq();
        let mut b = MsgBuf::new();
        let h = b.begin_msg(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            AF_INET,
            0,
        );
        let orig = b.nest_begin(CTA_TUPLE_ORIG);
        if let Some(dst) = m.dst {
            flags |= CTA_FILTER_F_IP_DST;
            let ip = b.nest_begin(CTA_TUPLE_IP);
            b.attr(CTA_IP_V4_DST, &dst.octets());
            b.nest_end(ip)?;
        }
        let proto = b.nest_begin(CTA_TUPLE_PROTO);
        b.attr_u8(CTA_PROTO_NUM, m.proto.number());
        b.attr_be16(CTA_PROTO_DST_PORT, m.dport);
        b.nest_end(proto)?;
        b.nest_end(orig)?;
        let filter = b.nest_begin(CTA_FILTER);
        // NLA_U32: host byte order.
        b.attr(CTA_FILTER_ORIG_FLAGS, &flags.to_ne_bytes());
        b.nest_end(filter)?;
        b.end_msg(h);
        self.sock.send(&b.buf)?;
        loop {
            let dgram = self.sock.recv(false)?.unwrap_or_default();
            for msg in parse_msgs(&dgram)? {
                if msg.ty != NLMSG_ERROR {
                    continue;
                }
                let ack = parse_ack(&msg)?;
                if ack.seq != seq {
                    continue;
                }
                return match ack.errno {
                    0 => Ok(()),
                    errno => Err(NftError::Kernel {
                        what: format!(
                            "flushing conntrack entries for {} dport {}",
                            m.proto, m.dport
                        ),
                        errno,
                        detail: ack.msg,
                    }),
                };
            }
        }
    }

    /// How many IPv4 entries match, from a dump of the whole table.
    pub fn count(&mut self, m: &CtMatch) -> Result<usize> {
        Ok(self.matching(m)?.len())
    }

    /// Original tuple, zone and id of the matching entries, from a dump.
    fn matching(&mut self, m: &CtMatch) -> Result<Vec<Victim>> {
        let raw = self.sock.dump(|b, seq| {
            let h = b.begin_msg(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                AF_INET,
                0,
            );
            b.end_msg(h);
        })?;
        // Collect first: deleting while the dump is in progress could skip entries.
        let mut victims: Vec<Victim> = Vec::new();
        for r in &raw {
            for msg in parse_msgs(r)? {
                let a = msg.nf_attrs();
                let Some(orig) = a.get(CTA_TUPLE_ORIG) else {
                    continue;
                };
                let t = Attrs::new(orig);
                let dst = t
                    .nested(CTA_TUPLE_IP)
                    .and_then(|ip| ip.get(CTA_IP_V4_DST).map(|d| d.to_vec()));
                let proto = t.nested(CTA_TUPLE_PROTO);
                let num = proto.as_ref().and_then(|p| p.u8(CTA_PROTO_NUM));
                let dport = proto.as_ref().and_then(|p| p.be16(CTA_PROTO_DST_PORT));
                let dst_ok = match m.dst {
                    None => dst.is_some(),
                    Some(want) => dst.as_deref() == Some(&want.octets()[..]),
                };
                if dst_ok && num == Some(m.proto.number()) && dport == Some(m.dport) {
                    victims.push((
                        orig.to_vec(),
                        a.get(CTA_ZONE).map(|z| z.to_vec()),
                        a.get(CTA_ID).map(|z| z.to_vec()),
                    ));
                }
            }
        }
        Ok(victims)
    }

    /// Deletes the matching IPv4 entries found in a dump of the whole table,
    /// one exact delete each; returns how many were deleted. Works on every
    /// kernel but costs a walk of the table under each bucket lock. Entries
    /// that vanish between the dump and the delete are not an error.
    pub fn delete_by_dump(&mut self, m: &CtMatch) -> Result<usize> {
        let victims = self.matching(m)?;
        if victims.is_empty() {
            return Ok(0);
        }
        let mut b = MsgBuf::new();
        let mut seqs = Vec::new();
        for (orig, zone, id) in &victims {
            let seq = self.sock.next_seq();
            let h = b.begin_msg(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                AF_INET,
                0,
            );
            let n = b.nest_begin(CTA_TUPLE_ORIG);
            b.buf.extend_from_slice(orig);
            b.nest_end(n)?;
            if let Some(z) = zone {
                b.attr(CTA_ZONE, z);
            }
            if let Some(id) = id {
                b.attr(CTA_ID, id);
            }
            b.end_msg(h);
            seqs.push(seq);
        }
        self.sock.ensure_buffers(b.len())?;
        self.sock.send(&b.buf)?;
        let mut pending: std::collections::HashSet<u32> = seqs.into_iter().collect();
        let mut deleted = 0;
        while !pending.is_empty() {
            let dgram = self.sock.recv(false)?.unwrap_or_default();
            for msg in parse_msgs(&dgram)? {
                if msg.ty != NLMSG_ERROR {
                    continue;
                }
                let ack = parse_ack(&msg)?;
                if !pending.remove(&ack.seq) {
                    continue;
                }
                match ack.errno {
                    0 => deleted += 1,
                    libc::ENOENT => {}
                    errno => {
                        return Err(NftError::Kernel {
                            what: format!(
                                "deleting conntrack entries for {} dport {}",
                                m.proto, m.dport
                            ),
                            errno,
                            detail: ack.msg,
                        })
                    }
                }
            }
        }
        Ok(deleted)
    }
}
