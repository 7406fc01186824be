//! Crafted Ethernet frames for `berth-probe raw-send` and `raw-recv`: the
//! attacks a container (or a machine on the LAN) can make with a packet
//! socket, such as an IPv4 packet with someone else's source address, an
//! ARP reply for a neighbour's address, a frame with another MAC, or a
//! packet to 127.0.0.1 sent to the host's MAC; and the receiving side that
//! reports which of them arrived.
//!
//! `raw-send IFACE udp|arp-reply|arp-request|na|ns [--src-mac M] [--dst-mac M]
//! [--sha M] [--src IP] [--dst IP] [--sport N] [--dport N] [--payload P]
//! [--target IP6] [--flags N] [--lladdr M|none] [--count N]` writes the
//! frame `--count` times (default 3, 50 ms apart, so one lost to a
//! neighbour lookup does not decide a test). `udp` is IPv4 or IPv6 by its
//! addresses; `na` and `ns` are IPv6 neighbour discovery (`frames6`).
//!
//! `raw-recv IFACE [--udp-dport N] [--arp [--spa IP]] [--nd [--target IP6]]
//! [--payload P] [--timeout-ms N]` prints `ready`, then the first incoming
//! frame that matches as one line (`udp MAC SRC:PORT -> DST:PORT PAYLOAD`,
//! IPv6 addresses in brackets; `arp op N sha MAC spa IP tha MAC tpa IP`;
//! `na|ns src IP dst IP target IP flags F lladdr MAC hops N`) and exits 0;
//! nothing within the timeout exits 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::{fail, usage, Failure};
use crate::frames6::{self, Nd, Want6, ETH_P_IPV6};

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
/// `sll_pkttype` of a frame this host sent (a packet socket sees both ways).
const PACKET_OUTGOING: u8 = 4;

pub type Mac = [u8; 6];

fn parse_mac(s: &str) -> Result<Mac, Failure> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(usage(format!("bad MAC {s:?}")));
    }
    for (slot, p) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(p, 16).map_err(|_| usage(format!("bad MAC {s:?}")))?;
    }
    Ok(mac)
}

pub fn show_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a frame is made of, from the command line.
struct Spec {
    iface: String,
    kind: String,
    src_mac: Option<Mac>,
    dst_mac: Mac,
    /// ARP sender hardware address, when it differs from the frame's source.
    sha: Option<Mac>,
    /// Whether `--dst-mac` was given (IPv6 multicast has its own default).
    dst_mac_given: bool,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: u16,
    dport: u16,
    payload: String,
    /// ND target (default: `--src`).
    target: Option<Ipv6Addr>,
    /// NA flags (default: override).
    flags: u8,
    /// ND link-layer address option: None = the frame's source MAC,
    /// Some(None) = left out.
    lladdr: Option<Option<Mac>>,
    count: u32,
}

