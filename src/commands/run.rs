//! `run` and `exec`: a command in its own network sandbox, or inside an
//! existing namespace.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::endpoint::{self, ConnectOptions};
use super::network;
use super::Context;
use crate::error::{Error, Result};
use crate::kernel::netns::{self, Target};
use crate::model::names;

/// Where `run` puts the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// The host's own namespace.
    Host,
    /// A fresh namespace with only `lo`.
    None,
    /// A fresh namespace connected to this network (None: the default one).
    Network(Option<String>),
}

impl NetMode {
    pub fn parse(net: Option<&str>) -> NetMode {
        match net {
            Some("host") => NetMode::Host,
            Some("none") => NetMode::None,
            Some(n) => NetMode::Network(Some(n.to_string())),
            None => NetMode::Network(None),
        }
    }
}

pub struct RunOptions {
    pub net: NetMode,
    pub name: Option<String>,
    pub ip: Option<String>,
    /// `-p` values, as given.
    pub ports: Vec<String>,
    /// `--alias` values.
    pub aliases: Vec<String>,
    /// `--dns` values: nameservers instead of the network's gateway.
    pub dns: Vec<String>,
    /// `--dns-search` values.
    pub dns_search: Vec<String>,
    pub command: Vec<String>,
}

/// Runs the command and returns its exit code (128+N if killed by signal N).
pub fn run(ctx: &mut Context, opts: &RunOptions) -> Result<i32> {
    let (program, args) = opts
        .command
        .split_first()
        .ok_or_else(|| Error::invalid("run needs a command after --"))?;
    // Bad specs fail before anything (the namespace) is made.
    for p in &opts.ports {
        crate::model::PortSpec::parse(p).map_err(Error::Invalid)?;
    }
    let dns_servers = crate::dns::parse_servers(&opts.dns)?; // DNS
    if opts.net == NetMode::Host && (!opts.dns.is_empty() || !opts.dns_search.is_empty()) {
        return Err(Error::invalid(
            "--dns and --dns-search do not apply to --net host (it uses the host's resolv.conf)",
        ));
    }
    if !opts.aliases.is_empty() && matches!(opts.net, NetMode::Host | NetMode::None) {
        return Err(Error::invalid(
            "--alias needs a network: --net host and --net none have no names",
        ));
    }
    if opts.net == NetMode::Host && opts.ports.is_empty() {
        if opts.ip.is_some() {
            return Err(Error::invalid("--ip does not apply to --net host"));
        }
        return Err(exec_error(program, Command::new(program).args(args).exec()));
    }
    if opts.ip.is_some() && opts.net == NetMode::None {
        return Err(Error::invalid("--ip does not apply to --net none"));
    }
    if !opts.ports.is_empty() && matches!(opts.net, NetMode::Host | NetMode::None) {
        return Err(Error::invalid(
            "-p needs a network: --net host and --net none publish nothing",
        ));
    }
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    names::check_name("sandbox", &name)?;
    if netns::named_path(&name).exists() {
        return Err(Error::invalid(format!(
            "a namespace named {name:?} already exists in {}",
            netns::NETNS_DIR
        )));
    }
    let network = match &opts.net {
        NetMode::Network(Some(n)) => {
            let mut store = ctx.store()?;
            let tx = store.begin()?;
            let network = tx.require_network(n)?;
            Some(network.name)
        }
        NetMode::Network(None) => Some(network::ensure_default(ctx)?.name),
        _ => None,
    };

    ctx.kernel.create_netns(&name)?;
    let sandbox = Sandbox {
        name: name.clone(),
        network: network.clone(),
    };
    let path = netns::named_path(&name);
    let mut dns_gateway = None;
    match &network {
        Some(network) => {
            let connect = ConnectOptions {
                network: network.clone(),
                target: name.clone(),
                ip: opts.ip.clone(),
                ports: opts.ports.clone(),
                aliases: opts.aliases.clone(),
                ..Default::default()
            };
            let (_, network) = endpoint::connect(ctx, &connect)
                .inspect_err(|_| sandbox.remove(ctx))?
                .applied();
            dns_gateway = network.policy.dns.then_some(network.gateway);
        }
        None => ctx
            .kernel
            .loopback_up(&path)
            .inspect_err(|_| sandbox.remove(ctx))?,
    }
    // DNS: the command's own /etc/resolv.conf (the host's stays as it is).
    let resolv = if dns_gateway.is_some() || !dns_servers.is_empty() || !opts.dns_search.is_empty()
    {
        Some(
            crate::dns::write_container_resolv(
                &ctx.state_dir,
                &name,
                dns_gateway,
                &dns_servers,
                &opts.dns_search,
            )
            .inspect_err(|_| sandbox.remove(ctx))?,
        )
    } else {
        None
    };
    let ns = Target::resolve(&name)?.open()?;
    let status = spawn_forwarding_signals(program, args, ns.as_raw_fd(), resolv.as_deref());
    if let Some(r) = &resolv {
        let _ = std::fs::remove_file(r);
    }
    sandbox.remove(ctx);
    status
}

