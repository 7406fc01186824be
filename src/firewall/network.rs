//! One network's chains, reached from the base chains through the verdict
//! maps by its bridge name:
//!
//! ```text
//! chain NET-out {                      # forwarded, entering from the bridge
//!     ct state invalid DROP
//!     oifname "BRIDGE" accept|DROP     # neighbours (--no-icc: DROP)
//!     ip daddr CIDR REJECT             # each --deny-egress
//!     DROP                             # --internal: nothing leaves
//!     oifname @bridges DROP            # isolation from other networks
//!     accept                           # out to the world
//! }
//! chain NET-in  { ct state invalid DROP; ip saddr CLUSTER accept; DROP }   # new, from elsewhere
//! chain NET-nat { ip daddr CLUSTER return; ip saddr SUBNET oifname != "BRIDGE" masquerade }
//! chain NET-host {                     # --no-host-access: to the host itself
//!     ct state established,related accept
//!     ip daddr GATEWAY udp|tcp dport 53 accept            # with DNS
//!     ct status dnat ct original ip daddr GATEWAY accept  # DNS on another port
//!     DROP
//! }
//! chain NET-drop   { limit ... log prefix "berth NET drop: "; drop }    # --log-drops
//! chain NET-reject { limit ... log prefix "berth NET reject: "; reject } # --log-drops
//! ```
//!
//! DROP is `drop`, or `goto NET-drop` with `--log-drops` (REJECT likewise).
//! Replies and DNATed connections were accepted before (see skeleton),
//! except that an `--internal` network's DNATed connections (to another
//! network's published port, through a host address) meet `NET-out` too,
//! through `dnat_from`, and go no further than its neighbours.
//!
//! Elements: the bridge in `bridges`, `fwd_from`, `fwd_to` (and
//! `nat_from`, `dnat_from`, `input_from` as the options say), the subnet
//! in `subnets4`, and with DNS the gateway's port 53 (UDP and TCP) in
//! `dns4`, which no published port may take.
//! Same-bridge traffic meets these chains only when bridged frames pass
//! netfilter (`br_netfilter`); `--no-icc` makes sure they do by setting
//! `nf_call_iptables` on its bridge, and neighbours are judged before any
//! other rule so that the result is the same in both modes.

use berth_nft::{
    Batch, Chain, CtState, Element, Field, IcmpxCode, LogOptions, RateUnit, Rule, Value, Verdict,
};

use super::skeleton::{self, BRIDGES, DNAT_FROM, FWD_FROM, FWD_TO, INPUT_FROM, NAT_FROM};
use super::table;
use crate::model::{names, Family, Network, Proto};

/// ICMPv6 neighbour solicitation and advertisement (RFC 4861).
const ND_SOLICIT: u8 = 135;
const ND_ADVERT: u8 = 136;

/// Logged drops per second per network, and the burst allowed above it.
const LOG_RATE: u64 = 5;
const LOG_BURST: u32 = 10;

/// The names of a network's chains.
pub struct Chains {
    pub out: Chain,
    pub inward: Chain,
    pub nat: Chain,
    pub drop: Chain,
    pub reject: Chain,
    pub host: Chain,
}

/// nf_tables chain names have at most 255 bytes (NFT_CHAIN_MAXNAMELEN,
/// 256 with the NUL); "-reject" is the longest suffix.
const CHAIN_BASE_MAX: usize = 255 - "-reject".len();

/// The kernel's log prefixes have at most 127 bytes (NF_LOG_PREFIXLEN,
/// 128 with the NUL); "berth " and " reject: " take 15.
const LOG_NAME_MAX: usize = 127 - "berth  reject: ".len();

pub fn chains(net: &Network) -> Chains {
    let t = table();
    let base = names::shortened(&net.name, CHAIN_BASE_MAX);
    let c = |suffix: &str| Chain::regular(&t, format!("{base}-{suffix}"));
    Chains {
        out: c("out"),
        inward: c("in"),
        nat: c("nat"),
        drop: c("drop"),
        reject: c("reject"),
        host: c("host"),
    }
}

/// The DNS listeners of the network's gateway of `family` that no
/// published port may take (`dns4`, `dns6`): UDP and TCP port 53, when the
/// network has DNS.
fn dns_listeners(net: &Network, family: Family) -> Vec<Element> {
    let Some(gateway) = net
        .subnet_of(family)
        .and_then(|s| s.gateway)
        .filter(|_| net.policy.dns)
    else {
        return Vec::new();
    };
    [Proto::Udp, Proto::Tcp]
        .into_iter()
        .map(|p| {
            Element::new([
                Value::from(gateway).into(),
                Value::Proto(super::ports::l4proto(p)).into(),
                Value::Port(53).into(),
            ])
        })
        .collect()
}

