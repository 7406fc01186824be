//! The plugin's input: the environment a runtime sets (`CNI_*`) and the
//! network configuration on stdin, checked into typed values. Every
//! mistake becomes the spec's error code: 1 for a version berth does not
//! speak, 4 for a missing or bad environment variable, 6 for JSON that does
//! not decode, 7 for a configuration that is wrong.
//!
//! Runtimes write this JSON with Go's encoding/json, and the reference
//! plugins read it with the same library, so what they accept is what Go
//! accepts: an object key names a field when it is spelled exactly as the
//! field or differs only in case (the exact spelling wins), and keys
//! naming no field are ignored. containerd's go-cni relies on it: its port
//! mappings carry Go's field names (`HostPort`, `ContainerPort`,
//! `Protocol`, `HostIP`), where CRI-O's ocicni, Podman and Multus write
//! `hostPort`, `containerPort`, `protocol`, `hostIP`. berth reads every
//! input (the configuration, `runtimeConfig`, `prevResult`, the GC
//! attachment list) through [`keys::member`] for that reason.
//!
//! DEL reads leniently ([`parse_for_del`]): it needs only where the state
//! is, and a runtime that sends a DEL with a configuration berth would
//! refuse (a malformed `runtimeConfig`, a contradicting option) must still
//! get its attachment removed, or the pod can never be torn down.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use keys::member;

use super::error::{CniError, CODE_BAD_CONFIG, CODE_BAD_ENV, CODE_DECODE, CODE_VERSION};
use crate::model::{Bandwidth, Families, Family, Limit, Mac, PortSpec, Proto};
use crate::request::{self, NetworkRequest, SubnetRequest};

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
                // host-local's spelling: one address or a comma-separated
                // list (one per family), each maybe with its prefix length.
                "IP" => {
                    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                        let ip = item.split('/').next().unwrap_or(item);
                        out.ips.push(
                            request::parse_ip("CNI_ARGS IP", ip)
                                .map_err(|e| CniError::new(CODE_BAD_ENV, e.to_string()))?,
                        );
                    }
                }
                "MAC" => {
                    out.mac = Some(
                        request::parse_mac(v)
                            .map_err(|e| CniError::new(CODE_BAD_ENV, e.to_string()))?,
                    )
                }
                "K8S_POD_NAME" => out.pod_name = Some(v.to_string()).filter(|v| !v.is_empty()),
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
    /// `IP`: the static addresses asked for, at most one per family.
    pub ips: Vec<IpAddr>,
    pub mac: Option<Mac>,
    /// `K8S_POD_NAME`: the name a runtime that passes aliases (Podman's
    /// CNI backend) gives the container, as the dnsname plugin reads it.
    pub pod_name: Option<String>,
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
    /// As a berth port spec, on a network with subnets of `families`;
    /// None when the mapping has nothing to answer for there. A missing
    /// host address and 0.0.0.0 are every address of both families
    /// (berth's 0.0.0.0); `::` is every IPv6 address; a given address is
    /// its own. A mapping bound to a family the network lacks is skipped,
    /// as the reference portmap plugin skips one bound to a family the
    /// container has no address of (runtimes send `::` to IPv4 pods).
    pub fn spec(&self, families: Families) -> Option<PortSpec> {
        let host_ip = match self.host_ip {
            None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            Some(ip) if ip.is_unspecified() && ip.is_ipv4() => ip,
            Some(ip) if families.has(Family::of(ip)) => ip,
            Some(_) => return None,
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
    /// The subnets the configuration names, at most one per family, IPv4
    /// first: berth's `subnet`/`gateway` and `ranges`, and host-local's
    /// `ipam.subnet`/`ipam.gateway` and `ipam.ranges` (a list of range
    /// sets, one set per family, each of one range). Empty: one IPv4
    /// subnet berth picks (and an IPv6 one with `ipv6`).
    pub subnets: Vec<SubnetRequest>,
    /// `ipv6`: an IPv6 subnet berth picks (a /64 of the host's ULA
    /// prefix) when the configuration names none.
    pub ipv6: bool,
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
    /// `noHostAccess`: containers of the network cannot reach the host's
    /// services (`--no-host-access`), DNS on the gateway excepted.
    pub no_host_access: Option<bool>,
    /// `allowSpoofing`: the network's attachments may send with addresses
    /// that are not theirs (`connect --allow-spoofing`), as the reference
    /// bridge plugin's `macspoofchk: false` does for MACs.
    pub allow_spoofing: bool,
    /// Where berth keeps its state, overriding `BERTH_STATE_DIR`.
    pub state_dir: Option<String>,
    pub port_mappings: Vec<PortMapping>,
    /// `runtimeConfig.ips`, without prefix lengths (at most one per family).
    pub ips: Vec<IpAddr>,
    pub mac: Option<Mac>,
    /// `runtimeConfig.bandwidth`: `ingressRate` (towards the container)
    /// and `egressRate`, bits per second, with their bursts in bits.
    pub bandwidth: Bandwidth,
    /// `runtimeConfig.aliases` for this network: present when the runtime
    /// passes names (the `aliases` capability), maybe empty.
    pub aliases: Option<Vec<String>>,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): container ID and interface name.
    pub valid_attachments: Option<HashSet<(String, String)>>,
    /// `driver` (`bridge`, `macvlan`, `ipvlan`) with `parent` and `mode`.
    pub driver: crate::model::Driver,
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
        .as_object()
        .and_then(|o| member(o, "cniVersion"))
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

/// The network configuration as a JSON object (code 6 when it is not one).
fn decode(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    let v: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            CODE_DECODE,
            format!("decoding the network configuration: {e}"),
        )
    })?;
    match v {
        Value::Object(obj) => Ok(obj),
        _ => Err(CniError::new(
            CODE_DECODE,
            "the network configuration is not a JSON object",
        )),
    }
}

