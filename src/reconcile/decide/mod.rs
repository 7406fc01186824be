//! The decision of a reconcile: a pure function from what the state wants
//! ([`Desired`]) and what the kernel has ([`Observed`]) to the plan that
//! makes them agree and the rows to drop. No I/O here, so every case (a
//! reboot, a killed command, a deleted bridge, a leftover veth) is a unit
//! test without root.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use berth_nft::{ElemOp, Op};

use crate::firewall;
use crate::kernel::{sysctl, ChildLink, InsideConfig, LinkFact, NftFingerprint, VethPair};
use crate::model::{names, Endpoint, Family, Network, PortMapping, Proto};
use crate::plan::{Plan, SourceRule, Step};
use crate::store::{Sandbox, Status};

/// Priority of berth's `ip rule`s for `--uplink` (before `main`, 32766).
pub const UPLINK_RULE_PRIORITY: u32 = 10_000;

/// What the state wants, read once.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub networks: Vec<(Network, Status)>,
    /// Endpoints with their published ports loaded.
    pub endpoints: Vec<(Endpoint, Status)>,
    pub sandboxes: Vec<Sandbox>,
    /// This state's instance id, which marks the firewall table as its own.
    pub instance: String,
    /// The port berth's DNS server listens on (53 unless configured).
    pub dns_port: u16,
}

/// What the kernel has, read once.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub links: Vec<LinkFact>,
    /// berth's `inet` table, None when it does not exist.
    pub table: Option<NftFingerprint>,
    /// berth's `bridge` table (the anti-spoofing guard), None when it does
    /// not exist.
    pub guard_table: Option<NftFingerprint>,
    /// Endpoints (by id) whose veth is gone but whose namespace still
    /// exists under the recorded name with the recorded inode.
    pub netns_alive: HashSet<i64>,
    /// macvlan/ipvlan endpoints (by id) whose child is in their (alive)
    /// namespace, under its interface name.
    pub children: HashSet<i64>,
    /// Sandboxes whose `run` process is gone.
    pub dead_sandboxes: HashSet<String>,
    /// The addresses of the host's links (both families), by link name
    /// (None: not looked at, so every gateway address is ensured).
    pub addresses: Option<HashSet<(String, std::net::IpAddr, u8)>>,
    /// Whether `net.ipv4.ip_forward` is on (None: not looked at).
    pub ip_forward: Option<bool>,
    /// Whether `net.ipv6.conf.all.forwarding` is on (None: not looked at).
    pub ip6_forward: Option<bool>,
    /// The elements of every set and map of berth's table, by name (None:
    /// not looked at or not readable, so the table is rebuilt).
    pub elements: Option<TableElements>,
}

/// The elements of a table's sets and maps, by set name.
pub type TableElements =
    std::collections::HashMap<(berth_nft::Table, String), HashSet<berth_nft::Element>>;

/// A set's key in [`TableElements`]: its table (berth has two) and name.
pub fn set_key(set: &berth_nft::Set) -> (berth_nft::Table, String) {
    (set.table.clone(), set.name.clone())
}

/// How far a reconcile reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Also remove berth-made devices that no state row knows (`gc`).
    pub sweep: bool,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    pub drop_networks: Vec<i64>,
    pub drop_endpoints: Vec<i64>,
    pub drop_sandboxes: Vec<String>,
    /// One line per thing repaired or removed, for the user.
    pub report: Vec<String>,
}

/// The chains of the tables the state describes, with their rule counts:
/// what the kernel's `inet` and `bridge` tables must look like (compared
/// with [`Observed::table`] and [`Observed::guard_table`] to detect
/// tampering).
pub fn expected_fingerprints(
    networks: &[Network],
    owner: &str,
) -> (Option<NftFingerprint>, Option<NftFingerprint>) {
    // The tables exist while a bridge network does (see firewall::rebuild).
    if !networks.iter().any(Network::is_bridge) {
        return (None, None);
    }
    let change = firewall::rebuild(
        networks,
        &[],
        &Default::default(),
        firewall::Tables::default(),
        owner,
    );
    // [routing, guard]
    let mut fps: [BTreeMap<String, usize>; 2] = Default::default();
    let guard_family = firewall::guard::table().family;
    let of = |t: &berth_nft::Table| usize::from(t.family == guard_family);
    for op in change.batch.ops() {
        match op {
            Op::AddChain(c) => {
                fps[of(&c.table)].entry(c.name.clone()).or_insert(0);
            }
            Op::AddRule { chain, .. } => {
                *fps[of(&chain.table)].entry(chain.name.clone()).or_insert(0) += 1
            }
            _ => {}
        }
    }
    let [routing, guard] = fps;
    (Some(routing), Some(guard))
}

/// The sets and maps of the tables `firewall::rebuild` makes, with the
/// elements it puts in them: what the kernel's must hold.
pub fn expected_elements(batch: &berth_nft::Batch) -> TableElements {
    let mut all = TableElements::new();
    for op in batch.ops() {
        match op {
            Op::AddSet(set) => {
                all.entry(set_key(set)).or_default();
            }
            Op::Elements {
                set,
                elems,
                op: ElemOp::Add,
            } => all
                .entry(set_key(set))
                .or_default()
                .extend(elems.iter().cloned()),
            _ => {}
        }
    }
    all
}

