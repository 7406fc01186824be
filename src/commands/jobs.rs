//! Detached runs (`run -d`) as a `docker run -d` user expects them: a job
//! has a name no other job or run may take, every mode (a network, `--net
//! none`, `--net host`) runs in the background and stops with `stop`, its
//! output is kept for `logs`, and once it ends its exit status stays for
//! `ps -a` until `rm` removes it.
//!
//! `run -d` takes the name first (a `jobs` row, under the state lock, so
//! two runs cannot both get it), then starts `berth run-detached` in a
//! session of its own with the typed request as JSON on its stdin and its
//! output going to `STATE/logs/NAME.log`. That process, the job's owner,
//! carries out the run as a foreground `run` does (and `--net host` as a
//! child, not by `exec`, so it can record how the command ended) and keeps
//! the row up to date: `running` once the command started, `exited` with
//! its code when it ended. `run -d` returns when the command runs, or
//! fails with the job's own error when it could not start.
//!
//! A job row is not a kernel object: its sandbox is recorded and reclaimed
//! like every `run`'s. So the owner updates the row in a transaction of
//! its own, without the state lock, which guards the kernel and the rows
//! that describe it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::run::{self, NetMode, RunRequest};
use crate::change::{Change, Intent, Planned, Prepared};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::kernel::netns;
use crate::plan::Plan;
use crate::store::{Job, JobState, Tx};

/// The hidden command a detached run is carried out by: it reads its
/// [`Detached`] request as JSON on stdin.
pub const DETACHED_COMMAND: &str = "run-detached";

/// What `run -d` hands to the process that carries it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detached {
    pub run: RunRequest,
    /// `--rm`: the job's row and log go when it ends.
    pub auto_remove: bool,
}

/// How a job is doing, from its row and whether its owner still lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Starting,
    Running,
    Exited(i32),
    /// Its owner died without recording how the command ended (killed
    /// with SIGKILL; its command went with it).
    Dead,
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobStatus::Starting => f.write_str("starting"),
            JobStatus::Running => f.write_str("up"),
            JobStatus::Exited(code) => write!(f, "exited ({code})"),
            JobStatus::Dead => f.write_str("dead"),
        }
    }
}

fn status_of(ctx: &Context, job: &Job) -> JobStatus {
    match job.state {
        JobState::Exited(code) => JobStatus::Exited(code),
        _ if !ctx.kernel.process_alive(job.owner_pid, job.owner_start) => JobStatus::Dead,
        JobState::Starting => JobStatus::Starting,
        JobState::Running => JobStatus::Running,
    }
}

/// Where a job's output goes.
pub fn log_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{name}.log"))
}

/// Every job with its status (read-only).
pub fn list(ctx: &Context) -> Result<Vec<(Job, JobStatus)>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Vec::new());
    };
    let tx = store.read()?;
    let jobs = tx.jobs()?;
    drop(tx);
    ctx.hand_back_read_only(store);
    Ok(jobs
        .into_iter()
        .map(|j| {
            let s = status_of(ctx, &j);
            (j, s)
        })
        .collect())
}

/// One job with its status (read-only).
pub fn find(ctx: &Context, name: &str) -> Result<Option<(Job, JobStatus)>> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(None);
    };
    let tx = store.read()?;
    Ok(tx.job(name)?.map(|j| {
        let s = status_of(ctx, &j);
        (j, s)
    }))
}