/// The configuration of ADD, CHECK, GC and STATUS, checked whole.
pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    from_object(&decode(stdin)?)
}

/// The configuration of DEL. DEL identifies the attachment by
/// `CNI_CONTAINERID` and `CNI_IFNAME` in the state that `stateDir` names,
/// so that is all it must be able to read: a configuration that fails the
/// full check still yields its version, name and `stateDir`, and the
/// rest is left empty. Only input that is not a JSON object, or a
/// `stateDir` that is not a string, fails (berth could not tell where the
/// attachment is recorded).
pub fn parse_for_del(stdin: &[u8]) -> Result<NetConf, CniError> {
    let obj = decode(stdin)?;
    if let Ok(conf) = from_object(&obj) {
        return Ok(conf);
    }
    let text = |key: &str| {
        member(&obj, key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let state_dir = match member(&obj, "stateDir") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(CniError::new(
                CODE_BAD_CONFIG,
                "invalid \"stateDir\" in the network configuration: expected a string",
            ))
        }
    };
    Ok(NetConf {
        version: text("cniVersion").unwrap_or_default(),
        name: text("name").unwrap_or_default(),
        state_dir,
        ..Default::default()
    })
}

fn from_object(obj: &Map<String, Value>) -> Result<NetConf, CniError> {
    let bad = |key: &str, want: &str| {
        CniError::new(
            CODE_BAD_CONFIG,
            format!("invalid {key:?} in the network configuration: expected {want}"),
        )
    };
    let string = |key: &str| -> Result<Option<String>, CniError> {
        match member(obj, key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(key, "a string")),
        }
    };
    let boolean = |key: &str| -> Result<Option<bool>, CniError> {
        match member(obj, key) {
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
    crate::model::names::check_network_name(&name)
        .map_err(|e| CniError::new(CODE_BAD_CONFIG, e.to_string()))?;
    if let Some(t) = string("type")? {
        if t != "berth" {
            return Err(CniError::new(
                CODE_BAD_CONFIG,
                format!("plugin type {t:?} is not \"berth\""),
            ));
        }
    }
    let mtu = match member(obj, "mtu") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .ok_or_else(|| bad("mtu", "a positive integer"))?,
        ),
    };
    let (dns, dns_on) = match member(obj, "dns") {
        None | Some(Value::Null) => (None, true),
        Some(Value::Bool(b)) => (None, *b),
        Some(o @ Value::Object(_)) => (Some(o.clone()), true),
        Some(_) => return Err(bad("dns", "true, false or a DNS object")),
    };
    let mut conf = NetConf {
        version,
        name,
        subnets: subnets(obj)?,
        ipv6: boolean("ipv6")? == Some(true),
        bridge: string("bridge")?,
        mtu,
        internal: boolean("internal")?,
        icc: boolean("icc")?,
        ip_masq: boolean("ipMasq")?,
        isolate: boolean("isolate")?,
        dns,
        no_dns: !dns_on,
        state_dir: string("stateDir")?,
        no_host_access: boolean("noHostAccess")?,
        allow_spoofing: boolean("allowSpoofing")? == Some(true),
        cluster_cidrs: match member(obj, "clusterCIDR") {
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
        driver: crate::model::Driver::parse(
            string("driver")?.as_deref().unwrap_or("bridge"),
            string("parent")?.as_deref(),
            string("mode")?.as_deref(),
        )
        .map_err(|e| CniError::new(CODE_BAD_CONFIG, e))?,
        prev_result: member(obj, "prevResult")
            .filter(|v| !v.is_null())
            .map(|v| keys::canonical(v, &keys::RESULT)),
        ..Default::default()
    };
    if let Some(rc) = member(obj, "runtimeConfig").filter(|v| !v.is_null()) {
        let rc = rc
            .as_object()
            .ok_or_else(|| bad("runtimeConfig", "an object"))?;
        parse_runtime_config(rc, &mut conf)?;
    }
    let valid =
        member(obj, "cni.dev/valid-attachments").or_else(|| member(obj, "cni.dev/attachments"));
    if let Some(list) = valid {
        let list = list
            .as_array()
            .ok_or_else(|| bad("cni.dev/valid-attachments", "a list"))?;
        let mut set = HashSet::new();
        for a in list {
            let field = |k: &str| {
                a.as_object()
                    .and_then(|o| member(o, k))
                    .and_then(Value::as_str)
            };
            let id = field("containerID");
            let ifname = field("ifname");
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

/// The subnets a configuration names (see [`NetConf::subnets`]), checked:
/// prefixes without host bits, at most one per family, ranges berth can
/// serve (the whole subnet: `rangeStart`/`rangeEnd` are refused rather
/// than ignored, since berth would lease outside them).
fn subnets(obj: &Map<String, Value>) -> Result<Vec<SubnetRequest>, CniError> {
    let mut out: Vec<SubnetRequest> = Vec::new();
    let ipam = match member(obj, "ipam") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            return Err(CniError::new(
                CODE_BAD_CONFIG,
                "invalid \"ipam\" in the network configuration: expected an object",
            ))
        }
    };
    let mut sources: Vec<(String, &Map<String, Value>)> = vec![(String::new(), obj)];
    if let Some(ipam) = ipam {
        sources.push(("ipam.".into(), ipam));
    }
    for (prefix, o) in &sources {
        if let Some(r) = single_range(o, prefix)? {
            out.push(r);
        }
        let key = format!("{prefix}ranges");
        let bad = || {
            CniError::new(
                CODE_BAD_CONFIG,
                format!(
                    "invalid {key:?} in the network configuration: expected a list of range sets, each a list of one {{\"subnet\": CIDR}}"
                ),
            )
        };
        let Some(sets) = member(o, "ranges").filter(|v| !v.is_null()) else {
            continue;
        };
        for set in sets.as_array().ok_or_else(bad)? {
            let set = set.as_array().ok_or_else(bad)?;
            match set.as_slice() {
                [] => {}
                [range] => {
                    let range = range.as_object().ok_or_else(bad)?;
                    let r = single_range(range, &format!("{key}[]."))?.ok_or_else(bad)?;
                    out.push(r);
                }
                _ => {
                    return Err(CniError::new(
                        CODE_BAD_CONFIG,
                        format!(
                            "{key}: a range set of {} ranges; berth serves one subnet per family, so each set holds one range",
                            set.len()
                        ),
                    ))
                }
            }
        }
    }
    out.sort_by_key(|r| r.family != Family::V4);
    for pair in out.windows(2) {
        if pair[0].family == pair[1].family {
            let text = |r: &SubnetRequest| {
                r.subnet
                    .map(|s| s.to_string())
                    .or(r.gateway.map(|g| format!("gateway {g}")))
                    .unwrap_or_default()
            };
            return Err(CniError::new(
                CODE_BAD_CONFIG,
                format!(
                    "the network configuration names two {} subnets ({} and {}); berth serves one per family",
                    pair[0].family.name(),
                    text(&pair[0]),
                    text(&pair[1])
                ),
            ));
        }
    }
    Ok(out)
}

/// One range: `subnet` and `gateway` of object `o` (keys named with
/// `prefix` in messages); None when it names neither.
fn single_range(o: &Map<String, Value>, prefix: &str) -> Result<Option<SubnetRequest>, CniError> {
    let text = |k: &str| -> Result<Option<String>, CniError> {
        match member(o, k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(CniError::new(
                CODE_BAD_CONFIG,
                format!("invalid \"{prefix}{k}\" in the network configuration: expected a string"),
            )),
        }
    };
    for k in ["rangeStart", "rangeEnd"] {
        if text(k)?.is_some() {
            return Err(CniError::new(
                CODE_BAD_CONFIG,
                format!("\"{prefix}{k}\" is not supported: berth leases from the whole subnet"),
            ));
        }
    }
    let subnet = text("subnet")?
        .map(|s| request::parse_prefix(&format!("{prefix}subnet"), &s, false).map_err(config_error))
        .transpose()?;
    let gateway = text("gateway")?
        .map(|g| request::parse_ip(&format!("{prefix}gateway"), &g).map_err(config_error))
        .transpose()?;
    Ok(match (subnet, gateway) {
        (Some(net), gateway) => Some(SubnetRequest::given(net, gateway)),
        // A gateway alone: its family's subnet is picked, with it.
        (None, Some(g)) => Some(SubnetRequest {
            family: Family::of(g),
            subnet: None,
            gateway: Some(g),
        }),
        (None, None) => None,
    })
}

fn cluster_cidr(text: &str) -> Result<IpNet, CniError> {
    request::parse_prefix("clusterCIDR", text, false).map_err(config_error)
}

/// `runtimeConfig` (the capability arguments): `portMappings`, `ips`,
/// `mac`, `bandwidth` and `aliases` (network name to names, Podman's
/// convention for the dnsname plugin; this network's entry); the others
/// (ipRanges, dns, ...) are not berth's and are ignored.
fn parse_runtime_config(rc: &Map<String, Value>, conf: &mut NetConf) -> Result<(), CniError> {
    let bad = |what: &str| {
        CniError::new(
            CODE_BAD_CONFIG,
            format!("invalid runtimeConfig.{what} in the network configuration"),
        )
    };
    if let Some(list) = member(rc, "portMappings").filter(|v| !v.is_null()) {
        for m in list.as_array().ok_or_else(|| bad("portMappings"))? {
            let m = m.as_object().ok_or_else(|| bad("portMappings[]"))?;
            conf.port_mappings
                .push(port_mapping(m).map_err(|key| bad(&format!("portMappings[].{key}")))?);
        }
    }
    if let Some(list) = member(rc, "ips").filter(|v| !v.is_null()) {
        for ip in list.as_array().ok_or_else(|| bad("ips"))? {
            let s = ip.as_str().ok_or_else(|| bad("ips"))?;
            let addr = s.split('/').next().unwrap_or(s);
            conf.ips.push(addr.parse().map_err(|_| bad("ips"))?);
        }
    }
    if let Some(mac) = member(rc, "mac").filter(|v| !v.is_null()) {
        let text = mac.as_str().ok_or_else(|| bad("mac"))?;
        conf.mac = Some(request::parse_mac(text).map_err(config_error)?);
    }
    if let Some(bw) = member(rc, "bandwidth").filter(|v| !v.is_null()) {
        let bw = bw.as_object().ok_or_else(|| bad("bandwidth"))?;
        conf.bandwidth = bandwidth(bw).map_err(|key| bad(&format!("bandwidth.{key}")))?;
    }
    if let Some(all) = member(rc, "aliases").filter(|v| !v.is_null()) {
        let all = all.as_object().ok_or_else(|| bad("aliases"))?;
        let mut names = Vec::new();
        if let Some(list) = all.get(&conf.name).filter(|v| !v.is_null()) {
            for a in list.as_array().ok_or_else(|| bad("aliases"))? {
                names.push(a.as_str().ok_or_else(|| bad("aliases"))?.to_string());
            }
        }
        conf.aliases = Some(names);
    }
    Ok(())
}

/// The bandwidth capability, with the reference plugin's keys: rates in
/// bits per second, bursts in bits, non-negative integers (Go's uint64).
/// A rate of 0 (or none) leaves its direction unlimited; a burst of 0, or
/// the "none given" a runtime sends, gets berth's bucket
/// ([`Limit::from_bits`]). The key that is wrong on error.
fn bandwidth(bw: &Map<String, Value>) -> Result<Bandwidth, String> {
    let number = |k: &str| match member(bw, k) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| k.to_string()),
    };
    let limit = |rate: &str, burst: &str| -> Result<Option<Limit>, String> {
        let r = number(rate)?;
        let b = number(burst)?;
        if r == 0 {
            return Ok(None);
        }
        let l = Limit::from_bits(r, b);
        l.check(rate).map_err(|_| rate.to_string())?;
        Ok(Some(l))
    };
    Ok(Bandwidth {
        inbound: limit("ingressRate", "ingressBurst")?,
        outbound: limit("egressRate", "egressBurst")?,
    })
}

