//! ADD, DEL, CHECK, STATUS and VERSION. Each verb is a thin translation:
//! ADD is `connect` (target = `CNI_NETNS`, interface = `CNI_IFNAME`) with the
//! attachment recorded in the connect's own intent transaction; DEL is
//! `disconnect` of the endpoint the attachment names, and succeeds when
//! there is nothing left to remove.

use std::path::Path;

use serde_json::{json, Value};

use super::config::{self, Env, NetConf, SUPPORTED_VERSIONS};
use super::error::*;
use super::{context, result};
use crate::commands::endpoint::{self, ConnectOptions};
use crate::commands::network;
use crate::commands::{Context, Outcome};
use crate::error::Error;
use crate::firewall;
use crate::model::{names, Endpoint, Network};
use crate::store::{Attachment, EndpointMark};

/// VERSION: the versions berth speaks.
pub fn version(stdin: &[u8]) -> Value {
    let asked = config::version_of(stdin).unwrap_or_default();
    let version = if asked.is_empty() {
        config::LATEST.to_string()
    } else {
        asked
    };
    json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })
}

/// The endpoint name of an attachment: readable in `berth ps`, unique per
/// (container ID, interface name) for IDs that differ in their first 44
/// characters (runtimes use 64 random hex digits).
pub fn endpoint_name(container_id: &str, ifname: &str) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    };
    format!("cni-{}-{}", clean(container_id, 44), clean(ifname, 15))
}

/// Code 7 when the config contradicts the existing network `n`.
fn check_agrees(conf: &NetConf, n: &Network) -> Result<(), CniError> {
    let c = conf.contradictions(n);
    if c.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        CODE_BAD_CONFIG,
        format!(
            "the configuration of network {:?} contradicts the existing network: {}",
            n.name,
            c.join(", ")
        ),
    ))
}

/// The network the config names: the existing one if the config agrees
/// with it (code 7 if not), else a new one made from the config.
fn ensure_network(ctx: &mut Context, conf: &NetConf) -> Result<Network, CniError> {
    let contradicted = |n: &Network| check_agrees(conf, n);
    if let Some(n) = existing_network(ctx, &conf.name)? {
        contradicted(&n)?;
        return Ok(n);
    }
    match network::create(ctx, &conf.create_options()) {
        Ok(Outcome::Done(created)) => Ok(created.network),
        Ok(Outcome::Planned(_)) => unreachable!("the plugin never plans only"),
        Err(e) => {
            // Another ADD may have made it meanwhile.
            if let Some(n) = existing_network(ctx, &conf.name)? {
                contradicted(&n)?;
                return Ok(n);
            }
            Err(match e {
                Error::Invalid(m) => CniError::new(CODE_BAD_CONFIG, m),
                e => CniError::from_berth(e),
            })
        }
    }
}

/// The network `name` and the endpoint of an attachment, in one read of
/// the state (the common ADD finds both, or the network alone).
fn lookup(
    ctx: &Context,
    name: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(Option<Network>, Option<Endpoint>), CniError> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok((None, None));
    };
    let tx = store.read()?;
    let network = tx.network(name)?;
    let endpoint = match tx.find_attachment(container_id, ifname) {
        Ok(found) => found,
        Err(Error::Store(e)) if e.to_string().contains("no such table") => None,
        Err(e) => return Err(e.into()),
    };
    Ok((network, endpoint))
}

fn existing_network(ctx: &Context, name: &str) -> Result<Option<Network>, CniError> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(None);
    };
    let tx = store.read()?;
    Ok(tx.network(name)?)
}

