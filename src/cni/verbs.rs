//! ADD, DEL, CHECK, STATUS and VERSION. Each verb is a thin translation
//! into typed requests: ADD is one transaction that makes the network on
//! first use and attaches the endpoint (target = `CNI_NETNS`, interface =
//! `CNI_IFNAME`) with the attachment recorded in its intent; DEL detaches
//! the endpoint the attachment names, and succeeds when there is nothing
//! left to remove.

use std::path::Path;

use serde_json::{json, Value};

use super::config::{self, Env, NetConf, SUPPORTED_VERSIONS};
use super::error::*;
use super::result;
use crate::commands::{Attach, Detach, EnsureNetwork};
use crate::context::Context;
use crate::error::Error;
use crate::executor::{transaction, Preflight};
use crate::firewall;
use crate::model::{names, Endpoint, Families, Family, Network};
use crate::request::{AttachRequest, Attachment, DetachRequest, EndpointMark, EndpointRef};

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

/// The endpoint name of an attachment, a different one for every valid
/// (container ID, interface name) pair, also under the case folding that
/// DNS names get.
///
/// `cni-ID-IFNAME` when that fits in a name and reads back unambiguously
/// (ID in lower case, IFNAME in lower case without '-': the last '-'
/// separates them). Otherwise (runtimes' 64-hex-digit IDs, capitals, an
/// interface name with '-' or characters a name cannot hold)
/// `cni-ID12-IFNAME-HASH`, the first 12 characters of the ID, the
/// interface name cleaned, and 16 hex digits of a hash of the exact pair.
/// The two shapes never meet: a readable name ends in an interface name of
/// at most 15 characters, a hashed one in 16 hex digits.
pub fn endpoint_name(container_id: &str, ifname: &str) -> String {
    let lower_name = |s: &str, dash: bool| {
        s.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'_'
                || b == b'.'
                || (dash && b == b'-')
        })
    };
    let readable = format!("cni-{container_id}-{ifname}");
    if readable.len() <= names::NAME_MAX
        && !container_id.is_empty()
        && lower_name(container_id, true)
        && lower_name(ifname, false)
    {
        return readable;
    }
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
    let mut key = container_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(ifname.as_bytes());
    format!(
        "cni-{}-{}-{:016x}",
        clean(container_id, 12),
        clean(ifname, names::IFNAME_MAX),
        names::fnv1a(&key)
    )
}

/// The spec's rule for `CNI_CONTAINERID`: letters, digits, '-', '_' and
/// '.', nothing else (a '/' or a newline would reach file names, logs and
/// messages). Code 4, as for any invalid variable.
pub fn check_container_id(id: &str) -> Result<(), CniError> {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Ok(());
    }
    Err(CniError::new(
        CODE_BAD_ENV,
        format!(
            "invalid CNI_CONTAINERID {id:?}: a container ID has only letters, digits, '-', '_' and '.'"
        ),
    ))
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