/// One port mapping, or the key that is wrong. A missing or null
/// `protocol` is TCP and `hostIP` every address, as for Go's zero values;
/// the ports must be 1-65535.
fn port_mapping(m: &Map<String, Value>) -> Result<PortMapping, &'static str> {
    let port = |k: &'static str| {
        member(m, k)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or(k)
    };
    let text = |k: &'static str| match member(m, k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(k),
    };
    let protocol = text("protocol")?
        .filter(|p| !p.is_empty())
        .unwrap_or("tcp")
        .to_ascii_lowercase();
    let host_ip = match text("hostIP")?.unwrap_or("") {
        "" => None,
        ip => Some(ip.parse::<IpAddr>().map_err(|_| "hostIP")?),
    };
    Ok(PortMapping {
        host_port: port("hostPort")?,
        container_port: port("containerPort")?,
        protocol: Proto::parse(&protocol).ok_or("protocol")?,
        // 0.0.0.0 means what no address means; `::` stays (IPv6 only).
        host_ip: host_ip.filter(|ip| !ip.is_unspecified() || ip.is_ipv6()),
    })
}

impl NetConf {
    /// The network this config names, as a request.
    pub fn network_request(&self) -> NetworkRequest {
        let mut r = NetworkRequest::new(self.name.clone());
        r.subnets = Some(self.subnet_requests());
        r.bridge = self.bridge.clone();
        r.mtu = self.mtu;
        r.masquerade = self.ip_masq != Some(false);
        r.icc = self.icc != Some(false);
        r.internal = self.internal == Some(true);
        r.cluster_cidrs = self.cluster_cidrs.clone().unwrap_or_default();
        r.dns = !self.no_dns;
        r.host_access = self.no_host_access != Some(true);
        r.owner = Some("cni".into());
        r.driver = self.driver.clone();
        r
    }

