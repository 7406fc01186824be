//! The one line an ordinary user gets from a command that needs root, with
//! the rootless alternative named. Decided before anything is opened or
//! created, so a refused command changes nothing (not even the state
//! directory).

use crate::error::Error;

/// Whether this process may change the host's network: CAP_NET_ADMIN and
/// CAP_SYS_ADMIN in its effective set.
pub fn privileged() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN)
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
