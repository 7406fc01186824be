//! The ADD result, encoded in the version the runtime asked for. 0.4.0
//! gives each IP a `"version": "4"`; 1.0.0 dropped it; 1.1.0 keeps the
//! 1.0.0 shape (its new fields are optional and berth sets none).

use serde_json::{json, Value};

use crate::model::{Endpoint, Network};

/// The result of attaching `e` to `n`, whose container end lives in the
/// namespace at `sandbox`. `host_mac` is the host veth's MAC.
pub fn encode(
    version: &str,
    n: &Network,
    e: &Endpoint,
    sandbox: &str,
    host_mac: &str,
    dns: Option<&Value>,
) -> Value {
    let mut host = json!({ "name": e.host_ifname });
    if !host_mac.is_empty() {
        host["mac"] = host_mac.into();
    }
    let container = json!({ "name": e.ifname, "mac": e.mac.to_string(), "sandbox": sandbox });
    // A macvlan/ipvlan child is the only interface: it has no host side.
    let interfaces = if e.has_veth() {
        json!([host, container])
    } else {
        json!([container])
    };
    let mut ip = json!({
        "address": format!("{}/{}", e.ip, n.subnet.prefix_len()),
        "gateway": n.gateway.to_string(),
        "interface": if e.has_veth() { 1 } else { 0 },
    });
    if version == "0.4.0" {
        ip["version"] = "4".into();
    }
    let routes: Vec<Value> = if e.default_route {
        vec![json!({ "dst": "0.0.0.0/0", "gw": n.gateway.to_string() })]
    } else {
        Vec::new()
    };
    json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": [ip],
        "routes": routes,
        "dns": dns.cloned().unwrap_or_else(|| json!({})),
    })
}