    /// The subnets of the network this config makes: those it names, else
    /// berth's picks (IPv4, and IPv6 with `ipv6`). The config says which
    /// families, not berth's config file: every node's runtime must get
    /// the same network from the same config.
    pub fn subnet_requests(&self) -> Vec<SubnetRequest> {
        if !self.subnets.is_empty() {
            return self.subnets.clone();
        }
        let mut out = vec![SubnetRequest::auto(Family::V4)];
        if self.ipv6 {
            out.push(SubnetRequest::auto(Family::V6));
        }
        out
    }

    /// The families of the network this config makes.
    pub fn families(&self) -> Families {
        self.subnet_requests()
            .iter()
            .fold(Families::NONE, |f, r| f.with(r.family))
    }

    /// The published ports the runtime asks for, on a network with
    /// subnets of `families` (see [`PortMapping::spec`]). `::` next to
    /// the same mapping on every address is already covered by it:
    /// runtimes send the pair for "both families".
    pub fn port_specs(&self, families: Families) -> Vec<PortSpec> {
        let specs: Vec<PortSpec> = self
            .port_mappings
            .iter()
            .filter_map(|m| m.spec(families))
            .collect();
        let every = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut out: Vec<PortSpec> = Vec::new();
        for s in &specs {
            let covered = s.host_ip.is_unspecified()
                && s.host_ip.is_ipv6()
                && specs.iter().any(|o| {
                    o.host_ip == every
                        && PortSpec {
                            host_ip: every,
                            ..*s
                        } == *o
                });
            if !covered && !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }

    /// Where a config contradicts the existing network of its name, one
    /// phrase each (an empty list: they agree).
    pub fn contradictions(&self, n: &crate::model::Network) -> Vec<String> {
        let mut out = Vec::new();
        let has = |what: Option<String>| what.unwrap_or_else(|| "none".into());
        for r in &self.subnets {
            let theirs = n.subnet_of(r.family);
            if let Some(s) = r.subnet {
                if theirs.map(|x| x.net) != Some(s) {
                    out.push(format!(
                        "subnet {s} (the network has {})",
                        has(theirs.map(|x| x.net.to_string()))
                    ));
                }
            }
            if let Some(g) = r.gateway {
                if theirs.and_then(|x| x.gateway) != Some(g) {
                    out.push(format!(
                        "gateway {g} (the network has {})",
                        has(theirs.and_then(|x| x.gateway).map(|x| x.to_string()))
                    ));
                }
            }
        }
        // A config naming its subnets names every family of the network.
        if !self.subnets.is_empty() {
            for s in &n.subnets {
                let family = Family::of_net(&s.net);
                if !self.subnets.iter().any(|r| r.family == family) {
                    out.push(format!(
                        "no {} subnet (the network has {})",
                        family.name(),
                        s.net
                    ));
                }
            }
        } else if self.ipv6 && n.subnet6().is_none() {
            out.push("ipv6 true (the network has no IPv6 subnet)".into());
        }
        if let Some(b) = &self.bridge {
            if *b != n.bridge {
                out.push(format!("bridge {b} (the network has {})", n.bridge));
            }
        }
        if self.driver != n.driver {
            out.push(format!(
                "driver {} (the network is {})",
                self.driver, n.driver
            ));
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
            // A macvlan/ipvlan network never masquerades.
            (
                "ipMasq",
                self.ip_masq.unwrap_or(true) && n.is_bridge(),
                n.policy.masquerade,
            ),
            (
                "noHostAccess",
                self.no_host_access.unwrap_or(false),
                !n.policy.host_access,
            ),
        ];
        for (key, want, has) in flags {
            if want != has {
                out.push(format!("{key} {want} (the network has {has})"));
            }
        }
        out
    }
}

/// Go's encoding/json rules for matching object keys to struct fields.
pub mod keys {
    use serde_json::{Map, Value};

