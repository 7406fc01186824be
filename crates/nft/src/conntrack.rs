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
}

impl Conntrack {
    /// Opens a ctnetlink socket in the caller's network namespace.
    pub fn open() -> Result<Self> {
        Ok(Conntrack {
            sock: NlSocket::open()?,
        })
    }

    /// Deletes the matching IPv4 entries; returns how many were deleted. Entries
    /// that vanish between the dump and the delete are not an error.
    pub fn delete(&mut self, m: &CtMatch) -> Result<usize> {
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