/// ADD: the network (made on first use, from the config) and the
/// endpoint, in one transaction.
pub fn add(ctx: &mut Context, env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let container_id = env.require("CNI_CONTAINERID", &env.container_id)?;
    check_container_id(container_id)?;
    let netns_path = env.require("CNI_NETNS", &env.netns)?;
    let ifname = ifname_of(env)?;
    if ctx.kernel.netns_inode(Path::new(netns_path)).is_none() {
        return Err(CniError::new(
            CODE_BAD_ENV,
            format!("CNI_NETNS {netns_path:?} is not a network namespace"),
        ));
    }
    let args = env.cni_args()?;
    if let Some(e) = find_attachment(ctx, container_id, ifname)? {
        return Err(CniError::new(
            CODE_EXISTS,
            format!(
                "container {container_id} already has {ifname} on network {:?} ({})",
                e.network,
                e.ips_text()
            ),
        ));
    }
    let name = endpoint_name(container_id, ifname);
    name_free(ctx, conf, container_id, ifname, &name)?;
    // A runtime that passes aliases (Podman's CNI backend) names the
    // container as the dnsname plugin reads it: K8S_POD_NAME, then the
    // aliases (Podman's carry the short container id).
    let wanted: Vec<String> = match &conf.aliases {
        Some(aliases) => args.pod_name.iter().chain(aliases).cloned().collect(),
        None => Vec::new(),
    };
    let attach = AttachRequest {
        network: conf.name.clone(),
        target: netns_path.to_string(),
        name: Some(name),
        // The capability's addresses, else CNI_ARGS' (one per family each).
        ips: if conf.ips.is_empty() {
            args.ips.clone()
        } else {
            conf.ips.clone()
        },
        mac: conf.mac.or(args.mac),
        ifname: Some(ifname.to_string()),
        // Decided in the transaction, against the network's families.
        ports: Vec::new(),
        bandwidth: conf.bandwidth,
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
        allow_spoofing: conf.allow_spoofing,
        ..Default::default()
    };
    // The first ADD of a state directory is planned before anything is
    // written: an ADD berth refuses must leave no state directory behind
    // (a runtime may name one per network, and would collect them). The
    // plan takes no lock, so a concurrent first ADD may have made the
    // bridge it then finds in its way: once the directory exists (it is
    // made before anything else), the transaction's own verdict counts.
    if !ctx.dry_run && !ctx.state_dir.exists() {
        ctx.dry_run = true;
        let planned = add_transaction(ctx, conf, attach.clone(), &wanted);
        ctx.dry_run = false;
        if let Err(e) = planned {
            if !ctx.state_dir.exists() {
                return Err(e);
            }
        }
    }
    let (e, n) = add_transaction(ctx, conf, attach, &wanted)?.applied()?;
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

/// The families `n` has a subnet of.
fn network_families(n: &Network) -> Families {
    n.subnets
        .iter()
        .fold(Families::NONE, |f, s| f.with(Family::of_net(&s.net)))
}

/// ADD's one transaction: the network (made on first use) and the
/// endpoint, with those of the `wanted` names that are DNS names and that
/// no other endpoint of the network answers to (decided under the state
/// lock, so two ADDs cannot both take one; a name left out does not fail
/// the container, as a clash in a runtime's names is not its fault).
fn add_transaction(
    ctx: &mut Context,
    conf: &NetConf,
    mut attach: AttachRequest,
    wanted: &[String],
) -> Result<crate::change::Outcome<(Endpoint, Network)>, CniError> {
    let agrees_conf = conf.clone();
    let network = EnsureNetwork::new(
        conf.network_request(),
        Box::new(move |n, _| check_agrees(&agrees_conf, n).map_err(|e| Error::invalid(e.msg))),
    );
    let mut network_made = false;
    let done = transaction(ctx, Preflight::Run, |txn| {
        txn.apply(network)?;
        network_made = true;
        // A mapping answers in the families the network has (it may have
        // been made by another config naming none).
        let families = txn
            .read(|tx| tx.network(&conf.name))?
            .map(|n| network_families(&n))
            .unwrap_or_else(|| conf.families());
        attach.ports = conf.port_specs(families);
        if !wanted.is_empty() {
            let own = attach.name.clone().unwrap_or_default();
            attach.aliases = txn.read(|tx| free_names(tx, &conf.name, &own, wanted))?;
        }
        txn.apply(Attach(attach))
    });
    done.map_err(|e| match e {
        // A network that cannot be made is the configuration's fault.
        Error::Invalid(m) if !network_made => CniError::new(CODE_BAD_CONFIG, m),
        e => CniError::from_berth(e),
    })
}

/// The names of `wanted`, in order, that may be aliases of endpoint `own`
/// on `network`: DNS names, none twice, and none another endpoint holds.
fn free_names(
    tx: &crate::store::Tx,
    network: &str,
    own: &str,
    wanted: &[String],
) -> crate::error::Result<Vec<String>> {
    let id = tx.network(network)?.map(|n| n.id);
    let mut names: Vec<String> = Vec::new();
    for w in wanted {
        let mut with = names.clone();
        with.push(w.clone());
        if crate::dns::check_aliases(own, &with).is_err() {
            continue;
        }
        if let Some(id) = id {
            if tx.dns_name_holder(id, w)?.is_some() {
                continue;
            }
        }
        names = with;
    }
    Ok(names)
}

/// Refuses, in words a runtime's operator can act on, an ADD whose
/// endpoint name another endpoint of the network already has (one made
/// with `berth connect --name`, since names of attachments differ for
/// every valid pair): connect's own message would advise `--name`, which
/// a runtime cannot give.
fn name_free(
    ctx: &mut Context,
    conf: &NetConf,
    container_id: &str,
    ifname: &str,
    name: &str,
) -> Result<(), CniError> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(());
    };
    let tx = store.read()?;
    let Some(network) = tx.network(&conf.name)? else {
        return Ok(());
    };
    let Some(holder) = tx.endpoint_by_name(network.id, name)? else {
        return Ok(());
    };
    drop(tx);
    // A holder whose namespace is gone is cleared by the ADD itself.
    if !ctx.kernel.link_exists(&holder.host_ifname)? {
        return Ok(());
    }
    Err(CniError::new(
        CODE_REFUSED,
        format!(
            "the endpoint name {name:?} of container {container_id} interface {ifname} is taken on network {:?} by an endpoint in {} that is no attachment of this container; remove it (berth disconnect {} {name}) and retry",
            network.name, holder.netns, network.name
        ),
    ))
}

