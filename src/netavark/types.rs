//! netavark's wire format, as Podman 4.x sends and reads it: the options
//! JSON on stdin (`NetworkOptions`) and the `StatusBlock` map printed on
//! success. Field names follow netavark 1.4's `src/network/types.rs`;
//! fields berth does not use are ignored, so newer Podmans still parse.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The whole request of one `setup` or `teardown`.
#[derive(Debug, Deserialize)]
pub struct NetworkOptions {
    pub container_id: String,
    pub container_name: String,
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Per network: what this container asks of it.
    pub networks: HashMap<String, PerNetworkOptions>,
    /// Per network: the network's definition (Podman keeps these).
    pub network_info: HashMap<String, Network>,
}

/// A container's attachment to one network.
#[derive(Debug, Deserialize)]
pub struct PerNetworkOptions {
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    pub interface_name: String,
    /// Podman does the address management: these are the addresses.
    #[serde(default)]
    pub static_ips: Option<Vec<String>>,
    #[serde(default)]
    pub static_mac: Option<String>,
}

/// A Podman network definition.
#[derive(Debug, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub dns_enabled: bool,
    pub driver: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub ipv6_enabled: bool,
    /// `{"driver": "host-local" | "none" | "dhcp"}`; host-local when absent.
    #[serde(default)]
    pub ipam_options: Option<HashMap<String, String>>,
    pub name: String,
    /// The bridge's name.
    #[serde(default)]
    pub network_interface: Option<String>,
    /// Driver options, all strings: `mtu`, `isolate`, `metric`, ...
    #[serde(default)]
    pub options: Option<HashMap<String, String>>,
    #[serde(default)]
    pub subnets: Option<Vec<Subnet>>,
    /// The network's own upstream DNS servers (`podman network create
    /// --dns`, `podman network update --dns-add`).
    #[serde(default)]
    pub network_dns_servers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct Subnet {
    pub subnet: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// One `-p`: `range` consecutive ports; `protocol` may be a comma list
/// such as `tcp,udp`; an empty `host_ip` means every address.
#[derive(Debug, Deserialize)]
pub struct PortMapping {
    #[serde(default)]
    pub host_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    #[serde(default = "one")]
    pub range: u16,
    pub protocol: String,
}

fn one() -> u16 {
    1
}

/// What `setup` reports per network.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusBlock {
    pub dns_search_domains: Vec<String>,
    pub dns_server_ips: Vec<String>,
    pub interfaces: BTreeMap<String, NetInterface>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct NetInterface {
    pub mac_address: String,
    pub subnets: Vec<NetAddress>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct NetAddress {
    /// Address with the prefix length, e.g. `10.88.0.2/16`.
    pub ipnet: String,
    pub gateway: String,
}

/// `netavark version`.
#[derive(Debug, Serialize)]
pub struct Version {
    /// The netavark release whose interface berth implements.
    pub version: String,
    /// berth's own version.
    pub berth: String,
    pub commit: String,
    pub build_time: String,
    pub target: String,
}
