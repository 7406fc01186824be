//! A stand-in for the rtnetlink socket, for unit tests of the messages
//! berth builds: it decodes and records every request an [`Rtnl`] sends
//! and answers each with what the test scripted (an ACK by default), as
//! the kernel would frame it.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroI32;
use std::sync::{Arc, Mutex};

use netlink_packet_core::{
    DoneMessage, ErrorMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP,
};
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::rtnl::{Rtnl, Transport};

/// How the kernel answers one request.
pub enum Answer {
    /// Success, with nothing to say.
    Ack,
    /// Failure with this errno.
    Errno(i32),
    /// Failure with this errno and the kernel's explanation (extended ack).
    Refused(i32, &'static str),
    /// These messages, then the end of the dump (or the ACK of a request).
    Replies(Vec<RouteNetlinkMessage>),
}

/// One request as the kernel received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `NLM_F_*` flags of the request.
    pub flags: u16,
    pub message: RouteNetlinkMessage,
}

/// The requests sent so far, shared with the socket that records them.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Sent>>>, Arc<Mutex<usize>>);

impl Recorder {
    pub fn sent(&self) -> Vec<Sent> {
        self.0.lock().unwrap().clone()
    }

    /// How many datagrams carried them: the round trips.
    pub fn datagrams(&self) -> usize {
        *self.1.lock().unwrap()
    }
}

struct FakeSocket {
    answers: VecDeque<Answer>,
    pending: VecDeque<Vec<u8>>,
    recorder: Recorder,
}

/// An [`Rtnl`] whose requests are answered, in order, by `answers` (then
/// by ACKs), and the recorder of what it sends.
pub fn rtnl(answers: Vec<Answer>) -> (Rtnl, Recorder) {
    let recorder = Recorder::default();
    let socket = FakeSocket {
        answers: answers.into(),
        pending: VecDeque::new(),
        recorder: recorder.clone(),
    };
    (Rtnl::over(Box::new(socket)), recorder)
}

fn frame(seq: u32, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, payload);
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

fn ack(seq: u32, errno: i32) -> Vec<u8> {
    let mut error = ErrorMessage::default();
    error.code = NonZeroI32::new(-errno);
    // The echoed request header; berth reads only the code.
    error.header = vec![0; 16];
    frame(seq, NetlinkPayload::Error(error))
}

/// An NLMSG_ERROR as the kernel sends it with extended acks on: the
/// request's header echoed alone (NLM_F_CAPPED), then NLMSGERR_ATTR_MSG
/// (NLM_F_ACK_TLVS). netlink-packet-core does not write these attributes.
pub fn refusal(seq: u32, errno: i32, text: &str) -> Vec<u8> {
    let mut text = text.as_bytes().to_vec();
    text.push(0);
    let attr_len = 4 + text.len();
    let total = 16 + 4 + 16 + ((attr_len + 3) & !3);
    let mut raw = Vec::new();
    raw.extend_from_slice(&(total as u32).to_ne_bytes());
    raw.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    raw.extend_from_slice(&(0x100u16 | 0x200).to_ne_bytes()); // CAPPED | ACK_TLVS
    raw.extend_from_slice(&seq.to_ne_bytes());
    raw.extend_from_slice(&0u32.to_ne_bytes()); // port id
    raw.extend_from_slice(&(-errno).to_ne_bytes());
    raw.extend_from_slice(&[0; 16]); // the echoed request header
    raw.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    raw.extend_from_slice(&1u16.to_ne_bytes()); // NLMSGERR_ATTR_MSG
    raw.extend_from_slice(&text);
    raw.resize(total, 0);
    raw
}

impl Transport for FakeSocket {
    /// A datagram may hold several requests (`Rtnl::batch`): each is
    /// recorded and answered in order, as the kernel does.
    fn send(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        *self.recorder.1.lock().unwrap() += 1;
        while bytes.len() >= 16 {
            let len = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            if len < 16 || len > bytes.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad length"));
            }
            self.answer(&bytes[..len])?;
            bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let datagram = self
            .pending
            .pop_front()
            .ok_or_else(|| io::Error::other("the fake kernel has nothing to say"))?;
        buf.clear();
        buf.extend_from_slice(&datagram);
        Ok(datagram.len())
    }
}

impl FakeSocket {
    fn answer(&mut self, bytes: &[u8]) -> io::Result<()> {
        let request = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let seq = request.header.sequence_number;
        let dump = request.header.flags & NLM_F_DUMP == NLM_F_DUMP;
        let NetlinkPayload::InnerMessage(message) = request.payload else {
            return Err(io::Error::other("not an rtnetlink request"));
        };
        self.recorder.0.lock().unwrap().push(Sent {
            flags: request.header.flags,
            message,
        });
        match self.answers.pop_front().unwrap_or(Answer::Ack) {
            Answer::Ack => self.pending.push_back(ack(seq, 0)),
            Answer::Errno(errno) => self.pending.push_back(ack(seq, errno)),
            Answer::Refused(errno, text) => self.pending.push_back(refusal(seq, errno, text)),
            Answer::Replies(replies) => {
                for reply in replies {
                    self.pending
                        .push_back(frame(seq, NetlinkPayload::InnerMessage(reply)));
                }
                self.pending.push_back(if dump {
                    frame(seq, NetlinkPayload::Done(DoneMessage::default()))
                } else {
                    ack(seq, 0)
                });
            }
        }
        Ok(())
    }
}

/// A main-table (or other `table`) IPv4 route, as a dump answers it.
pub fn route(
    table: u8,
    dst: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
    oif: u32,
) -> RouteNetlinkMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = table;
    if let Some((d, len)) = dst {
        msg.header.destination_prefix_length = len;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(d)));
    }
    if let Some(g) = gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(g)));
    }
    msg.attributes.push(RouteAttribute::Oif(oif));
    RouteNetlinkMessage::NewRoute(msg)
}

/// An IPv4 address of the link `index`, as a dump answers it.
pub fn addr(index: u32, ip: Ipv4Addr, prefix_len: u8) -> RouteNetlinkMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.index = index;
    msg.header.prefix_len = prefix_len;
    msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    RouteNetlinkMessage::NewAddress(msg)
}

/// A link called `name`, as a dump or a GETLINK answers it.
pub fn link(name: &str, index: u32, attributes: Vec<LinkAttribute>) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes.extend(attributes);
    RouteNetlinkMessage::NewLink(msg)
}
