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
use crate::store::{EndpointMark, Owners, Status};

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
    // One lookup a network (there are a few) rather than a dump of every
    // link (a busy host has thousands of veths), by ioctl on one socket:
    // a netlink socket of its own was a tenth of a `network ls`.
    let links: Vec<&str> = networks
        .iter()
        .map(|(n, _)| n.driver.parent().unwrap_or(&n.bridge))
        .collect();
    let present = ctx.kernel.links_present(&links)?;
    for ((n, count), there) in networks.iter().zip(present) {
        let mut v = serde_json::to_value(n.view(*count)).map_err(json_error)?;
        v["status"] = match (n.driver.parent(), there) {
            (Some(_), true) => "up",
            (Some(_), false) => "parent missing",
            (None, true) => "up",
            (None, false) => "bridge missing",
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

/// `network inspect NAME` as text: the network, then a table of its
/// endpoints written straight from the state's rows (see
/// `store/listing.rs`), with their aliases and published ports.
pub fn network_text(ctx: &Context, name: &str) -> Result<InspectedText> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Err(network::no_such_network(name));
    };
    let tx = store.read()?;
    let n = tx.require_network(name)?;
    let owner = tx.network_marks()?.remove(&n.name);
    let mut aliases = tx.network_aliases(n.id)?;
    let mut table = listing::Table::default();
    tx.each_listed_endpoint(Some(n.id), |e| {
        table.cell_with(|out| {
            out.push_str("  ");
            out.push_str(e.name);
        });
        table.cell_with(|out| write_ips(out, e));
        table.cell(&e.mac);
        table.cell(e.ifname);
        table.cell(e.netns);
        table.cell_with(|out| {
            for (i, a) in aliases.remove(&e.id).into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&a);
            }
        });
        table.cell(e.published);
        table.cell_with(|out| write_bandwidth(out, &e.bandwidth));
        table.end_row();
        Ok(())
    })?;
    drop(tx);
    ctx.hand_back_read_only(store);
    let heading = network_heading(&n, owner.as_ref(), table.len());
    Ok(InspectedText { heading, table })
}

/// A network as `network inspect` prints it: the lines about the network
/// and the table of its endpoints.
pub struct InspectedText {
    heading: String,
    table: listing::Table,
}

impl InspectedText {
    /// Prints it; a long table in pieces (see [`listing::Table::render_to`]).
    pub fn print(&self) {
        out!("{}", self.heading);
        if !self.table.is_empty() {
            self.table.render_to(
                &[
                    "  NAME",
                    "ADDRESS",
                    "MAC",
                    "IFNAME",
                    "NETNS",
                    "ALIASES",
                    "PORTS",
                    "BANDWIDTH",
                ],
                &mut |chunk| out!("{chunk}"),
            );
        }
    }
}

/// [`Bandwidth::summary`](crate::model::Bandwidth::summary), written
/// into `out` (nothing at all for the usual endpoint without limits).
fn write_bandwidth(out: &mut String, b: &crate::model::Bandwidth) {
    if b.inbound.is_some() || b.outbound.is_some() {
        out.push_str(&b.summary());
    }
}

/// [`Endpoint::ips_text`] of a listed endpoint, written into `out`.
fn write_ips(out: &mut String, e: &crate::store::ListedEndpoint) {
    use std::fmt::Write;
    let mut any = false;
    for ip in e.ips() {
        if any {
            out.push_str(", ");
        }
        any = true;
        // Writing to a String cannot fail.
        let _ = write!(out, "{ip}");
    }
    if !any {
        out.push('-');
    }
}

