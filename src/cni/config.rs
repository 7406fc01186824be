//! The plugin's input: the environment a runtime sets (`CNI_*`) and the
//! network configuration on stdin, checked into typed values. Every
//! mistake becomes the spec's error code: 1 for a version berth does not
//! speak, 4 for a missing or bad environment variable, 6 for JSON that does
//! not decode, 7 for a configuration that is wrong.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::error::{CniError, CODE_BAD_CONFIG, CODE_BAD_ENV, CODE_DECODE, CODE_VERSION};
use crate::model::{Mac, PortSpec, Proto};
use crate::request::{self, NetworkRequest};

/// The CNI versions berth speaks; results are encoded in the one asked for.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// The newest, used when the request names none (VERSION, or an error
/// before the version is known).
pub const LATEST: &str = "1.1.0";

/// The `CNI_*` variables.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
}

impl Env {
    pub fn from_process() -> Env {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            command: get("CNI_COMMAND").unwrap_or_default(),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
        }
    }

    /// A variable the verb cannot do without (code 4 when missing).
    pub fn require<'a>(&self, name: &str, value: &'a Option<String>) -> Result<&'a str, CniError> {
        value.as_deref().ok_or_else(|| {
            CniError::new(
                CODE_BAD_ENV,
                format!("{name} is required for {}", self.command),
            )
        })
    }

    /// `CNI_ARGS` (`K=V;K=V`): `IP` and `MAC`; any other key is an error
    /// unless `IgnoreUnknown` is true, as in the reference plugins.
    pub fn cni_args(&self) -> Result<CniArgs, CniError> {
        let mut out = CniArgs::default();
        let Some(raw) = &self.args else {
            return Ok(out);
        };
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                CniError::new(CODE_BAD_ENV, format!("CNI_ARGS: {pair:?} is not KEY=VALUE"))
            })?;
            match k {
                "IP" => {
                    let ip = v.split('/').next().unwrap_or(v);
                    out.ip = Some(
                        request::parse_ip("CNI_ARGS IP", ip)
                            .map_err(|e| CniError::new(CODE_BAD_ENV, e.to_string()))?,
                    )
                }
                "MAC" => {
                    out.mac = Some(
                        request::parse_mac(v)
                            .map_err(|e| CniError::new(CODE_BAD_ENV, e.to_string()))?,
                    )
                }
                "IgnoreUnknown" => {
                    ignore_unknown = matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
                }
                _ => unknown.push(k.to_string()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(CniError::new(
                CODE_BAD_ENV,
                format!(
                    "CNI_ARGS: unknown key(s) {} (set IgnoreUnknown=1 to ignore them)",
                    unknown.join(", ")
                ),
            ));
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, Default)]
pub struct CniArgs {
    pub ip: Option<IpAddr>,
    pub mac: Option<Mac>,
}

/// One `runtimeConfig.portMappings` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
    /// None: every host address.
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// As a berth port spec; None for an IPv6 host address (berth's
    /// networks are IPv4, and runtimes send both families' wildcard).
    pub fn spec(&self) -> Option<PortSpec> {
        let host_ip = match self.host_ip {
            None => std::net::Ipv4Addr::UNSPECIFIED,
            Some(IpAddr::V4(ip)) => ip,
            Some(IpAddr::V6(ip)) if ip.is_unspecified() => return None,
            Some(IpAddr::V6(_)) => return None,
        };
        Some(PortSpec {
            host_ip,
            host_port: Some(self.host_port),
            container_port: self.container_port,
            count: 1,
            proto: self.protocol,
        })
    }
}

/// The network configuration berth reads (`"type": "berth"`).
#[derive(Clone, Debug, Default)]
pub struct NetConf {
    pub version: String,
    pub name: String,
    pub subnet: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub internal: Option<bool>,
    pub icc: Option<bool>,
    pub ip_masq: Option<bool>,
    /// berth isolates its networks from each other always; recorded only.
    pub isolate: Option<bool>,
    /// The `dns` object to hand back in results, when the config has one.
    pub dns: Option<Value>,
    /// `dns: false`: berth's DNS server does not serve the network.
    pub no_dns: bool,
    /// `clusterCIDR` (a CIDR or a list): routed peers, as `--cluster-cidr`.
    pub cluster_cidrs: Option<Vec<IpNet>>,
    /// Where berth keeps its state, overriding `BERTH_STATE_DIR`.
    pub state_dir: Option<String>,
    pub port_mappings: Vec<PortMapping>,
    /// `runtimeConfig.ips`, without prefix lengths.
    pub ips: Vec<IpAddr>,
    pub mac: Option<Mac>,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): container ID and interface name.
    pub valid_attachments: Option<HashSet<(String, String)>>,
}

/// Reads the version first (so that errors can be encoded in it), then the
/// rest. Returns the version even when the rest is wrong.
pub fn version_of(stdin: &[u8]) -> Result<String, CniError> {
    let v: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            CODE_DECODE,
            format!("decoding the network configuration: {e}"),
        )
    })?;
    let version = v
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(version)
}

