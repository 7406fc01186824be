//! Pure types and validation: networks, endpoints, subnets, names, MACs and
//! address allocation. Nothing here touches the kernel or the database.

pub mod bandwidth;
pub mod driver;
pub mod ipam;
pub mod mac;
pub mod names;
pub mod ports;
pub mod subnet;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

pub use bandwidth::{Bandwidth, Limit};
pub use driver::{Driver, IpvlanMode, MacvlanMode};
pub use mac::Mac;
pub use ports::{PortMapping, PortSpec, PortView, Proto};
pub use subnet::{Families, Family, IpNet, Ipv4Net, Ipv6Net, Subnet};

/// Default MTU of a network's bridge and veths.
pub const DEFAULT_MTU: u32 = 1500;

/// A bridge network: its subnets (at most one per family, IPv4 first;
/// none at all for a network whose addresses are not berth's to manage),
/// their gateways on a bridge, and the endpoints connected to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub id: i64,
    pub name: String,
    pub subnets: Vec<Subnet>,
    pub bridge: String,
    pub mtu: u32,
    /// Link group of the network's host-side veths, so that all of them can
    /// be deleted in one kernel request.
    pub link_group: u32,
    /// berth's own routing table for the network (used with `--uplink`).
    pub route_table: u32,
    /// What the firewall lets the network do.
    pub policy: NetworkPolicy,
    /// A bridge of berth's, or macvlan/ipvlan children of a host
    /// interface; for the latter, `bridge` is a reserved name only (no
    /// device), and the firewall, DNS and ports are not offered.
    pub driver: Driver,
}

/// A network's firewall and routing options (`network create` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Masquerade traffic leaving through anything but the bridge.
    pub masquerade: bool,
    /// Containers of the network may reach each other.
    pub icc: bool,
    /// Nothing leaves beyond the host; endpoints get no default route.
    pub internal: bool,
    /// Destinations the network's traffic is rejected to (both families).
    pub deny_egress: Vec<IpNet>,
    /// Where the network's traffic leaves, by policy routing.
    pub uplink: Option<Uplink>,
    /// Log (rate-limited) what the firewall drops for the network.
    pub log_drops: bool,
    /// berth's DNS server answers for the network's names on its gateway.
    pub dns: bool,
    /// Routed setups (`--cluster-cidr`, CNI `clusterCIDR`): the network's
    /// traffic to these ranges is not masqueraded, and new connections from
    /// them are let in, so pods on other nodes see each other's addresses.
    pub cluster_cidrs: Vec<IpNet>,
    /// Containers may reach the host's own services (Docker's default);
    /// `--no-host-access` leaves them DNS on their gateway only.
    pub host_access: bool,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            masquerade: true,
            icc: true,
            internal: false,
            deny_egress: Vec::new(),
            uplink: None,
            log_drops: false,
            dns: true,
            cluster_cidrs: Vec::new(),
            host_access: true,
        }
    }
}

/// `--uplink IFACE` with the gateway its traffic goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub ifname: String,
    pub gateway: IpAddr,
}

/// One namespace's attachment to one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: i64,
    pub network: String,
    pub name: String,
    /// The namespace as the user named it (netns name, path, or pid:PID).
    pub netns: String,
    /// Inode of the namespace, to recognise it under another name.
    pub netns_inode: u64,
    /// Its addresses: one per family its network has, in the order of the
    /// network's subnets (its leases).
    pub ips: Vec<IpAddr>,
    pub mac: Mac,
    pub ifname: String,
    pub host_ifname: String,
    /// The families whose default route this endpoint gave its namespace
    /// (each family's plain route comes from the namespace's first
    /// endpoint with an address of it; with a metric, a route of its own
    /// per family it has).
    pub default_route: Families,
    /// The metric of its default route. None: the namespace's one default
    /// route without a metric, given by its first network that is not
    /// internal and handed on when that one goes. Some: a default route of
    /// its own next to the namespace's others (netavark's model: one per
    /// network, each with its network's metric), which goes with it.
    pub metric: Option<u32>,
    /// Ports published to this endpoint (host side fixed).
    pub ports: Vec<PortMapping>,
    /// Rate limits of its traffic, each way.
    pub bandwidth: Bandwidth,
    /// The endpoint may send with addresses that are not its own (a router,
    /// a VPN gateway): no anti-spoofing on its port.
    pub allow_spoofing: bool,
}

/// An endpoint's maker and, for a runtime's, the container it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMark {
    pub owner: Option<String>,
    pub container_id: Option<String>,
}

/// A runtime's key of an endpoint: CNI names an attachment by container
/// ID and interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub owner: String,
}

