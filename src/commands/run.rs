//! `run` and `exec`: a command in its own network sandbox, or inside an
//! existing namespace.
//!
//! A run is two transactions around the command: [`start`] records the
//! sandbox with its owner, makes its namespace and attaches it (with the
//! default network made on first use), all under one lock; [`wait`] runs
//! the command and then takes the sandbox away again, whatever happened.

use std::net::IpAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::endpoint::{Attach, Detach};
use super::network::EnsureNetwork;
use crate::change::{compensation, Change, Intent, Planned, Prepared, Row, Settle};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::kernel::netns;
use crate::kernel::process::{self, ExecFailure};
use crate::model::{names, Endpoint, Network, PortSpec};
use crate::plan::{Plan, Step};
use crate::request::{AttachRequest, DetachRequest, EndpointRef};
use crate::store::{self, Tx};

/// Where `run` puts the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// `run`, typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub net: NetMode,
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
    pub ports: Vec<PortSpec>,
    /// More DNS names of the sandbox on its network.
    pub aliases: Vec<String>,
    /// Nameservers instead of the network's gateway.
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub command: Vec<String>,
    /// The command's host name (a UTS namespace of its own).
    pub hostname: Option<String>,
    /// No anti-spoofing on the sandbox's port.
    #[serde(default)]
    pub allow_spoofing: bool,
}

/// A sandbox made and attached, its command not started yet.
pub struct Started {
    pub name: String,
    /// The endpoint and its network; None for `--net none`.
    pub attached: Option<(Endpoint, Network)>,
    resolv: Option<std::path::PathBuf>,
}

/// What [`start`] found to do.
pub enum Start {
    /// `--net host`: nothing to make; the command runs in the host's
    /// namespace (the caller `exec`s it).
    Host,
    Sandbox(Box<Started>),
}

/// Checks the request, then records, makes and attaches the sandbox in one
/// transaction (the default network is made on first use within it).
pub fn start(ctx: &mut Context, req: &RunRequest) -> Result<Start> {
    if req.command.is_empty() {
        return Err(Error::invalid("run needs a command after --"));
    }
    if req.net == NetMode::Host && (!req.dns.is_empty() || !req.dns_search.is_empty()) {
        return Err(Error::invalid(
            "--dns and --dns-search do not apply to --net host (it uses the host's resolv.conf)",
        ));
    }
    if !req.aliases.is_empty() && matches!(req.net, NetMode::Host | NetMode::None) {
        return Err(Error::invalid(
            "--alias needs a network: --net host and --net none have no names",
        ));
    }
    if req.net == NetMode::Host && req.ports.is_empty() {
        if req.ip.is_some() {
            return Err(Error::invalid("--ip does not apply to --net host"));
        }
        if req.hostname.is_some() {
            return Err(Error::invalid("--hostname does not apply to --net host"));
        }
        return Ok(Start::Host);
    }
    if req.ip.is_some() && req.net == NetMode::None {
        return Err(Error::invalid("--ip does not apply to --net none"));
    }
    if !req.ports.is_empty() && matches!(req.net, NetMode::Host | NetMode::None) {
        return Err(Error::invalid(
            "-p needs a network: --net host and --net none publish nothing",
        ));
    }
    if let Some(h) = &req.hostname {
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
    }
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    names::check_name("sandbox", &name)?;
    let attached = transaction(ctx, Preflight::Run, |txn| {
        let network = match &req.net {
            NetMode::Network(Some(n)) => {
                // Before anything is made for a network that does not exist.
                txn.read(|tx| tx.require_network(n))?;
                Some(n.clone())
            }
            NetMode::Network(None) => Some(txn.apply(EnsureNetwork::default_network())?.0.name),
            _ => None,
        };
        txn.apply(CreateSandbox {
            name: name.clone(),
            loopback_only: network.is_none(),
        })?;
        let Some(network) = network else {
            return Ok(None);
        };
        let attach = AttachRequest {
            network,
            target: name.clone(),
            ip: req.ip,
            ports: req.ports.clone(),
            aliases: req.aliases.clone(),
            allow_spoofing: req.allow_spoofing,
            ..Default::default()
        };
        txn.apply(Attach(attach)).map(Some)
    })?
    .applied()?;
    let mut started = Started {
        name,
        attached,
        resolv: None,
    };
    // DNS: the command's own /etc/resolv.conf (the host's stays as it is).
    let gateway = started
        .attached
        .as_ref()
        .and_then(|(_, n)| n.policy.dns.then_some(n.gateway));
    if gateway.is_some() || !req.dns.is_empty() || !req.dns_search.is_empty() {
        match crate::dns::write_container_resolv(
            &ctx.state_dir,
            &started.name,
            gateway,
            &req.dns,
            &req.dns_search,
        ) {
            Ok(path) => started.resolv = Some(path),
            Err(e) => {
                remove(ctx, &started);
                return Err(e);
            }
        }
    }
    Ok(Start::Sandbox(Box::new(started)))
}

