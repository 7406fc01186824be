//! `berth-probe`: a small traffic probe that the integration tests and the
//! benchmarks run inside network namespaces, so that they do not depend on
//! ping, curl or netcat being installed.
//!
//! Addresses are IPv4 or IPv6: `ADDR:PORT` is `10.0.0.2:80` or
//! `[fd00::2]:80` (a link-local one with its zone, `[fe80::1%eth0]:80`),
//! `ADDR` is bare. A server on an "any" address (`0.0.0.0:P` or `[::]:P`)
//! listens on both families (`listen`).
//!
//! Servers print `ready` once bound and reply to every line (TCP) or datagram
//! (UDP) with `<payload> from <peer-ip>:<peer-port>`, so a client can check
//! both reachability and which source address the server saw (masquerade,
//! source-address preservation). Clients exit 0 only when the reply echoes
//! their payload; otherwise they print one line on stderr and exit 1. Bad
//! arguments exit 2. `raw-send` and `raw-recv` craft and watch Ethernet
//! frames (see `frames`), for the attacks that no ordinary socket makes.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: berth-probe tcp-serve|udp-serve|tcp-sink|sctp-serve ADDR:PORT \
| tcp-connect|udp-send|sctp-connect ADDR:PORT [--payload P] [--timeout-ms N] [--source-port N] \
| ping ADDR [--timeout-ms N] \
| tcp-source ADDR:PORT \
| tcp-rate|tcp-throughput|tcp-download ADDR:PORT --seconds S \
| dns-serve ADDR:PORT \
| dns-flood ADDR:PORT --name NAME --qps N --seconds S [--linger-ms N] \
| tcp-hold ADDR:PORT --count N --seconds S [--partial] \
| tcp-reset ADDR:PORT --count N \
| raw-send IFACE udp|arp-reply|arp-request|na|ns [--src-mac M] [--dst-mac M] [--sha M] [--src IP] [--dst IP] [--sport N] [--dport N] [--payload P] [--target IP6] [--flags N] [--lladdr M|none] [--count N] \
| raw-recv IFACE [--udp-dport N] [--arp [--spa IP]] [--nd [--target IP6]] [--payload P] [--timeout-ms N] \
(ADDR:PORT is 10.0.0.2:80 or [fd00::2]:80)";

#[path = "probe/frames.rs"]
mod frames;
#[path = "probe/frames6.rs"]
mod frames6;
#[path = "probe/listen.rs"]
mod listen;
#[path = "probe/ping.rs"]
mod ping;

/// A failure: the exit code and the one line for stderr.
struct Failure(u8, String);

fn usage(msg: impl std::fmt::Display) -> Failure {
    Failure(2, format!("berth-probe: {msg}; {USAGE}"))
}

fn fail(msg: impl std::fmt::Display) -> Failure {
    Failure(1, format!("berth-probe: {msg}"))
}

/// Parsed command-line options shared by the subcommands.
struct Opts {
    target: String,
    payload: Option<String>,
    timeout: Duration,
    seconds: Option<f64>,
    /// Local port of a client socket (0: any).
    source_port: u16,
}

fn parse_opts(args: &[String]) -> Result<Opts, Failure> {
    let mut target = None;
    let mut payload = None;
    let mut timeout = Duration::from_millis(2000);
    let mut seconds = None;
    let mut source_port = 0;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--payload" => {
                let p = value("--payload")?;
                if p.is_empty() || p.contains('\n') {
                    return Err(usage(format!("bad payload {p:?}")));
                }
                payload = Some(p);
            }
            "--timeout-ms" => {
                let v = value("--timeout-ms")?;
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| usage(format!("bad --timeout-ms {v:?}")))?;
                timeout = Duration::from_millis(ms);
            }
            "--source-port" => {
                let v = value("--source-port")?;
                source_port = v
                    .parse()
                    .map_err(|_| usage(format!("bad --source-port {v:?}")))?;
            }
            "--seconds" => {
                let v = value("--seconds")?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| usage(format!("bad --seconds {v:?}")))?;
                seconds = Some(s);
            }
            a if a.starts_with("--") => return Err(usage(format!("unknown option {a:?}"))),
            a => {
                if target.is_some() {
                    return Err(usage(format!("unexpected argument {a:?}")));
                }
                target = Some(a.to_string());
            }
        }
    }
    let target = target.ok_or_else(|| usage("missing address"))?;
    Ok(Opts {
        target,
        payload,
        timeout,
        seconds,
        source_port,
    })
}

