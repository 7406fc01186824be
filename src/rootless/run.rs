//! `berth run` by an ordinary user: the command in a user namespace of its
//! own (the user is root in it), with a network namespace that only `lo`
//! is in (`--net none`) or that a user-mode helper connects to the outside
//! (the default). Nothing is recorded: the namespaces live exactly as long
//! as the command, and the helper and the command die with berth.

use std::io::Write as _;

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::net::{self, Helper};
use crate::commands::run::{NetMode, RunRequest};
use crate::error::{Error, Result};
use crate::kernel::userns;

/// The signals berth passes on to the command instead of dying of them.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// What `run` asks for besides the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunFlags {
    pub detach: bool,
    pub quiet: bool,
}

/// What of `req` a rootless run cannot do, said in one line.
fn check(req: &RunRequest, flags: RunFlags) -> Result<()> {
    let no = |what: &str| {
        Error::invalid(format!(
            "{what}: without root, `berth run` takes --net none, the default \
             network (through pasta or slirp4netns), -p HOST:CTR, --dns, \
             --dns-search and --hostname"
        ))
    };
    if let NetMode::Network(Some(name)) = &req.net {
        return Err(Error::Privilege(format!(
            "`berth run --net {name}` needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); \
             without root, `berth run` takes --net none or the default network \
             (through pasta or slirp4netns)"
        )));
    }
    if flags.detach {
        return Err(no("-d"));
    }
    if req.name.is_some() {
        return Err(no("--name"));
    }
    if !req.ips.is_empty() {
        return Err(no("--ip"));
    }
    if !req.aliases.is_empty() {
        return Err(no("--alias"));
    }
    if !req.bandwidth.is_unlimited() {
        return Err(no("--bandwidth-in/--bandwidth-out"));
    }
    if req.allow_spoofing {
        return Err(no("--allow-spoofing"));
    }
    if req.net == NetMode::None && !req.ports.is_empty() {
        return Err(Error::invalid(
            "-p: --net none has no network to publish on",
        ));
    }
    net::check_ports(&req.ports)?;
    if req.command.is_empty() {
        return Err(Error::invalid("run needs a command after --"));
    }
    Ok(())
}

/// `berth run` without root; returns the command's exit code (128+N if it
/// was killed by signal N).
pub fn run(req: &RunRequest, flags: RunFlags) -> Result<i32> {
    check(req, flags)?;
    if req.net == NetMode::Host {
        return Err(crate::commands::run::exec_on_host(req));
    }
    let helper = match req.net {
        NetMode::None => None,
        _ => Some(Helper::choose()?),
    };
    let (resolv, dns_extra) = net::dns_for(helper, &req.dns, &req.dns_search);
    let (program, args) = req.command.split_first().expect("checked");

    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    // Blocked here and in every thread spawned after, the signals queue for
    // the forwarding thread instead of killing berth before it has stopped
    // the helper. The child unblocks them.
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .map_err(|e| Error::Other(e.to_string()))?;
    let held = userns::fork_held(
        program,
        args,
        userns::Options {
            hostname: req.hostname.clone(),
            resolv,
        },
    )
    .map_err(|e| Error::Other(format!("making the rootless namespaces: {e}")))?;
    let running = match helper {
        Some(h) => Some(net::start(h, held.pid(), &req.ports, &dns_extra)?),
        None => None,
    };
    if !flags.quiet {
        tell(req, helper);
    }
    let pid = match held.start() {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(r) = running {
                r.stop();
            }
            return Err(Error::Exec {
                program: program.clone(),
                source: e,
            });
        }
    };
    std::thread::spawn(move || loop {
        if let Ok(sig) = forwarded.wait() {
            let _ = kill(pid, sig);
        }
    });
    let code = wait(pid);
    if let Some(r) = running {
        r.stop();
    }
    code
}

/// Says, before the command starts, what connects it and what it keeps.
fn tell(req: &RunRequest, helper: Option<Helper>) {
    let mut err = std::io::stderr().lock();
    let Some(h) = helper else {
        let _ = writeln!(err, "berth: rootless sandbox, --net none");
        return;
    };
    let _ = writeln!(
        err,
        "berth: rootless sandbox, network through {}",
        h.program()
    );
    for p in &req.ports {
        let _ = writeln!(
            err,
            "berth: published {}:{}->{}/{}",
            p.host_ip,
            p.host_port.unwrap_or(0),
            p.container_port,
            p.proto
        );
    }
}

/// `--dry-run`: the equivalent commands, running nothing.
pub fn dry_run(req: &RunRequest, flags: RunFlags) -> Result<Vec<String>> {
    check(req, flags)?;
    if req.net == NetMode::Host {
        return Ok(vec![crate::commands::run::shell_line(&req.command)]);
    }
    let helper = match req.net {
        NetMode::None => None,
        _ => Some(Helper::choose()?),
    };
    let (_, dns_extra) = net::dns_for(helper, &req.dns, &req.dns_search);
    Ok(plan_lines(req, helper, &dns_extra))
}

fn plan_lines(req: &RunRequest, helper: Option<Helper>, dns_extra: &[String]) -> Vec<String> {
    let uts = if req.hostname.is_some() { " --uts" } else { "" };
    let mut lines = vec![format!(
        "unshare --user --map-root-user --net --mount{uts} -- {}",
        crate::commands::run::shell_line(&req.command)
    )];
    match helper {
        Some(Helper::Pasta) => lines.push(format!(
            "pasta {}",
            net::pasta_args(None, &req.ports, dns_extra).join(" ")
        )),
        Some(Helper::Slirp4netns) => {
            let api = std::path::Path::new("API.sock");
            lines.push(format!(
                "slirp4netns {}",
                net::slirp_args(None, api).join(" ")
            ));
        }
        None => {}
    }
    lines
}

/// Waits for the command and turns its end into an exit code.
fn wait(pid: Pid) -> Result<i32> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Other(format!("waiting for the command: {e}"))),
        }
    }
}
