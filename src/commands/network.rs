//! `network create | ls | inspect | rm`: bridges with a subnet and gateway.

use std::net::Ipv4Addr;

use super::{Context, Outcome};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::firewall;
use crate::kernel::sysctl;
use crate::model::{
    ipam, names, subnet::parse_ipv4, Endpoint, Ipv4Net, Network, NetworkPolicy, PortMapping, Proto,
    Uplink, DEFAULT_MTU,
};
use crate::plan::{Plan, Step};
use crate::reconcile;
use crate::store::{NewNetwork, Status, Tx};
use berth_nft::ElemOp;

/// Options of `network create`, as given.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub no_masquerade: bool,
    pub no_icc: bool,
    pub internal: bool,
    pub deny_egress: Vec<String>,
    pub uplink: Option<String>,
    pub uplink_gateway: Option<String>,
    pub log_drops: bool,
    /// Who asks, recorded on the network (`podman` in netavark mode).
    pub owner: Option<String>,
    /// `--no-dns`: berth's DNS server does not serve this network.
    pub no_dns: bool,
    /// `--cluster-cidr`, as given.
    pub cluster_cidrs: Vec<String>,
}

/// What `network create` made, and what the user should know about it.
pub struct Created {
    pub network: Network,
    /// One line each, e.g. another firewall that may drop the traffic.
    pub warnings: Vec<String>,
}

/// The `settings` row that remembers the ip_forward value berth found.
const IP_FORWARD: &str = "net.ipv4.ip_forward";

/// The network every `berth run` without `--net` joins, made on first use.
pub const DEFAULT_NETWORK: &str = "berth";
const DEFAULT_BRIDGE: &str = "berth0";

/// Names a user cannot give a network: they would shadow `run --net
/// host|none` and the default network berth makes itself.
pub const RESERVED_NAMES: [&str; 4] = ["host", "none", "default", DEFAULT_NETWORK];

pub fn create(ctx: &mut Context, opts: &CreateOptions) -> Result<Outcome<Created>> {
    if RESERVED_NAMES.contains(&opts.name.as_str()) {
        return Err(Error::invalid(format!(
            "network name {:?} is reserved (it would shadow `--net host|none` or berth's default network); choose another",
            opts.name
        )));
    }
    let _lock = ctx.begin_change()?;
    let network = match create_in(ctx, opts)? {
        Outcome::Planned(plan) => return Ok(Outcome::Planned(plan)),
        Outcome::Done(network) => network,
    };
    crate::dns::sync_or_warn(&ctx.state_dir); // DNS: a listener for the new network
    let warnings = ctx
        .kernel
        .foreign_forward_drops(&firewall::table())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            format!(
                "warning: {c} has policy drop on the forward hook and may drop the traffic of network {} (berth cannot override it)",
                network.name
            )
        })
        .collect();
    Ok(Outcome::Done(Created { network, warnings }))
}

/// Creates the default network unless it exists; returns it.
pub fn ensure_default(ctx: &mut Context) -> Result<Network> {
    let _lock = ctx.begin_change()?;
    if let Some(n) = ctx.store()?.begin()?.network(DEFAULT_NETWORK)? {
        return Ok(n);
    }
    let opts = CreateOptions {
        name: DEFAULT_NETWORK.into(),
        bridge: Some(DEFAULT_BRIDGE.into()),
        ..Default::default()
    };
    let network = create_in(ctx, &opts)?.applied();
    crate::dns::sync_or_warn(&ctx.state_dir); // DNS: a listener for the new network
    Ok(network)
}

