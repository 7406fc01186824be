//! The command line as clap definitions, parsed into typed values at the
//! boundary: addresses, prefixes, MACs and port mappings are checked by
//! value parsers, and each command's arguments become the request type
//! `commands` takes. Nothing below the CLI sees a raw string for a value
//! that has a type.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use super::listing;
use crate::commands::run::{NetMode, RunRequest};
use crate::error::Error;
use crate::model::bandwidth::parse_rate;
use crate::model::{Bandwidth, Family, Limit, Mac, PortSpec};
use crate::request::{self, AttachRequest, NetworkRequest, SubnetRequest, UplinkRequest};
use crate::store;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Fast, visible container networking for Linux"
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// The environment variable that names the state directory when
/// `--state-dir` does not.
const STATE_DIR_ENV: &str = "BERTH_STATE_DIR";

// The options before the command's name (the global ones also after it).
#[derive(Args)]
pub struct Globals {
    /// Where berth keeps its state.
    #[arg(long, global = true, env = STATE_DIR_ENV, default_value = store::DEFAULT_DIR)]
    pub state_dir: PathBuf,
    /// Print the equivalent ip/nft/sysctl commands and change nothing
    /// (commands that can honour it also take it after their name).
    #[arg(long)]
    pub dry_run: bool,
    /// Log each kernel step as it is applied, with its duration (-vv: more);
    /// RUST_LOG (e.g. `berth=debug`) filters the same way.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// Parses the process's command line: the plainest listing lines
    /// (words without options, see [`Cli::plain_listing`]) without clap,
    /// everything else by clap's whole tree, so help and errors read as
    /// always.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let state_dir = std::env::var_os(STATE_DIR_ENV);
        if let Some(cli) = Cli::plain_listing(&args, state_dir) {
            return Ok(cli);
        }
        <Cli as Parser>::try_parse_from(args)
    }

    /// `ps`, `network ls`, `network inspect NAME...` and `port NAME
    /// [PORT]` as words alone (no option, nothing that starts with `-`,
    /// no empty word), with `state_dir` the environment's
    /// `BERTH_STATE_DIR`: the values clap gives such a line, without
    /// clap. Parsing even a tree of only that command took 0.1 ms of a
    /// 0.9 ms `ps`, most of it running clap's code for the first time in
    /// the process; these are what users and scripts type most. Unit tests hold the
    /// values to clap's.
    fn plain_listing(
        args: &[std::ffi::OsString],
        state_dir: Option<std::ffi::OsString>,
    ) -> Option<Cli> {
        let words: Vec<&str> = args
            .iter()
            .skip(1)
            .map(|a| a.to_str().filter(|w| !w.is_empty() && !w.starts_with('-')))
            .collect::<Option<_>>()?;
        let command = match words.as_slice() {
            ["ps"] => Command::Ps(PsArgs {
                all: false,
                list: ListArgs::default(),
            }),
            ["network", "ls" | "list"] => Command::Network(NetworkCommand::Ls(ListArgs::default())),
            ["network", "inspect", names @ ..] if !names.is_empty() => {
                Command::Network(NetworkCommand::Inspect {
                    names: names.iter().map(|n| n.to_string()).collect(),
                    json: false,
                    format: None,
                })
            }
            ["port", name, private_port @ ..] if private_port.len() <= 1 => {
                Command::Port(PortArgs {
                    name: name.to_string(),
                    private_port: private_port.first().map(|p| p.to_string()),
                })
            }
            _ => return None,
        };
        let state_dir = match state_dir {
            None => PathBuf::from(store::DEFAULT_DIR),
            // clap refuses an empty path, in its own words.
            Some(dir) if dir.is_empty() => return None,
            Some(dir) => PathBuf::from(dir),
        };
        Some(Cli {
            globals: Globals {
                state_dir,
                dry_run: false,
                verbose: 0,
            },
            command,
        })
    }
    /// The whole command tree, every subcommand's arguments built (their
    /// definitions are deferred until parsed), for walking it.
    #[cfg(test)]
    pub fn tree() -> clap::Command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        cmd.build();
        cmd
    }
}

