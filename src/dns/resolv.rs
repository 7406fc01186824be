//! resolv.conf: reading the host's (the server's upstreams, the search
//! domains containers inherit) and writing the one `run` and `exec --dns`
//! give a container.

use std::net::IpAddr;

use super::table::LOCAL_DOMAIN;

/// The host's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The parts of a resolv.conf berth uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
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
                    // A link-local IPv6 with a zone (fe80::1%eth0) is kept
                    // without it; the upstream socket picks the route.
                    if let Some(ip) = words
                        .next()
                        .and_then(|w| w.split('%').next())
                        .and_then(|w| w.parse().ok())
                    {
                        conf.nameservers.push(ip);
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

/// A container's resolv.conf: berth's server on `gateway` (or the
/// `--dns` servers), and the search list `dns.berth` then the host's
/// domains (or the `--dns-search` ones).
pub fn container_file(
    host: &ResolvConf,
    gateway: Option<IpAddr>,
    dns: &[IpAddr],
    search: &[String],
) -> String {
    let mut out = String::from("# written by berth\n");
    let domains: Vec<String> = if !search.is_empty() {
        search.to_vec()
    } else if gateway.is_some() && dns.is_empty() {
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
        gateway.into_iter().collect()
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
            "# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch a.example b.example\noptions edns0 trust-ad\nbogus\n",
        );
        assert_eq!(
            c.nameservers,
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
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
            container_file(&host, Some(gw), &[], &[]),
            "# written by berth\nsearch dns.berth corp.example\nnameserver 10.1.0.1\n"
        );
        let other: IpAddr = "192.0.2.53".parse().unwrap();
        assert_eq!(
            container_file(&host, Some(gw), &[other], &["x.example".into()]),
            "# written by berth\nsearch x.example\nnameserver 192.0.2.53\n"
        );
    }
}
