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
use crate::listing;
use crate::model::{Endpoint, Network};
use crate::plan::Plan;
use crate::store::{self, Owners};

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
    /// Print the equivalent ip/nft/sysctl commands and change nothing
    /// (commands that can honour it also take it after their name).
    #[arg(long)]
    dry_run: bool,
    /// Log each kernel step as it is applied, with its duration (-vv: more);
    /// RUST_LOG (e.g. `berth=debug`) filters the same way.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// `--dry-run`, for the commands that can honour it (and only those, so
/// `--help` never offers it where it would not hold).
#[derive(Args, Clone, Copy, Default)]
struct DryRun {
    /// Print the equivalent ip/nft/sysctl commands and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Connect a network namespace to a network.
    Connect(ConnectArgs),
    /// Disconnect a network namespace (or an endpoint, by name) from a network.
    Disconnect(DisconnectArgs),
    /// List endpoints.
    Ps(ListArgs),
    /// Show an endpoint's published ports (as `docker port`).
    Port {
        /// The endpoint's name (as `ps` shows it).
        name: String,
        /// Only this container port: PORT or PORT/PROTO.
        private_port: Option<String>,
    },
    /// Run a command in a fresh network sandbox.
    Run(RunArgs),
    /// End a command started with `run -d` and remove its sandbox.
    Stop {
        /// The name `run -d` printed.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Run a command inside an existing network namespace.
    Exec {
        /// A netns name, a path to a namespace file, or pid:PID.
        target: String,
        /// Give the command an /etc/resolv.conf naming berth's DNS server
        /// on the namespace's network.
        #[arg(long)]
        dns: bool,
        #[command(flatten)]
        dry: DryRun,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// berth's DNS server (started by berth itself; see the README for
    /// running it under systemd).
    #[command(hide = true)]
    DnsServer {
        /// Keep running when no network needs DNS (for a service manager).
        #[arg(long)]
        stay: bool,
    },
    /// Remove every network, endpoint, device, firewall rule, routing rule
    /// and state entry berth made, and put back what berth changed.
    Reset(DryRun),
    /// Rebuild from the state what the kernel lost (after a reboot, or a
    /// deleted bridge or flushed ruleset); drop endpoints whose namespace is gone.
    Up(DryRun),
    /// Like `up`, and also remove devices berth made that no state row knows.
    Gc(DryRun),
    /// Show berth's main job on a built-in example, in a private sandbox.
    Demo,
    /// Print a shell completion script (bash, zsh, fish, elvish).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (berth.1, berth-network.1, ...) into a directory.
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
    /// Act as Podman's netavark (`berth netavark --help`); also what berth
    /// does when invoked under the name `netavark`.
    Netavark {
        /// netavark's own arguments (`--config DIR setup NETNS`, `version`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
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
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Show networks and their endpoints.
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove networks.
    #[command(visible_alias = "remove")]
    Rm {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Disconnect their endpoints first.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Remove every network that has no endpoint.
    Prune(DryRun),
    /// Connect a network namespace to a network (as `berth connect`).
    Connect(ConnectArgs),
    /// Disconnect from a network (as `berth disconnect`).
    Disconnect(DisconnectArgs),
}

/// How `ls` and `ps` show their list.
#[derive(Args)]
struct ListArgs {
    /// Only names.
    #[arg(short, long)]
    quiet: bool,
    /// Keep rows whose KEY is VALUE (name matches a part); repeatable.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// `json` (one object per line) or a template like `table {{.Name}}\t{{.Subnet}}`.
    #[arg(long)]
    format: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    fn options(&self) -> listing::Options {
        listing::Options {
            quiet: self.quiet,
            filters: self.filter.clone(),
            format: self.format.clone(),
            json: self.json,
        }
    }
}

#[derive(Args)]
struct CreateArgs {
    /// The network's name.
    name: String,
    #[command(flatten)]
    dry: DryRun,
    /// IPv4 subnet, e.g. 10.90.0.0/24 (default: the first free /24 of 10.89.0.0-10.127.255.0).
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway address on the bridge (default: the subnet's first host address).
    #[arg(long)]
    gateway: Option<String>,
    /// Bridge interface name (default: berth-NAME).
    #[arg(long)]
    bridge: Option<String>,
    /// MTU of the bridge and the veths (default 1500).
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
    /// Do not serve the network's names with berth's DNS server.
    #[arg(long)]
    no_dns: bool,
    /// Routed peer range (repeatable): traffic to it is not masqueraded and
    /// new connections from it are accepted (pod networks of other nodes).
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Vec<String>,
}

#[derive(Args)]
struct ConnectArgs {
    /// The network to connect to.
    network: String,
    /// A netns name (/run/netns), a path to a namespace file, or pid:PID.
    target: String,
    /// Endpoint name (default: the namespace's name).
    #[arg(long)]
    name: Option<String>,
    /// The address (default: the next free one of the subnet).
    #[arg(long)]
    ip: Option<String>,
    /// The MAC address (default: 02:42 followed by the IPv4 address).
    #[arg(long)]
    mac: Option<String>,
    /// Interface name inside the namespace (default: eth0, or the next free ethN).
    #[arg(long)]
    ifname: Option<String>,
    /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]
    /// (repeatable; without HOST_PORT berth picks a free one in 49153-60999).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Another DNS name of the endpoint on this network (repeatable).
    #[arg(long, value_name = "NAME")]
    alias: Vec<String>,
    /// Allow TARGET to be the host's own network namespace.
    #[arg(long)]
    allow_host_netns: bool,
    /// Publish even a host port a host process listens on (the container wins).
    #[arg(long)]
    force_publish: bool,
    /// Print the endpoint as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    dry: DryRun,
}

#[derive(Args)]
struct DisconnectArgs {
    /// The network to disconnect from.
    network: String,
    /// A netns name, a path to a namespace file, pid:PID, or an endpoint name.
    target: String,
    /// Succeed (with nothing to do) when TARGET is not connected.
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    dry: DryRun,
}

#[derive(Args)]
struct RunArgs {
    /// A network name, `host` or `none` (default: the built-in network `berth`).
    #[arg(long, visible_alias = "network")]
    net: Option<String>,
    /// Name of the sandbox's namespace and endpoint.
    #[arg(long)]
    name: Option<String>,
    /// The address on the network (default: the next free one).
    #[arg(long)]
    ip: Option<String>,
    /// Publish a port (as for `connect -p`).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Another DNS name of the sandbox on its network (repeatable).
    #[arg(long, value_name = "NAME")]
    alias: Vec<String>,
    /// Nameserver for the command's /etc/resolv.conf instead of the
    /// network's gateway (repeatable).
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// Search domain for the command's /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Publish every --expose port on a host port berth picks.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// A port the command serves: PORT[-END][/PROTO] (published with -P).
    #[arg(long, value_name = "PORT")]
    expose: Vec<String>,
    /// The command's host name.
    #[arg(long)]
    hostname: Option<String>,
    /// Run in the background; print the endpoint's name (end it with `berth stop`).
    #[arg(short, long)]
    detach: bool,
    /// Do not print what was made.
    #[arg(short, long)]
    quiet: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl Command {
    /// Whether the subcommand's own `--dry-run` was given.
    fn dry_run(&self) -> bool {
        let dry = match self {
            Command::Network(NetworkCommand::Create(a)) => a.dry,
            Command::Network(NetworkCommand::Rm { dry, .. }) => *dry,
            Command::Network(NetworkCommand::Prune(dry)) => *dry,
            Command::Network(NetworkCommand::Connect(a)) | Command::Connect(a) => a.dry,
            Command::Network(NetworkCommand::Disconnect(a)) | Command::Disconnect(a) => a.dry,
            Command::Exec { dry, .. } => *dry,
            Command::Reset(dry) | Command::Up(dry) | Command::Gc(dry) => *dry,
            _ => DryRun::default(),
        };
        dry.dry_run
    }
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    // Started by a container runtime as its CNI plugin.
    if crate::cni::is_plugin() {
        return crate::cni::main();
    }
    // Podman runs berth as `netavark` (a symlink), or a user as `berth netavark`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if crate::netavark::invoked_as_netavark() {
        return crate::netavark::main(args.split_off(1), None);
    }
    if args.get(1).is_some_and(|a| a == "netavark") {
        return crate::netavark::main(args.split_off(2), None);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let args: Vec<String> = std::env::args().collect();
            let is_run =
                args.iter().skip(1).find(|a| !a.starts_with('-')) == Some(&"run".to_string());
            if is_run
                && !args.iter().any(|a| a == "--")
                && matches!(
                    e.kind(),
                    clap::error::ErrorKind::UnknownArgument
                        | clap::error::ErrorKind::MissingRequiredArgument
                )
            {
                eprintln!(
                    "berth: put the command after `--`, as in: berth run [--net NET] [OPTIONS] -- COMMAND [ARGS...]"
                );
                return 2;
            }
            e.exit();
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            e.exit_code()
        }
    }
}

/// Logs to stderr: what `-v` asks for, or what RUST_LOG says.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match (std::env::var("RUST_LOG"), verbose) {
        (Ok(spec), _) => EnvFilter::new(spec),
        (Err(_), 0) => return,
        (Err(_), 1) => EnvFilter::new("berth=info"),
        (Err(_), _) => EnvFilter::new("berth=debug"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn dispatch(cli: Cli) -> Result<i32> {
    if !matches!(cli.command, Command::Demo) {
        init_logging(cli.verbose);
    }
    let mutates = !matches!(
        cli.command,
        Command::Ps { .. }
            | Command::Port { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Network(NetworkCommand::Ls { .. } | NetworkCommand::Inspect { .. })
    );
    let dry_run = cli.dry_run || cli.command.dry_run();
    if mutates && !dry_run {
        require_privileges()?;
    }
    let mut ctx = Context::new(cli.state_dir, dry_run);
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
                owner: None,
                no_dns: a.no_dns,
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
        Command::Network(NetworkCommand::Ls(a)) => {
            print!("{}", list_networks(&mut ctx, &a.options())?)
        }
        Command::Network(NetworkCommand::Inspect { names, json }) => {
            let mut found = Vec::new();
            for name in &names {
                let (n, endpoints) = network::inspect(&ctx, name)?;
                let aliases = crate::dns::aliases(&ctx.state_dir, &endpoints)?; // DNS
                found.push((n, endpoints, aliases));
            }
            print_networks_inspected(&found, &owners(&ctx)?, json)?;
        }
        Command::Network(NetworkCommand::Rm { names, force, .. }) => {
            // Checked first, so a typo in the third name removes nothing.
            for name in &names {
                network::inspect(&ctx, name)?;
            }
            for name in &names {
                if let Some(endpoints) = done(network::remove(&mut ctx, name, force)?) {
                    match endpoints.len() {
                        0 => println!("removed network {name}"),
                        n => println!("removed network {name} and disconnected {n} endpoint(s)"),
                    }
                }
            }
        }
        Command::Network(NetworkCommand::Prune(_)) => {
            let empty: Vec<String> = network::list(&ctx)?
                .into_iter()
                .filter(|(_, count)| *count == 0)
                .map(|(n, _)| n.name)
                .collect();
            for name in &empty {
                if done(network::remove(&mut ctx, name, false)?).is_some() {
                    println!("removed network {name}");
                }
            }
        }
        Command::Network(NetworkCommand::Connect(a)) | Command::Connect(a) => {
            let opts = ConnectOptions {
                network: a.network,
                target: a.target,
                name: a.name,
                ip: a.ip,
                mac: a.mac,
                ifname: a.ifname,
                ports: a.publish,
                allow_host_netns: a.allow_host_netns,
                force_publish: a.force_publish,
                mark: None,
                metric: None,
                aliases: a.alias,
                attachment: None,
            };
            let opts_aliases = opts.aliases.clone();
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
                    if !opts_aliases.is_empty() {
                        println!("aliases {}", opts_aliases.join(", "));
                    }
                }
            }
        }
        Command::Network(NetworkCommand::Disconnect(DisconnectArgs {
            network,
            target,
            force,
            ..
        }))
        | Command::Disconnect(DisconnectArgs {
            network,
            target,
            force,
            ..
        }) => match done(endpoint::disconnect(&mut ctx, &network, &target, force)?) {
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
        },
        Command::Ps(a) => print!("{}", list_endpoints(&mut ctx, &a.options())?),
        Command::Port { name, private_port } => {
            print!("{}", ports_of(&mut ctx, &name, private_port.as_deref())?)
        }
        Command::Run(a) => {
            if cli.dry_run {
                return Err(Error::invalid("run does not support --dry-run"));
            }
            let mut ports = a.publish;
            if a.publish_all {
                ports.extend(a.expose.iter().cloned());
            } else if !a.expose.is_empty() {
                // Checked all the same: a typo should not wait for -P.
                for e in &a.expose {
                    crate::model::PortSpec::parse(e).map_err(Error::Invalid)?;
                }
            }
            let opts = RunOptions {
                net: NetMode::parse(a.net.as_deref()),
                name: a.name,
                ip: a.ip,
                ports,
                aliases: a.alias,
                dns: a.dns,
                dns_search: a.dns_search,
                command: a.command,
                hostname: a.hostname,
                quiet: a.quiet,
            };
            if a.detach {
                let name = run::detach(&ctx, &opts)?;
                println!("{name}");
                return Ok(0);
            }
            return run::run(&mut ctx, &opts);
        }
        Command::Stop { names } => {
            for name in &names {
                run::stop(&mut ctx, name)?;
                println!("{name}");
            }
        }
        Command::Exec {
            target,
            dns,
            command,
            ..
        } => {
            if ctx.dry_run {
                // Nothing runs: the command is shown as the `nsenter` line
                // that would run it.
                println!("{}", run::exec_plan(&ctx, &target, &command)?);
                return Ok(0);
            }
            return run::exec(&ctx, &target, dns, &command);
        }
        Command::DnsServer { stay } => return crate::dns::serve(&ctx.state_dir, stay),
        Command::Reset(_) => {
            if let Some(r) = done(network::reset(&mut ctx)?) {
                println!(
                    "reset: removed {} network(s) and {} endpoint(s)",
                    r.networks, r.endpoints
                );
            }
        }
        Command::Up(_) => print_report("up", maintain::up(&mut ctx)?),
        Command::Gc(_) => print_report("gc", maintain::gc(&mut ctx)?),
        Command::Demo => demo::demo(cli.verbose > 0)?,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed pipe
            // (`berth completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "berth", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        }
        Command::Man { dir } => {
            for page in write_man_pages(&dir)? {
                println!("{}", page.display());
            }
        }
        // Reached only with global options first (`berth --dry-run netavark`).
        Command::Netavark { args } => {
            if ctx.dry_run {
                return Err(Error::invalid("netavark does not support --dry-run"));
            }
            return Ok(crate::netavark::main(args, Some(ctx.state_dir)));
        }
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

/// Writes one man page per command and subcommand; returns their paths.
fn write_man_pages(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    fn walk(
        cmd: clap::Command,
        prefix: &str,
        dir: &std::path::Path,
        out: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone().name(name.clone()))
            .render(&mut page)
            .map_err(Error::Io)?;
        std::fs::write(&path, page).map_err(Error::Io)?;
        out.push(path);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), &name, dir, out)?;
        }
        Ok(())
    }
    walk(
        <Cli as clap::CommandFactory>::command(),
        "",
        dir,
        &mut written,
    )?;
    Ok(written)
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

/// Who made which network and endpoint (Podman's are marked).
/// Who made each network and endpoint (berth itself, or Podman).
fn owners(ctx: &Context) -> Result<Owners> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Owners::default());
    };
    let tx = store.read()?;
    tx.owners()
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Other(format!("encoding JSON: {e}"))
}

