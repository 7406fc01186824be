//! How the CLI shows what commands did: plans, notices, tables of
//! networks and endpoints, inspected networks, and `port` lines.

use super::listing;
use super::out::{errln, out, outln};
use crate::change::Outcome;
use crate::commands::jobs::{self, JobStatus};
use crate::commands::{endpoint, network};
use crate::context::{Context, Notice};
use crate::error::{Error, Result};
use crate::model::{Endpoint, Network};
use crate::plan::Plan;
use crate::store::{EndpointMark, Owners};

/// Prints what the user should know of the command that just ran: on
/// stderr, one line each, prefixed `berth:`.
pub fn notices(ctx: &mut Context) {
    for n in ctx.take_notices() {
        match n {
            Notice::Repaired { reason, lines } => {
                errln!("berth: {reason}; repaired first:");
                for line in lines {
                    errln!("berth:   {line}");
                }
            }
            Notice::Warning(w) => errln!("berth: warning: {w}"),
        }
    }
}

pub fn print_report(verb: &str, outcome: Outcome<Vec<String>>) {
    if let Some(lines) = done(outcome) {
        if lines.is_empty() {
            outln!("{verb}: the kernel already matches the state");
        }
        for line in lines {
            outln!("{verb}: {line}");
        }
    }
}

/// Prints a dry run's plan and returns None, or returns what was done.
pub fn done<T>(outcome: Outcome<T>) -> Option<T> {
    match outcome {
        Outcome::Planned(plan) => {
            print_plan(&plan);
            None
        }
        Outcome::Done(value) => Some(value),
    }
}

pub fn print_plan(plan: &Plan) {
    if plan.is_empty() {
        outln!("# nothing to do");
    }
    for line in plan.render() {
        outln!("{line}");
    }
}

/// Who made which network and endpoint (Podman's are marked).
/// Who made each network and endpoint (berth itself, or Podman).
pub fn owners(ctx: &Context) -> Result<Owners> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Owners::default());
    };
    let tx = store.read()?;
    let owners = tx.owners();
    drop(tx);
    ctx.hand_back_read_only(store);
    owners
}

pub fn json_error(e: serde_json::Error) -> Error {
    Error::Other(format!("encoding JSON: {e}"))
}

/// `network ls`: each network with its endpoint count, policy and whether
/// its bridge is there.
pub fn list_networks(ctx: &mut Context, opts: &listing::Options) -> Result<String> {
    let networks = network::list(ctx)?;
    // The networks' marks only: the endpoints' would be a scan of them all.
    let owners = Owners {
        networks: network::marks(ctx)?,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for (n, count) in &networks {
        let mut v = serde_json::to_value(n.view(*count)).map_err(json_error)?;
        // One lookup a network (there are a few) rather than a dump of
        // every link (a busy host has thousands of veths).
        v["status"] = match n.driver.parent() {
            Some(p) if ctx.kernel.link_exists(p)? => "up",
            Some(_) => "parent missing",
            None if ctx.kernel.link_exists(&n.bridge)? => "up",
            None => "bridge missing",
        }
        .into();
        // A macvlan/ipvlan network has no bridge: the column says what its
        // endpoints hang off instead.
        if !n.is_bridge() {
            v["bridge"] = n.driver.to_string().into();
        }
        v["owner"] = owners.networks.get(&n.name).cloned().into();
        rows.push(v);
    }
    const COLUMNS: &[listing::Column] = &[
        col("NAME", "name"),
        col("SUBNET", "subnet"),
        col("GATEWAY", "gateway"),
        col("BRIDGE", "bridge"),
        col("ENDPOINTS", "endpoint_count"),
        col("STATUS", "status"),
        col("POLICY", "policy"),
        col("OWNER", "owner"),
    ];
    listing::render(
        rows,
        COLUMNS,
        &[
            "name",
            "subnet",
            "bridge",
            "internal",
            "icc",
            "masquerade",
            "status",
            "owner",
        ],
        opts,
    )
}

const fn col(heading: &'static str, field: &'static str) -> listing::Column {
    listing::Column { heading, field }
}

/// A network, its endpoints and each endpoint's DNS aliases.
pub type Inspected = (Network, Vec<Endpoint>, Vec<Vec<String>>);

/// A network as `network inspect --json` shows it: its view, its owner
/// and its endpoints.
fn inspected_json(found: &Inspected, owners: &Owners) -> Result<serde_json::Value> {
    let (n, endpoints, aliases) = found;
    let mut value = serde_json::to_value(n.view(endpoints.len())).map_err(json_error)?;
    value["owner"] = owners.networks.get(&n.name).cloned().into();
    let mut eps = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let mut v = serde_json::to_value(e.view(n)).map_err(json_error)?;
        let mark = owners.endpoints.get(&e.id).cloned().unwrap_or_default();
        v["owner"] = mark.owner.into();
        v["container_id"] = mark.container_id.into();
        v["aliases"] = aliases.get(i).cloned().unwrap_or_default().into();
        eps.push(v);
    }
    value["endpoints"] = serde_json::Value::Array(eps);
    Ok(value)
}

