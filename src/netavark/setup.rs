//! `setup` and `teardown`: one Podman request translated onto berth's own
//! operations. A Podman network becomes a berth network of the same name
//! (bridge, subnet, gateway, `internal`, `mtu` from Podman's definition),
//! made with its first container and removed with its last; each container
//! network becomes a berth endpoint with Podman's address, MAC, interface
//! name and published ports. Podman does the address management, so the
//! addresses come from `static_ips`, never from berth's pool.
//!
//! Podman's networks get berth's firewall: isolated from every other
//! network both ways, whatever `isolate` says. netavark 1.4 blocks only
//! traffic between two networks that both have `isolate=true` and lets
//! every other pair connect through the host; berth is stricter (see
//! README, "Podman").

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::types::{NetAddress, NetInterface, NetworkOptions, PortMapping, StatusBlock};
use crate::change::{Change, Prepared};
use crate::commands::{Attach, Detach, EnsureNetwork, RemoveNetwork};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight, Txn};
use crate::model::subnet::{self, Family};
use crate::model::{names, Driver, Endpoint, Mac, Network, PortSpec, Proto, Subnet};
use crate::request::{
    AttachRequest, DetachRequest, EndpointMark, EndpointRef, NetworkRequest, SubnetRequest,
};
use crate::store::Tx;

/// What berth records as the maker of Podman's networks and endpoints.
pub const OWNER: &str = "podman";
/// Search domain Podman's DNS names live under.
const DNS_DOMAIN: &str = "dns.podman";

/// One network of the request, checked and in berth's terms.
#[derive(Debug)]
struct PodmanNet {
    network: String,
    /// At most one per family, IPv4 first; none with IPAM driver "none".
    subnets: Vec<Subnet>,
    bridge: String,
    /// Bridge, or macvlan/ipvlan with `network_interface` as the parent.
    driver: Driver,
    mtu: Option<u32>,
    /// Metric of the default route this network gives.
    metric: Option<u32>,
    internal: bool,
    dns: bool,
    ifname: String,
    /// Podman's addresses, one in each subnet, in the subnets' order.
    ips: Vec<IpAddr>,
    mac: Option<Mac>,
    /// The network's own upstream DNS servers (empty: the host's).
    dns_servers: Vec<IpAddr>,
}

/// The metric of a container's default route when the network's options
/// name none (netavark's).
const DEFAULT_METRIC: u32 = 100;

/// Checks the whole request before anything is changed. The networks come
/// in interface order (`eth0` first), so that the first one gives the
/// default route, as with netavark.
fn check(opts: &NetworkOptions) -> Result<Vec<PodmanNet>> {
    if opts.networks.is_empty() {
        return Err(Error::invalid("no networks given"));
    }
    let mut out = Vec::new();
    for (name, per) in &opts.networks {
        let info = opts
            .network_info
            .get(name)
            .ok_or_else(|| Error::invalid(format!("no network_info for network {name:?}")))?;
        if !matches!(info.driver.as_str(), "bridge" | "macvlan" | "ipvlan") {
            return Err(Error::invalid(format!(
                "network {name:?}: unknown network driver {:?}",
                info.driver
            )));
        }
        names::check_network_name(name)?;
        let ipam = info.ipam_options.as_ref().and_then(|o| o.get("driver"));
        let (subnets, ips) = match ipam.map(String::as_str) {
            None | Some("") | Some("host-local") => {
                let subnets = podman_subnets(name, info.subnets.as_deref().unwrap_or_default())?;
                let ips = static_ips(
                    name,
                    &subnets,
                    per.static_ips.as_deref().unwrap_or_default(),
                )?;
                (subnets, ips)
            }
            // The interface without addresses or routes: netavark reads
            // neither the subnets nor static_ips then.
            Some("none") => (Vec::new(), Vec::new()),
            // netavark's words, which Podman shows.
            Some(d) => {
                return Err(Error::invalid(format!(
                    "IO error: unsupported ipam driver {d}"
                )))
            }
        };
        let options = info.options.clone().unwrap_or_default();
        let (bridge, driver) = if info.driver == "bridge" {
            let bridge = info.network_interface.clone().ok_or_else(|| {
                Error::invalid(format!("network {name:?} has no network_interface"))
            })?;
            (bridge, Driver::Bridge)
        } else {
            // The parent: Podman's `-o parent=`, else (as netavark) the
            // interface of the host's default route.
            let parent = match info.network_interface.as_deref() {
                Some(p) if !p.is_empty() => p.to_string(),
                _ => default_route_interface()?,
            };
            let driver = Driver::parse(
                &info.driver,
                Some(&parent),
                options.get("mode").map(String::as_str),
            )
            .map_err(|e| Error::invalid(format!("network {name:?}: {e}")))?;
            (names::default_bridge_name(name), driver)
        };
        let mtu = match options.get("mtu").map(String::as_str) {
            None | Some("") => None,
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| Error::invalid(format!("network {name:?}: invalid mtu {m:?}")))?,
            ),
        };
        let metric =
            match options.get("metric").map(String::as_str) {
                None | Some("") => None,
                Some(m) => Some(m.parse::<u32>().map_err(|_| {
                    Error::invalid(format!("network {name:?}: invalid metric {m:?}"))
                })?),
            };
        if let Some(m) = options.get("isolate") {
            if m.parse::<bool>().is_err() {
                return Err(Error::invalid(format!(
                    "network {name:?}: invalid isolate {m:?}"
                )));
            }
        }
        let dns_servers =
            super::update::parse_servers(info.network_dns_servers.as_deref().unwrap_or_default())
                .map_err(|e| Error::invalid(format!("network {name:?}: {e}")))?;
        // netavark offers no DNS on macvlan/ipvlan networks either, nor
        // without a gateway to answer on (IPAM driver "none").
        let dns = info.dns_enabled && info.driver == "bridge" && !subnets.is_empty();
        out.push(PodmanNet {
            dns_servers,
            network: name.clone(),
            subnets,
            bridge,
            driver,
            mtu,
            // netavark's default, as `ip` tools use it.
            metric: metric.or(Some(DEFAULT_METRIC)),
            internal: info.internal,
            dns,
            ifname: per.interface_name.clone(),
            ips,
            mac: per
                .static_mac
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(Mac::parse_unicast)
                .transpose()?,
        });
    }
    out.sort_by_key(|a| natural(&a.ifname));
    Ok(out)
}

