//! The pure part of `berth trace`: from the facts gathered first (the
//! kernel's route lookups, a few sysctls, whether berth's table matches
//! the state) and berth's own model (networks, endpoints, published
//! ports), the packet's way through the hooks as berth's ruleset judges
//! it, step by step, and the one verdict. No I/O here, so every branch is
//! snapshot-tested with plain data.

use super::family;
use std::net::IpAddr;

use serde::Serialize;

use crate::kernel::RouteHop;
use crate::model::driver::{Driver, MacvlanMode};
use crate::model::{Endpoint, Family, Network, PortMapping, Proto};

/// What is sent: ICMP echo, or a protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Ping,
    Port(Proto, u16),
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flow::Ping => write!(f, "icmp echo"),
            Flow::Port(p, port) => write!(f, "{port}/{}", p.as_str()),
        }
    }
}

/// Where a packet starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The host's own stack.
    Host,
    /// A namespace: `label` as the user named it (or the endpoint), `netns`
    /// as `ip -n`/the state spells it, and berth's endpoints in it (none
    /// for a namespace berth does not know, such as a LAN peer).
    Namespace {
        label: String,
        netns: String,
        endpoints: Vec<Endpoint>,
    },
    /// An address beyond the host: the outside world.
    World(IpAddr),
}

/// Whether berth's tables hold what the state says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableCheck {
    /// No network: berth has no table, and none is expected.
    NoNetworks,
    Matches,
    Missing,
    Differs,
}

/// Everything the walk decides on, read before it starts.
#[derive(Clone, Debug)]
pub struct Facts {
    /// berth's ready networks and endpoints (with their ports).
    pub networks: Vec<Network>,
    pub endpoints: Vec<Endpoint>,
    pub src: Source,
    /// The destination as the user named it, and its address.
    pub dst_label: String,
    /// The destination's address: its family is the flow's.
    pub dst: IpAddr,
    pub flow: Flow,
    /// The route lookup where the packet starts (the host's for `host`;
    /// None for the outside world).
    pub src_route: Option<RouteHop>,
    /// The host's route back to a source that is not berth's: the
    /// interface its packets come in by.
    pub ingress: Option<RouteHop>,
    /// The host's route to the destination after any DNAT.
    pub host_route: Option<RouteHop>,
    /// Whether the destination (before DNAT) is one of the host's addresses.
    pub dst_local: bool,
    /// Whether a host socket holds the destination's port.
    pub host_listens: bool,
    /// The flow's family's forwarding sysctl (`net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`).
    pub ip_forward: Option<bool>,
    /// `net.bridge.bridge-nf-call-iptables` (`-ip6tables` for an IPv6
    /// flow); None when the file is missing.
    pub br_netfilter: Option<bool>,
    pub table: TableCheck,
    /// Base chains of other tables that hook forward with policy drop.
    pub foreign_drops: Vec<String>,
    /// Whether berth's state exists at all.
    pub state: bool,
}

/// One step of the walk: what happens, the command that shows the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub what: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The chain whose rule decided, and its verdict (`accept`, `drop`,
    /// `reject`, `dnat`, `masquerade`, `return`), for berth's chains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub pass: bool,
    /// What passes or drops the packet.
    pub reason: String,
    /// For a drop: what would change it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub src: String,
    pub dst: String,
    pub flow: String,
    pub steps: Vec<Step>,
    /// How the replies come back (for a flow that passes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reply: Vec<String>,
    pub verdict: Verdict,
    /// False when berth's tables do not match the state.
    pub trusted: bool,
    /// What the kernel did with a real packet (`--live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<super::live::Live>,
}

/// A published port's DNAT as berth's maps hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dnat {
    pub map: &'static str,
    /// The element as `nft list map` shows it.
    pub element: String,
    pub to: IpAddr,
    pub to_port: u16,
    /// The endpoint it belongs to.
    pub endpoint: String,
    pub network: String,
}

use family::is_loopback;

/// `CMD` run in the namespace `netns` as the state spells it.
fn ns_cmd(netns: &str, cmd: &str) -> String {
    if let Some(pid) = netns.strip_prefix("pid:") {
        format!("nsenter -t {pid} -n {cmd}")
    } else if netns.starts_with('/') {
        format!("nsenter --net={netns} {cmd}")
    } else {
        format!("ip -n {netns} {}", cmd.trim_start_matches("ip "))
    }
}

fn chain_cmd(chain: &str) -> String {
    format!("nft list chain inet berth {chain}")
}

