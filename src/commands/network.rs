//! Networks: bridges with a subnet and gateway. The changes `network
//! create`, `rm` and `reset` make (each a [`Change`] the executor runs),
//! and the read-only `ls` and `inspect`.

use std::net::IpAddr;

use crate::change::{compensation, Change, Intent, Planned, Prepared, Row, Settle};
use crate::context::{Context, DnsScope};
use crate::error::{Error, Result};
use crate::firewall;
use crate::kernel::sysctl;
use crate::model::subnet::{self, ipv4_of, IpNet};
use crate::model::{
    ipam, names, Endpoint, Family, Network, NetworkPolicy, PortMapping, Subnet, Uplink, DEFAULT_MTU,
};
use crate::plan::{Plan, Step};
use crate::request::{NetworkRequest, SubnetRequest};
use crate::store::{NewNetwork, Owners, Tx};
use berth_nft::ElemOp;

/// The `settings` row that remembers the ip_forward value berth found.
const IP_FORWARD: &str = "net.ipv4.ip_forward";
/// The same for `net.ipv6.conf.all.forwarding`.
const IP6_FORWARD: &str = "net.ipv6.conf.all.forwarding";

/// The network every `berth run` without `--net` joins, made on first use.
pub const DEFAULT_NETWORK: &str = "berth";
const DEFAULT_BRIDGE: &str = "berth0";

/// Names a user cannot give a network: they would shadow `run --net
/// host|none` and the default network berth makes itself.
pub const RESERVED_NAMES: [&str; 4] = ["host", "none", "default", DEFAULT_NETWORK];

/// `network create`: checks the request against the state and the host,
/// records the network and builds it (bridge, address, forwarding, its
/// part of the ruleset in one batch, its policy routing).
pub struct CreateNetwork {
    request: NetworkRequest,
    /// Only berth's own default network may take a reserved name.
    reserved_ok: bool,
}

impl CreateNetwork {
    pub fn new(request: NetworkRequest) -> CreateNetwork {
        CreateNetwork {
            request,
            reserved_ok: false,
        }
    }

    /// The default network `berth` (bridge `berth0`).
    pub fn default_network() -> CreateNetwork {
        let mut request = NetworkRequest::new(DEFAULT_NETWORK);
        request.bridge = Some(DEFAULT_BRIDGE.into());
        CreateNetwork {
            request,
            reserved_ok: true,
        }
    }
}

impl Change for CreateNetwork {
    type Output = Network;

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<Network>> {
        let req = &self.request;
        if !self.reserved_ok && RESERVED_NAMES.contains(&req.name.as_str()) {
            return Err(Error::invalid(format!(
                "network name {:?} is reserved (it would shadow `--net host|none` or berth's default network); choose another",
                req.name
            )));
        }
        let new = check_create(ctx, tx, req)?;
        // The row gives the network its id (and so its link group and
        // routing table); a dry run's private copy keeps it.
        let network = tx.insert_network(&new)?;
        if let Some(owner) = &req.owner {
            tx.mark_network(network.id, owner)?;
        }
        let plan = plan_create(ctx, tx, &network)?;
        let warnings = ctx
            .kernel
            .foreign_forward_drops(&firewall::table())
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                format!(
                    "{c} has policy drop on the forward hook and may drop the traffic of network {} (berth cannot override it)",
                    network.name
                )
            })
            .collect();
        let mut planned = Planned::new(
            plan,
            Intent::rows(vec![Row::NewNetwork(network.id)]),
            network.clone(),
        );
        planned.dns = Some(DnsScope::All);
        planned.warnings = warnings;
        planned.undo = Some(compensation(RemoveNetwork::new(&network.name, false)));
        Ok(Prepared::Change(planned))
    }
}

/// Whether an existing network is the one a front door means (CNI and
/// Podman name networks that may exist already).
pub type Agreement = Box<dyn Fn(&Network, Option<&str>) -> Result<()>>;

/// The network a runtime names: the existing one if it agrees with the
/// request (the check is the front door's), else a new one. Its output
/// says whether it made the network.
pub struct EnsureNetwork {
    create: CreateNetwork,
    agrees: Agreement,
}

