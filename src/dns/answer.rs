//! Deciding a reply: one query packet in, the local answer (or an error
//! reply) out, or "forward it upstream". Pure: no sockets, so every case is
//! unit-tested.
//!
//! Both families: A answers a name's IPv4 addresses and AAAA its IPv6
//! ones (NOERROR with no records when it has none of that family, as
//! aardvark-dns answers), PTR answers `in-addr.arpa` and `ip6.arpa` names
//! (`reverse.rs` reads them), and the client and gateway may be either.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::reverse::{self, Reverse};
use super::table::{Found, Table, LOCAL_DOMAIN, PODMAN_DOMAIN};

/// Names change as containers come and go: resolvers should ask again soon.
const TTL: u32 = 5;
/// The largest UDP reply we send without EDNS (RFC 1035).
pub const PLAIN_UDP_MAX: usize = 512;

/// What to do with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not ours: forward upstream; the client takes replies up to this size.
    Forward { max_len: usize },
    /// Not a query worth answering (too short to carry an ID, or itself a
    /// response): answering could feed a loop.
    Ignore,
}

/// The reply to `packet`, which arrived on the listener at `gateway` from
/// `client`.
pub fn reply(table: &Table, gateway: IpAddr, client: IpAddr, packet: &[u8]) -> Reply {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return Reply::Ignore;
    }
    if let Some(r) = plain_reply(table, gateway, client, packet) {
        return r;
    }
    parsed_reply(table, gateway, client, packet)
}

/// A name without berth's domains, and whether it had one: NAME.dns.berth
/// is berth's alone; so is NAME.dns.podman, the domain Podman gives its
/// containers (berth as its netavark).
fn split_local(full: &str) -> (&str, bool) {
    let local = |domain: &str| match full.strip_suffix(domain) {
        Some("") => Some(""),
        Some(rest) if rest.ends_with('.') => Some(&rest[..rest.len() - 1]),
        _ => None,
    };
    match local(LOCAL_DOMAIN).or_else(|| local(PODMAN_DOMAIN)) {
        Some(name) => (name, true),
        None => (full, false),
    }
}

/// The common query, read straight from its bytes.
struct Plain {
    /// Lower case, no trailing dot.
    name: String,
    qtype: u16,
    qclass: u16,
    /// It carries an OPT record (EDNS).
    opt: bool,
    /// What the client takes over UDP.
    max_len: usize,
}

/// Reads a query with one question of plain labels (letters, digits, '-'
/// and '_') and nothing else but an OPT record; None for anything else
/// (a packet [`parsed_reply`] then reads with the full parser).
fn plain(packet: &[u8]) -> Option<Plain> {
    let opt = match packet.get(2..12)? {
        // Opcode QUERY; one question; an OPT record or nothing more.
        [f, _, 0, 1, 0, 0, 0, 0, 0, ar] if f & 0x78 == 0 && *ar <= 1 => *ar == 1,
        _ => return None,
    };
    let mut name = String::with_capacity(32);
    let mut i = 12;
    loop {
        let len = usize::from(*packet.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        let label = packet.get(i..i + len).filter(|_| len <= 63)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        i += len;
    }
    if name.len() > 253 {
        return None;
    }
    let word = |at: usize| Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]));
    let (qtype, qclass) = (word(i)?, word(i + 2)?);
    i += 4;
    let mut max_len = PLAIN_UDP_MAX;
    if opt {
        // Root name, type OPT, the UDP size as class, TTL (version 0),
        // then its options, which must end the packet.
        if *packet.get(i)? != 0 || word(i + 1)? != 41 || *packet.get(i + 6)? != 0 {
            return None;
        }
        max_len = usize::from(word(i + 3)?).max(PLAIN_UDP_MAX);
        let end = i + 11 + usize::from(word(i + 9)?);
        // Each option: code, length, data; together exactly the record's.
        i += 11;
        while i < end {
            i += 4 + usize::from(word(i + 2)?);
        }
        if i != end {
            return None;
        }
    }
    (i == packet.len()).then_some(Plain {
        name,
        qtype,
        qclass,
        opt,
        max_len,
    })
}

/// The reply to a plain query (see [`plain`]) for an A, AAAA or ANY
/// question of a client the gateway admits: the same bytes the full path
/// writes, without decoding a `Message` (about half the server's
/// user-space time per local answer). None for anything else.
fn plain_reply(table: &Table, gateway: IpAddr, client: IpAddr, packet: &[u8]) -> Option<Reply> {
    let p = plain(packet)?;
    let (a, aaaa, any) = (
        u16::from(RecordType::A),
        u16::from(RecordType::AAAA),
        u16::from(RecordType::ANY),
    );
    if p.qclass != u16::from(DNSClass::IN)
        || ![a, aaaa, any].contains(&p.qtype)
        || !table.admits(gateway, client)
    {
        return None;
    }
    let (name, local_only) = split_local(&p.name);
    match table.lookup(gateway, client, name) {
        Found::Addresses(ips) => {
            let ips: Vec<IpAddr> = ips
                .into_iter()
                .filter(|ip| p.qtype == any || ip.is_ipv4() == (p.qtype == a))
                .collect();
            quick(packet, p.opt, ResponseCode::NoError, &ips).map(Reply::Answer)
        }
        Found::Missing if local_only || !name.contains('.') => {
            quick(packet, p.opt, ResponseCode::NXDomain, &[]).map(Reply::Answer)
        }
        Found::Missing if table.net(gateway).is_some_and(|n| n.internal) => None,
        Found::Missing => Some(Reply::Forward { max_len: p.max_len }),
    }
}