/// Podman's subnets of a host-local network as berth's: at least one, at
/// most one per family (berth's model), IPv4 first. A subnet without a
/// gateway gets its first host address, as Podman itself fills it in.
fn podman_subnets(name: &str, given: &[super::types::Subnet]) -> Result<Vec<Subnet>> {
    let mut subnets: Vec<Subnet> = Vec::new();
    for s in given {
        let net = subnet::parse_network(&s.subnet)
            .map_err(|e| Error::invalid(format!("network {name:?}: {e}")))?;
        let family = Family::of_net(&net);
        if subnets.iter().any(|o| Family::of_net(&o.net) == family) {
            return Err(Error::invalid(format!(
                "network {name:?}: more than one {} subnet is not supported by berth (a network has at most one per family)",
                family.name()
            )));
        }
        let gateway = match s.gateway.as_deref().filter(|g| !g.is_empty()) {
            None => subnet::first_host(&net),
            Some(g) => {
                let ip = parse_ip(&format!("gateway of network {name:?}"), g)?;
                if !subnet::is_host(&net, ip) {
                    return Err(Error::invalid(format!(
                        "network {name:?}: gateway {ip} is not a host address of subnet {net}"
                    )));
                }
                ip
            }
        };
        subnets.push(Subnet {
            net,
            gateway: Some(gateway),
        });
    }
    if subnets.is_empty() {
        return Err(Error::invalid(format!(
            "network {name:?} has no subnet (with ipam driver host-local Podman gives one)"
        )));
    }
    subnets.sort_by_key(|s| Family::of_net(&s.net));
    Ok(subnets)
}

