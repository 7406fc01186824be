//! Endpoints: attaching namespaces to networks. The changes `connect` and
//! `disconnect` make (each a [`Change`] the executor runs), and the
//! read-only listing.
//!
//! A connect is O(1) in the number of endpoints: a handful of indexed state
//! lookups, one veth request, and one short visit inside the namespace.

use std::path::Path;
use std::rc::Rc;

use crate::change::{compensation, Change, Intent, Planned, Prepared, Row, Settle};
use crate::context::{Context, DnsScope};
use crate::error::{Error, Result};
use crate::kernel::netns::Target;
use crate::model::ports::{AUTO_PORT_FIRST, AUTO_PORT_LAST};
use std::net::IpAddr;

use crate::model::{
    ipam, names, subnet, Driver, Endpoint, Family, Mac, Network, PortMapping, PortSpec, Proto,
};
use crate::reconcile::decide::{
    child_disconnect_plan, connect_bandwidth, connect_plan, disconnect_plan,
};
use crate::request::{AttachRequest, DetachRequest, EndpointRef};
use crate::store::{Status, Tx};

/// `connect`: a veth from the network's bridge into the namespace, with
/// an address, a default route when the namespace has none, and the
/// published ports. Its output is the endpoint and its network.
pub struct Attach(pub AttachRequest);

