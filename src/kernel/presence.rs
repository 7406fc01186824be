//! Whether links exist, by name: one `SIOCGIFINDEX` ioctl each on one
//! socket, which the kernel answers from its name hash. A listing then
//! costs its own endpoints, not every link of the host: /proc/net/dev
//! formats every link's counters (0.85 ms for 1000 veths here) and a
//! netlink dump builds a 1.5 KB message a link (3 ms), while a lookup is
//! about 0.5 µs.

use std::io;
use std::os::fd::AsRawFd;

/// For each of `names`, whether the calling thread's namespace has a link
/// so called.
pub fn exist(names: &[&str]) -> io::Result<Vec<bool>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    names
        .iter()
        .map(|n| exists(socket.as_raw_fd(), n))
        .collect()
}

fn exists(fd: i32, name: &str) -> io::Result<bool> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // A name that does not fit (with its NUL) names no link.
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains('\0') {
        return Ok(false);
    }
    for (to, from) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    // SAFETY: fd is an open socket and req a valid ifreq the kernel fills.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFINDEX as _, &mut req) };
    if r == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_impossible_names_do_not() {
        let found = exist(&["lo", "", "a-name-longer-than-fifteen", "no\0such"]).unwrap();
        assert_eq!(found, [true, false, false, false]);
    }
}