/// Podman's addresses for the container: exactly one in each subnet
/// (Podman does the address management, so berth's pool gives none),
/// returned in the subnets' order.
fn static_ips(name: &str, subnets: &[Subnet], given: &[String]) -> Result<Vec<IpAddr>> {
    let what = format!("static_ips of network {name:?}");
    let given = given
        .iter()
        .map(|t| parse_ip(&what, t))
        .collect::<Result<Vec<_>>>()?;
    if let Some(ip) = given
        .iter()
        .find(|ip| !subnets.iter().any(|s| s.net.contains(*ip)))
    {
        return Err(Error::invalid(format!(
            "{what}: address {ip} is in none of the network's subnets ({})",
            subnets
                .iter()
                .map(|s| s.net.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut ips = Vec::new();
    for s in subnets {
        match given.iter().filter(|ip| s.net.contains(*ip)).collect::<Vec<_>>()[..] {
            [ip] => ips.push(*ip),
            [] => {
                return Err(Error::invalid(format!(
                    "network {name:?}: no static_ips address in subnet {} (Podman assigns the addresses)",
                    s.net
                )))
            }
            _ => {
                return Err(Error::invalid(format!(
                    "network {name:?}: more than one address in subnet {} is not supported by berth",
                    s.net
                )))
            }
        }
    }
    Ok(ips)
}

/// `eth10` after `eth9`.
fn natural(ifname: &str) -> (String, u64) {
    let digits = ifname.len() - ifname.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, n) = ifname.split_at(ifname.len() - digits);
    (stem.to_string(), n.parse().unwrap_or(0))
}

fn parse_ip(what: &str, text: &str) -> Result<IpAddr> {
    text.parse::<IpAddr>()
        .map_err(|_| Error::invalid(format!("{what}: invalid address {text:?}")))
}

/// Podman's port mappings as berth port specs: one per protocol of a
/// comma list, a range as its first port and length on both sides.
fn port_specs(ports: &[PortMapping]) -> Result<Vec<PortSpec>> {
    let mut specs = Vec::new();
    for p in ports {
        // Empty: every address of every family the network has.
        let host_ip = match p.host_ip.as_str() {
            "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ip => parse_ip("port mapping host_ip", ip)?,
        };
        let count = p.range.max(1);
        for port in [p.host_port, p.container_port] {
            if port == 0 || u32::from(port) + u32::from(count) - 1 > 65535 {
                return Err(Error::invalid(format!(
                    "port range {port}+{count} goes past 65535"
                )));
            }
        }
        for proto in p.protocol.split(',').map(str::trim) {
            let proto = Proto::parse(proto).ok_or_else(|| {
                Error::invalid(format!("port mapping: unknown protocol {proto:?}"))
            })?;
            specs.push(PortSpec {
                host_ip,
                host_port: Some(p.host_port),
                container_port: p.container_port,
                count,
                proto,
            });
        }
    }
    Ok(specs)
}

/// The endpoint name: the container's name when berth accepts it as one,
/// else the short container id.
fn endpoint_name(opts: &NetworkOptions) -> String {
    if names::check_name("endpoint", &opts.container_name).is_ok() {
        opts.container_name.clone()
    } else {
        opts.container_id.chars().take(12).collect()
    }
}

/// Attaches the container in `netns` to every requested network, in one
/// transaction: the networks Podman names are made with their first
/// container, and a failure takes back what the request made.
pub fn setup(
    ctx: &mut Context,
    netns: &str,
    opts: &NetworkOptions,
) -> Result<BTreeMap<String, StatusBlock>> {
    let attaches = check(opts)?;
    let ports = port_specs(opts.port_mappings.as_deref().unwrap_or_default())?;
    let target = ctx.kernel.resolve_target(netns)?;
    let dns_port = dns_port()?;
    let name = endpoint_name(opts);
    transaction(ctx, Preflight::Run, |txn| {
        if let Some(port) = dns_port {
            txn.apply(SetDnsPort(port))?;
        }
        // `podman network connect` asks for one more network of a running
        // container (same namespace), with all its ports again: they are
        // published already.
        let publish = txn.read(|tx| {
            Ok::<_, Error>(
                !tx.container_networks(&opts.container_id)?
                    .iter()
                    .any(|(_, ns)| *ns == target.key),
            )
        })?;
        let mut status = BTreeMap::new();
        for (i, a) in attaches.iter().enumerate() {
            txn.apply(EnsureNetwork::new(a.request(), podman_agreement(a)))?;
            // Podman's definition is current (`podman network update`
            // changes it before it tells netavark).
            txn.apply(super::update::SetDnsServers {
                network: a.network.clone(),
                servers: a.dns_servers.clone(),
            })?;
            forget_stale(txn, &a.network, &name, &opts.container_id)?;
            // netavark's words for an interface in the way, which Podman shows.
            if txn.ctx().kernel.link_exists_in(&target.path, &a.ifname)? {
                return Err(Error::invalid(format!(
                    "create veth pair: interface {} already exists on container namespace: Netlink error: File exists (os error 17)",
                    a.ifname
                )));
            }
            let attach = AttachRequest {
                aliases: aliases(opts, a, &name),
                network: a.network.clone(),
                target: netns.to_string(),
                name: Some(name.clone()),
                ips: a.ips.clone(),
                mac: a.mac,
                ifname: Some(a.ifname.clone()),
                // A host port can be published once: on the first network.
                ports: if i == 0 && publish {
                    ports.clone()
                } else {
                    Vec::new()
                },
                // Podman holds the host ports itself (conmon keeps them
                // open so nothing else takes them): that holder is the
                // container's own.
                force_publish: true,
                allow_host_netns: false,
                mark: Some(EndpointMark {
                    owner: Some(OWNER.into()),
                    container_id: Some(opts.container_id.clone()),
                }),
                metric: a.metric,
                attachment: None,
                // Podman 4's netavark requests carry no limits.
                bandwidth: Default::default(),
                // Podman has no per-container spelling for it: anti-spoofing
                // stays on, as for every endpoint.
                allow_spoofing: false,
            };
            let (e, n) = txn.apply(Attach(attach))?;
            status.insert(a.network.clone(), status_block(a, &e, &n));
        }
        Ok(status)
    })?
    .applied()
}

/// Podman's aliases (the container's short id among them) as names on
/// berth's DNS; one berth refuses is left out rather than failing the
/// container.
fn aliases(opts: &NetworkOptions, a: &PodmanNet, name: &str) -> Vec<String> {
    let mut aliases: Vec<String> = Vec::new();
    if !a.dns {
        return aliases;
    }
    let given = opts
        .networks
        .get(&a.network)
        .and_then(|n| n.aliases.clone())
        .unwrap_or_default();
    for alias in given {
        let mut with = aliases.clone();
        with.push(alias.clone());
        if crate::dns::check_aliases(name, &with).is_ok() {
            aliases = with;
        }
    }
    aliases
}

impl PodmanNet {
    /// The berth network Podman's definition describes.
    fn request(&self) -> NetworkRequest {
        let mut r = NetworkRequest::new(self.network.clone());
        // Empty with IPAM driver "none": a network without addresses.
        r.subnets = Some(
            self.subnets
                .iter()
                .map(|s| SubnetRequest::given(s.net, s.gateway))
                .collect(),
        );
        if self.driver.is_bridge() {
            r.bridge = Some(self.bridge.clone());
        }
        r.driver = self.driver.clone();
        r.mtu = self.mtu;
        r.internal = self.internal;
        r.dns = self.dns;
        r.owner = Some(OWNER.into());
        r
    }
}

/// An existing network serves Podman's only if Podman made it and it
/// still matches Podman's definition. A bridge the kernel lost (a reboot,
/// a hand) is rebuilt by the connect that follows, like any berth
/// network's.
fn podman_agreement(a: &PodmanNet) -> crate::commands::network::Agreement {
    let (name, ours, bridge, driver) = (
        a.network.clone(),
        a.subnets.clone(),
        a.bridge.clone(),
        a.driver.clone(),
    );
    Box::new(move |n: &Network, owner: Option<&str>| {
        if owner != Some(OWNER) {
            return Err(Error::invalid(format!(
                "berth already has a network {name:?} that Podman did not make; rename one of them"
            )));
        }
        if n.driver != driver {
            return Err(Error::invalid(format!(
                "network {name:?} is in use as {}, not {driver} as Podman now defines it; remove its containers first",
                n.driver
            )));
        }
        if n.subnets != ours || n.bridge != bridge {
            return Err(Error::invalid(format!(
                "network {name:?} is in use with {} bridge {}, not {} bridge {bridge} as Podman now defines it; remove its containers first",
                n.subnets_text(),
                n.bridge,
                Subnet::list_text(&ours),
            )));
        }
        Ok(())
    })
}

/// What Podman learns about one network: the interface with its MAC and
/// address, and (with `dns_enabled`) the gateway as DNS server.
fn status_block(a: &PodmanNet, e: &Endpoint, n: &Network) -> StatusBlock {
    let dns = |v: String| if a.dns { vec![v] } else { vec![] };
    StatusBlock {
        dns_search_domains: dns(DNS_DOMAIN.into()),
        // Every gateway, IPv4 first: berth's DNS server answers on each.
        dns_server_ips: if a.dns {
            n.gateways().iter().map(|g| g.to_string()).collect()
        } else {
            Vec::new()
        },
        interfaces: BTreeMap::from([(
            e.ifname.clone(),
            NetInterface {
                mac_address: e.mac.to_string(),
                subnets: e
                    .ips
                    .iter()
                    .filter_map(|ip| {
                        let s = n.subnet_holding(*ip)?;
                        Some(NetAddress {
                            ipnet: format!("{ip}/{}", s.net.prefix_len()),
                            gateway: s.gateway.map(|g| g.to_string()).unwrap_or_default(),
                        })
                    })
                    .collect(),
            },
        )]),
    }
}

/// The interface of the host's default route: the parent of a macvlan
/// or ipvlan network Podman gave none (`podman network create -d macvlan`
/// without `-o parent=`), as netavark picks it.
fn default_route_interface() -> Result<String> {
    let routes = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| Error::kernel("reading /proc/net/route", e))?;
    routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 7 && f[1] == "00000000" && f[7] == "00000000")
        .map(|f| f[0].to_string())
        .ok_or_else(|| {
            Error::invalid(
                "a macvlan/ipvlan network without a parent interface takes the host's default route's, and the host has no default route",
            )
        })
}

/// Podman's NETAVARK_DNS_PORT (set when something else holds port 53):
/// berth's DNS server listens on that port, and each DNS network's
/// gateway port 53 is redirected to it, as netavark does for aardvark-dns.
fn dns_port() -> Result<Option<u16>> {
    let Ok(value) = std::env::var("NETAVARK_DNS_PORT") else {
        return Ok(None);
    };
    let port: u16 = value.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
        Error::invalid(format!(
            "invalid NETAVARK_DNS_PORT {value:?}: expected a port number"
        ))
    })?;
    Ok(Some(port))
}

