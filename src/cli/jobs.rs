//! `run`, in the foreground and detached (`-d`), and what a `docker run -d`
//! user does with the jobs afterwards: `stop`, `logs [-f]`, `rm`. The
//! jobs themselves are `commands::jobs`; this is how they are asked for
//! and shown.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use super::args::RunArgs;
use super::out::{self, errln, outln};
use crate::commands::jobs::{self, Detach, JobStatus, Stopped};
use crate::commands::run::{self, NetMode, RunRequest, Start};
use crate::context::Context;
use crate::error::{Error, Result};

/// `run`: plans it (`--dry-run`), starts it in the background (`-d`), or
/// runs it here and returns its exit code.
pub fn run(ctx: &mut Context, a: &RunArgs) -> Result<i32> {
    let request = a.request();
    if ctx.dry_run {
        for line in run::dry_run(ctx, &request)? {
            outln!("{line}");
        }
        return Ok(0);
    }
    if a.detach {
        return match jobs::detach(ctx, &request, a.rm)? {
            Detach::Started(name) => {
                outln!("{name}");
                Ok(0)
            }
            Detach::Failed { message, code } => {
                errln!("berth: {message}");
                Ok(code)
            }
        };
    }
    if let (NetMode::Host, Some(name)) = (&request.net, &request.name) {
        return Err(Error::invalid(format!(
            "--name {name:?} would name a sandbox, and --net host makes none (with -d it names the job)"
        )));
    }
    attached(ctx, &request, a.quiet, &mut || {})
}

/// `run` in the foreground: makes the sandbox, says what it made (before
/// the command starts, so it is the first thing seen, picked host ports
/// included), runs the command, and returns its exit code.
fn attached(
    ctx: &mut Context,
    request: &RunRequest,
    quiet: bool,
    on_spawned: &mut dyn FnMut(),
) -> Result<i32> {
    let started = match run::start(ctx, request)? {
        Start::Host => return Err(run::exec_on_host(request)),
        Start::Sandbox(s) => *s,
    };
    super::show::notices(ctx);
    if let (false, Some((e, n))) = (quiet, &started.attached) {
        // Said whatever happens to stderr: the command must run, and its
        // sandbox go, also when nobody reads this.
        out::stderr_lenient(format_args!(
            "berth: {} on network {}: {}\n",
            e.name,
            n.name,
            e.addresses_text(n)
        ));
        for p in &e.ports {
            out::stderr_lenient(format_args!("berth: published {p}\n"));
        }
        if !e.bandwidth.is_unlimited() {
            out::stderr_lenient(format_args!("berth: limited {}\n", e.bandwidth.summary()));
        }
    }
    run::wait(ctx, started, request, on_spawned)
}

/// `run-detached`: what a job's owner does. It takes the job over, runs it
/// as `run` does (`--net host` as a child it waits for), records that the
/// command runs once it started and how it ended, and exits with its code.
/// Its stdout and stderr are the job's log.
pub fn carry_out(ctx: &mut Context) -> Result<i32> {
    let detached = jobs::read_detached()?;
    let request = &detached.run;
    let name = request
        .name
        .clone()
        .ok_or_else(|| Error::invalid("a detached run needs its name"))?;
    jobs::claim(ctx, &name)?;
    let state_dir = ctx.state_dir.clone();
    let mut on_spawned = || {
        if let Err(e) = jobs::mark_running(&state_dir, &name) {
            errln!("berth: warning: recording that job {name} runs: {e}");
        }
    };
    let code = if request.net == NetMode::Host {
        run::check(request)?;
        run::wait_on_host(ctx, request, &mut on_spawned)?
    } else {
        // Quiet: `run -d` printed the name, and the log is the command's.
        attached(ctx, request, true, &mut on_spawned)?
    };
    jobs::finish(ctx, &name, code, detached.auto_remove);
    Ok(code)
}

/// `stop NAME...`: each stopped (or planned, with `--dry-run`) on its own.
pub fn stop(ctx: &mut Context, names: &[String], grace: Duration) -> Result<i32> {
    let mut failures = super::Failures::default();
    for name in names {
        if ctx.dry_run {
            match jobs::stop_plan(ctx, name, grace) {
                Ok(lines) => lines.iter().for_each(|l| outln!("{l}")),
                Err(e) => failures.report(e),
            }
            continue;
        }
        match jobs::stop(ctx, name, grace) {
            // As Docker's: the name, also for a job that had ended.
            Ok(Stopped::Stopped(_) | Stopped::AlreadyEnded(_)) => outln!("{name}"),
            Err(e) => failures.report(e),
        }
    }
    Ok(failures.code)
}

/// `rm NAME...`: each removed (or planned) on its own.
pub fn remove(ctx: &mut Context, names: &[String], force: bool) -> Result<i32> {
    let mut failures = super::Failures::default();
    for name in names {
        if ctx.dry_run {
            match jobs::remove_plan(ctx, name, force) {
                Ok(lines) => lines.iter().for_each(|l| outln!("{l}")),
                Err(e) => failures.report(e),
            }
            continue;
        }
        match jobs::remove(ctx, name, force) {
            Ok(()) => outln!("{name}"),
            Err(e) => failures.report(e),
        }
    }
    Ok(failures.code)
}

/// `logs [-f] NAME`: the job's output so far; with `follow`, what it
/// writes next too, until it ends.
pub fn logs(ctx: &mut Context, name: &str, follow: bool) -> Result<i32> {
    if jobs::find(ctx, name)?.is_none() {
        return Err(Error::invalid(format!(
            "no job named {name:?} (see `berth ps -a`)"
        )));
    }
    let path = jobs::log_path(&ctx.state_dir, name);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        file.read_to_end(&mut buf)?;
        out::stdout_bytes(&buf);
        if !follow {
            return Ok(0);
        }
        let ended = !matches!(
            jobs::find(ctx, name)?.map(|(_, s)| s),
            Some(JobStatus::Starting | JobStatus::Running)
        );
        if ended {
            // What it wrote between the last read and its end.
            buf.clear();
            file.read_to_end(&mut buf)?;
            out::stdout_bytes(&buf);
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
        // A quiet job writes nothing that would find the reader gone.
        out::end_if_reader_gone();
        // A log truncated under us is read again from its start.
        let at = file.stream_position()?;
        if std::fs::metadata(&path)
            .map(|m| m.len() < at)
            .unwrap_or(false)
        {
            file.seek(SeekFrom::Start(0))?;
        }
    }
}