impl EnsureNetwork {
    pub fn new(request: NetworkRequest, agrees: Agreement) -> EnsureNetwork {
        EnsureNetwork {
            create: CreateNetwork::new(request),
            agrees,
        }
    }

    /// berth's default network, made on first use.
    pub fn default_network() -> EnsureNetwork {
        EnsureNetwork {
            create: CreateNetwork::default_network(),
            agrees: Box::new(|_, _| Ok(())),
        }
    }
}

impl Change for EnsureNetwork {
    type Output = (Network, bool);

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<(Network, bool)>> {
        let name = &self.create.request.name;
        if let Some(n) = tx.network(name)? {
            (self.agrees)(&n, tx.network_owner(name)?.as_deref())?;
            return Ok(Prepared::Unchanged((n, false)));
        }
        Ok(match self.create.prepare(ctx, tx)? {
            Prepared::Repair => Prepared::Repair,
            Prepared::Unchanged(n) => Prepared::Unchanged((n, false)),
            Prepared::Change(p) => Prepared::Change(Planned {
                plan: p.plan,
                intent: p.intent,
                output: (p.output, true),
                dns: p.dns,
                warnings: p.warnings,
                undo: p.undo,
            }),
        })
    }
}

/// Checks every option against the state and the host, and computes the
/// network to create.
fn check_create<'a>(ctx: &mut Context, tx: &Tx, req: &'a NetworkRequest) -> Result<NewNetwork<'a>> {
    names::check_network_name(&req.name)?;
    let child = !req.driver.is_bridge();
    if child && req.bridge.is_some() {
        return Err(Error::invalid(format!(
            "a {} network has no bridge; --bridge is for bridge networks",
            req.driver.name()
        )));
    }
    if let Some(parent) = req.driver.parent() {
        if !ctx.kernel.link_exists(parent)? {
            return Err(Error::invalid(format!(
                "parent interface {parent:?} does not exist on the host"
            )));
        }
    }
    let bridge = match &req.bridge {
        Some(b) => {
            names::check_ifname("bridge name", b)?;
            b.clone()
        }
        None => names::default_bridge_name(&req.name),
    };
    // A child takes its parent's MTU unless told (0 records that).
    let mtu = req.mtu.unwrap_or(if child { 0 } else { DEFAULT_MTU });
    let inherited = child && mtu == 0;
    if !inherited && !(68..=65535).contains(&mtu) {
        return Err(Error::invalid(format!(
            "invalid MTU {mtu}: expected 68 to 65535"
        )));
    }
    let wanted = wanted_subnets(req)?;

    if tx.network(&req.name)?.is_some() {
        return Err(Error::invalid(format!(
            "network {:?} already exists",
            req.name
        )));
    }
    let networks = tx.networks()?;
    if let Some(other) = networks.iter().find(|n| n.bridge == bridge) {
        return Err(Error::invalid(format!(
            "bridge {bridge:?} is already used by network {:?}",
            other.name
        )));
    }
    if !child && ctx.kernel.link_exists(&bridge)? {
        return Err(Error::invalid(format!(
            "bridge {bridge:?} already exists on the host; choose another with --bridge"
        )));
    }

    let host = if wanted.is_empty() {
        Vec::new()
    } else {
        ctx.kernel.host_prefixes()?
    };
    let mut subnets = Vec::new();
    for want in &wanted {
        subnets.push(pick_subnet(tx, want, &networks, &host, child)?);
    }
    let mut policy = check_policy(ctx, req)?;
    if child {
        check_child_policy(req)?;
        // The host cannot reach its own macvlan children (nor, in most
        // modes, ipvlan ones) without a shim: no DNS on a gateway berth
        // does not own, and no NAT (the containers are on the LAN).
        policy.dns = false;
        policy.masquerade = false;
    }
    Ok(NewNetwork {
        name: &req.name,
        subnets,
        bridge,
        mtu,
        policy,
        driver: req.driver.clone(),
    })
}

