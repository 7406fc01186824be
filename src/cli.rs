//! Command-line surface: parses arguments, calls the command, prints text or
//! JSON, and maps errors to exit codes (2: bad input or missing privilege,
//! 1: a failure while doing a valid request).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::bench::{self, BenchOptions};
use crate::commands::endpoint::{self, ConnectOptions, Disconnected};
use crate::commands::network::{self, CreateOptions};
use crate::commands::run::{self, NetMode, RunOptions};
use crate::commands::{demo, maintain, Context, Outcome};
use crate::error::{Error, Result};
use crate::model::{Endpoint, Network};
use crate::plan::Plan;
use crate::store;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Fast, visible container networking for Linux"
)]
struct Cli {
    /// Where berth keeps its state.
    #[arg(long, global = true, env = "BERTH_STATE_DIR", default_value = store::DEFAULT_DIR)]
    state_dir: PathBuf,
    /// Print the equivalent ip/sysctl commands and change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Connect a network namespace to a network.
    Connect(ConnectArgs),
    /// Disconnect a network namespace from a network.
    Disconnect { network: String, target: String },
    /// List endpoints.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a fresh network sandbox.
    Run(RunArgs),
    /// Run a command inside an existing network namespace.
    Exec {
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Remove every network, endpoint, device, firewall rule, routing rule
    /// and state entry berth made, and put back what berth changed.
    Reset,
    /// Rebuild from the state what the kernel lost (after a reboot, or a
    /// deleted bridge or flushed ruleset); drop endpoints whose namespace is gone.
    Up,
    /// Like `up`, and also remove devices berth made that no state row knows.
    Gc,
    /// Show berth's main job on a built-in example, in a private sandbox.
    Demo,
    /// Measure connect/disconnect latency (or, with --traffic, the per-packet
    /// cost of published ports), in a private sandbox.
    Bench {
        /// Namespaces to connect.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Other networks present during the measurement.
        #[arg(long, default_value_t = 0)]
        networks: usize,
        /// Start one berth process per operation instead of calling in-process.
        #[arg(long)]
        cli: bool,
        /// TCP ports each connect publishes.
        #[arg(long, default_value_t = 0)]
        ports: usize,
        /// Measure connections/s with 10 vs 10,000 mappings and throughput
        /// through a published port.
        #[arg(long)]
        traffic: bool,
        /// Seconds per traffic measurement.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
}

#[derive(Subcommand)]
enum NetworkCommand {
    /// Create a network: a bridge with a subnet and gateway.
    Create(CreateArgs),
    /// List networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one network and its endpoints.
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a network.
    Rm {
        name: String,
        /// Disconnect its endpoints first.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct CreateArgs {
    name: String,
    /// IPv4 subnet, e.g. 10.90.0.0/24 (default: the first free /24 of 10.89.0.0-10.127.255.0).
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway address on the bridge (default: the subnet's first host address).
    #[arg(long)]
    gateway: Option<String>,
    /// Bridge interface name (default: berth-NAME).
    #[arg(long)]
    bridge: Option<String>,
    #[arg(long)]
    mtu: Option<u32>,
    /// Do not masquerade traffic leaving the network (for routed setups).
    #[arg(long)]
    no_masquerade: bool,
    /// Containers of the network cannot reach each other.
    #[arg(long)]
    no_icc: bool,
    /// Nothing leaves beyond the host; endpoints get no default route.
    #[arg(long)]
    internal: bool,
    /// Reject the network's traffic to this IPv4 range (repeatable).
    #[arg(long, value_name = "CIDR")]
    deny_egress: Vec<String>,
    /// Send the network's traffic out of this interface (policy routing).
    #[arg(long, value_name = "IFACE")]
    uplink: Option<String>,
    /// Gateway on the uplink (default: from the host's routes through it).
    #[arg(long, value_name = "IP")]
    uplink_gateway: Option<String>,
    /// Log what the firewall drops for the network (rate-limited).
    #[arg(long)]
    log_drops: bool,
    /// Routed peer range (repeatable): traffic to it is not masqueraded and
    /// new connections from it are accepted (pod networks of other nodes).
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Vec<String>,
}

#[derive(Args)]
struct ConnectArgs {
    network: String,
    /// A netns name (/run/netns), a path to a namespace file, or pid:PID.
    target: String,
    /// Endpoint name (default: the namespace's name).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    #[arg(long)]
    mac: Option<String>,
    /// Interface name inside the namespace (default: eth0, or the next free ethN).
    #[arg(long)]
    ifname: Option<String>,
    /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]
    /// (repeatable; without HOST_PORT berth picks a free one in 49153-60999).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// A network name, `host` or `none` (default: the built-in network `berth`).
    #[arg(long)]
    net: Option<String>,
    /// Name of the sandbox's namespace and endpoint.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    /// Publish a port (as for `connect -p`).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    // Started by a container runtime as its CNI plugin.
    if crate::cni::is_plugin() {
        return crate::cni::main();
    }
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let mutates = !matches!(
        cli.command,
        Command::Ps { .. }
            | Command::Network(NetworkCommand::Ls { .. } | NetworkCommand::Inspect { .. })
    );
    if mutates && !cli.dry_run {
        require_privileges()?;
    }
    let mut ctx = Context::new(cli.state_dir, cli.dry_run);
    match cli.command {
        Command::Network(NetworkCommand::Create(a)) => {
            let opts = CreateOptions {
                name: a.name,
                subnet: a.subnet,
                gateway: a.gateway,
                bridge: a.bridge,
                mtu: a.mtu,
                no_masquerade: a.no_masquerade,
                no_icc: a.no_icc,
                internal: a.internal,
                deny_egress: a.deny_egress,
                uplink: a.uplink,
                uplink_gateway: a.uplink_gateway,
                log_drops: a.log_drops,
                cluster_cidrs: a.cluster_cidr,
            };
            if let Some(created) = done(network::create(&mut ctx, &opts)?) {
                for w in &created.warnings {
                    eprintln!("berth: {w}");
                }
                let n = created.network;
                println!(
                    "created network {}: subnet {}, gateway {}, bridge {}",
                    n.name, n.subnet, n.gateway, n.bridge
                );
            }
        }
        Command::Network(NetworkCommand::Ls { json }) => {
            print_networks(&network::list(&ctx)?, json)?
        }
        Command::Network(NetworkCommand::Inspect { name, json }) => {
            let (n, endpoints) = network::inspect(&ctx, &name)?;
            print_network(&n, &endpoints, json, &crate::cni::attachments(&ctx))?;
        }
        Command::Network(NetworkCommand::Rm { name, force }) => {
            if let Some(endpoints) = done(network::remove(&mut ctx, &name, force)?) {
                match endpoints.len() {
                    0 => println!("removed network {name}"),
                    n => println!("removed network {name} and disconnected {n} endpoint(s)"),
                }
            }
        }
        Command::Connect(a) => {
            let opts = ConnectOptions {
                network: a.network,
                target: a.target,
                name: a.name,
                ip: a.ip,
                mac: a.mac,
                ifname: a.ifname,
                ports: a.publish,
                attachment: None,
            };
            if let Some((e, n)) = done(endpoint::connect(&mut ctx, &opts)?) {
                if a.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&e.view(&n)).map_err(json_error)?
                    );
                } else {
                    println!(
                        "connected {} to {}: {}/{} mac {} dev {} (host side {}, gateway {})",
                        e.name,
                        n.name,
                        e.ip,
                        n.subnet.prefix_len(),
                        e.mac,
                        e.ifname,
                        e.host_ifname,
                        n.gateway
                    );
                    for p in &e.ports {
                        println!("published {p}");
                    }
                }
            }
        }
        Command::Disconnect { network, target } => {
            match done(endpoint::disconnect(&mut ctx, &network, &target)?) {
                Some(Disconnected::Removed(e)) => {
                    println!("disconnected {} from {network} (released {})", e.name, e.ip);
                    for p in &e.ports {
                        println!("unpublished {p}");
                    }
                }
                Some(Disconnected::NothingToDo) => {
                    println!("nothing to do: {target} is not connected to {network}")
                }
                None => {}
            }
        }
        Command::Ps { json } => {
            let endpoints = endpoint::list(&mut ctx)?;
            print_endpoints(&endpoints, json, &crate::cni::attachments(&ctx))?
        }
        Command::Run(a) => {
            if cli.dry_run {
                return Err(Error::invalid("run does not support --dry-run"));
            }
            let opts = RunOptions {
                net: NetMode::parse(a.net.as_deref()),
                name: a.name,
                ip: a.ip,
                ports: a.publish,
                command: a.command,
            };
            return run::run(&mut ctx, &opts);
        }
        Command::Exec { target, command } => return run::exec(&target, &command),
        Command::Reset => {
            if let Some(r) = done(network::reset(&mut ctx)?) {
                println!(
                    "reset: removed {} network(s) and {} endpoint(s)",
                    r.networks, r.endpoints
                );
            }
        }
        Command::Up => print_report("up", maintain::up(&mut ctx)?),
        Command::Gc => print_report("gc", maintain::gc(&mut ctx)?),
        Command::Demo => demo::demo()?,
        Command::Bench {
            count,
            networks,
            cli,
            ports,
            traffic,
            seconds,
        } => bench::bench(&BenchOptions {
            count,
            extra_networks: networks,
            via_cli: cli,
            ports,
            traffic,
            seconds,
        })?,
    }
    Ok(0)
}

