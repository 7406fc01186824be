//! Opening the state safely: who may own it, who may write it, whether it
//! is intact, and reading it without writing it.
//!
//! The state decides which devices, addresses and firewall elements berth
//! creates and deletes as root, so a state that someone else could write is
//! a way to make root delete or create what they choose. berth creates the
//! directory 0700 and the database 0600 whatever the umask, narrows the
//! modes of its own older state (0755/0644 under umask 022), and refuses a
//! directory or database that another user owns or that group or others
//! may write: those it cannot make safe by itself without hiding that
//! someone else could have changed them.
//!
//! A corrupt database is found at open, before any kernel change, and named
//! with its path. The check reads the header and the schema, which the
//! first statement of every command reads anyway (0.014 ms). A full
//! `PRAGMA quick_check` reads every page: 0.89 ms (release build) on a
//! 340 KB state with 1000 endpoints and 1000 published ports, more than a
//! whole `Store::open` (0.48 ms) and growing with the state, so it is left
//! to [`Store::quick_check`] for `gc` and `doctor` (`open_check_cost` below
//! measures both).
//!
//! Read-only commands (`ps`, `network ls`, `network inspect`) open with
//! [`Store::open_read_only`]: no directory or file is created, no lock file
//! written, and it works for a user who may only read the state, and on a
//! read-only file system. A WAL database normally needs its `-shm` file
//! writable or creatable; when it cannot be (read-only directory, someone
//! else's state) and there is no `-wal` content, the last writer has
//! checkpointed everything into the database file, so it is opened
//! `immutable=1` and read directly.

use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{Store, Tx, SCHEMA_VERSION};
use crate::error::{Error, Result};

pub const DB_FILE: &str = "berth.db";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// Sidecar files SQLite keeps next to a WAL database.
const SIDECARS: [&str; 2] = ["-wal", "-shm"];

/// Whose state berth accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Changing the state: it must be ours; modes are narrowed.
    Write,
    /// Reading it: ours or root's (a user reading root's state).
    Read,
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Creates the state directory 0700 if needed, and checks (and, if ours,
/// narrows) an existing one.
pub(super) fn prepare_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(not_a_directory(dir)),
        Ok(meta) => check(dir, "state directory", &meta, DIR_MODE, Use::Write),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| cannot("create state directory", dir, e))?;
            // The umask may have taken bits from the mode; set it exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| cannot("set the mode of state directory", dir, e))
        }
        Err(e) => Err(cannot("read state directory", dir, e)),
    }
}

/// Creates the database file 0600 if needed (SQLite would create it with
/// 0644 less the umask, and copies the database's mode to its `-wal` and
/// `-shm` files), and checks (and narrows) existing ones.
pub(super) fn prepare_db(dir: &Path) -> Result<()> {
    let db = dir.join(DB_FILE);
    match fs::symlink_metadata(&db) {
        Ok(meta) => check(&db, "state database", &meta, FILE_MODE, Use::Write)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&db)
                .map_err(|e| cannot("create state database", &db, e))?;
            f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| cannot("set the mode of state database", &db, e))?;
        }
        Err(e) => return Err(cannot("read state database", &db, e)),
    }
    check_sidecars(&db, Use::Write)
}

fn check_sidecars(db: &Path, how: Use) -> Result<()> {
    for suffix in SIDECARS {
        let p = sidecar(db, suffix);
        if let Ok(meta) = fs::symlink_metadata(&p) {
            check(&p, "state database file", &meta, FILE_MODE, how)?;
        }
    }
    Ok(())
}

/// The database file `db` and its journal's files: what a copy of the
/// state is made of.
pub fn with_sidecars(db: &Path) -> Vec<PathBuf> {
    let mut files = vec![db.to_path_buf()];
    files.extend(SIDECARS.iter().map(|suffix| sidecar(db, suffix)));
    files
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Refuses `path` if another user owns it, if it is writable by group or
/// others, or (for files) if it is not a plain file; narrows our own to
/// `mode` when writing.
fn check(path: &Path, what: &str, meta: &Metadata, mode: u32, how: Use) -> Result<()> {
    let me = euid();
    let owner = meta.uid();
    let trusted = owner == me || (how == Use::Read && owner == 0);
    if !trusted {
        return Err(Error::Privilege(format!(
            "{what} {} is owned by uid {owner}, not by uid {me} running berth: refusing to use it",
            path.display()
        )));
    }
    let is_dir = mode == DIR_MODE;
    if is_dir && !meta.is_dir() || !is_dir && !meta.file_type().is_file() {
        return Err(Error::Privilege(format!(
            "{what} {} is not a {}: refusing to use it",
            path.display(),
            if is_dir { "directory" } else { "regular file" }
        )));
    }
    let perm = meta.mode() & 0o7777;
    if perm & 0o022 != 0 {
        return Err(Error::Privilege(format!(
            "{what} {} is writable by {} (mode {perm:04o}): refusing to use it; if it is yours, chmod {mode:o} it",
            path.display(),
            if perm & 0o002 != 0 { "others" } else { "its group" }
        )));
    }
    if how == Use::Write && perm != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| cannot("set the mode of", path, e))?;
    }
    Ok(())
}