/// The subnets a request asks for, checked as values: at most one per
/// family, each prefix and gateway of its family. Without a list, berth's
/// default: IPv4, and IPv6 too when the config file says so.
fn wanted_subnets(req: &NetworkRequest) -> Result<Vec<SubnetRequest>> {
    let wanted = match &req.subnets {
        Some(list) => list.clone(),
        None => {
            let mut list = vec![SubnetRequest::auto(Family::V4)];
            if crate::config::Config::load()?.ipv6 {
                list.push(SubnetRequest::auto(Family::V6));
            }
            list
        }
    };
    for (i, w) in wanted.iter().enumerate() {
        if wanted[..i].iter().any(|o| o.family == w.family) {
            return Err(Error::invalid(format!(
                "network {:?}: more than one {} subnet (a network has at most one per family)",
                req.name,
                w.family.name()
            )));
        }
        if let Some(net) = w.subnet {
            if Family::of_net(&net) != w.family {
                return Err(Error::invalid(format!(
                    "subnet {net} is not an {} prefix",
                    w.family.name()
                )));
            }
            subnet::network_of(net)?;
        }
        if let Some(g) = w.gateway {
            if Family::of(g) != w.family {
                return Err(Error::invalid(format!(
                    "gateway {g} is not an {} address",
                    w.family.name()
                )));
            }
            if let Some(net) = w.subnet {
                if !subnet::is_host(&net, g) {
                    return Err(Error::invalid(format!(
                        "gateway {g} is not a host address of subnet {net}"
                    )));
                }
            }
        }
    }
    Ok(wanted)
}

/// The subnet (with its gateway) `want` asks for: the given one if it
/// clashes with no network and (for a bridge) no host prefix, else the
/// first free one of the family's pools.
fn pick_subnet(
    tx: &Tx,
    want: &SubnetRequest,
    networks: &[Network],
    host: &[crate::kernel::HostPrefix],
    child: bool,
) -> Result<Subnet> {
    let net = match want.subnet {
        Some(net) => {
            for n in networks {
                if let Some(s) = n.subnets.iter().find(|s| subnet::overlaps(&s.net, &net)) {
                    return Err(Error::invalid(format!(
                        "subnet {net} overlaps network {:?} ({})",
                        n.name, s.net
                    )));
                }
            }
            // A macvlan/ipvlan network's subnet is its parent's LAN, which
            // the host may well be on.
            if let Some(h) = host
                .iter()
                .find(|h| !child && subnet::overlaps(&h.net, &net))
            {
                return Err(Error::invalid(format!("subnet {net} overlaps {}", h.what)));
            }
            net
        }
        None => {
            let used: Vec<IpNet> = networks
                .iter()
                .flat_map(|n| n.subnets.iter().map(|s| s.net))
                .chain(host.iter().map(|h| h.net))
                .collect();
            let mut pools: Vec<ipam::Pool> = crate::config::Config::load()?
                .pools
                .into_iter()
                .filter(|p| p.family() == want.family)
                .collect();
            if pools.is_empty() && want.family == Family::V6 {
                pools.push(ipam::default_pool6(tx.ula_prefix()?));
            }
            ipam::pick_subnet(&pools, want.family, &used).ok_or_else(|| {
                let pools: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
                Error::invalid(format!(
                    "no free {} subnet left in the pools ({}); give one with --subnet{}",
                    want.family.name(),
                    pools.join(", "),
                    if want.family == Family::V6 { "6" } else { "" }
                ))
            })?
        }
    };
    let gateway = match want.gateway {
        Some(g) if subnet::is_host(&net, g) => g,
        Some(g) => {
            return Err(Error::invalid(format!(
                "gateway {g} is not a host address of subnet {net}"
            )))
        }
        None => subnet::first_host(&net),
    };
    Ok(Subnet {
        net,
        gateway: Some(gateway),
    })
}

