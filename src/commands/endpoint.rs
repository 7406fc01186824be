//! `connect`, `disconnect` and `ps`: attaching namespaces to networks.
//!
//! A connect is O(1) in the number of endpoints: a handful of indexed state
//! lookups, one veth request, and one short visit inside the namespace.

use std::path::Path;

use super::{Context, Outcome};
use crate::error::{Error, Result};
use crate::kernel::netns::Target;
use crate::kernel::{InsideConfig, VethPair};
use crate::model::{ipam, names, subnet::parse_ipv4, Endpoint, Mac, Network};
use crate::plan::{Plan, Step};
use crate::store::Tx;

/// Options of `connect`, as given.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    pub network: String,
    pub target: String,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub ifname: Option<String>,
}

pub fn connect(ctx: &mut Context, opts: &ConnectOptions) -> Result<Outcome<(Endpoint, Network)>> {
    let target = Target::resolve(&opts.target)?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => default_endpoint_name(&target),
    };
    names::check_name("endpoint", &name)?;
    if let Some(ifname) = &opts.ifname {
        names::check_ifname("interface name", ifname)?;
    }
    let mac = opts.mac.as_deref().map(Mac::parse_unicast).transpose()?;
    let ip = opts
        .ip
        .as_deref()
        .map(|ip| parse_ipv4("address", ip))
        .transpose()?;

    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let network = tx.require_network(&opts.network)?;
    let inode = target.inode.expect("resolved targets exist");
    if let Some(existing) = tx.find_endpoint(network.id, &target.key, Some(inode))? {
        return Err(Error::invalid(format!(
            "{} is already connected to network {:?} as {:?} ({})",
            opts.target, network.name, existing.name, existing.ip
        )));
    }
    if tx.endpoint_name_taken(network.id, &name)? {
        return Err(Error::invalid(format!(
            "network {:?} already has an endpoint named {name:?}; choose another with --name",
            network.name
        )));
    }
    let ip = lease(&tx, &network, ip)?;
    let ifname = match &opts.ifname {
        Some(i) => i.clone(),
        None => tx.free_ifname(inode)?,
    };
    let host_ifname = names::host_veth_name(&network.name, &name);
    if let Some(holder) = tx.host_ifname_holder(&host_ifname)? {
        return Err(Error::Other(format!(
            "host interface name {host_ifname} of {}/{name} collides with endpoint {holder}; choose another --name",
            network.name
        )));
    }
    // An internal network gives no default route: nothing leaves it anyway,
    // and a later connect to another network can give one.
    let default_route = !network.policy.internal && !tx.netns_has_default_route(inode)?;
    let endpoint = Endpoint {
        id: 0,
        network: network.name.clone(),
        name,
        netns: target.key.clone(),
        netns_inode: inode,
        ip,
        mac: mac.unwrap_or_else(|| Mac::from_ipv4(ip)),
        ifname,
        host_ifname,
        default_route,
    };

    let mut plan = Plan::new();
    // A host veth that the state does not know is a leftover of a crashed or
    // interrupted berth (or of a namespace the kernel is still tearing down):
    // its name is ours by construction, so it is removed.
    if ctx.kernel.link_exists(&endpoint.host_ifname)? {
        plan.push(Step::DeleteLink {
            name: endpoint.host_ifname.clone(),
        });
    }
    plan.push(Step::CreateVeth(VethPair {
        host_ifname: endpoint.host_ifname.clone(),
        bridge: network.bridge.clone(),
        link_group: network.link_group,
        netns: target.path.clone(),
        ifname: endpoint.ifname.clone(),
        mac: endpoint.mac,
        mtu: network.mtu,
    }));
    plan.push(Step::ConfigureInside {
        netns: target.path.clone(),
        config: InsideConfig {
            ifname: endpoint.ifname.clone(),
            ip,
            subnet: network.subnet,
            default_via: default_route.then_some(network.gateway),
        },
    });
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    let id = tx.insert_endpoint(&network, &endpoint)?;
    plan.apply(ctx.kernel.as_mut())?;
    tx.commit()?;
    Ok(Outcome::Done((Endpoint { id, ..endpoint }, network)))
}

/// The endpoint name used when `--name` is not given.
fn default_endpoint_name(target: &Target) -> String {
    if let Some(pid) = target.key.strip_prefix("pid:") {
        return format!("pid-{pid}");
    }
    let path = Path::new(&target.key);
    match path
        .strip_prefix("/proc")
        .ok()
        .and_then(|p| p.iter().next())
    {
        Some(pid) if path.ends_with("ns/net") => format!("pid-{}", pid.to_string_lossy()),
        _ => path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| target.key.clone()),
    }
}

/// The address for a new endpoint: the requested one if it is free, else
/// the next free one.
fn lease(
    tx: &Tx,
    network: &Network,
    requested: Option<std::net::Ipv4Addr>,
) -> Result<std::net::Ipv4Addr> {
    let subnet = network.subnet;
    if let Some(ip) = requested {
        if !subnet.is_host(ip) {
            return Err(Error::invalid(format!(
                "address {ip} is not a host address of subnet {subnet}"
            )));
        }
        if ip == network.gateway {
            return Err(Error::invalid(format!(
                "address {ip} is the gateway of network {:?}",
                network.name
            )));
        }
        if let Some(holder) = tx.ip_holder(network.id, ip)? {
            return Err(Error::invalid(format!(
                "address {ip} is already taken by endpoint {holder:?}"
            )));
        }
        return Ok(ip);
    }
    let last = tx.last_ip(network.id)?;
    let mut failure = None;
    let found = ipam::next_address(subnet, network.gateway, last, |ip| {
        match tx.ip_holder(network.id, ip) {
            Ok(holder) => holder.is_some(),
            Err(e) => {
                failure.get_or_insert(e);
                true
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    found.ok_or_else(|| {
        Error::invalid(format!(
            "network {:?} has no free address left in {subnet}",
            network.name
        ))
    })
}

/// What `disconnect` did.
pub enum Disconnected {
    Removed(Endpoint),
    NothingToDo,
}

pub fn disconnect(ctx: &mut Context, network: &str, target: &str) -> Result<Outcome<Disconnected>> {
    let target = Target::parse(target)?;
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let network = tx.require_network(network)?;
    let Some(endpoint) = tx.find_endpoint(network.id, &target.key, target.inode)? else {
        return Ok(Outcome::Done(Disconnected::NothingToDo));
    };
    let mut plan = Plan::new();
    plan.push(Step::DeleteLink {
        name: endpoint.host_ifname.clone(),
    });
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    tx.delete_endpoint(endpoint.id)?;
    plan.apply(ctx.kernel.as_mut())?;
    tx.commit()?;
    Ok(Outcome::Done(Disconnected::Removed(endpoint)))
}

/// Every endpoint with its network.
pub fn list(ctx: &Context) -> Result<Vec<(Endpoint, Network)>> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let networks = tx.networks()?;
    let endpoints = tx.endpoints(None)?;
    Ok(endpoints
        .into_iter()
        .filter_map(|e| {
            let n = networks.iter().find(|n| n.name == e.network)?.clone();
            Some((e, n))
        })
        .collect())
}