fn no_such_job(ctx: &Context, name: &str) -> Error {
    let names: Vec<String> = list(ctx)
        .map(|all| all.into_iter().map(|(j, _)| j.name).collect())
        .unwrap_or_default();
    Error::invalid(format!(
        "no job named {name:?} (jobs: {})",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// Takes a job's name: refused when a job (running or finished), a `run`
/// or a namespace already has it.
struct ReserveJob {
    job: Job,
}

impl Change for ReserveJob {
    type Output = ();

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<()>> {
        let name = &self.job.name;
        if let Some(job) = tx.job(name)? {
            return Err(Error::invalid(match status_of(ctx, &job) {
                JobStatus::Starting | JobStatus::Running => format!(
                    "the name {name:?} is taken by a running job: stop it (`berth stop {name}`) or choose another --name"
                ),
                status => format!(
                    "the name {name:?} is taken by a finished job ({status}): remove it with `berth rm {name}` or choose another --name"
                ),
            }));
        }
        if tx.sandboxes()?.iter().any(|s| &s.name == name) {
            return Err(Error::invalid(format!(
                "the name {name:?} is taken by a running `berth run`: stop it or choose another --name"
            )));
        }
        if ctx.kernel.netns_inode(&netns::named_path(name)).is_some() {
            return Err(Error::invalid(format!(
                "a namespace named {name:?} already exists in {}: choose another --name",
                netns::NETNS_DIR
            )));
        }
        tx.insert_job(&self.job)?;
        // No kernel step: the row is the whole change.
        Ok(Prepared::Change(Planned::new(
            Plan::new(),
            Intent::rows(Vec::new()),
            (),
        )))
    }
}

/// How `run -d` went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detach {
    /// The job's command runs (or ran); its name.
    Started(String),
    /// The job could not start: its own error (the last `berth:` line of
    /// its log) and exit code. Nothing of it is left.
    Failed { message: String, code: i32 },
}

/// `run -d`: takes the name, starts the job's owner and waits until the
/// command runs.
pub fn detach(ctx: &mut Context, req: &RunRequest, auto_remove: bool) -> Result<Detach> {
    run::check(req)?;
    let name = run::sandbox_name(req)?;
    let me = std::process::id();
    let job = Job {
        name: name.clone(),
        net: match &req.net {
            NetMode::Host => "host".into(),
            NetMode::None => "none".into(),
            NetMode::Network(n) => n.clone().unwrap_or_default(),
        },
        command: req.command.clone(),
        owner_pid: me,
        owner_start: ctx.kernel.process_start_time(me).unwrap_or(0),
        state: JobState::Starting,
        auto_remove,
        created: 0,
        finished: None,
    };
    transaction(ctx, Preflight::Run, |txn| txn.apply(ReserveJob { job }))?.applied()?;
    // The name is this job's from here on: the log is its own to start.
    let result = start_owner(ctx, req, &name, auto_remove)
        .and_then(|child| wait_until_running(ctx, &name, child));
    if !matches!(result, Ok(Detach::Started(_))) {
        forget(ctx, &name);
    }
    result
}

/// Starts `berth run-detached` for the job, its output going to the log.
fn start_owner(
    ctx: &Context,
    req: &RunRequest,
    name: &str,
    auto_remove: bool,
) -> Result<std::process::Child> {
    let log_path = log_path(&ctx.state_dir, name);
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(std::env::current_exe()?);
    child
        .arg("--state-dir")
        .arg(&ctx.state_dir)
        .arg(DETACHED_COMMAND)
        .stdin(std::process::Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut child, || {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = child.spawn()?;
    let request = Detached {
        run: RunRequest {
            name: Some(name.to_string()),
            ..req.clone()
        },
        auto_remove,
    };
    let json =
        serde_json::to_vec(&request).map_err(|e| Error::Other(format!("encoding the run: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    std::io::Write::write_all(&mut stdin, &json)?;
    Ok(child)
}

/// Waits until the job's command runs (or ran: a short command may have
/// ended, and with `--rm` taken its row along).
fn wait_until_running(ctx: &Context, name: &str, mut child: std::process::Child) -> Result<Detach> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exited = child.try_wait()?;
        let row = find(ctx, name)?;
        match (row.as_ref().map(|(j, _)| j.state), exited) {
            (Some(JobState::Running | JobState::Exited(_)), _) | (None, Some(_)) => {
                return Ok(Detach::Started(name.to_string()))
            }
            (_, Some(status)) => return Ok(failed_to_start(ctx, name, status)),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the job {name} did not start within 30 s; see {}",
                log_path(&ctx.state_dir, name).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A job whose owner ended before its command ran: the owner's own
/// message (the last `berth:` line of its log) and exit code.
fn failed_to_start(ctx: &Context, name: &str, status: std::process::ExitStatus) -> Detach {
    let log = std::fs::read_to_string(log_path(&ctx.state_dir, name)).unwrap_or_default();
    let message = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("berth: "))
        .map(str::to_string)
        .unwrap_or_else(|| format!("the job {name} ended before its command started ({status})"));
    Detach::Failed {
        message,
        code: status.code().unwrap_or(1),
    }
}

/// Removes a job's row and log.
fn forget(ctx: &mut Context, name: &str) {
    let _ = std::fs::remove_file(log_path(&ctx.state_dir, name));
    let _ = write(ctx, |tx| tx.delete_job(name));
}

/// One write to the jobs table, in a transaction of its own (see the
/// module documentation for why it needs no state lock).
fn write(ctx: &mut Context, f: impl FnOnce(&Tx) -> Result<()>) -> Result<()> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    f(&tx)?;
    tx.commit()?;
    ctx.hand_on(store);
    Ok(())
}

/// Reads a detached run's request from stdin (see [`detach`]).
pub fn read_detached() -> Result<Detached> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("invalid detached run request: {e}")))
}

/// The job's owner takes the job over from `run -d`.
pub fn claim(ctx: &mut Context, name: &str) -> Result<()> {
    let me = std::process::id();
    let start = ctx
        .kernel
        .process_start_time(me)
        .ok_or_else(|| Error::Other("cannot read this process's start time".into()))?;
    write(ctx, |tx| {
        if tx.job(name)?.is_none() {
            return Err(Error::invalid(format!(
                "no job named {name:?} to carry out"
            )));
        }
        tx.set_job_owner(name, me, start)
    })
}

/// The job's command started (called while the owner's context is busy
/// running it, so on a connection of its own).
pub fn mark_running(state_dir: &Path, name: &str) -> Result<()> {
    let mut store = crate::store::Store::open(state_dir)?;
    let tx = store.begin()?;
    tx.set_job_running(name)?;
    tx.commit()?;
    Ok(())
}

/// The job's command ended with `code`: recorded, or with `--rm` the job
/// goes.
pub fn finish(ctx: &mut Context, name: &str, code: i32, auto_remove: bool) {
    let done = if auto_remove {
        let _ = std::fs::remove_file(log_path(&ctx.state_dir, name));
        write(ctx, |tx| tx.delete_job(name))
    } else {
        write(ctx, |tx| tx.set_job_exited(name, code))
    };
    if let Err(e) = done {
        ctx.warn(format!("recording how job {name} ended: {e}"));
    }
}

/// What `stop NAME` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It ran and was stopped; its exit status.
    Stopped(JobStatus),
    /// It had already ended.
    AlreadyEnded(JobStatus),
}

/// The process to signal for `stop NAME`: a job's owner, or a foreground
/// `run`'s (the sandbox's owner). `run`'s owner forwards the signal to its
/// command, then takes the sandbox away.
fn stop_target(ctx: &Context, name: &str) -> Result<Result<(u32, u64), JobStatus>> {
    if let Some((job, status)) = find(ctx, name)? {
        return Ok(match status {
            JobStatus::Starting | JobStatus::Running => Ok((job.owner_pid, job.owner_start)),
            ended => Err(ended),
        });
    }
    let Some(mut store) = ctx.store_read_only()? else {
        return Err(no_such_job(ctx, name));
    };
    let tx = store.read()?;
    match tx.sandboxes()?.into_iter().find(|s| s.name == name) {
        Some(s) => Ok(Ok((s.owner_pid, s.owner_start))),
        None => Err(no_such_job(ctx, name)),
    }
}

/// What `stop NAME` would do, as shell lines (`--dry-run`).
pub fn stop_plan(ctx: &Context, name: &str, grace: Duration) -> Result<Vec<String>> {
    Ok(match stop_target(ctx, name)? {
        Ok((pid, _)) => vec![
            format!("kill -TERM {pid}    # {name}: its command ends, then its sandbox goes"),
            format!(
                "# and kill -KILL {pid} if it still runs after {} s",
                grace.as_secs()
            ),
        ],
        Err(status) => vec![format!("# nothing to do: {name} has ended ({status})")],
    })
}

/// `stop NAME`: SIGTERM to the job's (or run's) owner, which forwards it to
/// the command and then removes the sandbox; SIGKILL after `grace`. Waits
/// until the owner is gone and what it leaves is reclaimed.
pub fn stop(ctx: &mut Context, name: &str, grace: Duration) -> Result<Stopped> {
    let (pid, start) = match stop_target(ctx, name)? {
        Ok(owner) => owner,
        Err(status) => return Ok(Stopped::AlreadyEnded(status)),
    };
    let alive = |ctx: &Context| ctx.kernel.process_alive(pid, start);
    let target = Pid::from_raw(pid as i32);
    if alive(ctx) {
        let _ = kill(target, Signal::SIGTERM);
    }
    let began = Instant::now();
    let mut killed = false;
    while alive(ctx) {
        if !killed && began.elapsed() > grace {
            let _ = kill(target, Signal::SIGKILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // An owner killed with SIGKILL recorded nothing, and its command died
    // with it (PR_SET_PDEATHSIG): 128 + SIGKILL, as a shell would say.
    if killed {
        if let Some((job, JobStatus::Dead)) = find(ctx, name)? {
            write(ctx, |tx| tx.set_job_exited(&job.name, 128 + libc::SIGKILL))?;
        }
    }
    // What a killed owner left (its sandbox) is reclaimed by the preflight
    // of an empty transaction.
    transaction(ctx, Preflight::Run, |_| Ok(()))?;
    let status = find(ctx, name)?
        .map(|(_, s)| s)
        .unwrap_or(JobStatus::Exited(128 + libc::SIGTERM));
    Ok(Stopped::Stopped(status))
}

/// `rm NAME`: a finished job's row and log go; a running one is refused
/// unless `force`, which stops it first.
pub fn remove(ctx: &mut Context, name: &str, force: bool) -> Result<()> {
    let Some((_, status)) = find(ctx, name)? else {
        return Err(no_such_job(ctx, name));
    };
    if matches!(status, JobStatus::Starting | JobStatus::Running) {
        if !force {
            return Err(Error::invalid(format!(
                "job {name:?} is running: stop it first (`berth stop {name}`) or use `berth rm -f {name}`"
            )));
        }
        stop(ctx, name, Duration::from_secs(10))?;
    }
    let _ = std::fs::remove_file(log_path(&ctx.state_dir, name));
    write(ctx, |tx| tx.delete_job(name))
}

/// What `rm NAME` would do, as shell lines (`--dry-run`).
pub fn remove_plan(ctx: &Context, name: &str, force: bool) -> Result<Vec<String>> {
    let Some((job, status)) = find(ctx, name)? else {
        return Err(no_such_job(ctx, name));
    };
    let mut lines = Vec::new();
    if matches!(status, JobStatus::Starting | JobStatus::Running) {
        if !force {
            return Err(Error::invalid(format!(
                "job {name:?} is running: stop it first (`berth stop {name}`) or use `berth rm -f {name}`"
            )));
        }
        lines.extend(stop_plan(ctx, name, Duration::from_secs(10))?);
    }
    lines.push(format!(
        "rm -f {}    # and the record of job {}",
        log_path(&ctx.state_dir, &job.name).display(),
        job.name
    ));
    Ok(lines)
}
