//! `berth inspect TARGET`: one namespace in one view, as the kernel has it
//! (links, addresses, routes, neighbours) and as berth knows it (its
//! endpoints there, their published ports, their DNS names and the
//! resolver they would use). TARGET resolves as `exec`'s does.

use serde::Serialize;

use crate::commands::run::exec_target;
use crate::context::Context;
use crate::error::Result;
use crate::kernel::NetnsDetails;
use crate::model::Endpoint;

#[derive(Clone, Debug, Serialize)]
pub struct LinkView {
    pub name: String,
    pub kind: String,
    pub state: String,
    pub mac: Option<String>,
    pub mtu: u32,
    /// The other end of a veth: its name when berth knows it, else
    /// `ifINDEX` (in the namespace with that netnsid, when not this one).
    pub peer: Option<String>,
    pub master: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AddrView {
    pub dev: String,
    pub address: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    /// As `ip route` spells it: `default via 10.90.0.1 dev eth0`.
    pub route: String,
    pub table: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct NeighbourView {
    pub address: String,
    pub mac: Option<String>,
    pub dev: String,
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointInfo {
    pub network: String,
    pub name: String,
    pub address: String,
    pub mac: String,
    pub ifname: String,
    pub host_ifname: String,
    pub gateway: String,
    pub ports: Vec<String>,
    /// The names berth's DNS server answers with this endpoint's address
    /// (empty when its network has no DNS).
    pub dns_names: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub target: String,
    pub netns: String,
    pub inode: Option<u64>,
    pub links: Vec<LinkView>,
    pub addresses: Vec<AddrView>,
    pub routes: Vec<RouteView>,
    pub neighbours: Vec<NeighbourView>,
    pub endpoints: Vec<EndpointInfo>,
    pub published_ports: Vec<String>,
    /// berth's DNS server this namespace would ask (`exec --dns`, `run`):
    /// `GATEWAY:53`; None when none of its networks has DNS.
    pub resolver: Option<String>,
}

/// Reads the namespace TARGET names and what berth knows of it.
pub fn inspect(ctx: &mut Context, text: &str) -> Result<Inspection> {
    let target = exec_target(ctx, text)?;
    let details = ctx.kernel.netns_details(Some(&target.path))?;
    let mut endpoints: Vec<(Endpoint, crate::model::Network, Vec<String>)> = Vec::new();
    let mut resolver = None;
    if let (Some(inode), Some(mut store)) = (target.inode, ctx.store_read_only()?) {
        let tx = store.read()?;
        let mut rows = tx.endpoints_by_inode(inode)?;
        tx.load_ports(&mut rows)?;
        for e in rows {
            let Some(n) = tx.network(&e.network)? else {
                continue;
            };
            let names = if n.policy.dns {
                let own = e.name.to_lowercase();
                let aliases = tx.aliases_of(e.id)?;
                std::iter::once(own.clone())
                    .chain(aliases.into_iter().filter(|a| *a != own))
                    .collect()
            } else {
                Vec::new()
            };
            endpoints.push((e, n, names));
        }
        let gateways = tx.dns_gateways_of_netns(inode)?;
        resolver = (!gateways.is_empty()).then(|| {
            let each: Vec<String> = gateways
                .iter()
                .map(|g| std::net::SocketAddr::new(*g, 53).to_string())
                .collect();
            each.join(", ")
        });
    }
    Ok(view(text, &target, &details, &endpoints, resolver))
}

fn view(
    text: &str,
    target: &crate::kernel::Target,
    d: &NetnsDetails,
    endpoints: &[(Endpoint, crate::model::Network, Vec<String>)],
    resolver: Option<String>,
) -> Inspection {
    let name_of = |i: u32| {
        d.link_name(i)
            .map(str::to_string)
            .unwrap_or_else(|| format!("if{i}"))
    };
    let links = d
        .links
        .iter()
        .map(|l| {
            let peer = l.peer_index.map(|p| {
                let berths = endpoints
                    .iter()
                    .find(|(e, _, _)| e.ifname == l.name)
                    .map(|(e, _, _)| e.host_ifname.clone());
                match (berths, l.peer_netnsid) {
                    (Some(host), Some(_)) => format!("{host} (host)"),
                    (None, Some(id)) => format!("if{p} (netnsid {id})"),
                    (_, None) => name_of(p),
                }
            });
            LinkView {
                name: l.name.clone(),
                kind: if l.kind.is_empty() && l.name == "lo" {
                    "loopback".into()
                } else {
                    l.kind.clone()
                },
                state: l.state.clone(),
                mac: l.mac.map(|m| m.to_string()),
                mtu: l.mtu,
                peer,
                master: l.master.map(name_of),
            }
        })
        .collect();
    let addresses = d
        .addrs
        .iter()
        .map(|a| AddrView {
            dev: name_of(a.index),
            address: format!("{}/{}", a.ip, a.prefix_len),
        })
        .collect();
    let routes = d
        .routes
        .iter()
        .filter(|r| r.table != 255)
        .map(|r| {
            let dst = match r.dst {
                Some(dst) if r.prefix_len > 0 => format!("{dst}/{}", r.prefix_len),
                _ => "default".to_string(),
            };
            let mut route = if r.kind == "unicast" {
                dst
            } else {
                format!("{} {dst}", r.kind)
            };
            if let Some(g) = r.gateway {
                route.push_str(&format!(" via {g}"));
            }
            if let Some(i) = r.oif {
                route.push_str(&format!(" dev {}", name_of(i)));
            }
            if let Some(m) = r.metric {
                route.push_str(&format!(" metric {m}"));
            }
            RouteView {
                route,
                table: r.table,
            }
        })
        .collect();
    let neighbours = d
        .neighbours
        .iter()
        .map(|n| NeighbourView {
            address: n.ip.to_string(),
            mac: n.mac.map(|m| m.to_string()),
            dev: name_of(n.index),
            state: n.state.clone(),
        })
        .collect();
    let mut published = Vec::new();
    let infos = endpoints
        .iter()
        .map(|(e, n, names)| {
            let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
            published.extend(ports.iter().map(|p| format!("{p} ({})", e.name)));
            EndpointInfo {
                network: n.name.clone(),
                name: e.name.clone(),
                address: e.cidrs_text(n),
                mac: e.mac.to_string(),
                ifname: e.ifname.clone(),
                host_ifname: e.host_ifname.clone(),
                gateway: n.gateways_text(),
                ports,
                dns_names: names.clone(),
            }
        })
        .collect();
    Inspection {
        target: text.to_string(),
        netns: target.path.display().to_string(),
        inode: target.inode,
        links,
        addresses,
        routes,
        neighbours,
        endpoints: infos,
        published_ports: published,
        resolver,
    }
}