/// What `raw-recv` waits for.
struct Want {
    iface: String,
    udp_dport: Option<u16>,
    arp: bool,
    /// Only ARP packets with this sender address.
    spa: Option<Ipv4Addr>,
    /// IPv6 neighbour solicitations and advertisements.
    nd: bool,
    /// Only ND messages about this target.
    target: Option<Ipv6Addr>,
    payload: Option<String>,
    timeout: Duration,
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<String, Failure> {
    it.next()
        .cloned()
        .ok_or_else(|| usage(format!("{flag} needs a value")))
}

fn number<T: std::str::FromStr>(v: &str, flag: &str) -> Result<T, Failure> {
    v.parse().map_err(|_| usage(format!("bad {flag} {v:?}")))
}

fn ip(v: &str, flag: &str) -> Result<Ipv4Addr, Failure> {
    number(v, flag)
}

fn ip6(v: &str, flag: &str) -> Result<Ipv6Addr, Failure> {
    number(v, flag)
}

/// `raw-send IFACE KIND ...`
pub fn send(args: &[String]) -> Result<(), Failure> {
    let mut it = args.iter();
    let iface = value(&mut it, "raw-send")?;
    let kind = value(&mut it, "raw-send IFACE")?;
    if !["udp", "arp-reply", "arp-request", "na", "ns"].contains(&kind.as_str()) {
        return Err(usage(format!("unknown frame kind {kind:?}")));
    }
    let mut spec = Spec {
        iface,
        kind,
        src_mac: None,
        dst_mac: [0xff; 6],
        sha: None,
        dst_mac_given: false,
        src: None,
        dst: None,
        sport: 40000,
        dport: 9,
        payload: "berth-probe-frame".into(),
        target: None,
        flags: frames6::NA_OVERRIDE,
        lladdr: None,
        count: 3,
    };
    while let Some(flag) = it.next() {
        let v = value(&mut it, flag)?;
        match flag.as_str() {
            "--src-mac" => spec.src_mac = Some(parse_mac(&v)?),
            "--dst-mac" => {
                spec.dst_mac = parse_mac(&v)?;
                spec.dst_mac_given = true;
            }
            "--sha" => spec.sha = Some(parse_mac(&v)?),
            "--src" => spec.src = Some(number(&v, flag)?),
            "--dst" => spec.dst = Some(number(&v, flag)?),
            "--target" => spec.target = Some(ip6(&v, flag)?),
            "--flags" => {
                let n = match v.strip_prefix("0x") {
                    Some(hex) => u8::from_str_radix(hex, 16).ok(),
                    None => v.parse().ok(),
                };
                spec.flags = n.ok_or_else(|| usage(format!("bad --flags {v:?}")))?;
            }
            "--lladdr" if v == "none" => spec.lladdr = Some(None),
            "--lladdr" => spec.lladdr = Some(Some(parse_mac(&v)?)),
            "--sport" => spec.sport = number(&v, flag)?,
            "--dport" => spec.dport = number(&v, flag)?,
            "--payload" => spec.payload = v,
            "--count" => spec.count = number(&v, flag)?,
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    let sock = PacketSocket::open(&spec.iface)?;
    let src_mac = match spec.src_mac {
        Some(m) => m,
        None => sock.mac()?,
    };
    let frame = match spec.kind.as_str() {
        "udp" => udp_frame(&spec, src_mac)?,
        "na" | "ns" => nd_frame(&spec, src_mac)?,
        op => arp_frame(&spec, src_mac, if op == "arp-reply" { 2 } else { 1 })?,
    };
    for i in 0..spec.count {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        sock.send(&frame)?;
    }
    println!(
        "sent {} {} frame(s) of {} bytes on {}",
        spec.count,
        spec.kind,
        frame.len(),
        spec.iface
    );
    Ok(())
}

/// `raw-recv IFACE ...`
pub fn recv(args: &[String]) -> Result<(), Failure> {
    let mut it = args.iter();
    let mut want = Want {
        iface: value(&mut it, "raw-recv")?,
        udp_dport: None,
        arp: false,
        spa: None,
        nd: false,
        target: None,
        payload: None,
        timeout: Duration::from_millis(2000),
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--arp" => want.arp = true,
            "--spa" => want.spa = Some(ip(&value(&mut it, flag)?, flag)?),
            "--nd" => want.nd = true,
            "--target" => want.target = Some(ip6(&value(&mut it, flag)?, flag)?),
            "--udp-dport" => want.udp_dport = Some(number(&value(&mut it, flag)?, flag)?),
            "--payload" => want.payload = Some(value(&mut it, flag)?),
            "--timeout-ms" => {
                want.timeout = Duration::from_millis(number(&value(&mut it, flag)?, flag)?)
            }
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    if !want.arp && !want.nd && want.udp_dport.is_none() && want.payload.is_none() {
        return Err(usage(
            "raw-recv needs --arp, --nd, --udp-dport or --payload",
        ));
    }
    if want.arp && want.nd {
        return Err(usage("raw-recv takes --arp or --nd, not both"));
    }
    let sock = PacketSocket::open(&want.iface)?;
    super::say_ready();
    let deadline = Instant::now() + want.timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!(
                "nothing matching arrived on {} within {:?}",
                want.iface, want.timeout
            )));
        }
        let Some(frame) = sock.recv(&mut buf, left)? else {
            continue;
        };
        if let Some(line) = describe(frame, &want) {
            println!("{line}");
            return Ok(());
        }
    }
}

