//! Reading and writing sysctls through /proc/sys, in the namespace of the
//! calling thread (per-namespace entries such as net.ipv4.* follow it).

use std::io;
use std::path::PathBuf;

/// The /proc/sys path of a dotted sysctl key such as `net.ipv4.ip_forward`.
/// The dots of an interface name inside the key stay dots, as sysctl(8)
/// would need them written with slashes; berth's own names have none.
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

pub fn read(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path(key))?.trim().to_string())
}

pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value)
}