    /// The value of field `name` in `obj`: the key spelled exactly so,
    /// else a key equal to it under Unicode simple case folding (Go's
    /// `bytes.EqualFold`, so `HostPort`, `HOSTPORT` and even `hoſtPort`
    /// name `hostPort`).
    pub fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        obj.get(name)
            .or_else(|| obj.iter().find(|(k, _)| fold_eq(k, name)).map(|(_, v)| v))
    }

    /// Whether `a` and `b` are equal under simple case folding.
    pub fn fold_eq(a: &str, b: &str) -> bool {
        a.chars().count() == b.chars().count()
            && a.chars().zip(b.chars()).all(|(x, y)| fold(x) == fold(y))
    }

    /// The representative of `c`'s simple folding orbit. Beyond ASCII, the
    /// two characters that fold to ASCII letters (the long s and the
    /// Kelvin sign) are what can make a key match an ASCII field name.
    fn fold(c: char) -> char {
        match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c if c.is_ascii() => c.to_ascii_lowercase(),
            c => {
                let mut lower = c.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(l), None) => l,
                    _ => c,
                }
            }
        }
    }

    /// The fields of a JSON object and, for those holding objects (or
    /// lists of objects), their fields.
    pub struct Schema {
        pub fields: &'static [(&'static str, Option<&'static Schema>)],
    }

    const INTERFACE: Schema = Schema {
        fields: &[
            ("name", None),
            ("mac", None),
            ("mtu", None),
            ("sandbox", None),
            ("socketPath", None),
            ("pciID", None),
        ],
    };
    const IP: Schema = Schema {
        fields: &[
            ("version", None),
            ("address", None),
            ("gateway", None),
            ("interface", None),
        ],
    };
    const ROUTE: Schema = Schema {
        fields: &[
            ("dst", None),
            ("gw", None),
            ("mtu", None),
            ("advmss", None),
            ("priority", None),
            ("table", None),
            ("scope", None),
        ],
    };
    const DNS: Schema = Schema {
        fields: &[
            ("nameservers", None),
            ("domain", None),
            ("search", None),
            ("options", None),
        ],
    };
    /// A CNI result (0.4.0 to 1.1.0), as `prevResult` carries it.
    pub const RESULT: Schema = Schema {
        fields: &[
            ("cniVersion", None),
            ("interfaces", Some(&INTERFACE)),
            ("ips", Some(&IP)),
            ("routes", Some(&ROUTE)),
            ("dns", Some(&DNS)),
        ],
    };

    /// `v` with every key that names a field of `schema` by another case
    /// respelled as the field, so code reading it by the canonical names
    /// sees what Go would decode. A key whose exact spelling is also
    /// present stays as it is (the exact one wins); other keys are kept.
    pub fn canonical(v: &Value, schema: &Schema) -> Value {
        match v {
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| canonical(i, schema)).collect())
            }
            Value::Object(obj) => {
                let mut out = Map::new();
                for (k, val) in obj {
                    let field = schema
                        .fields
                        .iter()
                        .find(|(name, _)| name == k)
                        .or_else(|| {
                            schema
                                .fields
                                .iter()
                                .find(|(name, _)| fold_eq(k, name) && !obj.contains_key(*name))
                        });
                    match field {
                        Some((name, child)) => {
                            let val = match child {
                                Some(child) => canonical(val, child),
                                None => val.clone(),
                            };
                            out.insert(name.to_string(), val);
                        }
                        None => {
                            out.insert(k.clone(), val.clone());
                        }
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
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
        assert_eq!(a.ips, ["10.1.0.9".parse::<IpAddr>().unwrap()]);
        let both = env("IP=10.1.0.9/24,fd00:1::9").cni_args().unwrap();
        assert_eq!(
            both.ips,
            [
                "10.1.0.9".parse::<IpAddr>().unwrap(),
                "fd00:1::9".parse().unwrap()
            ]
        );
        assert_eq!(
            env("IP=10.1.0.9,nope").cni_args().unwrap_err().code,
            CODE_BAD_ENV
        );
        assert_eq!(
            a.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:09")
        );
        assert_eq!(a.pod_name.as_deref(), Some("x"));
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
        // The `::` twin of a mapping on every address is covered by it.
        let specs = c.port_specs(Families::ALL);
        assert_eq!(specs, [PortSpec::parse("8080:80/tcp").unwrap()]);
        assert_eq!(
            c.ips,
            [
                "10.1.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert!(!c.network_request().masquerade);
        assert_eq!(c.valid_attachments.unwrap().len(), 1);
    }

    #[test]
    fn aliases_are_this_networks_entry_of_the_capability() {
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"berth",
                "runtimeConfig":{"aliases":{"other":["x"],"n":["web","0123456789ab"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.aliases.unwrap(), ["web", "0123456789ab"]);
        let none_here = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"berth","runtimeConfig":{"aliases":{"other":["x"]}}}"#,
        )
        .unwrap();
        assert_eq!(none_here.aliases.unwrap(), Vec::<String>::new());
        let plain = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"berth"}"#).unwrap();
        assert!(plain.aliases.is_none());
        let bad = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"berth","runtimeConfig":{"aliases":{"n":[1]}}}"#,
        );
        assert_eq!(bad.unwrap_err().code, CODE_BAD_CONFIG);
    }

    #[test]
    fn guard_switches_are_read_and_checked_against_the_network() {
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"berth","noHostAccess":true,"allowSpoofing":true}"#,
        )
        .unwrap();
        assert!(c.allow_spoofing);
        let req = c.network_request();
        assert!(!req.host_access);
        let plain = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"berth"}"#).unwrap();
        assert!(!plain.allow_spoofing);
        assert!(plain.network_request().host_access);
        let bad =
            parse(br#"{"cniVersion":"1.0.0","name":"n","type":"berth","noHostAccess":"yes"}"#);
        assert_eq!(bad.unwrap_err().code, CODE_BAD_CONFIG);
        // A config that says otherwise than the existing network is refused.
        let n = crate::model::Network {
            id: 1,
            name: "n".into(),
            subnets: vec![crate::model::Subnet {
                net: "10.88.0.0/16".parse().unwrap(),
                gateway: Some("10.88.0.1".parse().unwrap()),
            }],
            bridge: "cni0".into(),
            mtu: 1500,
            link_group: 1,
            route_table: 1,
            policy: crate::model::NetworkPolicy::default(),
            driver: Default::default(),
        };
        assert_eq!(
            c.contradictions(&n),
            ["noHostAccess true (the network has false)"]
        );
        assert!(plain.contradictions(&n).is_empty());
    }

    /// What each runtime writes in `runtimeConfig.portMappings`, read as
    /// the reference plugins (Go's encoding/json) read it.
    #[test]
    fn port_mappings_in_every_runtimes_spelling() {
        let table: [(&str, &str, &[&str]); 6] = [
            (
                "containerd/go-cni (Go field names)",
                r#"[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""},
                    {"HostPort":5353,"ContainerPort":53,"Protocol":"udp","HostIP":"203.0.113.1"}]"#,
                &["8080:80/tcp", "203.0.113.1:5353:53/udp"],
            ),
            (
                "CRI-O/ocicni, Podman, Multus (JSON tags)",
                r#"[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""},
                    {"hostPort":5353,"containerPort":53,"protocol":"udp"}]"#,
                &["8080:80/tcp", "5353:53/udp"],
            ),
            (
                "upper-case protocol",
                r#"[{"hostPort":5353,"containerPort":53,"protocol":"UDP"}]"#,
                &["5353:53/udp"],
            ),
            (
                "any case, with Go's folding (a long s)",
                "[{\"ho\u{17f}tPORT\":1,\"containerport\":2,\"PROTOCOL\":\"Udp\",\"hostip\":\"0.0.0.0\"},
                  {\"hostPort\":3,\"containerPort\":4,\"protocol\":null,\"hostIP\":null,\"kind\":1}]",
                &["1:2/udp", "3:4/tcp"],
            ),
            (
                "exact spelling wins over another case",
                r#"[{"hostPort":8080,"HostPort":9090,"containerPort":80}]"#,
                &["8080:80/tcp"],
            ),
            (
                "unknown keys ignored",
                r#"[{"hostPort":8080,"containerPort":80,"name":"http","range":1}]"#,
                &["8080:80/tcp"],
            ),
        ];
        for (what, mappings, want) in table {
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","type":"berth",
                    "runtimeConfig":{{"portMappings":{mappings}}}}}"#
            );
            let c = parse(conf.as_bytes()).unwrap_or_else(|e| panic!("{what}: {}", e.msg));
            let want: Vec<PortSpec> = want.iter().map(|w| PortSpec::parse(w).unwrap()).collect();
            assert_eq!(c.port_specs(Families::V4), want, "{what}");
        }
        for bad in [
            r#"[{"HostPort":"8080","ContainerPort":80}]"#,
            r#"[{"hostPort":8080}]"#,
            r#"[{"hostPort":70000,"containerPort":80}]"#,
            r#"[{"hostPort":8080,"containerPort":80,"protocol":6}]"#,
            r#"[5]"#,
        ] {
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","runtimeConfig":{{"portMappings":{bad}}}}}"#
            );
            let e = parse(conf.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.code, CODE_BAD_CONFIG, "{bad}");
        }
    }

    #[test]
    fn keys_fold_as_go_folds_them() {
        assert!(keys::fold_eq("HostPort", "hostPort"));
        assert!(keys::fold_eq("HOSTIP", "hostIP"));
        assert!(keys::fold_eq("ho\u{17f}tPort", "hostPort"));
        assert!(keys::fold_eq("\u{212a}ind", "kind"));
        assert!(!keys::fold_eq("hostPorts", "hostPort"));
        assert!(!keys::fold_eq("host_port", "hostPort"));
    }

    #[test]
    fn every_key_matches_in_any_case() {
        let c = parse(
            br#"{"CNIVERSION":"1.0.0","Name":"n","Type":"berth","SUBNET":"10.1.0.0/24",
                "ipmasq":false,"StateDir":"/s","ClusterCidr":["10.2.0.0/16"],
                "RuntimeConfig":{"IPS":["10.1.0.5"],"MAC":"02:00:00:00:00:05"},
                "CNI.DEV/Valid-Attachments":[{"ContainerId":"a","IfName":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.version, "1.0.0");
        assert_eq!(
            c.subnets
                .first()
                .and_then(|s| s.subnet)
                .map(|s| s.to_string())
                .as_deref(),
            Some("10.1.0.0/24")
        );
        assert_eq!(c.ip_masq, Some(false));
        assert_eq!(c.state_dir.as_deref(), Some("/s"));
        assert_eq!(
            c.cluster_cidrs.as_deref(),
            Some(&["10.2.0.0/16".parse::<IpNet>().unwrap()][..])
        );
        assert_eq!(c.ips, ["10.1.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            c.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:05")
        );
        let valid = c.valid_attachments.unwrap();
        assert!(valid.contains(&("a".to_string(), "eth0".to_string())));
        assert_eq!(version_of(br#"{"CniVersion":"0.4.0"}"#).unwrap(), "0.4.0");
    }

    #[test]
    fn prev_result_is_read_in_any_case() {
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","prevResult":{
                "CNIVersion":"1.0.0","Interfaces":[{"Name":"eth0","MAC":"02:00:00:00:00:05"}],
                "IPs":[{"Address":"10.1.0.5/24","Interface":0}],"ips":[{"address":"10.1.0.6/24"}],
                "Routes":[{"Dst":"0.0.0.0/0"}],"Extra":1}}"#,
        )
        .unwrap();
        let prev = c.prev_result.unwrap();
        assert_eq!(prev["interfaces"][0]["name"], "eth0");
        assert_eq!(prev["interfaces"][0]["mac"], "02:00:00:00:00:05");
        // The exact spelling wins; the other stays aside, as Go ignores it.
        assert_eq!(prev["ips"][0]["address"], "10.1.0.6/24");
        assert_eq!(prev["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(prev["Extra"], 1);
    }

    #[test]
    fn del_reads_what_it_needs_from_a_config_the_others_refuse() {
        let c = parse_for_del(
            br#"{"cniVersion":"0.3.1","name":"n","type":"bridge","stateDir":"/s",
                "runtimeConfig":{"portMappings":[{"hostPort":"x"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.state_dir.as_deref(), Some("/s"));
        assert_eq!(c.name, "n");
        assert!(c.port_mappings.is_empty());
        // A valid config is read whole.
        let c = parse_for_del(
            br#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":[
                {"HostPort":1,"ContainerPort":2}]}}"#,
        )
        .unwrap();
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(parse_for_del(b"[1]").unwrap_err().code, CODE_DECODE);
        assert_eq!(
            parse_for_del(br#"{"name":"n","stateDir":5}"#)
                .unwrap_err()
                .code,
            CODE_BAD_CONFIG
        );
    }

    fn subnets_of(conf: &str) -> Result<Vec<String>, CniError> {
        let c = parse(conf.as_bytes())?;
        Ok(c.subnet_requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.family.name(),
                    r.subnet.map(|s| s.to_string()).unwrap_or("auto".into()),
                    r.gateway.map(|g| g.to_string()).unwrap_or("-".into())
                )
            })
            .collect())
    }

    /// Every way a configuration names its subnets: berth's keys, the
    /// host-local plugin's, one family or two, and what is refused.
    #[test]
    fn subnets_of_either_family_in_every_spelling() {
        let head = r#""cniVersion":"1.0.0","name":"n","type":"berth""#;
        let table: [(&str, &[&str]); 8] = [
            ("", &["IPv4 auto -"]),
            (r#""ipv6":true"#, &["IPv4 auto -", "IPv6 auto -"]),
            (r#""subnet":"fd00:1::/64""#, &["IPv6 fd00:1::/64 -"]),
            (
                r#""subnet":"10.1.0.0/24","gateway":"10.1.0.254""#,
                &["IPv4 10.1.0.0/24 10.1.0.254"],
            ),
            (
                r#""ranges":[[{"subnet":"fd00:1::/64","gateway":"fd00:1::1"}],[{"subnet":"10.1.0.0/24"}]]"#,
                &["IPv4 10.1.0.0/24 -", "IPv6 fd00:1::/64 fd00:1::1"],
            ),
            (
                r#""ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00:1::/64"}]],
                   "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]}"#,
                &["IPv4 10.1.0.0/24 -", "IPv6 fd00:1::/64 -"],
            ),
            (
                r#""IPAM":{"Subnet":"fd00:2::/64","Gateway":"fd00:2::fe"}"#,
                &["IPv6 fd00:2::/64 fd00:2::fe"],
            ),
            (
                r#""subnet":"10.1.0.0/24","ipam":{"ranges":[[{"subnet":"fd00:1::/64"}]]}"#,
                &["IPv4 10.1.0.0/24 -", "IPv6 fd00:1::/64 -"],
            ),
        ];
        for (extra, want) in table {
            let sep = if extra.is_empty() { "" } else { "," };
            let conf = format!("{{{head}{sep}{extra}}}");
            let got = subnets_of(&conf).unwrap_or_else(|e| panic!("{extra}: {}", e.msg));
            assert_eq!(got, want, "{extra}");
        }
        for (bad, names) in [
            (r#""subnet":"fd00:1::1/64""#, "host bits"),
            (r#""subnet":"fd00::/200""#, "fd00::/200"),
            (
                r#""ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"10.2.0.0/24"}]]"#,
                "two IPv4 subnets",
            ),
            (
                r#""ranges":[[{"subnet":"10.1.0.0/24"},{"subnet":"10.2.0.0/24"}]]"#,
                "one range",
            ),
            (
                r#""ipam":{"ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.10"}]]}"#,
                "rangeStart",
            ),
            (r#""ranges":[{"subnet":"10.1.0.0/24"}]"#, "range sets"),
            (r#""ranges":[[{"gateway":5}]]"#, "gateway"),
            (r#""ipam":[1]"#, "ipam"),
        ] {
            let conf = format!("{{{head},{bad}}}");
            let e = subnets_of(&conf)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.code, CODE_BAD_CONFIG, "{bad}");
            assert!(e.msg.contains(names), "{bad}: {}", e.msg);
        }
    }

    /// A config naming its subnets must name the network's, family by
    /// family; one naming none agrees with any (but `ipv6` wants IPv6).
    #[test]
    fn dual_stack_configs_are_checked_against_the_network_per_family() {
        let n = crate::model::Network {
            id: 1,
            name: "n".into(),
            subnets: vec![
                crate::model::Subnet {
                    net: "10.88.0.0/16".parse().unwrap(),
                    gateway: Some("10.88.0.1".parse().unwrap()),
                },
                crate::model::Subnet {
                    net: "fd00:88::/64".parse().unwrap(),
                    gateway: Some("fd00:88::1".parse().unwrap()),
                },
            ],
            bridge: "cni0".into(),
            mtu: 1500,
            link_group: 1,
            route_table: 1,
            policy: crate::model::NetworkPolicy::default(),
            driver: Default::default(),
        };
        let head = r#""cniVersion":"1.0.0","name":"n","type":"berth""#;
        let check = |extra: &str| {
            let c = parse(format!("{{{head},{extra}}}").as_bytes()).unwrap();
            c.contradictions(&n)
        };
        assert!(check(r#""ipv6":true"#).is_empty());
        assert!(check(r#""ranges":[[{"subnet":"10.88.0.0/16"}],[{"subnet":"fd00:88::/64","gateway":"fd00:88::1"}]]"#).is_empty());
        assert_eq!(
            check(r#""subnet":"10.88.0.0/16""#),
            ["no IPv6 subnet (the network has fd00:88::/64)"]
        );
        assert_eq!(
            check(r#""ranges":[[{"subnet":"10.88.0.0/16"}],[{"subnet":"fd00:89::/64"}]]"#),
            ["subnet fd00:89::/64 (the network has fd00:88::/64)"]
        );
        assert_eq!(
            check(
                r#""ranges":[[{"subnet":"10.88.0.0/16"}],[{"subnet":"fd00:88::/64","gateway":"fd00:88::fe"}]]"#
            ),
            ["gateway fd00:88::fe (the network has fd00:88::1)"]
        );
        let four = crate::model::Network {
            subnets: n.subnets[..1].to_vec(),
            ..n.clone()
        };
        let c = parse(format!("{{{head},\"ipv6\":true}}").as_bytes()).unwrap();
        assert_eq!(
            c.contradictions(&four),
            ["ipv6 true (the network has no IPv6 subnet)"]
        );
        let c = parse(format!("{{{head},\"subnet\":\"fd00:88::/64\"}}").as_bytes()).unwrap();
        assert_eq!(
            c.contradictions(&four),
            [
                "subnet fd00:88::/64 (the network has none)",
                "no IPv4 subnet (the network has 10.88.0.0/16)"
            ]
        );
    }

    /// IPv6 host addresses in port mappings: `::` is every IPv6 address,
    /// a given one its own; each only where the network has IPv6, as the
    /// reference portmap plugin maps a family only for a container with
    /// an address of it.
    #[test]
    fn ipv6_host_addresses_of_port_mappings_follow_the_networks_families() {
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"berth","runtimeConfig":{"portMappings":[
                {"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"::"},
                {"hostPort":8081,"containerPort":80,"protocol":"tcp","hostIP":"2001:db8::1"},
                {"hostPort":8082,"containerPort":80,"protocol":"tcp","hostIP":"203.0.113.1"},
                {"hostPort":8083,"containerPort":80,"protocol":"tcp","hostIP":"0.0.0.0"},
                {"hostPort":8083,"containerPort":80,"protocol":"tcp","hostIP":"::"}]}}"#,
        )
        .unwrap();
        let specs = |f: Families| -> Vec<String> {
            c.port_specs(f)
                .iter()
                .map(|s| s.with_host_port(0).to_string())
                .collect()
        };
        let text = |w: &[&str]| -> Vec<String> {
            w.iter()
                .map(|p| PortSpec::parse(p).unwrap().with_host_port(0).to_string())
                .collect()
        };
        assert_eq!(
            specs(Families::ALL),
            text(&[
                "[::]:8080:80",
                "[2001:db8::1]:8081:80",
                "203.0.113.1:8082:80",
                "8083:80"
            ])
        );
        assert_eq!(
            specs(Families::V4),
            text(&["203.0.113.1:8082:80", "8083:80"])
        );
        assert_eq!(
            specs(Families::V6),
            text(&["[::]:8080:80", "[2001:db8::1]:8081:80", "8083:80"])
        );
    }
}
