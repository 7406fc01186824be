//! The table and its base chains: the part of the ruleset that does not
//! depend on any one network. Base chains accept or dispatch (their policy
//! is accept), so traffic that is not berth's passes them unchanged; the one
//! drop, in `input`, matches only packets from berth's bridges to
//! 127.0.0.0/8 (see Loopback below).
//!
//! ```text
//! set bridges   { type ifname; }             every berth bridge (isolation)
//! set subnets4  { type ipv4_addr; flags interval; }  every berth subnet
//! map fwd_from  { type ifname : verdict; }   bridge -> jump NET-out
//! map fwd_to    { type ifname : verdict; }   bridge -> jump NET-in
//! map nat_from  { type ifname : verdict; }   bridge -> jump NET-nat
//! chain forward     { filter forward: ct established,related accept;
//!                     ct status dnat accept; iifname vmap @fwd_from;
//!                     oifname vmap @fwd_to }
//! map published4, published4_any, published4_ranges   published ports (see ports.rs)
//! chain postrouting { nat srcnat:
//!     oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade
//!     ct status dnat ip saddr @subnets4 ip daddr @subnets4 masquerade
//!     iifname vmap @nat_from }
//! chain input { filter input:
//!     iifname @bridges ip daddr 127.0.0.0/8 ct status & (dnat) == 0 drop }
//! chain prerouting, output { nat dstnat: for each of tcp, udp, sctp:
//!     meta l4proto P fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4
//!     meta l4proto P fib daddr type local dnat ip to meta l4proto . th dport map @published4_any
//!     meta l4proto P fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4_ranges }
//! ```
//!
//! Published ports: `fib daddr type local` makes a mapping answer on every
//! host address (or only its HOST_IP, by the map key) and nowhere else, from
//! outside (prerouting) and from the host itself (output). The two
//! masquerades exist for replies. A connection from 127.0.0.1 must leave
//! with an address the container can answer (and needs `route_localnet` on
//! the bridge to be routed there at all). A connection from a berth bridge
//! DNATed back to a berth bridge (a neighbour, the container itself through
//! hairpin, another network) would otherwise be answered directly, past the
//! host's conntrack, when br_netfilter is off; masqueraded, the reply comes
//! back through the host in every mode. Traffic from outside is not
//! masqueraded, so the container sees the client's address.
//!
//! Loopback: `route_localnet` on the bridges, needed for 127.0.0.1 ports,
//! also lets the kernel accept a packet to 127.0.0.0/8 arriving on a
//! bridge, so a container that routes 127.0.0.1 to its gateway would reach
//! the host's services that listen only on 127.0.0.1 (CVE-2020-8558).
//! `input` drops such packets unless their connection was DNATed: a
//! published port is reachable, nothing else on the host's loopback is.
//! It is the one drop in a base chain, and it matches only packets from
//! berth's bridges.

use std::net::Ipv4Addr;

use berth_nft::{
    priority, Batch, Chain, ChainType, CtState, CtStatus, DataType, Field, Hook, Policy, Rule, Set,
};

use super::ports::{self, PUBLISHED, PUBLISHED_ANY, PUBLISHED_RANGES};
use super::table;
use crate::model::Proto;

pub const BRIDGES: &str = "bridges";
pub const FWD_FROM: &str = "fwd_from";
pub const FWD_TO: &str = "fwd_to";
pub const NAT_FROM: &str = "nat_from";
pub const SUBNETS: &str = "subnets4";

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

/// Filter input: keeps containers off the host's loopback services.
pub fn input() -> Chain {
    Chain::base(
        &table(),
        "input",
        ChainType::Filter,
        Hook::Input,
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

pub fn subnets() -> Set {
    Set::new(&table(), SUBNETS, &[DataType::Ipv4Addr]).interval()
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
    b.add_set(&subnets());
    for m in [FWD_FROM, FWD_TO, NAT_FROM] {
        b.add_set(&vmap(m));
    }
    b.add_set(&ports::published())
        .add_set(&ports::published_any())
        .add_set(&ports::published_ranges());
    let fwd = forward();
    let post = postrouting();
    let pre = prerouting();
    let out = output();
    let inp = input();
    b.add_chain(&fwd)
        .add_chain(&post)
        .add_chain(&pre)
        .add_chain(&out)
        .add_chain(&inp);
    // Bridges have route_localnet (for published 127.0.0.1 ports), so the
    // kernel would deliver a container's packet to 127.0.0.1 to the host's
    // loopback-only services (CVE-2020-8558). Only DNATed connections (a
    // published port) and replies to them (de-masqueraded back to
    // 127.0.0.1, still marked DNAT) may arrive there from a bridge.
    b.add_rule(
        &inp,
        Rule::new()
            .lookup(&[Field::Iifname], BRIDGES)
            .ip_daddr_prefix(Ipv4Addr::new(127, 0, 0, 0), 8)
            .ct_status_none(&[CtStatus::Dnat])
            .counter()
            .drop(),
    );
    let key = [Field::IpDaddr, Field::L4Proto, Field::ThDport];
    // One rule per protocol and map: nft only accepts a port in a NAT map
    // key after a protocol match. A packet meets at most three lookups
    // (a given address, any address, ranges), two of them hash lookups,
    // whatever the number of mappings.
    for chain in [&pre, &out] {
        for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
            b.add_rule(
                chain,
                Rule::new()
                    .l4proto(ports::l4proto(proto))
                    .fib_daddr_local()
                    .dnat_ip_map(&key, PUBLISHED, true),
            );
            b.add_rule(
                chain,
                Rule::new()
                    .l4proto(ports::l4proto(proto))
                    .fib_daddr_local()
                    .dnat_ip_map(&key[1..], PUBLISHED_ANY, true),
            );
            b.add_rule(
                chain,
                Rule::new()
                    .l4proto(ports::l4proto(proto))
                    .fib_daddr_local()
                    .dnat_ip_map(&key, PUBLISHED_RANGES, false),
            );
        }
    }
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
    b.add_rule(
        &post,
        Rule::new()
            .lookup(&[Field::Oifname], BRIDGES)
            .ct_status(&[CtStatus::Dnat])
            .ip_saddr_prefix(Ipv4Addr::new(127, 0, 0, 0), 8)
            .masquerade(),
    );
    // By address, not interface: with br_netfilter, a frame DNATed back
    // onto its own bridge is bridged, and postrouting sees no input
    // interface for it.
    b.add_rule(
        &post,
        Rule::new()
            .ct_status(&[CtStatus::Dnat])
            .lookup(&[Field::IpSaddr], SUBNETS)
            .lookup(&[Field::IpDaddr], SUBNETS)
            .masquerade(),
    );
    b.add_rule(&post, Rule::new().vmap(&[Field::Iifname], NAT_FROM));
}
