//! Error type of the crate, keeping the kernel errno and the object that caused it.

use std::fmt;

/// Everything that can go wrong while talking to nf_tables or ctnetlink.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The kernel rejected a message; `what` names the object the message was about
    /// (e.g. `adding element 10.0.0.2 . tcp . 8080 to map inet berth published4`).
    #[error("{what}: {}{}", Errno(*errno), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Kernel {
        /// Human description of the failing operation.
        what: String,
        /// Positive errno value (e.g. `libc::EEXIST`).
        errno: i32,
        /// Extended ack message from the kernel, when it sent one.
        detail: Option<String>,
    },
    /// A socket-level failure (open, send, receive).
    #[error("netlink {op}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel answered something we could not make sense of.
    #[error("netlink protocol error: {0}")]
    Protocol(String),
    /// A change needs a newer kernel than `BERTH_NFT_MAX_KERNEL` allows.
    #[error(
        "{what}: {message} needs Linux {since}, newer than {}={max}",
        crate::compat::MAX_KERNEL_ENV
    )]
    TooNew {
        /// The change, as an nft command.
        what: String,
        /// The netlink message or feature it needs.
        message: &'static str,
        /// The first kernel that has it.
        since: crate::compat::KernelVersion,
        /// The newest kernel allowed.
        max: crate::compat::KernelVersion,
    },
    /// The caller asked for something that cannot be encoded.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl NftError {
    /// The kernel errno, if this error came from the kernel (or the OS).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Kernel { errno, .. } => Some(*errno),
            NftError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Self {
        NftError::Io { op, source }
    }
}

/// Result alias of the crate.
pub type Result<T, E = NftError> = std::result::Result<T, E>;

/// Formats an errno as `File exists (EEXIST)`.
pub(crate) struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)", which we replace by the symbolic name.
        let msg = msg.split(" (os error").next().unwrap_or(&msg);
        match errno_name(self.0) {
            Some(name) => write!(f, "{msg} ({name})"),
            None => write!(f, "{msg} (errno {})", self.0),
        }
    }
}

fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ELOOP => "ELOOP",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_display() {
        let e = NftError::Kernel {
            what: "adding table inet berth".into(),
            errno: libc::EEXIST,
            detail: None,
        };
        assert_eq!(
            e.to_string(),
            "adding table inet berth: File exists (EEXIST)"
        );
        assert_eq!(e.errno(), Some(libc::EEXIST));
    }
}