/// Checks, records and (unless this is a dry run) builds a network; the
/// caller holds the state lock.
fn create_in(ctx: &mut Context, opts: &CreateOptions) -> Result<Outcome<Network>> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let new = check_create(ctx, &tx, opts)?;
    // The row gives the network its id (and so its link group and routing
    // table); a dry run drops the transaction, and the row with it.
    let network = tx.insert_network(&new)?;
    if let Some(owner) = &opts.owner {
        tx.mark_network(network.id, owner)?;
    }
    let plan = plan_create(ctx, &tx, &network)?;
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    // The intent: a crash from here on leaves a `creating` row, which the
    // next command undoes (the bridge is found by its name and group).
    tx.set_network_status(network.id, Status::Creating)?;
    tx.commit()?;
    failpoint::hit("intent");
    if let Err(e) = plan.apply(ctx.kernel.as_mut()) {
        let tx = store.begin()?;
        tx.delete_network(network.id)?;
        tx.commit()?;
        return Err(e);
    }
    failpoint::hit("record");
    let tx = store.begin()?;
    tx.set_network_status(network.id, Status::Ready)?;
    reconcile::record_generation(ctx, &tx)?;
    tx.commit()?;
    Ok(Outcome::Done(network))
}

/// Checks every option against the state and the host, and computes the
/// network to create.
fn check_create<'a>(ctx: &mut Context, tx: &Tx, opts: &'a CreateOptions) -> Result<NewNetwork<'a>> {
    names::check_name("network", &opts.name)?;
    let bridge = match &opts.bridge {
        Some(b) => {
            names::check_ifname("bridge name", b)?;
            b.clone()
        }
        None => names::default_bridge_name(&opts.name),
    };
    let mtu = opts.mtu.unwrap_or(DEFAULT_MTU);
    if !(68..=65535).contains(&mtu) {
        return Err(Error::invalid(format!(
            "invalid MTU {mtu}: expected 68 to 65535"
        )));
    }
    let explicit_subnet = opts
        .subnet
        .as_deref()
        .map(Ipv4Net::parse_network)
        .transpose()?;
    let gateway = opts
        .gateway
        .as_deref()
        .map(|g| parse_ipv4("gateway", g))
        .transpose()?;

    if tx.network(&opts.name)?.is_some() {
        return Err(Error::invalid(format!(
            "network {:?} already exists",
            opts.name
        )));
    }
    let networks = tx.networks()?;
    if let Some(other) = networks.iter().find(|n| n.bridge == bridge) {
        return Err(Error::invalid(format!(
            "bridge {bridge:?} is already used by network {:?}",
            other.name
        )));
    }
    if ctx.kernel.link_exists(&bridge)? {
        return Err(Error::invalid(format!(
            "bridge {bridge:?} already exists on the host; choose another with --bridge"
        )));
    }

    let host = ctx.kernel.host_prefixes()?;
    let subnet = match explicit_subnet {
        Some(subnet) => {
            if let Some(n) = networks.iter().find(|n| n.subnet.overlaps(&subnet)) {
                return Err(Error::invalid(format!(
                    "subnet {subnet} overlaps network {:?} ({})",
                    n.name, n.subnet
                )));
            }
            if let Some(h) = host.iter().find(|h| h.net.overlaps(&subnet)) {
                return Err(Error::invalid(format!(
                    "subnet {subnet} overlaps {}",
                    h.what
                )));
            }
            subnet
        }
        None => {
            let used: Vec<Ipv4Net> = networks
                .iter()
                .map(|n| n.subnet)
                .chain(host.iter().map(|h| h.net))
                .collect();
            let pools = crate::config::Config::load()?.pools;
            ipam::pick_subnet(&pools, &used).ok_or_else(|| {
                let pools: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
                Error::invalid(format!(
                    "no free subnet left in the pools ({}); give one with --subnet",
                    pools.join(", ")
                ))
            })?
        }
    };
    let gateway: Ipv4Addr = match gateway {
        Some(g) if subnet.is_host(g) => g,
        Some(g) => {
            return Err(Error::invalid(format!(
                "gateway {g} is not a host address of subnet {subnet}"
            )))
        }
        None => subnet.first_host(),
    };

    let policy = check_policy(ctx, opts)?;
    Ok(NewNetwork {
        name: &opts.name,
        subnet,
        gateway,
        bridge,
        mtu,
        policy,
    })
}

