//! `bench --cli`'s measure of the least a process that keeps its state in
//! SQLite pays for one crash-safe change: on a copy of the bench's own
//! state, in the same directory (so on the same file system), a fresh
//! connection that reads the schema, commits an intent row under
//! `BEGIN IMMEDIATE`, commits its settled value the same way, and closes.
//! The journal settings are berth's (WAL, `synchronous = NORMAL`): a
//! process killed at any point leaves either the row or nothing, which
//! is all a connect's crash safety asks of the state.
//!
//! Real SQLite work on real files, timed in this process, so no process
//! start is in it: what berth's own bookkeeping could shrink to, at best,
//! if it did nothing but record.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::bench::Figures;
use crate::error::Result;
use crate::store::{with_sidecars, DB_FILE};

/// The copy's file name, beside the state's.
const COPY: &str = "least-record.db";

/// The median, in ms, of `rounds` least records on a copy of the state
/// in `state_dir` (the copy is removed afterwards).
pub fn least_record(state_dir: &Path, rounds: usize) -> Result<f64> {
    let copy = state_dir.join(COPY);
    remove_copy(&copy);
    {
        let state =
            Connection::open_with_flags(state_dir.join(DB_FILE), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        state.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
        let c = Connection::open(&copy)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
    }
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        samples.push(one(&copy, round)?);
    }
    remove_copy(&copy);
    Ok(Figures::median_of(&samples))
}

/// One record: open, the schema read, the intent and its settling, each
/// committed, and the close.
fn one(copy: &Path, round: usize) -> Result<Duration> {
    let key = format!("least-record-{round}");
    let start = Instant::now();
    let conn = Connection::open(copy)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The first statement that names a table reads the schema.
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, 'creating')",
        [&key],
    )?;
    conn.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
    conn.execute("UPDATE settings SET value = 'ready' WHERE key = ?1", [&key])?;
    conn.execute_batch("COMMIT")?;
    conn.close().map_err(|(_, e)| e)?;
    let took = start.elapsed();
    if tables == 0 {
        return Err(crate::error::Error::Other(
            "the copy of the state has no tables".into(),
        ));
    }
    Ok(took)
}

fn remove_copy(copy: &Path) {
    for file in with_sidecars(copy) {
        let _ = std::fs::remove_file(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_record_writes_a_copy_and_leaves_the_state_as_it_was() {
        let dir = std::env::temp_dir().join(format!("berth-least-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        drop(crate::store::Store::open(&dir).unwrap());
        let before = std::fs::read(dir.join(DB_FILE)).unwrap();
        assert!(least_record(&dir, 3).unwrap() > 0.0);
        // The copy and its journal are gone; the state itself untouched.
        for file in with_sidecars(&dir.join(COPY)) {
            assert!(!file.exists(), "{}", file.display());
        }
        assert_eq!(std::fs::read(dir.join(DB_FILE)).unwrap(), before);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
