//! What a caller asks berth to change, as typed values: the one language
//! the three front doors (the CLI, the CNI plugin and the netavark mode)
//! speak to `commands`.
//!
//! Each front door parses its own input (clap values, CNI JSON, netavark
//! JSON) into these types, so nothing below the front doors sees a raw
//! string for a value that has a type, and a new field (a second subnet,
//! a driver, a metric) is one change here and one in each parser.
//! Addresses and prefixes are family-neutral (`IpAddr`, `IpNet`); whether
//! a network accepts a family is the command's decision, not the parser's.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::model::{Bandwidth, Family, Mac, PortSpec};

pub use crate::model::{Attachment, EndpointMark};

/// `network create`: a bridge network and its firewall policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    /// The network's subnets, at most one per family. None: berth's
    /// default (IPv4, and IPv6 too when the config file says so), picked
    /// from the pools. Some(empty): no subnet at all (no IPAM).
    pub subnets: Option<Vec<SubnetRequest>>,
    /// None: `berth-NAME` (or a hashed name when that is too long).
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub masquerade: bool,
    pub icc: bool,
    pub internal: bool,
    pub dns: bool,
    pub log_drops: bool,
    pub deny_egress: Vec<IpNet>,
    pub uplink: Option<UplinkRequest>,
    pub cluster_cidrs: Vec<IpNet>,
    /// Containers may reach the host's services (false: DNS on the gateway
    /// only, `--no-host-access`).
    pub host_access: bool,
    /// Who asks, recorded on the network (`podman`, `cni`).
    pub owner: Option<String>,
    /// Bridge (the default), or macvlan/ipvlan with parent and mode.
    pub driver: crate::model::Driver,
}

impl NetworkRequest {
    /// A network with berth's defaults: NAT, ICC and DNS on.
    pub fn new(name: impl Into<String>) -> NetworkRequest {
        NetworkRequest {
            name: name.into(),
            subnets: None,
            bridge: None,
            mtu: None,
            masquerade: true,
            icc: true,
            internal: false,
            dns: true,
            log_drops: false,
            deny_egress: Vec::new(),
            uplink: None,
            cluster_cidrs: Vec::new(),
            host_access: true,
            owner: None,
            driver: crate::model::Driver::Bridge,
        }
    }
}

/// One subnet of a network to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubnetRequest {
    pub family: Family,
    /// None: picked from the family's pools.
    pub subnet: Option<IpNet>,
    /// None: the subnet's first host address.
    pub gateway: Option<IpAddr>,
}

impl SubnetRequest {
    /// An automatic subnet of `family`.
    pub fn auto(family: Family) -> SubnetRequest {
        SubnetRequest {
            family,
            subnet: None,
            gateway: None,
        }
    }

    /// A given subnet (its family is the prefix's) and maybe gateway.
    pub fn given(subnet: IpNet, gateway: Option<IpAddr>) -> SubnetRequest {
        SubnetRequest {
            family: Family::of_net(&subnet),
            subnet: Some(subnet),
            gateway,
        }
    }
}

/// `--uplink IFACE [--uplink-gateway IP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkRequest {
    pub ifname: String,
    /// None: taken from the host's routes through the interface.
    pub gateway: Option<IpAddr>,
}

/// `connect`: one namespace's attachment to one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    pub network: String,
    /// The namespace: a netns name, a path to a namespace file, or `pid:N`.
    pub target: String,
    /// None: the namespace's name.
    pub name: Option<String>,
    /// Addresses asked for, at most one per family; a family of the
    /// network not named here gets the next free address of its subnet.
    pub ips: Vec<IpAddr>,
    /// None: derived from the address.
    pub mac: Option<Mac>,
    /// None: `eth0`, or the namespace's next free `ethN`.
    pub ifname: Option<String>,
    pub ports: Vec<PortSpec>,
    /// More DNS names of the endpoint on the network.
    pub aliases: Vec<String>,
    /// TARGET may be the host's own namespace.
    pub allow_host_netns: bool,
    /// Publish a host port even when a host process listens on it (the
    /// mapping wins). Runtimes hold the ports they publish themselves.
    pub force_publish: bool,
    /// Who asks, recorded on the endpoint.
    pub mark: Option<EndpointMark>,
    /// Metric of the default route, if the endpoint gives one.
    pub metric: Option<u32>,
    /// A CNI runtime's key of the endpoint, recorded with its intent.
    pub attachment: Option<Attachment>,
    /// Rate limits of the endpoint's traffic, each way.
    pub bandwidth: Bandwidth,
    /// No anti-spoofing on the endpoint's port (routers, VPN gateways).
    pub allow_spoofing: bool,
}