/// Whether the network has a masquerade chain.
fn masquerades(net: &Network) -> bool {
    net.policy.masquerade && !net.policy.internal
}

fn ifname(name: &str) -> Element {
    Element::of(Value::Ifname(name.to_string()))
}

/// The network's subnet of `family` as an element of `subnets4` or
/// `subnets6`, if it has one.
fn subnet(net: &Network, family: Family) -> Option<Element> {
    let s = net.subnet_of(family)?.net;
    Some(Element::prefix(s.network(), s.prefix_len()).expect("a prefix length within its family"))
}

fn jump_to(bridge: &str, chain: &Chain) -> Element {
    ifname(bridge).to([Value::Verdict(Verdict::Jump(chain.name.clone()))])
}

/// How a network's rules end when they refuse a packet: counted and
/// dropped/rejected here, or sent to the logging chains.
struct Ends {
    /// (drop chain, reject chain) with `--log-drops`.
    logged: Option<(String, String)>,
}

impl Ends {
    fn drop(&self, r: Rule) -> Rule {
        match &self.logged {
            Some((drop, _)) => r.goto(drop),
            None => r.counter().drop(),
        }
    }
    fn reject(&self, r: Rule) -> Rule {
        match &self.logged {
            Some((_, reject)) => r.goto(reject),
            None => r.counter().reject_icmpx(IcmpxCode::AdminProhibited),
        }
    }
}

/// Appends the network's chains, rules and map elements.
pub fn add(b: &mut Batch, net: &Network) {
    let c = chains(net);
    let p = &net.policy;
    let br = net.bridge.as_str();
    let ends = Ends {
        logged: p
            .log_drops
            .then(|| (c.drop.name.clone(), c.reject.name.clone())),
    };
    if p.log_drops {
        let log = |what: &str| {
            Rule::new()
                .limit(LOG_RATE, RateUnit::Second, LOG_BURST)
                .log(LogOptions {
                    prefix: Some(format!(
                        "berth {} {what}: ",
                        names::shortened(&net.name, LOG_NAME_MAX)
                    )),
                    ..Default::default()
                })
        };
        b.add_chain(&c.drop).add_chain(&c.reject);
        b.add_rule(&c.drop, log("drop"))
            .add_rule(&c.drop, Rule::new().counter().drop());
        b.add_rule(&c.reject, log("reject")).add_rule(
            &c.reject,
            Rule::new()
                .counter()
                .reject_icmpx(IcmpxCode::AdminProhibited),
        );
    }

    b.add_chain(&c.out).add_chain(&c.inward);
    b.add_rule(&c.out, ends.drop(Rule::new().ct_state(&[CtState::Invalid])));
    let neighbours = Rule::new().oifname(br);
    b.add_rule(
        &c.out,
        if p.icc {
            neighbours.accept()
        } else {
            ends.drop(neighbours)
        },
    );
    for d in &p.deny_egress {
        b.add_rule(
            &c.out,
            ends.reject(Rule::new().daddr_prefix(d.network(), d.prefix_len())),
        );
    }
    if p.internal {
        b.add_rule(&c.out, ends.drop(Rule::new()));
    } else {
        b.add_rule(
            &c.out,
            ends.drop(Rule::new().lookup(&[Field::Oifname], BRIDGES)),
        );
        b.add_rule(&c.out, Rule::new().accept());
    }
    b.add_rule(
        &c.inward,
        ends.drop(Rule::new().ct_state(&[CtState::Invalid])),
    );
    // Routed peers (`--cluster-cidr`) may open connections to containers.
    for d in &p.cluster_cidrs {
        b.add_rule(
            &c.inward,
            Rule::new()
                .saddr_prefix(d.network(), d.prefix_len())
                .accept(),
        );
    }
    b.add_rule(&c.inward, ends.drop(Rule::new()));

    if masquerades(net) {
        b.add_chain(&c.nat);
        // Routed peers see the container's own address.
        for d in &p.cluster_cidrs {
            b.add_rule(
                &c.nat,
                Rule::new().daddr_prefix(d.network(), d.prefix_len()).ret(),
            );
        }
        // Each subnet leaving by another interface: NAT44, and NAT66 for
        // an IPv6 subnet (a ULA prefix is routed nowhere beyond the host;
        // a routed global prefix wants --no-masquerade).
        for s in &net.subnets {
            b.add_rule(
                &c.nat,
                Rule::new()
                    .saddr_prefix(s.net.network(), s.net.prefix_len())
                    .oifname_ne(br)
                    .masquerade(),
            );
        }
        b.add_elements(&skeleton::vmap(NAT_FROM), vec![jump_to(br, &c.nat)]);
    }
    if !p.host_access {
        b.add_chain(&c.host);
        b.add_rule(
            &c.host,
            Rule::new()
                .ct_state(&[CtState::Established, CtState::Related])
                .accept(),
        );
        // IPv6 needs neighbour discovery with the gateway (solicitations
        // and advertisements), as IPv4 needs ARP, which no inet hook sees.
        if net.subnet6().is_some() {
            b.add_rule(
                &c.host,
                Rule::new()
                    .icmpv6_type_range(ND_SOLICIT, ND_ADVERT)
                    .accept(),
            );
        }
        for gateway in net.gateways().into_iter().filter(|_| p.dns) {
            for proto in [Proto::Udp, Proto::Tcp] {
                b.add_rule(
                    &c.host,
                    Rule::new()
                        .daddr(gateway)
                        .l4proto(super::ports::l4proto(proto))
                        .th_dport(53)
                        .accept(),
                );
            }
            // The server may listen on another port, reached through the
            // gateway's port 53 by a DNAT (NETAVARK_DNS_PORT).
            b.add_rule(
                &c.host,
                Rule::new()
                    .ct_status(&[berth_nft::CtStatus::Dnat])
                    .ct_original_daddr(gateway)
                    .accept(),
            );
        }
        b.add_rule(&c.host, ends.drop(Rule::new()));
        b.add_elements(&skeleton::vmap(INPUT_FROM), vec![jump_to(br, &c.host)]);
    }
    if p.internal {
        b.add_elements(&skeleton::vmap(DNAT_FROM), vec![jump_to(br, &c.out)]);
    }
    for family in [Family::V4, Family::V6] {
        let dns = dns_listeners(net, family);
        if !dns.is_empty() {
            b.add_elements(&skeleton::dns_of(family), dns);
        }
    }
    b.add_elements(&skeleton::bridges(), vec![ifname(br)]);
    for family in [Family::V4, Family::V6] {
        if let Some(subnet) = subnet(net, family) {
            b.add_elements(&skeleton::subnets_of(family), vec![subnet]);
        }
    }
    b.add_elements(&skeleton::vmap(FWD_FROM), vec![jump_to(br, &c.out)]);
    b.add_elements(&skeleton::vmap(FWD_TO), vec![jump_to(br, &c.inward)]);
}

