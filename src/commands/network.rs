//! `network create | ls | inspect | rm`: bridges with a subnet and gateway.

use std::net::Ipv4Addr;

use super::{Context, Outcome};
use crate::error::{Error, Result};
use crate::model::{ipam, names, subnet::parse_ipv4, Endpoint, Ipv4Net, Mac, Network, DEFAULT_MTU};
use crate::plan::{Plan, Step};
use crate::store::{NewNetwork, Tx};

/// Options of `network create`, as given.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
}

/// The network every `berth run` without `--net` joins, made on first use.
pub const DEFAULT_NETWORK: &str = "berth";
const DEFAULT_BRIDGE: &str = "berth0";

pub fn create(ctx: &mut Context, opts: &CreateOptions) -> Result<Outcome<Network>> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let (network, plan) = plan_create(ctx, &tx, opts)?;
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    let network = tx.insert_network(&network)?;
    plan.apply(ctx.kernel.as_mut())?;
    tx.commit()?;
    Ok(Outcome::Done(network))
}

/// Creates the default network unless it exists; returns it.
pub fn ensure_default(ctx: &mut Context) -> Result<Network> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    if let Some(n) = tx.network(DEFAULT_NETWORK)? {
        return Ok(n);
    }
    let opts = CreateOptions {
        name: DEFAULT_NETWORK.into(),
        bridge: Some(DEFAULT_BRIDGE.into()),
        ..Default::default()
    };
    let (network, plan) = plan_create(ctx, &tx, &opts)?;
    let network = tx.insert_network(&network)?;
    plan.apply(ctx.kernel.as_mut())?;
    tx.commit()?;
    Ok(network)
}

/// Checks every option and the host, and computes the network and its plan.
fn plan_create<'a>(
    ctx: &mut Context,
    tx: &Tx,
    opts: &'a CreateOptions,
) -> Result<(NewNetwork<'a>, Plan)> {
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
            ipam::pick_subnet(&used).ok_or_else(|| {
                Error::invalid(format!(
                    "no free subnet left in the pool {}-{}; give one with --subnet",
                    ipam::POOL_START,
                    ipam::POOL_END
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

    let mut plan = Plan::new();
    plan.push(Step::CreateBridge {
        mac: Mac::from_ipv4(gateway),
        name: bridge.clone(),
        mtu,
    });
    plan.push(Step::AddAddress {
        ifname: bridge.clone(),
        ip: gateway,
        subnet,
    });
    plan.push(Step::SetSysctl {
        key: "net.ipv4.ip_forward".into(),
        value: "1".into(),
    });
    let network = NewNetwork {
        name: &opts.name,
        subnet,
        gateway,
        bridge,
        mtu,
    };
    Ok((network, plan))
}

/// Every network with its endpoint count.
pub fn list(ctx: &Context) -> Result<Vec<(Network, usize)>> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
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
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let network = tx.require_network(name)?;
    let endpoints = tx.endpoints(Some(network.id))?;
    Ok((network, endpoints))
}

/// Removes a network; with `force`, disconnects its endpoints first (all
/// their veths in one kernel request, through the network's link group).
pub fn remove(ctx: &mut Context, name: &str, force: bool) -> Result<Outcome<Vec<Endpoint>>> {
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
    let mut plan = Plan::new();
    if !endpoints.is_empty() {
        plan.push(Step::DeleteLinkGroup {
            group: network.link_group,
            what: format!("the {} veth(s) of network {name}", endpoints.len()),
        });
    }
    plan.push(Step::DeleteLink {
        name: network.bridge.clone(),
    });
    if ctx.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    tx.delete_network(network.id)?;
    plan.apply(ctx.kernel.as_mut())?;
    tx.commit()?;
    Ok(Outcome::Done(endpoints))
}