/// Refuses the bridge-only options on a macvlan/ipvlan network, naming
/// each: they are firewall and routing work on a bridge's traffic, which
/// these networks do not pass through.
fn check_child_policy(req: &NetworkRequest) -> Result<()> {
    let offending = [
        (req.uplink.is_some(), "--uplink"),
        (!req.deny_egress.is_empty(), "--deny-egress"),
        (!req.cluster_cidrs.is_empty(), "--cluster-cidr"),
        (req.log_drops, "--log-drops"),
        (!req.icc, "--no-icc"),
        (!req.host_access, "--no-host-access"),
    ];
    if let Some((_, option)) = offending.iter().find(|(set, _)| *set) {
        return Err(Error::invalid(format!(
            "{option} is not offered on a {} network (its traffic passes no bridge of berth's)",
            req.driver.name()
        )));
    }
    Ok(())
}

/// Checks the firewall and routing options.
fn check_policy(ctx: &mut Context, req: &NetworkRequest) -> Result<NetworkPolicy> {
    let deny_egress = req.deny_egress.clone();
    let uplink = match &req.uplink {
        None => None,
        Some(_) if req.internal => {
            return Err(Error::invalid(
                "--uplink cannot be used with --internal: an internal network has no way out",
            ))
        }
        Some(u) => {
            let ifname = &u.ifname;
            names::check_ifname("--uplink interface", ifname)?;
            let Some(routes) = ctx.kernel.iface_routes(ifname)? else {
                return Err(Error::invalid(format!(
                    "no interface {ifname:?} on the host for --uplink"
                )));
            };
            let gateway = match u.gateway {
                Some(g) => {
                    let g = ipv4_of("--uplink-gateway", g)?;
                    if !routes.connected.iter().any(|n| n.contains(&g)) {
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
                gateway: IpAddr::V4(gateway),
            })
        }
    };
    Ok(NetworkPolicy {
        masquerade: req.masquerade,
        icc: req.icc,
        internal: req.internal,
        deny_egress,
        uplink,
        log_drops: req.log_drops,
        dns: req.dns,
        cluster_cidrs: req.cluster_cidrs.clone(),
        host_access: req.host_access,
    })
}

/// The kernel steps of a new network: bridge, address, forwarding, its
/// part of the ruleset (one batch) and its policy routing.
fn plan_create(ctx: &mut Context, tx: &Tx, network: &Network) -> Result<Plan> {
    let mut plan = Plan::new();
    if !network.is_bridge() {
        // Nothing to build: endpoints are children of the host's parent.
        return Ok(plan);
    }
    // IPv6 forwarding first: a bridge that comes up on a host that is no
    // router yet solicits routers (and forwarding is what turns that off).
    if network.subnet6().is_some() {
        forwarding_step(
            ctx,
            tx,
            sysctl::Key::ipv6_forwarding(),
            IP6_FORWARD,
            &mut plan,
        )?;
    }
    // The same steps the reconcile uses to rebuild a lost bridge.
    crate::reconcile::decide::network_steps(network, &mut plan);
    if network.subnet4().is_some() {
        forwarding_step(ctx, tx, sysctl::Key::ip_forward(), IP_FORWARD, &mut plan)?;
    }
    // Other networks than this new one mean the table is there.
    let exists = table_exists(ctx, tx, 1)?;
    let mut change = firewall::add_network(network, exists, &tx.instance_id()?);
    // The DNS server listens on another port than 53 (Podman's
    // NETAVARK_DNS_PORT): the gateway's port 53 is redirected to it.
    if let Some(gateway) = network.gateway4() {
        let redirects = dns_redirects(tx, network)?;
        firewall::ports::elements_op(
            &mut change.batch,
            ElemOp::Add,
            IpAddr::V4(gateway),
            &redirects,
        );
    }
    plan.push(Step::Nft {
        batch: change.batch,
        undo: change.undo,
    });
    crate::reconcile::decide::uplink_steps(network, true, &mut plan);
    Ok(plan)
}

/// Turns forwarding (`key`) on, remembering under `setting` the value
/// berth found so that `reset` can put it back.
fn forwarding_step(
    ctx: &mut Context,
    tx: &Tx,
    key: sysctl::Key,
    setting: &str,
    plan: &mut Plan,
) -> Result<()> {
    let found = ctx.kernel.read_sysctl(&key)?;
    if found.trim() != "1" {
        tx.record_setting_once(setting, found.trim())?;
    }
    plan.push(Step::SetSysctl {
        key,
        value: "1".into(),
    });
    Ok(())
}

/// Whether berth's `inet` table exists. A real run asks the kernel; a dry
/// run, which may not be allowed to (nf_tables wants CAP_NET_ADMIN even to
/// read), goes by the state, which the preflight keeps true: the tables
/// exist while more than `own` networks are recorded.
fn table_exists(ctx: &mut Context, tx: &Tx, own: usize) -> Result<bool> {
    if ctx.dry_run {
        return Ok(bridge_count(tx)? > own);
    }
    ctx.kernel.nft_table_exists(&firewall::table())
}

/// How many bridge networks the state has: berth's tables exist while
/// one does (macvlan/ipvlan networks have no firewall part).
fn bridge_count(tx: &Tx) -> Result<usize> {
    Ok(tx.networks()?.iter().filter(|n| n.is_bridge()).count())
}

/// Which of berth's two tables exist, as [`table_exists`] tells it.
fn tables_exist(ctx: &mut Context, tx: &Tx, own: usize) -> Result<firewall::Tables> {
    if ctx.dry_run {
        return Ok(firewall::Tables::both(bridge_count(tx)? > own));
    }
    Ok(firewall::Tables {
        routing: ctx.kernel.nft_table_exists(&firewall::table())?,
        guard: ctx.kernel.nft_table_exists(&firewall::guard::table())?,
    })
}

/// The DNS port redirects a network has (see `dns::port_redirects`).
fn dns_redirects(tx: &Tx, network: &Network) -> Result<Vec<PortMapping>> {
    let Some(gateway) = network.gateway4().filter(|_| network.policy.dns) else {
        return Ok(Vec::new());
    };
    let port = tx
        .setting(crate::dns::PORT_SETTING)?
        .and_then(|p| p.parse().ok())
        .unwrap_or(53);
    Ok(crate::dns::port_redirects(gateway, port))
}

/// The steps that take a network away: its ruleset part (or the whole
/// table when `last`), its policy routing, its veths and its bridge.
fn plan_remove(
    network: &Network,
    endpoints: usize,
    last: bool,
    ports: &[(IpAddr, PortMapping)],
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
    for (ip, m) in ports {
        plan.steps.extend(crate::reconcile::decide::flushes(
            crate::model::Family::of(*ip),
            [m],
        ));
    }
    crate::reconcile::decide::uplink_steps(network, false, &mut plan);
    if endpoints > 0 {
        plan.push(Step::DeleteLinkGroup {
            group: network.link_group,
            what: format!("the {endpoints} veth(s) of network {}", network.name),
        });
    }
    // With the links disconnects left pending: the same grace period.
    plan.push(Step::DeleteLinksTogether {
        names: vec![network.bridge.clone()],
    });
    plan
}

/// The steps that take a macvlan/ipvlan network away: only its
/// endpoints' children, each in its namespace (those whose namespace is
/// no longer the recorded one went with it). The parent is the host's.
fn plan_remove_children(ctx: &mut Context, network: &Network, endpoints: &[Endpoint]) -> Plan {
    let mut plan = Plan::new();
    for e in endpoints {
        let netns = ctx
            .kernel
            .parse_target(&e.netns)
            .ok()
            .map(|t| t.path)
            .filter(|p| ctx.kernel.netns_inode(p) == Some(e.netns_inode));
        plan.steps
            .extend(crate::reconcile::decide::child_disconnect_plan(network, e, netns, None).steps);
    }
    plan
}

/// `network rm`: takes a network away; with `force`, its endpoints too
/// (all their veths in one kernel request, through the network's link
/// group). Its output is the endpoints it disconnected.
pub struct RemoveNetwork {
    name: String,
    force: bool,
    /// Only a network of this owner, and only when no endpoint is left on
    /// it (Podman's "the last container removes its network").
    if_unused_by: Option<String>,
}

impl RemoveNetwork {
    pub fn new(name: &str, force: bool) -> RemoveNetwork {
        RemoveNetwork {
            name: name.to_string(),
            force,
            if_unused_by: None,
        }
    }

    /// Removes the network if `owner` made it and it has no endpoint left;
    /// otherwise does nothing.
    pub fn if_unused(name: &str, owner: &str) -> RemoveNetwork {
        RemoveNetwork {
            name: name.to_string(),
            force: false,
            if_unused_by: Some(owner.to_string()),
        }
    }
}

impl Change for RemoveNetwork {
    type Output = Vec<Endpoint>;

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<Vec<Endpoint>>> {
        let name = &self.name;
        let network = match (&self.if_unused_by, tx.network(name)?) {
            (Some(_), None) => return Ok(Prepared::Unchanged(Vec::new())),
            (_, None) => return Err(no_such_network(name)),
            (_, Some(n)) => n,
        };
        let endpoints = tx.endpoints(Some(network.id))?;
        if let Some(owner) = &self.if_unused_by {
            if tx.network_owner(name)?.as_deref() != Some(owner) || !endpoints.is_empty() {
                return Ok(Prepared::Unchanged(Vec::new()));
            }
        }
        if !endpoints.is_empty() && !self.force {
            // A few names say which; two hundred would hide the advice.
            const SHOWN: usize = 5;
            let mut names: Vec<String> = endpoints
                .iter()
                .take(SHOWN)
                .map(|e| e.name.clone())
                .collect();
            if endpoints.len() > SHOWN {
                names.push(format!("and {} more", endpoints.len() - SHOWN));
            }
            return Err(Error::invalid(format!(
                "network {name:?} still has {} endpoint(s) connected ({}); disconnect them or use --force",
                endpoints.len(),
                names.join(", ")
            )));
        }
        if !network.is_bridge() {
            let plan = plan_remove_children(ctx, &network, &endpoints);
            let mut planned = Planned::new(
                plan,
                Intent::rows(vec![Row::GoingNetwork(network.id)]),
                endpoints,
            );
            planned.dns = Some(DnsScope::All);
            return Ok(Prepared::Change(planned));
        }
        let last = bridge_count(tx)? == 1;
        let mut ports = tx.network_ports(network.id)?;
        if let Some(gateway) = network.gateway4() {
            ports.extend(
                dns_redirects(tx, &network)?
                    .into_iter()
                    .map(|m| (IpAddr::V4(gateway), m)),
            );
        }
        let mut plan = plan_remove(&network, endpoints.len(), last, &ports, &tx.instance_id()?);
        let exist = tables_exist(ctx, tx, 0)?;
        if !exist.routing {
            // The ruleset went already (a reboot, `nft flush ruleset`): the
            // plain deletes would fail on what is not there.
            plan.steps.remove(0);
        }
        // The anti-spoofing part goes last, once the veths are gone.
        if exist.guard && (last || !endpoints.is_empty()) {
            let before = super::endpoint::namespace_endpoints(tx, &endpoints)?;
            let after: Vec<&Endpoint> = before
                .iter()
                .filter(|e| e.network != network.name)
                .collect();
            let change = firewall::remove_guards(last, &before.iter().collect::<Vec<_>>(), &after);
            if !change.batch.is_empty() {
                plan.push(Step::Nft {
                    batch: change.batch,
                    undo: change.undo,
                });
            }
        }
        let mut planned = Planned::new(
            plan,
            Intent::rows(vec![Row::GoingNetwork(network.id)]),
            endpoints,
        );
        planned.dns = Some(DnsScope::All);
        Ok(Prepared::Change(planned))
    }
}

/// The error for a network name that the state does not know.
pub fn no_such_network(name: &str) -> Error {
    Error::invalid(format!("no such network {name:?} (see `berth network ls`)"))
}

/// What `reset` took away.
pub struct ResetReport {
    pub networks: usize,
    pub endpoints: usize,
}

/// `reset`: removes everything berth made (every network with its
/// endpoints, its ruleset part and policy routing, the table, and the
/// state) and puts back the host settings berth changed. Touches nothing
/// berth did not make.
pub struct Reset;

impl Change for Reset {
    type Output = ResetReport;

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<ResetReport>> {
        let networks = tx.networks()?;
        let mut plan = Plan::new();
        let change = firewall::remove_all(tables_exist(ctx, tx, 0)?);
        plan.push(Step::Nft {
            batch: change.batch,
            undo: change.undo,
        });
        let mut endpoints = 0;
        for network in &networks {
            let count = tx.endpoint_count(network.id)?;
            endpoints += count;
            if !network.is_bridge() {
                let children = tx.endpoints(Some(network.id))?;
                plan.steps
                    .extend(plan_remove_children(ctx, network, &children).steps);
                continue;
            }
            // The table goes at once above, so the per-network nft part is
            // not needed.
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
        for (setting, key) in [
            (IP_FORWARD, sysctl::Key::ip_forward()),
            (IP6_FORWARD, sysctl::Key::ipv6_forwarding()),
        ] {
            if let Some(old) = tx.setting(setting)? {
                plan.push(Step::SetSysctl { key, value: old });
            }
        }
        // Every network `removing`: a crash from here on is finished by
        // the next command.
        let intent = Intent {
            rows: networks.iter().map(|n| Row::GoingNetwork(n.id)).collect(),
            settle: vec![Settle::ClearState],
        };
        let mut planned = Planned::new(
            plan,
            intent,
            ResetReport {
                networks: networks.len(),
                endpoints,
            },
        );
        planned.dns = Some(DnsScope::All);
        Ok(Prepared::Change(planned))
    }
}

/// Every network with its endpoint count.
pub fn list(ctx: &Context) -> Result<Vec<(Network, usize)>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Vec::new());
    };
    let tx = store.read()?;
    let counts = tx.endpoint_counts()?;
    let networks = tx
        .networks()?
        .into_iter()
        .map(|n| {
            let count = counts.get(&n.id).copied().unwrap_or(0);
            (n, count)
        })
        .collect();
    drop(tx);
    ctx.hand_back_read_only(store);
    Ok(networks)
}