/// Runs the command in the sandbox, forwarding signals to it, then takes
/// the sandbox away; returns the command's exit code (128+N if killed by
/// signal N).
pub fn wait(ctx: &mut Context, started: Started, req: &RunRequest) -> Result<i32> {
    let (program, args) = req
        .command
        .split_first()
        .ok_or_else(|| Error::invalid("run needs a command after --"))?;
    let status = ctx
        .kernel
        .resolve_target(&started.name)
        .and_then(|t| t.open())
        .and_then(|ns| {
            spawn_forwarding_signals(
                program,
                args,
                &ns,
                req.hostname.as_deref(),
                started.resolv.as_deref(),
            )
        });
    if let Some(r) = &started.resolv {
        let _ = std::fs::remove_file(r);
    }
    remove(ctx, &started);
    status
}

/// Runs the command in the host's own namespace (`--net host`): replaces
/// this process.
pub fn exec_on_host(req: &RunRequest) -> Error {
    let (program, args) = match req.command.split_first() {
        Some(c) => c,
        None => return Error::invalid("run needs a command after --"),
    };
    exec_error(program, Command::new(program).args(args).exec())
}

/// Takes the sandbox away: its endpoint (the veth goes with the
/// namespace, so only the state and the published ports need undoing),
/// then the namespace. A failure is a warning: the next command's
/// preflight reclaims what is left, since the sandbox's owner is gone.
fn remove(ctx: &mut Context, started: &Started) {
    let done = transaction(ctx, Preflight::Run, |txn| {
        if let Some((_, network)) = &started.attached {
            let mut detach =
                DetachRequest::new(&network.name, EndpointRef::Target(started.name.clone()));
            detach.force = true;
            detach.delete_veth = false;
            txn.apply(Detach(detach))?;
        }
        txn.apply(RemoveSandbox {
            name: started.name.clone(),
        })
    });
    if let Err(e) = done {
        ctx.warn(format!("cleaning up sandbox {}: {e}", started.name));
    }
}

/// A `run` namespace, recorded with its owner (this process) before it is
/// made: a `run` killed at any point leaves a row whose owner is dead, and
/// the next command removes the namespace and its endpoint.
pub struct CreateSandbox {
    pub name: String,
    /// `--net none`: the namespace gets only `lo`, up.
    pub loopback_only: bool,
}

impl Change for CreateSandbox {
    type Output = ();

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<()>> {
        if ctx
            .kernel
            .netns_inode(&netns::named_path(&self.name))
            .is_some()
        {
            return Err(Error::invalid(format!(
                "a namespace named {:?} already exists in {}",
                self.name,
                netns::NETNS_DIR
            )));
        }
        let pid = std::process::id();
        let owner_start = ctx
            .kernel
            .process_start_time(pid)
            .ok_or_else(|| Error::Other("cannot read this process's start time".into()))?;
        tx.insert_sandbox(&store::Sandbox {
            name: self.name.clone(),
            owner_pid: pid,
            owner_start,
        })?;
        let mut plan = Plan::new();
        plan.push(Step::CreateNetns {
            name: self.name.clone(),
        });
        if self.loopback_only {
            plan.push(Step::LoopbackUp {
                netns: netns::named_path(&self.name),
            });
        }
        let mut planned = Planned::new(
            plan,
            Intent::rows(vec![Row::NewSandbox(self.name.clone())]),
            (),
        );
        planned.undo = Some(compensation(RemoveSandbox {
            name: self.name.clone(),
        }));
        Ok(Prepared::Change(planned))
    }
}

/// Deletes a `run` namespace and its row.
pub struct RemoveSandbox {
    pub name: String,
}

impl Change for RemoveSandbox {
    type Output = ();

    fn prepare(&mut self, _ctx: &mut Context, _tx: &Tx) -> Result<Prepared<()>> {
        let mut plan = Plan::new();
        plan.push(Step::DeleteNetns {
            name: self.name.clone(),
        });
        let intent = Intent {
            rows: Vec::new(),
            settle: vec![Settle::DropSandboxes(vec![self.name.clone()])],
        };
        Ok(Prepared::Change(Planned::new(plan, intent, ())))
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

/// The hidden command a detached run is carried out by: it reads its
/// [`RunRequest`] as JSON on stdin.
pub const DETACHED_COMMAND: &str = "run-detached";

/// `run -d`: starts a berth process of its own, in a session of its own,
/// that carries out the same request (handed over as JSON, not re-spelled
/// as arguments), with its output going to `STATE/logs/NAME.log`; waits
/// until its endpoint is up; returns the name.
pub fn detach(ctx: &Context, req: &RunRequest) -> Result<String> {
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    names::check_name("sandbox", &name)?;
    let req = RunRequest {
        name: Some(name.clone()),
        ..req.clone()
    };
    let logs = ctx.state_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(std::env::current_exe()?);
    child
        .arg("--state-dir")
        .arg(&ctx.state_dir)
        .arg(DETACHED_COMMAND)
        .stdin(std::process::Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log);
    unsafe {
        child.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = child.spawn()?;
    let json =
        serde_json::to_vec(&req).map_err(|e| Error::Other(format!("encoding the run: {e}")))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(&json)?;
    }
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
        if detached_is_up(ctx, &name, &req.net)? {
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

/// Reads a detached run's request from stdin (see [`detach`]).
pub fn read_detached_request() -> Result<RunRequest> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("invalid detached run request: {e}")))
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
    // A run killed by SIGKILL left its sandbox: the preflight of an empty
    // transaction reclaims it.
    transaction(ctx, Preflight::Run, |_| Ok(()))?;
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