/// Checks that berth speaks `version` (code 1 when not).
pub fn check_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }
    Err(CniError::new(
        CODE_VERSION,
        format!(
            "CNI version {version:?} is not supported (berth speaks {})",
            SUPPORTED_VERSIONS.join(", ")
        ),
    ))
}

pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    let v: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            CODE_DECODE,
            format!("decoding the network configuration: {e}"),
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(CniError::new(
            CODE_DECODE,
            "the network configuration is not a JSON object",
        ));
    };
    let bad = |key: &str, want: &str| {
        CniError::new(
            CODE_BAD_CONFIG,
            format!("invalid {key:?} in the network configuration: expected {want}"),
        )
    };
    let string = |key: &str| -> Result<Option<String>, CniError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(key, "a string")),
        }
    };
    let boolean = |key: &str| -> Result<Option<bool>, CniError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(key, "true or false")),
        }
    };
    let version = string("cniVersion")?.unwrap_or_default();
    check_version(&version)?;
    let name = string("name")?.filter(|n| !n.is_empty()).ok_or_else(|| {
        CniError::new(CODE_BAD_CONFIG, "the network configuration has no \"name\"")
    })?;
    crate::model::names::check_name("network", &name)
        .map_err(|e| CniError::new(CODE_BAD_CONFIG, e.to_string()))?;
    if let Some(t) = string("type")? {
        if t != "berth" {
            return Err(CniError::new(
                CODE_BAD_CONFIG,
                format!("plugin type {t:?} is not \"berth\""),
            ));
        }
    }
    let mtu = match obj.get("mtu") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .ok_or_else(|| bad("mtu", "a positive integer"))?,
        ),
    };
    let (dns, dns_on) = match obj.get("dns") {
        None | Some(Value::Null) => (None, true),
        Some(Value::Bool(b)) => (None, *b),
        Some(o @ Value::Object(_)) => (Some(o.clone()), true),
        Some(_) => return Err(bad("dns", "true, false or a DNS object")),
    };
    let mut conf = NetConf {
        version,
        name,
        subnet: string("subnet")?
            .map(|s| request::parse_prefix("subnet", &s, false).map_err(config_error))
            .transpose()?,
        gateway: string("gateway")?
            .map(|g| request::parse_ip("gateway", &g).map_err(config_error))
            .transpose()?,
        bridge: string("bridge")?,
        mtu,
        internal: boolean("internal")?,
        icc: boolean("icc")?,
        ip_masq: boolean("ipMasq")?,
        isolate: boolean("isolate")?,
        dns,
        no_dns: !dns_on,
        state_dir: string("stateDir")?,
        cluster_cidrs: match obj.get("clusterCIDR") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![cluster_cidr(s)?]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| bad("clusterCIDR", "a CIDR or a list of CIDRs"))
                            .and_then(cluster_cidr)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(bad("clusterCIDR", "a CIDR or a list of CIDRs")),
        },
        prev_result: obj.get("prevResult").filter(|v| !v.is_null()).cloned(),
        ..Default::default()
    };
    if let Some(rc) = obj.get("runtimeConfig").filter(|v| !v.is_null()) {
        parse_runtime_config(rc, &mut conf)?;
    }
    let valid = obj
        .get("cni.dev/valid-attachments")
        .or_else(|| obj.get("cni.dev/attachments"));
    if let Some(list) = valid {
        let list = list
            .as_array()
            .ok_or_else(|| bad("cni.dev/valid-attachments", "a list"))?;
        let mut set = HashSet::new();
        for a in list {
            let id = a.get("containerID").and_then(Value::as_str);
            let ifname = a.get("ifname").and_then(Value::as_str);
            match (id, ifname) {
                (Some(id), Some(ifname)) => {
                    set.insert((id.to_string(), ifname.to_string()));
                }
                _ => {
                    return Err(bad(
                        "cni.dev/valid-attachments",
                        "objects with \"containerID\" and \"ifname\"",
                    ))
                }
            }
        }
        conf.valid_attachments = Some(set);
    }
    Ok(conf)
}

/// A configuration value berth refuses: code 7, naming it.
fn config_error(e: crate::error::Error) -> CniError {
    CniError::new(CODE_BAD_CONFIG, e.to_string())
}

fn cluster_cidr(text: &str) -> Result<IpNet, CniError> {
    request::parse_prefix("clusterCIDR", text, false).map_err(config_error)
}