/// `network ls`: each network with its endpoint count, policy and whether
/// its bridge is there.
fn list_networks(ctx: &mut Context, opts: &listing::Options) -> Result<String> {
    let networks = network::list(ctx)?;
    let owners = owners(ctx)?;
    let links: std::collections::HashSet<String> = if networks.is_empty() {
        Default::default()
    } else {
        ctx.kernel.links()?.into_iter().map(|l| l.name).collect()
    };
    let mut rows = Vec::new();
    for (n, count) in &networks {
        let mut v = serde_json::to_value(n.view(*count)).map_err(json_error)?;
        v["status"] = if links.contains(&n.bridge) {
            "up"
        } else {
            "bridge missing"
        }
        .into();
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
type Inspected = (Network, Vec<Endpoint>, Vec<Vec<String>>);

fn print_networks_inspected(found: &[Inspected], owners: &Owners, json: bool) -> Result<()> {
    if json {
        let mut all = Vec::new();
        for (n, endpoints, aliases) in found {
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
            all.push(value);
        }
        // One network prints as an object (as before); several as an array.
        let out = if all.len() == 1 {
            all.pop().expect("one")
        } else {
            serde_json::Value::Array(all)
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(json_error)?
        );
        return Ok(());
    }
    for (i, (n, endpoints, aliases)) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_network(n, endpoints, owners.networks.get(&n.name), aliases);
    }
    Ok(())
}

fn print_network(
    n: &Network,
    endpoints: &[Endpoint],
    owner: Option<&String>,
    aliases: &[Vec<String>],
) {
    println!("name:      {}", n.name);
    if let Some(owner) = owner {
        println!("owner:     {owner}");
    }
    println!("subnet:    {}", n.subnet);
    println!("gateway:   {}", n.gateway);
    println!("bridge:    {}", n.bridge);
    println!("mtu:       {}", n.mtu);
    println!("policy:    {}", n.policy.summary());
    println!("dns:       {}", if n.policy.dns { "on" } else { "off" });
    println!("endpoints: {}", endpoints.len());
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
            vec![
                format!("  {}", e.name),
                e.ip.to_string(),
                e.mac.to_string(),
                e.ifname.clone(),
                e.netns.clone(),
                aliases.get(i).map(|a| a.join(", ")).unwrap_or_default(),
                ports.join(", "),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            listing::table(
                &["  NAME", "ADDRESS", "MAC", "IFNAME", "NETNS", "ALIASES", "PORTS"],
                &rows
            )
        );
    }
}

