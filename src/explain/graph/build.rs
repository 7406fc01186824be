//! From the state's rows and the host's facts to a [`Graph`]: pure, so
//! the picture of any host can be checked without one.

use std::collections::HashMap;

use super::model::{EndpointNode, Flags, Graph, NetworkNode, Port, Uplink};
use crate::kernel::NetnsFacts;
use crate::model::{Endpoint, Network, PortMapping};
use crate::store::{Owners, Status};

/// What the state says: networks, endpoints (ports loaded) with their
/// row status, and who made which.
pub struct Rows {
    pub networks: Vec<Network>,
    pub endpoints: Vec<(Endpoint, Status)>,
    pub owners: Owners,
}

/// The graph of `rows` on a host with `facts` (None: not read).
pub fn graph(rows: &Rows, facts: Option<&NetnsFacts>) -> Graph {
    let up: HashMap<&str, bool> = facts
        .map(|f| f.links.iter().map(|l| (l.name.as_str(), l.up)).collect())
        .unwrap_or_default();
    let link_state = |name: &str| facts.map(|_| up.get(name).copied().unwrap_or(false));
    let mut by_network: HashMap<&str, Vec<EndpointNode>> = HashMap::new();
    for (e, status) in &rows.endpoints {
        let Some(n) = rows.networks.iter().find(|n| n.name == e.network) else {
            continue;
        };
        let mark = rows
            .owners
            .endpoints
            .get(&e.id)
            .cloned()
            .unwrap_or_default();
        let status = match status {
            Status::Creating => "creating",
            Status::Removing => "removing",
            Status::Ready if e.has_veth() && link_state(&e.host_ifname) == Some(false) => {
                "veth gone"
            }
            Status::Ready => "up",
        };
        by_network
            .entry(&e.network)
            .or_default()
            .push(EndpointNode {
                name: e.name.clone(),
                netns: e.netns.clone(),
                netns_key: match e.netns_inode {
                    0 => format!("name:{}", e.netns),
                    inode => format!("inode:{inode}"),
                },
                ifname: e.ifname.clone(),
                address: e.cidrs_text(n),
                mac: e.mac.to_string(),
                host_ifname: e.host_ifname.clone(),
                owner: mark.owner,
                container: mark
                    .container_id
                    .map(|c| c.chars().take(12).collect::<String>()),
                status: status.to_string(),
                ports: e.ports.iter().map(port).collect(),
            });
    }
    let networks = rows
        .networks
        .iter()
        .map(|n| NetworkNode {
            name: n.name.clone(),
            // A macvlan/ipvlan network hangs off its parent instead.
            bridge: match n.driver.parent() {
                Some(_) => n.driver.to_string(),
                None => n.bridge.clone(),
            },
            subnet: n
                .subnets
                .iter()
                .map(|s| s.net.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            gateway: n.gateways_text(),
            bridge_up: link_state(n.driver.parent().unwrap_or(&n.bridge)),
            owner: rows.owners.networks.get(&n.name).cloned(),
            flags: Flags {
                internal: n.policy.internal,
                no_icc: !n.policy.icc,
                no_masquerade: !n.policy.masquerade,
                deny_egress: n.policy.deny_egress.iter().map(|d| d.to_string()).collect(),
                no_host_access: !n.policy.host_access,
                dns: n.policy.dns,
                uplink: n
                    .policy
                    .uplink
                    .as_ref()
                    .map(|u| (u.ifname.clone(), u.gateway.to_string())),
            },
            endpoints: by_network.remove(n.name.as_str()).unwrap_or_default(),
            hidden: 0,
            hidden_ports: 0,
        })
        .collect();
    Graph {
        no_state: None,
        facts_missing: None,
        uplinks: uplinks(&rows.networks, facts),
        networks,
    }
}

fn port(m: &PortMapping) -> Port {
    let range = |first: u16, last: u16| match first == last {
        true => first.to_string(),
        false => format!("{first}-{last}"),
    };
    Port {
        host: format!("{}:{}", m.host_ip_text(), range(m.host_port, m.host_last())),
        inside: format!(
            "{}/{}",
            range(m.container_port, m.container_last()),
            m.proto.as_str()
        ),
    }
}

/// The interfaces of the host's default routes (the link whose own
/// prefix holds the gateway) and of the networks' `--uplink`s.
fn uplinks(networks: &[Network], facts: Option<&NetnsFacts>) -> Vec<Uplink> {
    let mut out: Vec<Uplink> = Vec::new();
    // IPv4 first, then the IPv6 ones a peer can reach (link-local
    // addresses are on every link and say nothing).
    let addresses_of = |index: u32| -> Vec<String> {
        facts
            .map(|f| {
                let v4 = f
                    .addrs
                    .iter()
                    .filter(|a| a.index == index)
                    .map(|a| format!("{}/{}", a.ip, a.prefix_len));
                let v6 = f
                    .addrs6
                    .iter()
                    .filter(|a| a.index == index && !is_link_local(a.ip))
                    .map(|a| format!("{}/{}", a.ip, a.prefix_len));
                v4.chain(v6).collect()
            })
            .unwrap_or_default()
    };
    if let Some(f) = facts {
        for gw in &f.default_gateways {
            let holder = f.addrs.iter().find(|a| {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(a.prefix_len))
                    .unwrap_or(0);
                u32::from(a.ip) & mask == u32::from(*gw) & mask
            });
            let Some(link) = holder.and_then(|a| f.links.iter().find(|l| l.index == a.index))
            else {
                continue;
            };
            if out.iter().any(|u| u.ifname == link.name) {
                continue;
            }
            out.push(Uplink {
                ifname: link.name.clone(),
                addresses: addresses_of(link.index),
                default_via: Some(gw.to_string()),
                networks: Vec::new(),
                up: Some(link.up),
            });
        }
        // An IPv6 default route via a global gateway: the link whose own
        // prefix holds it (a link-local gateway names no link by itself).
        for gw in &f.default_gateways6 {
            let gw = std::net::IpAddr::V6(*gw);
            let holder = f.addrs6.iter().find(|a| {
                !is_link_local(a.ip)
                    && ipnet::IpNet::new(a.ip, a.prefix_len).is_ok_and(|n| n.contains(&gw))
            });
            let Some(link) = holder.and_then(|a| f.links.iter().find(|l| l.index == a.index))
            else {
                continue;
            };
            match out.iter_mut().find(|u| u.ifname == link.name) {
                Some(u) => {
                    let via = u.default_via.take();
                    u.default_via = Some(match via {
                        Some(v4) => format!("{v4}, {gw}"),
                        None => gw.to_string(),
                    });
                }
                None => out.push(Uplink {
                    ifname: link.name.clone(),
                    addresses: addresses_of(link.index),
                    default_via: Some(gw.to_string()),
                    networks: Vec::new(),
                    up: Some(link.up),
                }),
            }
        }
    }
    for n in networks {
        let Some(u) = &n.policy.uplink else { continue };
        let i = match out.iter().position(|o| o.ifname == u.ifname) {
            Some(i) => i,
            None => {
                let link = facts.and_then(|f| f.links.iter().find(|l| l.name == u.ifname));
                out.push(Uplink {
                    ifname: u.ifname.clone(),
                    addresses: link.map(|l| addresses_of(l.index)).unwrap_or_default(),
                    default_via: None,
                    networks: Vec::new(),
                    up: facts.map(|_| link.is_some_and(|l| l.up)),
                });
                out.len() - 1
            }
        };
        out[i].networks.push(n.name.clone());
    }
    out
}

/// fe80::/10.
fn is_link_local(ip: std::net::IpAddr) -> bool {
    matches!(ip, std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}