/// Parses and checks the firewall and routing options.
fn check_policy(ctx: &mut Context, opts: &CreateOptions) -> Result<NetworkPolicy> {
    let deny_egress = opts
        .deny_egress
        .iter()
        .map(|d| parse_cidr("--deny-egress", d))
        .collect::<Result<Vec<_>>>()?;
    if opts.uplink_gateway.is_some() && opts.uplink.is_none() {
        return Err(Error::invalid("--uplink-gateway needs --uplink IFACE"));
    }
    let uplink = match &opts.uplink {
        None => None,
        Some(_) if opts.internal => {
            return Err(Error::invalid(
                "--uplink cannot be used with --internal: an internal network has no way out",
            ))
        }
        Some(ifname) => {
            names::check_ifname("--uplink interface", ifname)?;
            let Some(routes) = ctx.kernel.iface_routes(ifname)? else {
                return Err(Error::invalid(format!(
                    "no interface {ifname:?} on the host for --uplink"
                )));
            };
            let gateway = match &opts.uplink_gateway {
                Some(g) => {
                    let g = parse_ipv4("--uplink-gateway", g)?;
                    if !routes.connected.iter().any(|n| n.is_host(g) || n.contains(g)) {
                        return Err(Error::invalid(format!(
                            "uplink gateway {g} is not reachable on {ifname}: it is in none of its prefixes"
                        )));
                    }
                    g
                }
                None => *routes.gateways.first().ok_or_else(|| {
                    Error::invalid(format!(
                        "no gateway through {ifname:?} in the host's routes; give one with --uplink-gateway"
                    ))
                })?,
            };
            Some(Uplink {
                ifname: ifname.clone(),
                gateway,
            })
        }
    };
    Ok(NetworkPolicy {
        masquerade: !opts.no_masquerade,
        icc: !opts.no_icc,
        internal: opts.internal,
        deny_egress,
        uplink,
        log_drops: opts.log_drops,
        dns: !opts.no_dns,
        cluster_cidrs: opts
            .cluster_cidrs
            .iter()
            .map(|d| parse_cidr("--cluster-cidr", d))
            .collect::<Result<Vec<_>>>()?,
    })
}

/// An IPv4 range given for `what`: `a.b.c.d/len` without host bits, or one
/// address.
fn parse_cidr(what: &str, text: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = if text.contains('/') {
        text.parse().map_err(|_| {
            Error::invalid(format!(
                "invalid {what} {text:?}: expected an IPv4 CIDR like 10.0.0.0/8"
            ))
        })?
    } else {
        let ip = parse_ipv4(what, text)?;
        Ipv4Net::new_truncating(ip, 32)
    };
    let given = text.split_once('/').map_or(text, |(a, _)| a);
    if given != net.network().to_string() {
        return Err(Error::invalid(format!(
            "invalid {what} {text:?}: host bits are set; did you mean {net}?"
        )));
    }
    Ok(net)
}

/// The kernel steps of a new network: bridge, address, forwarding, its
/// part of the ruleset (one batch) and its policy routing.
fn plan_create(ctx: &mut Context, tx: &Tx, network: &Network) -> Result<Plan> {
    let mut plan = Plan::new();
    // The same steps the reconcile uses to rebuild a lost bridge.
    crate::reconcile::decide::network_steps(network, &mut plan);
    let forward = ctx.kernel.read_sysctl(&sysctl::Key::ip_forward())?;
    if forward != "1" {
        // Remembered so that `reset` can put it back.
        tx.record_setting_once(IP_FORWARD, &forward)?;
    }
    plan.push(Step::SetSysctl {
        key: sysctl::Key::ip_forward(),
        value: "1".into(),
    });
    // Other networks than this new one mean the table is there.
    let exists = table_exists(ctx, tx, 1)?;
    let mut change = firewall::add_network(network, exists, &tx.instance_id()?);
    // The DNS server listens on another port than 53 (Podman's
    // NETAVARK_DNS_PORT): the gateway's port 53 is redirected to it.
    let redirects = dns_redirects(tx, network)?;
    firewall::ports::elements_op(
        &mut change.batch,
        berth_nft::ElemOp::Add,
        network.gateway,
        &redirects,
    );
    plan.push(Step::Nft {
        batch: change.batch,
        undo: change.undo,
    });
    crate::reconcile::decide::uplink_steps(network, true, &mut plan);
    Ok(plan)
}

