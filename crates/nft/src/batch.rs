//! Atomic batches: an ordered list of changes sent in one NFNL_MSG_BATCH_BEGIN..END
//! transaction, with their nft rendering and error attribution back to the object.

use crate::chain::Chain;
use crate::error::{NftError, Result};
use crate::netlink::*;
use crate::rule::{Rule, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_TABLE};
use crate::set::{Element, Set};
use crate::table::Table;
use crate::Nft;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
// Not in older uapi headers; present since Linux 6.3.
const NFT_MSG_DESTROYTABLE: u16 = 26;
const NFT_MSG_DESTROYCHAIN: u16 = 27;
const NFT_MSG_DESTROYSET: u16 = 29;
const NFT_MSG_DESTROYSETELEM: u16 = 30;

/// Keeps each element list well under the 64 KiB limit of a nested attribute.
const ELEM_CHUNK_BYTES: usize = 48 * 1024;

/// What to do with set elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemOp {
    /// `add element`: existing identical elements are not an error.
    Add,
    /// `create element`: fails with EEXIST if an element exists.
    Create,
    /// `delete element`: fails with ENOENT if an element is missing.
    Delete,
    /// `destroy element`: delete, ignoring missing ones.
    Destroy,
}

impl ElemOp {
    fn verb(self) -> &'static str {
        match self {
            ElemOp::Add => "add",
            ElemOp::Create => "create",
            ElemOp::Delete => "delete",
            ElemOp::Destroy => "destroy",
        }
    }
    fn gerund(self) -> &'static str {
        match self {
            ElemOp::Add | ElemOp::Create => "adding",
            ElemOp::Delete => "deleting",
            ElemOp::Destroy => "destroying",
        }
    }
}

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `add table`
    AddTable(Table),
    /// `delete table`
    DeleteTable(Table),
    /// `destroy table` (delete if it exists)
    DestroyTable(Table),
    /// `add chain`
    AddChain(Chain),
    /// `delete chain`
    DeleteChain(Chain),
    /// `destroy chain`
    DestroyChain(Chain),
    /// `flush chain`
    FlushChain(Chain),
    /// `add rule` / `insert rule`
    AddRule {
        /// Target chain.
        chain: Chain,
        /// The rule.
        rule: Rule,
        /// Rule handle to add after (append) or before (insert).
        position: Option<u64>,
        /// `insert` (prepend) rather than `add` (append).
        insert: bool,
    },
    /// `delete rule ... handle N`
    DeleteRule {
        /// Chain of the rule.
        chain: Chain,
        /// Rule handle.
        handle: u64,
    },
    /// `add set` / `add map`
    AddSet(Set),
    /// `delete set` / `delete map`
    DeleteSet(Set),
    /// `destroy set` / `destroy map`
    DestroySet(Set),
    /// `flush set` / `flush map`
    FlushSet(Set),
    /// Element changes.
    Elements {
        /// Target set/map.
        set: Set,
        /// Elements.
        elems: Vec<Element>,
        /// What to do.
        op: ElemOp,
    },
}

impl Op {
    /// The equivalent nft command.
    pub fn render(&self) -> String {
        match self {
            Op::AddTable(t) => format!("add table {}{}", t.spec(), t.render_flags()),
            Op::DeleteTable(t) => format!("delete table {}", t.spec()),
            Op::DestroyTable(t) => format!("destroy table {}", t.spec()),
            Op::AddChain(c) => format!("add chain {}{}", c.spec(), c.render_def()),
            Op::DeleteChain(c) => format!("delete chain {}", c.spec()),
            Op::DestroyChain(c) => format!("destroy chain {}", c.spec()),
            Op::FlushChain(c) => format!("flush chain {}", c.spec()),
            Op::AddRule {
                chain,
                rule,
                position,
                insert,
            } => {
                let verb = if *insert { "insert" } else { "add" };
                let pos = position
                    .map(|p| format!(" position {p}"))
                    .unwrap_or_default();
                format!("{verb} rule {}{pos} {}", chain.spec(), rule.render())
            }
            Op::DeleteRule { chain, handle } => {
                format!("delete rule {} handle {handle}", chain.spec())
            }
            Op::AddSet(s) => format!(
                "add {} {} {}{}",
                s.kind(),
                s.table.spec(),
                s.name,
                s.render_def()
            ),
            Op::DeleteSet(s) => format!("delete {} {} {}", s.kind(), s.table.spec(), s.name),
            Op::DestroySet(s) => format!("destroy {} {} {}", s.kind(), s.table.spec(), s.name),
            Op::FlushSet(s) => format!("flush {} {} {}", s.kind(), s.table.spec(), s.name),
            Op::Elements { set, elems, op } => {
                let e: Vec<String> = elems.iter().map(Element::render).collect();
                format!(
                    "{} element {} {} {{ {} }}",
                    op.verb(),
                    set.table.spec(),
                    set.name,
                    e.join(", ")
                )
            }
        }
    }

