//! Detached runs (schema version 8): one row per `run -d`, from the moment
//! its name is taken until `berth rm` removes it, so that `ps -a` shows a
//! finished job with its exit status and `logs` finds its output.
//!
//! A job is not a kernel object: its sandbox is recorded and reclaimed as
//! every `run`'s is (`sandboxes`). The row only says which process carries
//! the job out (`berth run-detached`, with its start time, so a reused PID
//! is not taken for it), and how the job ended.

use rusqlite::{params, OptionalExtension, Row};

use super::Tx;
use crate::error::Result;

/// Version 7 → 8.
pub const JOBS_SCHEMA: &str = "
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    -- 'host', 'none', or the network's name ('' for berth's default network)
    net TEXT NOT NULL,
    -- the command and its arguments, as a JSON array
    command TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    -- 'starting', 'running' or 'exited'
    state TEXT NOT NULL,
    exit_code INTEGER,
    -- `run -d --rm`: the row and the log go when the job ends
    auto_remove INTEGER NOT NULL DEFAULT 0,
    -- seconds since the epoch
    created INTEGER NOT NULL,
    finished INTEGER
);
";

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Its name is taken; its sandbox and command are being made.
    Starting,
    /// Its command runs.
    Running,
    /// Its command ended with this exit code (128+N: killed by signal N).
    Exited(i32),
}

/// One detached run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub net: String,
    pub command: Vec<String>,
    pub owner_pid: u32,
    pub owner_start: u64,
    pub state: JobState,
    pub auto_remove: bool,
    pub created: i64,
    pub finished: Option<i64>,
}

const COLUMNS: &str = "name, net, command, owner_pid, owner_start, state, exit_code, \
                       auto_remove, created, finished";

fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    let command: String = r.get(2)?;
    let state: String = r.get(5)?;
    let code: Option<i32> = r.get(6)?;
    Ok(Job {
        name: r.get(0)?,
        net: r.get(1)?,
        command: serde_json::from_str(&command).unwrap_or_else(|_| vec![command]),
        owner_pid: r.get(3)?,
        owner_start: r.get::<_, i64>(4)? as u64,
        state: match (state.as_str(), code) {
            ("exited", Some(code)) => JobState::Exited(code),
            ("running", _) => JobState::Running,
            _ => JobState::Starting,
        },
        auto_remove: r.get(7)?,
        created: r.get(8)?,
        finished: r.get(9)?,
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Tx<'_> {
    /// Takes the name for a new job, in state `starting`.
    pub fn insert_job(&self, job: &Job) -> Result<()> {
        let command = serde_json::to_string(&job.command).unwrap_or_default();
        self.tx.execute(
            &format!("INSERT INTO jobs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 'starting', NULL, ?6, ?7, NULL)"),
            params![
                job.name,
                job.net,
                command,
                job.owner_pid,
                job.owner_start as i64,
                job.auto_remove,
                now()
            ],
        )?;
        Ok(())
    }

    pub fn job(&self, name: &str) -> Result<Option<Job>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE name = ?1"))?;
        Ok(stmt.query_row([name], job_from_row).optional()?)
    }

    pub fn jobs(&self) -> Result<Vec<Job>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs ORDER BY name"))?;
        let rows = stmt.query_map([], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The process that carries the job out took it over.
    pub fn set_job_owner(&self, name: &str, pid: u32, start: u64) -> Result<()> {
        self.tx.execute(
            "UPDATE jobs SET owner_pid = ?2, owner_start = ?3 WHERE name = ?1",
            params![name, pid, start as i64],
        )?;
        Ok(())
    }

    /// The job's command started.
    pub fn set_job_running(&self, name: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE jobs SET state = 'running' WHERE name = ?1 AND state = 'starting'",
            [name],
        )?;
        Ok(())
    }

    /// The job's command ended with `code`.
    pub fn set_job_exited(&self, name: &str, code: i32) -> Result<()> {
        self.tx.execute(
            "UPDATE jobs SET state = 'exited', exit_code = ?2, finished = ?3 WHERE name = ?1",
            params![name, code, now()],
        )?;
        Ok(())
    }

    pub fn delete_job(&self, name: &str) -> Result<()> {
        self.tx
            .execute("DELETE FROM jobs WHERE name = ?1", [name])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_job_row_lives_from_its_name_to_its_exit_and_version_7_gets_the_table() {
        let dir = std::env::temp_dir().join(format!("berth-jobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        // Back to version 7, the last before jobs (and bandwidth limits).
        store
            .conn
            .execute_batch(
                "DROP TABLE jobs; \
                 ALTER TABLE endpoints DROP COLUMN bw_in_rate; ALTER TABLE endpoints DROP COLUMN bw_in_burst; \
                 ALTER TABLE endpoints DROP COLUMN bw_out_rate; ALTER TABLE endpoints DROP COLUMN bw_out_burst; \
                 ALTER TABLE networks DROP COLUMN host_access; ALTER TABLE endpoints DROP COLUMN allow_spoofing; \
                 ALTER TABLE dns_names DROP COLUMN pos; ALTER TABLE endpoints DROP COLUMN metric; ALTER TABLE networks DROP COLUMN dns_servers; \
                 ALTER TABLE networks DROP COLUMN driver; ALTER TABLE networks DROP COLUMN parent; ALTER TABLE networks DROP COLUMN mode; PRAGMA user_version = 7;",
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let job = Job {
            name: "api".into(),
            net: "host".into(),
            command: vec!["sleep".into(), "a b".into()],
            owner_pid: 7,
            owner_start: 9,
            state: JobState::Starting,
            auto_remove: false,
            created: 0,
            finished: None,
        };
        tx.insert_job(&job).unwrap();
        assert!(tx.insert_job(&job).is_err(), "a name is taken once");
        tx.set_job_owner("api", 8, 10).unwrap();
        tx.set_job_running("api").unwrap();
        let got = tx.job("api").unwrap().unwrap();
        assert_eq!(
            (got.owner_pid, got.owner_start, got.state, got.command),
            (8, 10, JobState::Running, job.command.clone())
        );
        tx.set_job_exited("api", 143).unwrap();
        // A late "running" does not undo the exit.
        tx.set_job_running("api").unwrap();
        let got = tx.job("api").unwrap().unwrap();
        assert_eq!(got.state, JobState::Exited(143));
        assert!(got.finished.is_some());
        tx.delete_job("api").unwrap();
        assert!(tx.jobs().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