/// `a.b.c.d:P`, `[v6]:P`, or `[v6%zone]:P` with an interface name as zone.
fn sockaddr(s: &str) -> Result<SocketAddr, Failure> {
    let bad = || usage(format!("bad ADDR:PORT {s:?}"));
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let (host, port) = s
        .strip_prefix('[')
        .and_then(|r| r.split_once("]:"))
        .ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let mut a = ping::parse(host)?;
    a.set_port(port);
    Ok(a)
}

fn token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("probe-{}-{nanos:08x}", std::process::id())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let (cmd, rest) = args.split_first().ok_or_else(|| usage("missing command"))?;
    if let Some(done) = dns_load::dispatch(cmd, rest) {
        return done;
    }
    // Crafted frames take interface names and frame fields, not ADDR:PORT.
    match cmd.as_str() {
        "raw-send" => return frames::send(rest),
        "raw-recv" => return frames::recv(rest),
        _ => {}
    }
    const COMMANDS: [&str; 13] = [
        "dns-serve",
        "sctp-serve",
        "sctp-connect",
        "tcp-serve",
        "tcp-sink",
        "tcp-source",
        "tcp-download",
        "udp-serve",
        "tcp-connect",
        "udp-send",
        "ping",
        "tcp-rate",
        "tcp-throughput",
    ];
    if !COMMANDS.contains(&cmd.as_str()) {
        return Err(usage(format!("unknown command {cmd:?}")));
    }
    let opts = parse_opts(rest)?;
    let only_target = |o: &Opts| {
        if o.payload.is_some() || o.seconds.is_some() {
            Err(usage(format!("{cmd} takes only ADDR:PORT")))
        } else {
            Ok(())
        }
    };
    match cmd.as_str() {
        "tcp-serve" => {
            only_target(&opts)?;
            tcp_serve(sockaddr(&opts.target)?, echo_conn)
        }
        "tcp-sink" => {
            only_target(&opts)?;
            tcp_serve(sockaddr(&opts.target)?, sink_conn)
        }
        "tcp-source" => {
            only_target(&opts)?;
            tcp_serve(sockaddr(&opts.target)?, source_conn)
        }
        "udp-serve" => {
            only_target(&opts)?;
            udp_serve(sockaddr(&opts.target)?)
        }
        "dns-serve" => {
            only_target(&opts)?;
            dns::serve(sockaddr(&opts.target)?)
        }
        "sctp-serve" => {
            only_target(&opts)?;
            let listeners = sctp::listen(sockaddr(&opts.target)?)?;
            say_ready();
            listen::serve_all(listeners, |l| {
                for conn in l.incoming() {
                    let Ok(stream) = conn else { continue };
                    std::thread::spawn(move || echo_conn(stream));
                }
                Ok(())
            })
        }
        "tcp-connect" | "udp-send" | "sctp-connect" => {
            if opts.seconds.is_some() {
                return Err(usage(format!("{cmd} does not take --seconds")));
            }
            let addr = sockaddr(&opts.target)?;
            let payload = opts.payload.clone().unwrap_or_else(token);
            let reply = match cmd.as_str() {
                "tcp-connect" => tcp_exchange(addr, &payload, opts.timeout, opts.source_port)?,
                "sctp-connect" => {
                    let stream = sctp::connect(addr)?;
                    stream_exchange(stream, addr, &payload, opts.timeout)?
                }
                _ => udp_exchange(addr, &payload, opts.timeout, opts.source_port)?,
            };
            println!("{reply}");
            if reply.starts_with(&payload) {
                Ok(())
            } else {
                Err(fail(format!(
                    "mismatch: sent {payload:?}, got {reply:?} from {addr}"
                )))
            }
        }
        "ping" => {
            if opts.payload.is_some() || opts.seconds.is_some() {
                return Err(usage("ping takes only ADDR [--timeout-ms N]"));
            }
            ping::ping(ping::parse(&opts.target)?, opts.timeout)
        }
        "tcp-rate" | "tcp-throughput" | "tcp-download" => {
            let secs = opts
                .seconds
                .ok_or_else(|| usage(format!("{cmd} needs --seconds S")))?;
            let addr = sockaddr(&opts.target)?;
            let dur = Duration::from_secs_f64(secs);
            match cmd.as_str() {
                "tcp-rate" => tcp_rate(addr, dur, opts.payload.unwrap_or_else(token), opts.timeout),
                "tcp-throughput" => tcp_throughput(addr, dur, opts.timeout),
                _ => tcp_download(addr, dur, opts.timeout),
            }
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn say_ready() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

fn tcp_serve(addr: SocketAddr, serve: fn(TcpStream)) -> Result<(), Failure> {
    let listeners = listen::streams(addr, None)?;
    say_ready();
    let mut threads = Vec::new();
    for l in listeners {
        threads.push(std::thread::spawn(move || accept_loop(l, serve)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn accept_loop(listener: TcpListener, serve: fn(TcpStream)) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        std::thread::spawn(move || serve(stream));
    }
}

/// Sends to the peer as fast as it takes the data, until it closes.
fn source_conn(mut stream: TcpStream) {
    let buf = vec![0xa5u8; 128 * 1024];
    while stream.write_all(&buf).is_ok() {}
}

fn echo_conn(stream: TcpStream) {
    let Ok(peer) = stream.peer_addr().map(listen::shown) else {
        return;
    };
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let Ok(line) = line else { return };
        let line = line.trim_end_matches('\r');
        if writeln!(writer, "{line} from {}:{}", peer.ip(), peer.port()).is_err() {
            return;
        }
    }
}

fn sink_conn(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

fn udp_serve(addr: SocketAddr) -> Result<(), Failure> {
    let socks = listen::datagrams(addr)?;
    // Options first, so that `ready` means every socket answers.
    for s in &socks {
        match s.local_addr().map(|a| a.ip()) {
            Ok(IpAddr::V4(a)) if a.is_unspecified() => {
                nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Ipv4PacketInfo, &true)
                    .map_err(|e| fail(format!("cannot set IP_PKTINFO: {e}")))?
            }
            Ok(IpAddr::V6(a)) if a.is_unspecified() => nix::sys::socket::setsockopt(
                s,
                nix::sys::socket::sockopt::Ipv6RecvPacketInfo,
                &true,
            )
            .map_err(|e| fail(format!("cannot set IPV6_RECVPKTINFO: {e}")))?,
            _ => {}
        }
    }
    say_ready();
    listen::serve_all(socks, |sock| match sock.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(a)) if a.is_unspecified() => udp_serve_any4(sock),
        Ok(IpAddr::V6(a)) if a.is_unspecified() => udp_serve_any6(sock),
        _ => udp_serve_one(sock),
    })
}

fn udp_serve_one(sock: UdpSocket) -> Result<(), Failure> {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let _ = sock.send_to(udp_reply(&buf[..n], peer).as_bytes(), peer);
    }
}

