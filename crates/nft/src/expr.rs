//! Low-level nf_tables expressions and their netlink encoding. Rules are lists of
//! these; [`crate::Rule`] builds them together with the matching nft text.

use crate::error::Result;
use crate::netlink::MsgBuf;
use crate::types::Verdict;

/// A register. Always the 32-bit numbering (NFT_REG32_00..15), so that concatenated
/// keys can occupy consecutive 4-byte registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub(crate) u32);

impl Reg {
    /// The verdict register (a lookup into a verdict map writes here).
    pub const VERDICT: Reg = Reg(0);
    /// NFT_REG32_00 + `n` (`n` < 16).
    pub const fn r32(n: u32) -> Reg {
        Reg(8 + n)
    }
    /// The register `n` 32-bit slots after this one.
    pub fn offset(self, n: u32) -> Reg {
        Reg(self.0 + n)
    }
}

/// `meta` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum MetaKey {
    Len = 0,
    Protocol = 1,
    Mark = 3,
    Iif = 4,
    Oif = 5,
    Iifname = 6,
    Oifname = 7,
    Nftrace = 12,
    Nfproto = 15,
    L4proto = 16,
}

/// `ct` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum CtKey {
    State = 0,
    Direction = 1,
    Status = 2,
    Mark = 3,
    L3Protocol = 7,
    Src = 8,
    Dst = 9,
    Protocol = 10,
    ProtoSrc = 11,
    ProtoDst = 12,
    SrcIp = 19,
    DstIp = 20,
    SrcIp6 = 21,
    DstIp6 = 22,
}

/// Payload header base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum PayloadBase {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// Comparison operator of `cmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    Lt = 2,
    Lte = 3,
    Gt = 4,
    Gte = 5,
}

impl CmpOp {
    /// nft spelling, with the implicit `==` as empty string.
    pub fn nft(self) -> &'static str {
        match self {
            CmpOp::Eq => "",
            CmpOp::Neq => "!= ",
            CmpOp::Lt => "< ",
            CmpOp::Lte => "<= ",
            CmpOp::Gt => "> ",
            CmpOp::Gte => ">= ",
        }
    }
}

/// NAT type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum NatType {
    Snat = 0,
    Dnat = 1,
}