impl Change for Attach {
    type Output = (Endpoint, Network);

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<(Endpoint, Network)>> {
        let req = &self.0;
        let target = match ctx.kernel.resolve_target(&req.target) {
            Ok(t) => t,
            // A dry run of `run`: the namespace is the sandbox this
            // transaction plans to make (recorded in the private copy).
            Err(e) if ctx.dry_run => planned_sandbox(ctx, tx, &req.target)?.ok_or(e)?,
            Err(e) => return Err(e),
        };
        if !req.allow_host_netns && target.inode == ctx.kernel.own_netns_inode() {
            return Err(Error::invalid(format!(
                "target {:?} is the host's own network namespace; connecting it would change the host's addresses and routes (use --allow-host-netns if that is what you want)",
                req.target
            )));
        }
        let name = match &req.name {
            Some(n) => n.clone(),
            None => default_endpoint_name(&target),
        };
        names::check_name("endpoint", &name)?;
        if let Some(ifname) = &req.ifname {
            names::check_ifname("interface name", ifname)?;
            if target.inode.is_some_and(|_| {
                ctx.kernel
                    .link_exists_in(&target.path, ifname)
                    .unwrap_or(false)
            }) {
                return Err(Error::invalid(format!(
                    "namespace {} already has an interface named {ifname:?}; choose another --ifname",
                    req.target
                )));
            }
        }
        crate::dns::check_aliases(&name, &req.aliases)?; // DNS
        let specs = &req.ports;

        let network = tx.require_network(&req.network)?;
        if !network.is_bridge() {
            check_child_request(&network, req)?;
        }
        check_requested_ips(&network, &req.ips)?;
        check_port_families(&network, specs)?;
        let inode = target.inode.expect("resolved targets exist");
        let host_ifname = if network.is_bridge() {
            names::host_veth_name(&network.name, &name)
        } else {
            names::child_name(&network.name, &name)
        };
        let near = tx.endpoints_near(inode, &target.key, network.id, &name, &host_ifname)?;
        if needs_repair(ctx, tx, &network, &near, &req.ips, specs)? {
            return Ok(Prepared::Repair);
        }
        let on_network = |e: &&Endpoint| e.network == network.name;
        // By its spelling first, then the same namespace named another way.
        let connected = (near
            .iter()
            .filter(on_network)
            .find(|e| e.netns == target.key))
        .or_else(|| {
            near.iter()
                .filter(on_network)
                .find(|e| e.netns_inode == inode)
        });
        if let Some(existing) = connected {
            return Err(Error::invalid(format!(
                "{} is already connected to network {:?} as {:?} ({})",
                req.target,
                network.name,
                existing.name,
                existing.ips_text()
            )));
        }
        if near.iter().filter(on_network).any(|e| e.name == name) {
            return Err(Error::invalid(format!(
                "network {:?} already has an endpoint named {name:?}; choose another with --name",
                network.name
            )));
        }
        if let Some(holder) = near.iter().find(|e| e.host_ifname == host_ifname) {
            return Err(Error::Other(format!(
                "host interface name {host_ifname} of {}/{name} collides with endpoint {}/{}; choose another --name",
                network.name, holder.network, holder.name
            )));
        }
        if let Some(mac) = req.mac {
            check_mac_free(tx, &network, mac)?;
        }
        crate::dns::check_names_free(tx, &network, &name, &req.aliases)?; // DNS
                                                                          // The namespace's endpoints on every network.
        let siblings: Vec<Endpoint> = near
            .into_iter()
            .filter(|e| e.netns_inode == inode)
            .collect();
        let mut ips = Vec::new();
        for s in &network.subnets {
            let asked = req.ips.iter().copied().find(|ip| s.net.contains(ip));
            ips.push(lease(tx, &network, s, asked)?);
        }
        let ifname = match &req.ifname {
            Some(i) => i.clone(),
            None => names::free_ifname(siblings.iter().map(|e| e.ifname.as_str())),
        };
        // An internal network gives no default route: nothing leaves it
        // anyway, and a later connect to another network can give one.
        // With a metric the endpoint has a route of its own beside the
        // namespace's others (netavark's way: one per network); without,
        // the namespace has one, from its first network.
        // Per family: the namespace's plain default route of a family
        // comes from its first endpoint with an address of it.
        let mut default_route = crate::model::Families::NONE;
        if !network.policy.internal {
            for s in &network.subnets {
                if s.gateway.is_some()
                    && (req.metric.is_some() || !has_default_route(&siblings, s.family()))
                {
                    default_route = default_route.with(s.family());
                }
            }
        }
        if network.policy.internal && !specs.is_empty() {
            return Err(Error::invalid(format!(
                "cannot publish ports on network {:?}: it is --internal, so nothing from outside can reach it",
                network.name
            )));
        }
        let (ports, warnings) = resolve_ports(ctx, tx, specs, req.force_publish)?;
        let mut endpoint = Endpoint {
            id: 0,
            network: network.name.clone(),
            name,
            netns: target.key.clone(),
            netns_inode: inode,
            mac: match (req.mac, &network.driver) {
                // An ipvlan child has its parent's MAC.
                (_, Driver::Ipvlan { parent, .. }) => ctx
                    .kernel
                    .link_mac(parent)?
                    .ok_or_else(|| no_parent(&network))?,
                (Some(mac), _) => mac,
                (None, _) => derived_mac(tx, &network, ips.first().copied())?,
            },
            ips,
            ifname,
            host_ifname,
            default_route,
            metric: req.metric,
            ports,
            bandwidth: req.bandwidth,
            allow_spoofing: req.allow_spoofing,
        };

        let leftover = ctx.kernel.link_group(&endpoint.host_ifname)?;
        let mut plan = connect_plan(
            &network,
            &endpoint,
            target.path.clone(),
            leftover,
            &siblings,
        )?;
        if !endpoint.bandwidth.is_unlimited() {
            check_bandwidth(&endpoint.bandwidth)?;
            let leftover_ifb = match endpoint.bandwidth.outbound {
                Some(_) => ctx
                    .kernel
                    .link_group(&names::ifb_name(&endpoint.host_ifname))?,
                None => None,
            };
            connect_bandwidth(&network, &endpoint, leftover_ifb, &mut plan)?;
        }
        // The intent: the lease, the port claims and the row, so that the
        // row holds the address until the next command undoes a crash.
        let id = tx.insert_endpoint_with_ports(&network, &endpoint)?;
        if let Some(mark) = &req.mark {
            tx.mark_endpoint(id, mark)?;
        }
        tx.insert_dns_names(network.id, id, &endpoint.name, &req.aliases)?; // DNS
        if let Some(a) = &req.attachment {
            tx.insert_attachment(id, a)?;
        }
        endpoint.id = id;
        let mut detach = DetachRequest::new(&network.name, EndpointRef::Id(id));
        detach.force = true;
        // The background server also forwards [::1] to the container.
        let dns = (network.policy.dns || forwarded_from_loopback(&endpoint))
            .then_some(DnsScope::Netns(inode));
        let mut planned = Planned::new(
            plan,
            Intent::rows(vec![Row::NewEndpoint(id)]),
            (endpoint, network),
        );
        planned.dns = dns;
        planned.warnings = warnings;
        planned.undo = Some(compensation(Detach(detach)));
        Ok(Prepared::Change(planned))
    }
}

/// What a macvlan/ipvlan network does not offer, refused with the
/// network named: published ports (nothing of the host's stands between
/// the LAN and the child to forward them), rate limits (no host side to
/// shape), and for ipvlan a MAC of its own.
fn check_child_request(network: &Network, req: &AttachRequest) -> Result<()> {
    let driver = network.driver.name();
    if !req.ports.is_empty() {
        return Err(Error::invalid(format!(
            "cannot publish ports on network {:?}: it is a {driver} network, whose containers are reached on the parent's LAN at their own addresses (berth forwards no ports to them)",
            network.name
        )));
    }
    if !req.bandwidth.is_unlimited() {
        return Err(Error::invalid(format!(
            "cannot limit bandwidth on network {:?}: it is a {driver} network, with no host side to shape",
            network.name
        )));
    }
    if req.mac.is_some() && matches!(network.driver, Driver::Ipvlan { .. }) {
        return Err(Error::invalid(format!(
            "cannot give a MAC address on network {:?}: an ipvlan interface has its parent's",
            network.name
        )));
    }
    Ok(())
}

