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
use crate::change::{compensation, Change, Intent, Outcome, Planned, Prepared, Row, Settle};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::kernel::netns;
use crate::kernel::process::{self, ExecFailure};
use crate::model::{names, Bandwidth, Endpoint, Network, PortSpec};
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
    /// Addresses asked for (`--ip`, `--ip6`), at most one per family.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    pub ports: Vec<PortSpec>,
    /// More DNS names of the sandbox on its network.
    pub aliases: Vec<String>,
    /// Nameservers instead of the network's gateway.
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub command: Vec<String>,
    /// The command's host name (a UTS namespace of its own).
    pub hostname: Option<String>,
    /// Rate limits of the sandbox's traffic, each way.
    #[serde(default)]
    pub bandwidth: Bandwidth,
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

/// The checks `run` makes before anything else, with nothing but the
/// request (the same for `run -d`, which makes them before it starts).
pub fn check(req: &RunRequest) -> Result<()> {
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
    if !req.bandwidth.is_unlimited() && matches!(req.net, NetMode::Host | NetMode::None) {
        return Err(Error::invalid(
            "--bandwidth-in and --bandwidth-out need a network: --net host and --net none have no veth to limit",
        ));
    }
    if req.net == NetMode::Host && req.ports.is_empty() {
        if !req.ips.is_empty() {
            return Err(Error::invalid("--ip does not apply to --net host"));
        }
        if req.hostname.is_some() {
            return Err(Error::invalid("--hostname does not apply to --net host"));
        }
    }
    if !req.ips.is_empty() && req.net == NetMode::None {
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
    if let Some(name) = &req.name {
        names::check_name("sandbox", name)?;
    }
    Ok(())
}

/// The sandbox's name: the one asked for, or `run-PID`.
pub fn sandbox_name(req: &RunRequest) -> Result<String> {
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    names::check_name("sandbox", &name)?;
    Ok(name)
}

/// Records, makes and attaches the sandbox `name` in one transaction (the
/// default network is made on first use within it); what was attached is
/// also left in `attached`, which a dry run needs to plan the teardown.
fn make_sandbox(
    ctx: &mut Context,
    req: &RunRequest,
    name: &str,
    attached: &mut Option<(Endpoint, Network)>,
) -> Result<Outcome<Option<(Endpoint, Network)>>> {
    transaction(ctx, Preflight::Run, |txn| {
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
            name: name.to_string(),
            loopback_only: network.is_none(),
        })?;
        let Some(network) = network else {
            return Ok(None);
        };
        let attach = AttachRequest {
            network,
            target: name.to_string(),
            ips: req.ips.clone(),
            ports: req.ports.clone(),
            aliases: req.aliases.clone(),
            bandwidth: req.bandwidth,
            allow_spoofing: req.allow_spoofing,
            ..Default::default()
        };
        let made = txn.apply(Attach(attach))?;
        *attached = Some(made.clone());
        Ok(Some(made))
    })
}

