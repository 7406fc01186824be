//! The graph as a tree for a terminal: the host, its uplinks, each
//! network with its endpoints and their published ports, then the
//! namespaces on several networks and how networks are kept apart.

use super::model::{more_hint, more_label, EndpointNode, Graph, NetworkNode};

/// One line of the tree and the lines under it.
struct Node {
    label: String,
    children: Vec<Node>,
}

fn leaf(label: String) -> Node {
    Node {
        label,
        children: Vec::new(),
    }
}

pub fn render(graph: &Graph) -> String {
    let mut host = Node {
        label: "host".to_string(),
        children: Vec::new(),
    };
    for u in &graph.uplinks {
        let mut label = format!("uplink {}", u.ifname);
        if !u.addresses.is_empty() {
            label += &format!(" {}", u.addresses.join(", "));
        }
        if let Some(gw) = &u.default_via {
            label += &format!(", default via {gw}");
        }
        if !u.networks.is_empty() {
            label += &format!(", uplink of {}", u.networks.join(", "));
        }
        if u.up == Some(false) {
            label += " (missing or down)";
        }
        host.children.push(leaf(label));
    }
    if graph.networks.is_empty() {
        host.children.push(leaf(
            "no networks (`berth network create NAME` makes one)".to_string(),
        ));
    }
    let shared = graph.shared();
    for (ni, n) in graph.networks.iter().enumerate() {
        let mut net = Node {
            label: network_label(n),
            children: Vec::new(),
        };
        for (ei, e) in n.endpoints.iter().enumerate() {
            let also: Vec<&str> = shared
                .iter()
                .filter(|s| s.at.contains(&(ni, ei)))
                .flat_map(|s| s.at.iter())
                .filter(|&&(other, _)| other != ni)
                .map(|&(other, _)| graph.networks[other].name.as_str())
                .collect();
            net.children.push(endpoint_node(e, &also));
        }
        if n.hidden > 0 {
            net.children
                .push(leaf(format!("{} ({})", more_label(n), more_hint(&n.name))));
        }
        host.children.push(net);
    }
    let mut out = String::new();
    if let Some(dir) = &graph.no_state {
        out += &format!("berth has no state yet ({dir}): nothing made so far\n");
    }
    if let Some(why) = &graph.facts_missing {
        out += &format!("link states unknown: {why}\n");
    }
    out += &host.label;
    out.push('\n');
    write_children(&host.children, "", &mut out);
    if !shared.is_empty() {
        out += "namespaces on several networks:\n";
        for s in &shared {
            let places: Vec<String> =
                s.at.iter()
                    .map(|&(ni, ei)| {
                        let (n, e) = (&graph.networks[ni], &graph.networks[ni].endpoints[ei]);
                        format!("{} ({} {})", n.name, e.ifname, e.address)
                    })
                    .collect();
            out += &format!("  {}: {}\n", s.netns, places.join(", "));
        }
    }
    if let Some(note) = graph.isolation_note() {
        out += &format!("{note}\n");
    }
    out
}

fn network_label(n: &NetworkNode) -> String {
    let mut label = format!(
        "network {}  bridge {}{}  subnet {}  gateway {}",
        n.name,
        n.bridge,
        match n.bridge_up {
            Some(false) => " (missing or down)",
            _ => "",
        },
        n.subnet,
        n.gateway
    );
    let mut words = n.flags.words();
    if let Some(owner) = &n.owner {
        words.push(format!("owner {owner}"));
    }
    if !words.is_empty() {
        label += &format!("  [{}]", words.join(", "));
    }
    label
}

fn endpoint_node(e: &EndpointNode, also_on: &[&str]) -> Node {
    let mut label = e.name.clone();
    if e.netns != e.name {
        label += &format!("  netns {}", e.netns);
    }
    label += &format!("  {} {}  mac {}", e.ifname, e.address, e.mac);
    if let Some(owner) = e.owner_label() {
        label += &format!("  [{owner}]");
    }
    if e.status != "up" {
        label += &format!("  ({})", e.status);
    }
    if !also_on.is_empty() {
        label += &format!("  (its namespace is also on {})", also_on.join(", "));
    }
    Node {
        label,
        children: e
            .ports
            .iter()
            .map(|p| leaf(format!("published {p}")))
            .collect(),
    }
}

fn write_children(children: &[Node], prefix: &str, out: &mut String) {
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        out.push_str(prefix);
        out.push_str(if last { "└── " } else { "├── " });
        out.push_str(&c.label);
        out.push('\n');
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        write_children(&c.children, &deeper, out);
    }
}