// `--dry-run`, for the commands that can honour it (and only those, so
// `--help` never offers it where it would not hold).
#[derive(Args, Clone, Copy, Default)]
pub struct DryRun {
    /// Print the equivalent ip/nft/sysctl commands and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

// `defer`: a subcommand's arguments are built only when it is the one
// being parsed, so a command line pays for its own command, not for the
// whole tree (see `Cli::tree` for introspecting all of it). The `Args`
// structs carry `//` comments, not doc comments: a deferred struct's doc
// comment would replace its command's `about`.
#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Connect a network namespace to a network.
    Connect(ConnectArgs),
    /// Disconnect a network namespace (or an endpoint, by name) from a network.
    Disconnect(DisconnectArgs),
    /// List endpoints, and the jobs `run -d` started (-a: also finished ones).
    Ps(PsArgs),
    /// Show an endpoint's published ports (as `docker port`).
    Port(PortArgs),
    /// Run a command in a fresh network sandbox.
    Run(RunArgs),
    /// End a command started with `run -d` (or a `run --name`) and remove
    /// its sandbox.
    Stop {
        /// The names `run -d` printed.
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(
            short = 't',
            long = "time",
            value_name = "SECONDS",
            default_value_t = 10
        )]
        time: u64,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Print the output of a job started with `run -d`.
    Logs {
        /// The job's name.
        name: String,
        /// Keep printing what the job writes until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Remove finished jobs (their record and log); -f stops running ones first.
    Rm {
        /// The jobs' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Stop a job that still runs, then remove it.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Run a command inside an existing network namespace.
    Exec {
        /// A netns name, a path to a namespace file, pid:PID, or an endpoint name.
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
    /// Carries out a `run -d` (started by berth itself, the request as
    /// JSON on stdin).
    #[command(hide = true, name = "run-detached")]
    RunDetached,
    /// Keeps an ordinary user's network namespace and its link to the
    /// outside (started by berth itself).
    #[command(hide = true, name = "rootless-keeper")]
    RootlessKeeper,
    /// berth's DNS server (started by berth itself; see the README for
    /// running it under systemd).
    #[command(hide = true)]
    DnsServer {
        /// Keep running when no network needs DNS (for a service manager).
        #[arg(long)]
        stay: bool,
    },
    /// berth's supervisor: keeps the DNS server running and reclaims what
    /// killed sandboxes leave (started by berth itself).
    #[command(hide = true)]
    Supervise,
    /// Remove every network, endpoint, device, firewall rule, routing rule
    /// and state entry berth made, and put back what berth changed.
    Reset(DryRun),
    /// Rebuild from the state what the kernel lost (after a reboot, or a
    /// deleted bridge or flushed ruleset); drop endpoints whose namespace is gone.
    Up(DryRun),
    /// Like `up`, and also remove devices berth made that no state row knows.
    Gc(DryRun),
    /// Show berth's main job on a built-in example, in a private sandbox.
    Demo(DryRun),
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
    /// Draw the host as berth sees it: uplinks, networks, endpoints,
    /// published ports (a text tree, Graphviz DOT, or SVG).
    Graph(GraphArgs),
    /// Act as Podman's netavark (`berth netavark --help`); also what berth
    /// does when invoked under the name `netavark`.
    Netavark {
        /// netavark's own arguments (`--config DIR setup NETNS`, `version`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Walk a packet's way from SRC to DST and say what passes or drops it.
    Trace(TraceArgs),
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
        /// Connect to a dual-stack network too, alternating with the
        /// IPv4-only one, and compare the two (or, with --traffic, measure
        /// the published port over IPv6).
        #[arg(long)]
        ipv6: bool,
        /// Spread the namespaces over --networks networks and also time the
        /// read-only commands, `gc`, and `up` after a simulated reboot.
        #[arg(long)]
        spread: bool,
    },
    /// Check the host for what keeps container traffic from flowing, and
    /// say how to fix each (exit 1 when something is broken).
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one namespace: links, addresses, routes,
    /// neighbours, berth endpoints, published ports and DNS names.
    Inspect {
        /// An endpoint name, a netns name, a path to a namespace file or pid:PID.
        target: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum NetworkCommand {
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
        /// Print a JSON array, one object per network.
        #[arg(long)]
        json: bool,
        /// A template applied to each network, e.g. `{{.Subnet}}` or
        /// `{{json .Endpoints}}`; `json` prints each as one line of JSON.
        #[arg(short = 'f', long, conflicts_with = "json")]
        format: Option<String>,
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
    /// Remove every network that has no endpoint (asks first, unless -f).
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Connect a network namespace to a network (as `berth connect`).
    Connect(ConnectArgs),
    /// Disconnect from a network (as `berth disconnect`).
    Disconnect(DisconnectArgs),
}

// How `ls` and `ps` show their list.
#[derive(Args, Default)]
pub struct ListArgs {
    /// Only names.
    #[arg(short, long)]
    quiet: bool,
    /// Keep rows whose KEY is VALUE (name matches a part); repeatable.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// `table` (the default), `json` (one object per line), or a template
    /// such as `table {{.Name}}\t{{.Status}}` (aligned, with headings) or
    /// `{{.Name}} {{json .Ports}}`.
    #[arg(long, conflicts_with = "json")]
    format: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

// `port`'s arguments.
#[derive(Args)]
pub struct PortArgs {
    /// The endpoint's name (as `ps` shows it).
    pub name: String,
    /// Only this container port: PORT or PORT/PROTO.
    pub private_port: Option<String>,
}

// `ps`: the list options and `-a`.
#[derive(Args)]
pub struct PsArgs {
    /// Also list finished jobs of `run -d`, with their exit status.
    #[arg(short, long)]
    pub all: bool,
    #[command(flatten)]
    pub list: ListArgs,
}

impl ListArgs {
    pub fn options(&self) -> listing::Options {
        listing::Options {
            quiet: self.quiet,
            filters: self.filter.clone(),
            format: self.format.clone(),
            json: self.json,
        }
    }
}

#[derive(Args)]
pub struct CreateArgs {
    /// The network's name.
    name: String,
    #[command(flatten)]
    pub dry: DryRun,
    /// bridge (berth's bridge, veths, NAT, firewall), or macvlan/ipvlan:
    /// containers as children of --parent, on its LAN (no NAT, ports, DNS).
    #[arg(long, short = 'd', value_name = "DRIVER", default_value = "bridge",
          value_parser = ["bridge", "macvlan", "ipvlan"])]
    driver: String,
    /// The host interface macvlan/ipvlan children hang off (e.g. eth0).
    #[arg(long, value_name = "IFACE")]
    parent: Option<String>,
    /// macvlan: bridge (default), private, vepa, passthru, source;
    /// ipvlan: l2 (default), l3, l3s.
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// IPv4 subnet, e.g. 10.90.0.0/24 (default: the first free /24 of
    /// 10.89.0.0-10.127.255.0, then of 172.17.0.0-172.31.255.0, then of
    /// 192.168.0.0-192.168.255.0, or of the pools in /etc/berth/config.json).
    #[arg(long, value_parser = subnet)]
    subnet: Option<IpNet>,
    /// Gateway address on the bridge (default: the subnet's first host address).
    #[arg(long, value_parser = address("--gateway"))]
    gateway: Option<IpAddr>,
    /// Give the network an IPv6 subnet too (default: a /64 of the host's
    /// unique local /48, or of the IPv6 pools in /etc/berth/config.json).
    #[arg(long)]
    ipv6: bool,
    /// IPv6 subnet, e.g. fd00:1:2:3::/64 (implies --ipv6).
    #[arg(long, value_name = "CIDR", value_parser = subnet6)]
    subnet6: Option<IpNet>,
    /// IPv6 gateway address on the bridge (default: the subnet's first
    /// host address; implies --ipv6).
    #[arg(long, value_name = "IP", value_parser = address("--gateway6"))]
    gateway6: Option<IpAddr>,
    /// No IPv4 subnet: an IPv6-only network (needs --ipv6).
    #[arg(long)]
    no_ipv4: bool,
    /// Bridge interface name (default: berth-NAME).
    #[arg(long)]
    bridge: Option<String>,
    /// MTU of the bridge and the veths (default 1500).
    #[arg(long, allow_negative_numbers = true)]
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
    #[arg(long, value_name = "CIDR", value_parser = range("--deny-egress"))]
    deny_egress: Vec<IpNet>,
    /// Send the network's traffic out of this interface (policy routing).
    #[arg(long, value_name = "IFACE")]
    uplink: Option<String>,
    /// Gateway on the uplink (default: from the host's routes through it).
    #[arg(long, value_name = "IP", requires = "uplink", value_parser = address("--uplink-gateway"))]
    uplink_gateway: Option<IpAddr>,
    /// Log what the firewall drops for the network (rate-limited).
    #[arg(long)]
    log_drops: bool,
    /// Do not serve the network's names with berth's DNS server.
    #[arg(long)]
    no_dns: bool,
    /// Routed peer range (repeatable): traffic to it is not masqueraded and
    /// new connections from it are accepted (pod networks of other nodes).
    #[arg(long, value_name = "CIDR", value_parser = range("--cluster-cidr"))]
    cluster_cidr: Vec<IpNet>,
    /// Containers of the network cannot reach the host's own services (DNS
    /// on their gateway excepted).
    #[arg(long)]
    no_host_access: bool,
}

#[derive(Args)]
pub struct ConnectArgs {
    /// The network to connect to.
    pub network: String,
    /// A netns name (/run/netns), a path to a namespace file, or pid:PID.
    target: String,
    /// Endpoint name (default: the namespace's name).
    #[arg(long)]
    name: Option<String>,
    /// The address (default: the next free one of the subnet).
    #[arg(long, value_parser = address("--ip"))]
    ip: Option<IpAddr>,
    /// The IPv6 address (default: the next free one of the IPv6 subnet).
    #[arg(long, value_parser = address6("--ip6"))]
    ip6: Option<IpAddr>,
    /// The MAC address (default: 02:42 followed by the IPv4 address).
    #[arg(long, value_parser = mac)]
    mac: Option<Mac>,
    /// Interface name inside the namespace (default: eth0, or the next free ethN).
    #[arg(long)]
    ifname: Option<String>,
    /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]
    /// (repeatable; without HOST_PORT berth picks a free one in 49153-60999).
    #[arg(short = 'p', long = "publish", value_name = "SPEC", value_parser = port, allow_negative_numbers = true)]
    publish: Vec<PortSpec>,
    /// Another DNS name of the endpoint on this network (repeatable).
    #[arg(long, value_name = "NAME")]
    alias: Vec<String>,
    /// Allow TARGET to be the host's own network namespace.
    #[arg(long)]
    allow_host_netns: bool,
    /// Publish even a host port a host process listens on (the container wins).
    #[arg(long)]
    force_publish: bool,
    /// Limit traffic towards the container to RATE, as tc spells it (10mbit, 1.5gbit, 500kbit).
    #[arg(long, value_name = "RATE", value_parser = rate("--bandwidth-in"))]
    bandwidth_in: Option<Limit>,
    /// Limit traffic from the container to RATE (as --bandwidth-in).
    #[arg(long, value_name = "RATE", value_parser = rate("--bandwidth-out"))]
    bandwidth_out: Option<Limit>,
    /// Let the endpoint send with addresses that are not its own (a router
    /// or VPN gateway): no anti-spoofing on its port.
    #[arg(long)]
    allow_spoofing: bool,
    /// Give the namespace a default route of this endpoint's own with
    /// metric N, beside its other default routes (as netavark does per
    /// network); it goes with the endpoint. Without it, the namespace has
    /// one default route without a metric, from its first network.
    #[arg(long, value_name = "N")]
    metric: Option<u32>,
    /// Print the endpoint as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dry: DryRun,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// The network to disconnect from.
    pub network: String,
    /// A netns name, a path to a namespace file, pid:PID, or an endpoint name.
    pub target: String,
    /// Succeed (with nothing to do) when TARGET is not connected.
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub dry: DryRun,
}

#[derive(Args)]
pub struct RunArgs {
    /// A network name, `host` or `none` (default: the built-in network `berth`).
    #[arg(long, visible_alias = "network")]
    net: Option<String>,
    /// Name of the sandbox's namespace and endpoint.
    #[arg(long)]
    name: Option<String>,
    /// The address on the network (default: the next free one).
    #[arg(long, value_parser = address("--ip"))]
    ip: Option<IpAddr>,
    /// The IPv6 address on the network (default: the next free one).
    #[arg(long, value_parser = address6("--ip6"))]
    ip6: Option<IpAddr>,
    /// Publish a port (as for `connect -p`).
    #[arg(short = 'p', long = "publish", value_name = "SPEC", value_parser = port, allow_negative_numbers = true)]
    publish: Vec<PortSpec>,
    /// Another DNS name of the sandbox on its network (repeatable).
    #[arg(long, value_name = "NAME")]
    alias: Vec<String>,
    /// Nameserver for the command's /etc/resolv.conf instead of the
    /// network's gateway (repeatable).
    #[arg(long, value_name = "IP", value_parser = address("--dns"))]
    dns: Vec<IpAddr>,
    /// Search domain for the command's /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Publish every --expose port on a host port berth picks.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// A port the command serves: PORT[-END][/PROTO] (published with -P).
    #[arg(long, value_name = "PORT", value_parser = port)]
    expose: Vec<PortSpec>,
    /// The command's host name.
    #[arg(long)]
    hostname: Option<String>,
    /// Limit traffic towards the sandbox to RATE (as for `connect`).
    #[arg(long, value_name = "RATE", value_parser = rate("--bandwidth-in"))]
    bandwidth_in: Option<Limit>,
    /// Limit traffic from the sandbox to RATE (as for `connect`).
    #[arg(long, value_name = "RATE", value_parser = rate("--bandwidth-out"))]
    bandwidth_out: Option<Limit>,
    /// Let the sandbox send with addresses that are not its own (no
    /// anti-spoofing on its port).
    #[arg(long)]
    allow_spoofing: bool,
    /// Run in the background and print the job's name: `berth logs NAME`
    /// shows its output, `berth stop NAME` ends it, `berth ps -a` lists it
    /// until `berth rm NAME`.
    #[arg(short, long)]
    pub detach: bool,
    /// Accepted for Docker's habit and ignored: stdin always passes through
    /// to the command (with -d it reads nothing).
    #[arg(short, long)]
    pub interactive: bool,
    /// Accepted for Docker's habit and ignored: the command keeps berth's
    /// terminal, if it has one.
    #[arg(short, long)]
    pub tty: bool,
    /// The sandbox is always removed when the command ends; with -d, the
    /// job's record and log go too.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub dry: DryRun,
    /// Do not print what was made.
    #[arg(short, long)]
    pub quiet: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl Command {
    /// Whether the subcommand's own `--dry-run` was given.
    pub fn dry_run(&self) -> bool {
        let dry = match self {
            Command::Network(NetworkCommand::Create(a)) => a.dry,
            Command::Network(NetworkCommand::Rm { dry, .. }) => *dry,
            Command::Network(NetworkCommand::Prune { dry, .. }) => *dry,
            Command::Network(NetworkCommand::Connect(a)) | Command::Connect(a) => a.dry,
            Command::Network(NetworkCommand::Disconnect(a)) | Command::Disconnect(a) => a.dry,
            Command::Exec { dry, .. } => *dry,
            Command::Run(a) => a.dry,
            Command::Stop { dry, .. } | Command::Rm { dry, .. } => *dry,
            Command::Demo(dry) => *dry,
            Command::Reset(dry) | Command::Up(dry) | Command::Gc(dry) => *dry,
            _ => DryRun::default(),
        };
        dry.dry_run
    }
}

impl CreateArgs {
    pub fn request(&self) -> crate::error::Result<NetworkRequest> {
        let driver =
            crate::model::Driver::parse(&self.driver, self.parent.as_deref(), self.mode.as_deref())
                .map_err(crate::error::Error::Invalid)?;
        Ok(NetworkRequest {
            name: self.name.clone(),
            subnets: self.subnets()?,
            bridge: self.bridge.clone(),
            mtu: self.mtu,
            masquerade: !self.no_masquerade,
            icc: !self.no_icc,
            internal: self.internal,
            dns: !self.no_dns,
            log_drops: self.log_drops,
            deny_egress: self.deny_egress.clone(),
            uplink: self.uplink.clone().map(|ifname| UplinkRequest {
                ifname,
                gateway: self.uplink_gateway,
            }),
            cluster_cidrs: self.cluster_cidr.clone(),
            host_access: !self.no_host_access,
            owner: None,
            driver,
        })
    }
}

impl CreateArgs {
    /// The subnets the flags ask for: None for berth's default (no
    /// family flag at all), else IPv4 unless --no-ipv4, IPv6 with --ipv6
    /// (or an IPv6 value: --subnet6, --gateway6, or --subnet itself).
    fn subnets(&self) -> crate::error::Result<Option<Vec<SubnetRequest>>> {
        let v6_subnet = self.subnet.filter(|n| matches!(n, IpNet::V6(_)));
        let ipv6 =
            self.ipv6 || self.subnet6.is_some() || self.gateway6.is_some() || v6_subnet.is_some();
        if self.no_ipv4 && !ipv6 {
            return Err(crate::error::Error::invalid(
                "--no-ipv4 needs --ipv6: a network without IPv4 must have IPv6",
            ));
        }
        if self.no_ipv4
            && (self.gateway.is_some_and(|g| g.is_ipv4())
                || self.subnet.is_some_and(|n| matches!(n, IpNet::V4(_))))
        {
            return Err(crate::error::Error::invalid(
                "--subnet and --gateway name IPv4 values, but --no-ipv4 asks for no IPv4 subnet",
            ));
        }
        if v6_subnet.is_some() && self.subnet6.is_some() {
            return Err(crate::error::Error::invalid(
                "two IPv6 subnets: --subnet names one and --subnet6 another (a network has one per family)",
            ));
        }
        if !ipv6 && !self.no_ipv4 && self.subnet.is_none() && self.gateway.is_none() {
            return Ok(None);
        }
        let mut list = Vec::new();
        if !self.no_ipv4 {
            list.push(SubnetRequest {
                family: Family::V4,
                subnet: self.subnet.filter(|n| matches!(n, IpNet::V4(_))),
                gateway: self.gateway.filter(|_| v6_subnet.is_none()),
            });
        }
        if ipv6 {
            list.push(SubnetRequest {
                family: Family::V6,
                subnet: self.subnet6.or(v6_subnet),
                gateway: self
                    .gateway6
                    .or(self.gateway.filter(|_| v6_subnet.is_some())),
            });
        }
        Ok(Some(list))
    }
}

impl ConnectArgs {
    pub fn request(&self) -> AttachRequest {
        AttachRequest {
            network: self.network.clone(),
            target: self.target.clone(),
            name: self.name.clone(),
            ips: self.ip.into_iter().chain(self.ip6).collect(),
            mac: self.mac,
            ifname: self.ifname.clone(),
            ports: self.publish.clone(),
            aliases: self.alias.clone(),
            allow_host_netns: self.allow_host_netns,
            force_publish: self.force_publish,
            bandwidth: Bandwidth {
                inbound: self.bandwidth_in,
                outbound: self.bandwidth_out,
            },
            allow_spoofing: self.allow_spoofing,
            metric: self.metric,
            ..Default::default()
        }
    }
}

impl CreateArgs {
    /// Whether `--mtu` was given.
    pub fn has_mtu(&self) -> bool {
        self.mtu.is_some()
    }
}

impl RunArgs {
    /// Whether `--net` names a network of berth's (not host or none).
    pub fn names_a_network(&self) -> bool {
        !matches!(self.net.as_deref(), None | Some("host") | Some("none"))
    }

    pub fn request(&self) -> RunRequest {
        let mut ports = self.publish.clone();
        // --expose is checked all the same: a typo should not wait for -P.
        if self.publish_all {
            ports.extend(self.expose.iter().copied());
        }
        RunRequest {
            net: NetMode::parse(self.net.as_deref()),
            name: self.name.clone(),
            ips: self.ip.into_iter().chain(self.ip6).collect(),
            ports,
            aliases: self.alias.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            command: self.command.clone(),
            hostname: self.hostname.clone(),
            bandwidth: Bandwidth {
                inbound: self.bandwidth_in,
                outbound: self.bandwidth_out,
            },
            allow_spoofing: self.allow_spoofing,
        }
    }
}

// Value parsers: each turns berth's own one-line error into clap's.

fn subnet(text: &str) -> std::result::Result<IpNet, String> {
    request::parse_prefix("subnet", text, false).map_err(message)
}

fn subnet6(text: &str) -> std::result::Result<IpNet, String> {
    match request::parse_prefix("--subnet6", text, false).map_err(message)? {
        IpNet::V4(v4) => Err(format!(
            "invalid --subnet6 {v4}: expected an IPv6 CIDR like fd00:1:2:3::/64"
        )),
        net => Ok(net),
    }
}

fn address6(what: &'static str) -> impl Fn(&str) -> std::result::Result<IpAddr, String> + Clone {
    move |text| match request::parse_ip(what, text).map_err(message)? {
        IpAddr::V4(v4) => Err(format!(
            "invalid {what} {v4}: expected an IPv6 address like fd00::2"
        )),
        ip => Ok(ip),
    }
}

fn address(what: &'static str) -> impl Fn(&str) -> std::result::Result<IpAddr, String> + Clone {
    move |text| request::parse_ip(what, text).map_err(message)
}

fn range(what: &'static str) -> impl Fn(&str) -> std::result::Result<IpNet, String> + Clone {
    move |text| request::parse_prefix(what, text, true).map_err(message)
}

fn mac(text: &str) -> std::result::Result<Mac, String> {
    request::parse_mac(text).map_err(message)
}

fn rate(what: &'static str) -> impl Fn(&str) -> std::result::Result<Limit, String> + Clone {
    move |text| parse_rate(what, text).map(Limit::at_rate)
}

fn port(text: &str) -> std::result::Result<PortSpec, String> {
    request::parse_port(text).map_err(message)
}

fn message(e: Error) -> String {
    e.to_string()
}

/// How `graph` draws.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Dot,
    Svg,
}

#[derive(Args)]
pub struct GraphArgs {
    /// text (a tree, the default), dot (Graphviz) or svg; with -o and no
    /// --format, the file's extension decides (.svg, .dot/.gv, .txt).
    #[arg(long, value_enum)]
    pub format: Option<GraphFormat>,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show every endpoint (by default a network shows its first few past
    /// 12 and counts the rest).
    #[arg(long)]
    pub all: bool,
}

// `berth trace SRC DST[:PORT[/PROTO]]`.
#[derive(Args)]
pub struct TraceArgs {
    /// Where the packet starts: an endpoint (as `ps` shows it, or
    /// NETWORK/NAME), a namespace (name, path, pid:N), `host`, or an IPv4
    /// address (outside the host: the world).
    pub src: String,
    /// Where it goes, the same way, with :PORT[/PROTO] for TCP (default),
    /// UDP or SCTP; without a port, an ICMP echo.
    pub dst: String,
    /// Also send a real packet from SRC and report what the kernel's
    /// chains did with it (a temporary `berth-trace` table traces exactly
    /// that flow and is removed again).
    #[arg(long)]
    pub live: bool,
    /// Print the trace as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    /// What a parsed line asks for, for the listing commands
    /// [`Cli::plain_listing`] reads.
    fn meaning(cli: &Cli) -> String {
        let g = &cli.globals;
        let command = match &cli.command {
            Command::Ps(a) => format!("ps all={} {:?}", a.all, a.list.options()),
            Command::Port(a) => format!("port {} {:?}", a.name, a.private_port),
            Command::Network(NetworkCommand::Ls(a)) => format!("network ls {:?}", a.options()),
            Command::Network(NetworkCommand::Inspect {
                names,
                json,
                format,
            }) => format!("network inspect {names:?} {json} {format:?}"),
            Command::Network(NetworkCommand::Rm { names, force, dry }) => {
                format!("network rm {names:?} {force} {}", dry.dry_run)
            }
            _ => "another command".into(),
        };
        format!("{:?} {} {} {command}", g.state_dir, g.dry_run, g.verbose)
    }

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn plain_listings_get_the_values_clap_gives_them() {
        for line in [
            "berth ps",
            "berth network ls",
            "berth network list",
            "berth network inspect a",
            "berth network inspect a b help",
            "berth port web",
            "berth port web 80/tcp",
            "berth port help",
        ] {
            let plain = Cli::plain_listing(&words(line), None)
                .unwrap_or_else(|| panic!("{line}: not taken as plain"));
            let whole = <Cli as Parser>::try_parse_from(words(line)).unwrap();
            assert_eq!(meaning(&plain), meaning(&whole), "{line}");
            let dir = Cli::plain_listing(&words(line), Some("/tmp/s".into())).unwrap();
            assert_eq!(dir.globals.state_dir, PathBuf::from("/tmp/s"), "{line}");
        }
        for line in [
            "berth",
            "berth ps -a",
            "berth ps extra",
            "berth network",
            "berth network inspect",
            "berth network rm a",
            "berth port",
            "berth port a 80 81",
            "berth port -- -x",
            "berth --state-dir /x ps",
            "berth help ps",
        ] {
            assert!(Cli::plain_listing(&words(line), None).is_none(), "{line}");
        }
        assert!(Cli::plain_listing(&words("berth ps"), Some("".into())).is_none());
        assert!(Cli::plain_listing(&[OsString::from("berth"), OsString::from("")], None).is_none());
    }
}