/// The DNAT of a flow to `dst` from the host itself (`output`) or from an
/// interface (`prerouting`), looked up in berth's maps in the order of
/// the skeleton's rules: `published4` (a given address), the DNS
/// listeners' `return`, `published4_any`, `published4_ranges` (the `6`
/// maps for an IPv6 flow). Only a destination that is a host address
/// (`fib daddr type local`) is translated, and from an interface never a
/// loopback one; `[::1]` is never translated at all (berth's forwarder
/// listens there in user space).
pub fn dnat(
    networks: &[Network],
    endpoints: &[Endpoint],
    dst: IpAddr,
    dst_local: bool,
    flow: Flow,
    start_on_host: bool,
) -> Option<Dnat> {
    let Flow::Port(proto, port) = flow else {
        return None;
    };
    let fam = Family::of(dst);
    if !dst_local || (is_loopback(dst) && (!start_on_host || fam == Family::V6)) {
        return None;
    }
    let [published, published_any, published_ranges] = crate::firewall::ports::names(fam);
    let found = |pred: &dyn Fn(&PortMapping) -> bool, map: &'static str| {
        endpoints.iter().find_map(|e| {
            let to = e.ips.iter().copied().find(|ip| Family::of(*ip) == fam)?;
            let m = e.ports.iter().find(|m| {
                m.proto == proto
                    && m.host_port <= port
                    && port <= m.host_last()
                    && m.covers(fam)
                    && pred(m)
            })?;
            let to_port = m.container_port + (port - m.host_port);
            let addr = if m.is_any_address() {
                String::new()
            } else {
                format!("{} . ", m.host_ip)
            };
            let element = if map == published_ranges {
                let a = if m.is_any_address() {
                    family::subnet_any(fam)
                } else {
                    m.host_ip.to_string()
                };
                format!(
                    "{a} . {} . {}-{} : {}",
                    proto.as_str(),
                    m.host_port,
                    m.host_last(),
                    to
                )
            } else {
                format!("{addr}{} . {port} : {to} . {to_port}", proto.as_str())
            };
            Some(Dnat {
                map,
                element,
                to,
                to_port,
                endpoint: e.name.clone(),
                network: e.network.clone(),
            })
        })
    };
    let ranged = |m: &PortMapping| m.count > 1 && m.host_port == m.container_port;
    if let Some(d) = found(&|m| !ranged(m) && m.host_ip == dst, published) {
        return Some(d);
    }
    let dns_listener = matches!(proto, Proto::Udp | Proto::Tcp)
        && port == 53
        && networks
            .iter()
            .any(|n| n.policy.dns && family::gateway(n, fam) == dst);
    if dns_listener {
        return None;
    }
    if let Some(d) = found(&|m| !ranged(m) && m.is_any_address(), published_any) {
        return Some(d);
    }
    found(
        &|m| ranged(m) && (m.is_any_address() || m.host_ip == dst),
        published_ranges,
    )
}

struct Walk<'a> {
    f: &'a Facts,
    steps: Vec<Step>,
    reply: Vec<String>,
}

fn step(what: impl Into<String>) -> Step {
    Step {
        what: what.into(),
        lines: Vec::new(),
        command: None,
        chain: None,
        verdict: None,
    }
}

impl Step {
    fn line(mut self, l: impl Into<String>) -> Step {
        self.lines.push(l.into());
        self
    }
    fn cmd(mut self, c: impl Into<String>) -> Step {
        self.command = Some(c.into());
        self
    }
    fn decided(mut self, chain: &str, verdict: &str) -> Step {
        self.chain = Some(chain.into());
        self.verdict = Some(verdict.into());
        self
    }
}

fn pass(reason: impl Into<String>) -> Verdict {
    Verdict {
        pass: true,
        reason: reason.into(),
        fix: None,
    }
}

fn drop(reason: impl Into<String>, fix: impl Into<String>) -> Verdict {
    Verdict {
        pass: false,
        reason: reason.into(),
        fix: Some(fix.into()),
    }
}

fn describe_hop(h: &RouteHop) -> String {
    let mut s = h.kind.clone();
    if let Some(g) = h.gateway {
        s += &format!(" via {g}");
    }
    if let Some(o) = &h.oif {
        s += &format!(" dev {o}");
    }
    if let Some(p) = h.prefsrc {
        s += &format!(" src {p}");
    }
    s += &format!(" table {}", table_name(h.table));
    s
}

fn table_name(t: u32) -> String {
    match t {
        254 => "main".into(),
        255 => "local".into(),
        n => n.to_string(),
    }
}

fn routable(h: &RouteHop) -> bool {
    matches!(h.kind.as_str(), "unicast" | "local" | "broadcast")
}