/// Prints what a reconcile did (or, for a dry run, would do).
fn print_report(verb: &str, outcome: Outcome<Vec<String>>) {
    if let Some(lines) = done(outcome) {
        if lines.is_empty() {
            println!("{verb}: the kernel already matches the state");
        }
        for line in lines {
            println!("{verb}: {line}");
        }
    }
}

/// Prints a dry run's plan and returns None, or returns what was done.
fn done<T>(outcome: Outcome<T>) -> Option<T> {
    match outcome {
        Outcome::Planned(plan) => {
            print_plan(&plan);
            None
        }
        Outcome::Done(value) => Some(value),
    }
}

fn print_plan(plan: &Plan) {
    if plan.is_empty() {
        println!("# nothing to do");
    }
    for line in plan.render() {
        println!("{line}");
    }
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Other(format!("encoding JSON: {e}"))
}

fn print_networks(networks: &[(Network, usize)], json: bool) -> Result<()> {
    if json {
        let views: Vec<_> = networks.iter().map(|(n, c)| n.view(*c)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&views).map_err(json_error)?
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<18} {:<15} {:<15} {:>5} {:>9}",
        "NAME", "SUBNET", "GATEWAY", "BRIDGE", "MTU", "ENDPOINTS"
    );
    for (n, count) in networks {
        println!(
            "{:<20} {:<18} {:<15} {:<15} {:>5} {:>9}",
            n.name,
            n.subnet.to_string(),
            n.gateway.to_string(),
            n.bridge,
            n.mtu,
            count
        );
    }
    Ok(())
}

