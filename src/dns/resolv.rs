//! resolv.conf: reading the host's (the server's upstreams, the search
//! domains containers inherit) and writing the one `run` and `exec --dns`
//! give a container.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use super::table::LOCAL_DOMAIN;

/// The port resolvers ask.
const DNS_PORT: u16 = 53;

/// The host's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The parts of a resolv.conf berth uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// The `nameserver` lines as the addresses to ask: port 53, and a
    /// link-local IPv6 address with the index of its zone.
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses the file's text the way glibc reads it: the last `search` or
    /// `domain` line wins, unknown lines are skipped.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(server) = words.next().and_then(nameserver) {
                        conf.nameservers.push(server);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(str::to_string).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The host's file, or an empty configuration if it cannot be read.
    pub fn host() -> ResolvConf {
        ResolvConf::parse(&std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default())
    }
}

/// One `nameserver` value: an address, an IPv6 one with `%ZONE` (an
/// interface name or index, as glibc takes it). None for what does not
/// parse, or a zone no interface has: it could not be asked.
fn nameserver(word: &str) -> Option<SocketAddr> {
    let (addr, zone) = match word.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (word, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    match (ip, zone) {
        (ip, None) => Some(SocketAddr::new(ip, DNS_PORT)),
        (IpAddr::V6(v6), Some(zone)) => {
            let index = zone
                .parse::<u32>()
                .ok()
                .or_else(|| nix::net::if_::if_nametoindex(zone).ok())?;
            Some(SocketAddr::V6(SocketAddrV6::new(v6, DNS_PORT, 0, index)))
        }
        (IpAddr::V4(_), Some(_)) => None,
    }
}

/// A container's resolv.conf: berth's server on `gateways` (its network's
/// gateways, IPv4 first; an IPv6-only network has one), or the `--dns`
/// servers, and the search list `dns.berth` then the host's domains (or
/// the `--dns-search` ones).
pub fn container_file(
    host: &ResolvConf,
    gateways: &[IpAddr],
    dns: &[IpAddr],
    search: &[String],
) -> String {
    let mut out = String::from("# written by berth\n");
    let domains: Vec<String> = if !search.is_empty() {
        search.to_vec()
    } else if !gateways.is_empty() && dns.is_empty() {
        std::iter::once(LOCAL_DOMAIN.to_string())
            .chain(host.search.iter().cloned())
            .collect()
    } else {
        host.search.clone()
    };
    if !domains.is_empty() {
        out.push_str(&format!("search {}\n", domains.join(" ")));
    }
    let servers: Vec<IpAddr> = if dns.is_empty() {
        gateways.to_vec()
    } else {
        dns.to_vec()
    };
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    let options: Vec<&String> = host
        .options
        .iter()
        .filter(|o| !o.starts_with("ndots"))
        .collect();
    if !options.is_empty() {
        let options: Vec<&str> = options.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// A generated resolv.conf to put over /etc/resolv.conf in a mount
/// namespace of the command's own. Prepared before `fork`, because
/// [`BindMount::apply`] runs between fork and exec, where only raw system
/// calls are safe.
pub struct BindMount {
    source: std::ffi::CString,
    target: std::ffi::CString,
}

impl BindMount {
    pub fn new(source: &std::path::Path) -> crate::error::Result<BindMount> {
        use std::os::unix::ffi::OsStrExt;
        let c = |b: &[u8]| {
            std::ffi::CString::new(b).map_err(|_| {
                crate::error::Error::Other(format!("path {} has a NUL byte", source.display()))
            })
        };
        Ok(BindMount {
            source: c(source.as_os_str().as_bytes())?,
            target: c(HOST_RESOLV_CONF.as_bytes())?,
        })
    }

    /// Enters a new mount namespace whose mounts do not propagate back to
    /// the host's, and bind-mounts the file there.
    pub fn apply(&self) -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(err());
            }
            if libc::mount(
                self.source.as_ptr(),
                self.target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(err());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_file_is_read_like_glibc() {
        let c = ResolvConf::parse(
            "# comment\nnameserver 127.0.0.53\nnameserver fd00::53\nnameserver fe80::1%lo\nnameserver fe80::2%7\nnameserver fe80::3%no-such-if0\nnameserver 10.0.0.1%lo\nsearch a.example b.example\noptions edns0 trust-ad\nbogus\n",
        );
        // The loopback device is index 1 in every network namespace.
        assert_eq!(
            c.nameservers,
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap(),
                "[fe80::1%1]:53".parse().unwrap(),
                "[fe80::2%7]:53".parse().unwrap(),
            ]
        );
        assert_eq!(c.search, vec!["a.example", "b.example"]);
        assert_eq!(c.options, vec!["edns0", "trust-ad"]);
    }

    #[test]
    fn container_file_names_the_gateway_and_keeps_the_host_search_list() {
        let host = ResolvConf::parse("nameserver 127.0.0.53\nsearch corp.example\n");
        let gw: IpAddr = "10.1.0.1".parse().unwrap();
        assert_eq!(
            container_file(&host, &[gw], &[], &[]),
            "# written by berth\nsearch dns.berth corp.example\nnameserver 10.1.0.1\n"
        );
        let other: IpAddr = "192.0.2.53".parse().unwrap();
        assert_eq!(
            container_file(&host, &[gw], &[other], &["x.example".into()]),
            "# written by berth\nsearch x.example\nnameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn container_file_names_the_ipv6_gateway_when_the_network_has_one() {
        let host = ResolvConf::parse("nameserver 127.0.0.53\n");
        let v4: IpAddr = "10.1.0.1".parse().unwrap();
        let v6: IpAddr = "fd00:1::1".parse().unwrap();
        assert_eq!(
            container_file(&host, &[v4, v6], &[], &[]),
            "# written by berth\nsearch dns.berth\nnameserver 10.1.0.1\nnameserver fd00:1::1\n"
        );
        // IPv6-only: only it.
        assert_eq!(
            container_file(&host, &[v6], &[], &[]),
            "# written by berth\nsearch dns.berth\nnameserver fd00:1::1\n"
        );
        assert_eq!(container_file(&host, &[], &[], &[]), "# written by berth\n");
    }
}
