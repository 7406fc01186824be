//! Reading rules back as short text: enough to name a foreign rule that
//! could drop berth's traffic ("iifname "eth0" ... drop", "xt target
//! REJECT"), not a full `nft list` decoder. Expressions it does not know
//! are shown by their kernel name, so nothing is hidden.

use crate::error::Result;
use crate::netlink::{parse_msgs, Attrs};
use crate::rule::{NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_TABLE};
use crate::table::Table;
use crate::Nft;

const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// What a rule ends in, when it ends in a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleVerdict {
    Accept,
    Drop,
    /// `reject`, or an iptables `REJECT` target.
    Reject,
    Jump(String),
    Goto(String),
    Return,
}

/// One rule of a chain, as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub chain: String,
    pub handle: u64,
    /// The rule in short text, e.g. `iifname "docker0" oifname != "docker0" accept`.
    pub text: String,
    pub verdict: Option<RuleVerdict>,
}

impl Nft {
    /// Every rule of `table`, in chain order.
    pub fn list_rules(&mut self, table: &Table) -> Result<Vec<RuleInfo>> {
        let raw = self.dump_rules(table)?;
        let mut out = Vec::new();
        for r in &raw {
            for m in parse_msgs(r)? {
                let a = m.nf_attrs();
                if a.str(NFTA_RULE_TABLE).as_deref() != Some(table.name.as_str()) {
                    continue;
                }
                let (mut text, verdict) = match a.nested(NFTA_RULE_EXPRESSIONS) {
                    Some(list) => describe(&list),
                    None => (String::new(), None),
                };
                if let Some(comment) = a.get(NFTA_RULE_USERDATA).and_then(comment_of) {
                    text.push_str(&format!(" comment {comment:?}"));
                }
                out.push(RuleInfo {
                    chain: a.str(NFTA_RULE_CHAIN).unwrap_or_default(),
                    handle: a.be64(NFTA_RULE_HANDLE).unwrap_or(0),
                    text: text.trim().to_string(),
                    verdict,
                });
            }
        }
        Ok(out)
    }
}