/// The element changes that make `have` into `want`, as a batch and its
/// undo, when the two hold the same sets and only elements of plain
/// (non-interval) sets differ; None when the table must be rebuilt
/// instead (a set missing or added, an interval set changed, whose
/// elements the kernel may store split or merged).
fn element_repair(
    fresh: &berth_nft::Batch,
    have: &TableElements,
    want: &TableElements,
) -> Option<(berth_nft::Batch, berth_nft::Batch)> {
    if have.len() != want.len() || want.keys().any(|k| !have.contains_key(k)) {
        return None;
    }
    let sets: HashMap<_, &berth_nft::Set> = fresh
        .ops()
        .iter()
        .filter_map(|op| match op {
            Op::AddSet(set) => Some((set_key(set), set)),
            _ => None,
        })
        .collect();
    let (mut batch, mut undo) = (berth_nft::Batch::new(), berth_nft::Batch::new());
    // In a fixed order, so that the plan renders the same every time.
    let mut keys: Vec<_> = want.keys().collect();
    keys.sort_by_key(|k| (format!("{:?}", k.0), k.1.clone()));
    for key in keys {
        let (w, h) = (&want[key], &have[key]);
        if w == h {
            continue;
        }
        let set = sets.get(key)?;
        if set.flags & berth_nft::set_flags::INTERVAL != 0 {
            return None;
        }
        let mut extra: Vec<_> = h.difference(w).cloned().collect();
        let mut missing: Vec<_> = w.difference(h).cloned().collect();
        extra.sort_by_key(|e| format!("{e:?}"));
        missing.sort_by_key(|e| format!("{e:?}"));
        if !extra.is_empty() {
            batch.delete_elements(set, extra.clone());
        }
        if !missing.is_empty() {
            batch.add_elements(set, missing.clone());
            undo.delete_elements(set, missing);
        }
        if !extra.is_empty() {
            undo.add_elements(set, extra);
        }
    }
    Some((batch, undo))
}

/// The policy routing of a network with `--uplink`: its table's default
/// route and the rule that selects it. Adding puts the route in before the
/// rule; deleting takes the rule out first (both tolerate absence).
pub fn uplink_steps(network: &Network, add: bool, plan: &mut Plan) {
    // Policy routing is IPv4's: an uplink names an IPv4 gateway, and the
    // rule selects the IPv4 subnet.
    let Some(uplink) = &network.policy.uplink else {
        return;
    };
    let (Some(rule), std::net::IpAddr::V4(gateway)) = (uplink_rule(network), uplink.gateway) else {
        return;
    };
    if add {
        plan.push(Step::AddTableDefault {
            table: network.route_table,
            gateway,
            ifname: uplink.ifname.clone(),
        });
        plan.push(Step::AddSourceRule(rule));
    } else {
        plan.push(Step::DeleteSourceRule(rule));
        plan.push(Step::DeleteTableDefault {
            table: network.route_table,
            gateway,
            ifname: uplink.ifname.clone(),
        });
    }
}

fn uplink_rule(network: &Network) -> Option<SourceRule> {
    Some(SourceRule {
        subnet: network.net4()?,
        iif: network.bridge.clone(),
        table: network.route_table,
        priority: UPLINK_RULE_PRIORITY,
    })
}

/// The steps that build a network's kernel side from nothing (not its
/// firewall part, which is rebuilt whole).
pub fn network_steps(network: &Network, plan: &mut Plan) {
    let bridge = network.bridge.clone();
    plan.push(Step::CreateBridge {
        mac: network.bridge_mac(),
        name: bridge.clone(),
        mtu: network.mtu,
        group: names::BRIDGE_GROUP,
    });
    if network.subnet6().is_some() {
        // The host resolves a container's address for forwarded traffic
        // only from a link-local address of the bridge that is no longer
        // tentative: duplicate address detection would make every
        // forwarded packet wait (and the first connections time out) for
        // a second after the bridge gets its first port. Set now, while
        // the bridge has no carrier and so no link-local address yet.
        plan.push(Step::SetSysctl {
            key: sysctl::Key::ipv6_conf(&bridge, "accept_dad"),
            value: "0".into(),
        });
    }
    for s in &network.subnets {
        if let Some(gateway) = s.gateway {
            plan.push(Step::AddAddress {
                ifname: bridge.clone(),
                ip: gateway,
                subnet: s.net,
            });
        }
    }
    // Published ports answer on 127.0.0.1 only if the kernel may route a
    // loopback-sourced packet out of the bridge after the output DNAT.
    plan.push(Step::SetSysctl {
        key: sysctl::Key::ipv4_conf(&bridge, "route_localnet"),
        value: "1".into(),
    });
    if !network.policy.icc {
        plan.push(Step::BridgeNetfilter {
            bridge,
            ipv6: network.subnet6().is_some(),
        });
    }
}

/// The steps that attach an endpoint to its network: a veth to the
/// network's bridge, or a macvlan/ipvlan child of its parent.
pub fn endpoint_steps(network: &Network, e: &Endpoint, netns: std::path::PathBuf, plan: &mut Plan) {
    if !network.is_bridge() {
        child_steps(network, e, netns, e.metric, plan);
        return;
    }
    plan.push(Step::CreateVeth(VethPair {
        host_ifname: e.host_ifname.clone(),
        bridge: network.bridge.clone(),
        link_group: network.link_group,
        netns: netns.clone(),
        ifname: e.ifname.clone(),
        mac: e.mac,
        mtu: network.mtu,
    }));
    plan.push(Step::ConfigureInside {
        netns,
        config: InsideConfig {
            rename_from: None,
            ifname: e.ifname.clone(),
            addresses: addresses_of(network, e),
            default_via: default_via(network, e),
            metric: e.metric,
        },
    });
    if !e.ports.is_empty() {
        plan.push(Step::SetHairpin {
            ifname: e.host_ifname.clone(),
        });
    }
}

