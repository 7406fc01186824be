//! Netlink message framing: building nfnetlink messages with (nested) attributes,
//! parsing replies, and the socket that sends batches and reads acks and dumps.

use crate::error::{NftError, Result};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::os::fd::AsRawFd;

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NFGEN_HDRLEN: usize = 4;

pub(crate) const NLM_F_REQUEST: u16 = 0x01;
pub(crate) const NLM_F_MULTI: u16 = 0x02;
pub(crate) const NLM_F_ACK: u16 = 0x04;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
/// In an ack: the original request was not echoed back (NETLINK_CAP_ACK).
const NLM_F_CAPPED: u16 = 0x100;
/// In an ack: extended ack TLVs follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// What one queued ack costs of a netlink socket's receive buffer (its
/// skb's truesize, rounded up).
const ACK_TRUESIZE: usize = 1024;

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;

pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

pub(crate) const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 0x11;

const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A growable buffer holding one or more netlink messages.
#[derive(Default, Debug, Clone)]
pub(crate) struct MsgBuf {
    pub(crate) buf: Vec<u8>,
}

impl MsgBuf {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Starts an nfnetlink message (nlmsghdr + nfgenmsg); returns its offset for [`end_msg`].
    pub(crate) fn begin_msg(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    pub(crate) fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len()) - self.buf.len();
        self.buf.extend(std::iter::repeat_n(0u8, n));
    }

    pub(crate) fn attr_u8(&mut self, ty: u16, v: u8) {
        self.attr(ty, &[v]);
    }
    pub(crate) fn attr_be16(&mut self, ty: u16, v: u16) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub(crate) fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub(crate) fn attr_be64(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }
    /// A NUL-terminated string attribute, as the kernel's NLA_STRING policies expect.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    pub(crate) fn nest_begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    pub(crate) fn nest_end(&mut self, start: usize) -> Result<()> {
        let len = self.buf.len() - start;
        if len > u16::MAX as usize {
            return Err(NftError::Invalid(format!(
                "nested attribute of {len} bytes exceeds the netlink limit of 65535"
            )));
        }
        self.buf[start..start + 2].copy_from_slice(&(len as u16).to_ne_bytes());
        Ok(())
    }
}

/// One received netlink message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg<'a> {
    pub(crate) ty: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    /// Everything after the nlmsghdr.
    pub(crate) payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// Attributes of an nfnetlink message (after the nfgenmsg header).
    pub(crate) fn nf_attrs(&self) -> Attrs<'a> {
        Attrs::new(self.payload.get(NFGEN_HDRLEN..).unwrap_or(&[]))
    }
    pub(crate) fn nf_family(&self) -> u8 {
        self.payload.first().copied().unwrap_or(0)
    }
}

/// Splits a datagram into netlink messages.
pub(crate) fn parse_msgs(mut buf: &[u8]) -> Result<Vec<Msg<'_>>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(NftError::Protocol(format!(
                "bad netlink message length {len}"
            )));
        }
        out.push(Msg {
            ty: u16::from_ne_bytes(buf[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[8..12].try_into().unwrap()),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// Flat view of an attribute stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attrs<'a> {
    pub(crate) list: Vec<(u16, &'a [u8])>,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(mut buf: &'a [u8]) -> Self {
        let mut list = Vec::new();
        while buf.len() >= 4 {
            let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
            let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
            if len < 4 || len > buf.len() {
                break;
            }
            list.push((ty, &buf[4..len]));
            buf = &buf[align4(len).min(buf.len())..];
        }
        Attrs { list }
    }
    pub(crate) fn get(&self, ty: u16) -> Option<&'a [u8]> {
        self.list.iter().find(|(t, _)| *t == ty).map(|(_, d)| *d)
    }
    pub(crate) fn nested(&self, ty: u16) -> Option<Attrs<'a>> {
        self.get(ty).map(Attrs::new)
    }
    pub(crate) fn str(&self, ty: u16) -> Option<String> {
        self.get(ty).map(|d| {
            let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
            String::from_utf8_lossy(&d[..end]).into_owned()
        })
    }
    pub(crate) fn be32(&self, ty: u16) -> Option<u32> {
        self.get(ty)
            .and_then(|d| d.get(..4))
            .map(|d| u32::from_be_bytes(d.try_into().unwrap()))
    }
    pub(crate) fn be16(&self, ty: u16) -> Option<u16> {
        self.get(ty)
            .and_then(|d| d.get(..2))
            .map(|d| u16::from_be_bytes(d.try_into().unwrap()))
    }
    pub(crate) fn u8(&self, ty: u16) -> Option<u8> {
        self.get(ty).and_then(|d| d.first().copied())
    }
    pub(crate) fn be64(&self, ty: u16) -> Option<u64> {
        self.get(ty)
            .and_then(|d| d.get(..8))
            .map(|d| u64::from_be_bytes(d.try_into().unwrap()))
    }
}