fn udp_reply(data: &[u8], peer: SocketAddr) -> String {
    let payload = String::from_utf8_lossy(data);
    let payload = payload.trim_end_matches(['\n', '\r']);
    let peer = listen::shown(peer);
    format!("{payload} from {}:{}", peer.ip(), peer.port())
}

/// A UDP server bound to 0.0.0.0 answers from the address each datagram was
/// sent to (IP_PKTINFO), as a client's connected socket only accepts replies
/// from the address it contacted.
fn udp_serve_any4(sock: UdpSocket) -> Result<(), Failure> {
    use nix::sys::socket::{
        recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
        SockaddrIn,
    };
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;
    setsockopt(&sock, sockopt::Ipv4PacketInfo, &true)
        .map_err(|e| fail(format!("cannot set IP_PKTINFO: {e}")))?;
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; 65536];
    let mut cmsg_buf = nix::cmsg_space!(nix::libc::in_pktinfo);
    loop {
        let (n, peer, info) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) =
                recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg_buf), MsgFlags::empty())
            else {
                continue;
            };
            let mut info = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::Ipv4PacketInfo(pi) = c {
                        info = Some(pi);
                    }
                }
            }
            let Some(peer) = msg.address else { continue };
            (msg.bytes, peer, info)
        };
        let peer_std = SocketAddr::from(std::net::SocketAddrV4::from(peer));
        let reply = udp_reply(&buf[..n], peer_std);
        let iov = [IoSlice::new(reply.as_bytes())];
        match info {
            Some(mut pi) => {
                pi.ipi_spec_dst = pi.ipi_addr;
                pi.ipi_ifindex = 0;
                let cmsg = [ControlMessage::Ipv4PacketInfo(&pi)];
                let _ = sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&peer));
            }
            None => {
                let _ = sock.send_to(reply.as_bytes(), peer_std);
            }
        }
    }
}