/// An endpoint's addresses, each with the subnet of the network holding it.
fn addresses_of(network: &Network, e: &Endpoint) -> Vec<(std::net::IpAddr, crate::model::IpNet)> {
    e.ips
        .iter()
        .filter_map(|ip| Some((*ip, network.subnet_holding(*ip)?.net)))
        .collect()
}

/// The default routes an endpoint that gives them has: via the gateway
/// of each family it has an address of.
fn default_via(network: &Network, e: &Endpoint) -> Vec<std::net::IpAddr> {
    e.ips
        .iter()
        .filter(|ip| e.default_route.has(crate::model::Family::of(**ip)))
        .filter_map(|ip| network.subnet_holding(*ip)?.gateway)
        .collect()
}

/// The published ports of an endpoint, by each address they go to (a
/// mapping answers in the families it covers that the endpoint has).
fn published_of(e: &Endpoint) -> Vec<(IpAddr, &[PortMapping])> {
    e.ips.iter().map(|ip| (*ip, e.ports.as_slice())).collect()
}

/// A macvlan/ipvlan endpoint: the child, born in the namespace under
/// berth's name, then renamed and configured there in one visit. Its
/// default route goes to the network's gateway, which is on the parent's
/// LAN (berth does not own it).
fn child_steps(
    network: &Network,
    e: &Endpoint,
    netns: std::path::PathBuf,
    metric: Option<u32>,
    plan: &mut Plan,
) {
    let macvlan = matches!(network.driver, crate::model::Driver::Macvlan { .. });
    plan.push(Step::CreateChild {
        child: ChildLink {
            driver: network.driver.clone(),
            netns: netns.clone(),
            temp_name: e.host_ifname.clone(),
            // An ipvlan child has its parent's MAC.
            mac: macvlan.then_some(e.mac),
            mtu: (network.mtu != 0).then_some(network.mtu),
            group: network.link_group,
        },
        ifname: e.ifname.clone(),
    });
    plan.push(Step::ConfigureInside {
        netns,
        config: InsideConfig {
            rename_from: Some(e.host_ifname.clone()),
            ifname: e.ifname.clone(),
            addresses: addresses_of(network, e),
            default_via: default_via(network, e),
            metric,
        },
    });
}

/// Taking a macvlan/ipvlan endpoint away: its child, inside the
/// namespace (under either of its names, in the network's group only);
/// then the default route moves to `heir` as for a veth.
pub fn child_disconnect_plan(
    network: &Network,
    e: &Endpoint,
    netns: Option<std::path::PathBuf>,
    heir: Option<(std::path::PathBuf, Vec<std::net::IpAddr>)>,
) -> Plan {
    let mut plan = Plan::new();
    if let Some(netns) = netns {
        plan.push(child_delete_step(network, e, netns));
        heir_steps(heir, &mut plan);
    }
    plan
}

fn child_delete_step(network: &Network, e: &Endpoint, netns: std::path::PathBuf) -> Step {
    Step::DeleteChild {
        netns,
        names: vec![e.host_ifname.clone(), e.ifname.clone()],
        group: network.link_group,
    }
}

/// The steps that hold an endpoint's traffic to its limits: a bucket on
/// the host veth's egress for what goes to the container, and for what it
/// sends, its ifb with a bucket of its own and the redirect of the veth's
/// ingress to it. `ifb` is the link group of a device already called by
/// the ifb's name: one in the network's group is used as it is, another
/// of berth's is replaced. Every other step replaces what is there, so
/// they serve a new endpoint and a repair alike.
pub fn bandwidth_steps(network: &Network, e: &Endpoint, ifb: Option<u32>, plan: &mut Plan) {
    if let Some(limit) = e.bandwidth.inbound {
        plan.push(Step::ShapeEgress {
            ifname: e.host_ifname.clone(),
            limit,
        });
    }
    outbound_steps(network, e, ifb, plan);
}

/// The part of [`bandwidth_steps`] for what the endpoint sends.
fn outbound_steps(network: &Network, e: &Endpoint, ifb: Option<u32>, plan: &mut Plan) {
    let Some(limit) = e.bandwidth.outbound else {
        return;
    };
    let name = names::ifb_name(&e.host_ifname);
    if ifb != Some(network.link_group) {
        if ifb.is_some() {
            // In another of berth's groups (the one of links being
            // deleted together, after a crash): it would go with them.
            plan.push(Step::DeleteLink { name: name.clone() });
        }
        plan.push(Step::CreateIfb {
            name: name.clone(),
            mtu: network.mtu,
            group: network.link_group,
        });
    }
    plan.push(Step::ShapeEgress {
        ifname: name.clone(),
        limit,
    });
    plan.push(Step::RedirectIngress {
        ifname: e.host_ifname.clone(),
        to: name,
    });
}