/// DEL: whatever is left of the attachment goes (the veth if the
/// namespace still holds it, the map elements, the lease and the rows);
/// nothing left is success.
pub fn del(ctx: &mut Context, env: &Env) -> Result<(), CniError> {
    let container_id = env.require("CNI_CONTAINERID", &env.container_id)?;
    let ifname = ifname_of(env)?;
    let Some(e) = find_attachment(ctx, container_id, ifname)? else {
        return Ok(());
    };
    let mut detach = DetachRequest::new(&e.network, EndpointRef::Id(e.id));
    detach.force = true;
    let done = transaction(ctx, Preflight::Run, |txn| txn.apply(Detach(detach)));
    done?;
    Ok(())
}

pub fn check(ctx: &mut Context, env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let container_id = env.require("CNI_CONTAINERID", &env.container_id)?;
    check_container_id(container_id)?;
    let netns_path = env.require("CNI_NETNS", &env.netns)?;
    let ifname = ifname_of(env)?;
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            CODE_BAD_CONFIG,
            "CHECK needs prevResult in the network configuration",
        ));
    };
    let Some(e) = find_attachment(ctx, container_id, ifname)? else {
        return Err(CniError::new(
            CODE_UNKNOWN_CONTAINER,
            format!(
                "container {container_id} has no attachment {ifname} on network {:?}",
                conf.name
            ),
        ));
    };
    let fail = |what: String| Err(CniError::new(CODE_CHECK_FAILED, what));
    let Some(mut store) = ctx.store_read_only()? else {
        return Err(CniError::new(CODE_UNKNOWN_CONTAINER, "berth has no state"));
    };
    let tx = store.read()?;
    let n = tx.require_network(&e.network)?;
    let ports = tx.ports_of(e.id)?;
    drop(tx);
    // Every address of the endpoint (one per family the network has),
    // with its subnet's prefix length.
    let addresses: Vec<(std::net::IpAddr, u8)> = e
        .ips
        .iter()
        .filter_map(|ip| Some((*ip, n.subnet_holding(*ip)?.net.prefix_len())))
        .collect();
    if addresses.is_empty() || addresses.len() != n.subnets.len() {
        return fail(format!(
            "{} has addresses [{}] on network {:?} of subnets [{}]",
            e.name,
            e.ips_text(),
            n.name,
            n.subnets_text()
        ));
    }

    // prevResult against the state.
    let prev_ips: Vec<&str> = prev["ips"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["address"].as_str()).collect())
        .unwrap_or_default();
    for (ip, len) in &addresses {
        let address = format!("{ip}/{len}");
        if !prev_ips.contains(&address.as_str()) {
            return fail(format!("prevResult has no address {address}"));
        }
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
    // (A macvlan/ipvlan child has no host side.)
    match host.link(&e.host_ifname) {
        None if !e.has_veth() => {}
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
    // Bandwidth: what the runtime asks for is what berth recorded, and
    // what the container sends has its ifb.
    if conf.bandwidth != e.bandwidth {
        return fail(format!(
            "bandwidth differs: asked [{}], limited [{}]",
            conf.bandwidth.summary(),
            e.bandwidth.summary()
        ));
    }
    let ifb = names::ifb_name(&e.host_ifname);
    if e.bandwidth.outbound.is_some() && host.link(&ifb).is_none() {
        return fail(format!(
            "ifb {ifb} of host veth {} is missing",
            e.host_ifname
        ));
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
    for (ip, len) in &addresses {
        if !inside.holds_address(link.index, *ip, *len) {
            return fail(format!("{ifname} lacks address {ip}/{len}"));
        }
    }
    for gateway in n.gateways() {
        if !e.default_route.has(Family::of(gateway)) {
            continue;
        }
        let present = match gateway {
            std::net::IpAddr::V4(g) => inside.default_gateways.contains(&g),
            std::net::IpAddr::V6(g) => inside.default_gateways6.contains(&g),
        };
        if !present {
            return fail(format!("the default route via {gateway} is missing"));
        }
    }

    // Published ports: what the runtime asks for is what berth publishes.
    let key = |m: &crate::model::PortMapping| {
        (m.host_ip, m.host_port, m.container_port, m.count, m.proto)
    };
    let mut want: Vec<_> = conf
        .port_specs(network_families(&n))
        .iter()
        .map(|p| p.with_host_port(0))
        .collect();
    let mut have = ports.clone();
    want.sort_by_key(key);
    have.sort_by_key(key);
    if want != have {
        let list = |ms: &[crate::model::PortMapping]| {
            ms.iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return fail(format!(
            "published ports differ: asked [{}], published [{}]",
            list(&want),
            list(&have)
        ));
    }
    for (ip, _) in &addresses {
        if let Some(missing) = missing_map_elements(ctx, *ip, &ports)? {
            return fail(missing);
        }
    }
    Ok(())
}

/// Whether the kernel's published-port maps of `ip`'s family hold every
/// element of the endpoint's ports that goes to `ip`: a description of
/// the first one missing, or None.
fn missing_map_elements(
    ctx: &mut Context,
    ip: std::net::IpAddr,
    ports: &[crate::model::PortMapping],
) -> Result<Option<String>, CniError> {
    use crate::firewall::ports;
    if ports.is_empty() {
        return Ok(None);
    }
    let family = Family::of(ip);
    let want = ports::elements(ip, ports);
    for (map, elements) in [
        (ports::published_of(family), want.published),
        (ports::published_any_of(family), want.any),
        (ports::published_ranges_of(family), want.ranges),
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
pub fn status(ctx: &mut Context) -> Result<(), CniError> {
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
    for (table, what) in [
        (firewall::table(), "firewall table"),
        (firewall::guard::table(), "anti-spoofing table"),
    ] {
        match ctx.kernel.nft_table_exists(&table) {
            Ok(true) => {}
            Ok(false) => {
                return Err(unavailable(format!(
                    "berth's {what} is missing (run `berth up`)"
                )))
            }
            Err(e) => return Err(unavailable(format!("cannot read the firewall: {e}"))),
        }
    }
    Ok(())
}