/// The IPv6 twin of [`udp_serve_any4`] (IPV6_PKTINFO): replies leave from
/// the address each datagram was sent to.
fn udp_serve_any6(sock: UdpSocket) -> Result<(), Failure> {
    use nix::sys::socket::{
        recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6,
    };
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; 65536];
    let mut cmsg_buf = nix::cmsg_space!(nix::libc::in6_pktinfo);
    loop {
        let (n, peer, info) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) =
                recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg_buf), MsgFlags::empty())
            else {
                continue;
            };
            let mut info = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::Ipv6PacketInfo(pi) = c {
                        info = Some(pi);
                    }
                }
            }
            let Some(peer) = msg.address else { continue };
            (msg.bytes, peer, info)
        };
        let peer_std = SocketAddr::from(std::net::SocketAddrV6::from(peer));
        let reply = udp_reply(&buf[..n], peer_std);
        let iov = [IoSlice::new(reply.as_bytes())];
        match info {
            Some(pi) => {
                // The interface only matters for a link-local address.
                let mut pi = pi;
                let local = std::net::Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                if !local.is_unicast_link_local() {
                    pi.ipi6_ifindex = 0;
                }
                let cmsg = [ControlMessage::Ipv6PacketInfo(&pi)];
                let _ = sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&peer));
            }
            None => {
                let _ = sock.send_to(reply.as_bytes(), peer_std);
            }
        }
    }
}

fn io_fail(what: &str, addr: SocketAddr, e: &std::io::Error) -> Failure {
    match e.kind() {
        ErrorKind::ConnectionRefused => fail(format!("refused: {what} {addr}: {e}")),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => fail(format!("timeout: {what} {addr}: {e}")),
        _ => fail(format!("error: {what} {addr}: {e}")),
    }
}

fn remaining(deadline: Instant, addr: SocketAddr, what: &str) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        Err(fail(format!("timeout: {what} {addr}")))
    } else {
        Ok(left)
    }
}

fn tcp_exchange(
    addr: SocketAddr,
    payload: &str,
    timeout: Duration,
    source_port: u16,
) -> Result<String, Failure> {
    let stream = if source_port == 0 {
        TcpStream::connect_timeout(&addr, timeout)
    } else {
        // A fixed source port makes the flow one a filter can name exactly.
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
        let _ = sock.set_reuse_address(true);
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, source_port).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, source_port).into(),
        };
        sock.bind(&local.into())
            .map_err(|e| fail(format!("cannot bind: {e}")))?;
        sock.connect_timeout(&addr.into(), timeout)
            .map(|()| TcpStream::from(sock))
    }
    .map_err(|e| io_fail("connecting to", addr, &e))?;
    stream_exchange(stream, addr, payload, timeout)
}

/// One line out, one line back, over a connected stream (TCP or SCTP).
fn stream_exchange(
    stream: TcpStream,
    addr: SocketAddr,
    payload: &str,
    timeout: Duration,
) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let mut writer = stream.try_clone().map_err(fail)?;
    writer
        .write_all(format!("{payload}\n").as_bytes())
        .map_err(|e| io_fail("sending to", addr, &e))?;
    stream
        .set_read_timeout(Some(remaining(deadline, addr, "waiting for reply from")?))
        .map_err(fail)?;
    let mut line = String::new();
    let n = BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| io_fail("waiting for reply from", addr, &e))?;
    if n == 0 {
        return Err(fail(format!("closed: {addr} closed the connection")));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn udp_exchange(
    addr: SocketAddr,
    payload: &str,
    timeout: Duration,
    source_port: u16,
) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let mut local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    local.set_port(source_port);
    let sock = UdpSocket::bind(local).map_err(|e| fail(format!("cannot bind: {e}")))?;
    sock.connect(addr)
        .map_err(|e| io_fail("connecting to", addr, &e))?;
    // Send up to five times within the timeout.
    let interval = (timeout / 5).max(Duration::from_millis(50));
    let mut buf = vec![0u8; 65536];
    let mut refused = false;
    loop {
        let left = match remaining(deadline, addr, "waiting for reply from") {
            Ok(left) => left,
            Err(_) if refused => return Err(fail(format!("refused: {addr} (port unreachable)"))),
            Err(e) => return Err(e),
        };
        if let Err(e) = sock.send(payload.as_bytes()) {
            if e.kind() == ErrorKind::ConnectionRefused {
                refused = true;
            } else {
                return Err(io_fail("sending to", addr, &e));
            }
        }
        let wait_until = Instant::now() + interval.min(left);
        loop {
            let left = wait_until.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            sock.set_read_timeout(Some(left)).map_err(fail)?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let reply = String::from_utf8_lossy(&buf[..n]);
                    return Ok(reply.trim_end_matches(['\n', '\r']).to_string());
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    refused = true;
                    // Avoid spinning: wait out this interval before retrying.
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(io_fail("waiting for reply from", addr, &e)),
            }
        }
    }
}

