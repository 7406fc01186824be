//! Pure types and validation: networks, endpoints, subnets, names, MACs and
//! address allocation. Nothing here touches the kernel or the database.

pub mod bandwidth;
pub mod driver;
pub mod ipam;
pub mod mac;
pub mod names;
pub mod ports;
pub mod subnet;

use std::net::Ipv4Addr;

use serde::Serialize;

pub use bandwidth::{Bandwidth, Limit};
pub use driver::{Driver, IpvlanMode, MacvlanMode};
pub use mac::Mac;
pub use ports::{PortMapping, PortSpec, PortView, Proto};
pub use subnet::Ipv4Net;

/// Default MTU of a network's bridge and veths.
pub const DEFAULT_MTU: u32 = 1500;

/// A bridge network: a subnet, its gateway on a bridge, and the endpoints
/// connected to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub id: i64,
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
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
    /// Destinations the network's traffic is rejected to.
    pub deny_egress: Vec<Ipv4Net>,
    /// Where the network's traffic leaves, by policy routing.
    pub uplink: Option<Uplink>,
    /// Log (rate-limited) what the firewall drops for the network.
    pub log_drops: bool,
    /// berth's DNS server answers for the network's names on its gateway.
    pub dns: bool,
    /// Routed setups (`--cluster-cidr`, CNI `clusterCIDR`): the network's
    /// traffic to these ranges is not masqueraded, and new connections from
    /// them are let in, so pods on other nodes see each other's addresses.
    pub cluster_cidrs: Vec<Ipv4Net>,
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
    pub gateway: Ipv4Addr,
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
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub ifname: String,
    pub host_ifname: String,
    /// Whether this endpoint gave its namespace a default route.
    pub default_route: bool,
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
    pub subnet: String,
    pub gateway: String,
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

/// The JSON shape of an endpoint in `connect/ps --json`.
#[derive(Serialize)]
pub struct EndpointView {
    pub name: String,
    pub network: String,
    pub netns: String,
    pub ip: String,
    pub prefix_len: u8,
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
            subnet: self.subnet.to_string(),
            gateway: self.gateway.to_string(),
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

    pub fn view(&self, network: &Network) -> EndpointView {
        EndpointView {
            name: self.name.clone(),
            network: self.network.clone(),
            netns: self.netns.clone(),
            ip: self.ip.to_string(),
            prefix_len: network.subnet.prefix_len(),
            mac: self.mac.to_string(),
            ifname: self.ifname.clone(),
            host_ifname: self.host_ifname.clone(),
            gateway: network.gateway.to_string(),
            ports: self.ports.iter().map(PortMapping::view).collect(),
            bandwidth: self.bandwidth,
            allow_spoofing: self.allow_spoofing,
        }
    }
}
