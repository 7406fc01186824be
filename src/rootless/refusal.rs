//! The one line an ordinary user gets from a command that needs root, with
//! the rootless alternative named. Decided before anything is opened or
//! created, so a refused command changes nothing (not even the state
//! directory).

use crate::error::Error;

/// Whether this process may change the host's network: CAP_NET_ADMIN and
/// CAP_SYS_ADMIN in its effective set. Asked with capget(2), one system
/// call, rather than by reading /proc/self/status (an open, eight reads
/// and a close at every start of every command).
pub fn privileged() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let effective = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN)
}

/// The effective capability set's first 32 bits (both capabilities above
/// are in them), None when the kernel refuses to say.
fn effective_capabilities() -> Option<u32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: 64-bit sets, as two `Data`.
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes at most two `Data` for version 3, which the
    // array holds; both pointers live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    (rc == 0).then_some(data[0].effective)
}

/// The refusal for `berth WORDS` (the subcommand path, e.g. `network
/// create`), naming what works without root instead.
pub fn needs_root(words: &str) -> Error {
    Error::Privilege(format!(
        "`berth {words}` needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); {}",
        alternative(words)
    ))
}

/// What an ordinary user can do instead of `words`.
fn alternative(_words: &str) -> &'static str {
    "without root, `berth run [-p HOST:CTR] -- CMD` gives a command \
     a network namespace of its own (through pasta or slirp4netns)"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// capget and the kernel's own account in /proc agree.
    #[test]
    fn capabilities_are_read_as_proc_shows_them() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let proc = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap();
        assert_eq!(effective_capabilities(), Some(proc as u32));
    }

    #[test]
    fn the_refusal_is_one_line_naming_the_alternative() {
        for words in ["network create", "connect", "up", "gc"] {
            let text = needs_root(words).to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.starts_with(&format!("`berth {words}` needs root")));
            assert!(text.contains("without root, `berth run"), "{text}");
        }
    }
}