/// Reject type; the code is an ICMP/ICMPv6/ICMPX code depending on the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RejectType {
    IcmpUnreach = 0,
    TcpRst = 1,
    IcmpxUnreach = 2,
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Expr {
    Meta {
        key: MetaKey,
        dreg: Reg,
    },
    MetaSet {
        key: MetaKey,
        sreg: Reg,
    },
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    Cmp {
        op: CmpOp,
        sreg: Reg,
        data: Vec<u8>,
    },
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `direction`: `Some(0)` original, `Some(1)` reply.
    Ct {
        key: CtKey,
        dreg: Reg,
        direction: Option<u8>,
    },
    /// `flags`: NFTA_FIB_F_*; `result`: NFT_FIB_RESULT_*.
    Fib {
        flags: u32,
        result: u32,
        dreg: Reg,
    },
    Lookup {
        set: String,
        sreg: Reg,
        dreg: Option<Reg>,
        invert: bool,
    },
    Immediate {
        dreg: Reg,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    Nat {
        ty: NatType,
        family: u8,
        addr: Option<(Reg, Reg)>,
        proto: Option<(Reg, Reg)>,
        flags: u32,
    },
    Masq {
        flags: u32,
    },
    Reject {
        ty: RejectType,
        code: u8,
    },
    Counter,
    Log {
        prefix: Option<String>,
        group: Option<u16>,
        level: Option<u32>,
    },
    /// `rate` per `unit_secs`, `burst` packets.
    Limit {
        rate: u64,
        unit_secs: u64,
        burst: u32,
        invert: bool,
    },
}

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Encodes `NFTA_DATA_VALUE` inside an already-open data nest.
pub(crate) fn put_data_value(b: &mut MsgBuf, ty: u16, data: &[u8]) -> Result<()> {
    let n = b.nest_begin(ty);
    b.attr(NFTA_DATA_VALUE, data);
    b.nest_end(n)
}

/// Encodes a verdict as nested `ty { NFTA_DATA_VERDICT { code, chain } }`.
pub(crate) fn put_data_verdict(b: &mut MsgBuf, ty: u16, v: &Verdict) -> Result<()> {
    let n = b.nest_begin(ty);
    let nv = b.nest_begin(NFTA_DATA_VERDICT);
    b.attr_be32(NFTA_VERDICT_CODE, v.code() as u32);
    if let Some(c) = v.chain() {
        b.attr_str(NFTA_VERDICT_CHAIN, c);
    }
    b.nest_end(nv)?;
    b.nest_end(n)
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Ct { .. } => "ct",
            Expr::Fib { .. } => "fib",
            Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Nat { .. } => "nat",
            Expr::Masq { .. } => "masq",
            Expr::Reject { .. } => "reject",
            Expr::Counter => "counter",
            Expr::Log { .. } => "log",
            Expr::Limit { .. } => "limit",
        }
    }

    /// Appends this expression as one `NFTA_LIST_ELEM` of a rule's expression list.
    pub(crate) fn encode(&self, b: &mut MsgBuf) -> Result<()> {
        let elem = b.nest_begin(NFTA_LIST_ELEM);
        b.attr_str(NFTA_EXPR_NAME, self.name());
        let data = b.nest_begin(NFTA_EXPR_DATA);
        match self {
            Expr::Meta { key, dreg } => {
                b.attr_be32(1, dreg.0); // NFTA_META_DREG
                b.attr_be32(2, *key as u32); // NFTA_META_KEY
            }
            Expr::MetaSet { key, sreg } => {
                b.attr_be32(2, *key as u32);
                b.attr_be32(3, sreg.0); // NFTA_META_SREG
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                b.attr_be32(1, dreg.0);
                b.attr_be32(2, *base as u32);
                b.attr_be32(3, *offset);
                b.attr_be32(4, *len);
            }
            Expr::Cmp { op, sreg, data } => {
                b.attr_be32(1, sreg.0);
                b.attr_be32(2, *op as u32);
                put_data_value(b, 3, data)?;
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                b.attr_be32(1, sreg.0);
                b.attr_be32(2, dreg.0);
                b.attr_be32(3, mask.len() as u32);
                put_data_value(b, 4, mask)?;
                put_data_value(b, 5, xor)?;
            }
            Expr::Ct {
                key,
                dreg,
                direction,
            } => {
                b.attr_be32(1, dreg.0);
                b.attr_be32(2, *key as u32);
                if let Some(d) = direction {
                    b.attr_u8(3, *d);
                }
            }
            Expr::Fib {
                flags,
                result,
                dreg,
            } => {
                b.attr_be32(1, dreg.0);
                b.attr_be32(2, *result);
                b.attr_be32(3, *flags);
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                b.attr_str(1, set);
                b.attr_be32(2, sreg.0);
                if let Some(d) = dreg {
                    b.attr_be32(3, d.0);
                }
                if *invert {
                    b.attr_be32(5, 1); // NFT_LOOKUP_F_INV
                }
            }
            Expr::Immediate { dreg, data } => {
                b.attr_be32(1, dreg.0);
                put_data_value(b, 2, data)?;
            }
            Expr::Verdict(v) => {
                b.attr_be32(1, Reg::VERDICT.0);
                put_data_verdict(b, 2, v)?;
            }
            Expr::Nat {
                ty,
                family,
                addr,
                proto,
                flags,
            } => {
                b.attr_be32(1, *ty as u32);
                b.attr_be32(2, *family as u32);
                if let Some((min, max)) = addr {
                    b.attr_be32(3, min.0);
                    if max != min {
                        b.attr_be32(4, max.0);
                    }
                }
                if let Some((min, max)) = proto {
                    b.attr_be32(5, min.0);
                    if max != min {
                        b.attr_be32(6, max.0);
                    }
                }
                if *flags != 0 {
                    b.attr_be32(7, *flags);
                }
            }
            Expr::Masq { flags } => {
                if *flags != 0 {
                    b.attr_be32(1, *flags);
                }
            }
            Expr::Reject { ty, code } => {
                b.attr_be32(1, *ty as u32);
                b.attr_u8(2, *code);
            }
            Expr::Counter => {
                b.attr_be64(1, 0); // NFTA_COUNTER_BYTES
                b.attr_be64(2, 0); // NFTA_COUNTER_PACKETS
            }
            Expr::Log {
                prefix,
                group,
                level,
            } => {
                if let Some(g) = group {
                    b.attr_be16(1, *g);
                }
                if let Some(p) = prefix {
                    b.attr_str(2, p);
                }
                if let Some(l) = level {
                    b.attr_be32(5, *l);
                }
            }
            Expr::Limit {
                rate,
                unit_secs,
                burst,
                invert,
            } => {
                b.attr_be64(1, *rate);
                b.attr_be64(2, *unit_secs);
                b.attr_be32(3, *burst);
                b.attr_be32(4, 0); // NFT_LIMIT_PKTS
                b.attr_be32(5, u32::from(*invert));
            }
        }
        b.nest_end(data)?;
        b.nest_end(elem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_with_dreg_and_inverted() {
        let mut b = MsgBuf::new();
        Expr::Lookup {
            set: "s".into(),
            sreg: Reg::r32(0),
            dreg: Some(Reg::r32(2)),
            invert: true,
        }
        .encode(&mut b)
        .unwrap();
        let a = crate::netlink::Attrs::new(&b.buf);
        let elem = a.nested(NFTA_LIST_ELEM).unwrap();
        assert_eq!(elem.str(NFTA_EXPR_NAME).as_deref(), Some("lookup"));
        let d = elem.nested(NFTA_EXPR_DATA).unwrap();
        assert_eq!(d.str(1).as_deref(), Some("s"));
        assert_eq!(d.be32(2), Some(8));
        assert_eq!(d.be32(3), Some(10));
        assert_eq!(d.be32(5), Some(1));
    }

    #[test]
    fn verdict_jump_encoding() {
        let mut b = MsgBuf::new();
        Expr::Verdict(Verdict::Jump("x".into()))
            .encode(&mut b)
            .unwrap();
        let elem = crate::netlink::Attrs::new(&b.buf).nested(1).unwrap();
        let d = elem.nested(2).unwrap();
        assert_eq!(d.be32(1), Some(0));
        let v = d.nested(2).unwrap().nested(NFTA_DATA_VERDICT).unwrap();
        assert_eq!(v.be32(1), Some((-3i32) as u32));
        assert_eq!(v.str(2).as_deref(), Some("x"));
    }
}