/// Whether berth's table exists. A real run asks the kernel; a dry run,
/// which may not be allowed to (nf_tables wants CAP_NET_ADMIN even to
/// read), goes by the state, which the preflight keeps true: the table
/// exists while more than `own` networks are recorded.
fn table_exists(ctx: &mut Context, tx: &Tx, own: usize) -> Result<bool> {
    if ctx.dry_run {
        return Ok(tx.networks()?.len() > own);
    }
    ctx.kernel.nft_table_exists(&firewall::table())
}

/// The DNS port redirects a network has (see `dns::port_redirects`).
fn dns_redirects(tx: &Tx, network: &Network) -> Result<Vec<PortMapping>> {
    if !network.policy.dns {
        return Ok(Vec::new());
    }
    let port = tx
        .setting(crate::dns::PORT_SETTING)?
        .and_then(|p| p.parse().ok())
        .unwrap_or(53);
    Ok(crate::dns::port_redirects(network.gateway, port))
}

/// The steps that take a network away: its ruleset part (or the whole
/// table when `last`), its policy routing, its veths and its bridge.
fn plan_remove(
    network: &Network,
    endpoints: usize,
    last: bool,
    ports: &[(Ipv4Addr, PortMapping)],
    owner: &str,
) -> Plan {
    let mut plan = Plan::new();
    let mut change = firewall::remove_network(network, last, owner);
    if !last {
        // The endpoints' published ports go in the same batch (with the
        // last network the whole table goes, elements included).
        for (ip, m) in ports {
            let one = std::slice::from_ref(m);
            firewall::ports::elements_op(&mut change.batch, ElemOp::Delete, *ip, one);
            firewall::ports::elements_op(&mut change.undo, ElemOp::Add, *ip, one);
        }
    }
    plan.push(Step::Nft {
        batch: change.batch,
        undo: change.undo,
    });
    for (_, m) in ports.iter().filter(|(_, m)| m.proto == Proto::Udp) {
        for (port, _) in m.pairs() {
            plan.push(Step::FlushConntrack {
                proto: m.proto,
                dst: (!m.is_any_address()).then_some(m.host_ip),
                port,
            });
        }
    }
    crate::reconcile::decide::uplink_steps(network, false, &mut plan);
    if endpoints > 0 {
        plan.push(Step::DeleteLinkGroup {
            group: network.link_group,
            what: format!("the {endpoints} veth(s) of network {}", network.name),
        });
    }
    plan.push(Step::DeleteLink {
        name: network.bridge.clone(),
    });
    plan
}

/// Every network with its endpoint count.
pub fn list(ctx: &Context) -> Result<Vec<(Network, usize)>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Vec::new());
    };
    let tx = store.read()?;
    tx.networks()?
        .into_iter()
        .map(|n| {
            let count = tx.endpoint_count(n.id)?;
            Ok((n, count))
        })
        .collect()
}

/// One network and its endpoints.
pub fn inspect(ctx: &Context, name: &str) -> Result<(Network, Vec<Endpoint>)> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Err(Error::invalid(format!(
            "no such network {name:?} (see `berth network ls`)"
        )));
    };
    let tx = store.read()?;
    let network = tx.require_network(name)?;
    let mut endpoints = tx.endpoints(Some(network.id))?;
    tx.load_ports(&mut endpoints)?;
    Ok((network, endpoints))
}