/// How `network inspect` prints: text, a JSON array (always an array, as
/// Docker's, whatever the number of names), or a `--format` per network.
pub enum InspectAs<'a> {
    Text,
    Json,
    Format(&'a str),
}

pub fn print_networks_inspected(
    found: &[Inspected],
    owners: &Owners,
    how: InspectAs,
) -> Result<()> {
    match how {
        InspectAs::Json => {
            let all = found
                .iter()
                .map(|f| inspected_json(f, owners))
                .collect::<Result<Vec<_>>>()?;
            outln!(
                "{}",
                serde_json::to_string_pretty(&all).map_err(json_error)?
            );
        }
        InspectAs::Format(format) => {
            let all = found
                .iter()
                .map(|f| inspected_json(f, owners))
                .collect::<Result<Vec<_>>>()?;
            let fields: Vec<&str> = vec!["name", "subnet", "gateway", "endpoints"];
            out!("{}", listing::formatted(&all, &[], &fields, format)?);
        }
        InspectAs::Text => {
            for (i, (n, endpoints, aliases)) in found.iter().enumerate() {
                if i > 0 {
                    outln!();
                }
                print_network(n, endpoints, owners.networks.get(&n.name), aliases);
            }
        }
    }
    Ok(())
}

/// A network's subnets and gateways in words: `subnet S, gateway G`,
/// then `subnet6 S, gateway6 G` for its IPv6 one (`no subnet`).
pub fn subnet_words(n: &Network) -> String {
    if n.subnets.is_empty() {
        return "no subnet".into();
    }
    n.subnets
        .iter()
        .map(|s| {
            let six = if s.family() == crate::model::Family::V6 {
                "6"
            } else {
                ""
            };
            match s.gateway {
                Some(g) => format!("subnet{six} {}, gateway{six} {g}", s.net),
                None => format!("subnet{six} {}", s.net),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An endpoint's addresses with their prefix lengths.
pub fn address_list(e: &Endpoint, n: &Network) -> String {
    e.cidrs_text(n)
}

/// A network's gateways: `10.89.0.1, fd..::1` (`none`).
pub fn gateway_list(n: &Network) -> String {
    match n.gateways_text() {
        g if g.is_empty() => "none".into(),
        g => g,
    }
}

fn print_network(
    n: &Network,
    endpoints: &[Endpoint],
    owner: Option<&String>,
    aliases: &[Vec<String>],
) {
    outln!("name:      {}", n.name);
    if let Some(owner) = owner {
        outln!("owner:     {owner}");
    }
    if n.subnets.is_empty() {
        outln!("subnet:    none");
    }
    for s in &n.subnets {
        let six = if s.family() == crate::model::Family::V6 {
            "6"
        } else {
            ""
        };
        outln!("{:<11}{}", format!("subnet{six}:"), s.net);
        if let Some(g) = s.gateway {
            outln!("{:<11}{g}", format!("gateway{six}:"));
        }
    }
    match n.driver.parent() {
        None => outln!("bridge:    {}", n.bridge),
        Some(parent) => {
            outln!("driver:    {}", n.driver.name());
            outln!("parent:    {parent}");
            outln!("mode:      {}", n.driver.mode().unwrap_or_default());
        }
    }
    match n.mtu {
        0 => outln!("mtu:       the parent's"),
        mtu => outln!("mtu:       {mtu}"),
    }
    outln!("policy:    {}", n.policy.summary());
    outln!("dns:       {}", if n.policy.dns { "on" } else { "off" });
    outln!("endpoints: {}", endpoints.len());
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
            vec![
                format!("  {}", e.name),
                e.ips_text(),
                e.mac.to_string(),
                e.ifname.clone(),
                e.netns.clone(),
                aliases.get(i).map(|a| a.join(", ")).unwrap_or_default(),
                ports.join(", "),
                e.bandwidth.summary(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out!(
            "{}",
            listing::table(
                &[
                    "  NAME",
                    "ADDRESS",
                    "MAC",
                    "IFNAME",
                    "NETNS",
                    "ALIASES",
                    "PORTS",
                    "BANDWIDTH"
                ],
                &rows
            )
        );
    }
}

/// The columns of `ps`'s table.
const PS_COLUMNS: &[listing::Column] = &[
    col("NAME", "name"),
    col("STATUS", "status"),
    col("NETWORK", "network"),
    col("ADDRESS", "address"),
    col("MAC", "mac"),
    col("IFNAME", "ifname"),
    col("NETNS", "netns"),
    col("PORTS", "published"),
    col("BANDWIDTH", "limits"),
    col("OWNER", "owner"),
];

/// `ps`: every endpoint with its status as the kernel shows it, then the
/// jobs of `run -d` that have no endpoint to show (`--net host`, `--net
/// none`), and with `all` the finished ones.
pub fn list_endpoints(ctx: &mut Context, opts: &listing::Options, all: bool) -> Result<String> {
    // The default table shows ten texts an endpoint; building each row's
    // JSON object first (for filters, templates and --json) cost half of
    // a 1000-endpoint ps. tests/cli.rs checks that both give one table.
    let plain = listing::is_plain_table(opts);
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let owners = owners(ctx)?;
    let mut shown = std::collections::HashSet::new();
    for (e, n, status) in endpoint::list(ctx)? {
        let mark = owners.endpoints.get(&e.id);
        if plain {
            cells.push(endpoint_cells(&e, &n, status, mark));
        } else {
            rows.push(endpoint_row(&e, &n, status, mark)?);
        }
        shown.insert(e.netns);
    }
    for (job, status) in jobs::list(ctx)? {
        let running = matches!(status, JobStatus::Starting | JobStatus::Running);
        if shown.contains(&job.name) || !(running || all) {
            continue;
        }
        let row = serde_json::json!({
            "name": job.name,
            "status": status.to_string(),
            "network": match job.net.as_str() {
                "" => crate::commands::network::DEFAULT_NETWORK,
                other => other,
            },
            "netns": if job.net == "host" { "" } else { job.name.as_str() },
            "command": job.command.join(" "),
        });
        if plain {
            cells.push(listing::cells(&row, PS_COLUMNS));
        } else {
            rows.push(row);
        }
    }
    if plain {
        return Ok(listing::plain_table(&cells, PS_COLUMNS));
    }
    listing::render(
        rows,
        PS_COLUMNS,
        &[
            "name",
            "network",
            "netns",
            "status",
            "ip",
            "ifname",
            "owner",
            "container_id",
            "subnet",
            "command",
        ],
        opts,
    )
}

/// An endpoint as `ps` shows it: its view and what the listing adds.
fn endpoint_row(
    e: &Endpoint,
    n: &Network,
    status: &str,
    mark: Option<&EndpointMark>,
) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(e.view(n)).map_err(json_error)?;
    v["status"] = status.into();
    v["owner"] = mark.and_then(|m| m.owner.clone()).into();
    v["container_id"] = mark.and_then(|m| m.container_id.clone()).into();
    v["address"] = address_list(e, n).into();
    v["subnet"] = n
        .subnets
        .iter()
        .map(|s| s.net.to_string())
        .collect::<Vec<_>>()
        .join(", ")
        .into();
    v["published"] = published(e).into();
    v["limits"] = e.bandwidth.summary().into();
    Ok(v)
}

/// The cells of [`endpoint_row`] under [`PS_COLUMNS`], made directly.
fn endpoint_cells(
    e: &Endpoint,
    n: &Network,
    status: &str,
    mark: Option<&EndpointMark>,
) -> Vec<String> {
    vec![
        e.name.clone(),
        status.to_string(),
        e.network.clone(),
        address_list(e, n),
        e.mac.to_string(),
        e.ifname.clone(),
        e.netns.clone(),
        published(e),
        e.bandwidth.summary(),
        mark.and_then(|m| m.owner.clone()).unwrap_or_default(),
    ]
}

fn published(e: &Endpoint) -> String {
    let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
    ports.join(", ")
}

/// `port NAME [PORT[/PROTO]]`: the endpoint's mappings, one per line, as
/// `docker port` prints them (`80/tcp -> 0.0.0.0:8080`).
pub fn ports_of(ctx: &mut Context, name: &str, only: Option<&str>) -> Result<String> {
    let endpoints = endpoint::named(ctx, name)?;
    if endpoints.is_empty() {
        return Err(Error::invalid(format!(
            "no endpoint named {name:?} (see `berth ps`)"
        )));
    }
    let only = only
        .map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let port: u16 = port.parse().map_err(|_| {
                Error::invalid(format!("invalid port {p:?}: expected PORT[/PROTO]"))
            })?;
            Ok::<_, Error>((port, proto.to_ascii_lowercase()))
        })
        .transpose()?;
    let mut out = String::new();
    for e in &endpoints {
        for m in &e.ports {
            for (host, inside) in m.pairs() {
                if only
                    .as_ref()
                    .is_some_and(|(p, proto)| *p != inside || proto != m.proto.as_str())
                {
                    continue;
                }
                out.push_str(&format!("{inside}/{} -> {}:{host}\n", m.proto, m.host_ip));
            }
        }
    }
    if out.is_empty() && only.is_some() {
        return Err(Error::invalid(format!(
            "endpoint {name:?} does not publish {}",
            only.map(|(p, proto)| format!("{p}/{proto}"))
                .unwrap_or_default()
        )));
    }
    Ok(out)
}
