//! Conntrack cleanup over ctnetlink: delete the IPv4 and IPv6 entries whose
//! original tuple matches a protocol, destination address and port. A port
//! mapping change must flush stale UDP entries, or existing flows keep their
//! old (pre-DNAT) path.

use crate::error::{NftError, Result};
use crate::netlink::*;
use crate::types::{Family, L4Proto};
use std::net::{IpAddr, Ipv4Addr};

const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
// CTA_FILTER_FLAG(...) bits of net/netfilter/nf_internals.h.
const CTA_FILTER_F_IP_DST: u32 = 1 << 1;
const CTA_FILTER_F_PROTO_NUM: u32 = 1 << 3;
const CTA_FILTER_F_PROTO_DST_PORT: u32 = 1 << 5;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Original tuple, zone and id of an entry to delete.
type Victim = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Which IPv4 entries to delete: original-direction protocol, destination
/// and port. [`CtQuery`] is its family-neutral form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtMatch {
    /// Layer 4 protocol (udp/tcp).
    pub proto: L4Proto,
    /// Original destination address; `None` matches any.
    pub dst: Option<Ipv4Addr>,
    /// Original destination port.
    pub dport: u16,
}

/// Which entries to delete or count, in either family: original-direction
/// protocol, destination address (or any, in one family or both) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtQuery {
    proto: L4Proto,
    dport: u16,
    dst: Option<IpAddr>,
    /// Without `dst`: `Ip`, `Ip6` or `Inet` (both).
    family: Family,
}

impl CtQuery {
    /// Entries to `dst` (its family's only) port `dport`.
    pub fn to(proto: L4Proto, dst: IpAddr, dport: u16) -> Self {
        let family = match dst {
            IpAddr::V4(_) => Family::Ip,
            IpAddr::V6(_) => Family::Ip6,
        };
        CtQuery {
            proto,
            dport,
            dst: Some(dst),
            family,
        }
    }

    /// Entries to any address, port `dport`, of `family`: `Ip`, `Ip6`, or
    /// `Inet` for both (any other family counts as both).
    pub fn any(family: Family, proto: L4Proto, dport: u16) -> Self {
        let family = match family {
            Family::Ip | Family::Ip6 => family,
            _ => Family::Inet,
        };
        CtQuery {
            proto,
            dport,
            dst: None,
            family,
        }
    }

    /// The address families (AF_*) whose tables this query reads.
    fn afs(&self) -> &'static [u8] {
        match self.family {
            Family::Ip => &[AF_INET],
            Family::Ip6 => &[AF_INET6],
            _ => &[AF_INET, AF_INET6],
        }
    }

    /// The destination's bytes and the attribute that carries them.
    fn dst_attr(&self) -> Option<(u16, Vec<u8>)> {
        match self.dst? {
            IpAddr::V4(a) => Some((CTA_IP_V4_DST, a.octets().to_vec())),
            IpAddr::V6(a) => Some((CTA_IP_V6_DST, a.octets().to_vec())),
        }
    }
}

impl From<CtMatch> for CtQuery {
    fn from(m: CtMatch) -> Self {
        match m.dst {
            Some(d) => CtQuery::to(m.proto, d.into(), m.dport),
            None => CtQuery::any(Family::Ip, m.proto, m.dport),
        }
    }
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