/// Appends what removes the network's chains and elements. Only what
/// [`add`] made for this network is named, with plain deletes: `destroy`
/// (delete if present) exists only since Linux 6.3, and berth knows what
/// exists because the network's policy decides it.
pub fn remove(b: &mut Batch, net: &Network) {
    use berth_nft::ElemOp::Delete;
    let c = chains(net);
    let br = net.bridge.as_str();
    b.elements(&skeleton::vmap(FWD_FROM), Delete, vec![ifname(br)]);
    b.elements(&skeleton::vmap(FWD_TO), Delete, vec![ifname(br)]);
    if masquerades(net) {
        b.elements(&skeleton::vmap(NAT_FROM), Delete, vec![ifname(br)]);
    }
    if !net.policy.host_access {
        b.elements(&skeleton::vmap(INPUT_FROM), Delete, vec![ifname(br)]);
    }
    if net.policy.internal {
        b.elements(&skeleton::vmap(DNAT_FROM), Delete, vec![ifname(br)]);
    }
    for family in [Family::V4, Family::V6] {
        let dns = dns_listeners(net, family);
        if !dns.is_empty() {
            b.elements(&skeleton::dns_of(family), Delete, dns);
        }
    }
    b.elements(&skeleton::bridges(), Delete, vec![ifname(br)]);
    for family in [Family::V4, Family::V6] {
        if let Some(subnet) = subnet(net, family) {
            b.elements(&skeleton::subnets_of(family), Delete, vec![subnet]);
        }
    }
    b.delete_chain(&c.out).delete_chain(&c.inward);
    if masquerades(net) {
        b.delete_chain(&c.nat);
    }
    if !net.policy.host_access {
        b.delete_chain(&c.host);
    }
    if net.policy.log_drops {
        b.delete_chain(&c.drop).delete_chain(&c.reject);
    }
}