/// The bandwidth part of `connect`, after [`connect_plan`]: the link group
/// of a device already called by the endpoint's ifb name, if one is,
/// decides as for the veth: berth's own (a leftover of an earlier
/// endpoint of the same name) is used or replaced, anything else is
/// refused.
pub fn connect_bandwidth(
    network: &Network,
    endpoint: &Endpoint,
    leftover_ifb: Option<u32>,
    plan: &mut Plan,
) -> crate::error::Result<()> {
    let ifb = names::ifb_name(&endpoint.host_ifname);
    if let Some(group) = leftover_ifb {
        if endpoint.bandwidth.outbound.is_some() && !names::is_berths_ifb(&ifb, group) {
            return Err(crate::error::Error::invalid(format!(
                "a device named {ifb} that berth did not make is in the way of {}/{}; choose another --name",
                network.name, endpoint.name
            )));
        }
    }
    bandwidth_steps(network, endpoint, leftover_ifb, plan);
    Ok(())
}

/// Publishing (or, with `add` false, withdrawing) `ports` of the container
/// at `ip`: one nft batch of map elements, then a conntrack flush per UDP
/// port (TCP flows end by themselves; a UDP client that keeps sending would
/// keep following the old entry forever).
pub fn port_steps(plan: &mut Plan, ip: IpAddr, ports: &[PortMapping], add: bool) {
    let op = if add { ElemOp::Add } else { ElemOp::Delete };
    ports_steps(plan, &[(ip, ports)], op);
}

/// Withdrawing the ports of several containers at once, in one batch
/// (each container once per address).
pub fn withdraw_ports(plan: &mut Plan, published: &[(IpAddr, Vec<PortMapping>)]) {
    let published: Vec<(IpAddr, &[PortMapping])> = published
        .iter()
        .map(|(ip, ports)| (*ip, ports.as_slice()))
        .collect();
    ports_steps(plan, &published, ElemOp::Delete);
}

fn ports_steps(plan: &mut Plan, published: &[(IpAddr, &[PortMapping])], op: ElemOp) {
    let mut change = firewall::Change {
        batch: berth_nft::Batch::new(),
        undo: berth_nft::Batch::new(),
    };
    add_ports(&mut change, published, op);
    if change.batch.is_empty() {
        return;
    }
    nft_step(plan, change);
    flush_steps(plan, published);
}

/// Appends `op` on the published ports' elements to `change` (and the
/// inverse to its undo).
fn add_ports(change: &mut firewall::Change, published: &[(IpAddr, &[PortMapping])], op: ElemOp) {
    let inverse = match op {
        ElemOp::Add => ElemOp::Delete,
        _ => ElemOp::Add,
    };
    for (ip, ports) in published {
        firewall::ports::elements_op(&mut change.batch, op, *ip, ports);
        firewall::ports::elements_op(&mut change.undo, inverse, *ip, ports);
    }
}

/// A firewall change as a step, unless it changes nothing.
fn nft_step(plan: &mut Plan, change: firewall::Change) {
    if !change.batch.is_empty() {
        plan.push(Step::Nft {
            batch: change.batch,
            undo: change.undo,
        });
    }
}

/// The conntrack flush of each published UDP port (see [`port_steps`]),
/// in each family the mapping answers on for the container's address.
fn flush_steps(plan: &mut Plan, published: &[(IpAddr, &[PortMapping])]) {
    for (ip, ports) in published {
        plan.steps.extend(flushes(Family::of(*ip), ports.iter()));
    }
}

/// The conntrack flushes of `ports`' UDP mappings in `family`.
pub fn flushes<'a>(family: Family, ports: impl IntoIterator<Item = &'a PortMapping>) -> Vec<Step> {
    let mut out = Vec::new();
    for m in ports
        .into_iter()
        .filter(|m| m.proto == Proto::Udp && m.covers(family))
    {
        for (port, _) in m.pairs() {
            out.push(Step::FlushConntrack {
                proto: m.proto,
                family,
                dst: (!m.is_any_address()).then_some(m.host_ip),
                port,
            });
        }
    }
    out
}

/// The decision of `connect`, from what it observed: the endpoint to make
/// (its address, names and ports already settled against the state), the
/// link group of a device already called by its host veth's name, if one
/// is, and the other endpoints of its namespace (whose addresses its port
/// may send with, and whose ports may send with its address). A device in
/// the way is a veth that outlived its namespace (the kernel is still
/// tearing it down) or a leftover, and is replaced only when it is
/// provably berth's; anything else in the way is refused.
///
/// The anti-spoofing elements go in before the veth exists, so that no
/// frame of the new port passes unchecked; the published ports go in the
/// same batch.
pub fn connect_plan(
    network: &Network,
    endpoint: &Endpoint,
    netns: std::path::PathBuf,
    leftover: Option<u32>,
    siblings: &[Endpoint],
) -> crate::error::Result<Plan> {
    let mut plan = Plan::new();
    match leftover {
        None => {}
        Some(group) if names::is_berths_veth(&endpoint.host_ifname, group) => {
            plan.push(Step::DeleteLink {
                name: endpoint.host_ifname.clone(),
            });
        }
        Some(_) => {
            return Err(crate::error::Error::invalid(format!(
                "a device named {} that berth did not make is in the way of {}/{}; choose another --name",
                endpoint.host_ifname, network.name, endpoint.name
            )))
        }
    }
    let before: Vec<&Endpoint> = siblings.iter().collect();
    let after: Vec<&Endpoint> = siblings.iter().chain([endpoint]).collect();
    let mut change = firewall::guard::change(&before, &after);
    let published = published_of(endpoint);
    add_ports(&mut change, &published, ElemOp::Add);
    nft_step(&mut plan, change);
    endpoint_steps(network, endpoint, netns, &mut plan);
    flush_steps(&mut plan, &published);
    Ok(plan)
}