    /// Deletes the matching entries (in every zone): IPv4 ones for a
    /// [`CtMatch`], those of the query's family or families for a [`CtQuery`].
    /// A query with an IPv6 address always takes the dump path.
    ///
    /// One `IPCTNL_MSG_CT_DELETE` carrying a `CTA_FILTER` lets the kernel walk
    /// its table and delete the matches itself, without a dump; the kernel
    /// does not say how many it deleted, so that returns `Ok(None)`. A kernel
    /// without filtered deletes (it reads the partial tuple as an exact one
    /// and refuses it with EINVAL, or EOPNOTSUPP) gets [`delete_by_dump`],
    /// which returns `Ok(Some(count))`.
    ///
    /// [`delete_by_dump`]: Conntrack::delete_by_dump
    pub fn delete<Q: Copy + Into<CtQuery>>(&mut self, m: &Q) -> Result<Option<usize>> {
        let m: CtQuery = (*m).into();
        let mut counted: Option<usize> = None;
        for &af in m.afs() {
            // The kernel's filter does not match IPv6 addresses as given: on
            // 6.18 a filtered delete of udp [fd00::1]:5353 took the entries
            // to [::1]:5353. An IPv6 address is matched here, from a dump.
            let filter_works = !(af == AF_INET6 && m.dst.is_some());
            if !self.no_filtered_delete && filter_works {
                match self.delete_filtered(&m, af) {
                    Ok(()) => continue,
                    Err(e) if matches!(e.errno(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                        self.no_filtered_delete = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            let n = self.delete_by_dump_af(&m, af)?;
            counted = Some(counted.unwrap_or(0) + n);
        }
        Ok(counted)
    }

    /// Kernel-side flush: `CTA_TUPLE_ORIG` holds the values, `CTA_FILTER`'s
    /// `CTA_FILTER_ORIG_FLAGS` says which of its fields must match. The
    /// request always carries `CTA_TUPLE_ORIG`, so a kernel that ignores
    /// `CTA_FILTER` takes it for an exact (and incomplete, hence refused)
    /// tuple and never for a flush of the whole table.
    fn delete_filtered(&mut self, m: &CtQuery, af: u8) -> Result<()> {
        let mut flags = CTA_FILTER_F_PROTO_NUM | CTA_FILTER_F_PROTO_DST_PORT;
        let seq = self.sock.next_seq();
        let mut b = MsgBuf::new();
        let h = b.begin_msg(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            af,
            0,
        );
        let orig = b.nest_begin(CTA_TUPLE_ORIG);
        if let Some((attr, dst)) = m.dst_attr() {
            flags |= CTA_FILTER_F_IP_DST;
            let ip = b.nest_begin(CTA_TUPLE_IP);
            b.attr(attr, &dst);
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

    /// How many entries match, from a dump of the whole table.
    pub fn count<Q: Copy + Into<CtQuery>>(&mut self, m: &Q) -> Result<usize> {
        let m: CtQuery = (*m).into();
        let mut n = 0;
        for &af in m.afs() {
            n += self.matching(&m, af)?.len();
        }
        Ok(n)
    }

    /// Original tuple, zone and id of the matching entries of family `af`,
    /// from a dump (the kernel dumps only that family's).
    fn matching(&mut self, m: &CtQuery, af: u8) -> Result<Vec<Victim>> {
        let dst_attr = if af == AF_INET6 {
            CTA_IP_V6_DST
        } else {
            CTA_IP_V4_DST
        };
        let want = m.dst_attr();
        let raw = self.sock.dump(|b, seq| {
            let h = b.begin_msg(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                af,
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
                    .and_then(|ip| ip.get(dst_attr).map(|d| d.to_vec()));
                let proto = t.nested(CTA_TUPLE_PROTO);
                let num = proto.as_ref().and_then(|p| p.u8(CTA_PROTO_NUM));
                let dport = proto.as_ref().and_then(|p| p.be16(CTA_PROTO_DST_PORT));
                let dst_ok = match &want {
                    None => dst.is_some(),
                    Some((_, want)) => dst.as_deref() == Some(&want[..]),
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

    /// Deletes the matching entries found in a dump of the whole table,
    /// one exact delete each; returns how many were deleted. Works on every
    /// kernel but costs a walk of the table under each bucket lock. Entries
    /// that vanish between the dump and the delete are not an error.
    pub fn delete_by_dump<Q: Copy + Into<CtQuery>>(&mut self, m: &Q) -> Result<usize> {
        let m: CtQuery = (*m).into();
        let mut n = 0;
        for &af in m.afs() {
            n += self.delete_by_dump_af(&m, af)?;
        }
        Ok(n)
    }

    fn delete_by_dump_af(&mut self, m: &CtQuery, af: u8) -> Result<usize> {
        let victims = self.matching(m, af)?;
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
                af,
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
        self.sock.ensure_buffers(b.len(), seqs.len())?;
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
