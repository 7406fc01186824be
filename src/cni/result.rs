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
    // One entry per address (each family the network has), with the
    // gateway of its subnet.
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for addr in &e.ips {
        let Some(s) = n.subnet_holding(*addr) else {
            continue;
        };
        let mut ip = json!({
            "address": format!("{addr}/{}", s.net.prefix_len()),
            "interface": if e.has_veth() { 1 } else { 0 },
        });
        if let Some(g) = s.gateway {
            ip["gateway"] = g.to_string().into();
            if e.default_route.has(crate::model::Family::of(g)) {
                let dst = if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
                routes.push(json!({ "dst": dst, "gw": g.to_string() }));
            }
        }
        if version == "0.4.0" {
            ip["version"] = if addr.is_ipv4() { "4" } else { "6" }.into();
        }
        ips.push(ip);
    }
    json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns.cloned().unwrap_or_else(|| json!({})),
    })
}