/// The decision of `disconnect`: the mappings go first (their removal can
/// be undone, the veth's cannot), then the veth unless its namespace is
/// going anyway, then its anti-spoofing elements (only once the port is
/// gone, so it is never unguarded while it exists; `siblings` are the
/// namespace's endpoints, the leaving one included), then the default
/// route moves to `heir` (another network of the namespace: its namespace
/// path and gateway) when this endpoint gave it.
///
/// The veth (with its ifb) is not deleted here: a delete waits for an RCU
/// grace period (~20 ms, whoever asks). It is taken out of service instead
/// (`Step::TakeOut`: its peer down and renamed in `peer_netns`, the
/// endpoint's namespace when it is still the recorded one; the veth and
/// the ifb down, off the bridge, renamed into the pending group), and
/// deleted later with the others waiting there.
pub fn disconnect_plan(
    endpoint: &Endpoint,
    delete_veth: bool,
    peer_netns: Option<std::path::PathBuf>,
    heir: Option<(std::path::PathBuf, Vec<std::net::IpAddr>)>,
    siblings: &[Endpoint],
) -> Plan {
    let mut plan = Plan::new();
    ports_steps(&mut plan, &published_of(endpoint), ElemOp::Delete);
    // An ifb lives in the host: it does not go with the namespace, and
    // with the veth it goes the same way.
    let ifb = endpoint
        .bandwidth
        .outbound
        .map(|_| names::ifb_name(&endpoint.host_ifname));
    if delete_veth {
        let take_out = |netns, name: &str, of: &str| {
            Step::TakeOut(crate::kernel::TakeOut {
                netns,
                name: name.to_string(),
                pending: names::pending_name(of),
            })
        };
        let veth = &endpoint.host_ifname;
        // The peer first: the container stops sending at once.
        if let Some(netns) = peer_netns {
            plan.push(take_out(Some(netns), &endpoint.ifname, veth));
        }
        plan.push(take_out(None, veth, veth));
        if let Some(ifb) = &ifb {
            plan.push(take_out(None, ifb, ifb));
        }
    }
    let before: Vec<&Endpoint> = siblings.iter().collect();
    let after: Vec<&Endpoint> = siblings.iter().filter(|e| e.id != endpoint.id).collect();
    nft_step(&mut plan, firewall::guard::change(&before, &after));
    if delete_veth {
        heir_steps(heir, &mut plan);
    } else if let Some(ifb) = ifb {
        plan.push(Step::DeleteLink { name: ifb });
    }
    plan
}

/// The namespace's default routes moved to the heir's gateways, one per
/// family.
fn heir_steps(heir: Option<(std::path::PathBuf, Vec<std::net::IpAddr>)>, plan: &mut Plan) {
    if let Some((netns, gateways)) = heir {
        for gateway in gateways {
            plan.push(Step::DefaultRoute {
                netns: netns.clone(),
                gateway,
            });
        }
    }
}

/// The part of [`decide`] for a macvlan/ipvlan endpoint. Its child lives
/// in its namespace, so the proof of life is the namespace (recorded
/// name, recorded inode: [`Observed::netns_alive`]) with the child in it
/// ([`Observed::children`]); the kernel deletes children with their
/// parent, so an endpoint whose parent is gone is gone too.
#[allow(clippy::too_many_arguments)]
fn child_decision<'a>(
    desired: &'a Desired,
    observed: &Observed,
    links: &HashMap<&str, &LinkFact>,
    e: &'a Endpoint,
    status: Status,
    d: &mut Decision,
    kept: &mut Vec<&'a Endpoint>,
    recreate: &mut Vec<(&'a Network, &'a Endpoint)>,
) {
    let who = format!("{}/{}", e.network, e.name);
    let network = desired.networks.iter().find(|(n, _)| n.name == e.network);
    let alive = observed.netns_alive.contains(&e.id);
    let parent_present = network
        .and_then(|(n, _)| n.driver.parent())
        .is_some_and(|p| links.contains_key(p));
    let reason = match (network, status) {
        (None, _) => format!("removed endpoint {who}: its network is gone"),
        (Some((_, Status::Creating | Status::Removing)), _) => {
            format!("removed endpoint {who} of a network whose command was interrupted")
        }
        (_, Status::Creating) => format!("undid the interrupted connect of {who}"),
        (_, Status::Removing) => format!("finished the interrupted disconnect of {who}"),
        _ if observed.dead_sandboxes.contains(&e.netns) => {
            format!("reclaimed {who} of a `run` that was killed")
        }
        (Some((n, _)), Status::Ready) if alive && parent_present => {
            kept.push(e);
            if !observed.children.contains(&e.id) {
                d.report.push(format!(
                    "re-created the {} interface {} of {who}",
                    n.driver.name(),
                    e.ifname
                ));
                recreate.push((n, e));
            }
            return;
        }
        (Some((n, _)), Status::Ready) if alive => {
            d.report.push(format!(
                "removed endpoint {who}: its parent interface {} is gone (and its {} child with it)",
                n.driver.parent().unwrap_or_default(),
                n.driver.name()
            ));
            d.drop_endpoints.push(e.id);
            return;
        }
        (Some(_), Status::Ready) => {
            d.report
                .push(format!("removed endpoint {who}: its namespace is gone"));
            d.drop_endpoints.push(e.id);
            return;
        }
    };
    d.report.push(reason);
    d.drop_endpoints.push(e.id);
    if let Some((n, _)) = network {
        let netns = crate::kernel::netns::Target::locate(&e.netns)
            .map(|t| t.path)
            .unwrap_or_else(|_| std::path::PathBuf::from(&e.netns));
        d.plan.push(child_delete_step(n, e, netns));
    }
}

