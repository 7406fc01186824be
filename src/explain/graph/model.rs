//! The picture `berth graph` draws, as plain data: the host and its
//! uplinks, the networks with their endpoints, the published ports, and
//! which namespaces sit on several networks. Built from the state (and a
//! few kernel facts) by `build`, trimmed by [`Graph::collapse`] for large
//! hosts, and drawn by the three renderers, which decide nothing of their
//! own about what is there.

/// Endpoints a network shows before the rest are summarised.
pub const DEFAULT_LIMIT: usize = 12;
/// How many of a summarised network's endpoints are still shown.
pub const SHOWN_WHEN_COLLAPSED: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// Set when berth has no state yet (nothing made so far): the path.
    pub no_state: Option<String>,
    /// Set when the kernel facts (links, addresses, routes) could not be
    /// read: why. Link states are then unknown.
    pub facts_missing: Option<String>,
    pub uplinks: Vec<Uplink>,
    pub networks: Vec<NetworkNode>,
}

/// A host interface traffic leaves by: the one the default route uses,
/// or a network's `--uplink`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uplink {
    pub ifname: String,
    /// `10.1.0.5/24`, as the host holds them.
    pub addresses: Vec<String>,
    /// The host's default route goes through it, via this gateway.
    pub default_via: Option<String>,
    /// Networks whose traffic leaves here by policy routing (`--uplink`).
    pub networks: Vec<String>,
    /// None when the link was not found (or not looked at).
    pub up: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkNode {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    /// None when the bridge's state is unknown; Some(false) when it is
    /// missing or down.
    pub bridge_up: Option<bool>,
    /// `podman`, `cni`, or None for berth's own.
    pub owner: Option<String>,
    pub flags: Flags,
    pub endpoints: Vec<EndpointNode>,
    /// Endpoints left out by [`Graph::collapse`].
    pub hidden: usize,
    /// Published mappings of the endpoints left out.
    pub hidden_ports: usize,
}

/// A network's options that change who may talk to whom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub internal: bool,
    pub no_icc: bool,
    pub no_masquerade: bool,
    pub deny_egress: Vec<String>,
    pub no_host_access: bool,
    pub dns: bool,
    /// `--uplink IFACE` and its gateway.
    pub uplink: Option<(String, String)>,
}

impl Flags {
    /// The flags as short words, in a fixed order.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.internal {
            w.push("internal".to_string());
        } else if self.no_masquerade {
            w.push("no-nat".to_string());
        }
        if self.no_icc {
            w.push("no-icc".to_string());
        }
        for d in &self.deny_egress {
            w.push(format!("deny-egress {d}"));
        }
        if self.no_host_access {
            w.push("no-host-access".to_string());
        }
        if self.dns {
            w.push("dns".to_string());
        }
        if let Some((ifname, gw)) = &self.uplink {
            w.push(format!("uplink {ifname} via {gw}"));
        }
        w
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointNode {
    pub name: String,
    /// The namespace as the user named it.
    pub netns: String,
    /// What tells namespaces apart (their inode, else their name): two
    /// endpoints with the same key are one namespace on two networks.
    pub netns_key: String,
    pub ifname: String,
    /// `10.90.0.2/24`.
    pub address: String,
    pub mac: String,
    pub host_ifname: String,
    pub owner: Option<String>,
    /// The runtime's container id, shortened to 12 characters.
    pub container: Option<String>,
    /// `up`, or what is wrong: `veth gone`, `creating`, `removing`.
    pub status: String,
    pub ports: Vec<Port>,
}

impl EndpointNode {
    /// `podman 0123456789ab`, `cni`, or None for berth's own.
    pub fn owner_label(&self) -> Option<String> {
        match (&self.owner, &self.container) {
            (Some(o), Some(c)) => Some(format!("{o} {c}")),
            (Some(o), None) => Some(o.clone()),
            (None, _) => None,
        }
    }

    /// The address without its prefix length.
    pub fn ip(&self) -> &str {
        self.address.split('/').next().unwrap_or(&self.address)
    }
}

/// One published mapping: host address and port(s) to the endpoint's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// `0.0.0.0:8080` or `127.0.0.1:9000-9002`.
    pub host: String,
    /// `80/tcp` or `9000-9002/udp`.
    pub inside: String,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.host, self.inside)
    }
}

/// A namespace on several networks, drawn once: where each of its
/// endpoints is, as (network index, endpoint index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    pub netns: String,
    pub at: Vec<(usize, usize)>,
}

impl Graph {
    pub fn endpoint_count(&self) -> usize {
        self.networks
            .iter()
            .map(|n| n.endpoints.len() + n.hidden)
            .sum()
    }

    /// Past `limit` endpoints, a network keeps its first few and counts
    /// the rest; `None` keeps everything (`--all`).
    pub fn collapse(&mut self, limit: Option<usize>) {
        let Some(limit) = limit else { return };
        let keep = SHOWN_WHEN_COLLAPSED.min(limit);
        for n in &mut self.networks {
            if n.endpoints.len() > limit {
                n.hidden += n.endpoints.len() - keep;
                n.hidden_ports += n.endpoints[keep..]
                    .iter()
                    .map(|e| e.ports.len())
                    .sum::<usize>();
                n.endpoints.truncate(keep);
            }
        }
    }

    /// Namespaces with endpoints shown on more than one network, in the
    /// order of their first endpoint.
    pub fn shared(&self) -> Vec<Shared> {
        let mut order: Vec<String> = Vec::new();
        let mut at: std::collections::HashMap<&str, Vec<(usize, usize)>> = Default::default();
        for (ni, n) in self.networks.iter().enumerate() {
            for (ei, e) in n.endpoints.iter().enumerate() {
                let v = at.entry(e.netns_key.as_str()).or_default();
                if v.is_empty() {
                    order.push(e.netns_key.clone());
                }
                v.push((ni, ei));
            }
        }
        order
            .into_iter()
            .filter_map(|key| {
                let places = at.remove(key.as_str())?;
                if places.len() < 2 {
                    return None;
                }
                let (ni, ei) = places[0];
                Some(Shared {
                    netns: self.networks[ni].endpoints[ei].netns.clone(),
                    at: places,
                })
            })
            .collect()
    }

    /// Whether the endpoint at (network, endpoint) belongs to a namespace
    /// drawn once for several networks.
    pub fn is_shared(shared: &[Shared], ni: usize, ei: usize) -> bool {
        shared.iter().any(|s| s.at.contains(&(ni, ei)))
    }

    /// Every shown published port with the endpoint it leads to.
    pub fn ports(&self) -> Vec<(&Port, &EndpointNode)> {
        self.networks
            .iter()
            .flat_map(|n| n.endpoints.iter())
            .flat_map(|e| e.ports.iter().map(move |p| (p, e)))
            .collect()
    }

    /// One sentence on how berth separates networks, or None when there
    /// is nothing to separate.
    pub fn isolation_note(&self) -> Option<String> {
        if self.networks.len() < 2 {
            return None;
        }
        Some(
            "networks are isolated from each other: only a namespace with an endpoint on both reaches both"
                .to_string(),
        )
    }
}

/// The command that lists what a collapsed network leaves out.
pub fn more_hint(network: &str) -> String {
    format!("berth ps --filter network={network}")
}

/// `... and 992 more`, with the ports they publish when there are any.
pub fn more_label(n: &NetworkNode) -> String {
    match n.hidden_ports {
        0 => format!("... and {} more", n.hidden),
        p => format!("... and {} more, {p} published port(s)", n.hidden),
    }
}
