//! The `inet` table and its base chains: the part of the ruleset that does
//! not depend on any one network. Base chains accept or dispatch (their
//! policy is accept), so traffic that is not berth's passes them unchanged;
//! the one drop, in `input`, matches only packets from berth's bridges to
//! 127.0.0.0/8 (see Loopback below). (The `bridge` table of anti-spoofing
//! is `guard.rs`.)
//!
//! ```text
//! set bridges   { type ifname; }             every berth bridge (isolation)
//! set subnets4  { type ipv4_addr; flags interval; }  every berth subnet
//! set dns4      { type ipv4_addr . inet_proto . inet_service; }  GATEWAY . udp|tcp . 53 of DNS networks
//! map fwd_from  { type ifname : verdict; }   bridge -> jump NET-out
//! map fwd_to    { type ifname : verdict; }   bridge -> jump NET-in
//! map nat_from  { type ifname : verdict; }   bridge -> jump NET-nat
//! map dnat_from { type ifname : verdict; }   --internal bridge -> jump NET-out
//! map input_from { type ifname : verdict; }  --no-host-access bridge -> jump NET-host
//! chain forward     { filter forward: ct established,related accept;
//!                     ct status dnat iifname vmap @dnat_from;
//!                     ct status dnat accept; iifname vmap @fwd_from;
//!                     oifname vmap @fwd_to }
//! map published4, published4_any, published4_ranges   published ports (see ports.rs)
//! chain postrouting { nat srcnat:
//!     oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade
//!     ct status dnat ip saddr @subnets4 ip daddr @subnets4 masquerade
//!     iifname vmap @nat_from }
//! chain input { filter input:
//!     iifname @bridges ip daddr 127.0.0.0/8 ct status & (dnat) == 0 drop
//!     iifname vmap @input_from }
//! chain prerouting, output { nat dstnat:
//!     ip daddr 127.0.0.0/8 return                          (prerouting only)
//!     for each of tcp, udp, sctp:
//!       meta l4proto P fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4
//!     ip daddr . meta l4proto . th dport @dns4 return
//!     for each of tcp, udp, sctp:
//!       meta l4proto P fib daddr type local dnat ip to meta l4proto . th dport map @published4_any
//!       meta l4proto P fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4_ranges }
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
//! Loopback from outside: a packet to 127.0.0.0/8 that arrives on an
//! interface (a frame sent to the host's MAC from the LAN, another network
//! or an `--internal` one) is a martian the kernel drops, unless a DNAT
//! turned it into something else first: `fib daddr type local` holds for
//! it. `prerouting` therefore returns on 127.0.0.0/8 before any lookup, so
//! `HOST_IP=127.0.0.1` means the host alone (the class Docker closed after
//! moby#45610), and no 0.0.0.0 mapping answers on a loopback address from
//! outside either. The host's own connections meet `output`, not
//! `prerouting`.
//!
//! DNS: the gateway's port 53 of a network with DNS is berth's name
//! server. A 0.0.0.0 mapping of port 53 (a runtime's container publishing
//! 53/udp) would otherwise DNAT every network's queries to that container.
//! `dns4` lists those listeners, and its `return` comes after the lookups
//! of mappings bound to an address (where the NETAVARK_DNS_PORT redirect
//! of `GATEWAY:53` lives; a mapping of a DNS listener's own address and
//! port is refused when it is asked for) and before those on every
//! address and the ranges. The mapping still answers on every other host
//! address.
//!
//! Loopback: `route_localnet` on the bridges, needed for 127.0.0.1 ports,
//! also lets the kernel accept a packet to 127.0.0.0/8 arriving on a
//! bridge, so a container that routes 127.0.0.1 to its gateway would reach
//! the host's services that listen only on 127.0.0.1 (CVE-2020-8558).
//! `input` drops such packets unless their connection was DNATed: a
//! published port is reachable, nothing else on the host's loopback is.
//! It is the one drop in a base chain, and it matches only packets from
//! berth's bridges.
//!
//! [::1]: IPv6 has no `route_localnet`. A connection from `::1` DNATed to
//! a container leaves with a source the container drops (RFC 4291), and
//! masqueraded, its reply is de-NATed back to `::1` at the bridge stage
//! when br_netfilter calls the ip6 hooks, then dropped on the bridge. So
//! `output` returns on `ip6 daddr ::1` before the IPv6 lookups, and berth's
//! background server listens on `[::1]:PORT` and relays (`portproxy`).

use std::net::Ipv4Addr;

use berth_nft::{
    priority, Batch, Chain, ChainType, CtState, CtStatus, DataType, Field, Hook, Policy, Rule, Set,
};

use super::ports::{self, PUBLISHED, PUBLISHED_ANY, PUBLISHED_RANGES};
use super::table;
use crate::model::{Family, Proto};

pub const BRIDGES: &str = "bridges";
pub const FWD_FROM: &str = "fwd_from";
pub const FWD_TO: &str = "fwd_to";
pub const NAT_FROM: &str = "nat_from";
pub const DNAT_FROM: &str = "dnat_from";
pub const INPUT_FROM: &str = "input_from";
pub const SUBNETS: &str = "subnets4";
pub const DNS: &str = "dns4";
pub const SUBNETS6: &str = "subnets6";
pub const DNS6: &str = "dns6";

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

/// `subnets6`: every berth IPv6 subnet.
pub fn subnets6() -> Set {
    Set::new(&table(), SUBNETS6, &[DataType::Ipv6Addr]).interval()
}

