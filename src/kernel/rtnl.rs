//! A small synchronous rtnetlink client: one socket bound to the network
//! namespace it was opened in, request/ack and dump, nothing else.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::KernelText;

/// An rtnetlink socket. Opened in a namespace, it stays bound to it even if
/// the opening thread moves elsewhere, which is what lets berth configure a
/// container's namespace from a short-lived thread.
pub struct Rtnl {
    socket: Box<dyn Transport>,
    seq: u32,
    buf: Vec<u8>,
}

/// Where an [`Rtnl`]'s datagrams go: the kernel's socket, or in unit tests
/// a stand-in that records each request and answers it
/// (`fake_rtnl.rs`), so the messages berth builds are tested without root.
pub(crate) trait Transport: Send {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Replaces `buf`'s contents with the next datagram, received into
    /// its capacity; returns its length.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

impl Transport for Socket {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        Socket::send(self, bytes, 0).map(drop)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        Socket::recv(self, buf, 0)
    }
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks carry the kernel's own explanation; harmless if absent.
        let _ = socket.set_ext_ack(true);
        Ok(Rtnl::over(Box::new(socket)))
    }

    pub(crate) fn over(socket: Box<dyn Transport>) -> Rtnl {
        Rtnl {
            socket,
            seq: 0,
            // Capacity only: the kernel writes the pages a reply needs.
            // Zeroed, its 16 pages were each faulted in at open (~0.05
            // ms, 2% of a CLI connect).
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        let mut bytes = Vec::new();
        let seq = self.frame(msg, flags, &mut bytes);
        self.socket.send(&bytes)?;
        Ok(seq)
    }

    /// Appends `msg` to `bytes` under the next sequence number, returned.
    fn frame(&mut self, msg: RouteNetlinkMessage, flags: u16, bytes: &mut Vec<u8>) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let start = bytes.len();
        bytes.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut bytes[start..]);
        // Netlink messages in one datagram start on 4-byte boundaries.
        bytes.resize((bytes.len() + 3) & !3, 0);
        self.seq
    }

    /// Sends `requests` (each with its `NLM_F_*` flags besides REQUEST
    /// and ACK) in one datagram and reads every answer: one round trip
    /// instead of one each. The kernel handles them in order and goes on
    /// after a refusal, so the first refusal is returned once all of them
    /// are acknowledged. Each request's replies (a GETLINK's link) come
    /// back in its place.
    pub fn batch(
        &mut self,
        requests: Vec<(RouteNetlinkMessage, u16)>,
    ) -> io::Result<Vec<Vec<RouteNetlinkMessage>>> {
        let mut bytes = Vec::new();
        let mut seqs = Vec::with_capacity(requests.len());
        for (msg, flags) in requests {
            seqs.push(self.frame(msg, flags | NLM_F_REQUEST | NLM_F_ACK, &mut bytes));
        }
        self.socket.send(&bytes)?;
        let mut replies: Vec<Vec<RouteNetlinkMessage>> = seqs.iter().map(|_| Vec::new()).collect();
        let mut first_refusal = None;
        for (i, seq) in seqs.into_iter().enumerate() {
            let mut done = false;
            let reply = &mut replies[i];
            if let Err(e) = self.receive(seq, |m| reply.push(m), &mut done) {
                if !done {
                    // Not an answer of the kernel's: nothing more to read.
                    return Err(e);
                }
                first_refusal.get_or_insert(e);
            }
        }
        match first_refusal {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    /// Sends one request and waits for its acknowledgement.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(msg, flags | NLM_F_REQUEST | NLM_F_ACK)?;
        let mut done = false;
        self.receive(seq, |_| {}, &mut done)
    }

    /// Sends one request and collects the messages the kernel answers with
    /// before its acknowledgement (a GET by name answers with one).
    pub fn request_reply(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut out = Vec::new();
        let mut done = false;
        self.receive(seq, |m| out.push(m), &mut done)?;
        Ok(out)
    }

    /// Sends a dump request and collects every answer.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        let mut done = false;
        self.receive(seq, |m| out.push(m), &mut done)?;
        Ok(out)
    }

    fn receive(
        &mut self,
        seq: u32,
        mut each: impl FnMut(RouteNetlinkMessage),
        done: &mut bool,
    ) -> io::Result<()> {
        while !*done {
            let n = self.socket.recv(&mut self.buf)?.min(self.buf.len());
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                let raw = &self.buf[offset..(offset + len).min(n)];
                offset += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => *done = true,
                    NetlinkPayload::Error(err) => {
                        *done = true;
                        if let Some(code) = err.code {
                            return Err(refusal(-code.get(), raw));
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The failure an NLMSG_ERROR (`raw`) reports: its errno, carrying the
/// kernel's explanation when it gave one, so the text reaches the message
/// of whatever error the caller makes of it.
fn refusal(errno: i32, raw: &[u8]) -> io::Error {
    match ext_ack_message(raw) {
        Some(text) => KernelText { errno, text }.into_io_error(),
        None => io::Error::from_raw_os_error(errno),
    }
}

/// NLMSGERR_ATTR_MSG of an NLMSG_ERROR: after the header (16 bytes), the
/// error (4) and the echoed request header (16, the request itself left
/// out when NLM_F_CAPPED), when NLM_F_ACK_TLVS says attributes follow.
fn ext_ack_message(raw: &[u8]) -> Option<String> {
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let flags = u16::from_ne_bytes(raw.get(6..8)?.try_into().ok()?);
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(raw.get(20..24)?.try_into().ok()?) as usize
    };
    let mut rest = raw.get(20 + ((echoed_len + 3) & !3)..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes(rest[0..2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[2..4].try_into().ok()?) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &rest[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned()).filter(|t| !t.is_empty());
        }
        rest = rest.get((len + 3) & !3..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_explanation_is_read_from_an_error() {
        let mut raw = crate::kernel::fake_rtnl::refusal(1, 22, "Invalid MTU");
        assert_eq!(ext_ack_message(&raw).as_deref(), Some("Invalid MTU"));
        let err = crate::error::Error::kernel("creating bridge b", refusal(22, &raw));
        assert_eq!(
            err.to_string(),
            "creating bridge b (kernel: Invalid MTU): Invalid argument (os error 22)"
        );
        // Without NLM_F_ACK_TLVS there is nothing to read.
        raw[6..8].copy_from_slice(&0x100u16.to_ne_bytes());
        assert_eq!(ext_ack_message(&raw), None);
        assert_eq!(refusal(22, &raw).raw_os_error(), Some(22));
    }

    /// From the socket to the message a user reads, with the errno still
    /// there for callers that test it.
    #[test]
    fn a_refused_request_keeps_the_kernels_text_and_its_errno() {
        let (mut rtnl, _) =
            crate::kernel::fake_rtnl::rtnl(vec![crate::kernel::fake_rtnl::Answer::Refused(
                libc::ENODEV,
                "Unknown device",
            )]);
        let err = crate::kernel::link::delete(&mut rtnl, "vb1");
        assert!(!err.unwrap(), "ENODEV means gone, text or not");
        let (mut rtnl, _) =
            crate::kernel::fake_rtnl::rtnl(vec![crate::kernel::fake_rtnl::Answer::Refused(
                libc::EINVAL,
                "Invalid MTU",
            )]);
        let io = crate::kernel::link::create_bridge(&mut rtnl, "b", 70000, [2, 0, 0, 0, 0, 1], 0)
            .unwrap_err();
        let err = crate::error::Error::kernel("creating bridge b", io);
        assert_eq!(
            err.to_string(),
            "creating bridge b (kernel: Invalid MTU): Invalid argument (os error 22)"
        );
    }
}