fn tcp_rate(
    addr: SocketAddr,
    dur: Duration,
    payload: String,
    timeout: Duration,
) -> Result<(), Failure> {
    let start = Instant::now();
    let mut ok: u64 = 0;
    let mut last_err = None;
    while start.elapsed() < dur {
        match tcp_exchange(addr, &payload, timeout, 0) {
            Ok(reply) if reply.starts_with(&payload) => ok += 1,
            Ok(reply) => last_err = Some(format!("mismatch: got {reply:?}")),
            Err(Failure(_, msg)) => last_err = Some(msg),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("connections_per_sec {:.1}", ok as f64 / secs);
    if ok == 0 {
        return Err(fail(format!(
            "no successful connection to {addr}: {}",
            last_err.unwrap_or_default()
        )));
    }
    Ok(())
}

fn tcp_throughput(addr: SocketAddr, dur: Duration, timeout: Duration) -> Result<(), Failure> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| io_fail("connecting to", addr, &e))?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    let buf = vec![0x5au8; 128 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed() < dur {
        let n = stream
            .write(&buf)
            .map_err(|e| io_fail("sending to", addr, &e))?;
        sent += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("mbit_per_sec {:.1}", sent as f64 * 8.0 / secs / 1e6);
    Ok(())
}

/// Receives from a `tcp-source` for `dur` and prints the rate it arrived
/// at, counted from the first byte. Counting at the receiver measures the
/// path: a sender's count includes what still sits in its socket buffer
/// (megabytes, seconds' worth at a limited rate).
fn tcp_download(addr: SocketAddr, dur: Duration, timeout: Duration) -> Result<(), Failure> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| io_fail("connecting to", addr, &e))?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut received: u64 = 0;
    let mut start = None;
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| io_fail("receiving from", addr, &e))?;
        if n == 0 {
            return Err(fail(format!("{addr} closed the stream")));
        }
        let first = *start.get_or_insert_with(Instant::now);
        received += n as u64;
        if first.elapsed() >= dur {
            break;
        }
    }
    let secs = start.expect("a byte arrived").elapsed().as_secs_f64();
    println!("mbit_per_sec {:.2}", received as f64 * 8.0 / secs / 1e6);
    Ok(())
}

/// SCTP one-to-one sockets, which read and write like TCP streams, of
/// either family. If the kernel has no SCTP, the probe exits 3 with one
/// line saying so (tests skip on it).
mod sctp {
    use super::{fail, listen, Failure};
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    const IPPROTO_SCTP: i32 = 132;

    fn no_sctp(e: std::io::Error) -> Failure {
        Failure(3, format!("berth-probe: no SCTP in this kernel: {e}"))
    }

    pub fn listen(addr: SocketAddr) -> Result<Vec<TcpListener>, Failure> {
        // Tell a kernel without SCTP from a port in use.
        Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(Protocol::from(IPPROTO_SCTP)),
        )
        .map_err(no_sctp)?;
        listen::streams(addr, Some(Protocol::from(IPPROTO_SCTP)))
    }

    pub fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(Protocol::from(IPPROTO_SCTP)),
        )
        .map_err(no_sctp)?;
        sock.connect(&addr.into())
            .map_err(|e| fail(format!("connecting to {addr}: {e}")))?;
        Ok(TcpStream::from(sock))
    }
}

/// A fake upstream DNS server for the DNS tests, on UDP and TCP: every A
/// query gets 192.0.2.10, except `big.*` (truncated over UDP; 40 records
/// over TCP) and `slow.*` (never answered). Each query's name is printed
/// (`query NAME udp|tcp`), so a test can tell what reached upstream.
mod dns {
    use super::*;