/// The subnets set of `family`.
pub fn subnets_of(family: Family) -> Set {
    match family {
        Family::V4 => subnets(),
        Family::V6 => subnets6(),
    }
}

/// `dns6`: `dns4` for the IPv6 gateways.
pub fn dns6() -> Set {
    Set::new(
        &table(),
        DNS6,
        &[
            DataType::Ipv6Addr,
            DataType::InetProto,
            DataType::InetService,
        ],
    )
}

/// The DNS listeners set of `family`.
pub fn dns_of(family: Family) -> Set {
    match family {
        Family::V4 => dns(),
        Family::V6 => dns6(),
    }
}

/// `dns4`: the address . protocol . port of each DNS listener berth's
/// name server has on a gateway, which no published port may take.
pub fn dns() -> Set {
    Set::new(
        &table(),
        DNS,
        &[
            DataType::Ipv4Addr,
            DataType::InetProto,
            DataType::InetService,
        ],
    )
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
    b.add_set(&dns());
    b.add_set(&subnets6());
    b.add_set(&dns6());
    for m in [FWD_FROM, FWD_TO, NAT_FROM, DNAT_FROM, INPUT_FROM] {
        b.add_set(&vmap(m));
    }
    for family in [Family::V4, Family::V6] {
        b.add_set(&ports::published_of(family))
            .add_set(&ports::published_any_of(family))
            .add_set(&ports::published_ranges_of(family));
    }
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
    // Networks with --no-host-access judge what their containers send
    // to the host.
    b.add_rule(&inp, Rule::new().vmap(&[Field::Iifname], INPUT_FROM));
    let key = [Field::IpDaddr, Field::L4Proto, Field::ThDport];
    // A packet from outside to a loopback address is never translated
    // (see Loopback from outside).
    b.add_rule(
        &pre,
        Rule::new()
            .ip_daddr_prefix(Ipv4Addr::new(127, 0, 0, 0), 8)
            .ret(),
    );
    // One rule per protocol and map: nft only accepts a port in a NAT map
    // key after a protocol match. A packet meets at most three lookups
    // (a given address, any address, ranges), two of them hash lookups,
    // whatever the number of mappings, and the DNS listeners' between.
    for chain in [&pre, &out] {
        for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
            b.add_rule(
                chain,
                Rule::new()
                    .l4proto(ports::l4proto(proto))
                    .fib_daddr_local()
                    .dnat_ip_map(&key, PUBLISHED, true),
            );
        }
        b.add_rule(chain, Rule::new().lookup(&key, DNS).ret());
        for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
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
        if std::ptr::eq(chain, &out) {
            // The host's own connections to [::1] are left to the
            // userspace forwarder (`portproxy`): DNATed, they could not
            // come back (see "[::1]" in the module's doc).
            b.add_rule(
                chain,
                Rule::new().ip6_daddr(std::net::Ipv6Addr::LOCALHOST).ret(),
            );
        }
        ipv6_lookups(b, chain);
    }
    b.add_rule(
        &fwd,
        Rule::new()
            .ct_state(&[CtState::Established, CtState::Related])
            .accept(),
    );
    // Connections to published ports were let in by their DNAT, except
    // from --internal networks, which reach nothing beyond the host that
    // way either; the networks' own chains judge everything else.
    b.add_rule(
        &fwd,
        Rule::new()
            .ct_status(&[CtStatus::Dnat])
            .vmap(&[Field::Iifname], DNAT_FROM),
    );
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
    // The same for IPv6: a connection from a berth subnet DNATed back
    // into one is answered through the host in both br_netfilter modes.
    b.add_rule(
        &post,
        Rule::new()
            .ct_status(&[CtStatus::Dnat])
            .lookup(&[Field::Ip6Saddr], SUBNETS6)
            .lookup(&[Field::Ip6Daddr], SUBNETS6)
            .masquerade(),
    );
    b.add_rule(&post, Rule::new().vmap(&[Field::Iifname], NAT_FROM));
}

/// The IPv6 published-port lookups of `prerouting` or `output`, in the
/// IPv4 ones' order: the maps of one address, the DNS listeners, every
/// address, ranges. `meta nfproto ipv6` first: `published6_any`'s key
/// has no address, and an IPv4 packet has no business in IPv6's maps.
/// No loopback return is needed in `prerouting`: the kernel drops a
/// packet to ::1 that arrives on any interface but lo before the hook.
fn ipv6_lookups(b: &mut Batch, chain: &Chain) {
    use ports::{PUBLISHED6, PUBLISHED6_ANY, PUBLISHED6_RANGES};
    let key = [Field::Ip6Daddr, Field::L4Proto, Field::ThDport];
    let six = || Rule::new().nfproto(berth_nft::Family::Ip6);
    for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
        b.add_rule(
            chain,
            six()
                .l4proto(ports::l4proto(proto))
                .fib_daddr_local()
                .dnat_ip6_map(&key, PUBLISHED6, true),
        );
    }
    b.add_rule(chain, Rule::new().lookup(&key, DNS6).ret());
    for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
        b.add_rule(
            chain,
            six()
                .l4proto(ports::l4proto(proto))
                .fib_daddr_local()
                .dnat_ip6_map(&key[1..], PUBLISHED6_ANY, true),
        );
        b.add_rule(
            chain,
            six()
                .l4proto(ports::l4proto(proto))
                .fib_daddr_local()
                .dnat_ip6_map(&key, PUBLISHED6_RANGES, false),
        );
    }
}