/// `ps`: every endpoint with its status as the kernel shows it.
fn list_endpoints(ctx: &mut Context, opts: &listing::Options) -> Result<String> {
    let mut rows = Vec::new();
    let owners = owners(ctx)?;
    for (e, n, status) in endpoint::list(ctx)? {
        let mut v = serde_json::to_value(e.view(&n)).map_err(json_error)?;
        v["status"] = status.into();
        let mark = owners.endpoints.get(&e.id).cloned().unwrap_or_default();
        v["owner"] = mark.owner.into();
        v["container_id"] = mark.container_id.into();
        v["address"] = format!("{}/{}", e.ip, n.subnet.prefix_len()).into();
        let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
        v["published"] = ports.join(", ").into();
        rows.push(v);
    }
    const COLUMNS: &[listing::Column] = &[
        col("NAME", "name"),
        col("STATUS", "status"),
        col("NETWORK", "network"),
        col("ADDRESS", "address"),
        col("MAC", "mac"),
        col("IFNAME", "ifname"),
        col("NETNS", "netns"),
        col("PORTS", "published"),
        col("OWNER", "owner"),
    ];
    listing::render(
        rows,
        COLUMNS,
        &[
            "name",
            "network",
            "netns",
            "status",
            "ip",
            "ifname",
            "owner",
            "container_id",
        ],
        opts,
    )
}

