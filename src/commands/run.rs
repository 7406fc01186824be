//! `run` and `exec`: a command in its own network sandbox, or inside an
//! existing namespace.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::endpoint::{self, ConnectOptions};
use super::network;
use super::Context;
use crate::error::{Error, Result};
use crate::kernel::netns;
use crate::kernel::process::{self, ExecFailure};
use crate::model::names;
use crate::store;

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
    /// The command's host name (a UTS namespace of its own).
    pub hostname: Option<String>,
    /// Say nothing on stderr about what was made.
    pub quiet: bool,
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
    if let Some(h) = &opts.hostname {
        if h.is_empty()
            || h.len() > 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(Error::invalid(format!(
                "invalid hostname {h:?}: use 1-64 letters, digits, '-' or '.'"
            )));
        }
        if opts.net == NetMode::Host {
            return Err(Error::invalid("--hostname does not apply to --net host"));
        }
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

    record_sandbox(ctx, &name)?;
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
            let (e, n) = endpoint::connect(ctx, &connect)
                .inspect_err(|_| sandbox.remove(ctx))?
                .applied();
            dns_gateway = n.policy.dns.then_some(n.gateway);
            if !opts.quiet {
                // Before the command starts, so it is the first thing seen,
                // picked host ports included.
                eprintln!(
                    "berth: {} on network {}: {}/{} via {}",
                    e.name,
                    n.name,
                    e.ip,
                    n.subnet.prefix_len(),
                    n.gateway
                );
                for p in &e.ports {
                    eprintln!("berth: published {p}");
                }
            }
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
    let ns = ctx.kernel.resolve_target(&name)?.open()?;
    let status = spawn_forwarding_signals(
        program,
        args,
        &ns,
        opts.hostname.as_deref(),
        resolv.as_deref(),
    );
    if let Some(r) = &resolv {
        let _ = std::fs::remove_file(r);
    }
    sandbox.remove(ctx);
    status
}