/// The plan that makes the kernel match the state, and the rows to drop.
///
/// Rows that are not `ready` belong to a command that died (the caller
/// holds the state lock): a `creating` row is undone, a `removing` row is
/// finished; either way the row goes. A `ready` endpoint whose veth is gone
/// is re-created if its namespace is still there, and dropped if not (a
/// veth dies with its namespace, so this is also how a deleted namespace is
/// told from a reused inode). The firewall table is rebuilt whole when it
/// differs from the one the state describes (its chains, rule counts, or
/// the elements of its sets and maps), and left alone when it does not, so
/// that with nothing to repair the plan is empty.
pub fn decide(desired: &Desired, observed: &Observed, scope: Scope) -> Decision {
    let mut d = Decision::default();
    let links: HashMap<&str, &LinkFact> = observed
        .links
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();
    let live: Vec<&Network> = desired
        .networks
        .iter()
        .filter(|(_, s)| *s == Status::Ready)
        .map(|(n, _)| n)
        .collect();
    let live_by_name: HashMap<&str, &Network> =
        live.iter().map(|n| (n.name.as_str(), *n)).collect();
    // Networks whose command died: they go, with everything on them.
    let dying_networks: Vec<&Network> = desired
        .networks
        .iter()
        .filter(|(_, s)| *s != Status::Ready)
        .map(|(n, _)| n)
        .collect();
    let dying: HashSet<&str> = dying_networks.iter().map(|n| n.name.as_str()).collect();

    let mut remove_links: Vec<String> = Vec::new();
    let mut kept: Vec<&Endpoint> = Vec::new();
    let mut recreate: Vec<(&Network, &Endpoint)> = Vec::new();
    let mut known_veths: HashSet<&str> = HashSet::new();
    let mut known_ifbs: HashSet<String> = HashSet::new();
    for (e, status) in &desired.endpoints {
        known_veths.insert(e.host_ifname.as_str());
        if e.bandwidth.outbound.is_some() {
            known_ifbs.insert(names::ifb_name(&e.host_ifname));
        }
        if !e.has_veth() {
            child_decision(
                desired,
                observed,
                &links,
                e,
                *status,
                &mut d,
                &mut kept,
                &mut recreate,
            );
            continue;
        }
        let who = format!("{}/{}", e.network, e.name);
        let veth = links.contains_key(e.host_ifname.as_str());
        let network = live_by_name.get(e.network.as_str()).copied();
        let reason = match (network, status) {
            (None, _) if dying.contains(e.network.as_str()) => None,
            (None, _) => Some(format!("removed endpoint {who}: its network is gone")),
            (_, Status::Creating) => Some(format!("undid the interrupted connect of {who}")),
            (_, Status::Removing) => Some(format!("finished the interrupted disconnect of {who}")),
            _ if observed.dead_sandboxes.contains(&e.netns) => {
                Some(format!("reclaimed {who} of a `run` that was killed"))
            }
            (Some(_), Status::Ready) if veth => {
                kept.push(e);
                continue;
            }
            (Some(n), Status::Ready) if observed.netns_alive.contains(&e.id) => {
                d.report
                    .push(format!("re-created the veth {} of {who}", e.host_ifname));
                kept.push(e);
                recreate.push((n, e));
                continue;
            }
            (Some(_), Status::Ready) => {
                Some(format!("removed endpoint {who}: its namespace is gone"))
            }
        };
        d.report.extend(reason);
        d.drop_endpoints.push(e.id);
        // The veths of a dying network go with its link group below.
        if veth && !dying.contains(e.network.as_str()) {
            remove_links.push(e.host_ifname.clone());
        }
        // Its ifb lives in the host, whatever became of the namespace.
        let ifb = names::ifb_name(&e.host_ifname);
        if e.bandwidth.outbound.is_some()
            && links
                .get(ifb.as_str())
                .is_some_and(|l| names::is_berths_ifb(&l.name, l.group))
            && !dying.contains(e.network.as_str())
        {
            remove_links.push(ifb);
        }
    }
    for name in &remove_links {
        d.plan.push(Step::DeleteLink { name: name.clone() });
    }
    // Links disconnects took out of service and no one deleted yet (the
    // supervisor was not running, or was killed, or so was the command
    // before it told it).
    let pending = observed
        .links
        .iter()
        .filter(|l| l.group == names::PENDING_GROUP)
        .count();
    if pending > 0 {
        d.report.push(format!(
            "deleted {pending} link(s) disconnects had left pending"
        ));
        d.plan.push(Step::DeleteLinkGroup {
            group: names::PENDING_GROUP,
            what: format!("{pending} link(s) of disconnected endpoints"),
        });
    }

    // Networks whose command died: finish taking them away.
    for (n, status) in desired.networks.iter().filter(|(_, s)| *s != Status::Ready) {
        let verb = if *status == Status::Creating {
            "undid the interrupted creation of"
        } else {
            "finished removing"
        };
        d.report.push(format!("{verb} network {}", n.name));
        if observed.links.iter().any(|l| l.group == n.link_group) {
            d.plan.push(Step::DeleteLinkGroup {
                group: n.link_group,
                what: format!("the veths of network {}", n.name),
            });
        }
        if links
            .get(n.bridge.as_str())
            .is_some_and(|l| l.group == names::BRIDGE_GROUP)
        {
            d.plan.push(Step::DeleteLink {
                name: n.bridge.clone(),
            });
        }
        uplink_steps(n, false, &mut d.plan);
        d.drop_networks.push(n.id);
    }

    // Live networks: their bridge, address and routing.
    for n in live.iter().filter(|n| n.is_bridge()) {
        match links.get(n.bridge.as_str()) {
            None => {
                d.report.push(format!(
                    "re-created bridge {} of network {}",
                    n.bridge, n.name
                ));
                network_steps(n, &mut d.plan);
                // Deleted first, so the add cannot clash with a survivor.
                uplink_steps(n, false, &mut d.plan);
                uplink_steps(n, true, &mut d.plan);
            }
            Some(bridge) => {
                if !bridge.up {
                    d.report.push(format!("brought bridge {} up", n.bridge));
                    d.plan.push(Step::LinkUp {
                        name: n.bridge.clone(),
                    });
                }
                for s in &n.subnets {
                    let Some(gateway) = s.gateway else { continue };
                    let has_gateway = observed.addresses.as_ref().is_some_and(|a| {
                        a.contains(&(n.bridge.clone(), gateway, s.net.prefix_len()))
                    });
                    if has_gateway {
                        continue;
                    }
                    if observed.addresses.is_some() {
                        d.report.push(format!(
                            "put the gateway address {gateway} back on bridge {}",
                            n.bridge
                        ));
                    }
                    d.plan.push(Step::EnsureAddress {
                        ifname: n.bridge.clone(),
                        ip: gateway,
                        subnet: s.net,
                    });
                }
            }
        }
    }
    // Veths that survived but are no longer ports of their bridge (it was
    // deleted, or re-created above).
    for e in &kept {
        let Some(veth) = links.get(e.host_ifname.as_str()) else {
            continue;
        };
        let Some(n) = live_by_name.get(e.network.as_str()) else {
            continue;
        };
        let bridge_index = links.get(n.bridge.as_str()).map(|b| b.index);
        if bridge_index.is_none() || veth.master != bridge_index {
            d.report.push(format!(
                "re-attached the veth {} of {}/{} to bridge {}",
                e.host_ifname, e.network, e.name, n.bridge
            ));
            d.plan.push(Step::SetMaster {
                ifname: e.host_ifname.clone(),
                bridge: n.bridge.clone(),
            });
            if !e.ports.is_empty() {
                d.plan.push(Step::SetHairpin {
                    ifname: e.host_ifname.clone(),
                });
            }
        }
    }
    for (n, e) in &recreate {
        // A leftover peer name cannot exist: the veth pair went together.
        let netns = crate::kernel::netns::Target::locate(&e.netns)
            .map(|t| t.path)
            .unwrap_or_else(|_| std::path::PathBuf::from(&e.netns));
        endpoint_steps(n, e, netns, &mut d.plan);
        // The new veth is shaped as the old one was; the ifb, in the host,
        // usually outlived it.
        let ifb = names::ifb_name(&e.host_ifname);
        match links.get(ifb.as_str()).map(|l| l.group) {
            Some(g) if e.bandwidth.outbound.is_some() && !names::is_berths_ifb(&ifb, g) => {
                d.report.push(format!(
                    "could not limit what {}/{} sends: a device named {ifb} that berth did not make is in the way",
                    e.network, e.name
                ));
                let inbound_only = Endpoint {
                    bandwidth: crate::model::Bandwidth {
                        outbound: None,
                        ..e.bandwidth
                    },
                    ..(*e).clone()
                };
                bandwidth_steps(n, &inbound_only, None, &mut d.plan);
            }
            group => bandwidth_steps(n, e, group, &mut d.plan),
        }
    }
    // An ifb deleted under a live veth: the veth's redirect leads nowhere,
    // which drops everything the container sends.
    for e in &kept {
        let ifb = names::ifb_name(&e.host_ifname);
        if e.bandwidth.outbound.is_none()
            || links.contains_key(ifb.as_str())
            || !links.contains_key(e.host_ifname.as_str())
        {
            continue;
        }
        let Some(n) = live_by_name.get(e.network.as_str()) else {
            continue;
        };
        d.report.push(format!(
            "re-created the ifb {ifb} of {}/{}",
            e.network, e.name
        ));
        outbound_steps(n, e, None, &mut d.plan);
    }

    if scope.sweep {
        let live_bridges: HashSet<&str> = live.iter().map(|n| n.bridge.as_str()).collect();
        let dying_bridges: HashSet<&str> =
            dying_networks.iter().map(|n| n.bridge.as_str()).collect();
        let dying_groups: HashSet<u32> = dying_networks.iter().map(|n| n.link_group).collect();
        for l in &observed.links {
            let leftover_veth = names::is_berths_veth(&l.name, l.group)
                && !known_veths.contains(l.name.as_str())
                && !dying_groups.contains(&l.group);
            let leftover_bridge = l.kind == "bridge"
                && l.group == names::BRIDGE_GROUP
                && !live_bridges.contains(l.name.as_str())
                && !dying_bridges.contains(l.name.as_str());
            let leftover_ifb = names::is_berths_ifb(&l.name, l.group)
                && !known_ifbs.contains(&l.name)
                && !dying_groups.contains(&l.group);
            if leftover_veth || leftover_bridge || leftover_ifb {
                let kind = if leftover_bridge {
                    "bridge"
                } else if leftover_ifb {
                    "ifb"
                } else {
                    "veth"
                };
                d.report.push(format!(
                    "removed leftover {kind} {} that no state row knows",
                    l.name
                ));
                d.plan.push(Step::DeleteLink {
                    name: l.name.clone(),
                });
            }
        }
    }

    for s in &desired.sandboxes {
        if observed.dead_sandboxes.contains(&s.name) {
            d.report.push(format!(
                "removed namespace {} of a `run` that was killed",
                s.name
            ));
            d.plan.push(Step::DeleteNetns {
                name: s.name.clone(),
            });
            d.drop_sandboxes.push(s.name.clone());
        }
    }

    // The firewall, whole, from what is kept; left alone when it already
    // is exactly that (its chains, rule counts, sets and elements).
    let live_owned: Vec<Network> = live
        .iter()
        .filter(|n| n.is_bridge())
        .map(|n| (*n).clone())
        .collect();
    let (expected, expected_guard) = expected_fingerprints(&live_owned, &desired.instance);
    let mut published: Vec<(IpAddr, Vec<PortMapping>)> = kept
        .iter()
        .filter(|e| !e.ports.is_empty())
        .flat_map(|e| e.ips.iter().map(|ip| (*ip, e.ports.clone())))
        .collect();
    for n in live.iter().filter(|n| n.policy.dns) {
        let Some(gateway) = n.gateway4() else {
            continue;
        };
        let redirects = crate::dns::port_redirects(gateway, desired.dns_port);
        if !redirects.is_empty() {
            published.push((IpAddr::V4(gateway), redirects));
        }
    }
    let guards = firewall::guard::elements(kept.iter().copied());
    let mut rebuild = false;
    for (what, observed, expected) in [
        ("firewall table", &observed.table, &expected),
        (
            "anti-spoofing table",
            &observed.guard_table,
            &expected_guard,
        ),
    ] {
        let why = match (observed, expected) {
            (None, Some(_)) => format!("re-created the {what}"),
            (Some(_), None) => format!("removed the {what}: no network is left"),
            (Some(a), Some(b)) if a != b => {
                format!("rebuilt the {what}: its chains or rules had been changed")
            }
            _ => continue,
        };
        d.report.push(why);
        rebuild = true;
    }
    if !rebuild && expected.is_some() {
        let fresh = firewall::rebuild(
            &live_owned,
            &published,
            &guards,
            firewall::Tables::default(),
            &desired.instance,
        );
        let want = expected_elements(&fresh.batch);
        match &observed.elements {
            Some(have) => match element_repair(&fresh.batch, have, &want) {
                // Only elements differ (endpoints dropped above, or some
                // deleted by hand): they alone are changed, not the whole
                // table re-made (40,000 messages at 10,000 endpoints).
                Some((batch, undo)) => {
                    if !batch.is_empty() {
                        d.report.push(
                            "put the elements of berth's sets and maps back as the state says"
                                .into(),
                        );
                        d.plan.push(Step::Nft { batch, undo });
                    }
                }
                None => {
                    for (what, table) in [
                        ("firewall table", firewall::table()),
                        ("anti-spoofing table", firewall::guard::table()),
                    ] {
                        let of = |all: &TableElements| -> TableElements {
                            all.iter()
                                .filter(|((t, _), _)| *t == table)
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        };
                        if of(have) != of(&want) {
                            d.report.push(format!(
                                "rebuilt the {what}: its sets or maps had been changed"
                            ));
                            rebuild = true;
                        }
                    }
                }
            },
            None => rebuild = true,
        }
    }
    if rebuild {
        let exist = firewall::Tables {
            routing: observed.table.is_some(),
            guard: observed.guard_table.is_some(),
        };
        let change = firewall::rebuild(&live_owned, &published, &guards, exist, &desired.instance);
        d.plan.push(Step::Nft {
            batch: change.batch,
            undo: change.undo,
        });
    }
    // Forwarding of each family some network routes.
    for (family, observed_on, key) in [
        (
            crate::model::Family::V4,
            observed.ip_forward,
            sysctl::Key::ip_forward(),
        ),
        (
            crate::model::Family::V6,
            observed.ip6_forward,
            sysctl::Key::ipv6_forwarding(),
        ),
    ] {
        let needed = live_owned.iter().any(|n| n.subnet_of(family).is_some());
        if needed && observed_on != Some(true) {
            if observed_on == Some(false) {
                d.report.push(format!("turned {key} back on"));
            }
            d.plan.push(Step::SetSysctl {
                key,
                value: "1".into(),
            });
        }
    }
    d
}

#[cfg(test)]
mod tests;