/// The JSON shape of a network in `network ls/inspect --json`.
#[derive(Serialize)]
pub struct NetworkView {
    pub name: String,
    /// The first subnet (IPv4 when the network has one), "" for none.
    pub subnet: String,
    pub gateway: String,
    /// Every subnet, each with its gateway.
    pub subnets: Vec<SubnetView>,
    pub ipv6: bool,
    pub bridge: String,
    pub mtu: u32,
    pub endpoint_count: usize,
    pub masquerade: bool,
    pub icc: bool,
    pub internal: bool,
    pub deny_egress: Vec<String>,
    pub uplink: Option<String>,
    pub uplink_gateway: Option<String>,
    pub log_drops: bool,
    /// The firewall and routing options in one line (`network ls`).
    pub policy: String,
    pub dns: bool,
    pub cluster_cidrs: Vec<String>,
    pub host_access: bool,
    pub driver: &'static str,
    pub parent: Option<String>,
    pub mode: Option<&'static str>,
}

/// One subnet of a network in JSON.
#[derive(Serialize)]
pub struct SubnetView {
    pub subnet: String,
    pub gateway: Option<String>,
}

/// The JSON shape of an endpoint in `connect/ps --json`.
#[derive(Serialize)]
pub struct EndpointView {
    pub name: String,
    pub network: String,
    pub netns: String,
    /// The first address (IPv4 when it has one), "" for none.
    pub ip: String,
    pub prefix_len: u8,
    /// Its IPv6 address, if any.
    pub ip6: Option<String>,
    /// Every address with its prefix length (`10.89.0.2/24`, `fd..::2/64`).
    pub ips: Vec<String>,
    pub mac: String,
    pub ifname: String,
    pub host_ifname: String,
    pub gateway: String,
    pub ports: Vec<PortView>,
    /// `{"in": {"rate": BITS_PER_SEC, "burst": BYTES}, "out": ...}`, a
    /// direction left out when unlimited.
    pub bandwidth: Bandwidth,
    pub allow_spoofing: bool,
}

impl Network {
    pub fn view(&self, endpoint_count: usize) -> NetworkView {
        NetworkView {
            name: self.name.clone(),
            subnet: self
                .subnets
                .first()
                .map(|s| s.net.to_string())
                .unwrap_or_default(),
            gateway: self
                .subnets
                .first()
                .and_then(|s| s.gateway)
                .map(|g| g.to_string())
                .unwrap_or_default(),
            subnets: self
                .subnets
                .iter()
                .map(|s| SubnetView {
                    subnet: s.net.to_string(),
                    gateway: s.gateway.map(|g| g.to_string()),
                })
                .collect(),
            ipv6: self.subnet6().is_some(),
            bridge: self.bridge.clone(),
            mtu: self.mtu,
            endpoint_count,
            masquerade: self.policy.masquerade,
            icc: self.policy.icc,
            internal: self.policy.internal,
            deny_egress: self
                .policy
                .deny_egress
                .iter()
                .map(|n| n.to_string())
                .collect(),
            uplink: self.policy.uplink.as_ref().map(|u| u.ifname.clone()),
            uplink_gateway: self.policy.uplink.as_ref().map(|u| u.gateway.to_string()),
            log_drops: self.policy.log_drops,
            policy: self.policy.summary(),
            dns: self.policy.dns,
            cluster_cidrs: self
                .policy
                .cluster_cidrs
                .iter()
                .map(|n| n.to_string())
                .collect(),
            host_access: self.policy.host_access,
            driver: self.driver.name(),
            parent: self.driver.parent().map(str::to_string),
            mode: self.driver.mode(),
        }
    }

    /// Whether the network is one of berth's bridges (veths, firewall,
    /// DNS on its gateway); macvlan/ipvlan networks are none of that.
    pub fn is_bridge(&self) -> bool {
        self.driver.is_bridge()
    }

    /// Its subnet of `family`, if it has one.
    pub fn subnet_of(&self, family: Family) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.family() == family)
    }

    pub fn subnet4(&self) -> Option<&Subnet> {
        self.subnet_of(Family::V4)
    }

    pub fn subnet6(&self) -> Option<&Subnet> {
        self.subnet_of(Family::V6)
    }

    /// The IPv4 prefix, for the parts that speak IPv4 only.
    pub fn net4(&self) -> Option<Ipv4Net> {
        match self.subnet4()?.net {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        }
    }

    pub fn net6(&self) -> Option<Ipv6Net> {
        match self.subnet6()?.net {
            IpNet::V6(v6) => Some(v6),
            IpNet::V4(_) => None,
        }
    }

    /// The IPv4 gateway (the bridge's IPv4 address), if any.
    pub fn gateway4(&self) -> Option<Ipv4Addr> {
        match self.subnet4()?.gateway? {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }
    }

    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        match self.subnet6()?.gateway? {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }
    }

    /// Every gateway address (the bridge's addresses), IPv4 first.
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.subnets.iter().filter_map(|s| s.gateway).collect()
    }

    /// The gateways in one line, IPv4 first: `10.89.0.1, fd..::1` (empty
    /// without any).
    pub fn gateways_text(&self) -> String {
        let g: Vec<String> = self.gateways().iter().map(|g| g.to_string()).collect();
        g.join(", ")
    }

    /// The subnet holding `ip`, if any.
    pub fn subnet_holding(&self, ip: IpAddr) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.net.contains(&ip))
    }

    /// The subnets and gateways in one line: `10.89.0.0/24 via
    /// 10.89.0.1, fd..::/64 via fd..::1` (or `no subnet`).
    pub fn subnets_text(&self) -> String {
        Subnet::list_text(&self.subnets)
    }

    /// The MAC of the network's bridge: derived from its first gateway,
    /// as an endpoint's is from its address (so no derived endpoint MAC
    /// is the bridge's), or from the network's id when it has none.
    pub fn bridge_mac(&self) -> Mac {
        match self.gateways().first() {
            Some(g) => Mac::from_ip(*g),
            None => {
                let id = (self.id as u32).to_be_bytes();
                Mac([0x02, 0x41, id[0], id[1], id[2], id[3]])
            }
        }
    }
}

