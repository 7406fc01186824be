//! Chains: base chains attached to a netfilter hook, and regular chains that are
//! only reached through jump/goto.

use crate::error::Result;
use crate::netlink::MsgBuf;
use crate::table::Table;
use crate::types::Family;
use std::fmt;

pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
pub(crate) const NFTA_CHAIN_TYPE: u16 = 7;
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;

/// Base chain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    /// nft/kernel spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => return None,
        })
    }
}

/// Netfilter hook of a base chain (inet/ip/ip6 hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    /// NF_INET_* number.
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
    /// Inverse of [`Hook::number`].
    pub fn from_number(n: u32) -> Option<Hook> {
        Some(match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        })
    }
    /// nft spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Base chain policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    fn number(self) -> u32 {
        match self {
            Policy::Drop => 0,
            Policy::Accept => 1,
        }
    }
    pub(crate) fn from_number(n: u32) -> Option<Policy> {
        match n {
            0 => Some(Policy::Drop),
            1 => Some(Policy::Accept),
            _ => None,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        })
    }
}

/// Standard priority names (`filter`, `dstnat`, `srcnat`, ...).
pub mod priority {
    /// `raw`
    pub const RAW: i32 = -300;
    /// `mangle`
    pub const MANGLE: i32 = -150;
    /// `dstnat`
    pub const DSTNAT: i32 = -100;
    /// `filter`
    pub const FILTER: i32 = 0;
    /// `security`
    pub const SECURITY: i32 = 50;
    /// `srcnat`
    pub const SRCNAT: i32 = 100;
    /// `filter` in a bridge table (bridge tables name their priorities apart).
    pub const BRIDGE_FILTER: i32 = -200;
}

/// Hook attachment of a base chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseChain {
    /// Chain type.
    pub ty: ChainType,
    /// Hook.
    pub hook: Hook,
    /// Priority (lower runs first).
    pub priority: i32,
    /// Policy; `None` leaves the kernel default (accept) and renders nothing.
    pub policy: Option<Policy>,
}

/// A chain of a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Owning table.
    pub table: Table,
    /// Chain name.
    pub name: String,
    /// Set for base chains.
    pub base: Option<BaseChain>,
}

impl Chain {
    /// A regular chain (reached via jump/goto).
    pub fn regular(table: &Table, name: impl Into<String>) -> Self {
        Chain {
            table: table.clone(),
            name: name.into(),
            base: None,
        }
    }

    /// A base chain; give a policy with [`Chain::policy`].
    pub fn base(
        table: &Table,
        name: impl Into<String>,
        ty: ChainType,
        hook: Hook,
        priority: i32,
    ) -> Self {
        Chain {
            table: table.clone(),
            name: name.into(),
            base: Some(BaseChain {
                ty,
                hook,
                priority,
                policy: None,
            }),
        }
    }

    /// Sets the policy of a base chain (no effect on regular chains).
    pub fn policy(mut self, p: Policy) -> Self {
        if let Some(b) = &mut self.base {
            b.policy = Some(p);
        }
        self
    }

    /// `inet berth forward`
    pub fn spec(&self) -> String {
        format!("{} {}", self.table.spec(), self.name)
    }

    pub(crate) fn encode_id(&self, b: &mut MsgBuf) {
        b.attr_str(NFTA_CHAIN_TABLE, &self.table.name);
        b.attr_str(NFTA_CHAIN_NAME, &self.name);
    }

    pub(crate) fn encode(&self, b: &mut MsgBuf) -> Result<()> {
        self.encode_id(b);
        if let Some(base) = &self.base {
            let h = b.nest_begin(NFTA_CHAIN_HOOK);
            b.attr_be32(NFTA_HOOK_HOOKNUM, base.hook.number());
            b.attr_be32(NFTA_HOOK_PRIORITY, base.priority as u32);
            b.nest_end(h)?;
            b.attr_str(NFTA_CHAIN_TYPE, base.ty.as_str());
            if let Some(p) = base.policy {
                b.attr_be32(NFTA_CHAIN_POLICY, p.number());
            }
        }
        Ok(())
    }

    pub(crate) fn render_def(&self) -> String {
        match &self.base {
            None => String::new(),
            Some(base) => {
                let mut s = format!(
                    " {{ type {} hook {} priority {};",
                    base.ty.as_str(),
                    base.hook.as_str(),
                    render_priority(self.table.family, base.hook, base.priority)
                );
                if let Some(p) = base.policy {
                    s.push_str(&format!(" policy {p};"));
                }
                s.push_str(" }");
                s
            }
        }
    }
}

/// Uses the symbolic names nft accepts for the hook, numbers otherwise.
/// Bridge tables have names of their own (`filter` is -200 there).
pub(crate) fn render_priority(family: Family, hook: Hook, prio: i32) -> String {
    if family == Family::Bridge {
        return match (hook, prio) {
            (Hook::Prerouting, -300) => "dstnat".into(),
            (_, -200) => "filter".into(),
            (Hook::Output, 100) => "out".into(),
            (Hook::Postrouting, 300) => "srcnat".into(),
            _ => prio.to_string(),
        };
    }
    let named = [
        ("raw", priority::RAW),
        ("mangle", priority::MANGLE),
        ("filter", priority::FILTER),
        ("security", priority::SECURITY),
    ];
    for (name, base) in named {
        if prio == base {
            return name.to_string();
        }
    }
    match (hook, prio) {
        (Hook::Prerouting, priority::DSTNAT) => "dstnat".into(),
        (Hook::Postrouting, priority::SRCNAT) => "srcnat".into(),
        _ => prio.to_string(),
    }
}