/// Which endpoint a detach means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointRef {
    /// A namespace (as for `connect`) or, failing that, an endpoint's name.
    Target(String),
    /// The endpoint row itself (a front door that looked it up).
    Id(i64),
}

/// `disconnect`: taking an endpoint off its network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachRequest {
    pub network: String,
    pub endpoint: EndpointRef,
    /// An endpoint that does not exist is "nothing to do", not an error.
    pub force: bool,
    /// Whether the veth is deleted. `run`'s own namespace is deleted right
    /// after, and its veth with it, so the ~20 ms veth delete is saved.
    pub delete_veth: bool,
}

impl DetachRequest {
    pub fn new(network: impl Into<String>, endpoint: EndpointRef) -> DetachRequest {
        DetachRequest {
            network: network.into(),
            endpoint,
            force: false,
            delete_veth: true,
        }
    }
}

/// An address as the user wrote it, for `what` (`--ip`, `--gateway`).
pub fn parse_ip(what: &str, text: &str) -> Result<IpAddr> {
    text.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "invalid {what} {text:?}: expected an IP address like 10.0.0.2"
        ))
    })
}

/// A prefix as the user wrote it, for `what`: `a.b.c.d/len` without host
/// bits. A single address means that address alone (`/32`) when
/// `address_ok` is set.
pub fn parse_prefix(what: &str, text: &str, address_ok: bool) -> Result<IpNet> {
    let text = text.trim();
    let net: IpNet = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) if address_ok && !text.contains('/') => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(Error::invalid(format!(
                    "invalid {what} {text:?}: expected a CIDR like 10.0.0.0/8 (or a single address)"
                )))
            }
        },
        Err(_) => {
            return Err(Error::invalid(format!(
                "invalid {what} {text:?}: expected a CIDR like 10.0.0.0/8"
            )))
        }
    };
    if net.trunc() != net {
        return Err(Error::invalid(format!(
            "invalid {what} {text:?}: host bits are set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// A MAC address as the user wrote it: six octets, unicast.
pub fn parse_mac(text: &str) -> Result<Mac> {
    Mac::parse_unicast(text)
}

/// A `-p` value as the user wrote it.
pub fn parse_port(text: &str) -> Result<PortSpec> {
    PortSpec::parse(text).map_err(Error::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_parsed_without_host_bits() {
        assert_eq!(
            parse_prefix("--subnet", "10.1.0.0/16", false).unwrap(),
            "10.1.0.0/16".parse::<IpNet>().unwrap()
        );
        let e = parse_prefix("--subnet", "10.1.2.3/16", false).unwrap_err();
        assert!(e.to_string().contains("did you mean 10.1.0.0/16"), "{e}");
        let e = parse_prefix("--subnet", "banana", false).unwrap_err();
        assert!(e.to_string().contains("banana"), "{e}");
        assert_eq!(
            parse_prefix("--deny-egress", "192.0.2.7", true).unwrap(),
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
        assert!(parse_prefix("--subnet", "192.0.2.7", false).is_err());
        assert_eq!(
            parse_prefix("--subnet", "fd00::/64", false).unwrap(),
            "fd00::/64".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn addresses_name_the_bad_value() {
        assert!(parse_ip("--ip", "10.0.0.2").is_ok());
        assert!(parse_ip("--ip", "fd00::2").is_ok());
        let e = parse_ip("--ip", "10.0.0.256").unwrap_err();
        assert!(e.to_string().contains("10.0.0.256"), "{e}");
    }
}