    pub fn serve(addr: SocketAddr) -> Result<(), Failure> {
        let udp = UdpSocket::bind(addr).map_err(|e| fail(format!("udp {addr}: {e}")))?;
        let tcp = TcpListener::bind(addr).map_err(|e| fail(format!("tcp {addr}: {e}")))?;
        say_ready();
        std::thread::spawn(move || {
            for conn in tcp.incoming() {
                let Ok(mut stream) = conn else { continue };
                std::thread::spawn(move || {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).is_ok() {
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if stream.read_exact(&mut q).is_err() {
                            return;
                        }
                        if let Some(r) = reply(&q, true) {
                            let mut out = (r.len() as u16).to_be_bytes().to_vec();
                            out.extend_from_slice(&r);
                            let _ = stream.write_all(&out);
                        }
                    }
                });
            }
        });
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                continue;
            };
            if let Some(r) = reply(&buf[..n], false) {
                let _ = udp.send_to(&r, peer);
            }
        }
    }

    /// The question's name (dotted, lower case) and where the question ends.
    fn question(q: &[u8]) -> Option<(String, usize)> {
        let mut i = 12;
        let mut labels = Vec::new();
        loop {
            let len = *q.get(i)? as usize;
            i += 1;
            if len == 0 {
                break;
            }
            labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
            i += len;
        }
        q.get(i + 3)?;
        Some((labels.join("."), i + 4))
    }

    fn reply(q: &[u8], tcp: bool) -> Option<Vec<u8>> {
        if q.len() < 12 || q[2] & 0x80 != 0 {
            return None;
        }
        let (name, end) = question(q)?;
        println!("query {name} {}", if tcp { "tcp" } else { "udp" });
        let _ = std::io::stdout().flush();
        if name.starts_with("slow.") {
            return None;
        }
        let qtype = u16::from_be_bytes([q[end - 4], q[end - 3]]);
        let mut out = q[..end].to_vec();
        out[2] = 0x80 | (q[2] & 0x01); // QR, RD as asked
        out[3] = 0x80; // RA, NOERROR
        out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        let count: u8 = match (qtype, name.starts_with("big."), tcp) {
            (1, true, false) => {
                out[2] |= 0x02; // TC
                0
            }
            (1, true, true) => 40,
            (1, false, _) => 1,
            _ => 0,
        };
        out[7] = count;
        for i in 0..count {
            // Name by pointer to the question, A, IN, TTL 60, 4 bytes.
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            out.extend_from_slice(&[192, 0, 2, if count == 1 { 10 } else { i + 1 }]);
        }
        Some(out)
    }
}

/// Load that a DNS server must survive, for the tests of its limits:
///
/// - `dns-flood`: UDP queries for one name at a steady rate, replies read
///   as they come and counted by response code (`sent N replies N noerror
///   N servfail N refused N nxdomain N`).
/// - `tcp-hold`: N TCP connections opened and then left idle (or, with
///   `--partial`, sent the first byte of a message and no more), held for
///   S seconds; prints `ready` once all are attempted, then `connected N
///   reset N failed N still-open N`: connected counts every completed
///   handshake, reset those the server reset before this side looked,
///   still-open those the server had not closed by the end.
/// - `tcp-reset`: N connections that each send a truncated message (a
///   length prefix of 64 and 10 bytes) and then reset the connection
///   (SO_LINGER 0), the input that sent one server into a busy loop.
mod dns_load {
    use super::*;
    use std::os::fd::AsRawFd;

    pub fn dispatch(cmd: &str, args: &[String]) -> Option<Result<(), Failure>> {
        if !matches!(cmd, "dns-flood" | "tcp-hold" | "tcp-reset") {
            return None;
        }
        Some(parse(args).and_then(|o| match cmd {
            "dns-flood" => flood(&o),
            "tcp-hold" => hold(&o),
            _ => reset(&o),
        }))
    }

    struct Load {
        addr: SocketAddr,
        name: String,
        qps: u64,
        seconds: f64,
        count: usize,
        partial: bool,
        linger: Duration,
    }