    /// Description used in error messages, e.g. `adding chain inet berth forward`.
    fn describe(&self) -> String {
        match self {
            Op::AddTable(t) => format!("adding table {}", t.spec()),
            Op::DeleteTable(t) => format!("deleting table {}", t.spec()),
            Op::DestroyTable(t) => format!("destroying table {}", t.spec()),
            Op::AddChain(c) => format!("adding chain {}", c.spec()),
            Op::DeleteChain(c) => format!("deleting chain {}", c.spec()),
            Op::DestroyChain(c) => format!("destroying chain {}", c.spec()),
            Op::FlushChain(c) => format!("flushing chain {}", c.spec()),
            Op::AddRule { chain, rule, .. } => {
                format!(
                    "adding rule \"{}\" to chain {}",
                    rule.render(),
                    chain.spec()
                )
            }
            Op::DeleteRule { chain, handle } => {
                format!("deleting rule handle {handle} from chain {}", chain.spec())
            }
            Op::AddSet(s) => format!("adding {}", s.describe()),
            Op::DeleteSet(s) => format!("deleting {}", s.describe()),
            Op::DestroySet(s) => format!("destroying {}", s.describe()),
            Op::FlushSet(s) => format!("flushing {}", s.describe()),
            Op::Elements { set, elems, op } => {
                let prep = if matches!(op, ElemOp::Add | ElemOp::Create) {
                    "to"
                } else {
                    "from"
                };
                match elems.as_slice() {
                    [one] => format!(
                        "{} element {} {prep} {}",
                        op.gerund(),
                        one.render_key(),
                        set.describe()
                    ),
                    _ => format!(
                        "{} {} elements {prep} {}",
                        op.gerund(),
                        elems.len(),
                        set.describe()
                    ),
                }
            }
        }
    }
}