fn cannot(what: &str, path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::PermissionDenied => not_allowed(what, path, e),
        // A path through a file: the state directory given is not one.
        ErrorKind::NotADirectory => not_a_directory(path),
        _ => Error::Other(format!("cannot {what} {}: {e}", path.display())),
    }
}

/// The state directory given is a file (or lies under one): bad input.
fn not_a_directory(path: &Path) -> Error {
    let dir = if path.ends_with(DB_FILE) {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    Error::Invalid(format!(
        "state directory {} is not a directory (see --state-dir and BERTH_STATE_DIR)",
        dir.display()
    ))
}

/// An error making or reading the state directory `dir` (the lock's, which
/// comes first), told as the store tells it.
pub(crate) fn state_dir_error(dir: &Path, what: &str, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::AlreadyExists || fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return not_a_directory(dir);
    }
    cannot(what, dir, e)
}

/// A state this user may not read or write: missing privilege, exit 2.
fn not_allowed(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Privilege(format!(
        "cannot {what} {}: {e}; run berth as root (or as the state's owner)",
        path.display()
    ))
}

/// Reads the header and the schema, which every command needs first: a
/// file that is not a database, or whose schema pages are damaged, fails
/// here. Returns `user_version`.
fn read_schema(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Turns an SQLite error at open into a message naming the database.
fn named(db: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        // Found before anything was changed, and only the user can fix it:
        // exit 2, as for any request berth cannot carry out as given.
        Some(NotADatabase | DatabaseCorrupt) => Error::Invalid(format!(
            "state database {} is corrupt ({e}): nothing was changed; move it away or restore a backup",
            db.display()
        )),
        Some(CannotOpen | ReadOnly | PermissionDenied) => {
            not_allowed("read state database", db, e)
        }
        _ => Error::Store(e),
    }
}

/// Checks, right after open and before anything else reads or writes, that
/// the database is one and its schema is readable; returns its
/// `user_version`.
pub(super) fn check_integrity(conn: &Connection, db: &Path) -> Result<i64> {
    read_schema(conn).map_err(|e| match e.sqlite_error_code() {
        // Busy is the caller's to retry.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::Store(e)
        }
        _ => named(db, e),
    })
}

/// `file:` URI of `path` for SQLite (which decodes %XX).
fn uri(path: &Path, immutable: bool) -> String {
    let mut s = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' | 0..=0x1f | 0x7f..=0xff => s.push_str(&format!("%{b:02X}")),
            _ => s.push(*b as char),
        }
    }
    s.push_str("?mode=ro");
    if immutable {
        s.push_str("&immutable=1");
    }
    s
}

fn open_ro(db: &Path, immutable: bool) -> rusqlite::Result<(Connection, i64)> {
    let conn = Connection::open_with_flags(
        uri(db, immutable),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(60))?;
    // Pages read from the mapped file rather than copied into a page
    // cache of its own: a listing of 1000 endpoints touched some 40 fewer
    // pages and took 0.06 ms less. berth never shrinks the file (no
    // VACUUM, no auto_vacuum), so a mapping cannot outlive its pages.
    conn.pragma_update(None, "mmap_size", 1i64 << 28)?;
    // A reader cannot checkpoint; as the last connection it would still
    // try at close (take the lock, look at the log) for nothing.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    let version = read_schema(&conn)?;
    Ok((conn, version))
}

/// Whether the database has no write-ahead log content: then the database
/// file alone holds every committed change.
fn wal_is_empty(db: &Path) -> bool {
    match fs::metadata(sidecar(db, "-wal")) {
        Ok(m) => m.len() == 0,
        Err(e) => e.kind() == ErrorKind::NotFound,
    }
}

