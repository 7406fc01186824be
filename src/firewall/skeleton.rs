//! The table and its base chains: the part of the ruleset that does not
//! depend on any one network. Base chains only accept or dispatch (their
//! policy is accept), so traffic that is not berth's passes them unchanged.
//!
//! ```text
//! set bridges   { type ifname; }             every berth bridge (isolation)
//! map fwd_from  { type ifname : verdict; }   bridge -> jump NET-out
//! map fwd_to    { type ifname : verdict; }   bridge -> jump NET-in
//! map nat_from  { type ifname : verdict; }   bridge -> jump NET-nat
//! chain forward     { filter forward: ct established,related accept;
//!                     ct status dnat accept; iifname vmap @fwd_from;
//!                     oifname vmap @fwd_to }
//! chain postrouting { nat srcnat: iifname vmap @nat_from }
//! chain prerouting, output { nat dstnat } (empty: published ports go there)
//! ```

use berth_nft::{
    priority, Batch, Chain, ChainType, CtState, CtStatus, DataType, Field, Hook, Policy, Rule, Set,
};

use super::table;

pub const BRIDGES: &str = "bridges";
pub const FWD_FROM: &str = "fwd_from";
pub const FWD_TO: &str = "fwd_to";
pub const NAT_FROM: &str = "nat_from";

pub fn forward() -> Chain {
    Chain::base(
        &table(),
        "forward",
        ChainType::Filter,
        Hook::Forward,
        priority::FILTER,
    )
    .policy(Policy::Accept)
}

pub fn postrouting() -> Chain {
    Chain::base(
        &table(),
        "postrouting",
        ChainType::Nat,
        Hook::Postrouting,
        priority::SRCNAT,
    )
}

pub fn prerouting() -> Chain {
    Chain::base(
        &table(),
        "prerouting",
        ChainType::Nat,
        Hook::Prerouting,
        priority::DSTNAT,
    )
}

pub fn output() -> Chain {
    Chain::base(
        &table(),
        "output",
        ChainType::Nat,
        Hook::Output,
        priority::DSTNAT,
    )
}

pub fn bridges() -> Set {
    Set::new(&table(), BRIDGES, &[DataType::Ifname])
}

/// A verdict map keyed by interface name.
pub fn vmap(name: &str) -> Set {
    Set::map(&table(), name, &[DataType::Ifname], &[DataType::Verdict])
}

/// Appends the table, its sets and maps, base chains and their rules.
pub fn create(b: &mut Batch) {
    let t = table();
    b.add_table(&t);
    b.add_set(&bridges());
    for m in [FWD_FROM, FWD_TO, NAT_FROM] {
        b.add_set(&vmap(m));
    }
    let fwd = forward();
    let post = postrouting();
    b.add_chain(&fwd)
        .add_chain(&post)
        .add_chain(&prerouting())
        .add_chain(&output());
    b.add_rule(
        &fwd,
        Rule::new()
            .ct_state(&[CtState::Established, CtState::Related])
            .accept(),
    );
    // Connections to published ports were let in by their DNAT; the
    // networks' own chains judge everything else.
    b.add_rule(&fwd, Rule::new().ct_status(&[CtStatus::Dnat]).accept());
    b.add_rule(&fwd, Rule::new().vmap(&[Field::Iifname], FWD_FROM));
    b.add_rule(&fwd, Rule::new().vmap(&[Field::Oifname], FWD_TO));
    b.add_rule(&post, Rule::new().vmap(&[Field::Iifname], NAT_FROM));
}