/// The reply to any query, read with the full parser.
fn parsed_reply(table: &Table, gateway: IpAddr, client: IpAddr, packet: &[u8]) -> Reply {
    let query = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return Reply::Answer(format_error(packet)),
    };
    if query.message_type() != MessageType::Query {
        return Reply::Ignore;
    }
    if !table.admits(gateway, client) {
        return Reply::Answer(error(&query, ResponseCode::Refused));
    }
    if query.op_code() != OpCode::Query {
        return Reply::Answer(error(&query, ResponseCode::NotImp));
    }
    let [q] = query.queries() else {
        return Reply::Answer(error(&query, ResponseCode::FormErr));
    };
    let max_len = match query.extensions() {
        Some(e) => usize::from(e.max_payload()).max(PLAIN_UDP_MAX),
        None => PLAIN_UDP_MAX,
    };
    // Nothing leaves an internal network, DNS queries included (they
    // would carry data out).
    let internal = table.net(gateway).is_some_and(|n| n.internal);
    let forward = || {
        if internal {
            Reply::Answer(error(&query, ResponseCode::Refused))
        } else {
            Reply::Forward { max_len }
        }
    };
    if q.query_class() != DNSClass::IN {
        return forward();
    }
    let full = q.name().to_ascii().to_ascii_lowercase();
    let full = full.strip_suffix('.').unwrap_or(&full);
    let (name, local_only) = split_local(full);

    if q.query_type() == RecordType::PTR && !local_only {
        match reverse::parse(name) {
            Some(Reverse::Address(ip)) => {
                return match table.reverse(gateway, client, ip) {
                    Some(Some(found)) => {
                        // Every name, as aardvark-dns answers: the own
                        // name, the aliases in the order given (Podman's
                        // include the short container id).
                        let targets: Vec<RData> = found
                            .names
                            .iter()
                            .filter_map(|n| {
                                let text = if found.bare {
                                    format!("{n}.")
                                } else {
                                    format!("{n}.{LOCAL_DOMAIN}.")
                                };
                                Name::from_ascii(text).ok().map(|t| RData::PTR(PTR(t)))
                            })
                            .collect();
                        if targets.is_empty() {
                            Reply::Answer(error(&query, ResponseCode::NXDomain))
                        } else {
                            answer(&query, q, targets)
                        }
                    }
                    Some(None) => Reply::Answer(error(&query, ResponseCode::NXDomain)),
                    None => forward(),
                };
            }
            // A node between a berth subnet and its addresses: it exists
            // (an NXDOMAIN would tell a resolver that cuts at NXDOMAIN,
            // RFC 8020, that nothing below it does), with no records.
            Some(Reverse::Partial(prefix)) if table.owns(prefix) => {
                return answer(&query, q, Vec::new());
            }
            // No such name can exist below a berth prefix.
            Some(Reverse::Malformed(prefix)) if table.owns(prefix) => {
                return Reply::Answer(error(&query, ResponseCode::NXDomain));
            }
            _ => {}
        }
    }
    match table.lookup(gateway, client, name) {
        Found::Addresses(ips) => {
            // The name exists; only the addresses of the family asked
            // for answer (none: NODATA).
            let ips: Vec<IpAddr> = match q.query_type() {
                RecordType::A => ips.into_iter().filter(IpAddr::is_ipv4).collect(),
                RecordType::AAAA => ips.into_iter().filter(IpAddr::is_ipv6).collect(),
                RecordType::ANY => ips,
                _ => Vec::new(),
            };
            quick(
                packet,
                query.extensions().is_some(),
                ResponseCode::NoError,
                &ips,
            )
            .map_or_else(
                || {
                    let data = ips
                        .iter()
                        .map(|ip| match ip {
                            IpAddr::V4(v4) => RData::A(A(*v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                        })
                        .collect();
                    answer(&query, q, data)
                },
                Reply::Answer,
            )
        }
        // An unknown single label is nobody's upstream either (and leaking
        // container names to the world helps no one).
        Found::Missing if local_only || !name.contains('.') => Reply::Answer(
            quick(
                packet,
                query.extensions().is_some(),
                ResponseCode::NXDomain,
                &[],
            )
            .unwrap_or_else(|| error(&query, ResponseCode::NXDomain)),
        ),
        Found::Missing => forward(),
    }
}

/// The common reply, written straight from the query's bytes: its header
/// and question (exactly as sent) and A or AAAA records pointing back at
/// the question's name (one per address), plus an OPT record if the query
/// had one. About half the server's user-space time per query goes
/// otherwise to encoding a `Message`. None when the query has anything
/// unusual (the caller then encodes a `Message`) or the answer would not
/// fit a plain UDP reply.
fn quick(packet: &[u8], opt: bool, code: ResponseCode, ips: &[IpAddr]) -> Option<Vec<u8>> {
    let counts = &packet[4..12];
    let additionals = u16::from(opt);
    if counts != [0, 1, 0, 0, 0, 0, 0, additionals as u8] {
        return None;
    }
    let end = question_end(packet)?;
    let record_len = |ip: &IpAddr| if ip.is_ipv4() { 16 } else { 28 };
    let len = end + ips.iter().map(record_len).sum::<usize>() + 11;
    if len > PLAIN_UDP_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&packet[..end]);
    // QR and AA; opcode and RD as asked; RA; CD as asked.
    out[2] = 0x80 | (packet[2] & 0x79) | 0x04;
    out[3] = 0x80 | (packet[3] & 0x10) | (u16::from(code) as u8 & 0x0f);
    out[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
    for ip in ips {
        let (kind, data): (u16, Vec<u8>) = match ip {
            IpAddr::V4(v4) => (RecordType::A.into(), v4.octets().to_vec()),
            IpAddr::V6(v6) => (RecordType::AAAA.into(), v6.octets().to_vec()),
        };
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    if additionals == 1 {
        // OPT: root name, type 41, our UDP size 1232, no flags, no data.
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    Some(out)
}

/// Where the (first) question of a packet ends; None if its name uses a
/// compression pointer or runs past the end.
pub fn question_end(packet: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*packet.get(i)?);
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    (i + 4 <= packet.len()).then_some(i + 4)
}

/// A reply skeleton: the query's ID, opcode, RD and CD, and its question.
fn response(query: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(query.checking_disabled())
        .set_response_code(code);
    m.add_queries(query.queries().iter().cloned());
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.set_edns(edns);
    }
    m
}

fn answer(query: &Message, q: &Query, data: Vec<RData>) -> Reply {
    let mut m = response(query, ResponseCode::NoError);
    m.set_authoritative(true);
    for d in data {
        m.add_answer(Record::from_rdata(q.name().clone(), TTL, d));
    }
    encode(m, query)
}

/// An error reply that keeps the question (NXDOMAIN, SERVFAIL, ...).
pub fn error(query: &Message, code: ResponseCode) -> Vec<u8> {
    let mut m = response(query, code);
    m.set_authoritative(code == ResponseCode::NXDomain);
    match m.to_vec() {
        Ok(bytes) => bytes,
        Err(_) => header_only(query.id(), code),
    }
}

fn encode(m: Message, query: &Message) -> Reply {
    match m.to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => Reply::Answer(error(query, ResponseCode::ServFail)),
    }
}