/// Records the DNS port. One port serves every network, so it changes
/// only while no network has DNS.
struct SetDnsPort(u16);

impl Change for SetDnsPort {
    type Output = ();

    fn prepare(&mut self, _ctx: &mut Context, tx: &Tx) -> Result<Prepared<()>> {
        let port = self.0;
        let current: u16 = tx
            .setting(crate::dns::PORT_SETTING)?
            .and_then(|p| p.parse().ok())
            .unwrap_or(53);
        if current != port {
            let with_dns = tx.networks()?.iter().filter(|n| n.policy.dns).count();
            if with_dns > 0 {
                return Err(Error::invalid(format!(
                    "NETAVARK_DNS_PORT {port} differs from the port berth's DNS server uses ({current}) for {with_dns} network(s); remove them first"
                )));
            }
            tx.set_setting(crate::dns::PORT_SETTING, &port.to_string())?;
        }
        // No kernel change: the setting is committed with the transaction.
        Ok(Prepared::Unchanged(()))
    }
}

/// Removes Podman's endpoint called `name` from `network` when it belongs
/// to another container id: Podman reuses a container name only for a
/// new container, so that container was removed without a teardown. (One
/// whose namespace died is settled by the attach itself, as for any
/// endpoint.)
fn forget_stale(txn: &mut Txn, network: &str, name: &str, container_id: &str) -> Result<()> {
    let stale = txn.read(|tx| {
        let Some(n) = tx.network(network)? else {
            return Ok(None);
        };
        Ok::<_, Error>(match tx.endpoint_named(n.id, name)? {
            Some((e, mark))
                if mark.owner.as_deref() == Some(OWNER)
                    && mark.container_id.as_deref() != Some(container_id) =>
            {
                Some(e.id)
            }
            _ => None,
        })
    })?;
    if let Some(id) = stale {
        txn.apply(Detach(DetachRequest::new(network, EndpointRef::Id(id))))?;
    }
    Ok(())
}

