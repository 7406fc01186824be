//! Forwarding to the host's resolvers: the `nameserver`s of the host's
//! /etc/resolv.conf (re-read when the file changes), asked from the host's
//! namespace, so a stub resolver on 127.0.0.53 serves containers too.
//! Either family: an IPv6 server (a link-local one through its zone's
//! interface) is asked from an IPv6 socket, whichever family the client
//! asked over.
//!
//! The query goes out byte for byte (ID and flags as the client sent them)
//! from a fresh socket (a random source port per query), and the upstream's
//! reply comes back byte for byte. A truncated UDP reply is asked again
//! over TCP; no reply in time is a SERVFAIL, never silence.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::answer::{question_end, servfail};
use super::resolv::ResolvConf;

/// Past this, the client (glibc waits 5 s) gets SERVFAIL rather than nothing.
const TOTAL_BUDGET: Duration = Duration::from_millis(4000);
/// How often the file's modification time is looked at, at most.
const RECHECK: Duration = Duration::from_secs(1);

/// The upstream servers, following the host's resolv.conf.
pub struct Upstreams {
    path: PathBuf,
    /// Our own listening addresses: never forwarded to (a loop).
    own: Mutex<Vec<IpAddr>>,
    state: Mutex<State>,
}

struct State {
    servers: Vec<SocketAddr>,
    stamp: Option<(SystemTime, u64, u64)>,
    checked: Option<Instant>,
}

impl Upstreams {
    pub fn new(path: PathBuf) -> Upstreams {
        Upstreams {
            path,
            own: Mutex::new(Vec::new()),
            state: Mutex::new(State {
                servers: Vec::new(),
                stamp: None,
                checked: None,
            }),
        }
    }

    /// Sets the addresses the server listens on (excluded as upstreams).
    pub fn set_own(&self, own: Vec<IpAddr>) {
        *self.own.lock().unwrap() = own;
        self.state.lock().unwrap().stamp = None;
    }

    /// The servers to ask now, re-reading the file if it changed.
    pub fn servers(&self) -> Vec<SocketAddr> {
        use std::os::unix::fs::MetadataExt;
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        if st.checked.is_some_and(|c| now.duration_since(c) < RECHECK) {
            return st.servers.clone();
        }
        st.checked = Some(now);
        let stamp = std::fs::metadata(&self.path).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.ino(),
                m.len(),
            )
        });
        if stamp.is_some() && stamp == st.stamp {
            return st.servers.clone();
        }
        st.stamp = stamp;
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let conf = ResolvConf::parse(&text);
        let own = self.own.lock().unwrap().clone();
        let mut servers: Vec<SocketAddr> = conf
            .nameservers
            .iter()
            .filter(|s| !own.contains(&s.ip()))
            .copied()
            .collect();
        if servers.is_empty() && conf.nameservers.is_empty() {
            // What glibc does without a nameserver line.
            servers.push(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
        }
        eprintln!(
            "berth-dns: upstream servers {servers:?} (from {})",
            self.path.display()
        );
        st.servers = servers.clone();
        servers
    }
}

/// Asks the upstream servers in turn (the network's own, `network`, if it
/// has any, else the host's) and returns the first reply, or a SERVFAIL.
/// `max_len` is what the client takes: a UDP reply truncated upstream is
/// fetched again over TCP and passed on if it fits.
pub async fn forward(
    upstreams: &Upstreams,
    network: &[SocketAddr],
    query: &[u8],
    max_len: usize,
) -> Vec<u8> {
    let servers = match network {
        [] => upstreams.servers(),
        own => own.to_vec(),
    };
    if servers.is_empty() {
        return servfail(query);
    }
    let each = TOTAL_BUDGET / servers.len() as u32;
    for server in servers {
        match ask_udp(server, query, each, max_len).await {
            // Truncated upstream, or more than the client takes (our
            // buffer is that size, so a full one may have been cut).
            Some(reply) if reply[2] & 0x02 != 0 || reply.len() >= max_len => {
                if let Some(full) = ask_tcp(server, query, each).await {
                    if full.len() <= max_len {
                        return full;
                    }
                }
                let mut cut = reply;
                cut.truncate(12);
                cut[2] |= 0x02;
                cut[6..12].fill(0);
                return with_question(cut, query);
            }
            Some(reply) => return reply,
            None => continue,
        }
    }
    servfail(query)
}

/// A truncated reply for the client: the upstream's header (TC set, no
/// records) and the client's own question, so it retries over TCP.
fn with_question(mut header: Vec<u8>, query: &[u8]) -> Vec<u8> {
    match question_end(query) {
        Some(end) => {
            header[4..6].copy_from_slice(&[0, 1]);
            header.extend_from_slice(&query[12..end]);
        }
        None => header[4..6].fill(0),
    }
    header
}

