//! Reading and writing sysctls through /proc/sys, in the namespace of the
//! calling thread (per-namespace entries such as net.ipv4.* follow it).
//!
//! A key is a list of path segments, never a dotted string: an interface
//! name may itself hold dots (a bridge `berth-a.b`), and `net.ipv4.conf.
//! berth-a.b.route_localnet` split on dots names a file that does not exist.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// `IPV4_DEVCONF_ROUTE_LOCALNET` (include/uapi/linux/ip.h).
const IPV4_DEVCONF_ROUTE_LOCALNET: u16 = 26;

/// A sysctl key as /proc/sys path segments, e.g. `["net", "ipv4",
/// "ip_forward"]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(Vec<String>);

impl Key {
    /// A key from its segments. A segment is one /proc/sys path component:
    /// no `/`, not empty, not `.` or `..` (interface names are checked
    /// against the same rules before they get here).
    pub fn new<S: Into<String>>(segments: impl IntoIterator<Item = S>) -> Key {
        let segments: Vec<String> = segments.into_iter().map(Into::into).collect();
        assert!(
            !segments.is_empty()
                && segments
                    .iter()
                    .all(|s| !s.is_empty() && !s.contains('/') && s != "." && s != ".."),
            "bad sysctl key segments {segments:?}"
        );
        Key(segments)
    }

    /// `net.ipv4.ip_forward`.
    pub fn ip_forward() -> Key {
        Key::new(["net", "ipv4", "ip_forward"])
    }

    /// `net.ipv6.conf.all.forwarding`: IPv6's `ip_forward` (it also turns
    /// off accepting router advertisements on interfaces with accept_ra=1,
    /// as for every router).
    pub fn ipv6_forwarding() -> Key {
        Key::new(["net", "ipv6", "conf", "all", "forwarding"])
    }

    /// For `net.ipv4.conf.IFNAME.route_localnet` of one device: the device
    /// and the setting's IPV4_DEVCONF number, so it can be set over
    /// netlink, which works where /proc is mounted read-only (as Podman
    /// may run its network backend).
    pub fn ipv4_devconf(&self) -> Option<(&str, u16)> {
        match self.0.as_slice() {
            [net, ipv4, conf, dev, name]
                if net == "net"
                    && ipv4 == "ipv4"
                    && conf == "conf"
                    && dev != "all"
                    && dev != "default"
                    && name == "route_localnet" =>
            {
                Some((dev.as_str(), IPV4_DEVCONF_ROUTE_LOCALNET))
            }
            _ => None,
        }
    }

    /// `net.ipv4.conf.IFNAME.NAME`.
    pub fn ipv4_conf(ifname: &str, name: &str) -> Key {
        Key::new(["net", "ipv4", "conf", ifname, name])
    }

    /// `net.ipv6.conf.IFNAME.NAME`.
    pub fn ipv6_conf(ifname: &str, name: &str) -> Key {
        Key::new(["net", "ipv6", "conf", ifname, name])
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Where the key lives under /proc/sys.
    pub fn path(&self) -> PathBuf {
        let mut p = PathBuf::from("/proc/sys");
        p.extend(&self.0);
        p
    }
}

/// The name sysctl(8) accepts: segments joined by dots, with the dots
/// inside a segment written as slashes (`net.ipv4.conf.berth-a/b.
/// route_localnet`). sysctl(8) and sysctl.d(5) swap dots and slashes when
/// the first separator is a dot, so this names the same file.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&s.replace('.', "/"))?;
        }
        Ok(())
    }
}

pub fn read(key: &Key) -> io::Result<String> {
    Ok(std::fs::read_to_string(key.path())?.trim().to_string())
}

pub fn write(key: &Key, value: &str) -> io::Result<()> {
    std::fs::write(key.path(), value)
}

/// Writes `value` to the sysctl file at `path` only when it holds
/// another (a read-only /proc/sys that already says it is no error); a
/// file that does not exist (IPv6 turned off in the kernel) is left be.
pub fn write_if_differs(path: &str, value: &str) -> io::Result<()> {
    match std::fs::read_to_string(path) {
        Ok(v) if v.trim() == value => Ok(()),
        Ok(_) => std::fs::write(path, value),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_interface_names_stay_one_segment() {
        let k = Key::ipv4_conf("berth-a.b", "route_localnet");
        assert_eq!(
            k.path(),
            PathBuf::from("/proc/sys/net/ipv4/conf/berth-a.b/route_localnet")
        );
        assert_eq!(k.to_string(), "net.ipv4.conf.berth-a/b.route_localnet");
        assert_eq!(Key::ip_forward().to_string(), "net.ipv4.ip_forward");
        assert_eq!(
            Key::ip_forward().path(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }

    #[test]
    fn only_a_devices_route_localnet_goes_over_netlink() {
        assert_eq!(
            Key::ipv4_conf("berth-a.b", "route_localnet").ipv4_devconf(),
            Some(("berth-a.b", 26))
        );
        for other in [
            Key::ipv4_conf("all", "route_localnet"),
            Key::ipv4_conf("default", "route_localnet"),
            Key::ipv4_conf("berth0", "rp_filter"),
            Key::ip_forward(),
        ] {
            assert_eq!(other.ipv4_devconf(), None, "{other}");
        }
    }

    #[test]
    #[should_panic(expected = "bad sysctl key")]
    fn a_segment_cannot_climb_out_of_proc_sys() {
        Key::new(["net", "..", "x"]);
    }
}