/// Detaches the container in `netns` from every named network and removes
/// each Podman network left without endpoints, in one transaction.
/// Idempotent, and it works after the namespace is gone; a failure on one
/// network does not stop the others.
pub fn teardown(ctx: &mut Context, netns: &str, opts: &NetworkOptions) -> Result<()> {
    let mut names: Vec<&String> = opts.networks.keys().collect();
    names.sort();
    transaction(ctx, Preflight::Run, |txn| {
        let mut first_error = None;
        for name in names {
            let one = (|| {
                if txn.read(|tx| tx.network(name))?.is_none() {
                    return Ok(());
                }
                let mut detach = DetachRequest::new(name, EndpointRef::Target(netns.to_string()));
                detach.force = true;
                txn.apply(Detach(detach))?;
                txn.apply(RemoveNetwork::if_unused(name, OWNER))?;
                Ok::<_, Error>(())
            })();
            if let Err(e) = one {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })?
    .applied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> NetworkOptions {
        serde_json::from_str(json).unwrap()
    }

    const TWO: &str = r#"{"container_id":"6150203fd468b28b","container_name":"c2",
      "port_mappings":[{"host_ip":"","container_port":80,"host_port":8081,"range":1,"protocol":"tcp"},
                       {"host_ip":"127.0.0.1","container_port":9000,"host_port":9100,"range":3,"protocol":"tcp,udp"}],
      "networks":{"n3":{"static_ips":["10.89.1.2"],"aliases":["foo"],"interface_name":"eth1"},
                  "n1":{"static_ips":["10.77.0.2"],"static_mac":"02:11:22:33:44:55","interface_name":"eth0"}},
      "network_info":{
        "n1":{"name":"n1","id":"cd71","driver":"bridge","network_interface":"podman1","created":"x",
              "subnets":[{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"}],"ipv6_enabled":false,
              "internal":false,"dns_enabled":true,"ipam_options":{"driver":"host-local"}},
        "n3":{"name":"n3","id":"c9bf","driver":"bridge","network_interface":"podman3",
              "subnets":[{"subnet":"10.89.1.0/24","gateway":"10.89.1.1"}],"internal":true,
              "dns_enabled":false,"options":{"isolate":"true","mtu":"1400"}}}}"#;

    #[test]
    fn request_is_checked_and_ordered_by_interface() {
        let a = check(&opts(TWO)).unwrap();
        assert_eq!(a[0].network, "n1");
        assert_eq!(a[0].bridge, "podman1");
        assert_eq!(a[0].ips, [IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2))]);
        assert_eq!(
            a[0].mac.map(|m| m.to_string()).as_deref(),
            Some("02:11:22:33:44:55")
        );
        assert!(a[0].dns && !a[0].internal && a[0].mtu.is_none());
        assert_eq!(a[1].network, "n3");
        assert!(a[1].internal && !a[1].dns);
        assert_eq!(a[1].mtu, Some(1400));
    }

    #[test]
    fn ports_become_specs_one_per_protocol() {
        let o = opts(TWO);
        let want: Vec<PortSpec> = [
            "0.0.0.0:8081:80/tcp",
            "127.0.0.1:9100-9102:9000-9002/tcp",
            "127.0.0.1:9100-9102:9000-9002/udp",
        ]
        .iter()
        .map(|p| PortSpec::parse(p).unwrap())
        .collect();
        assert_eq!(
            port_specs(o.port_mappings.as_deref().unwrap()).unwrap(),
            want
        );
    }

    #[test]
    fn interface_order_is_natural() {
        let mut v = vec!["eth10", "eth2", "eth0"];
        v.sort_by_key(|i| natural(i));
        assert_eq!(v, ["eth0", "eth2", "eth10"]);
    }

    #[test]
    fn unsupported_requests_are_refused() {
        for (from, to, needle) in [
            (
                r#""driver":"bridge","network_interface":"podman1""#,
                r#""driver":"macvlan","network_interface":"podman1","options":{"mode":"l3"}"#,
                "unknown macvlan mode",
            ),
            (
                r#""driver":"bridge","network_interface":"podman1""#,
                r#""driver":"weird","network_interface":"podman1""#,
                "unknown network driver",
            ),
            (r#""10.77.0.2""#, r#""fd00::2""#, "fd00::2 is in none"),
            (
                r#""10.77.0.2""#,
                r#""10.77.0.2","10.77.0.3""#,
                "more than one address in subnet 10.77.0.0/24",
            ),
            (
                r#""10.77.0.2""#,
                r#""10.77.0.2","fd00::2""#,
                "fd00::2 is in none",
            ),
            (
                r#"{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"}"#,
                r#"{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"},{"subnet":"10.78.0.0/24"}"#,
                "more than one IPv4 subnet",
            ),
            (
                r#"{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"}"#,
                r#"{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"},{"subnet":"fd00::/64"}"#,
                "no static_ips address in subnet fd00::/64",
            ),
            (
                r#""gateway":"10.77.0.1""#,
                r#""gateway":"fd00::1""#,
                "not a host address",
            ),
            (
                r#""ipam_options":{"driver":"host-local"}"#,
                r#""ipam_options":{"driver":"dhcp"}"#,
                "unsupported ipam driver dhcp",
            ),
            (r#""mtu":"1400""#, r#""mtu":"big""#, "invalid mtu"),
            (
                r#""mtu":"1400""#,
                r#""mtu":"1400","metric":"-1""#,
                "invalid metric",
            ),
        ] {
            let json = TWO.replacen(from, to, 1);
            assert_ne!(json, TWO, "{from}");
            let err = check(&opts(&json)).unwrap_err().to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
        let bad = TWO.replace(r#""protocol":"tcp,udp""#, r#""protocol":"tcp,icmp""#);
        let o = opts(&bad);
        let err = port_specs(o.port_mappings.as_deref().unwrap()).unwrap_err();
        assert!(err.to_string().contains("icmp"), "{err}");
    }

    /// setup and teardown against the fake kernel: both networks made with
    /// the first container, the ports on the first network only, and the
    /// last teardown takes the networks away again.
    #[test]
    fn setup_attaches_every_network_in_one_transaction_and_teardown_undoes_it() {
        let mut h = crate::commands::tests::host();
        h.fake().add_namespace("/run/netns/p1");
        let o = opts(TWO);
        let status = setup(&mut h.ctx, "/run/netns/p1", &o).unwrap();
        assert_eq!(status.len(), 2);
        assert_eq!(
            status["n1"].interfaces["eth0"].subnets[0].ipnet,
            "10.77.0.2/24"
        );
        assert_eq!(status["n1"].dns_search_domains, ["dns.podman"]);
        assert!(status["n3"].dns_server_ips.is_empty());
        assert_eq!(
            h.rows(),
            [
                "network n1 10.77.0.0/24 ready",
                "network n3 10.89.1.0/24 ready",
                "endpoint n1/c2 10.77.0.2 ready",
                "endpoint n3/c2 10.89.1.2 ready"
            ]
        );
        let published = h.fake().nft_elements.len();
        assert!(published > 0);
        // The same again (Podman retrying) is refused for the namespace
        // that is connected already, and leaves everything as it was.
        assert!(setup(&mut h.ctx, "/run/netns/p1", &o).is_err());
        assert_eq!(h.rows().len(), 4);
        assert_eq!(h.fake().nft_elements.len(), published);

        teardown(&mut h.ctx, "/run/netns/p1", &o).unwrap();
        assert!(h.rows().is_empty(), "{:?}", h.rows());
        assert!(h.host_links().is_empty());
        // Idempotent, and fine after the namespace is gone.
        crate::kernel::Kernel::delete_netns(h.fake(), "p1").unwrap();
        teardown(&mut h.ctx, "/run/netns/p1", &o).unwrap();
    }

    /// Every network that is not internal gives its own default route,
    /// with its metric (100 unless the options name one), as netavark does.
    #[test]
    fn each_network_gives_a_default_route_with_its_metric() {
        let mut h = crate::commands::tests::host();
        h.fake().add_namespace("/run/netns/p1");
        let two = TWO
            .replace(r#""internal":true"#, r#""internal":false"#)
            .replace(r#""mtu":"1400""#, r#""mtu":"1400","metric":"200""#);
        let o = opts(&two);
        let nets = check(&o).unwrap();
        assert_eq!(
            nets.iter().map(|n| n.metric).collect::<Vec<_>>(),
            [Some(100), Some(200)]
        );
        setup(&mut h.ctx, "/run/netns/p1", &o).unwrap();
        let mut gws: Vec<String> = h
            .fake()
            .default_routes
            .iter()
            .filter(|(n, _)| n.as_deref() == Some(std::path::Path::new("/run/netns/p1")))
            .map(|(_, gw)| gw.to_string())
            .collect();
        gws.sort();
        assert_eq!(gws, ["10.77.0.1", "10.89.1.1"]);
    }

    /// netavark's `metric.json`: a dual-stack network, one address per
    /// family, a default route per family, both in the StatusBlock.
    const DUAL: &str = r#"{"container_id":"bc14fe7cd3633e7b","container_name":"metrictest",
      "networks":{"metric":{"interface_name":"eth1","static_ips":["fde0::2","10.89.0.2"]}},
      "network_info":{"metric":{"dns_enabled":true,"driver":"bridge","id":"7ba4","internal":false,
        "ipv6_enabled":true,"name":"metric","network_interface":"metric",
        "subnets":[{"subnet":"fde0::/64","gateway":"fde0::1"},{"gateway":"10.89.0.1","subnet":"10.89.0.0/24"}],
        "options":{"metric":"200"}}},
      "port_mappings":[{"host_ip":"","container_port":80,"host_port":8080,"range":1,"protocol":"tcp"},
                       {"host_ip":"fde0::1","container_port":81,"host_port":8081,"range":1,"protocol":"udp"}]}"#;

    #[test]
    fn a_dual_stack_network_gives_both_families() {
        let mut h = crate::commands::tests::host();
        h.fake().add_namespace("/run/netns/p1");
        let o = opts(DUAL);
        let nets = check(&o).unwrap();
        // IPv4 first whatever Podman's order, each address with its subnet.
        assert_eq!(
            nets[0]
                .subnets
                .iter()
                .map(|s| s.net.to_string())
                .collect::<Vec<_>>(),
            ["10.89.0.0/24", "fde0::/64"]
        );
        assert_eq!(
            nets[0].ips,
            [
                "10.89.0.2".parse::<IpAddr>().unwrap(),
                "fde0::2".parse().unwrap()
            ]
        );
        let status = setup(&mut h.ctx, "/run/netns/p1", &o).unwrap();
        let st = &status["metric"];
        let got: Vec<(&str, &str)> = st.interfaces["eth1"]
            .subnets
            .iter()
            .map(|a| (a.ipnet.as_str(), a.gateway.as_str()))
            .collect();
        assert_eq!(
            got,
            [("10.89.0.2/24", "10.89.0.1"), ("fde0::2/64", "fde0::1")]
        );
        assert_eq!(st.dns_server_ips, ["10.89.0.1", "fde0::1"]);
        assert_eq!(
            h.rows(),
            [
                "network metric 10.89.0.0/24,fde0::/64 ready",
                "endpoint metric/metrictest 10.89.0.2,fde0::2 ready"
            ]
        );
        let p1 = Some(std::path::PathBuf::from("/run/netns/p1"));
        let fake = h.fake();
        assert!(fake
            .default_routes
            .iter()
            .any(|r| r.0 == p1 && r.1.to_string() == "10.89.0.1"));
        assert!(fake
            .default_routes6
            .iter()
            .any(|r| r.0 == p1 && r.1.to_string() == "fde0::1"));
        assert!(fake
            .addrs6
            .iter()
            .any(|(n, a)| *n == p1 && a.ip.to_string() == "fde0::2" && a.prefix_len == 64));
        assert!(fake
            .addrs6
            .iter()
            .any(|(n, a)| n.is_none() && a.ip.to_string() == "fde0::1"));

        // The same network again with Podman's subnets changed is refused,
        // naming both.
        h.fake().add_namespace("/run/netns/p2");
        let other = DUAL
            .replace("fde0::", "fde1::")
            .replace("bc14fe7cd3633e7b", "aa14fe7cd3633e7b")
            .replace("metrictest", "other");
        let err = setup(&mut h.ctx, "/run/netns/p2", &opts(&other))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fde0::/64 via fde0::1") && err.contains("fde1::/64 via fde1::1"),
            "{err}"
        );

        teardown(&mut h.ctx, "/run/netns/p1", &o).unwrap();
        assert!(h.rows().is_empty(), "{:?}", h.rows());
        assert!(h.host_links().is_empty());
    }

    /// IPAM driver "none", bridge and macvlan: the interface without
    /// addresses or routes, and teardown takes it all back.
    #[test]
    fn ipam_none_sets_up_an_interface_without_addresses() {
        for driver in ["bridge", "macvlan"] {
            let mut h = crate::commands::tests::host();
            h.fake().add_namespace("/run/netns/p1");
            if driver == "macvlan" {
                h.fake().add_host_link("dummy0", "veth", 0);
            }
            let json = format!(
                r#"{{"container_id":"someID","container_name":"someName",
                "networks":{{"podman":{{"interface_name":"eth0"}}}},
                "network_info":{{"podman":{{"name":"podman","id":"2f25","driver":"{driver}",
                  "network_interface":"dummy0","subnets":[],"ipv6_enabled":false,"internal":false,
                  "dns_enabled":true,"ipam_options":{{"driver":"none"}}}}}}}}"#
            );
            let o = opts(&json);
            let status = setup(&mut h.ctx, "/run/netns/p1", &o).unwrap();
            let eth0 = &status["podman"].interfaces["eth0"];
            assert!(eth0.subnets.is_empty(), "{driver}: {eth0:?}");
            assert!(!eth0.mac_address.is_empty());
            // Podman asked for DNS, but there is no gateway to answer on.
            assert!(status["podman"].dns_server_ips.is_empty());
            assert!(status["podman"].dns_search_domains.is_empty());
            assert_eq!(
                h.rows(),
                ["network podman  ready", "endpoint podman/someName  ready"],
                "{driver}"
            );
            let p1 = Some(std::path::PathBuf::from("/run/netns/p1"));
            let fake = h.fake();
            assert!(!fake.addrs.iter().any(|(n, _)| *n == p1), "{driver}");
            assert!(!fake.addrs6.iter().any(|(n, _)| *n == p1), "{driver}");
            assert!(
                !fake.default_routes.iter().any(|(n, _)| *n == p1),
                "{driver}"
            );
            assert!(
                !fake.default_routes6.iter().any(|(n, _)| *n == p1),
                "{driver}"
            );
            teardown(&mut h.ctx, "/run/netns/p1", &o).unwrap();
            assert!(h.rows().is_empty(), "{driver}: {:?}", h.rows());
        }
    }

    #[test]
    fn a_failed_setup_takes_back_the_networks_it_made() {
        let mut h = crate::commands::tests::host();
        h.fake().add_namespace("/run/netns/p1");
        // The second network's address is its gateway's, which the
        // attach refuses after the first network is made and attached.
        let bad = TWO.replace(r#""10.89.1.2""#, r#""10.89.1.1""#);
        let err = setup(&mut h.ctx, "/run/netns/p1", &opts(&bad)).unwrap_err();
        assert!(err.to_string().contains("10.89.1.1"), "{err}");
        assert!(h.rows().is_empty(), "{:?}", h.rows());
        assert!(h.host_links().is_empty());
    }
}