/// One UDP exchange. The buffer is the client's size: a bigger reply is
/// of no use to it, and in-flight forwards then cost what they carry.
async fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    limit: Duration,
    max_len: usize,
) -> Option<Vec<u8>> {
    // Made non-blocking in the one call, and connected without a bind
    // first (the connect binds a random port): two system calls fewer
    // than tokio's bind and connect, on every forwarded query.
    let sock = Socket::new(Domain::for_address(server), Type::DGRAM.nonblocking(), None).ok()?;
    sock.connect(&server.into()).ok()?;
    let sock = UdpSocket::from_std(sock.into()).ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; max_len];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            // Timeout, or an ICMP error (nothing listens there).
            _ => return None,
        };
        // A stray datagram with another ID is not the answer.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn ask_tcp(server: SocketAddr, query: &[u8], limit: Duration) -> Option<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(server).await.ok()?;
        let mut out = (query.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(query);
        s.write_all(&out).await.ok()?;
        let len = s.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    timeout(limit, exchange).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, TcpListener};

    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::rdata::AAAA;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x4242).set_recursion_desired(true);
        m.add_query(Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::AAAA,
        ));
        m.to_vec().unwrap()
    }

    /// The upstream's answer to `query`: `truncated` (TC, no records), or
    /// one AAAA record.
    fn upstream_reply(query: &[u8], truncated: bool) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut m = Message::new();
        m.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_truncated(truncated);
        m.add_queries(q.queries().iter().cloned());
        if !truncated {
            m.add_answer(Record::from_rdata(
                q.queries()[0].name().clone(),
                60,
                RData::AAAA(AAAA("2001:db8::53".parse().unwrap())),
            ));
        }
        m.to_vec().unwrap()
    }

    /// A fake upstream on ::1: over UDP it answers truncated (when
    /// `truncate`) or whole; over TCP, on the same port, whole. Counts
    /// the queries that came over each.
    fn fake_upstream(truncate: bool) -> (SocketAddr, std::sync::mpsc::Receiver<&'static str>) {
        let tcp = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = std::net::UdpSocket::bind(addr).unwrap();
        let (seen, heard) = std::sync::mpsc::channel();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = udp.recv_from(&mut buf) {
                let _ = seen.send("udp");
                let _ = udp.send_to(&upstream_reply(&buf[..n], truncate), peer);
            }
        });
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            while let Ok((mut s, _)) = tcp.accept() {
                let _ = seen2.send("tcp");
                let mut len = [0u8; 2];
                s.read_exact(&mut len).unwrap();
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut q).unwrap();
                let reply = upstream_reply(&q, false);
                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                s.write_all(&out).unwrap();
            }
        });
        (addr, heard)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn answers(reply: &[u8]) -> Vec<String> {
        let m = Message::from_vec(reply).unwrap();
        assert_eq!(m.id(), 0x4242);
        m.answers().iter().map(|r| r.data().to_string()).collect()
    }

    #[test]
    fn forwards_to_an_ipv6_upstream_over_udp_and_tcp() {
        let upstreams = Upstreams::new("/nonexistent/resolv.conf".into());
        let q = query("www.example.");
        let (plain, heard) = fake_upstream(false);
        let reply = runtime().block_on(forward(&upstreams, &[plain], &q, 512));
        assert_eq!(answers(&reply), ["2001:db8::53"]);
        assert_eq!(heard.try_iter().collect::<Vec<_>>(), ["udp"]);
        // Truncated over UDP: asked again over TCP, to the same IPv6 server.
        let (cut, heard) = fake_upstream(true);
        let reply = runtime().block_on(forward(&upstreams, &[cut], &q, 512));
        assert_eq!(answers(&reply), ["2001:db8::53"]);
        assert_eq!(heard.try_iter().collect::<Vec<_>>(), ["udp", "tcp"]);
    }

    #[test]
    fn ipv6_nameservers_of_resolv_conf_are_asked_with_their_zone_but_never_our_own() {
        let dir = std::env::temp_dir().join(format!("berth-upstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver fd00:1::1\nnameserver fe80::53%lo\nnameserver 2001:db8::53\n",
        )
        .unwrap();
        let upstreams = Upstreams::new(path);
        // fd00:1::1 is a gateway berth listens on: a loop.
        upstreams.set_own(vec!["fd00:1::1".parse().unwrap()]);
        let servers = upstreams.servers();
        assert_eq!(
            servers,
            [
                "[fe80::53%1]:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