/// Who made each network some runtime made, by network name.
pub fn marks(ctx: &Context) -> Result<std::collections::HashMap<String, String>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Default::default());
    };
    let tx = store.read()?;
    let marks = tx.network_marks()?;
    drop(tx);
    ctx.hand_back_read_only(store);
    Ok(marks)
}

/// One network and its endpoints.
pub fn inspect(ctx: &Context, name: &str) -> Result<(Network, Vec<Endpoint>)> {
    inspect_full(ctx, name).map(|(n, endpoints, _, _)| (n, endpoints))
}

/// A network, its endpoints with their ports, each endpoint's aliases
/// and who made them: what [`inspect_full`] reads.
pub type InspectedNetwork = (Network, Vec<Endpoint>, Vec<Vec<String>>, Owners);

/// What `network inspect` shows of one network: the network, its
/// endpoints with their ports, each endpoint's aliases (in the
/// endpoints' order) and who made them. One transaction, and every query
/// reads a range of this network's rows only, so inspecting a network of
/// a hundred costs the same beside ten thousand endpoints of others.
pub fn inspect_full(ctx: &Context, name: &str) -> Result<InspectedNetwork> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Err(no_such_network(name));
    };
    let tx = store.read()?;
    let network = tx.require_network(name)?;
    let mut endpoints = tx.endpoints(Some(network.id))?;
    tx.load_network_ports(network.id, &mut endpoints)?;
    let mut aliases = tx.network_aliases(network.id)?;
    let aliases = endpoints
        .iter()
        .map(|e| aliases.remove(&e.id).unwrap_or_default())
        .collect();
    let owners = tx.network_owners(network.id)?;
    drop(tx);
    ctx.hand_back_read_only(store);
    Ok((network, endpoints, aliases, owners))
}
