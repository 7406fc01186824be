//! The error type every layer returns, and the exit code each kind maps to.
//!
//! Two families matter to users: bad input (the request itself is wrong and
//! nothing was changed; exit code 2) and failures while doing a valid request
//! (the kernel refused, state is unreadable; exit code 1).

use std::io;

/// Result alias used across berth.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong: a malformed value, an unknown or duplicate
    /// name, a clash. Checked before anything is changed.
    #[error("{0}")]
    Invalid(String),
    /// berth lacks the privileges it needs.
    #[error("{0}")]
    Privilege(String),
    /// A kernel request failed; `what` names the operation.
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A step of an applied plan failed; the steps before it were undone.
    #[error("{step} failed: {cause}{undo}")]
    Apply {
        step: String,
        cause: Box<Error>,
        /// Empty when the rollback succeeded, otherwise what could not be undone.
        undo: String,
    },
    /// An nf_tables batch or query failed; names the object.
    #[error("nftables: {0}")]
    Nft(#[from] berth_nft::NftError),
    #[error("state database: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Other(String),
    /// The command `run` or `exec` was to start could not be started.
    #[error("cannot run {program:?}: {}", exec_reason(source))]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
}

fn exec_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "command not found".into(),
        _ => e.to_string(),
    }
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn kernel(what: impl Into<String>, source: io::Error) -> Self {
        let mut what = what.into();
        // The kernel's own words, when it gave some for this failure; what
        // is kept is the plain errno, which callers test.
        let carried = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<KernelText>())
            .map(|k| (k.errno, k.text.clone()));
        let source = match carried {
            Some((errno, text)) => {
                what = format!("{what} (kernel: {text})");
                io::Error::from_raw_os_error(errno)
            }
            None => source,
        };
        Error::Kernel { what, source }
    }

    /// The process exit code for this error: 2 for anything the user can fix
    /// by changing the request or running as root, 126/127 for a command
    /// that cannot be started, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Privilege(_) => 2,
            // As a shell says it: 127 for a command not found, 126 for one
            // that cannot be executed.
            Error::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            Error::Exec { .. } => 126,
            _ => 1,
        }
    }
}

/// A request the kernel refused with an explanation of its own (the
/// extended ack of a netlink error: "Invalid MTU", "Master device not
/// found"). It travels inside the `io::Error` of the failure, from the
/// socket that read it to [`Error::kernel`], which puts the text into the
/// message; an `io::Error` that keeps its raw errno cannot carry text.
#[derive(Debug)]
pub struct KernelText {
    pub errno: i32,
    pub text: String,
}

impl KernelText {
    /// The failure as an `io::Error` of the errno's kind, carrying the text.
    pub fn into_io_error(self) -> io::Error {
        let kind = io::Error::from_raw_os_error(self.errno).kind();
        io::Error::new(kind, self)
    }
}

impl std::fmt::Display for KernelText {
    /// As the bare errno shows, so a message that drops the text reads as
    /// it would have without one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        io::Error::from_raw_os_error(self.errno).fmt(f)
    }
}

impl std::error::Error for KernelText {}

/// The errno of a failure, whether or not it carries the kernel's text.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<KernelText>())
            .map(|k| k.errno)
    })
}

/// Shorthand for returning a bad-input error.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { return Err($crate::error::Error::Invalid(format!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_text_travels_on_the_error_into_the_message() {
        let refused = KernelText {
            errno: 22,
            text: "Invalid MTU".into(),
        }
        .into_io_error();
        assert_eq!(errno_of(&refused), Some(22));
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        let err = Error::kernel("creating bridge berth-a", refused);
        assert_eq!(
            err.to_string(),
            "creating bridge berth-a (kernel: Invalid MTU): Invalid argument (os error 22)"
        );
        let Error::Kernel { source, .. } = err else {
            panic!("a kernel error")
        };
        assert_eq!(source.raw_os_error(), Some(22), "the errno stays testable");

        // Without the kernel's words the message is the errno alone.
        let plain = Error::kernel("deleting link x", io::Error::from_raw_os_error(19));
        assert_eq!(
            plain.to_string(),
            "deleting link x: No such device (os error 19)"
        );
    }
}