/// A decoded NLMSG_ERROR: errno 0 is an ack.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    pub(crate) errno: i32,
    /// Sequence number of the message being acked.
    pub(crate) seq: u32,
    /// Extended ack message.
    pub(crate) msg: Option<String>,
    /// Offset of the offending attribute from the start of the acked message.
    pub(crate) offset: Option<u32>,
}

pub(crate) fn parse_ack(m: &Msg<'_>) -> Result<Ack> {
    let p = m.payload;
    if p.len() < 4 + NLMSG_HDRLEN {
        return Err(NftError::Protocol("short NLMSG_ERROR".into()));
    }
    let err = i32::from_ne_bytes(p[0..4].try_into().unwrap());
    let orig_len = u32::from_ne_bytes(p[4..8].try_into().unwrap()) as usize;
    let seq = u32::from_ne_bytes(p[12..16].try_into().unwrap());
    let mut ack = Ack {
        errno: -err,
        seq,
        msg: None,
        offset: None,
    };
    if m.flags & NLM_F_ACK_TLVS != 0 {
        let skip = if m.flags & NLM_F_CAPPED != 0 {
            4 + NLMSG_HDRLEN
        } else {
            4 + align4(orig_len)
        };
        if let Some(tlvs) = p.get(skip..) {
            let a = Attrs::new(tlvs);
            ack.msg = a.str(NLMSGERR_ATTR_MSG).filter(|s| !s.is_empty());
            ack.offset = a
                .get(NLMSGERR_ATTR_OFFS)
                .and_then(|d| d.get(..4))
                .map(|d| u32::from_ne_bytes(d.try_into().unwrap()));
        }
    }
    Ok(ack)
}

/// A netlink socket bound to the netfilter protocol.
pub(crate) struct NlSocket {
    sock: Socket,
    pub(crate) seq: u32,
}

impl NlSocket {
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor is open for as long as `self.sock` is,
        // which the borrow does not outlive.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }

    pub(crate) fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| NftError::io("socket", e))?;
        sock.bind_auto().map_err(|e| NftError::io("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| NftError::io("connect", e))?;
        // Errors then name the bad attribute and never echo whole (huge) batches back.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(NlSocket { sock, seq })
    }

    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Makes sure a message of `len` bytes can be sent and the acks of a
    /// batch of `msgs` messages fit.
    pub(crate) fn ensure_buffers(&self, len: usize, msgs: usize) -> Result<()> {
        let send = (len + 64 * 1024).max(1 << 20);
        // The kernel queues every ack before sendmsg() returns, and charges
        // each against the receive buffer at its allocation's size (about
        // 1 KiB for a 36-byte ack), not its length: a rebuild with 10,000
        // endpoints sends some 40,000 messages, whose acks overran a buffer
        // sized by bytes (ENOBUFS, the batch applied but its acks lost).
        let receive = send.max(msgs.saturating_mul(ACK_TRUESIZE) + 64 * 1024);
        for (force, plain, want) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, receive),
        ] {
            let want = want.min(libc::c_int::MAX as usize) as libc::c_int;
            // FORCE ignores net.core.{w,r}mem_max but needs CAP_NET_ADMIN; fall back to
            // the capped variant otherwise.
            if setsockopt_int(self.sock.as_raw_fd(), force, want).is_err() {
                setsockopt_int(self.sock.as_raw_fd(), plain, want)
                    .map_err(|e| NftError::io("setsockopt", e))?;
            }
        }
        Ok(())
    }

    pub(crate) fn send(&self, buf: &[u8]) -> Result<()> {
        let n = self
            .sock
            .send(buf, 0)
            .map_err(|e| NftError::io("send", e))?;
        if n != buf.len() {
            return Err(NftError::Protocol(format!(
                "short send: {n} of {}",
                buf.len()
            )));
        }
        Ok(())
    }

    /// Receives one datagram, whatever its size. `Ok(None)` when nonblocking and empty.
    pub(crate) fn recv(&self, nonblocking: bool) -> Result<Option<Vec<u8>>> {
        let fd = self.sock.as_raw_fd();
        let base = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // Peek with MSG_TRUNC to learn the real size, so multi-part dumps and
            // large ack bursts are never truncated.
            let n = unsafe {
                libc::recv(
                    fd,
                    std::ptr::null_mut(),
                    0,
                    base | libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock if nonblocking => return Ok(None),
                    _ => return Err(NftError::io("recv", e)),
                }
            }
            let mut buf = vec![0u8; (n as usize).max(16)];
            let r =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NftError::io("recv", e));
            }
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
    }

    /// Sends one dump request and collects all reply messages (owned) until NLMSG_DONE.
    pub(crate) fn dump(&mut self, mut build: impl FnMut(&mut MsgBuf, u32)) -> Result<Vec<Vec<u8>>> {
        let seq = self.next_seq();
        let mut b = MsgBuf::new();
        build(&mut b, seq);
        self.send(&b.buf)?;
        let mut out = Vec::new();
        loop {
            let dgram = self.recv(false)?.unwrap_or_default();
            for m in parse_msgs(&dgram)? {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let ack = parse_ack(&m)?;
                        if ack.errno == 0 {
                            return Ok(out);
                        }
                        return Err(NftError::Kernel {
                            what: "dumping".into(),
                            errno: ack.errno,
                            detail: ack.msg,
                        });
                    }
                    _ => {
                        let mut raw = Vec::with_capacity(NLMSG_HDRLEN + m.payload.len());
                        raw.extend_from_slice(
                            &((NLMSG_HDRLEN + m.payload.len()) as u32).to_ne_bytes(),
                        );
                        raw.extend_from_slice(&m.ty.to_ne_bytes());
                        raw.extend_from_slice(&m.flags.to_ne_bytes());
                        raw.extend_from_slice(&m.seq.to_ne_bytes());
                        raw.extend_from_slice(&0u32.to_ne_bytes());
                        raw.extend_from_slice(m.payload);
                        out.push(raw);
                        if m.flags & NLM_F_MULTI == 0 {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

fn setsockopt_int(fd: i32, opt: libc::c_int, val: libc::c_int) -> std::io::Result<()> {
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_nested_attribute_layout() {
        let mut b = MsgBuf::new();
        let m = b.begin_msg(
            NFNL_SUBSYS_NFTABLES << 8,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            1,
            0,
        );
        b.attr_str(1, "berth");
        let n = b.nest_begin(4);
        b.attr_be32(1, 2);
        b.nest_end(n).unwrap();
        b.end_msg(m);
        let mut want = Vec::new();
        want.extend_from_slice(&44u32.to_ne_bytes());
        want.extend_from_slice(&0x0a00u16.to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&7u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[1, 0, 0, 0]);
        // "berth\0" is 6 bytes -> attr len 10, padded to 12
        want.extend_from_slice(&10u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"berth\0\0\0");
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&(4u16 | NLA_F_NESTED).to_ne_bytes());
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 2]);
        assert_eq!(b.buf, want);

        let msgs = parse_msgs(&b.buf).unwrap();
        assert_eq!(msgs.len(), 1);
        let a = msgs[0].nf_attrs();
        assert_eq!(a.str(1).as_deref(), Some("berth"));
        assert_eq!(a.nested(4).unwrap().be32(1), Some(2));
    }
}