/// One line for a frame `want` asks for, or None.
fn describe(f: &[u8], want: &Want) -> Option<String> {
    if f.len() < 14 {
        return None;
    }
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let body = &f[14..];
    match ethertype {
        ETH_P_ARP
            if want.arp
                && body.len() >= 28
                && want.spa.is_none_or(|spa| body[14..18] == spa.octets()) =>
        {
            Some(format!(
                "arp op {} sha {} spa {} tha {} tpa {} (frame from {})",
                u16::from_be_bytes([body[6], body[7]]),
                show_mac(&body[8..14]),
                Ipv4Addr::new(body[14], body[15], body[16], body[17]),
                show_mac(&body[18..24]),
                Ipv4Addr::new(body[24], body[25], body[26], body[27]),
                show_mac(&f[6..12]),
            ))
        }
        ETH_P_IPV6 if !want.arp => frames6::describe(
            &f[6..12],
            body,
            &Want6 {
                udp_dport: want.udp_dport,
                payload: want.payload.as_deref(),
                nd: want.nd,
                target: want.target,
            },
        ),
        ETH_P_IP if !want.arp && !want.nd && body.len() >= 20 && body[9] == 17 => {
            let ihl = usize::from(body[0] & 0x0f) * 4;
            let udp = body.get(ihl..)?;
            if udp.len() < 8 {
                return None;
            }
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            if want.udp_dport.is_some_and(|p| p != dport) {
                return None;
            }
            let payload = String::from_utf8_lossy(&udp[8..]).into_owned();
            if want.payload.as_ref().is_some_and(|p| !payload.contains(p)) {
                return None;
            }
            Some(format!(
                "udp {} {}:{} -> {}:{} {}",
                show_mac(&f[6..12]),
                Ipv4Addr::new(body[12], body[13], body[14], body[15]),
                u16::from_be_bytes([udp[0], udp[1]]),
                Ipv4Addr::new(body[16], body[17], body[18], body[19]),
                dport,
                payload.trim_end()
            ))
        }
        _ => None,
    }
}

pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let bytes = parts.iter().flat_map(|p| p.iter().copied());
    let mut high = None;
    for b in bytes {
        match high.take() {
            None => high = Some(b),
            Some(h) => sum += u32::from(u16::from_be_bytes([h, b])),
        }
    }
    if let Some(h) = high {
        sum += u32::from(u16::from_be_bytes([h, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn ethernet(dst: Mac, src: Mac, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// The frame's destination MAC: `--dst-mac`, or for an IPv6 multicast
/// destination its 33:33 address, or broadcast.
fn dst_mac6(s: &Spec, dst: Ipv6Addr) -> Mac {
    match (s.dst_mac_given, frames6::multicast_mac(dst)) {
        (false, Some(m)) => m,
        _ => s.dst_mac,
    }
}

/// A UDP datagram, IPv4 or IPv6 by its addresses (unset ones are the
/// unspecified address of the other's family, IPv4 when neither is set).
fn udp_frame(s: &Spec, src_mac: Mac) -> Result<Vec<u8>, Failure> {
    match (s.src, s.dst) {
        (Some(IpAddr::V6(src)), Some(IpAddr::V6(dst))) => Ok(frames6::udp_frame(
            dst_mac6(s, dst),
            src_mac,
            (src, s.sport),
            (dst, s.dport),
            s.payload.as_bytes(),
        )),
        (Some(IpAddr::V6(a)), None) | (None, Some(IpAddr::V6(a))) => {
            let (src, dst) = match s.src {
                Some(_) => (a, Ipv6Addr::UNSPECIFIED),
                None => (Ipv6Addr::UNSPECIFIED, a),
            };
            Ok(frames6::udp_frame(
                dst_mac6(s, dst),
                src_mac,
                (src, s.sport),
                (dst, s.dport),
                s.payload.as_bytes(),
            ))
        }
        (Some(IpAddr::V6(_)), Some(IpAddr::V4(_))) | (Some(IpAddr::V4(_)), Some(IpAddr::V6(_))) => {
            Err(usage("--src and --dst are of different families"))
        }
        _ => Ok(udp_frame4(s, v4(s.src), v4(s.dst), src_mac)),
    }
}

fn v4(a: Option<IpAddr>) -> Ipv4Addr {
    match a {
        Some(IpAddr::V4(a)) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

/// A neighbour solicitation or advertisement: `--src` (required), `--dst`
/// (default ff02::1 for an NA, the target's solicited-node group for an
/// NS), `--target` (default `--src`), `--flags` (NA), `--lladdr`.
fn nd_frame(s: &Spec, src_mac: Mac) -> Result<Vec<u8>, Failure> {
    let src = match s.src {
        Some(IpAddr::V6(a)) => a,
        _ => return Err(usage(format!("{} needs an IPv6 --src", s.kind))),
    };
    let na = s.kind == "na";
    let target = s.target.unwrap_or(src);
    let dst = match s.dst {
        Some(IpAddr::V6(a)) => a,
        Some(IpAddr::V4(_)) => return Err(usage(format!("{} needs an IPv6 --dst", s.kind))),
        None if na => Ipv6Addr::from([0xff02, 0, 0, 0, 0, 0, 0, 1]),
        None => frames6::solicited_node(target),
    };
    // A DAD probe (from ::) carries no link-layer address.
    let lladdr = match s.lladdr {
        Some(l) => l,
        None if src.is_unspecified() && !na => None,
        None => Some(src_mac),
    };
    let nd = Nd {
        ty: if na {
            frames6::ND_NEIGHBOR_ADVERT
        } else {
            frames6::ND_NEIGHBOR_SOLICIT
        },
        src,
        dst,
        target,
        flags: if na { s.flags } else { 0 },
        lladdr,
    };
    Ok(frames6::nd_frame(dst_mac6(s, dst), src_mac, &nd))
}

fn udp_frame4(s: &Spec, src: Ipv4Addr, dst: Ipv4Addr, src_mac: Mac) -> Vec<u8> {
    let data = s.payload.as_bytes();
    let udp_len = (8 + data.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&s.sport.to_be_bytes());
    udp.extend_from_slice(&s.dport.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let pseudo: Vec<u8> = [
        &src.octets()[..],
        &dst.octets()[..],
        &[0, 17],
        &udp_len.to_be_bytes()[..],
    ]
    .concat();
    let sum = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        x => x,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let total = 20 + udp_len;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = ethernet(s.dst_mac, src_mac, ETH_P_IP);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// An Ethernet/IPv4 ARP packet: sender `--sha` (default the frame's
/// source) and `--src`, target `--dst-mac` (zero for a broadcast request)
/// and `--dst`.
fn arp_frame(s: &Spec, src_mac: Mac, op: u16) -> Result<Vec<u8>, Failure> {
    if matches!(s.src, Some(IpAddr::V6(_))) || matches!(s.dst, Some(IpAddr::V6(_))) {
        return Err(usage("ARP takes IPv4 addresses"));
    }
    let (src, dst) = (v4(s.src), v4(s.dst));
    let mut f = ethernet(s.dst_mac, src_mac, ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&s.sha.unwrap_or(src_mac));
    f.extend_from_slice(&src.octets());
    let tha = if s.dst_mac == [0xff; 6] {
        [0; 6]
    } else {
        s.dst_mac
    };
    f.extend_from_slice(&tha);
    f.extend_from_slice(&dst.octets());
    // Padding to the Ethernet minimum, as a NIC would add.
    f.resize(60, 0);
    Ok(f)
}

/// An AF_PACKET socket bound to one interface of the current namespace.
struct PacketSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
    iface: String,
}

impl PacketSocket {
    fn open(iface: &str) -> Result<PacketSocket, Failure> {
        use std::os::fd::FromRawFd;
        let name = std::ffi::CString::new(iface).map_err(|_| usage("bad interface name"))?;
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(fail(format!("no interface {iface:?} here")));
        }
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(fail(format!(
                "cannot open a packet socket (root needed): {}",
                std::io::Error::last_os_error()
            )));
        }
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let sock = PacketSocket {
            fd,
            ifindex,
            iface: iface.to_string(),
        };
        let addr = sock.link_addr();
        let rc = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(fail(format!(
                "binding a packet socket to {iface}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(sock)
    }

    fn link_addr(&self) -> libc::sockaddr_ll {
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = self.ifindex;
        addr
    }

    fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// The interface's MAC address (SIOCGIFHWADDR in this namespace).
    fn mac(&self) -> Result<Mac, Failure> {
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (slot, b) in req.ifr_name.iter_mut().zip(self.iface.bytes()) {
            *slot = b as libc::c_char;
        }
        let rc = unsafe { libc::ioctl(self.raw(), libc::SIOCGIFHWADDR, &mut req) };
        if rc < 0 {
            return Err(fail(format!(
                "reading the MAC of {}: {}",
                self.iface,
                std::io::Error::last_os_error()
            )));
        }
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        Ok(std::array::from_fn(|i| data[i] as u8))
    }

    fn send(&self, frame: &[u8]) -> Result<(), Failure> {
        let addr = self.link_addr();
        let n = unsafe {
            libc::sendto(
                self.raw(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(fail(format!(
                "sending on {}: {}",
                self.iface,
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// The next incoming frame within `wait`, or None when there was none
    /// (or only one this host sent).
    fn recv<'a>(&self, buf: &'a mut [u8], wait: Duration) -> Result<Option<&'a [u8]>, Failure> {
        let mut pfd = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return Ok(None);
        }
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        let n = unsafe {
            libc::recvfrom(
                self.raw(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(fail(format!(
                "receiving on {}: {}",
                self.iface,
                std::io::Error::last_os_error()
            )));
        }
        if from.sll_pkttype == PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(Some(&buf[..n as usize]))
    }
}