/// Records the namespace as this process's, then makes it: a `run` killed
/// at any point leaves a row whose owner is dead, and the next command
/// removes the namespace and its endpoint (see `reconcile`).
fn record_sandbox(ctx: &mut Context, name: &str) -> Result<()> {
    let _lock = ctx.begin_change()?;
    let pid = std::process::id();
    let owner_start = ctx
        .kernel
        .process_start_time(pid)
        .ok_or_else(|| Error::Other("cannot read this process's start time".into()))?;
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    tx.insert_sandbox(&store::Sandbox {
        name: name.to_string(),
        owner_pid: pid,
        owner_start,
    })?;
    tx.commit()?;
    crate::failpoint::hit("intent");
    if let Err(e) = ctx.kernel.create_netns(name) {
        let tx = store.begin()?;
        tx.delete_sandbox(name)?;
        tx.commit()?;
        return Err(e);
    }
    Ok(())
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
        let done = ctx.begin_change().and_then(|_lock| {
            ctx.kernel.delete_netns(&self.name)?;
            let mut store = ctx.store()?;
            let tx = store.begin()?;
            tx.delete_sandbox(&self.name)?;
            tx.commit()
        });
        if let Err(e) = done {
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

/// Spawns the command inside `netns` with stdio passed through, forwards
/// SIGINT/SIGTERM/SIGHUP/SIGQUIT to it, and waits for it.
fn spawn_forwarding_signals(
    program: &str,
    args: &[String],
    netns: &std::fs::File,
    hostname: Option<&str>,
    resolv: Option<&std::path::Path>,
) -> Result<i32> {
    let resolv = resolv.map(crate::dns::resolv::BindMount::new).transpose()?;
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    // Blocked here and in every thread spawned after, the signals queue for
    // the forwarding thread's sigwait instead of killing berth before it has
    // cleaned up. The child unblocks them (`spawn_in_netns`).
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut command = Command::new(program);
    command.args(args);
    let prepare = move || match &resolv {
        Some(r) => r.apply(),
        None => Ok(()),
    };
    let mut child = process::spawn_in_netns(&mut command, netns, hostname, prepare)
        .map_err(|e| exec_error(program, e))?;
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

/// What `exec` would run, as a shell line (for `--dry-run`, which runs
/// nothing).
pub fn exec_plan(ctx: &Context, target: &str, command: &[String]) -> Result<String> {
    if command.is_empty() {
        return Err(Error::invalid("exec needs a command after --"));
    }
    let ns = ctx.kernel.resolve_target(target)?;
    let quoted: Vec<String> = command
        .iter()
        .map(|a| {
            if a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect();
    Ok(format!(
        "nsenter --net={} -- {}",
        ns.path.display(),
        quoted.join(" ")
    ))
}

/// `run -d`: starts `berth run` (this same request, without `-d`) as a
/// process of its own, in a session of its own, with its output going to
/// `STATE/logs/NAME.log`; waits until its endpoint is up; returns the name.
pub fn detach(ctx: &Context, opts: &RunOptions) -> Result<String> {
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    names::check_name("sandbox", &name)?;
    let logs = ctx.state_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut args: Vec<String> = vec![
        "--state-dir".into(),
        ctx.state_dir.display().to_string(),
        "run".into(),
        "--name".into(),
        name.clone(),
    ];
    match &opts.net {
        NetMode::Host => args.extend(["--net".into(), "host".into()]),
        NetMode::None => args.extend(["--net".into(), "none".into()]),
        NetMode::Network(Some(n)) => args.extend(["--net".into(), n.clone()]),
        NetMode::Network(None) => {}
    }
    if let Some(ip) = &opts.ip {
        args.extend(["--ip".into(), ip.clone()]);
    }
    for p in &opts.ports {
        args.extend(["-p".into(), p.clone()]);
    }
    if let Some(h) = &opts.hostname {
        args.extend(["--hostname".into(), h.clone()]);
    }
    for a in &opts.aliases {
        args.extend(["--alias".into(), a.clone()]);
    }
    for d in &opts.dns {
        args.extend(["--dns".into(), d.clone()]);
    }
    for d in &opts.dns_search {
        args.extend(["--dns-search".into(), d.clone()]);
    }
    args.push("--".into());
    args.extend(opts.command.iter().cloned());
    let mut child = Command::new(std::env::current_exe()?);
    child
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    unsafe {
        child.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = child.spawn()?;
    // Up means: the endpoint is `ready` (or, for --net none, the sandbox
    // row exists and the command runs).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Error::Other(format!(
                "the detached run {name} ended at once ({status}): {}",
                log.trim()
            )));
        }
        if detached_is_up(ctx, &name, &opts.net)? {
            return Ok(name);
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the detached run {name} did not come up within 30 s; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn detached_is_up(ctx: &Context, name: &str, net: &NetMode) -> Result<bool> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(false);
    };
    let tx = store.read()?;
    if !tx.sandboxes()?.iter().any(|s| s.name == name) {
        return Ok(false);
    }
    if matches!(net, NetMode::None) {
        return Ok(true);
    }
    Ok(tx
        .endpoints_with_status()?
        .iter()
        .any(|(e, s)| e.netns == name && *s == store::Status::Ready))
}

/// `stop NAME`: ends the command of a `run -d` (SIGTERM, then SIGKILL
/// after 10 s) and waits until its `run` has removed the sandbox.
pub fn stop(ctx: &mut Context, name: &str) -> Result<()> {
    let sandbox = {
        let Some(mut store) = ctx.store_read_only()? else {
            return Err(Error::invalid(format!("no running sandbox named {name:?}")));
        };
        let tx = store.read()?;
        let all = tx.sandboxes()?;
        let found = all.iter().find(|s| s.name == name).cloned();
        found.ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            Error::invalid(format!(
                "no running sandbox named {name:?} (running: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })?
    };
    let pid = Pid::from_raw(sandbox.owner_pid as i32);
    let kernel = &ctx.kernel;
    let alive = || kernel.process_alive(sandbox.owner_pid, sandbox.owner_start);
    if alive() {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let start = std::time::Instant::now();
    while alive() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A run killed by SIGKILL left its sandbox: the next change reclaims it.
    let _lock = ctx.begin_change()?;
    Ok(())
}

/// `exec TARGET -- CMD`: replaces berth with CMD inside TARGET's namespace;
/// with `dns`, CMD gets an /etc/resolv.conf naming berth's DNS server.
pub fn exec(ctx: &Context, target: &str, dns: bool, command: &[String]) -> Result<i32> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::invalid("exec needs a command after --"))?;
    let resolved = ctx.kernel.resolve_target(target)?;
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
    let mount = resolv
        .map(|path| crate::dns::resolv::BindMount::new(&path).map(|m| (m, path)))
        .transpose()?;
    let prepare = || match mount {
        Some((mount, path)) => {
            let applied = mount.apply();
            let _ = std::fs::remove_file(&path);
            applied
        }
        None => Ok(()),
    };
    let mut command = Command::new(program);
    command.args(args);
    Err(match process::exec_in_netns(&mut command, &ns, prepare) {
        ExecFailure::Enter(e) => Error::kernel(format!("entering namespace of {target}"), e),
        ExecFailure::Prepare(e) => Error::kernel("mounting the container's resolv.conf", e),
        ExecFailure::Exec(e) => exec_error(program, e),
    })
}
