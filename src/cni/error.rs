//! The spec's error object (`cniVersion`, `code`, `msg`, `details`) and
//! how berth's own errors map onto its codes: 1-99 are the spec's, 100 and
//! up are berth's.

use serde_json::json;

use crate::error::Error;

/// Incompatible CNI version.
pub const CODE_VERSION: u32 = 1;
/// Container unknown or does not exist (CHECK of an unknown attachment).
pub const CODE_UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables.
pub const CODE_BAD_ENV: u32 = 4;
/// Failure to decode content.
pub const CODE_DECODE: u32 = 6;
/// Invalid network config.
pub const CODE_BAD_CONFIG: u32 = 7;
/// Try again later (the state database stayed busy).
pub const CODE_TRY_AGAIN: u32 = 11;
/// STATUS: berth cannot serve ADDs now.
pub const CODE_UNAVAILABLE: u32 = 50;
/// berth failed while doing a valid request (a kernel step, the state).
pub const CODE_BERTH: u32 = 100;
/// berth refused the request: an address, MAC or host port already taken,
/// a static address outside the subnet, no free address left.
pub const CODE_REFUSED: u32 = 101;
/// ADD of an attachment (container ID + interface name) that exists.
pub const CODE_EXISTS: u32 = 102;
/// CHECK found the attachment differs from what it should be.
pub const CODE_CHECK_FAILED: u32 = 103;

#[derive(Debug, Clone)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// berth's error from a valid request: refused (101) or failed (100),
    /// or try-again (11) when the state stayed locked by another writer.
    pub fn from_berth(e: Error) -> CniError {
        let code = match &e {
            Error::Invalid(_) => CODE_REFUSED,
            Error::Store(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy
                    || f.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                CODE_TRY_AGAIN
            }
            _ => CODE_BERTH,
        };
        CniError::new(code, e.to_string())
    }

    /// The error object, in `version`.
    pub fn to_json(&self, version: &str) -> String {
        let mut v = json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v.to_string()
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        CniError::from_berth(e)
    }
}