/// The endpoint a runtime attached as (`container_id`, `ifname`), if any.
fn find_attachment(
    ctx: &Context,
    container_id: &str,
    ifname: &str,
) -> Result<Option<Endpoint>, CniError> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(None);
    };
    let tx = store.read()?;
    // A state older than the attachments table has no attachment.
    match tx.find_attachment(container_id, ifname) {
        Ok(found) => Ok(found),
        Err(Error::Store(e)) if e.to_string().contains("no such table") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn ifname_of(env: &Env) -> Result<&str, CniError> {
    let ifname = env.require("CNI_IFNAME", &env.ifname)?;
    names::check_ifname("CNI_IFNAME", ifname)
        .map_err(|e| CniError::new(CODE_BAD_ENV, e.to_string()))?;
    Ok(ifname)
}

pub fn add(env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let container_id = env.require("CNI_CONTAINERID", &env.container_id)?;
    let netns_path = env.require("CNI_NETNS", &env.netns)?;
    let ifname = ifname_of(env)?;
    let mut ctx = context(conf);
    if ctx.kernel.netns_inode(Path::new(netns_path)).is_none() {
        return Err(CniError::new(
            CODE_BAD_ENV,
            format!("CNI_NETNS {netns_path:?} is not a network namespace"),
        ));
    }
    let args = env.cni_args()?;
    let (known, existing) = lookup(&ctx, &conf.name, container_id, ifname)?;
    let network = match known {
        Some(n) => {
            check_agrees(conf, &n)?;
            n
        }
        None => ensure_network(&mut ctx, conf)?,
    };
    if let Some(e) = existing {
        return Err(CniError::new(
            CODE_EXISTS,
            format!(
                "container {container_id} already has {ifname} on network {:?} ({})",
                e.network, e.ip
            ),
        ));
    }
    let opts = ConnectOptions {
        network: network.name.clone(),
        target: netns_path.to_string(),
        name: Some(endpoint_name(container_id, ifname)),
        ip: conf.ips.first().cloned().or(args.ip),
        mac: conf.mac.clone().or(args.mac),
        ifname: Some(ifname.to_string()),
        ports: conf.port_mappings.iter().filter_map(|m| m.spec()).collect(),
        attachment: Some(Attachment {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            owner: "cni".into(),
        }),
        // Runtimes hold the host ports they publish themselves (Podman's
        // conmon keeps them open), as portmap expects: that holder is the
        // container's own.
        force_publish: true,
        // `ps` and `network ls` show CNI's endpoints as such.
        mark: Some(EndpointMark {
            owner: Some("cni".into()),
            container_id: Some(container_id.to_string()),
        }),
        ..Default::default()
    };
    let (e, n) = endpoint::connect(&mut ctx, &opts)?.applied();
    let host_mac = ctx
        .kernel
        .link_mac(&e.host_ifname)
        .ok()
        .flatten()
        .map(|m| m.to_string())
        .unwrap_or_default();
    Ok(result::encode(
        &conf.version,
        &n,
        &e,
        netns_path,
        &host_mac,
        conf.dns.as_ref(),
    ))
}

pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let container_id = env.require("CNI_CONTAINERID", &env.container_id)?;
    let ifname = ifname_of(env)?;
    let mut ctx = context(conf);
    let Some(e) = find_attachment(&ctx, container_id, ifname)? else {
        return Ok(());
    };
    // Whatever is left goes: the veth if the namespace still holds it, the
    // map elements, the lease and the rows.
    endpoint::disconnect(&mut ctx, &e.network, &e.netns, true)?;
    Ok(())
}

pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let container_id = env.require("CNI_CONTAINERID", &env.container_id)?;
    let netns_path = env.require("CNI_NETNS", &env.netns)?;
    let ifname = ifname_of(env)?;
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            CODE_BAD_CONFIG,
            "CHECK needs prevResult in the network configuration",
        ));
    };
    let mut ctx = context(conf);
    let Some(e) = find_attachment(&ctx, container_id, ifname)? else {
        return Err(CniError::new(
            CODE_UNKNOWN_CONTAINER,
            format!(
                "container {container_id} has no attachment {ifname} on network {:?}",
                conf.name
            ),
        ));
    };
    let fail = |what: String| Err(CniError::new(CODE_CHECK_FAILED, what));
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let n = tx.require_network(&e.network)?;
    let ports = tx.ports_of(e.id)?;
    drop(tx);
    let address = format!("{}/{}", e.ip, n.subnet.prefix_len());

    // prevResult against the state.
    let prev_ips: Vec<&str> = prev["ips"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["address"].as_str()).collect())
        .unwrap_or_default();
    if !prev_ips.contains(&address.as_str()) {
        return fail(format!("prevResult has no address {address}"));
    }
    let prev_ifs: Vec<&str> = prev["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default();
    if !prev_ifs.contains(&ifname) {
        return fail(format!("prevResult has no interface {ifname}"));
    }

    // The host side: the veth exists, up, on the bridge.
    let host = ctx.kernel.netns_facts(None).map_err(CniError::from_berth)?;
    let bridge = host.link(&n.bridge).map(|b| b.index);
    match host.link(&e.host_ifname) {
        None => return fail(format!("host veth {} is missing", e.host_ifname)),
        Some(l) if l.master.is_none() || l.master != bridge => {
            return fail(format!(
                "host veth {} is not on bridge {}",
                e.host_ifname, n.bridge
            ))
        }
        Some(l) if !l.up => return fail(format!("host veth {} is down", e.host_ifname)),
        Some(_) => {}
    }

    // The container side: device, MAC, address, route.
    let inside = ctx
        .kernel
        .netns_facts(Some(Path::new(netns_path)))
        .map_err(CniError::from_berth)?;
    let Some(link) = inside.link(ifname) else {
        return fail(format!("{ifname} is missing in {netns_path}"));
    };
    if link.mac != Some(e.mac) {
        return fail(format!(
            "{ifname} has MAC {} instead of {}",
            link.mac.map(|m| m.to_string()).unwrap_or_default(),
            e.mac
        ));
    }
    if !inside.has_address(link.index, e.ip, n.subnet.prefix_len()) {
        return fail(format!("{ifname} lacks address {address}"));
    }
    if e.default_route && !inside.default_gateways.contains(&n.gateway) {
        return fail(format!("the default route via {} is missing", n.gateway));
    }

    // Published ports: what the runtime asks for is what berth publishes.
    let mut want: Vec<String> = conf.port_mappings.iter().filter_map(|m| m.spec()).collect();
    let mut have: Vec<String> = ports
        .iter()
        .map(|p| {
            let ip = if p.is_any_address() {
                String::new()
            } else {
                format!("{}:", p.host_ip)
            };
            format!("{ip}{}:{}/{}", p.host_port, p.container_port, p.proto)
        })
        .collect();
    want.sort();
    have.sort();
    if want != have {
        return fail(format!(
            "published ports differ: asked [{}], published [{}]",
            want.join(", "),
            have.join(", ")
        ));
    }
    if let Some(missing) = missing_map_elements(&mut ctx, e.ip, &ports)? {
        return fail(missing);
    }
    Ok(())
}

/// Whether the kernel's published-port maps hold every element of the
/// endpoint's ports: a description of the first one missing, or None.
fn missing_map_elements(
    ctx: &mut Context,
    ip: std::net::Ipv4Addr,
    ports: &[crate::model::PortMapping],
) -> Result<Option<String>, CniError> {
    use crate::firewall::ports;
    if ports.is_empty() {
        return Ok(None);
    }
    let want = ports::elements(ip, ports);
    for (map, elements) in [
        (ports::published(), want.published),
        (ports::published_any(), want.any),
        (ports::published_ranges(), want.ranges),
    ] {
        if elements.is_empty() {
            continue;
        }
        let listed = ctx
            .kernel
            .nft_list_elements(&firewall::table(), &map.name)?;
        if let Some(e) = elements.iter().find(|e| !listed.contains(e)) {
            return Ok(Some(format!(
                "map {} lacks the element {:?} for {ip}",
                map.name, e.key
            )));
        }
    }
    Ok(None)
}

/// STATUS: berth can serve ADDs when its state opens and, once it has a
/// network, its firewall table exists.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let mut ctx = context(conf);
    let unavailable = |why: String| CniError::new(CODE_UNAVAILABLE, why);
    let Some(mut store) = ctx
        .store_read_only()
        .map_err(|e| unavailable(format!("berth's state cannot be read: {e}")))?
    else {
        return Ok(());
    };
    let networks = store
        .read()
        .and_then(|tx| tx.networks())
        .map_err(|e| unavailable(format!("berth's state cannot be read: {e}")))?;
    drop(store);
    if networks.is_empty() {
        return Ok(());
    }
    match ctx.kernel.nft_table_exists(&firewall::table()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(unavailable(
            "berth's firewall table is missing (run `berth up`)".into(),
        )),
        Err(e) => Err(unavailable(format!("cannot read the firewall: {e}"))),
    }
}