/// An ordered list of changes applied atomically by [`Nft::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends any operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }
    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// Whether some operation takes something away (a table, chain, rule,
    /// set or element, or flushes one). The kernel frees what a batch
    /// took away only after an RCU grace period, and the last close of the
    /// socket that sent it waits for that.
    pub fn takes_away(&self) -> bool {
        self.ops.iter().any(|op| match op {
            Op::AddTable(_) | Op::AddChain(_) | Op::AddRule { .. } | Op::AddSet(_) => false,
            Op::Elements { op, .. } => matches!(op, ElemOp::Delete | ElemOp::Destroy),
            _ => true,
        })
    }
    /// `add table`
    pub fn add_table(&mut self, t: &Table) -> &mut Self {
        self.push(Op::AddTable(t.clone()))
    }
    /// `delete table`
    pub fn delete_table(&mut self, t: &Table) -> &mut Self {
        self.push(Op::DeleteTable(t.clone()))
    }
    /// `destroy table`: delete it if present, not an error otherwise.
    pub fn destroy_table(&mut self, t: &Table) -> &mut Self {
        self.push(Op::DestroyTable(t.clone()))
    }
    /// `add chain`
    pub fn add_chain(&mut self, c: &Chain) -> &mut Self {
        self.push(Op::AddChain(c.clone()))
    }
    /// `delete chain` (must be empty and unreferenced)
    pub fn delete_chain(&mut self, c: &Chain) -> &mut Self {
        self.push(Op::DeleteChain(c.clone()))
    }
    /// `destroy chain`
    pub fn destroy_chain(&mut self, c: &Chain) -> &mut Self {
        self.push(Op::DestroyChain(c.clone()))
    }
    /// `flush chain`: removes all its rules.
    pub fn flush_chain(&mut self, c: &Chain) -> &mut Self {
        self.push(Op::FlushChain(c.clone()))
    }
    /// `add rule` (append at the end of the chain).
    pub fn add_rule(&mut self, c: &Chain, r: Rule) -> &mut Self {
        self.push(Op::AddRule {
            chain: c.clone(),
            rule: r,
            position: None,
            insert: false,
        })
    }
    /// `add rule ... position H`: after the rule with handle `h`.
    pub fn add_rule_after(&mut self, c: &Chain, h: u64, r: Rule) -> &mut Self {
        self.push(Op::AddRule {
            chain: c.clone(),
            rule: r,
            position: Some(h),
            insert: false,
        })
    }
    /// `insert rule`: at the start of the chain.
    pub fn insert_rule(&mut self, c: &Chain, r: Rule) -> &mut Self {
        self.push(Op::AddRule {
            chain: c.clone(),
            rule: r,
            position: None,
            insert: true,
        })
    }
    /// `delete rule ... handle H`
    pub fn delete_rule(&mut self, c: &Chain, handle: u64) -> &mut Self {
        self.push(Op::DeleteRule {
            chain: c.clone(),
            handle,
        })
    }
    /// `add set` / `add map`
    pub fn add_set(&mut self, s: &Set) -> &mut Self {
        self.push(Op::AddSet(s.clone()))
    }
    /// `delete set` / `delete map`
    pub fn delete_set(&mut self, s: &Set) -> &mut Self {
        self.push(Op::DeleteSet(s.clone()))
    }
    /// `destroy set` / `destroy map`
    pub fn destroy_set(&mut self, s: &Set) -> &mut Self {
        self.push(Op::DestroySet(s.clone()))
    }
    /// `flush set` / `flush map`
    pub fn flush_set(&mut self, s: &Set) -> &mut Self {
        self.push(Op::FlushSet(s.clone()))
    }
    /// Element changes of kind `op` on `s`.
    pub fn elements(&mut self, s: &Set, op: ElemOp, elems: Vec<Element>) -> &mut Self {
        self.push(Op::Elements {
            set: s.clone(),
            elems,
            op,
        })
    }
    /// `add element`
    pub fn add_elements(&mut self, s: &Set, elems: Vec<Element>) -> &mut Self {
        self.elements(s, ElemOp::Add, elems)
    }
    /// `create element` (EEXIST if present)
    pub fn create_elements(&mut self, s: &Set, elems: Vec<Element>) -> &mut Self {
        self.elements(s, ElemOp::Create, elems)
    }
    /// `delete element` (ENOENT if missing)
    pub fn delete_elements(&mut self, s: &Set, elems: Vec<Element>) -> &mut Self {
        self.elements(s, ElemOp::Delete, elems)
    }

    /// The batch as nft commands, one per operation, in order.
    pub fn render(&self) -> Vec<String> {
        self.ops.iter().map(Op::render).collect()
    }

    /// Encodes the batch. Sequence numbers start at `seq0` (used by BATCH_BEGIN).
    pub(crate) fn encode(&self, seq0: u32) -> Result<Encoded> {
        let mut b = MsgBuf::new();
        let mut seq = seq0;
        let mut msgs = Vec::new();
        let begin = b.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.end_msg(begin);
        let ty = |m: u16| (NFNL_SUBSYS_NFTABLES << 8) | m;
        for (i, op) in self.ops.iter().enumerate() {
            let fam = |t: &Table| t.family.to_raw();
            let (msg, flags, family) = match op {
                Op::AddTable(t) => (NFT_MSG_NEWTABLE, NLM_F_CREATE, fam(t)),
                Op::DeleteTable(t) => (NFT_MSG_DELTABLE, 0, fam(t)),
                Op::DestroyTable(t) => (NFT_MSG_DESTROYTABLE, 0, fam(t)),
                Op::AddChain(c) => (NFT_MSG_NEWCHAIN, NLM_F_CREATE, fam(&c.table)),
                Op::DeleteChain(c) => (NFT_MSG_DELCHAIN, 0, fam(&c.table)),
                Op::DestroyChain(c) => (NFT_MSG_DESTROYCHAIN, 0, fam(&c.table)),
                Op::FlushChain(c) => (NFT_MSG_DELRULE, 0, fam(&c.table)),
                Op::AddRule { chain, insert, .. } => (
                    NFT_MSG_NEWRULE,
                    if *insert {
                        NLM_F_CREATE
                    } else {
                        NLM_F_CREATE | NLM_F_APPEND
                    },
                    fam(&chain.table),
                ),
                Op::DeleteRule { chain, .. } => (NFT_MSG_DELRULE, 0, fam(&chain.table)),
                Op::AddSet(s) => (NFT_MSG_NEWSET, NLM_F_CREATE, fam(&s.table)),
                Op::DeleteSet(s) => (NFT_MSG_DELSET, 0, fam(&s.table)),
                Op::DestroySet(s) => (NFT_MSG_DESTROYSET, 0, fam(&s.table)),
                Op::FlushSet(s) => (NFT_MSG_DELSETELEM, 0, fam(&s.table)),
                Op::Elements { set, elems, op } => {
                    let (msg, flags) = match op {
                        ElemOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
                        ElemOp::Create => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL),
                        ElemOp::Delete => (NFT_MSG_DELSETELEM, 0),
                        ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, 0),
                    };
                    let adding = matches!(op, ElemOp::Add | ElemOp::Create);
                    for chunk in chunk_elements(elems) {
                        seq = seq.wrapping_add(1);
                        let m = b.begin_msg(
                            ty(msg),
                            NLM_F_REQUEST | NLM_F_ACK | flags,
                            seq,
                            fam(&set.table),
                            0,
                        );
                        let list: Vec<(usize, &Element)> =
                            chunk.clone().map(|j| (j, &elems[j])).collect();
                        let offsets = set.encode_elements(&mut b, m, &list, adding)?;
                        b.end_msg(m);
                        msgs.push(MsgInfo {
                            seq,
                            op: i,
                            elems: offsets,
                        });
                    }
                    continue;
                }
            };
            seq = seq.wrapping_add(1);
            let m = b.begin_msg(ty(msg), NLM_F_REQUEST | NLM_F_ACK | flags, seq, family, 0);
            match op {
                Op::AddTable(t) => t.encode(&mut b, true)?,
                Op::DeleteTable(t) | Op::DestroyTable(t) => t.encode(&mut b, false)?,
                Op::AddChain(c) => c.encode(&mut b)?,
                Op::DeleteChain(c) | Op::DestroyChain(c) => c.encode_id(&mut b),
                Op::FlushChain(c) => {
                    b.attr_str(NFTA_RULE_TABLE, &c.table.name);
                    b.attr_str(NFTA_RULE_CHAIN, &c.name);
                }
                Op::AddRule {
                    chain,
                    rule,
                    position,
                    ..
                } => rule.encode(&mut b, chain, *position)?,
                Op::DeleteRule { chain, handle } => {
                    b.attr_str(NFTA_RULE_TABLE, &chain.table.name);
                    b.attr_str(NFTA_RULE_CHAIN, &chain.name);
                    b.attr_be64(NFTA_RULE_HANDLE, *handle);
                }
                Op::AddSet(s) => s.encode(&mut b, i as u32 + 1)?,
                Op::DeleteSet(s) | Op::DestroySet(s) => {
                    b.attr_str(crate::set::NFTA_SET_TABLE, &s.table.name);
                    b.attr_str(crate::set::NFTA_SET_NAME, &s.name);
                }
                Op::FlushSet(s) => {
                    b.attr_str(crate::set::NFTA_SET_ELEM_LIST_TABLE, &s.table.name);
                    b.attr_str(crate::set::NFTA_SET_ELEM_LIST_SET, &s.name);
                }
                Op::Elements { .. } => unreachable!(),
            }
            b.end_msg(m);
            msgs.push(MsgInfo {
                seq,
                op: i,
                elems: Vec::new(),
            });
        }
        seq = seq.wrapping_add(1);
        let end = b.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.end_msg(end);
        Ok(Encoded {
            buf: b.buf,
            begin_seq: seq0,
            msgs,
            last_seq: seq,
        })
    }

    /// Names the object a kernel error is about.
    fn describe_error(&self, enc: &Encoded, ack: &Ack) -> String {
        if ack.seq == enc.begin_seq {
            return "committing batch".into();
        }
        let Some(info) = enc.msgs.iter().find(|m| m.seq == ack.seq) else {
            return format!("batch message with unknown sequence {}", ack.seq);
        };
        let op = &self.ops[info.op];
        if let (Op::Elements { set, elems, op }, Some(off)) = (op, ack.offset) {
            // The kernel points at the failing NFTA_LIST_ELEM; take the last
            // element that starts at or before that offset.
            if let Some(&(_, idx)) = info.elems.iter().rev().find(|(o, _)| *o as u32 <= off) {
                let prep = if matches!(op, ElemOp::Add | ElemOp::Create) {
                    "to"
                } else {
                    "from"
                };
                return format!(
                    "{} element {} {prep} {}",
                    op.gerund(),
                    elems[idx].render_key(),
                    set.describe()
                );
            }
        }
        op.describe()
    }
}

