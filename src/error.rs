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
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn kernel(what: impl Into<String>, source: io::Error) -> Self {
        let mut what = what.into();
        // The kernel's own words, when it gave some for this failure.
        if let Some(text) = source
            .raw_os_error()
            .and_then(crate::kernel::rtnl::take_ext_ack)
        {
            what = format!("{what} (kernel: {text})");
        }
        Error::Kernel { what, source }
    }

    /// The process exit code for this error: 2 for anything the user can fix
    /// by changing the request or running as root, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Privilege(_) => 2,
            _ => 1,
        }
    }
}

/// Shorthand for returning a bad-input error.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { return Err($crate::error::Error::Invalid(format!($($arg)*))) };
}