/// The comment nft keeps in a rule's user data (TLV type 0).
fn comment_of(ud: &[u8]) -> Option<String> {
    let mut rest = ud;
    while rest.len() >= 2 {
        let (ty, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if ty == 0 {
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        rest = &rest[2 + len..];
    }
    None
}

/// What the last load into a register was, so a `cmp` can say what it
/// compares.
#[derive(Clone)]
enum Loaded {
    Meta(u32),
    Payload { base: u32, offset: u32, len: u32 },
    Ct(u32),
    Other(String),
}

fn meta_name(key: u32) -> String {
    match key {
        0 => "meta length".into(),
        1 => "meta protocol".into(),
        3 => "meta mark".into(),
        4 => "iif".into(),
        5 => "oif".into(),
        6 => "iifname".into(),
        7 => "oifname".into(),
        15 => "meta nfproto".into(),
        16 => "meta l4proto".into(),
        k => format!("meta key {k}"),
    }
}

fn payload_name(base: u32, offset: u32, len: u32) -> String {
    match (base, offset, len) {
        (1, 12, 4) => "ip saddr".into(),
        (1, 16, 4) => "ip daddr".into(),
        (1, 9, 1) => "ip protocol".into(),
        (2, 0, 2) => "th sport".into(),
        (2, 2, 2) => "th dport".into(),
        (b, o, l) => format!(
            "@{}h,{},{}",
            ["ll", "nh", "th", "ih"][b.min(3) as usize],
            o * 8,
            l * 8
        ),
    }
}

fn value_text(loaded: Option<&Loaded>, data: &[u8]) -> String {
    match loaded {
        Some(Loaded::Meta(6 | 7)) => {
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            format!("{:?}", String::from_utf8_lossy(&data[..end]))
        }
        Some(Loaded::Payload { len: 4, .. }) if data.len() == 4 => {
            std::net::Ipv4Addr::new(data[0], data[1], data[2], data[3]).to_string()
        }
        Some(Loaded::Payload { len: 2, .. }) if data.len() == 2 => {
            u16::from_be_bytes([data[0], data[1]]).to_string()
        }
        _ if data.len() == 1 => data[0].to_string(),
        _ => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

fn loaded_name(l: &Loaded) -> String {
    match l {
        Loaded::Meta(k) => meta_name(*k),
        Loaded::Payload { base, offset, len } => payload_name(*base, *offset, *len),
        Loaded::Ct(2) => "ct state".into(),
        Loaded::Ct(k) => format!("ct key {k}"),
        Loaded::Other(s) => s.clone(),
    }
}

fn verdict_of(data: &Attrs<'_>) -> Option<RuleVerdict> {
    let v = data.nested(NFTA_DATA_VERDICT)?;
    let code = v.be32(NFTA_VERDICT_CODE)? as i32;
    let chain = v.str(NFTA_VERDICT_CHAIN).unwrap_or_default();
    Some(match code {
        0 => RuleVerdict::Drop,
        1 => RuleVerdict::Accept,
        -3 => RuleVerdict::Jump(chain),
        -4 => RuleVerdict::Goto(chain),
        -5 => RuleVerdict::Return,
        _ => return None,
    })
}

fn verdict_text(v: &RuleVerdict) -> String {
    match v {
        RuleVerdict::Accept => "accept".into(),
        RuleVerdict::Drop => "drop".into(),
        RuleVerdict::Reject => "reject".into(),
        RuleVerdict::Jump(c) => format!("jump {c}"),
        RuleVerdict::Goto(c) => format!("goto {c}"),
        RuleVerdict::Return => "return".into(),
    }
}

/// A rule's expressions as short text, and its verdict.
fn describe(list: &Attrs<'_>) -> (String, Option<RuleVerdict>) {
    let mut regs: std::collections::HashMap<u32, Loaded> = Default::default();
    let mut words: Vec<String> = Vec::new();
    let mut verdict = None;
    for (_, elem) in &list.list {
        let e = Attrs::new(elem);
        let name = e.str(NFTA_EXPR_NAME).unwrap_or_default();
        let d = e.nested(NFTA_EXPR_DATA).unwrap_or_default();
        match name.as_str() {
            "meta" => {
                if let (Some(dreg), Some(key)) = (d.be32(1), d.be32(2)) {
                    regs.insert(dreg, Loaded::Meta(key));
                }
            }
            "payload" => {
                if let Some(dreg) = d.be32(1) {
                    regs.insert(
                        dreg,
                        Loaded::Payload {
                            base: d.be32(2).unwrap_or(0),
                            offset: d.be32(3).unwrap_or(0),
                            len: d.be32(4).unwrap_or(0),
                        },
                    );
                }
            }
            "ct" => {
                if let (Some(dreg), Some(key)) = (d.be32(1), d.be32(2)) {
                    regs.insert(dreg, Loaded::Ct(key));
                }
            }
            "bitwise" => {
                if let (Some(s), Some(dst)) = (d.be32(1), d.be32(2)) {
                    if let Some(l) = regs.get(&s).cloned() {
                        regs.insert(dst, l);
                    }
                }
            }
            "cmp" => {
                let reg = d.be32(1).unwrap_or(0);
                let op = match d.be32(2).unwrap_or(0) {
                    0 => "",
                    1 => "!= ",
                    2 => "< ",
                    3 => "<= ",
                    4 => "> ",
                    _ => ">= ",
                };
                let data = d
                    .nested(3)
                    .and_then(|v| v.get(NFTA_DATA_VALUE))
                    .unwrap_or(&[]);
                let what = regs.get(&reg);
                let subject = what.map(loaded_name).unwrap_or_else(|| "reg".into());
                words.push(format!("{subject} {op}{}", value_text(what, data)));
            }
            "lookup" => {
                let reg = d.be32(2).unwrap_or(0);
                let subject = regs.get(&reg).map(loaded_name).unwrap_or_default();
                let inv = if d.be32(5) == Some(1) { "!= " } else { "" };
                words.push(format!("{subject} {inv}@{}", d.str(1).unwrap_or_default()));
            }
            "immediate" => {
                if d.be32(1) == Some(0) {
                    if let Some(v) = d.nested(2).and_then(|data| verdict_of(&data)) {
                        words.push(verdict_text(&v));
                        verdict = Some(v);
                    }
                } else if let Some(dreg) = d.be32(1) {
                    regs.insert(dreg, Loaded::Other("value".into()));
                }
            }
            "reject" => {
                words.push("reject".into());
                verdict = Some(RuleVerdict::Reject);
            }
            "counter" => words.push("counter".into()),
            "log" => words.push("log".into()),
            // iptables-nft keeps its matches and targets as xt expressions.
            "match" => words.push(format!("xt match {:?}", d.str(1).unwrap_or_default())),
            "target" => {
                let target = d.str(1).unwrap_or_default();
                if target == "REJECT" {
                    verdict = Some(RuleVerdict::Reject);
                }
                words.push(format!("xt target {target:?}"));
            }
            other => {
                if let Some(dreg) = d.be32(1) {
                    regs.insert(dreg, Loaded::Other(other.to_string()));
                }
                words.push(other.to_string());
            }
        }
    }
    (words.join(" "), verdict)
}