/// A namespace `run` made, and the network it joined: removed afterwards
/// whatever happened.
struct Sandbox {
    name: String,
    network: Option<String>,
}

impl Sandbox {
    fn remove(&self, ctx: &mut Context) {
        if let Some(network) = &self.network {
            if let Err(e) = endpoint::forget(ctx, network, &self.name) {
                eprintln!("berth: cleaning up endpoint {}: {e}", self.name);
            }
        }
        if let Err(e) = ctx.kernel.delete_netns(&self.name) {
            eprintln!("berth: cleaning up namespace {}: {e}", self.name);
        }
    }
}

const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Spawns the command inside `netns_fd` with stdio passed through, forwards
/// SIGINT/SIGTERM/SIGHUP/SIGQUIT to it, and waits for it.
fn spawn_forwarding_signals(
    program: &str,
    args: &[String],
    netns_fd: RawFd,
    resolv: Option<&std::path::Path>,
) -> Result<i32> {
    let resolv = resolv.map(crate::dns::resolv::BindMount::new).transpose()?;
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    // Blocked here and in every thread spawned after, the signals queue for
    // the forwarding thread's sigwait instead of killing berth before it has
    // cleaned up.
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut command = Command::new(program);
    command.args(args);
    unsafe {
        command.pre_exec(move || {
            nix::sched::setns(
                std::os::fd::BorrowedFd::borrow_raw(netns_fd),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )?;
            if let Some(r) = &resolv {
                r.apply()?;
            }
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| exec_error(program, e))?;
    let pid = Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || loop {
        if let Ok(sig) = forwarded.wait() {
            let _ = kill(pid, sig);
        }
    });
    let status = child.wait()?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

fn exec_error(program: &str, e: std::io::Error) -> Error {
    Error::Other(format!("cannot run {program:?}: {e}"))
}

/// `exec TARGET -- CMD`: replaces berth with CMD inside TARGET's namespace;
/// with `dns`, CMD gets an /etc/resolv.conf naming berth's DNS server.
pub fn exec(ctx: &Context, target: &str, dns: bool, command: &[String]) -> Result<i32> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::invalid("exec needs a command after --"))?;
    let resolved = Target::resolve(target)?;
    // DNS: the resolv.conf is written before entering, and mounted over
    // /etc/resolv.conf in a mount namespace of the command's own.
    let resolv = if dns {
        let inode = resolved.inode.expect("resolved targets exist");
        let Some(gateway) = crate::dns::gateway_for_netns(&ctx.state_dir, inode)? else {
            return Err(Error::invalid(format!(
                "--dns: {target} is on no network with DNS"
            )));
        };
        let path = crate::dns::write_container_resolv(
            &ctx.state_dir,
            &format!("exec-{}", std::process::id()),
            Some(gateway),
            &[],
            &[],
        )?;
        Some(path)
    } else {
        None
    };
    let ns = resolved.open()?;
    netns::enter(&ns).map_err(|e| Error::kernel(format!("entering namespace of {target}"), e))?;
    if let Some(path) = resolv {
        let mount = crate::dns::resolv::BindMount::new(&path)?;
        let applied = mount.apply();
        let _ = std::fs::remove_file(&path);
        applied.map_err(|e| Error::kernel("mounting the container's resolv.conf", e))?;
    }
    Err(exec_error(program, Command::new(program).args(args).exec()))
}
