//! The host's identity: what tells this boot of this network namespace
//! from any other, so the preflight notices a reboot (or a state carried
//! into another namespace) with one file read and one socket option.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// The boot id and the network namespace's cookie (never reused within a
/// boot; Linux 5.14+) or, on older kernels, its inode.
pub fn identity() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{}/{}", boot.trim(), netns_identity())
}

fn netns_identity() -> String {
    if let Some(cookie) = netns_cookie() {
        return format!("cookie:{cookie}");
    }
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| format!("inode:{}", m.ino()))
        .unwrap_or_default()
}

/// SO_NETNS_COOKIE of a socket opened here: the cookie of the namespace
/// the calling thread is in. None before Linux 5.14.
fn netns_cookie() -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::os::unix::net::UnixDatagram::unbound().ok()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which
    // lives for the call; the descriptor is owned by `sock`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cookie)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_identity_is_stable_and_names_the_boot_and_the_namespace() {
        let id = super::identity();
        assert_eq!(id, super::identity());
        let (boot, netns) = id.split_once('/').expect("boot/netns");
        assert_eq!(boot.len(), 36, "a boot id is a UUID: {id}");
        assert!(
            netns.starts_with("cookie:") || netns.starts_with("inode:"),
            "{id}"
        );
    }
}