impl NetworkPolicy {
    /// The options in a few words: `nat, icc` for the default; `internal`,
    /// `no-icc`, `no-nat`, `deny-egress 10.0.0.0/8`, `uplink eth1 via G`,
    /// `log-drops`, `no-host-access` otherwise.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.internal {
            parts.push("internal".into());
        } else if self.masquerade {
            parts.push("nat".into());
        } else {
            parts.push("no-nat".into());
        }
        parts.push(if self.icc { "icc" } else { "no-icc" }.into());
        for d in &self.deny_egress {
            parts.push(format!("deny-egress {d}"));
        }
        if let Some(u) = &self.uplink {
            parts.push(format!("uplink {} via {}", u.ifname, u.gateway));
        }
        if self.log_drops {
            parts.push("log-drops".into());
        }
        for c in &self.cluster_cidrs {
            parts.push(format!("cluster {c}"));
        }
        parts.push(if self.dns { "dns" } else { "no-dns" }.into());
        if !self.host_access {
            parts.push("no-host-access".into());
        }
        parts.join(", ")
    }
}

impl Endpoint {
    /// Whether the endpoint is a veth on a bridge (it has a host side);
    /// otherwise it is a macvlan/ipvlan child, all inside its namespace.
    pub fn has_veth(&self) -> bool {
        !names::is_child_name(&self.host_ifname)
    }

    /// Its IPv4 address, for the parts that speak IPv4 only.
    pub fn ip4(&self) -> Option<Ipv4Addr> {
        self.ips.iter().find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    pub fn ip6(&self) -> Option<Ipv6Addr> {
        self.ips.iter().find_map(|ip| match ip {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
    }

    /// Its addresses as text, `10.89.0.2, fd..::2` (`-` for none).
    pub fn ips_text(&self) -> String {
        if self.ips.is_empty() {
            return "-".into();
        }
        self.ips
            .iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Its addresses with their prefix lengths and gateways, as one line:
    /// `10.89.0.2/24 via 10.89.0.1, fd..::2/64 via fd..::1` (`no address`).
    pub fn addresses_text(&self, network: &Network) -> String {
        if self.ips.is_empty() {
            return "no address".into();
        }
        self.ips
            .iter()
            .map(|ip| match network.subnet_holding(*ip) {
                Some(Subnet {
                    net,
                    gateway: Some(g),
                }) => format!("{ip}/{} via {g}", net.prefix_len()),
                Some(s) => format!("{ip}/{}", s.net.prefix_len()),
                None => ip.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Its addresses with their prefix lengths: `10.89.0.2/24, fd..::2/64`
    /// (`no address`).
    pub fn cidrs_text(&self, network: &Network) -> String {
        if self.ips.is_empty() {
            return "no address".into();
        }
        self.ips
            .iter()
            .map(|ip| match network.subnet_holding(*ip) {
                Some(s) => format!("{ip}/{}", s.net.prefix_len()),
                None => ip.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn view(&self, network: &Network) -> EndpointView {
        let first = self.ips.first().copied();
        let subnet_of = |ip: IpAddr| network.subnet_holding(ip);
        EndpointView {
            name: self.name.clone(),
            network: self.network.clone(),
            netns: self.netns.clone(),
            ip: first.map(|ip| ip.to_string()).unwrap_or_default(),
            prefix_len: first
                .and_then(subnet_of)
                .map(|s| s.net.prefix_len())
                .unwrap_or(0),
            ip6: self.ip6().map(|ip| ip.to_string()),
            ips: self
                .ips
                .iter()
                .map(|ip| match subnet_of(*ip) {
                    Some(s) => format!("{ip}/{}", s.net.prefix_len()),
                    None => ip.to_string(),
                })
                .collect(),
            mac: self.mac.to_string(),
            ifname: self.ifname.clone(),
            host_ifname: self.host_ifname.clone(),
            gateway: first
                .and_then(subnet_of)
                .and_then(|s| s.gateway)
                .map(|g| g.to_string())
                .unwrap_or_default(),
            ports: self.ports.iter().map(PortMapping::view).collect(),
            bandwidth: self.bandwidth,
            allow_spoofing: self.allow_spoofing,
        }
    }
}