/// Splits element indices so each message's element list stays under the limit.
fn chunk_elements(elems: &[Element]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, e) in elems.iter().enumerate() {
        // Generous upper bound: key, key_end or interval-end element, data, timeout.
        let key: usize = e.key.len() * 16;
        let data: usize = e.data.as_ref().map(|d| d.len() * 16 + 300).unwrap_or(0);
        let est = 64 + 3 * key + data;
        if size + est > ELEM_CHUNK_BYTES && i > start {
            out.push(start..i);
            start = i;
            size = 0;
        }
        size += est;
    }
    if start < elems.len() || elems.is_empty() {
        out.push(start..elems.len());
    }
    out
}

pub(crate) struct MsgInfo {
    seq: u32,
    op: usize,
    /// (offset in message, element index) of each encoded element attribute.
    elems: Vec<(usize, usize)>,
}

pub(crate) struct Encoded {
    pub(crate) buf: Vec<u8>,
    begin_seq: u32,
    last_seq: u32,
    msgs: Vec<MsgInfo>,
}

impl Nft {
    /// Sends `batch` as one atomic transaction and waits for every ack. On failure
    /// nothing of the batch is applied and the error names the failing object.
    /// With `BERTH_NFT_MAX_KERNEL` set, a batch holding a change that kernel
    /// would not know is refused before anything is sent.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(max) = crate::compat::max_kernel_from_env()? {
            crate::compat::check(&batch.ops, max)?;
        }
        let seq0 = self.sock.next_seq();
        let enc = batch.encode(seq0)?;
        // Keep later batches' sequence numbers distinct from this one's.
        self.sock.seq = enc.last_seq;
        self.sock
            .ensure_buffers(enc.buf.len(), enc.msgs.len() + 2)?;
        self.sock.send(&enc.buf)?;

        let mut pending: std::collections::HashSet<u32> = enc.msgs.iter().map(|m| m.seq).collect();
        let mut first_err: Option<Ack> = None;
        // nfnetlink processes the batch synchronously inside sendmsg(), so every ack
        // is already queued: drain without blocking, then block only if some are
        // still missing (which would indicate an unusual kernel path).
        let mut blocking = false;
        loop {
            let dgram = match self.sock.recv(!blocking)? {
                Some(d) => d,
                None => {
                    if pending.is_empty() || first_err.is_some() {
                        break;
                    }
                    blocking = true;
                    continue;
                }
            };
            for m in parse_msgs(&dgram)? {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let ack = parse_ack(&m)?;
                let ours = pending.remove(&ack.seq) || ack.seq == enc.begin_seq;
                if ours && ack.errno != 0 {
                    let earlier = first_err
                        .as_ref()
                        .map(|f| seq_before(ack.seq, f.seq))
                        .unwrap_or(true);
                    if earlier {
                        first_err = Some(ack);
                    }
                }
            }
            if blocking && (pending.is_empty() || first_err.is_some()) {
                blocking = false;
            }
        }
        if let Some(ack) = first_err {
            return Err(NftError::Kernel {
                what: batch.describe_error(&enc, &ack),
                errno: ack.errno,
                detail: ack.msg,
            });
        }
        Ok(())
    }
}

fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{priority, ChainType, Hook, Policy};
    use crate::types::{DataType, Family, L4Proto};
    use std::net::Ipv4Addr;

    #[test]
    fn renders_berth_style_commands() {
        let t = Table::new(Family::Inet, "berth");
        let fwd = Chain::base(
            &t,
            "forward",
            ChainType::Filter,
            Hook::Forward,
            priority::FILTER,
        )
        .policy(Policy::Accept);
        let pre = Chain::base(
            &t,
            "prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            priority::DSTNAT,
        );
        let m = Set::map(
            &t,
            "published4",
            &[
                DataType::Ipv4Addr,
                DataType::InetProto,
                DataType::InetService,
            ],
            &[DataType::Ipv4Addr, DataType::InetService],
        );
        let mut b = Batch::new();
        b.add_table(&t)
            .add_chain(&fwd)
            .add_chain(&pre)
            .add_set(&m)
            .add_elements(
                &m,
                vec![Element::new([
                    Ipv4Addr::UNSPECIFIED.into(),
                    L4Proto::Tcp.into(),
                    8080u16.into(),
                ])
                .to([Ipv4Addr::new(10, 90, 0, 2).into(), 80u16.into()])],
            )
            .add_rule(&fwd, Rule::new().iifname("br0").oifname_ne("br0").accept());
        assert_eq!(
            b.render(),
            vec![
                "add table inet berth",
                "add chain inet berth forward { type filter hook forward priority filter; policy accept; }",
                "add chain inet berth prerouting { type nat hook prerouting priority dstnat; }",
                "add map inet berth published4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }",
                "add element inet berth published4 { 0.0.0.0 . tcp . 8080 : 10.90.0.2 . 80 }",
                "add rule inet berth forward iifname \"br0\" oifname != \"br0\" accept",
            ]
        );
        let enc = b.encode(100).unwrap();
        let msgs = parse_msgs(&enc.buf).unwrap();
        assert_eq!(msgs.len(), 8);
        assert_eq!(msgs[0].ty, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs[0].payload[2..4], NFNL_SUBSYS_NFTABLES.to_be_bytes());
        assert_eq!(msgs[1].ty, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE);
        assert_eq!(msgs[1].flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(
            msgs[6].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        );
        assert_eq!(msgs[7].ty, NFNL_MSG_BATCH_END);
        let seqs: Vec<u32> = msgs.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (100..108).collect::<Vec<_>>());
    }

    #[test]
    fn big_element_lists_are_chunked() {
        let t = Table::new(Family::Inet, "berth");
        let s = Set::new(&t, "s", &[DataType::Ipv4Addr]);
        let elems: Vec<Element> = (0..10_000u32)
            .map(|i| Element::of(Ipv4Addr::from(i)))
            .collect();
        let mut b = Batch::new();
        b.add_elements(&s, elems);
        let enc = b.encode(1).unwrap();
        assert!(enc.msgs.len() > 1);
        let total: usize = enc.msgs.iter().map(|m| m.elems.len()).sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn only_batches_that_take_something_away_say_so() {
        let t = Table::new(Family::Inet, "berth");
        let s = Set::new(&t, "s", &[DataType::Ipv4Addr]);
        let one = || vec![Element::of(Ipv4Addr::new(10, 0, 0, 1))];
        let mut adds = Batch::new();
        adds.add_table(&t).add_set(&s).add_elements(&s, one());
        assert!(!adds.takes_away());
        let mut deletes = adds.clone();
        deletes.delete_elements(&s, one());
        assert!(deletes.takes_away());
        let mut flush = Batch::new();
        flush.flush_set(&s);
        assert!(flush.takes_away());
    }
}