    fn parse(args: &[String]) -> Result<Load, Failure> {
        let mut load = Load {
            addr: "0.0.0.0:0".parse().unwrap(),
            name: "www.example.com".into(),
            qps: 100,
            seconds: 1.0,
            count: 1,
            partial: false,
            linger: Duration::from_millis(1000),
        };
        let mut target = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{flag} needs a value")))
            };
            let number = |flag: &str, v: String| {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0 && *n <= 1e6)
                    .ok_or_else(|| usage(format!("bad {flag} {v:?}")))
            };
            match arg.as_str() {
                "--name" => load.name = value("--name")?,
                "--qps" => load.qps = number("--qps", value("--qps")?)? as u64,
                "--seconds" => load.seconds = number("--seconds", value("--seconds")?)?,
                "--count" => load.count = number("--count", value("--count")?)? as usize,
                "--linger-ms" => {
                    let ms = number("--linger-ms", value("--linger-ms")?)?;
                    load.linger = Duration::from_millis(ms as u64);
                }
                "--partial" => load.partial = true,
                a if a.starts_with("--") => return Err(usage(format!("unknown option {a:?}"))),
                a if target.is_none() => target = Some(sockaddr(a)?),
                a => return Err(usage(format!("unexpected argument {a:?}"))),
            }
        }
        load.addr = target.ok_or_else(|| usage("missing address"))?;
        Ok(load)
    }

    /// A query for `name`, type A, with recursion desired.
    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn flood(o: &Load) -> Result<(), Failure> {
        let any: SocketAddr = if o.addr.is_ipv6() {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let sock = UdpSocket::bind(any).map_err(|e| fail(format!("bind: {e}")))?;
        sock.connect(o.addr)
            .map_err(|e| io_fail("connecting to", o.addr, &e))?;
        sock.set_nonblocking(true).map_err(fail)?;
        let start = Instant::now();
        let run = Duration::from_secs_f64(o.seconds);
        let mut sent: u64 = 0;
        let mut codes = [0u64; 16];
        let mut buf = [0u8; 4096];
        loop {
            let elapsed = start.elapsed();
            if elapsed >= run + o.linger {
                break;
            }
            if elapsed < run {
                let due = (elapsed.as_secs_f64() * o.qps as f64) as u64;
                while sent < due {
                    match sock.send(&query(sent as u16, &o.name)) {
                        Ok(_) => sent += 1,
                        // A full socket buffer or an ICMP error: try later.
                        Err(_) => break,
                    }
                }
            }
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) if n >= 12 => codes[usize::from(buf[3] & 0x0f)] += 1,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        println!(
            "sent {sent} replies {} noerror {} servfail {} refused {} nxdomain {}",
            codes.iter().sum::<u64>(),
            codes[0],
            codes[2],
            codes[5],
            codes[3]
        );
        Ok(())
    }

    fn hold(o: &Load) -> Result<(), Failure> {
        let mut conns = Vec::new();
        let (mut reset, mut failed) = (0, 0);
        for _ in 0..o.count {
            match TcpStream::connect_timeout(&o.addr, Duration::from_secs(1)) {
                Ok(mut s) => {
                    // The first byte of a two-byte length, and then nothing.
                    if o.partial {
                        let _ = s.write_all(&[0x00]);
                    }
                    conns.push(s);
                }
                // Accepted and reset before this side looked.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => reset += 1,
                Err(_) => failed += 1,
            }
        }
        say_ready();
        std::thread::sleep(Duration::from_secs_f64(o.seconds));
        let open = conns.iter_mut().map(still_open).filter(|o| *o).count();
        println!(
            "connected {} reset {reset} failed {failed} still-open {open}",
            conns.len() + reset
        );
        Ok(())
    }

    /// Whether the server has not closed (or reset) the connection.
    fn still_open(s: &mut TcpStream) -> bool {
        if s.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }

    fn reset(o: &Load) -> Result<(), Failure> {
        let mut done = 0;
        for _ in 0..o.count {
            // A server over its limits may reset some before they are used.
            let Ok(mut s) = TcpStream::connect_timeout(&o.addr, Duration::from_secs(1)) else {
                continue;
            };
            let mut msg = vec![0x00, 0x40];
            msg.extend_from_slice(&[0xab; 10]);
            let _ = s.write_all(&msg);
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a correctly sized option value.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(fail(format!(
                    "SO_LINGER: {}",
                    std::io::Error::last_os_error()
                )));
            }
            drop(s);
            done += 1;
        }
        println!("reset {done} of {}", o.count);
        Ok(())
    }
}