/// Checks the request, then records, makes and attaches the sandbox in one
/// transaction.
pub fn start(ctx: &mut Context, req: &RunRequest) -> Result<Start> {
    check(req)?;
    if req.net == NetMode::Host {
        return Ok(Start::Host);
    }
    let name = sandbox_name(req)?;
    let attached = make_sandbox(ctx, req, &name, &mut None)?.applied()?;
    let mut started = Started {
        name,
        attached,
        resolv: None,
    };
    // DNS: the command's own /etc/resolv.conf (the host's stays as it is).
    let gateways: Vec<std::net::IpAddr> = started
        .attached
        .as_ref()
        .filter(|(_, n)| n.policy.dns)
        .map(|(_, n)| n.gateways())
        .unwrap_or_default();
    if !gateways.is_empty() || !req.dns.is_empty() || !req.dns_search.is_empty() {
        match crate::dns::write_container_resolv(
            &ctx.state_dir,
            &started.name,
            &gateways,
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

/// What `run` would do, as shell lines, changing nothing (`--dry-run`):
/// the sandbox and its attachment as one planned transaction, the
/// command, and the teardown that follows it.
pub fn dry_run(ctx: &mut Context, req: &RunRequest) -> Result<Vec<String>> {
    check(req)?;
    let command = shell_line(&req.command);
    if req.net == NetMode::Host {
        return Ok(vec![
            "# --net host: nothing to make; the command runs in the host's namespace".into(),
            command,
        ]);
    }
    let name = sandbox_name(req)?;
    let mut attached = None;
    let Outcome::Planned(plan) = make_sandbox(ctx, req, &name, &mut attached)? else {
        return Err(Error::Other("a dry run was carried out".into()));
    };
    let mut lines = plan.render();
    let gateways: Vec<String> = attached
        .as_ref()
        .filter(|(_, n)| n.policy.dns)
        .map(|(_, n)| n.gateways().iter().map(|g| g.to_string()).collect())
        .unwrap_or_default();
    if gateways.is_empty() {
        lines.push("# the command:".into());
    } else {
        lines.push(format!(
            "# the command, with an /etc/resolv.conf naming {} (a bind mount of its own):",
            gateways.join(" and ")
        ));
    }
    lines.push(format!("ip netns exec {name} {command}"));
    lines.push("# when it ends, its sandbox goes:".into());
    let mut teardown = match &attached {
        Some((endpoint, _)) => crate::reconcile::decide::disconnect_plan(
            endpoint,
            false,
            None,
            None,
            std::slice::from_ref(endpoint),
        ),
        None => Plan::new(),
    };
    teardown.push(Step::DeleteNetns { name });
    lines.extend(teardown.render());
    Ok(lines)
}

/// A command line as a shell would need it quoted.
pub fn shell_line(command: &[String]) -> String {
    command
        .iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the command in the sandbox, forwarding signals to it, then takes
/// the sandbox away; returns the command's exit code (128+N if killed by
/// signal N).
pub fn wait(
    ctx: &mut Context,
    started: Started,
    req: &RunRequest,
    on_spawned: &mut dyn FnMut(),
) -> Result<i32> {
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
                on_spawned,
            )
        });
    if let Some(r) = &started.resolv {
        let _ = std::fs::remove_file(r);
    }
    remove(ctx, &started);
    status
}

/// Runs the command in the host's own namespace (`--net host`) as a
/// child, forwarding signals to it, and returns its exit code: how a
/// detached run carries out `--net host`, which has to outlive its command
/// to record how it ended.
pub fn wait_on_host(
    ctx: &mut Context,
    req: &RunRequest,
    on_spawned: &mut dyn FnMut(),
) -> Result<i32> {
    let (program, args) = req
        .command
        .split_first()
        .ok_or_else(|| Error::invalid("run needs a command after --"))?;
    let own = ctx
        .kernel
        .resolve_target(&format!("pid:{}", std::process::id()))?
        .open()?;
    spawn_forwarding_signals(program, args, &own, None, None, on_spawned)
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
        // Names are shared with detached runs (`run -d`), finished ones
        // included, as Docker's container names are; a job's own owner
        // makes its sandbox under its name.
        if let Some(job) = tx.job(&self.name)? {
            if job.owner_pid != pid {
                return Err(Error::invalid(format!(
                    "the name {:?} is taken by a job of `run -d` (see `berth ps -a`; `berth rm {}` frees it)",
                    self.name, self.name
                )));
            }
        }
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
    on_spawned: &mut dyn FnMut(),
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
    on_spawned();
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
    Error::Exec {
        program: program.to_string(),
        source: e,
    }
}

/// What `exec` would run, as a shell line (for `--dry-run`, which runs
/// nothing).
pub fn exec_plan(ctx: &Context, target: &str, command: &[String]) -> Result<String> {
    if command.is_empty() {
        return Err(Error::invalid("exec needs a command after --"));
    }
    let ns = exec_target(ctx, target)?;
    Ok(format!(
        "nsenter --net={} -- {}",
        ns.path.display(),
        shell_line(command)
    ))
}

/// The namespace `exec` enters: TARGET as a namespace (name, path,
/// `pid:N`), or, when no namespace has that name, the namespace of the
/// endpoint of that name (as `disconnect` reads it). A name that means a
/// namespace and also an endpoint in another namespace is refused, naming
/// both: entering the wrong one would run the command in the wrong
/// container. The endpoints are looked up by name in each network (an
/// index lookup per network).
pub fn exec_target(ctx: &Context, text: &str) -> Result<netns::Target> {
    let target = ctx.kernel.parse_target(text)?;
    let named: Vec<Endpoint> = match ctx.store_read_only()? {
        Some(mut store) => {
            let tx = store.read()?;
            let mut found = Vec::new();
            for n in tx.networks()? {
                found.extend(tx.endpoint_by_name(n.id, text)?);
            }
            found
        }
        None => Vec::new(),
    };
    // The namespaces the endpoints of that name are in, as they exist now.
    let mut elsewhere: Vec<(Endpoint, netns::Target)> = Vec::new();
    for e in named {
        let Ok(t) = ctx.kernel.parse_target(&e.netns) else {
            continue;
        };
        let alive = t.inode.is_some_and(|i| i == e.netns_inode);
        let same = target.inode.is_some() && t.inode == target.inode;
        if alive && !same && !elsewhere.iter().any(|(_, o)| o.inode == t.inode) {
            elsewhere.push((e, t));
        }
    }
    let describe = |(e, t): &(Endpoint, netns::Target)| {
        format!(
            "endpoint {:?} of network {:?} is in namespace {} (say {})",
            e.name,
            e.network,
            e.netns,
            t.path.display()
        )
    };
    match (target.inode.is_some(), elsewhere.len()) {
        (_, 0) => ctx.kernel.resolve_target(text),
        (false, 1) => Ok(elsewhere.pop().expect("one").1),
        (true, _) => Err(Error::invalid(format!(
            "target {text:?} is ambiguous: it is namespace {text} (say {}), and {}",
            target.path.display(),
            elsewhere
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", and ")
        ))),
        (false, _) => Err(Error::invalid(format!(
            "target {text:?} is ambiguous: {}",
            elsewhere
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", and ")
        ))),
    }
}

/// `exec TARGET -- CMD`: replaces berth with CMD inside TARGET's namespace;
/// with `dns`, CMD gets an /etc/resolv.conf naming berth's DNS server.
pub fn exec(ctx: &Context, target: &str, dns: bool, command: &[String]) -> Result<i32> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::invalid("exec needs a command after --"))?;
    let resolved = exec_target(ctx, target)?;
    // DNS: the resolv.conf is written before entering, and mounted over
    // /etc/resolv.conf in a mount namespace of the command's own.
    let resolv = if dns {
        let inode = resolved.inode.expect("resolved targets exist");
        let gateways = crate::dns::gateways_for_netns(&ctx.state_dir, inode)?;
        if gateways.is_empty() {
            return Err(Error::invalid(format!(
                "--dns: {target} is on no network with DNS"
            )));
        }
        let path = crate::dns::write_container_resolv(
            &ctx.state_dir,
            &format!("exec-{}", std::process::id()),
            &gateways,
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