impl Store {
    /// Opens the state in `dir` for reading only, creating and writing
    /// nothing; `None` when there is no state yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<Store>> {
        let db = dir.join(DB_FILE);
        let meta = match fs::symlink_metadata(&db) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cannot("read state database", &db, e)),
        };
        let dir_meta = fs::metadata(dir).map_err(|e| cannot("read state directory", dir, e))?;
        check(dir, "state directory", &dir_meta, DIR_MODE, Use::Read)?;
        check(&db, "state database", &meta, FILE_MODE, Use::Read)?;
        check_sidecars(&db, Use::Read)?;
        let (conn, version) = match open_ro(&db, false) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
                ) && wal_is_empty(&db) =>
            {
                open_ro(&db, true).map_err(|e| named(&db, e))?
            }
            Err(e) => return Err(named(&db, e)),
        };
        match version {
            // A database file berth created but no command filled yet.
            0 => Ok(None),
            SCHEMA_VERSION => Ok(Some(Store {
                conn,
                dir: dir.to_path_buf(),
            })),
            v => Err(Error::Other(format!(
                "state database {} has schema version {v}, this berth reads {SCHEMA_VERSION}; \
                 run a changing berth command as root to migrate it",
                db.display()
            ))),
        }
    }

    /// A read transaction (for read-only commands): takes no write lock,
    /// and works on a read-only connection.
    pub fn read(&mut self) -> Result<Tx<'_>> {
        Ok(Tx {
            tx: self
                .conn
                .transaction_with_behavior(TransactionBehavior::Deferred)?,
        })
    }

    /// Frees the connection's page cache (for a long-lived reader between
    /// reads: another connection's commit empties it anyway, so keeping
    /// it costs memory and saves nothing).
    pub fn release_cache(&self) {
        let _ = self.conn.execute_batch("PRAGMA shrink_memory");
    }

    /// SQLite's `PRAGMA integrity_check`: every problem it finds, or
    /// nothing when the database is intact. For `doctor`, which opens
    /// read-only and wants the thorough answer (indexes against tables).
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(problems.into_iter().filter(|p| p != "ok").collect())
    }

    /// SQLite's `PRAGMA quick_check` over the whole database (linear in its
    /// size, 0.89 ms for 1000 endpoints): for `gc` and `doctor`, where the
    /// cheap check at open is not enough.
    pub fn quick_check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if problems.len() == 1 && problems[0] == "ok" {
            return Ok(());
        }
        Err(Error::Other(format!(
            "state database {} is damaged: {}",
            self.dir.join(DB_FILE).display(),
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_escape_what_sqlite_would_read_as_syntax() {
        assert_eq!(
            uri(Path::new("/var/lib/berth/berth.db"), false),
            "file:/var/lib/berth/berth.db?mode=ro"
        );
        assert_eq!(
            uri(Path::new("/tmp/a?b#c%d/berth.db"), true),
            "file:/tmp/a%3Fb%23c%25d/berth.db?mode=ro&immutable=1"
        );
    }

    /// Times the open-time check against `PRAGMA quick_check` on a state
    /// with 1000 endpoints: `cargo test -p berth --lib open_check_cost --
    /// --ignored --nocapture` (a release build gives the figures quoted in
    /// the module doc).
    #[test]
    #[ignore]
    fn open_check_cost() {
        use crate::model::{Endpoint, Mac, NetworkPolicy};
        use crate::store::NewNetwork;
        use std::net::Ipv4Addr;
        use std::time::Instant;
        let dir = std::env::temp_dir().join(format!("berth-check-cost-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = tx
            .insert_network(&NewNetwork {
                name: "web",
                subnets: vec![crate::model::Subnet {
                    net: "10.90.0.0/20".parse().unwrap(),
                    gateway: Some(std::net::IpAddr::V4(Ipv4Addr::new(10, 90, 0, 1))),
                }],
                bridge: "berth-web".into(),
                mtu: 1500,
                policy: NetworkPolicy::default(),
                driver: Default::default(),
            })
            .unwrap();
        for i in 0..1000u32 {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 90, 0, 2)) + i);
            let e = Endpoint {
                id: 0,
                network: "web".into(),
                name: format!("c{i}"),
                netns: format!("/run/netns/c{i}"),
                netns_inode: 4026532000 + u64::from(i),
                ips: vec![std::net::IpAddr::V4(ip)],
                mac: Mac::from_ipv4(ip),
                ifname: "eth0".into(),
                host_ifname: format!("vb{i:012x}"),
                default_route: crate::model::Families::V4,
                metric: None,
                ports: Vec::new(),
                bandwidth: Default::default(),
                allow_spoofing: false,
            };
            let id = tx.insert_endpoint(&net, &e).unwrap();
            let spec = crate::model::PortSpec::parse("80")
                .unwrap()
                .with_host_port(20000 + i as u16);
            tx.insert_ports(id, &[spec]).unwrap();
        }
        tx.commit().unwrap();
        drop(store);
        let db = dir.join(DB_FILE);
        let size = fs::metadata(&db).unwrap().len();
        let n = 200;
        let time = |f: &dyn Fn(&Connection)| {
            let conn = Connection::open(&db).unwrap();
            f(&conn);
            let t = Instant::now();
            for _ in 0..n {
                f(&conn);
            }
            t.elapsed().as_secs_f64() * 1e3 / f64::from(n)
        };
        let schema = time(&|c| {
            read_schema(c).unwrap();
        });
        let quick = time(&|c| {
            let r: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
            assert_eq!(r, "ok");
        });
        let full_open = {
            let t = Instant::now();
            for _ in 0..n {
                drop(Store::open(&dir).unwrap());
            }
            t.elapsed().as_secs_f64() * 1e3 / f64::from(n)
        };
        println!(
            "db {size} bytes, 1000 endpoints: schema check {schema:.4} ms, quick_check {quick:.4} ms, whole Store::open {full_open:.4} ms"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