/// SERVFAIL for a query packet (used when forwarding fails, and for a
/// client over its share of forwards, which may be flooding: a plain query
/// is answered from its own bytes, as parsing and encoding a `Message`
/// would cost most of the refusal).
pub fn servfail(packet: &[u8]) -> Vec<u8> {
    if let Some(out) = plain_error(packet, ResponseCode::ServFail) {
        return out;
    }
    match Message::from_vec(packet) {
        Ok(q) => error(&q, ResponseCode::ServFail),
        Err(_) => format_error(packet),
    }
}

/// The error reply to a plain query (one question whose name has no
/// pointer, and nothing else but an OPT record with no options), written
/// from its bytes: what `error` would encode. None for anything else.
fn plain_error(packet: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[4..11] != [0, 1, 0, 0, 0, 0, 0] || packet[11] > 1 {
        return None;
    }
    let end = question_end(packet)?;
    let rest = &packet[end..];
    let opt = packet[11] == 1;
    let plain_opt = rest.len() == 11 && rest[..3] == [0, 0, 41] && rest[9..11] == [0, 0];
    if (opt && !plain_opt) || (!opt && !rest.is_empty()) {
        return None;
    }
    let mut out = Vec::with_capacity(end + 11);
    out.extend_from_slice(&packet[..end]);
    // QR; opcode and RD as asked; RA; CD as asked; no records.
    out[2] = 0x80 | (packet[2] & 0x79);
    out[3] = 0x80 | (packet[3] & 0x10) | (u16::from(code) as u8 & 0x0f);
    out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, u8::from(opt)]);
    if opt {
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    Some(out)
}