impl<'a> Walk<'a> {
    fn net_of_bridge(&self, ifname: &str) -> Option<&'a Network> {
        self.f.networks.iter().find(|n| n.bridge == ifname)
    }

    fn net(&self, name: &str) -> Option<&'a Network> {
        self.f.networks.iter().find(|n| n.name == name)
    }

    fn endpoint_at(&self, net: &Network, ip: IpAddr) -> Option<&'a Endpoint> {
        self.f
            .endpoints
            .iter()
            .find(|e| e.network == net.name && family::ip(e, Family::of(ip)) == ip)
    }

    /// The flow's family.
    fn fam(&self) -> Family {
        Family::of(self.f.dst)
    }

    fn push(&mut self, s: Step) {
        self.steps.push(s);
    }

    /// The source's namespace, as a fix names it.
    fn src_netns(&self) -> String {
        match &self.f.src {
            Source::Namespace { netns, .. } => netns.clone(),
            Source::Host => "host".into(),
            Source::World(a) => a.to_string(),
        }
    }

    fn run(&mut self) -> Verdict {
        let f = self.f;
        self.table_step();
        match &f.src {
            Source::Host => self.start_on_host(),
            Source::World(addr) => {
                self.push(
                    step(format!(
                        "{addr} is outside the host: its packets come in from the outside world"
                    ))
                    .line("no route lookup to show on its side"),
                );
                self.enter_from_outside(*addr)
            }
            Source::Namespace {
                label,
                netns,
                endpoints,
            } => self.start_in_namespace(label, netns, endpoints),
        }
    }

    fn table_step(&mut self) {
        let s = match self.f.table {
            TableCheck::NoNetworks if !self.f.state => {
                step("berth has no state yet (no network, no endpoint): only the kernel's routes judge")
                    .cmd("nft list tables")
            }
            TableCheck::NoNetworks => step("berth has no bridge network: no table of berth's to judge")
                .cmd("nft list tables"),
            TableCheck::Matches => {
                step("berth's tables inet berth and bridge berth match the state")
                    .cmd("nft list table inet berth")
            }
            TableCheck::Missing => step(
                "berth's table inet berth is missing: the verdict below cannot be trusted; run `berth up`",
            )
            .cmd("nft list tables"),
            TableCheck::Differs => step(
                "berth's tables differ from the state: the verdict below cannot be trusted; run `berth up`",
            )
            .cmd("nft list table inet berth"),
        };
        self.push(s);
    }

    fn start_in_namespace(&mut self, label: &str, netns: &str, endpoints: &[Endpoint]) -> Verdict {
        let f = self.f;
        let Some(hop) = &f.src_route else {
            return drop(
                format!("no route lookup answered in {label}"),
                format!("check the namespace {netns} exists"),
            );
        };
        self.push(
            step(format!("route lookup in {label}: {}", describe_hop(hop))).cmd(ns_cmd(
                netns,
                &format!("{} get {}", route_cmd(self.fam()), f.dst),
            )),
        );
        if !routable(hop) {
            // --internal networks give their endpoints no default route.
            if let Some(n) = endpoints
                .iter()
                .filter_map(|e| self.net(&e.network))
                .find(|n| n.policy.internal)
            {
                return drop(
                    format!("network {} is --internal: its endpoints get no default route, so {label} has no route to {}", n.name, f.dst),
                    format!("connect {netns} to a network that is not --internal"),
                );
            }
            return drop(
                format!("{label} has no route to {} ({})", f.dst, hop.kind),
                format!("give {netns} a route to {} (berth connect sets a default route via the gateway unless the network is --internal)", f.dst),
            );
        }
        if hop.kind == "local" {
            return pass(format!("{} is {label}'s own address", f.dst));
        }
        let oif = hop.oif.clone().unwrap_or_default();
        let Some(ep) = endpoints.iter().find(|e| e.ifname == oif) else {
            // Not berth's interface: the packet reaches the host by
            // whatever link joins them.
            self.push(step(format!(
                "leaves {label} by {oif}, which is not a berth endpoint"
            )));
            let src = hop.prefsrc.unwrap_or(family::unspecified(self.fam()));
            return self.enter_from_outside(src);
        };
        let Some(net) = self.net(&ep.network) else {
            return drop(
                format!(
                    "endpoint {} names network {}, which berth does not have ready",
                    ep.name, ep.network
                ),
                "run `berth up`",
            );
        };
        if !net.is_bridge() {
            return self.leave_by_child(label, &oif, ep, net, hop);
        }
        let fam = self.fam();
        let src_ip = hop.prefsrc.unwrap_or(family::ip(ep, fam));
        let mut s = step(format!(
            "{oif} of {label} -> veth {} -> bridge {} (network {})",
            ep.host_ifname, net.bridge, net.name
        ))
        .cmd(format!("ip link show master {}", net.bridge));
        if ep.allow_spoofing {
            s = s.line("no anti-spoofing on this port (--allow-spoofing)");
        } else if src_ip == family::ip(ep, fam)
            || f.endpoints
                .iter()
                .any(|o| o.netns_inode == ep.netns_inode && family::ip(o, fam) == src_ip)
        {
            s = s.line(format!(
                "bridge berth prerouting -> guard: {} . {} . {src_ip} is in @allowed{}: return",
                ep.host_ifname,
                ep.mac,
                family::suffix(fam)
            ));
        } else {
            self.push(s.decided("guard", "drop"));
            return drop(
                format!(
                    "anti-spoofing drops {src_ip} from {}: not an address of its namespace",
                    ep.name
                ),
                "send from the endpoint's own address",
            );
        }
        self.push(s);
        let on_link = hop.gateway.is_none()
            && family::subnet(net, fam).contains(&f.dst)
            && f.dst != family::gateway(net, fam);
        if on_link {
            return self.bridged(ep, net);
        }
        self.at_host(Some(net), src_ip)
    }

    /// From an endpoint of a macvlan or ipvlan network: a child of the
    /// parent, with no bridge and no firewall of berth's on its way. The
    /// driver's mode decides between children of one parent; the host
    /// itself cannot reach its children through the parent.
    fn leave_by_child(
        &mut self,
        label: &str,
        oif: &str,
        ep: &Endpoint,
        net: &Network,
        hop: &RouteHop,
    ) -> Verdict {
        let f = self.f;
        let driver = net.driver.name();
        let parent = net.driver.parent().unwrap_or_default();
        let mode = net.driver.mode().unwrap_or_default();
        self.push(
            step(format!(
                "{oif} of {label} is a {driver} child of {parent} (mode {mode}, network {}): no bridge and no firewall of berth's on its way",
                net.name
            ))
            .cmd(format!("ip -d link show {parent}")),
        );
        if f.dst_local {
            return drop(
                format!(
                    "{} is the host's: a {driver} child reaches the outside through {parent}, but not the host that holds {parent}",
                    f.dst
                ),
                format!("give the host a {driver} interface of its own on {parent} (a shim) and route the network's subnet through it"),
            );
        }
        let sibling = f
            .endpoints
            .iter()
            .find(|o| o.network == net.name && family::ip(o, self.fam()) == f.dst && o.id != ep.id);
        if let Some(o) = sibling {
            let (passes, how) = match &net.driver {
                Driver::Macvlan { mode, .. } => match mode {
                    MacvlanMode::Bridge => (true, "macvlan mode bridge switches frames between children of one parent"),
                    MacvlanMode::Private => (false, "macvlan mode private keeps children of one parent apart"),
                    MacvlanMode::Vepa => (true, "macvlan mode vepa sends the frame out of the parent; it comes back only if the switch beyond reflects it (hairpin)"),
                    MacvlanMode::Passthru | MacvlanMode::Source => (true, "the frame leaves by the parent"),
                },
                Driver::Ipvlan { .. } => (true, "ipvlan switches packets between children of one parent"),
                Driver::Bridge => (true, ""),
            };
            return if passes {
                pass(format!(
                    "{label} and {} are children of {parent}: {how}",
                    o.name
                ))
            } else {
                drop(
                    format!("{label} and {}: {how}", o.name),
                    "create the network with --mode bridge".to_string(),
                )
            };
        }
        match hop.gateway {
            Some(gw) => pass(format!(
                "leaves by {parent} onto its LAN via the gateway {gw}; berth neither routes nor translates it, so what happens beyond is the LAN's"
            )),
            None => pass(format!(
                "leaves by {parent} onto its LAN, where {} is; berth neither routes nor translates it",
                f.dst
            )),
        }
    }

    /// Same network: the frame is bridged, and meets the inet hooks only
    /// through br_netfilter.
    fn bridged(&mut self, ep: &Endpoint, net: &Network) -> Verdict {
        let f = self.f;
        let dest = self.endpoint_at(net, f.dst);
        let fam = self.fam();
        let global = f.br_netfilter == Some(true);
        let per_bridge = !net.policy.icc;
        let mut s = step(format!(
            "{} is on {}'s subnet {}: bridged on {} (no routing)",
            f.dst,
            net.name,
            family::subnet(net, fam),
            net.bridge
        ))
        .cmd(format!("bridge fdb show br {}", net.bridge));
        let filtered = global || per_bridge;
        let sysctl = family::br_netfilter_sysctl(fam);
        if global {
            s = s.line(format!("br_netfilter on ({sysctl} = 1): the bridged packet also passes the inet forward hook"));
        } else if per_bridge {
            s = s.line(format!(
                "--no-icc sets {} on {}: the bridged packet passes the inet forward hook",
                family::bridge_option(fam),
                net.bridge
            ));
        } else {
            s = s.line(match f.br_netfilter {
                Some(false) => {
                    format!("br_netfilter off ({sysctl} = 0): no inet hook sees the bridged packet")
                }
                _ => "no br_netfilter: no inet hook sees the bridged packet".to_string(),
            });
        }
        self.push(s);
        if filtered {
            let out = format!("{}-out", net.name);
            let v = if net.policy.icc { "accept" } else { "drop" };
            let mut s = step(format!(
                "forward: iifname vmap @fwd_from -> {out}: oifname \"{}\" {v}",
                net.bridge
            ))
            .cmd(chain_cmd(&out))
            .decided(&out, v);
            if !net.policy.icc && fam == Family::V6 {
                // ICMPv6 neighbour discovery is IP, unlike ARP: the same
                // rule drops the solicitation before any packet of the flow.
                s = s.line(format!(
                    "the neighbour solicitation for {} meets this rule first: {} never learns its link address, so the packet itself never leaves",
                    f.dst,
                    ep.name
                ));
            }
            self.push(s);
            if !net.policy.icc {
                return drop(
                    format!(
                        "network {} has --no-icc: its containers may not reach each other",
                        net.name
                    ),
                    format!(
                        "put {} and {} on a network without --no-icc",
                        ep.name, f.dst_label
                    ),
                );
            }
            if let Some(v) = self.foreign_drop() {
                return v;
            }
        }
        match dest {
            Some(d) => {
                self.reply.push(format!(
                    "replies from {} are bridged back the same way{}",
                    d.name,
                    if filtered {
                        " (forward: ct state established,related accept)"
                    } else {
                        ""
                    }
                ));
                pass(format!(
                    "{} and {} are neighbours on network {}",
                    ep.name, d.name, net.name
                ))
            }
            None => drop(
                format!(
                    "no endpoint of network {} has {}: nothing answers {} for it",
                    net.name,
                    f.dst,
                    if fam == Family::V4 {
                        "ARP"
                    } else {
                        "neighbour solicitation"
                    }
                ),
                format!("check the address (berth ps --filter network={})", net.name),
            ),
        }
    }

    /// A foreign table's forward chain with policy drop drops what berth
    /// accepts: an accept ends only its own base chain.
    fn foreign_drop(&mut self) -> Option<Verdict> {
        let first = self.f.foreign_drops.first()?.clone();
        let words: Vec<&str> = first.split_whitespace().collect();
        let cmd = match words.as_slice() {
            ["table", family, table, "chain", chain] => {
                format!("nft list chain {family} {table} {chain}")
            }
            _ => "nft list ruleset".into(),
        };
        let mut s = step(format!("{first} hooks forward with policy drop")).cmd(cmd);
        for other in &self.f.foreign_drops[1..] {
            s = s.line(format!("also {other}"));
        }
        self.push(s.decided(&first, "drop"));
        Some(drop(
            format!("{first} has policy drop: berth's accept does not end it, so unless one of its rules accepts this flow the packet is dropped"),
            format!("accept berth's traffic in that chain, or remove it ({})", first),
        ))
    }

    /// The packet enters the host on `net`'s bridge (or, None, from
    /// outside by `ingress`).
    fn at_host(&mut self, net: Option<&'a Network>, src_ip: IpAddr) -> Verdict {
        let f = self.f;
        let in_if = match net {
            Some(n) => n.bridge.clone(),
            None => f
                .ingress
                .as_ref()
                .and_then(|h| h.oif.clone())
                .unwrap_or_else(|| "?".into()),
        };
        // prerouting: DNAT.
        let d = dnat(&f.networks, &f.endpoints, f.dst, f.dst_local, f.flow, false);
        if is_loopback(f.dst) {
            self.push(
                step(format!(
                    "prerouting: {} daddr {} return (never translated from an interface)",
                    family::nft_ip(self.fam()),
                    family::loopback_text(self.fam())
                ))
                .cmd(chain_cmd("prerouting"))
                .decided("prerouting", "return"),
            );
        } else {
            self.dnat_step("prerouting", d.as_ref());
        }
        let target = d.as_ref().map(|d| d.to).unwrap_or(f.dst);
        if d.is_none() && f.dst_local {
            return self.host_input(net, &in_if);
        }
        self.forward(net, &in_if, src_ip, target, d.as_ref())
    }

    /// Delivered to the host itself, through `input`.
    fn host_input(&mut self, net: Option<&'a Network>, in_if: &str) -> Verdict {
        let f = self.f;
        if let Some(n) = net {
            if is_loopback(f.dst) {
                self.push(
                    step(format!("input: iifname @bridges ({in_if}) ip daddr 127.0.0.0/8 ct status != dnat drop (the loopback guard)"))
                        .cmd(chain_cmd("input"))
                        .decided("input", "drop"),
                );
                return drop(
                    "the loopback guard: containers may not reach the host's 127.0.0.0/8",
                    format!("publish a port instead (berth connect {} NETNS -p 127.0.0.1:PORT:PORT is reached from the host, -p PORT:PORT from everywhere)", n.name),
                );
            }
            if !n.policy.host_access {
                let host = format!("{}-host", n.name);
                let gateway = family::gateway(n, self.fam());
                let dns = n.policy.dns
                    && f.dst == gateway
                    && matches!(f.flow, Flow::Port(Proto::Udp | Proto::Tcp, 53));
                let v = if dns { "accept" } else { "drop" };
                self.push(
                    step(format!(
                        "input: iifname vmap @input_from -> {host}: {}",
                        if dns {
                            format!(
                                "{} daddr {gateway} dport 53 accept",
                                family::nft_ip(self.fam())
                            )
                        } else {
                            "drop".into()
                        }
                    ))
                    .cmd(chain_cmd(&host))
                    .decided(&host, v),
                );
                if !dns {
                    return drop(
                        format!("network {} has --no-host-access: its containers reach only DNS on the host", n.name),
                        format!("create network {} without --no-host-access, or publish what the container needs", n.name),
                    );
                }
            } else {
                self.push(
                    step(format!(
                        "input: from {in_if}: no rule of berth's matches: accept"
                    ))
                    .cmd(chain_cmd("input"))
                    .decided("input", "accept"),
                );
            }
        }
        match f.flow {
            Flow::Ping => {
                self.reply.push("the host answers the echo itself".into());
                pass(format!(
                    "{} is the host's own address: delivered locally",
                    f.dst
                ))
            }
            Flow::Port(p, port) if f.host_listens => {
                self.reply
                    .push("the host's socket answers; no translation to undo".into());
                pass(format!(
                    "delivered to a host socket on {}/{}",
                    family::with_port(f.dst, port),
                    p.as_str()
                ))
            }
            Flow::Port(p, port) => {
                let s = step(format!(
                    "the host: nothing listens on {}/{} (a TCP connection is refused)",
                    family::with_port(f.dst, port),
                    p.as_str()
                ))
                .cmd(format!("ss -lnp '( sport = :{port} )'"));
                self.push(s);
                drop(
                    format!(
                        "published port {port}/{} not found on {} and no host socket holds it",
                        p.as_str(),
                        f.dst
                    ),
                    format!(
                        "berth connect NETWORK NETNS -p {port}:CONTAINER_PORT/{}",
                        p.as_str()
                    ),
                )
            }
        }
    }

    fn forward(
        &mut self,
        net: Option<&'a Network>,
        in_if: &str,
        src_ip: IpAddr,
        target: IpAddr,
        d: Option<&Dnat>,
    ) -> Verdict {
        let f = self.f;
        let sysctl = family::forwarding_sysctl(self.fam());
        let fwd = match f.ip_forward {
            Some(true) => "1",
            Some(false) => "0",
            None => "unknown",
        };
        self.push(
            step(format!("routed by the host: {sysctl} = {fwd}")).cmd(format!("sysctl {sysctl}")),
        );
        if f.ip_forward == Some(false) {
            return drop(
                format!(
                    "{sysctl} is 0: the host forwards nothing{}",
                    if self.fam() == Family::V4 {
                        ""
                    } else {
                        " over IPv6"
                    }
                ),
                format!("berth up puts it back (sysctl -w {sysctl}=1)"),
            );
        }
        let Some(hop) = f.host_route.as_ref().filter(|h| routable(h)) else {
            self.push(
                step(format!("host route lookup: no route to {target}"))
                    .cmd(format!("{} get {target}", route_cmd(self.fam()))),
            );
            return drop(
                format!("the host has no route to {target}"),
                format!("add a route to {target} on the host"),
            );
        };
        self.push(
            step(format!("host route lookup: {}", describe_hop(hop))).cmd(format!(
                "{} get {target} from {src_ip} iif {in_if}",
                route_cmd(self.fam())
            )),
        );
        let out_if = hop.oif.clone().unwrap_or_default();
        let out_net = self.net_of_bridge(&out_if);
        // forward chain, in rule order.
        let mut accepted_by_dnat = false;
        if d.is_some() {
            match net.filter(|n| n.policy.internal) {
                Some(_) => {}
                None => accepted_by_dnat = true,
            }
        }
        if accepted_by_dnat {
            self.push(
                step("forward: ct status dnat accept (a published port's connection)")
                    .cmd(chain_cmd("forward"))
                    .decided("forward", "accept"),
            );
        } else if let Some(n) = net {
            let out = format!("{}-out", n.name);
            let via = if d.is_some() {
                "ct status dnat iifname vmap @dnat_from"
            } else {
                "iifname vmap @fwd_from"
            };
            let mut verdict = None;
            let rule;
            if out_if == n.bridge {
                if n.policy.icc {
                    rule = format!("oifname \"{}\" accept", n.bridge);
                } else {
                    rule = format!("oifname \"{}\" drop", n.bridge);
                    verdict = Some(drop(
                        format!(
                            "network {} has --no-icc: its containers may not reach each other",
                            n.name
                        ),
                        "put them on a network without --no-icc".to_string(),
                    ));
                }
            } else if let Some(cidr) = n.policy.deny_egress.iter().find(|c| c.contains(&target)) {
                rule = format!("{} daddr {cidr} reject", family::nft_ip(self.fam()));
                verdict = Some(drop(
                    format!(
                        "network {} denies egress to {cidr} (--deny-egress): rejected",
                        n.name
                    ),
                    format!("create network {} without --deny-egress {cidr}", n.name),
                ));
            } else if n.policy.internal {
                rule = "drop (--internal)".into();
                verdict = Some(drop(
                    format!(
                        "network {} is --internal: nothing leaves it beyond the host",
                        n.name
                    ),
                    format!(
                        "connect {} to a network that is not --internal",
                        self.src_netns()
                    ),
                ));
            } else if let Some(other) = out_net {
                rule = "oifname @bridges drop".into();
                verdict = Some(drop(
                    format!("networks {} and {} are isolated", n.name, other.name),
                    format!(
                        "connect {} to {}: berth connect {} {}",
                        self.src_netns(),
                        other.name,
                        other.name,
                        self.src_netns()
                    ),
                ));
            } else {
                rule = "accept".into();
            }
            let v = match &verdict {
                None => "accept",
                Some(_) if rule.contains("reject") => "reject",
                Some(_) => "drop",
            };
            self.push(
                step(format!("forward: {via} -> {out}: {rule}"))
                    .cmd(chain_cmd(&out))
                    .decided(&out, v),
            );
            if let Some(v) = verdict {
                return v;
            }
        } else if let Some(o) = out_net {
            let inward = format!("{}-in", o.name);
            if let Some(c) = o.policy.cluster_cidrs.iter().find(|c| c.contains(&src_ip)) {
                self.push(
                    step(format!(
                        "forward: oifname vmap @fwd_to -> {inward}: {} saddr {c} accept",
                        family::nft_ip(self.fam())
                    ))
                    .cmd(chain_cmd(&inward))
                    .decided(&inward, "accept"),
                );
            } else {
                self.push(
                    step(format!("forward: oifname vmap @fwd_to -> {inward}: drop (new connections from elsewhere)"))
                        .cmd(chain_cmd(&inward))
                        .decided(&inward, "drop"),
                );
                return drop(
                    format!(
                        "new connections from outside into network {} are refused",
                        o.name
                    ),
                    format!(
                        "publish a port: berth connect {} NETNS -p HOST_PORT:PORT",
                        o.name
                    ),
                );
            }
        } else {
            self.push(
                step(format!(
                    "forward: {in_if} -> {out_if} is not berth's traffic: policy accept"
                ))
                .cmd(chain_cmd("forward")),
            );
        }
        if let Some(v) = self.foreign_drop() {
            return v;
        }
        // postrouting: masquerade.
        let masq = self.masquerade(net, &out_if, src_ip, target, d);
        if let Some(m) = &masq {
            self.push(m.clone());
        }
        self.reply
            .push("replies: forward's first rule, ct state established,related accept".into());
        if masq.is_some() {
            self.reply
                .push("the masquerade is undone on the reply by conntrack".into());
        }
        if let Some(d) = d {
            self.reply.push(format!(
                "the reply's source {} is translated back to {} by conntrack",
                family::with_port(d.to, d.to_port),
                f.dst
            ));
        }
        match out_net {
            Some(o) => match self.endpoint_at(o, target) {
                Some(e) => pass(match d {
                    Some(d) => format!(
                        "published port {} -> {} of {} ({}) lets it in",
                        match f.flow {
                            Flow::Port(p, port) => format!("{port}/{}", p.as_str()),
                            Flow::Ping => String::new(),
                        },
                        family::with_port(d.to, d.to_port),
                        e.name,
                        o.name
                    ),
                    None => format!("delivered to {} on network {}", e.name, o.name),
                }),
                None => drop(
                    format!("no endpoint of network {} has {target}", o.name),
                    format!("check the address (berth ps --filter network={})", o.name),
                ),
            },
            None => pass(format!(
                "leaves by {out_if}{} towards {}",
                hop.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                f.dst_label
            )),
        }
    }

    fn masquerade(
        &self,
        net: Option<&Network>,
        out_if: &str,
        src_ip: IpAddr,
        target: IpAddr,
        d: Option<&Dnat>,
    ) -> Option<Step> {
        let f = self.f;
        let fam = self.fam();
        let in_subnets = |ip| {
            f.networks
                .iter()
                .any(|n| family::subnet(n, fam).contains(&ip))
        };
        if d.is_some() && in_subnets(src_ip) && in_subnets(target) {
            let (ip, n) = (family::nft_ip(fam), family::suffix(fam));
            return Some(
                step(format!(
                    "postrouting: ct status dnat {ip} saddr @subnets{n} {ip} daddr @subnets{n} masquerade",
                ))
                .cmd(chain_cmd("postrouting"))
                .decided("postrouting", "masquerade"),
            );
        }
        let n = net?;
        if !n.policy.masquerade || n.policy.internal {
            return None;
        }
        let nat = format!("{}-nat", n.name);
        if n.policy.cluster_cidrs.iter().any(|c| c.contains(&target)) {
            return Some(
                step(format!("postrouting: iifname vmap @nat_from -> {nat}: cluster range: return (not masqueraded)"))
                    .cmd(chain_cmd(&nat))
                    .decided(&nat, "return"),
            );
        }
        if out_if != n.bridge && family::subnet(n, fam).contains(&src_ip) {
            return Some(
                step(format!(
                    "postrouting: iifname vmap @nat_from -> {nat}: {} saddr {} oifname != \"{}\" masquerade",
                    family::nft_ip(fam),
                    family::subnet(n, fam),
                    n.bridge
                ))
                .cmd(chain_cmd(&nat))
                .decided(&nat, "masquerade"),
            );
        }
        None
    }

    fn enter_from_outside(&mut self, src: IpAddr) -> Verdict {
        let f = self.f;
        match &f.ingress {
            Some(h) if routable(h) => {
                let in_if = h.oif.clone().unwrap_or_default();
                self.push(
                    step(format!(
                        "enters the host by {in_if} (the host's route back to {src})"
                    ))
                    .cmd(format!("{} get {src}", route_cmd(self.fam()))),
                );
                // A foreign namespace behind a berth bridge is still
                // judged by that bridge's network.
                let net = self.net_of_bridge(&in_if);
                self.at_host(net, src)
            }
            _ => {
                self.push(
                    step(format!(
                        "the host has no route back to {src}: where it enters is unknown"
                    ))
                    .cmd(format!("{} get {src}", route_cmd(self.fam()))),
                );
                self.at_host(None, src)
            }
        }
    }

    /// The DNAT step of `hook` (prerouting or output): the published-port
    /// element that translates the flow, or, for a port of the host's own,
    /// that none does.
    fn dnat_step(&mut self, hook: &str, d: Option<&Dnat>) {
        let f = self.f;
        if let Some(d) = d {
            self.push(
                step(format!(
                    "{hook}: dnat to {} (endpoint {} of {}) by element {} of map {}",
                    family::with_port(d.to, d.to_port),
                    d.endpoint,
                    d.network,
                    d.element,
                    d.map
                ))
                .cmd(format!("nft list map inet berth {}", d.map))
                .decided(hook, "dnat"),
            );
        } else if let (Flow::Port(p, port), true) = (f.flow, f.dst_local) {
            let [published, published_any, _] = crate::firewall::ports::names(self.fam());
            self.push(
                step(format!(
                    "{hook}: no published port {port}/{} on {}: not translated",
                    p.as_str(),
                    f.dst
                ))
                .cmd(format!(
                    "nft list map inet berth {published}; nft list map inet berth {published_any}"
                )),
            );
        }
    }

    fn start_on_host(&mut self) -> Verdict {
        let f = self.f;
        let d = dnat(&f.networks, &f.endpoints, f.dst, f.dst_local, f.flow, true);
        self.dnat_step("output", d.as_ref());
        let target = d.as_ref().map(|d| d.to).unwrap_or(f.dst);
        let Some(hop) = f.host_route.as_ref() else {
            return drop(
                "no route lookup answered on the host",
                "check the host's routes",
            );
        };
        self.push(
            step(format!("route lookup on the host: {}", describe_hop(hop)))
                .cmd(format!("{} get {target}", route_cmd(self.fam()))),
        );
        if !routable(hop) {
            return drop(
                format!("the host has no route to {target} ({})", hop.kind),
                format!("add a route to {target} on the host"),
            );
        }
        if d.is_none() && (f.dst_local || hop.kind == "local") {
            return self.host_input(None, "lo");
        }
        let out_if = hop.oif.clone().unwrap_or_default();
        if let Some(d) = &d {
            if is_loopback(f.dst) {
                self.push(
                    step("postrouting: oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade")
                        .cmd(chain_cmd("postrouting"))
                        .decided("postrouting", "masquerade"),
                );
            }
            self.reply.push(format!(
                "the reply's source {} is translated back to {} by conntrack",
                family::with_port(d.to, d.to_port),
                f.dst
            ));
        }
        match self.net_of_bridge(&out_if) {
            Some(o) => {
                self.push(step(format!(
                    "out by bridge {} (network {}): the host's own packets meet no filter of berth's",
                    o.bridge, o.name
                )));
                if !o.policy.host_access {
                    self.reply.push(format!(
                        "replies enter input from {}: {}-host: ct state established,related accept",
                        o.bridge, o.name
                    ));
                }
                match self.endpoint_at(o, target) {
                    Some(e) => pass(match &d {
                        Some(d) => format!(
                            "published port {} -> {} of {} ({})",
                            f.flow,
                            family::with_port(d.to, d.to_port),
                            e.name,
                            o.name
                        ),
                        None => format!("the host reaches {} on network {}", e.name, o.name),
                    }),
                    None => drop(
                        format!("no endpoint of network {} has {target}", o.name),
                        format!("check the address (berth ps --filter network={})", o.name),
                    ),
                }
            }
            None => pass(format!(
                "leaves by {out_if}{} towards {}",
                hop.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                f.dst_label
            )),
        }
    }
}