/// The lines of `network inspect` above its endpoints' table.
fn network_heading(n: &Network, owner: Option<&String>, endpoints: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |args: std::fmt::Arguments| {
        let _ = out.write_fmt(args);
        out.push('\n');
    };
    line(format_args!("name:      {}", n.name));
    if let Some(owner) = owner {
        line(format_args!("owner:     {owner}"));
    }
    if n.subnets.is_empty() {
        line(format_args!("subnet:    none"));
    }
    for s in &n.subnets {
        let six = if s.family() == crate::model::Family::V6 {
            "6"
        } else {
            ""
        };
        line(format_args!("{:<11}{}", format!("subnet{six}:"), s.net));
        if let Some(g) = s.gateway {
            line(format_args!("{:<11}{g}", format!("gateway{six}:")));
        }
    }
    match n.driver.parent() {
        None => line(format_args!("bridge:    {}", n.bridge)),
        Some(parent) => {
            line(format_args!("driver:    {}", n.driver.name()));
            line(format_args!("parent:    {parent}"));
            line(format_args!(
                "mode:      {}",
                n.driver.mode().unwrap_or_default()
            ));
        }
    }
    match n.mtu {
        0 => line(format_args!("mtu:       the parent's")),
        mtu => line(format_args!("mtu:       {mtu}")),
    }
    line(format_args!("policy:    {}", n.policy.summary()));
    line(format_args!(
        "dns:       {}",
        if n.policy.dns { "on" } else { "off" }
    ));
    line(format_args!("endpoints: {endpoints}"));
    out
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
pub fn list_endpoints(ctx: &mut Context, opts: &listing::Options, all: bool) -> Result<()> {
    if listing::is_plain_table(opts) {
        return ps_table(ctx, all);
    }
    let owners = owners(ctx)?;
    let mut rows = Vec::new();
    let mut shown = std::collections::HashSet::new();
    for (e, n, status) in endpoint::list(ctx)? {
        rows.push(endpoint_row(&e, &n, status, owners.endpoints.get(&e.id))?);
        shown.insert(e.netns);
    }
    for (job, status) in jobs::list(ctx)? {
        if let Some(row) = job_row(&job, status, all, |name| shown.contains(name)) {
            rows.push(row);
        }
    }
    let text = listing::render(
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
    )?;
    out!("{text}");
    Ok(())
}

/// A job's row in `ps`, unless an endpoint in its namespace (`shown`)
/// stands for it or it has finished and `all` was not asked for.
fn job_row(
    job: &crate::store::Job,
    status: JobStatus,
    all: bool,
    shown: impl Fn(&str) -> bool,
) -> Option<serde_json::Value> {
    let running = matches!(status, JobStatus::Starting | JobStatus::Running);
    if shown(&job.name) || !(running || all) {
        return None;
    }
    Some(serde_json::json!({
        "name": job.name,
        "status": status.to_string(),
        "network": match job.net.as_str() {
            "" => crate::commands::network::DEFAULT_NETWORK,
            other => other,
        },
        "netns": if job.net == "host" { "" } else { job.name.as_str() },
        "command": job.command.join(" "),
    }))
}

/// `ps`'s default table, written straight from the state's rows (see
/// `store/listing.rs`): the same cells as [`endpoint_row`] gives under
/// [`PS_COLUMNS`] (tests/cli.rs compares the two), without an `Endpoint`,
/// a JSON object or a string per cell.
fn ps_table(ctx: &mut Context, all: bool) -> Result<()> {
    let mut table = listing::Table::default();
    let jobs = jobs::list(ctx)?;
    let job_names: std::collections::HashSet<&str> =
        jobs.iter().map(|(j, _)| j.name.as_str()).collect();
    let mut shown = std::collections::HashSet::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut veths = String::new();
    let mut networks: Vec<Network> = Vec::new();
    if let Some(mut store) = ctx.store_read_only()? {
        let tx = store.read()?;
        networks = tx.networks()?;
        tx.each_listed_endpoint(None, |e| {
            let Some(n) = networks.iter().position(|n| n.name == e.network) else {
                return Ok(());
            };
            table.cell(e.name);
            table.cell("");
            table.cell(e.network);
            table.cell_with(|out| write_cidrs(out, e, &networks[n]));
            table.cell(&e.mac);
            table.cell(e.ifname);
            table.cell(e.netns);
            table.cell(e.published);
            table.cell_with(|out| write_bandwidth(out, &e.bandwidth));
            table.cell(e.owner.unwrap_or_default());
            table.end_row();
            let child = (!e.has_veth()).then(|| (n, e.netns.to_string(), e.netns_inode));
            pending.push((Status::parse(e.status), child));
            veths.push_str(e.host_ifname);
            veths.push('\n');
            // Room for a long listing at once, as the table makes.
            if table.len() == listing::LONG_TABLE {
                let more = listing::ROOM_ROWS - listing::LONG_TABLE;
                pending.reserve(more);
                veths.reserve(veths.len() / listing::LONG_TABLE * more);
            }
            if job_names.contains(e.netns) {
                shown.insert(e.netns.to_string());
            }
            Ok(())
        })?;
        drop(tx);
        ctx.hand_back_read_only(store);
    }
    let statuses = live_statuses(ctx, &networks, &veths, &pending)?;
    for (row, status) in statuses.into_iter().enumerate() {
        table.set(row, 1, status);
    }
    for (job, status) in jobs {
        if let Some(row) = job_row(&job, status, all, |name| shown.contains(name)) {
            for cell in listing::cells(&row, PS_COLUMNS) {
                table.cell(&cell);
            }
            table.end_row();
        }
    }
    let headings: Vec<&str> = PS_COLUMNS.iter().map(|c| c.heading).collect();
    table.render_to(&headings, &mut |chunk| out!("{chunk}"));
    Ok(())
}

/// A listed row's status as recorded, and for a macvlan/ipvlan child
/// (no veth) what its liveness needs: its network's index, its namespace
/// and that namespace's inode.
type Pending = (Status, Option<(usize, String, u64)>);

/// [`Endpoint::cidrs_text`] of a listed endpoint, written into `out`.
fn write_cidrs(out: &mut String, e: &crate::store::ListedEndpoint, n: &Network) {
    use std::fmt::Write;
    let mut any = false;
    for ip in e.ips() {
        if any {
            out.push_str(", ");
        }
        any = true;
        // Writing to a String cannot fail.
        let _ = match n.subnet_holding(ip) {
            Some(s) => write!(out, "{ip}/{}", s.net.prefix_len()),
            None => write!(out, "{ip}"),
        };
    }
    if !any {
        out.push_str("no address");
    }
}

/// Each listed endpoint's status as `endpoint::list` tells it: `up` when
/// its veth (`veths`, one name a line) is there, or for a macvlan/ipvlan
/// child when its parent is and its namespace is the one recorded.
fn live_statuses(
    ctx: &mut Context,
    networks: &[Network],
    veths: &str,
    pending: &[Pending],
) -> Result<Vec<&'static str>> {
    let mut names: Vec<&str> = veths.lines().collect();
    let count = names.len();
    names.extend(networks.iter().filter_map(|n| n.driver.parent()));
    let found = ctx.kernel.links_present(&names)?;
    let parent_up = |n: &Network| {
        n.driver.parent().is_some_and(|p| {
            names[count..]
                .iter()
                .zip(&found[count..])
                .any(|(name, there)| *there && *name == p)
        })
    };
    let mut out = Vec::with_capacity(count);
    for ((status, child), veth) in pending.iter().zip(&found) {
        out.push(match status {
            Status::Creating => "creating",
            Status::Removing => "removing",
            Status::Ready if *veth => "up",
            Status::Ready => match child {
                Some((n, netns, inode))
                    if parent_up(&networks[*n])
                        && ctx
                            .kernel
                            .parse_target(netns)
                            .ok()
                            .and_then(|t| ctx.kernel.netns_inode(&t.path))
                            == Some(*inode) =>
                {
                    "up"
                }
                _ => "gone",
            },
        });
    }
    Ok(out)
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

fn published(e: &Endpoint) -> String {
    crate::model::ports::published_text(&e.ports)
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