fn no_parent(network: &Network) -> Error {
    Error::invalid(format!(
        "parent interface {:?} of network {:?} does not exist on the host",
        network.driver.parent().unwrap_or_default(),
        network.name
    ))
}

/// Checks the limits a front door built (the CLI's parser and the CNI
/// reader check their spelling; this checks the values).
fn check_bandwidth(b: &crate::model::Bandwidth) -> Result<()> {
    for (what, limit) in [("inbound limit", b.inbound), ("outbound limit", b.outbound)] {
        if let Some(l) = limit {
            l.check(what).map_err(Error::Invalid)?;
        }
    }
    Ok(())
}

/// Refuses a MAC asked for that another endpoint of the network or the
/// network's bridge already has: two ports with one MAC on a bridge break
/// each other's traffic silently (the bridge learns the MAC on whichever
/// sent last).
fn check_mac_free(tx: &Tx, network: &Network, mac: Mac) -> Result<()> {
    if mac == network.bridge_mac() {
        return Err(Error::invalid(format!(
            "MAC address {mac} is the MAC of bridge {} of network {:?}; choose another --mac",
            network.bridge, network.name
        )));
    }
    if let Some(holder) = tx.mac_holder(network.id, &mac.to_string())? {
        return Err(Error::invalid(format!(
            "MAC address {mac} is already used by endpoint {holder:?} of network {:?}",
            network.name
        )));
    }
    Ok(())
}

/// The MAC of an endpoint at `ip` that asked for none: `02:42:` and the
/// address, unless an endpoint that asked for that very MAC holds it, in
/// which case the next candidate no one holds (one indexed lookup each;
/// the first is free unless someone chose a MAC that looks derived).
fn derived_mac(tx: &Tx, network: &Network, ip: Option<IpAddr>) -> Result<Mac> {
    // Without an address (a network without subnets) the MAC comes from
    // the endpoint count's successor: stable for the row, unique on the
    // bridge after the lookups below.
    let ip = match ip {
        Some(ip) => ip,
        None => IpAddr::V4(std::net::Ipv4Addr::from(
            0x0a00_0000 | ((tx.endpoint_count(network.id)? as u32 + 1) & 0x00ff_ffff),
        )),
    };
    for mac in Mac::derived_candidates(ip) {
        if mac != network.bridge_mac() && tx.mac_holder(network.id, &mac.to_string())?.is_none() {
            return Ok(mac);
        }
    }
    Err(Error::invalid(format!(
        "every MAC berth derives for {ip} is held by another endpoint of network {:?}; give one with --mac",
        network.name
    )))
}

/// Refuses a mapping bound to an address of a family the network has no
/// subnet of (nothing there to translate it to), naming the mapping. A
/// mapping on 0.0.0.0 answers in whichever families the network has.
fn check_port_families(network: &Network, specs: &[PortSpec]) -> Result<()> {
    for spec in specs {
        let m = spec.with_host_port(spec.host_port.unwrap_or(0));
        let answers = [Family::V4, Family::V6]
            .into_iter()
            .any(|f| m.covers(f) && network.subnet_of(f).is_some());
        if !answers {
            let family = Family::of(spec.host_ip);
            return Err(Error::invalid(format!(
                "cannot publish on {}: network {:?} has no {} subnet",
                m.host_ip_text(),
                network.name,
                family.name()
            )));
        }
    }
    Ok(())
}

