//! The graph as Graphviz input (`dot -Tpng`): a node for the host, each
//! uplink, each network and each namespace (once, whatever the number of
//! its networks), an edge per endpoint from its network to its namespace,
//! and an edge per published port from the host to the namespace.

use super::model::{more_hint, more_label, Graph};

/// A DOT string literal: quotes and backslashes escaped, each line break
/// written as `\n` (a centred line in Graphviz).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn render(graph: &Graph) -> String {
    let mut out = String::from("digraph berth {\n");
    out += "  graph [rankdir=TB, fontname=\"monospace\", labelloc=t];\n";
    out += "  node [shape=box, style=rounded, fontname=\"monospace\", fontsize=10];\n";
    out += "  edge [fontname=\"monospace\", fontsize=9, dir=none];\n";
    let mut title = "berth graph".to_string();
    if let Some(dir) = &graph.no_state {
        title += &format!("\nno state yet ({dir})");
    }
    out += &format!("  label={};\n", q(&title));
    out += "  \"host\" [label=\"host\", shape=box3d];\n";
    for u in &graph.uplinks {
        let id = format!("uplink:{}", u.ifname);
        let mut label = format!("uplink {}", u.ifname);
        for a in &u.addresses {
            label += &format!("\n{a}");
        }
        if let Some(gw) = &u.default_via {
            label += &format!("\ndefault via {gw}");
        }
        if u.up == Some(false) {
            label += "\n(missing or down)";
        }
        out += &format!("  {} [label={}, shape=box];\n", q(&id), q(&label));
        out += &format!("  \"host\" -> {};\n", q(&id));
    }
    if graph.networks.is_empty() {
        out += "  \"none\" [label=\"no networks\", shape=plaintext];\n";
        out += "  \"host\" -> \"none\" [style=invis];\n";
    }
    for n in &graph.networks {
        let id = format!("net:{}", n.name);
        let mut label = format!(
            "network {}\nbridge {}{}\nsubnet {}\ngateway {}",
            n.name,
            n.bridge,
            if n.bridge_up == Some(false) {
                " (missing or down)"
            } else {
                ""
            },
            n.subnet,
            n.gateway
        );
        let mut words = n.flags.words();
        if let Some(o) = &n.owner {
            words.push(format!("owner {o}"));
        }
        if !words.is_empty() {
            label += &format!("\n[{}]", words.join(", "));
        }
        out += &format!("  {} [label={}];\n", q(&id), q(&label));
        let (style, edge_label) = if n.flags.internal {
            ("dashed", "internal: no way out".to_string())
        } else {
            ("solid", n.bridge.clone())
        };
        out += &format!(
            "  \"host\" -> {} [style={style}, label={}];\n",
            q(&id),
            q(&edge_label)
        );
        if let Some((ifname, _)) = &n.flags.uplink {
            out += &format!(
                "  {} -> {} [style=dotted, label=\"--uplink\"];\n",
                q(&id),
                q(&format!("uplink:{ifname}"))
            );
        }
        if n.hidden > 0 {
            let more = format!("more:{}", n.name);
            out += &format!(
                "  {} [label={}, style=dashed];\n",
                q(&more),
                q(&format!("{}\n{}", more_label(n), more_hint(&n.name)))
            );
            out += &format!("  {} -> {} [style=dashed];\n", q(&id), q(&more));
        }
    }
    // One node per namespace, then one edge per endpoint.
    let mut declared: Vec<&str> = Vec::new();
    for n in &graph.networks {
        for e in &n.endpoints {
            if declared.contains(&e.netns_key.as_str()) {
                continue;
            }
            declared.push(&e.netns_key);
            let mut names: Vec<&str> = Vec::new();
            let mut owner = None;
            for e2 in graph.networks.iter().flat_map(|n| n.endpoints.iter()) {
                if e2.netns_key == e.netns_key {
                    if !names.contains(&e2.name.as_str()) {
                        names.push(&e2.name);
                    }
                    owner = owner.or(e2.owner_label());
                }
            }
            let mut label = names.join(", ");
            if names.len() != 1 || names[0] != e.netns {
                label += &format!("\nnetns {}", e.netns);
            }
            if let Some(o) = owner {
                label += &format!("\n[{o}]");
            }
            out += &format!(
                "  {} [label={}, shape=component];\n",
                q(&format!("ns:{}", e.netns_key)),
                q(&label)
            );
        }
    }
    for n in &graph.networks {
        for e in &n.endpoints {
            let mut label = format!("{} {}\n{}", e.ifname, e.address, e.mac);
            if e.status != "up" {
                label += &format!("\n({})", e.status);
            }
            out += &format!(
                "  {} -> {} [label={}];\n",
                q(&format!("net:{}", n.name)),
                q(&format!("ns:{}", e.netns_key)),
                q(&label)
            );
        }
    }
    for (p, e) in graph.ports() {
        out += &format!(
            "  \"host\" -> {} [label={}, style=dashed, color=\"#a0206e\", fontcolor=\"#a0206e\", dir=forward, constraint=false];\n",
            q(&format!("ns:{}", e.netns_key)),
            q(&format!("{} -> {} ({})", p.host, p.inside, e.ip()))
        );
    }
    if let Some(note) = graph.isolation_note() {
        out += &format!("  \"isolation\" [label={}, shape=note];\n", q(&note));
    }
    out += "}\n";
    out
}
