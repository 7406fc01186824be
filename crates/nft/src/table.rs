//! Tables: the `inet berth` container for everything berth installs.

use crate::error::Result;
use crate::netlink::MsgBuf;
use crate::types::Family;

pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_TABLE_FLAGS: u16 = 2;

/// Identifies a table; carried by chains, sets and rules so they know where they live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// Address family.
    pub family: Family,
    /// Table name.
    pub name: String,
    /// NFT_TABLE_F_* flags (0 for a plain table).
    pub flags: u32,
}

impl Table {
    /// A plain table.
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Table {
            family,
            name: name.into(),
            flags: 0,
        }
    }

    /// `inet berth` — the nft spelling of the table reference.
    pub fn spec(&self) -> String {
        format!("{} {}", self.family, self.name)
    }

    pub(crate) fn encode(&self, b: &mut MsgBuf, with_flags: bool) -> Result<()> {
        b.attr_str(NFTA_TABLE_NAME, &self.name);
        if with_flags {
            b.attr_be32(NFTA_TABLE_FLAGS, self.flags);
        }
        Ok(())
    }

    pub(crate) fn render_flags(&self) -> String {
        let mut f = Vec::new();
        if self.flags & 1 != 0 {
            f.push("dormant");
        }
        if self.flags & 2 != 0 {
            f.push("owner");
        }
        if self.flags & 4 != 0 {
            f.push("persist");
        }
        if f.is_empty() {
            String::new()
        } else {
            format!(" {{ flags {}; }}", f.join(","))
        }
    }
}
