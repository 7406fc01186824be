//! nf_tables and ctnetlink client speaking netlink directly (no `nft` process, no
//! libnftnl). berth owns one table, `inet berth`: its chains and rules change when
//! a network is created or removed, and per container only set/map elements change,
//! each change being one atomic [`Batch`].
//!
//! Every object renders itself as the equivalent `nft` command ([`Batch::render`]),
//! which is what `--dry-run` prints; the rule builder produces text and expressions
//! from the same calls so the two cannot diverge.
//!
//! ```no_run
//! use berth_nft::*;
//! use std::net::Ipv4Addr;
//! let t = Table::new(Family::Inet, "berth");
//! let pre = Chain::base(&t, "prerouting", ChainType::Nat, Hook::Prerouting, priority::DSTNAT);
//! let map = Set::map(&t, "published4",
//!     &[DataType::Ipv4Addr, DataType::InetProto, DataType::InetService],
//!     &[DataType::Ipv4Addr, DataType::InetService]);
//! let mut b = Batch::new();
//! b.add_table(&t).add_chain(&pre).add_set(&map)
//!  .add_rule(&pre, Rule::new().fib_daddr_local()
//!      .dnat_ip_map(&[Field::IpDaddr, Field::L4Proto, Field::ThDport], "published4", true))
//!  .add_elements(&map, vec![Element::new([Ipv4Addr::UNSPECIFIED.into(), L4Proto::Tcp.into(), 8080u16.into()])
//!      .to([Ipv4Addr::new(10, 90, 0, 2).into(), 80u16.into()])]);
//! for line in b.render() { println!("{line}"); }
//! Nft::open()?.apply(&b)?;
//! # Ok::<(), NftError>(())
//! ```

mod batch;
mod chain;
mod compat;
mod conntrack;
mod error;
pub mod expr;
mod list;
mod netlink;
mod rule;
mod rules;
mod set;
mod set_typeof;
mod table;
mod trace;
mod types;

pub use batch::{Batch, ElemOp, Op};
pub use chain::{priority, BaseChain, Chain, ChainType, Hook, Policy};
pub use compat::{max_kernel_from_env, KernelVersion, MAX_KERNEL_ENV};
pub use conntrack::{Conntrack, CtMatch, CtQuery};
pub use error::{NftError, Result};
pub use expr::{CmpOp, Expr};
pub use list::{ChainInfo, SetInfo, TableInfo};
pub use rule::{CtState, CtStatus, Field, IcmpxCode, LogLevel, LogOptions, RateUnit, Rule};
pub use rules::{RuleInfo, RuleVerdict};
pub use set::{flags as set_flags, Element, KeyPart, Set};
pub use table::Table;
pub use trace::{TraceEvent, TraceKind, TraceListener};
pub use types::{DataType, Family, L4Proto, Value, Verdict};

/// A connection to nf_tables in the caller's network namespace.
pub struct Nft {
    sock: netlink::NlSocket,
}

impl Nft {
    /// Opens a netlink socket (needs CAP_NET_ADMIN for changes).
    pub fn open() -> Result<Self> {
        Ok(Nft {
            sock: netlink::NlSocket::open()?,
        })
    }
}

/// The socket itself, so that a caller can hand it on instead of closing
/// it: the last close of a socket whose batches deleted something waits
/// for nf_tables to free those objects, an RCU grace period.
impl std::os::fd::AsFd for Nft {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
