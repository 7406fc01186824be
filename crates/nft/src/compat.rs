//! Which kernel each message needs, and a guard that refuses newer ones.
//!
//! Tests run on whatever kernel the machine has, which is usually newer than
//! the ones users run (Debian 12 has 6.1, Ubuntu 22.04 5.15, RHEL 9 5.14).
//! A message only a newer kernel knows (the `destroy` family, 6.3) would
//! pass every test here and fail everywhere else. With
//! `BERTH_NFT_MAX_KERNEL=MAJOR.MINOR` set, [`crate::Nft::apply`] refuses any
//! batch holding such a message, naming it, so that a test suite run on a
//! new kernel proves the batches fit the old one.

use std::fmt;

use crate::batch::{ElemOp, Op};
use crate::chain::ChainType;
use crate::error::{NftError, Result};
use crate::set::flags;
use crate::types::Family;

/// The environment variable that sets the newest kernel to allow for.
pub const MAX_KERNEL_ENV: &str = "BERTH_NFT_MAX_KERNEL";

/// A kernel version, major.minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// e.g. 5 in 5.10.
    pub major: u32,
    /// e.g. 10 in 5.10.
    pub minor: u32,
}

impl KernelVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        KernelVersion { major, minor }
    }

    /// Parses `5.10` (anything after a second dot or a dash, as in
    /// `5.10.0-23-amd64`, is ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.split(['-', '+', ' ']).next()?;
        let mut it = s.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some(KernelVersion { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The first kernel with nf_tables (every message berth-nft sends otherwise
/// is at least this old).
const NF_TABLES: KernelVersion = KernelVersion::new(3, 13);
/// NFT_MSG_DESTROY*: delete if present.
const DESTROY: KernelVersion = KernelVersion::new(6, 3);
/// Intervals in concatenated keys (the pipapo set, NFTA_SET_DESC_CONCAT).
const CONCAT_INTERVAL: KernelVersion = KernelVersion::new(5, 6);

/// The newest kernel allowed by [`MAX_KERNEL_ENV`], if set.
pub fn max_kernel_from_env() -> Result<Option<KernelVersion>> {
    match std::env::var(MAX_KERNEL_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => KernelVersion::parse(&v).map(Some).ok_or_else(|| {
            NftError::Invalid(format!(
                "{MAX_KERNEL_ENV}={v:?} is not a kernel version such as 5.10"
            ))
        }),
    }
}

impl Op {
    /// The netlink message (and the feature, when it is not the message
    /// itself) this change needs, and the first kernel that has it.
    pub fn requirement(&self) -> (&'static str, KernelVersion) {
        match self {
            Op::DestroyTable(_) => ("NFT_MSG_DESTROYTABLE", DESTROY),
            Op::DestroyChain(_) => ("NFT_MSG_DESTROYCHAIN", DESTROY),
            Op::DestroySet(_) => ("NFT_MSG_DESTROYSET", DESTROY),
            Op::Elements {
                op: ElemOp::Destroy,
                ..
            } => ("NFT_MSG_DESTROYSETELEM", DESTROY),
            Op::AddSet(s) if s.flags & flags::INTERVAL != 0 && s.key.len() > 1 => (
                "NFT_MSG_NEWSET of an interval set with a concatenated key",
                CONCAT_INTERVAL,
            ),
            Op::AddChain(c)
                if c.table.family == Family::Inet
                    && c.base.as_ref().is_some_and(|b| b.ty == ChainType::Nat) =>
            {
                ("NFT_MSG_NEWCHAIN of a nat chain in an inet table", INET_NAT)
            }
            _ => ("", NF_TABLES),
        }
    }
}

/// NAT chains in the inet family.
const INET_NAT: KernelVersion = KernelVersion::new(5, 2);

/// Fails on the first change of `ops` that needs a kernel newer than `max`.
pub(crate) fn check(ops: &[Op], max: KernelVersion) -> Result<()> {
    for op in ops {
        let (message, since) = op.requirement();
        if since > max {
            return Err(NftError::TooNew {
                what: op.render(),
                message,
                since,
                max,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Chain, DataType, Element, Hook, Set, Table};
    use std::net::Ipv4Addr;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(
            KernelVersion::parse("5.10"),
            Some(KernelVersion::new(5, 10))
        );
        assert_eq!(
            KernelVersion::parse("6.1.0-23-amd64"),
            Some(KernelVersion::new(6, 1))
        );
        assert_eq!(KernelVersion::parse("5"), None);
        assert_eq!(KernelVersion::parse("x.y"), None);
        assert!(KernelVersion::new(5, 10) > KernelVersion::new(5, 9));
        assert!(KernelVersion::new(6, 3) > KernelVersion::new(5, 15));
    }

    #[test]
    fn destroy_is_refused_before_6_3_and_delete_is_not() {
        let t = Table::new(Family::Inet, "berth");
        let s = Set::new(&t, "s", &[DataType::Ipv4Addr]);
        let e = || vec![Element::of(Ipv4Addr::new(10, 0, 0, 1))];
        let v510 = KernelVersion::new(5, 10);
        let mut b = Batch::new();
        b.delete_table(&t)
            .delete_chain(&Chain::regular(&t, "c"))
            .delete_set(&s)
            .delete_elements(&s, e());
        check(b.ops(), v510).unwrap();

        for (make, message) in [
            (
                Box::new(|b: &mut Batch| {
                    b.destroy_table(&t);
                }) as Box<dyn Fn(&mut Batch)>,
                "NFT_MSG_DESTROYTABLE",
            ),
            (
                Box::new(|b: &mut Batch| {
                    b.destroy_chain(&Chain::regular(&t, "c"));
                }),
                "NFT_MSG_DESTROYCHAIN",
            ),
            (
                Box::new(|b: &mut Batch| {
                    b.destroy_set(&s);
                }),
                "NFT_MSG_DESTROYSET",
            ),
            (
                Box::new(|b: &mut Batch| {
                    b.elements(&s, ElemOp::Destroy, e());
                }),
                "NFT_MSG_DESTROYSETELEM",
            ),
        ] {
            let mut b = Batch::new();
            make(&mut b);
            let err = check(b.ops(), v510).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
            assert!(err.contains("6.3") && err.contains("5.10"), "{err}");
            check(b.ops(), KernelVersion::new(6, 3)).unwrap();
        }
    }

    #[test]
    fn older_limits_catch_features_too() {
        let t = Table::new(Family::Inet, "berth");
        let ranges = Set::map(
            &t,
            "r",
            &[DataType::Ipv4Addr, DataType::InetService],
            &[DataType::Ipv4Addr],
        )
        .interval();
        let nat = Chain::base(
            &t,
            "pre",
            ChainType::Nat,
            Hook::Prerouting,
            crate::priority::DSTNAT,
        );
        let mut b = Batch::new();
        b.add_set(&ranges).add_chain(&nat);
        check(b.ops(), KernelVersion::new(5, 10)).unwrap();
        let err = check(b.ops(), KernelVersion::new(5, 4)).unwrap_err();
        assert!(err.to_string().contains("concatenated"), "{err}");
        let mut b = Batch::new();
        b.add_chain(&nat);
        let err = check(b.ops(), KernelVersion::new(4, 19)).unwrap_err();
        assert!(err.to_string().contains("nat chain"), "{err}");
    }
}