/// Refuses an address asked for that the network has no subnet of its
/// family for, or two of one family, naming the value.
fn check_requested_ips(network: &Network, ips: &[IpAddr]) -> Result<()> {
    for (i, ip) in ips.iter().enumerate() {
        let family = Family::of(*ip);
        if ips[..i].iter().any(|o| Family::of(*o) == family) {
            return Err(Error::invalid(format!(
                "address {ip}: only one {} address per endpoint",
                family.name()
            )));
        }
        match network.subnet_of(family) {
            None => {
                return Err(Error::invalid(format!(
                    "address {ip}: network {:?} has no {} subnet",
                    network.name,
                    family.name()
                )))
            }
            Some(s) if !subnet::is_host(&s.net, *ip) => {
                return Err(Error::invalid(format!(
                    "address {ip} is not a host address of subnet {}",
                    s.net
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The namespace a dry run's earlier change planned to make for `text`,
/// with a placeholder inode of its own (its place among the sandboxes,
/// plus one: no network namespace has so small an inode, and two planned
/// sandboxes, as in `demo`, must not look like one namespace).
fn planned_sandbox(ctx: &mut Context, tx: &Tx, text: &str) -> Result<Option<Target>> {
    let Some(place) = tx.sandboxes()?.iter().position(|s| s.name == text) else {
        return Ok(None);
    };
    let mut target = ctx.kernel.parse_target(text)?;
    target.inode = Some(place as u64 + 1);
    Ok(Some(target))
}

/// Whether `name` is a network only a dry run's private copy of the state
/// has: one it plans to make.
fn planned_network(ctx: &Context, name: &str) -> Result<bool> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(true);
    };
    let tx = store.read()?;
    Ok(tx.network(name)?.is_none())
}

/// Whether the kernel lost something this connect stands on: the
/// network's bridge, or the namespace of a row the connect could clash
/// with (one naming the namespace of `target` by name or inode, one with
/// the endpoint's name, or one holding the requested address or host
/// ports) whose veth is gone. A veth dies with its namespace, so such a
/// row is dead: a reused inode must not be taken for it, and its name,
/// address and ports are free. A few indexed lookups and link lookups by
/// name, none of which grows with the number of endpoints.
fn needs_repair(
    ctx: &mut Context,
    tx: &Tx,
    network: &Network,
    near: &[Endpoint],
    ips: &[IpAddr],
    specs: &[PortSpec],
) -> Result<bool> {
    if let Some(parent) = network.driver.parent() {
        // The parent is the host's, not berth's to rebuild.
        if !ctx.kernel.link_exists(parent)? {
            return Err(no_parent(network));
        }
    }
    let mut veths: Vec<String> = near.iter().map(|e| e.host_ifname.clone()).collect();
    let given: Vec<PortMapping> = specs
        .iter()
        .filter(|s| s.host_port.is_some())
        .map(|s| s.with_host_port(0))
        .collect();
    veths.extend(tx.claim_holders(&given, network.id, ips)?);
    // The bridge and the host veths, by name in one pass: an ioctl each
    // (~1 µs) where a netlink GETLINK has the kernel build the link's
    // whole message (one was 3% of a CLI connect).
    let mut host_links: Vec<&str> = veths
        .iter()
        .map(String::as_str)
        .filter(|v| !names::is_child_name(v))
        .collect();
    let bridged = network.driver.parent().is_none();
    if bridged {
        host_links.insert(0, network.bridge.as_str());
    }
    let present = ctx.kernel.links_present(&host_links)?;
    if bridged && !present[0] {
        // A dry run may attach to a network an earlier change of it plans
        // to make (`run` on first use, `demo`): one the state lacks.
        return Ok(!(ctx.dry_run && planned_network(ctx, &network.name)?));
    }
    if present.iter().any(|p| !p) {
        return Ok(true);
    }
    for veth in veths.iter().filter(|v| names::is_child_name(v)) {
        // A macvlan/ipvlan child is inside its namespace: the row lives
        // while its namespace does.
        if let Some(e) = tx.endpoint_by_host_ifname(veth)? {
            let alive = ctx
                .kernel
                .parse_target(&e.netns)
                .ok()
                .is_some_and(|t| ctx.kernel.netns_inode(&t.path) == Some(e.netns_inode));
            if !alive {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether one of the namespace's endpoints (`siblings`) gave it its
/// default route of `family` without a metric (a route with a metric is
/// its endpoint's own).
fn has_default_route(siblings: &[Endpoint], family: Family) -> bool {
    siblings
        .iter()
        .any(|e| e.default_route.has(family) && e.metric.is_none())
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

/// The address of subnet `s` for a new endpoint: the requested one if it
/// is free, else the next free one.
fn lease(
    tx: &Tx,
    network: &Network,
    s: &crate::model::Subnet,
    requested: Option<IpAddr>,
) -> Result<IpAddr> {
    let subnet = s.net;
    if let Some(ip) = requested {
        if !subnet::is_host(&subnet, ip) {
            return Err(Error::invalid(format!(
                "address {ip} is not a host address of subnet {subnet}"
            )));
        }
        if Some(ip) == s.gateway {
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
    let last = tx.last_ip(network.id, s.family())?;
    let mut failure = None;
    let found = ipam::next_address(subnet, s.gateway, last, |ip| {
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
    Removed(Box<Endpoint>),
    NothingToDo,
}

/// `disconnect`: the endpoint's published ports go first (their removal
/// can be undone, the veth's cannot), then its veth, and the namespace's
/// default route moves to another of its networks when this one gave it.
pub struct Detach(pub DetachRequest);

impl Change for Detach {
    type Output = Disconnected;

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<Disconnected>> {
        let req = &self.0;
        let network = tx.require_network(&req.network)?;
        let found = match &req.endpoint {
            EndpointRef::Id(id) => tx.endpoint(*id)?.filter(|e| e.network == network.name),
            EndpointRef::Target(text) => {
                let target = ctx.kernel.parse_target(text)?;
                let by_netns = tx.find_endpoint(network.id, &target.key, target.inode)?;
                let by_name = tx.endpoint_by_name(network.id, text)?;
                match (by_netns, by_name) {
                    (Some(a), Some(b)) if a.id != b.id => {
                        return Err(ambiguous_target(text, &network, &target, &a, &b))
                    }
                    (Some(e), _) | (None, Some(e)) => Some(e),
                    (None, None) => None,
                }
            }
        };
        let Some(endpoint) = found else {
            if req.force {
                return Ok(Prepared::Unchanged(Disconnected::NothingToDo));
            }
            return Err(not_connected(tx, &network, &req.endpoint)?);
        };
        let ports = tx.ports_of(endpoint.id)?;
        // The namespace keeps a way out if another of its networks has one:
        // the default route goes with this veth.
        // (A route with a metric is the endpoint's own: it goes with it.)
        // Each family's route goes to its own heir.
        let mut heirs = Vec::new();
        if req.delete_veth && endpoint.metric.is_none() {
            for family in endpoint.default_route.iter() {
                let Some((other, gateway)) =
                    tx.default_route_heir(endpoint.netns_inode, endpoint.id, family)?
                else {
                    continue;
                };
                if !other.has_veth() || ctx.kernel.link_exists(&other.host_ifname)? {
                    let netns = ctx.kernel.parse_target(&other.netns)?.path;
                    heirs.push((other.id, family, netns, gateway));
                }
            }
        }
        let endpoint = Endpoint { ports, ..endpoint };
        let siblings = tx.endpoints_by_inode(endpoint.netns_inode)?;
        let heir_route = heirs.first().map(|(_, _, netns, _)| {
            (
                netns.clone(),
                heirs.iter().map(|(_, _, _, g)| *g).collect::<Vec<_>>(),
            )
        });
        // The endpoint's namespace, when it is still the recorded one (a
        // path may have been reused) and not going anyway: only there is
        // the veth's peer renamed, or a macvlan/ipvlan child deleted.
        let netns = req
            .delete_veth
            .then(|| ctx.kernel.parse_target(&endpoint.netns).ok())
            .flatten()
            .map(|t| t.path)
            .filter(|p| ctx.kernel.netns_inode(p) == Some(endpoint.netns_inode));
        let plan = if endpoint.has_veth() {
            disconnect_plan(&endpoint, req.delete_veth, netns, heir_route, &siblings)
        } else {
            child_disconnect_plan(&network, &endpoint, netns, heir_route)
        };
        // The intent: a crash from here on leaves a `removing` row, which
        // the next command finishes taking away.
        let intent = Intent {
            rows: vec![Row::GoingEndpoint(endpoint.id)],
            settle: heirs
                .iter()
                .map(|(id, family, _, _)| Settle::DefaultRoute(*id, *family))
                .collect(),
        };
        let dns = (network.policy.dns || forwarded_from_loopback(&endpoint))
            .then_some(DnsScope::Netns(endpoint.netns_inode));
        let mut planned = Planned::new(plan, intent, Disconnected::Removed(Box::new(endpoint)));
        planned.dns = dns;
        Ok(Prepared::Change(planned))
    }
}

/// The error for a TARGET that names one endpoint as a namespace and
/// another by its name: guessing would take the wrong one off the
/// network, so the user is told how to say each unambiguously (paths
/// never clash with names, which have no '/').
fn ambiguous_target(
    text: &str,
    network: &Network,
    target: &Target,
    in_netns: &Endpoint,
    named: &Endpoint,
) -> Error {
    let named_path = Target::locate(&named.netns)
        .map(|t| t.path.display().to_string())
        .unwrap_or_else(|_| named.netns.clone());
    Error::invalid(format!(
        "target {text:?} is ambiguous on network {:?}: namespace {text} holds endpoint {:?} ({}), and endpoint {:?} ({}) is in namespace {}; say {} for the first or {named_path} for the second",
        network.name,
        in_netns.name,
        in_netns.ips_text(),
        named.name,
        named.ips_text(),
        named.netns,
        target.path.display(),
    ))
}

/// The error for a detach that names nothing on the network, listing what
/// is there.
fn not_connected(tx: &Tx, network: &Network, endpoint: &EndpointRef) -> Result<Error> {
    let what = match endpoint {
        EndpointRef::Target(text) => format!("{text:?}"),
        EndpointRef::Id(id) => format!("endpoint #{id}"),
    };
    let names: Vec<String> = tx
        .endpoints(Some(network.id))?
        .iter()
        .map(|e| format!("{} ({})", e.name, e.netns))
        .collect();
    let existing = match names.len() {
        0 => "it has no endpoints".to_string(),
        n if n <= 10 => format!("its endpoints: {}", names.join(", ")),
        n => format!(
            "its endpoints: {}, and {} more",
            names[..10].join(", "),
            n - 10
        ),
    };
    Ok(Error::invalid(format!(
        "{what} is not connected to network {:?}: {existing} (use --force to ignore)",
        network.name
    )))
}

/// Detaches many endpoints of one network at once (a runtime's garbage
/// collection): every published port goes in one batch, and the veths
/// that still exist are deleted together, which waits for one RCU grace
/// period in all instead of one each (~20 ms; 20 s for 1000).
pub struct DetachAll {
    pub ids: Vec<i64>,
}

impl Change for DetachAll {
    type Output = Vec<Endpoint>;

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<Vec<Endpoint>>> {
        let mut endpoints = Vec::new();
        for id in &self.ids {
            if let Some(mut e) = tx.endpoint(*id)? {
                e.ports = tx.ports_of(e.id)?;
                endpoints.push(e);
            }
        }
        if endpoints.is_empty() {
            return Ok(Prepared::Unchanged(Vec::new()));
        }
        let mut plan = crate::plan::Plan::new();
        let published: Vec<(IpAddr, Vec<PortMapping>)> = endpoints
            .iter()
            .flat_map(|e| e.ips.iter().map(|ip| (*ip, e.ports.clone())))
            .collect();
        crate::reconcile::decide::withdraw_ports(&mut plan, &published);
        // Their ifbs (in the host) go in the same request.
        let ifbs = endpoints
            .iter()
            .filter(|e| e.bandwidth.outbound.is_some())
            .map(|e| names::ifb_name(&e.host_ifname));
        plan.push(crate::plan::Step::DeleteLinksTogether {
            names: endpoints
                .iter()
                .filter(|e| e.has_veth())
                .map(|e| e.host_ifname.clone())
                .chain(ifbs)
                .collect(),
        });
        // macvlan/ipvlan children, each in its namespace.
        for e in endpoints.iter().filter(|e| !e.has_veth()) {
            let network = tx.require_network(&e.network)?;
            let netns = ctx
                .kernel
                .parse_target(&e.netns)
                .ok()
                .map(|t| t.path)
                .filter(|p| ctx.kernel.netns_inode(p) == Some(e.netns_inode));
            plan.steps
                .extend(child_disconnect_plan(&network, e, netns, None).steps);
        }
        // Their anti-spoofing elements, once their ports are gone.
        let ids: std::collections::HashSet<i64> = endpoints.iter().map(|e| e.id).collect();
        let before = namespace_endpoints(tx, &endpoints)?;
        let guard = crate::firewall::guard::change(
            &before.iter().collect::<Vec<_>>(),
            &before
                .iter()
                .filter(|e| !ids.contains(&e.id))
                .collect::<Vec<_>>(),
        );
        if !guard.batch.is_empty() {
            plan.push(crate::plan::Step::Nft {
                batch: guard.batch,
                undo: guard.undo,
            });
        }
        let intent = Intent::rows(endpoints.iter().map(|e| Row::GoingEndpoint(e.id)).collect());
        let mut planned = Planned::new(plan, intent, endpoints);
        planned.dns = Some(DnsScope::All);
        Ok(Prepared::Change(planned))
    }
}

/// Every endpoint of the namespaces of `endpoints` (theirs included): what
/// the anti-spoofing elements of those namespaces depend on. One indexed
/// query per namespace.
pub fn namespace_endpoints(tx: &Tx, endpoints: &[Endpoint]) -> Result<Vec<Endpoint>> {
    let inodes: std::collections::BTreeSet<u64> = endpoints.iter().map(|e| e.netns_inode).collect();
    let mut out = Vec::new();
    for inode in inodes {
        out.extend(tx.endpoints_by_inode(inode)?);
    }
    Ok(out)
}

/// Every endpoint with its network and its liveness, as the kernel shows
/// it: `up`, `gone` (its veth, and so its namespace, no longer exists),
/// or `creating`/`removing` (a command is working on it, or died doing so).
pub fn list(ctx: &mut Context) -> Result<Vec<(Endpoint, Rc<Network>, &'static str)>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Vec::new());
    };
    let tx = store.read()?;
    // Shared, not copied into each of a thousand rows.
    let networks: Vec<Rc<Network>> = tx.networks()?.into_iter().map(Rc::new).collect();
    let (mut endpoints, rows): (Vec<Endpoint>, Vec<Status>) =
        tx.endpoints_with_status()?.into_iter().unzip();
    tx.load_ports(&mut endpoints)?;
    drop(tx);
    ctx.hand_back_read_only(store);
    // Each endpoint's own veth looked up by name, and each network's
    // parent: not every link of the host (see `kernel/presence.rs`).
    let mut names: Vec<&str> = endpoints.iter().map(|e| e.host_ifname.as_str()).collect();
    names.extend(networks.iter().filter_map(|n| n.driver.parent()));
    let mut found = ctx.kernel.links_present(&names)?;
    let parents: std::collections::HashSet<&str> = names[endpoints.len()..]
        .iter()
        .zip(&found[endpoints.len()..])
        .filter_map(|(name, there)| there.then_some(*name))
        .collect();
    let parents: std::collections::HashSet<String> =
        parents.into_iter().map(String::from).collect();
    found.truncate(endpoints.len());
    Ok(endpoints
        .into_iter()
        .zip(rows)
        .zip(found)
        .filter_map(|((e, status), veth)| {
            let n = Rc::clone(networks.iter().find(|n| n.name == e.network)?);
            let live = match status {
                Status::Creating => "creating",
                Status::Removing => "removing",
                Status::Ready if veth => "up",
                // A macvlan/ipvlan child lives with its namespace and parent.
                Status::Ready
                    if !e.has_veth()
                        && n.driver.parent().is_some_and(|p| parents.contains(p))
                        && ctx
                            .kernel
                            .parse_target(&e.netns)
                            .ok()
                            .and_then(|t| ctx.kernel.netns_inode(&t.path))
                            == Some(e.netns_inode) =>
                {
                    "up"
                }
                Status::Ready => "gone",
            };
            Some((e, n, live))
        })
        .collect())
}

/// The endpoints called `name` (on any network) with their published
/// ports: what `port` shows, read without listing every endpoint.
pub fn named(ctx: &Context, name: &str) -> Result<Vec<Endpoint>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Vec::new());
    };
    let tx = store.read()?;
    let mut endpoints = tx.endpoints_named(name)?;
    for e in &mut endpoints {
        e.ports = tx.ports_of(e.id)?;
    }
    drop(tx);
    ctx.hand_back_read_only(store);
    Ok(endpoints)
}

/// Settings key of the next host port to try when picking one.
const AUTO_PORT_CURSOR: &str = "auto_port_next";

/// Fixes the host side of every spec: checks the given ports against each
/// other and the state (a clash is refused, naming the holder), picks free
/// ones where none was given, and lists the ports a host socket already
/// listens on (warnings: the mapping takes precedence over the socket).
fn resolve_ports(
    ctx: &mut Context,
    tx: &Tx,
    specs: &[PortSpec],
    force: bool,
) -> Result<(Vec<PortMapping>, Vec<String>)> {
    for spec in specs {
        if !spec.host_ip.is_unspecified() && !ctx.kernel.is_local_address(spec.host_ip) {
            return Err(Error::invalid(format!(
                "cannot publish on {}: it is not an address of this host",
                spec.host_ip
            )));
        }
    }
    let listening = |ctx: &mut Context, m: &PortMapping| -> Result<Option<u16>> {
        Ok((m.host_port..=m.host_last())
            .find(|&port| ctx.kernel.host_port_in_use(m.proto, m.host_ip, port)))
    };
    let mut done: Vec<PortMapping> = Vec::new();
    let mut warnings = Vec::new();
    // Given ports first, so that picked ones avoid them.
    for spec in specs.iter().filter(|s| s.host_port.is_some()) {
        let m = spec.with_host_port(0);
        if let Some(other) = done.iter().find(|o| o.clashes_with(&m)) {
            return Err(Error::invalid(format!(
                "port mapping {m} clashes with {other} in the same request"
            )));
        }
        // (Picked ports are never 53: they come from 49153-60999.)
        warnings.extend(dns_listeners(tx, &m)?);
        if let Some((holder, other)) = tx.port_holder(&m)? {
            return Err(Error::invalid(format!(
                "host port {}:{}/{} is already published by endpoint {holder} ({other})",
                m.host_ip,
                clash_port(&m, &other),
                m.proto
            )));
        }
        if let Some(port) = listening(ctx, &m)? {
            let who = ctx.kernel.port_holder_process(m.proto, port).map_or_else(
                || "a host process".to_string(),
                |p| format!("host process {p}"),
            );
            if !force {
                return Err(Error::invalid(format!(
                    "{who} already listens on {}/{port}; publishing it would take its connections (use --force-publish to do it anyway)",
                    m.proto
                )));
            }
            warnings.push(format!(
                "{who} listens on {}/{port}; published connections to it go to the container instead",
                m.proto
            ));
        }
        done.push(m);
    }
    let span = u32::from(AUTO_PORT_LAST - AUTO_PORT_FIRST) + 1;
    // The cursor is read once and written once, however many ports are
    // picked; the claims near it are read in one statement a protocol
    // and address (`ClaimWindow`).
    let mut cursor: Option<u16> = None;
    let mut windows: Vec<ClaimWindow> = Vec::new();
    for spec in specs.iter().filter(|s| s.host_port.is_none()) {
        let start = match cursor {
            Some(c) => c,
            None => tx
                .setting(AUTO_PORT_CURSOR)?
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (AUTO_PORT_FIRST..=AUTO_PORT_LAST).contains(c))
                .unwrap_or(AUTO_PORT_FIRST),
        };
        let mut found = None;
        for i in 0..span {
            let first = AUTO_PORT_FIRST as u32 + (u32::from(start - AUTO_PORT_FIRST) + i) % span;
            if first + u32::from(spec.count) - 1 > u32::from(AUTO_PORT_LAST) {
                continue;
            }
            let m = spec.with_host_port(first as u16);
            if done.iter().any(|o| o.clashes_with(&m))
                || ClaimWindow::claimed(&mut windows, tx, &m, start)?
                || listening(ctx, &m)?.is_some()
            {
                continue;
            }
            found = Some(m);
            break;
        }
        let m = found.ok_or_else(|| {
            Error::invalid(format!(
                "no {} free consecutive host port(s) left in {AUTO_PORT_FIRST}-{AUTO_PORT_LAST} for {}/{}",
                spec.count, spec.container_port, spec.proto
            ))
        })?;
        cursor = Some(if m.host_last() >= AUTO_PORT_LAST {
            AUTO_PORT_FIRST
        } else {
            m.host_last() + 1
        });
        done.push(m);
    }
    if let Some(next) = cursor {
        tx.set_setting(AUTO_PORT_CURSOR, &next.to_string())?;
    }
    // Report in the order given.
    let mut ordered = Vec::with_capacity(done.len());
    for spec in specs {
        let i = done
            .iter()
            .position(|m| {
                m.host_ip == spec.host_ip
                    && m.container_port == spec.container_port
                    && m.count == spec.count
                    && m.proto == spec.proto
                    && spec.host_port.is_none_or(|h| h == m.host_port)
            })
            .expect("every spec was resolved");
        ordered.push(done.swap_remove(i));
    }
    Ok((ordered, warnings))
}

/// The host ports claimed in a window of candidates for one protocol
/// and address, read in one statement: picking a connect's free ports
/// asks about a few ports just past the cursor, each once.
struct ClaimWindow {
    proto: Proto,
    host_ip: IpAddr,
    first: u16,
    last: u16,
    claimed: Vec<u16>,
}

impl ClaimWindow {
    /// Candidates a window holds: enough for a connect's ports past a few
    /// taken ones, few enough to read in one short index range.
    const SIZE: u16 = 64;

    /// Whether a host port of `m` is claimed: from the window of its
    /// protocol and address (read at the cursor `start` when first asked),
    /// or, for a candidate outside it, one lookup of its own.
    fn claimed(
        windows: &mut Vec<ClaimWindow>,
        tx: &Tx,
        m: &PortMapping,
        start: u16,
    ) -> Result<bool> {
        let at = windows
            .iter()
            .position(|w| w.proto == m.proto && w.host_ip == m.host_ip);
        let w = match at {
            Some(i) => &windows[i],
            None => {
                let last = start.saturating_add(Self::SIZE - 1).min(AUTO_PORT_LAST);
                let claimed = tx.claimed_ports(m.proto, m.host_ip, start, last)?;
                windows.push(ClaimWindow {
                    proto: m.proto,
                    host_ip: m.host_ip,
                    first: start,
                    last,
                    claimed,
                });
                windows.last().expect("just pushed")
            }
        };
        if w.first <= m.host_port && m.host_last() <= w.last {
            let ports = m.host_port..=m.host_last();
            return Ok(w.claimed.iter().any(|p| ports.contains(p)));
        }
        Ok(tx.port_holder(m)?.is_some())
    }
}

/// The port berth's name server answers on, on every DNS network's gateway.
const DNS_PORT: u16 = 53;

/// A published port never takes a DNS listener of berth's (the gateway's
/// port 53, UDP and TCP, of every network with DNS), whichever front door
/// asks: a mapping bound to such a gateway address is refused (it could
/// only shadow the server); a mapping of port 53 on every address is
/// published, but the firewall keeps it off the DNS gateways (`dns4`), and
/// the user hears so. Several indexed lookups only when a mapping covers
/// port 53.
fn dns_listeners(tx: &Tx, m: &PortMapping) -> Result<Option<String>> {
    let covers = matches!(m.proto, Proto::Tcp | Proto::Udp)
        && (m.host_port..=m.host_last()).contains(&DNS_PORT);
    if !covers {
        return Ok(None);
    }
    let networks = tx.dns_networks()?;
    if let Some(n) = networks.iter().find(|n| n.gateway == m.host_ip) {
        return Err(Error::invalid(format!(
            "cannot publish {}:{DNS_PORT}/{}: it is where berth's DNS server answers for network {:?}; publish on another address, or on 0.0.0.0 (every address but the DNS gateways)",
            m.host_ip, m.proto, n.name
        )));
    }
    if !m.is_any_address() || networks.is_empty() {
        return Ok(None);
    }
    let mut gateways: Vec<String> = networks.iter().map(|n| n.gateway.to_string()).collect();
    gateways.sort();
    Ok(Some(format!(
        "port {DNS_PORT}/{} is published on every host address except the gateways of berth's DNS networks ({}), where berth's DNS server keeps answering",
        m.proto,
        gateways.join(", ")
    )))
}

/// The first host port of `m` that `other` also covers (for the message).
fn clash_port(m: &PortMapping, other: &PortMapping) -> u16 {
    m.host_port.max(other.host_port)
}

/// Whether some published port of `endpoint` is forwarded from `[::1]` by
/// the background server (see `portproxy`), which then re-reads the
/// endpoint's namespace like the DNS server does.
fn forwarded_from_loopback(endpoint: &Endpoint) -> bool {
    endpoint.ip6().is_some()
        && endpoint
            .ports
            .iter()
            .any(crate::store::forwarded_from_loopback)
}