/// Removes a network; with `force`, disconnects its endpoints first (all
/// their veths in one kernel request, through the network's link group).
pub fn remove(ctx: &mut Context, name: &str, force: bool) -> Result<Outcome<Vec<Endpoint>>> {
    let _lock = ctx.begin_change()?;
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let network = tx.require_network(name)?;
    let endpoints = tx.endpoints(Some(network.id))?;
    if !endpoints.is_empty() && !force {
        let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
        return Err(Error::invalid(format!(
            "network {name:?} still has {} endpoint(s) connected ({}); disconnect them or use --force",
            endpoints.len(),
            names.join(", ")
        )));
    }
    let last = tx.networks()?.len() == 1;
    let mut ports = tx.network_ports(network.id)?;
    ports.extend(
        dns_redirects(&tx, &network)?
            .into_iter()
            .map(|m| (network.gateway, m)),
    );
    let mut plan = plan_remove(&network, endpoints.len(), last, &ports, &tx.instance_id()?);
    if !table_exists(ctx, &tx, 0)? {
        // The ruleset went already (a reboot, `nft flush ruleset`): the
        // plain deletes would fail on what is not there.
        plan.steps.remove(0);
    }
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    // The intent: a crash from here on leaves a `removing` row, which the
    // next command finishes taking away.
    tx.set_network_status(network.id, Status::Removing)?;
    tx.commit()?;
    failpoint::hit("intent");
    if let Err(e) = plan.apply(ctx.kernel.as_mut()) {
        let tx = store.begin()?;
        tx.set_network_status(network.id, Status::Ready)?;
        tx.commit()?;
        return Err(e);
    }
    failpoint::hit("record");
    let tx = store.begin()?;
    tx.delete_network(network.id)?;
    reconcile::record_generation(ctx, &tx)?;
    tx.commit()?;
    crate::dns::sync_or_warn(&ctx.state_dir); // DNS: the network's listener goes
    Ok(Outcome::Done(endpoints))
}

/// What `reset` took away.
pub struct ResetReport {
    pub networks: usize,
    pub endpoints: usize,
}

/// Removes everything berth made: every network with its endpoints, its
/// ruleset part and policy routing, the table, and the state; puts back
/// the host settings berth changed. Touches nothing berth did not make.
pub fn reset(ctx: &mut Context) -> Result<Outcome<ResetReport>> {
    let _lock = ctx.begin_change()?;
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let networks = tx.networks()?;
    let mut plan = Plan::new();
    let change = firewall::remove_all(table_exists(ctx, &tx, 0)?);
    plan.push(Step::Nft {
        batch: change.batch,
        undo: change.undo,
    });
    let mut endpoints = 0;
    for network in &networks {
        let count = tx.endpoint_count(network.id)?;
        endpoints += count;
        // The table goes at once above, so the per-network nft part is not needed.
        let mut p = plan_remove(
            network,
            count,
            true,
            &tx.network_ports(network.id)?,
            &tx.instance_id()?,
        );
        p.steps.remove(0);
        plan.steps.extend(p.steps);
    }
    if let Some(old) = tx.setting(IP_FORWARD)? {
        plan.push(Step::SetSysctl {
            key: sysctl::Key::ip_forward(),
            value: old,
        });
    }
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    // The intent: every network `removing`, so a crash from here on is
    // finished by the next command.
    for network in &networks {
        tx.set_network_status(network.id, Status::Removing)?;
    }
    tx.commit()?;
    failpoint::hit("intent");
    plan.apply(ctx.kernel.as_mut())?;
    failpoint::hit("record");
    let tx = store.begin()?;
    tx.clear()?;
    tx.commit()?;
    crate::dns::sync_or_warn(&ctx.state_dir); // DNS: no network needs the server
    Ok(Outcome::Done(ResetReport {
        networks: networks.len(),
        endpoints,
    }))
}