/// `port NAME [PORT[/PROTO]]`: the endpoint's mappings, one per line, as
/// `docker port` prints them (`80/tcp -> 0.0.0.0:8080`).
fn ports_of(ctx: &mut Context, name: &str, only: Option<&str>) -> Result<String> {
    let endpoints: Vec<_> = endpoint::list(ctx)?
        .into_iter()
        .filter(|(e, _, _)| e.name == name)
        .collect();
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
    for (e, _, _) in &endpoints {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_option_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "berth", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:#?}");
        Cli::command().debug_assert();
    }

    /// `--dry-run` is offered exactly where it holds.
    #[test]
    fn dry_run_is_offered_only_where_it_holds() {
        let cmd = Cli::command();
        let offers = |path: &[&str]| {
            let mut c = &cmd;
            for p in path {
                c = c.find_subcommand(p).expect("subcommand");
            }
            c.get_arguments().any(|a| a.get_id() == "dry_run")
        };
        for yes in [
            &["connect"][..],
            &["disconnect"],
            &["exec"],
            &["reset"],
            &["up"],
            &["gc"],
            &["network", "create"],
            &["network", "rm"],
            &["network", "prune"],
            &["network", "connect"],
        ] {
            assert!(offers(yes), "{yes:?} should offer --dry-run");
        }
        for no in [
            &["run"][..],
            &["ps"],
            &["port"],
            &["stop"],
            &["network", "ls"],
            &["network", "inspect"],
        ] {
            assert!(!offers(no), "{no:?} must not offer --dry-run");
        }
    }

    #[test]
    fn top_level_help() {
        let help = Cli::command().render_help().to_string();
        expect_test::expect_file!["../tests/snapshots/help.txt"].assert_eq(&help);
    }
}