fn parse_runtime_config(rc: &Value, conf: &mut NetConf) -> Result<(), CniError> {
    let bad = |what: &str| {
        CniError::new(
            CODE_BAD_CONFIG,
            format!("invalid runtimeConfig.{what} in the network configuration"),
        )
    };
    if let Some(list) = rc.get("portMappings").filter(|v| !v.is_null()) {
        for m in list.as_array().ok_or_else(|| bad("portMappings"))? {
            let port = |k: &str| {
                m.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(&format!("portMappings[].{k}")))
            };
            let protocol = m
                .get("protocol")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .unwrap_or("tcp");
            let host_ip = match m.get("hostIP").and_then(Value::as_str).unwrap_or("") {
                "" => None,
                ip => Some(
                    ip.parse::<IpAddr>()
                        .map_err(|_| bad("portMappings[].hostIP"))?,
                ),
            };
            conf.port_mappings.push(PortMapping {
                host_port: port("hostPort")?,
                container_port: port("containerPort")?,
                protocol: Proto::parse(&protocol.to_ascii_lowercase())
                    .ok_or_else(|| bad("portMappings[].protocol"))?,
                host_ip: host_ip.filter(|ip| !ip.is_unspecified() || ip.is_ipv6()),
            });
        }
    }
    if let Some(list) = rc.get("ips").filter(|v| !v.is_null()) {
        for ip in list.as_array().ok_or_else(|| bad("ips"))? {
            let s = ip.as_str().ok_or_else(|| bad("ips"))?;
            let addr = s.split('/').next().unwrap_or(s);
            let ip: IpAddr = addr.parse().map_err(|_| bad("ips"))?;
            // berth's networks are IPv4: an IPv6 request is for another plugin.
            if ip.is_ipv4() {
                conf.ips.push(ip);
            }
        }
    }
    if let Some(mac) = rc.get("mac").filter(|v| !v.is_null()) {
        let text = mac.as_str().ok_or_else(|| bad("mac"))?;
        conf.mac = Some(request::parse_mac(text).map_err(config_error)?);
    }
    Ok(())
}

impl NetConf {
    /// The network this config names, as a request.
    pub fn network_request(&self) -> NetworkRequest {
        let mut r = NetworkRequest::new(self.name.clone());
        r.subnet = self.subnet;
        r.gateway = self.gateway;
        r.bridge = self.bridge.clone();
        r.mtu = self.mtu;
        r.masquerade = self.ip_masq != Some(false);
        r.icc = self.icc != Some(false);
        r.internal = self.internal == Some(true);
        r.cluster_cidrs = self.cluster_cidrs.clone().unwrap_or_default();
        r.dns = !self.no_dns;
        r.owner = Some("cni".into());
        r
    }

    /// The published ports the runtime asks for (IPv6 host addresses are
    /// for another plugin: berth's networks are IPv4).
    pub fn port_specs(&self) -> Vec<PortSpec> {
        self.port_mappings
            .iter()
            .filter_map(PortMapping::spec)
            .collect()
    }

    /// Where a config contradicts the existing network of its name, one
    /// phrase each (an empty list: they agree).
    pub fn contradictions(&self, n: &crate::model::Network) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = self.subnet {
            if s.to_string() != n.subnet.to_string() {
                out.push(format!("subnet {s} (the network has {})", n.subnet));
            }
        }
        if let Some(g) = self.gateway {
            if g != IpAddr::V4(n.gateway) {
                out.push(format!("gateway {g} (the network has {})", n.gateway));
            }
        }
        if let Some(b) = &self.bridge {
            if *b != n.bridge {
                out.push(format!("bridge {b} (the network has {})", n.bridge));
            }
        }
        if let Some(m) = self.mtu {
            if m != n.mtu {
                out.push(format!("mtu {m} (the network has {})", n.mtu));
            }
        }
        if let Some(want) = &self.cluster_cidrs {
            let want: Vec<String> = want.iter().map(|c| c.to_string()).collect();
            let have: Vec<String> = n
                .policy
                .cluster_cidrs
                .iter()
                .map(|c| c.to_string())
                .collect();
            if want != have {
                out.push(format!(
                    "clusterCIDR [{}] (the network has [{}])",
                    want.join(", "),
                    have.join(", ")
                ));
            }
        }
        // The switches have defaults, so an absent one means its default.
        let flags = [
            (
                "internal",
                self.internal.unwrap_or(false),
                n.policy.internal,
            ),
            ("icc", self.icc.unwrap_or(true), n.policy.icc),
            ("ipMasq", self.ip_masq.unwrap_or(true), n.policy.masquerade),
        ];
        for (key, want, has) in flags {
            if want != has {
                out.push(format!("{key} {want} (the network has {has})"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_and_versions() {
        let env = |a: &str| Env {
            command: "ADD".into(),
            args: Some(a.into()),
            ..Default::default()
        };
        let a = env("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.9;MAC=02:00:00:00:00:09")
            .cni_args()
            .unwrap();
        assert_eq!(a.ip.map(|ip| ip.to_string()).as_deref(), Some("10.1.0.9"));
        assert_eq!(
            a.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:09")
        );
        assert_eq!(env("FOO=1").cni_args().unwrap_err().code, CODE_BAD_ENV);
        assert_eq!(check_version("0.3.1").unwrap_err().code, CODE_VERSION);
        assert_eq!(parse(b"{").unwrap_err().code, CODE_DECODE);
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"berth","ipMasq":false,
                "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                                                 {"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"::"}],
                                 "ips":["10.1.0.5/24","fd00::5/64"]},
                "cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        let specs = c.port_specs();
        assert_eq!(specs, [PortSpec::parse("8080:80/tcp").unwrap()]);
        assert_eq!(c.ips, ["10.1.0.5".parse::<IpAddr>().unwrap()]);
        assert!(!c.network_request().masquerade);
        assert_eq!(c.valid_attachments.unwrap().len(), 1);
    }
}