/// Walks the packet's way and decides.
pub fn walk(f: &Facts) -> Trace {
    let mut w = Walk {
        f,
        steps: Vec::new(),
        reply: Vec::new(),
    };
    let verdict = w.run();
    let src = match &f.src {
        Source::Host => "host".to_string(),
        Source::Namespace { label, .. } => label.clone(),
        Source::World(a) => a.to_string(),
    };
    Trace {
        src,
        dst: format!("{} ({})", f.dst_label, f.dst),
        flow: f.flow.to_string(),
        steps: w.steps,
        reply: if verdict.pass { w.reply } else { Vec::new() },
        verdict,
        trusted: matches!(f.table, TableCheck::Matches | TableCheck::NoNetworks),
        live: None,
    }
}

impl Trace {
    /// The human rendering: numbered steps, each with its command, then
    /// the reply path and the verdict line.
    pub fn render(&self) -> Vec<String> {
        let mut out = vec![format!("trace {} -> {}, {}", self.src, self.dst, self.flow)];
        for (i, s) in self.steps.iter().enumerate() {
            out.push(format!("{:>2}. {}", i + 1, s.what));
            for l in &s.lines {
                out.push(format!("      {l}"));
            }
            if let Some(c) = &s.command {
                out.push(format!("      $ {c}"));
            }
        }
        for r in &self.reply {
            out.push(format!("    reply: {r}"));
        }
        let v = &self.verdict;
        let mut line = format!("{}: {}", if v.pass { "PASS" } else { "DROP" }, v.reason);
        if let Some(fix) = &v.fix {
            line += &format!("; {fix}");
        }
        if !self.trusted {
            line += " (untrusted: berth's tables do not match the state; run `berth up`)";
        }
        out.push(line);
        if let Some(live) = &self.live {
            out.extend(live.render());
        }
        out
    }
}

/// `ip route` or `ip -6 route`, as the flow's family needs.
fn route_cmd(fam: Family) -> &'static str {
    match fam {
        Family::V4 => "ip route",
        Family::V6 => "ip -6 route",
    }
}