/// FORMERR for a packet that does not parse: only its header can be trusted.
fn format_error(packet: &[u8]) -> Vec<u8> {
    let byte = |i: usize| packet.get(i).copied().unwrap_or(0);
    let mut out = header_only(
        u16::from_be_bytes([byte(0), byte(1)]),
        ResponseCode::FormErr,
    );
    // Keep the opcode and RD bit the client sent.
    out[2] |= byte(2) & 0x79;
    out
}

fn header_only(id: u16, code: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x80;
    out[3] = 0x80 | (u16::from(code) as u8 & 0x0f);
    out
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::store::{DnsEndpoint, DnsNetwork};

    const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
    const C1V4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const C1: IpAddr = IpAddr::V4(C1V4);

    fn table() -> Table {
        let net = DnsNetwork {
            id: 1,
            name: "web".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: GW,
            internal: false,
            podman: false,
            servers: vec![],
        };
        let e = |name: &str, alias| DnsEndpoint {
            network_id: 1,
            endpoint_id: 1,
            name: name.into(),
            alias,
            ip: C1,
            netns_inode: 1,
        };
        Table::build(&[net], &[e("api", false), e("v1.backend", true)]).0
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn parsed(r: Reply) -> Message {
        match r {
            Reply::Answer(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn plain_queries_are_answered_as_the_full_parser_answers_them() {
        let t = table();
        let internal = Table::build(
            &[DnsNetwork {
                id: 1,
                name: "web".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                gateway: GW,
                internal: true,
                podman: false,
                servers: vec![],
            }],
            &[],
        )
        .0;
        let stranger = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let mut fast = 0;
        for name in [
            "api.",
            "API.",
            "V1.Backend.",
            "api.dns.berth.",
            "api.dns.podman.",
            "nope.",
            "nope.dns.berth.",
            "www.example.com.",
            ".",
            "dns.berth.",
            "under_score.",
        ] {
            for t_ in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::ANY,
                RecordType::MX,
            ] {
                let plain_q = query(name, t_);
                // The same with EDNS (size 4096) and a cookie option.
                let mut m = Message::from_vec(&plain_q).unwrap();
                let mut edns = Edns::new();
                edns.set_max_payload(4096);
                edns.options_mut()
                    .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                        10,
                        vec![1, 2, 3, 4, 5, 6, 7, 8],
                    ));
                m.set_edns(edns);
                let edns_q = m.to_vec().unwrap();
                for q in [plain_q, edns_q] {
                    for (table, client) in [(&t, C1), (&t, stranger), (&internal, C1)] {
                        let Some(r) = plain_reply(table, GW, client, &q) else {
                            continue;
                        };
                        fast += 1;
                        assert_eq!(r, parsed_reply(table, GW, client, &q), "{name} {t_}");
                    }
                }
            }
        }
        // The common questions took the quick way.
        assert!(fast >= 40, "only {fast} plain replies");
        // Anything unusual is left to the full parser.
        let mut odd = query("api.", RecordType::A);
        odd[2] |= 0x28; // opcode UPDATE
        assert!(plain(&odd).is_none());
        let mut trailing = query("api.", RecordType::A);
        trailing.push(0);
        assert!(plain(&trailing).is_none());
        let mut dotted = query("api.", RecordType::A);
        dotted[14] = b'.'; // a dot inside a label: "a.i" is not "a" "i"
        assert!(plain(&dotted).is_none());
    }

    #[test]
    fn names_and_aliases_answer_whatever_their_case() {
        let t = table();
        for name in [
            "api.",
            "API",
            "V1.Backend.",
            "api.dns.berth.",
            "api.dns.podman.",
        ] {
            let m = parsed(reply(&t, GW, C1, &query(name, RecordType::A)));
            assert_eq!(m.id(), 0x1234);
            assert_eq!(m.response_code(), ResponseCode::NoError, "{name}");
            assert!(m.recursion_desired() && m.authoritative());
            assert_eq!(m.answers()[0].data(), &RData::A(A(C1V4)), "{name}");
        }
        let m = parsed(reply(&t, GW, C1, &query("api.", RecordType::AAAA)));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
    }

    #[test]
    fn the_quick_path_matches_a_full_encoding() {
        let t = table();
        let mut m = Message::new();
        m.set_id(7)
            .set_recursion_desired(true)
            .set_checking_disabled(true);
        m.add_query(Query::query(
            Name::from_ascii("Api.").unwrap(),
            RecordType::A,
        ));
        m.set_edns(Edns::new());
        let r = parsed(reply(&t, GW, C1, &m.to_vec().unwrap()));
        assert_eq!(r.id(), 7);
        assert!(r.recursion_desired() && r.checking_disabled() && r.authoritative());
        assert_eq!(r.queries()[0].name().to_ascii(), "Api.");
        assert_eq!(r.answers()[0].name().to_ascii(), "Api.");
        assert_eq!(r.answers()[0].ttl(), TTL);
        assert_eq!(r.answers()[0].data(), &RData::A(A(C1V4)));
        assert_eq!(r.extensions().as_ref().unwrap().max_payload(), 1232);
        let r = parsed(reply(&t, GW, C1, &query("nope.", RecordType::A)));
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert!(r.answers().is_empty() && r.authoritative());
    }

    #[test]
    fn unknown_single_labels_are_nxdomain_and_the_rest_goes_upstream() {
        let t = table();
        let m = parsed(reply(&t, GW, C1, &query("nope.", RecordType::A)));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = parsed(reply(&t, GW, C1, &query("nope.dns.berth.", RecordType::A)));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(
            reply(&t, GW, C1, &query("example.com.", RecordType::A)),
            Reply::Forward { max_len: 512 }
        );
    }

    #[test]
    fn clients_from_elsewhere_are_refused() {
        let t = table();
        let outside = IpAddr::from([192, 0, 2, 7]);
        let m = parsed(reply(&t, GW, outside, &query("api.", RecordType::A)));
        assert_eq!(m.response_code(), ResponseCode::Refused);
        assert!(m.answers().is_empty());
        // The host itself, from the gateway address, is served.
        let m = parsed(reply(&t, GW, GW, &query("api.", RecordType::A)));
        assert_eq!(m.answers()[0].data(), &RData::A(A(C1V4)));
    }

    #[test]
    fn internal_networks_forward_nothing() {
        let net = DnsNetwork {
            id: 1,
            name: "int".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: GW,
            internal: true,
            podman: false,
            servers: vec![],
        };
        let (t, _) = Table::build(&[net], &[]);
        let m = parsed(reply(&t, GW, C1, &query("example.com.", RecordType::A)));
        assert_eq!(m.response_code(), ResponseCode::Refused);
    }

    #[test]
    fn ptr_for_our_addresses_only() {
        let t = table();
        let m = parsed(reply(
            &t,
            GW,
            C1,
            &query("2.0.1.10.in-addr.arpa.", RecordType::PTR),
        ));
        let ptrs: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(ptrs, ["api.dns.berth.", "v1.backend.dns.berth."]);
        let m = parsed(reply(
            &t,
            GW,
            C1,
            &query("9.0.1.10.in-addr.arpa.", RecordType::PTR),
        ));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert!(matches!(
            reply(&t, GW, C1, &query("1.1.1.1.in-addr.arpa.", RecordType::PTR)),
            Reply::Forward { .. }
        ));
    }

    #[test]
    fn malformed_packets_get_formerr_or_nothing() {
        let t = table();
        assert_eq!(reply(&t, GW, C1, b"short"), Reply::Ignore);
        let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0xff; 20]);
        match reply(&t, GW, C1, &junk) {
            Reply::Answer(b) => {
                assert_eq!(&b[..2], &[0xab, 0xcd]);
                assert_eq!(b[2] & 0x80, 0x80);
                assert_eq!(b[3] & 0x0f, 1);
            }
            other => panic!("{other:?}"),
        }
        // A response is never answered.
        let mut resp = query("api.", RecordType::A);
        resp[2] |= 0x80;
        assert_eq!(reply(&t, GW, C1, &resp), Reply::Ignore);
        assert_eq!(
            Message::from_vec(&servfail(&query("x.y.", RecordType::A)))
                .unwrap()
                .response_code(),
            ResponseCode::ServFail
        );
    }

    #[test]
    fn random_and_mangled_packets_never_panic() {
        let t = table();
        let good = query("v1.backend.", RecordType::A);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = reply(&t, GW, C1, &random);
            // A real query with a few bytes flipped or cut.
            let mut mangled = good.clone();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % mangled.len();
                mangled[i] = next() as u8;
            }
            mangled.truncate((next() as usize) % (good.len() + 1));
            let _ = reply(&t, GW, C1, &mangled);
            let _ = servfail(&mangled);
        }
    }

    #[test]
    fn a_plain_servfail_is_what_the_encoder_would_write() {
        let mut seen = 0;
        for (name, edns, rd, cd) in [
            ("www.example.com.", false, true, false),
            ("Mixed.Case.Example.", true, true, true),
            ("a.", true, false, false),
        ] {
            let mut q = Message::new();
            q.set_id(0x1234)
                .set_recursion_desired(rd)
                .set_checking_disabled(cd)
                .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            if edns {
                let mut e = Edns::new();
                e.set_max_payload(4096);
                q.set_edns(e);
            }
            let packet = q.to_vec().unwrap();
            let fast = plain_error(&packet, ResponseCode::ServFail).expect("plain");
            let parsed = Message::from_vec(&packet).unwrap();
            assert_eq!(fast, error(&parsed, ResponseCode::ServFail), "{name}");
            assert_eq!(servfail(&packet), fast);
            seen += 1;
        }
        assert_eq!(seen, 3);
        // Anything else takes the long way: two questions, trailing bytes.
        let mut q = Message::new();
        q.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        q.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
        let two = q.to_vec().unwrap();
        assert!(plain_error(&two, ResponseCode::ServFail).is_none());
        let mut one = Message::new();
        one.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        let mut junk = one.to_vec().unwrap();
        junk.push(7);
        assert!(plain_error(&junk, ResponseCode::ServFail).is_none());
    }

    /// c1 on networks a (10.1.0.0/24) and b (10.2.0.0/24) of a Podman
    /// namespace, with aliases; c2 only on b.
    fn two_networks() -> Table {
        let net = |id, prefix: &str| DnsNetwork {
            id,
            name: format!("n{id}"),
            subnet: format!("{prefix}.0/24").parse().unwrap(),
            gateway: format!("{prefix}.1").parse().unwrap(),
            internal: false,
            podman: true,
            servers: vec![],
        };
        let e = |network_id, name: &str, alias, ip: &str, inode| DnsEndpoint {
            network_id,
            endpoint_id: inode as i64 * 10 + network_id,
            name: name.into(),
            alias,
            ip: ip.parse().unwrap(),
            netns_inode: inode,
        };
        Table::build(
            &[net(1, "10.1.0"), net(2, "10.2.0")],
            &[
                e(1, "c1", false, "10.1.0.2", 1),
                e(1, "web", true, "10.1.0.2", 1),
                e(1, "0123456789ab", true, "10.1.0.2", 1),
                e(2, "c1", false, "10.2.0.2", 1),
                e(2, "web", true, "10.2.0.2", 1),
                e(2, "0123456789ab", true, "10.2.0.2", 1),
                e(2, "c2", false, "10.2.0.3", 2),
            ],
        )
        .0
    }

    #[test]
    fn a_name_on_shared_networks_answers_every_address_the_quick_way_too() {
        let t = two_networks();
        let gw_b: IpAddr = "10.2.0.1".parse().unwrap();
        let c1_b: IpAddr = "10.2.0.2".parse().unwrap();
        let addrs = |m: &Message| -> Vec<String> {
            m.answers().iter().map(|r| r.data().to_string()).collect()
        };
        // c1 asks for itself (and its alias) on b: both addresses, b's first.
        for name in ["c1.", "web.dns.podman.", "0123456789AB."] {
            let plain = query(name, RecordType::A);
            let m = parsed(reply(&t, gw_b, c1_b, &plain));
            assert_eq!(addrs(&m), ["10.2.0.2", "10.1.0.2"], "{name}");
            // The quick path writes what the encoder would.
            let q = Message::from_vec(&plain).unwrap();
            let full = answer(
                &q,
                &q.queries()[0],
                vec![
                    RData::A(A("10.2.0.2".parse().unwrap())),
                    RData::A(A("10.1.0.2".parse().unwrap())),
                ],
            );
            assert_eq!(reply(&t, gw_b, c1_b, &plain), full, "{name}");
        }
        // c2 shares only b with c1: one address.
        let m = parsed(reply(
            &t,
            gw_b,
            "10.2.0.3".parse().unwrap(),
            &query("c1.", RecordType::A),
        ));
        assert_eq!(addrs(&m), ["10.2.0.2"]);
    }

    #[test]
    fn ptr_on_podman_networks_gives_bare_names_in_order() {
        let t = two_networks();
        let m = parsed(reply(
            &t,
            "10.2.0.1".parse().unwrap(),
            "10.2.0.3".parse().unwrap(),
            &query("2.0.2.10.in-addr.arpa.", RecordType::PTR),
        ));
        let ptrs: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(ptrs, ["c1.", "web.", "0123456789ab."]);
        // c2 does not see network a.
        let m = parsed(reply(
            &t,
            "10.2.0.1".parse().unwrap(),
            "10.2.0.3".parse().unwrap(),
            &query("2.0.1.10.in-addr.arpa.", RecordType::PTR),
        ));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
    }

    /// Network 1: 10.1.0.0/24 and fd00:1::/64; network 2: fd00:2::/64
    /// only. c4 (ns 4) has both families on 1, c6 (ns 6) only IPv6 on 2,
    /// and ns 4 is on 2 too (fd00:2::4).
    fn dual() -> Table {
        let net = |id, subnet: &str, gateway: &str| DnsNetwork {
            id,
            name: format!("n{id}"),
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            internal: false,
            podman: false,
            servers: vec![],
        };
        let e = |network_id, endpoint_id, name: &str, alias, ip: &str, inode| DnsEndpoint {
            network_id,
            endpoint_id,
            name: name.into(),
            alias,
            ip: ip.parse().unwrap(),
            netns_inode: inode,
        };
        Table::build(
            &[
                net(1, "10.1.0.0/24", "10.1.0.1"),
                net(1, "fd00:1::/64", "fd00:1::1"),
                net(2, "fd00:2::/64", "fd00:2::1"),
            ],
            &[
                e(1, 40, "c4", false, "10.1.0.4", 4),
                e(1, 40, "c4", false, "fd00:1::4", 4),
                e(1, 40, "api", true, "10.1.0.4", 4),
                e(1, 40, "api", true, "fd00:1::4", 4),
                e(2, 41, "c4", false, "fd00:2::4", 4),
                e(2, 60, "c6", false, "fd00:2::6", 6),
            ],
        )
        .0
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn records(m: &Message) -> Vec<String> {
        m.answers()
            .iter()
            .map(|r| format!("{} {}", r.record_type(), r.data()))
            .collect()
    }

    /// The ip6.arpa name of an address (nibbles, least significant first).
    fn ip6_arpa(a: &str, nibbles: usize) -> String {
        let a: Ipv6Addr = a.parse().unwrap();
        let hex: String = a.octets().iter().map(|b| format!("{b:02x}")).collect();
        let mut labels: Vec<String> = hex[..nibbles].chars().rev().map(String::from).collect();
        labels.push("ip6.arpa.".into());
        labels.join(".")
    }

    #[test]
    fn aaaa_answers_the_ipv6_addresses_and_a_the_ipv4_ones() {
        let t = dual();
        // c6 asks over IPv6 on network 2: c4's address there only.
        let (gw2, c6) = (ip("fd00:2::1"), ip("fd00:2::6"));
        let m = parsed(reply(&t, gw2, c6, &query("c4.", RecordType::AAAA)));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        assert_eq!(records(&m), ["AAAA fd00:2::4"]);
        // c4 sees both networks: every IPv6 address, the asked one first;
        // A gives its IPv4 one, whichever family the question came over.
        let (gw1, c4) = (ip("fd00:1::1"), ip("fd00:1::4"));
        for name in ["c4.", "API.dns.berth."] {
            let m = parsed(reply(&t, gw1, c4, &query(name, RecordType::AAAA)));
            let want: &[&str] = if name == "c4." {
                &["AAAA fd00:1::4", "AAAA fd00:2::4"]
            } else {
                &["AAAA fd00:1::4"]
            };
            assert_eq!(records(&m), want, "{name}");
            let m = parsed(reply(&t, gw1, c4, &query(name, RecordType::A)));
            assert_eq!(records(&m), ["A 10.1.0.4"], "{name}");
        }
        let m = parsed(reply(&t, gw1, c4, &query("c4.", RecordType::ANY)));
        assert_eq!(
            records(&m),
            ["A 10.1.0.4", "AAAA fd00:1::4", "AAAA fd00:2::4"]
        );
        // The same over the IPv4 gateway from the IPv4 address.
        let m = parsed(reply(
            &t,
            ip("10.1.0.1"),
            ip("10.1.0.4"),
            &query("c6.", RecordType::AAAA),
        ));
        assert_eq!(records(&m), ["AAAA fd00:2::6"]);
    }

    #[test]
    fn a_name_without_an_address_of_the_family_asked_is_nodata() {
        let t = dual();
        let (gw2, c6) = (ip("fd00:2::1"), ip("fd00:2::6"));
        // c6 has no IPv4 address; c4 none on network 2, all c6 sees.
        for name in ["c6.", "c4."] {
            let m = parsed(reply(&t, gw2, c6, &query(name, RecordType::A)));
            assert_eq!(m.response_code(), ResponseCode::NoError, "{name}");
            assert!(m.answers().is_empty() && m.authoritative(), "{name}");
        }
        // A network without IPv6: AAAA is NODATA, not NXDOMAIN.
        let m = parsed(reply(&table(), GW, C1, &query("api.", RecordType::AAAA)));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        // An unknown name stays NXDOMAIN for AAAA too.
        let m = parsed(reply(&t, gw2, c6, &query("nope.", RecordType::AAAA)));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
    }

    #[test]
    fn the_quick_path_writes_aaaa_as_the_encoder_would() {
        let t = dual();
        let (gw1, c4) = (ip("fd00:1::1"), ip("fd00:1::4"));
        for (t_, edns) in [
            (RecordType::AAAA, false),
            (RecordType::ANY, true),
            (RecordType::A, true),
        ] {
            let mut m = Message::new();
            m.set_id(9).set_recursion_desired(true);
            m.add_query(Query::query(Name::from_ascii("C4.").unwrap(), t_));
            if edns {
                m.set_edns(Edns::new());
            }
            let packet = m.to_vec().unwrap();
            let fast = reply(&t, gw1, c4, &packet);
            let q = Message::from_vec(&packet).unwrap();
            let data: Vec<RData> = match t_ {
                RecordType::A => vec![RData::A(A("10.1.0.4".parse().unwrap()))],
                RecordType::AAAA => vec![
                    RData::AAAA(AAAA("fd00:1::4".parse().unwrap())),
                    RData::AAAA(AAAA("fd00:2::4".parse().unwrap())),
                ],
                _ => vec![
                    RData::A(A("10.1.0.4".parse().unwrap())),
                    RData::AAAA(AAAA("fd00:1::4".parse().unwrap())),
                    RData::AAAA(AAAA("fd00:2::4".parse().unwrap())),
                ],
            };
            assert_eq!(fast, answer(&q, &q.queries()[0], data), "{t_}");
        }
    }

    #[test]
    fn ip6_arpa_ptr_answers_full_names_and_keeps_berths_prefixes_local() {
        let t = dual();
        let (gw1, c4) = (ip("fd00:1::1"), ip("fd00:1::4"));
        let ptr = |name: &str| reply(&t, gw1, c4, &query(name, RecordType::PTR));
        let m = parsed(ptr(&ip6_arpa("fd00:1::4", 32)));
        assert_eq!(records(&m), ["PTR c4.dns.berth.", "PTR api.dns.berth."]);
        // Upper-case nibbles are the same name.
        let m = parsed(ptr(&ip6_arpa("fd00:2::4", 32).replace('f', "F")));
        assert_eq!(records(&m), ["PTR c4.dns.berth."]);
        // An unknown address of a berth subnet, and one of a network c4
        // is not on (here: none) are NXDOMAIN, never sent upstream.
        let m = parsed(ptr(&ip6_arpa("fd00:1::99", 32)));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = parsed(reply(
            &t,
            ip("fd00:2::1"),
            ip("fd00:2::6"),
            &query(&ip6_arpa("fd00:1::4", 32), RecordType::PTR),
        ));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        // Someone else's address goes upstream.
        assert!(matches!(
            ptr(&ip6_arpa("2001:db8::1", 32)),
            Reply::Forward { .. }
        ));
        // Partial names: inside a berth subnet a node with no records
        // (NOERROR, nothing); the subnet's own; above it, upstream's.
        for nibbles in [16, 20, 31] {
            let m = parsed(ptr(&ip6_arpa("fd00:1::4", nibbles)));
            assert_eq!(m.response_code(), ResponseCode::NoError, "{nibbles}");
            assert!(m.answers().is_empty() && m.authoritative(), "{nibbles}");
        }
        for nibbles in [15, 4, 0] {
            assert!(
                matches!(ptr(&ip6_arpa("fd00:1::4", nibbles)), Reply::Forward { .. }),
                "{nibbles}"
            );
        }
        // The IPv4 side reads its partial names the same way.
        let m = parsed(ptr("0.1.10.in-addr.arpa."));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(matches!(ptr("1.10.in-addr.arpa."), Reply::Forward { .. }));
    }

    #[test]
    fn malformed_ip6_arpa_names_under_berth_are_nxdomain_and_others_go_upstream() {
        let t = dual();
        let (gw1, c4) = (ip("fd00:1::1"), ip("fd00:1::4"));
        let ptr = |name: &str| reply(&t, gw1, c4, &query(name, RecordType::PTR));
        let full = ip6_arpa("fd00:1::4", 32);
        let partial = ip6_arpa("fd00:1::4", 20);
        for bad in [
            format!("0.{full}"),
            format!("10.{partial}"),
            format!("g.{partial}"),
            format!("x-y.{partial}"),
            "02.0.1.10.in-addr.arpa.".to_string(),
        ] {
            let m = parsed(ptr(&bad));
            assert_eq!(m.response_code(), ResponseCode::NXDomain, "{bad}");
        }
        for bad in [
            "zz.ip6.arpa.",
            "10.d.f.ip6.arpa.",
            "x.8.b.d.0.1.0.0.2.ip6.arpa.",
        ] {
            assert!(matches!(ptr(bad), Reply::Forward { .. }), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_are_admitted_by_their_network_and_refused_from_elsewhere() {
        let t = dual();
        let gw1 = ip("fd00:1::1");
        for outside in ["fd00:2::6", "2001:db8::7", "::1", "10.9.0.2"] {
            let m = parsed(reply(&t, gw1, ip(outside), &query("c4.", RecordType::AAAA)));
            assert_eq!(m.response_code(), ResponseCode::Refused, "{outside}");
        }
        // The host on the gateway, and an address of the subnet berth
        // does not know (it sees the network it asked).
        for inside in ["fd00:1::1", "fd00:1::abcd"] {
            let m = parsed(reply(&t, gw1, ip(inside), &query("c4.", RecordType::AAAA)));
            assert_eq!(records(&m), ["AAAA fd00:1::4"], "{inside}");
        }
        assert_eq!(
            reply(
                &t,
                gw1,
                ip("fd00:1::4"),
                &query("example.com.", RecordType::AAAA)
            ),
            Reply::Forward { max_len: 512 }
        );
    }
}