fn print_network(
    n: &Network,
    endpoints: &[Endpoint],
    json: bool,
    cni: &std::collections::HashMap<i64, store::Attachment>,
) -> Result<()> {
    if json {
        let mut value = serde_json::to_value(n.view(endpoints.len())).map_err(json_error)?;
        let mut eps = Vec::new();
        for e in endpoints {
            let mut v = serde_json::to_value(e.view(n)).map_err(json_error)?;
            if let Some(a) = cni.get(&e.id) {
                v["cni"] = serde_json::json!({"containerID": a.container_id, "ifname": a.ifname});
            }
            eps.push(v);
        }
        value["endpoints"] = serde_json::Value::Array(eps);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(json_error)?
        );
        return Ok(());
    }
    println!("name:      {}", n.name);
    println!("subnet:    {}", n.subnet);
    println!("gateway:   {}", n.gateway);
    println!("bridge:    {}", n.bridge);
    println!("mtu:       {}", n.mtu);
    println!("endpoints: {}", endpoints.len());
    for e in endpoints {
        println!(
            "  {:<20} {:<15} {} {} {}",
            e.name,
            e.ip.to_string(),
            e.mac,
            e.ifname,
            e.netns
        );
        for p in &e.ports {
            println!("    published {p}");
        }
    }
    Ok(())
}

fn print_endpoints(
    endpoints: &[(Endpoint, Network, &str)],
    json: bool,
    cni: &std::collections::HashMap<i64, store::Attachment>,
) -> Result<()> {
    if json {
        let mut views = Vec::new();
        for (e, n, status) in endpoints {
            let mut v = serde_json::to_value(e.view(n)).map_err(json_error)?;
            v["status"] = (*status).into();
            // Attachments made by a CNI runtime, with the runtime's key.
            if let Some(a) = cni.get(&e.id) {
                v["cni"] = serde_json::json!({"containerID": a.container_id, "ifname": a.ifname});
            }
            views.push(v);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&views).map_err(json_error)?
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<9} {:<15} {:<18} {:<17} {:<8} {:<20} PORTS",
        "NAME", "STATUS", "NETWORK", "ADDRESS", "MAC", "IFNAME", "NETNS"
    );
    for (e, n, status) in endpoints {
        let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
        println!(
            "{:<20} {:<9} {:<15} {:<18} {:<17} {:<8} {:<20} {}",
            e.name,
            status,
            e.network,
            format!("{}/{}", e.ip, n.subnet.prefix_len()),
            e.mac.to_string(),
            e.ifname,
            e.netns,
            ports.join(", ")
        );
    }
    Ok(())
}

/// berth changes links, routes and namespaces: it needs CAP_NET_ADMIN and
/// CAP_SYS_ADMIN. Checked up front so the user gets one clear line, not an
/// EPERM from the middle of a plan.
fn require_privileges() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN) {
        Ok(())
    } else {
        Err(Error::Privilege(
            "this command needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo".into(),
        ))
    }
}
