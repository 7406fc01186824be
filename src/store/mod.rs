//! berth's state in SQLite: networks and their endpoints, whose addresses
//! are the leases. WAL mode, one IMMEDIATE transaction per mutating command
//! (so concurrent berth processes queue instead of racing for addresses),
//! schema versioned with `PRAGMA user_version`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

mod attachments;
mod intents;
mod jobs;
pub mod lock;

pub use attachments::{Attachment, ATTACHMENTS_SCHEMA};
pub use intents::{PreflightFacts, Sandbox, Status, HOST_ID, NFT_GENERATION};
pub use jobs::{Job, JobState, JOBS_SCHEMA};
pub use lock::{FileLock, StateLock};

use crate::error::{Error, Result};
use crate::model::{
    Bandwidth, Endpoint, Family, Limit, Network, NetworkPolicy, PortMapping, Proto, Subnet, Uplink,
};

mod owner;
mod secure;
pub use owner::{EndpointMark, Owners};
pub use secure::{with_sidecars, DB_FILE};
mod listing;
mod loopback;
pub use listing::ListedEndpoint;
mod names;
pub use loopback::{forwarded_from_loopback, LoopbackForward};
pub use names::{DnsEndpoint, DnsNetwork};

/// Default state directory, overridden by `--state-dir` / `BERTH_STATE_DIR`.
pub const DEFAULT_DIR: &str = "/var/lib/berth";
const SCHEMA_VERSION: i64 = 17;
/// berth's routing tables (`--uplink`) are this plus the network id.
pub const ROUTE_TABLE_BASE: u32 = 0x6265_0000;

const SCHEMA: &str = "
CREATE TABLE networks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    -- the IPv4 subnet and gateway (NULL: none, version 15)
    subnet TEXT,
    gateway TEXT,
    bridge TEXT NOT NULL UNIQUE,
    mtu INTEGER NOT NULL,
    -- the last address handed out, so the next lease starts after it
    last_ip INTEGER,
    masquerade INTEGER NOT NULL DEFAULT 1,
    icc INTEGER NOT NULL DEFAULT 1,
    internal INTEGER NOT NULL DEFAULT 0,
    -- comma-separated CIDRs
    deny_egress TEXT NOT NULL DEFAULT '',
    uplink TEXT,
    uplink_gateway TEXT,
    log_drops INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    network_id INTEGER NOT NULL REFERENCES networks(id),
    name TEXT NOT NULL,
    netns TEXT NOT NULL,
    netns_inode INTEGER NOT NULL,
    -- the IPv4 lease (NULL: none, version 15)
    ip INTEGER,
    mac TEXT NOT NULL,
    ifname TEXT NOT NULL,
    host_ifname TEXT NOT NULL UNIQUE,
    default_route INTEGER NOT NULL,
    UNIQUE (network_id, name),
    UNIQUE (network_id, ip),
    UNIQUE (network_id, netns)
);
CREATE INDEX endpoints_by_netns_inode ON endpoints (netns_inode);
";

/// Published ports (version 3). `ports` holds one row per `-p` mapping (what
/// `ps` shows, what disconnect removes); `port_claims` one row per host port,
/// so that a clash is an index lookup whatever the number of mappings, and
/// the primary key makes a duplicate claim impossible even across processes.
const PORTS_SCHEMA: &str = "
CREATE TABLE ports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    host_ip TEXT NOT NULL,
    proto TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    container_port INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX ports_by_endpoint ON ports (endpoint_id);
CREATE TABLE port_claims (
    proto TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    -- '0.0.0.0' claims the port on every address
    host_ip TEXT NOT NULL,
    port_id INTEGER NOT NULL REFERENCES ports(id) ON DELETE CASCADE,
    PRIMARY KEY (proto, host_port, host_ip)
) WITHOUT ROWID;
CREATE INDEX port_claims_by_port_id ON port_claims (port_id);
";

/// Version 4: crash safety. A row's `status` is the intent of the command
/// working on it: `creating` and `removing` rows are committed before the
/// kernel is touched and settled (`ready`, or deleted) after it, so a
/// command killed in between leaves a record the next one resolves (see
/// `reconcile`). `sandboxes` records the namespaces `run` makes and the
/// process that owns each, so those of a killed `run` are reclaimed.
const INTENTS_SCHEMA: &str = "
ALTER TABLE networks ADD COLUMN status TEXT NOT NULL DEFAULT 'ready';
ALTER TABLE endpoints ADD COLUMN status TEXT NOT NULL DEFAULT 'ready';
CREATE INDEX networks_unsettled ON networks (status) WHERE status != 'ready';
CREATE INDEX endpoints_unsettled ON endpoints (status) WHERE status != 'ready';
CREATE INDEX endpoints_by_netns ON endpoints (netns);
CREATE INDEX IF NOT EXISTS endpoints_by_mac ON endpoints (network_id, mac);
CREATE TABLE sandboxes (
    name TEXT PRIMARY KEY,
    owner_pid INTEGER NOT NULL,
    -- the owner's start time (clock ticks after boot), so a reused PID is
    -- not taken for the owner
    owner_start INTEGER NOT NULL
);
";

/// DNS (version 6; see `names.rs`): whether berth's DNS server serves a
/// network, and every name the server answers for. `dns_names` holds an
/// endpoint's own name and its aliases, lower-cased, one row each: the
/// primary key makes names unique per network regardless of case, also
/// across processes, and the rows go with their endpoint.
const DNS_SCHEMA: &str = "
ALTER TABLE networks ADD COLUMN dns INTEGER NOT NULL DEFAULT 1;
CREATE TABLE dns_names (
    network_id INTEGER NOT NULL REFERENCES networks(id),
    -- lower-cased
    name TEXT NOT NULL,
    endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    -- 0: the endpoint's own name, 1: an alias
    alias INTEGER NOT NULL,
    PRIMARY KEY (network_id, name)
) WITHOUT ROWID;
CREATE INDEX dns_names_by_endpoint ON dns_names (endpoint_id);
INSERT OR IGNORE INTO dns_names (network_id, name, endpoint_id, alias)
    SELECT network_id, lower(name), id, 0 FROM endpoints;
";

/// Version 1 → 2: the firewall and routing options of networks, and the
/// host settings berth changed (to restore them on `reset`).
const MIGRATE_1_TO_2: &str = "
ALTER TABLE networks ADD COLUMN masquerade INTEGER NOT NULL DEFAULT 1;
ALTER TABLE networks ADD COLUMN icc INTEGER NOT NULL DEFAULT 1;
ALTER TABLE networks ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
ALTER TABLE networks ADD COLUMN deny_egress TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN uplink TEXT;
ALTER TABLE networks ADD COLUMN uplink_gateway TEXT;
ALTER TABLE networks ADD COLUMN log_drops INTEGER NOT NULL DEFAULT 0;
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Version 8 (guards): networks that deny their
/// containers the host, endpoints exempt from anti-spoofing. The recorded
/// nf_tables generation is forgotten, so that the next command compares
/// the ruleset with what this version builds (a second table, new rules)
/// and rebuilds it.
const GUARDS_SCHEMA: &str = "
ALTER TABLE networks ADD COLUMN host_access INTEGER NOT NULL DEFAULT 1;
ALTER TABLE endpoints ADD COLUMN allow_spoofing INTEGER NOT NULL DEFAULT 0;
DELETE FROM settings WHERE key = 'nft_generation';
";

/// Version 11: the order of an endpoint's names (0 its own name, then its
/// aliases as given), which reverse lookups answer in, as aardvark-dns
/// does. Aliases recorded before keep 0 and sort by name among themselves.
const NAMES_ORDER_SCHEMA: &str = "
ALTER TABLE dns_names ADD COLUMN pos INTEGER NOT NULL DEFAULT 0;
";

/// Version 5 (Podman): who made a network or endpoint (NULL: berth's
/// own commands; `podman`: berth acting as Podman's netavark), and the
/// Podman container id of an endpoint. Read and written by `owner.rs`.
const MIGRATE_OWNERS: &str = "
ALTER TABLE networks ADD COLUMN owner TEXT;
ALTER TABLE endpoints ADD COLUMN owner TEXT;
ALTER TABLE endpoints ADD COLUMN container_id TEXT;
CREATE INDEX endpoints_by_container_id ON endpoints (container_id);
";

/// Version 9: an endpoint's bandwidth limits (bits per second and bucket
/// bytes, each way; NULL: unlimited), which `up` needs to shape a veth it
/// re-creates.
const BANDWIDTH_SCHEMA: &str = "
ALTER TABLE endpoints ADD COLUMN bw_in_rate INTEGER;
ALTER TABLE endpoints ADD COLUMN bw_in_burst INTEGER;
ALTER TABLE endpoints ADD COLUMN bw_out_rate INTEGER;
ALTER TABLE endpoints ADD COLUMN bw_out_burst INTEGER;
";

/// Version 12 (Podman parity): the metric of an endpoint's own default
/// route (NULL: the namespace's one default route without a metric, see
/// `Endpoint::metric`), which `up` needs to give a veth it re-creates its
/// route back; and a network's own upstream DNS servers (Podman's
/// `network_dns_servers`, comma-separated; NULL or empty: the host's).
const METRIC_SCHEMA: &str = "
ALTER TABLE endpoints ADD COLUMN metric INTEGER;
ALTER TABLE networks ADD COLUMN dns_servers TEXT;
";

/// Version 13: macvlan and ipvlan networks. `driver` is `bridge` for
/// every network before it; `parent` and `mode` are set for the others.
const DRIVER_SCHEMA: &str = "
ALTER TABLE networks ADD COLUMN driver TEXT NOT NULL DEFAULT 'bridge';
ALTER TABLE networks ADD COLUMN parent TEXT;
ALTER TABLE networks ADD COLUMN mode TEXT;
";

/// Version 14: connect asks who on the network holds a MAC (a derived MAC
/// must not repeat an explicit one); an index keeps that one lookup, not a
/// scan of the network's endpoints.
const MAC_INDEX_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS endpoints_by_mac ON endpoints (network_id, mac);
";

/// Version 15: IPv6. A network's IPv6 subnet, gateway and allocation
/// cursor; an endpoint's IPv6 lease, unique per network as the IPv4 one
/// is (NULLs do not clash, so endpoints without one coexist). The IPv4
/// columns become nullable (IPv6-only networks, networks without IPAM)
/// by a rebuild of the two tables, see [`relax_not_null`].
const IPV6_COLUMNS: [(&str, &str); 4] = [
    ("networks", "subnet6 TEXT"),
    ("networks", "gateway6 TEXT"),
    ("networks", "last_ip6 TEXT"),
    ("endpoints", "ip6 TEXT"),
];
const IPV6_INDEX: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS endpoints_by_ip6 ON endpoints (network_id, ip6);";

/// Version 16: `port NAME` asks for the endpoints called NAME on any
/// network, which the `(network_id, name)` key cannot answer; without an
/// index that is a scan of every endpoint. And a connect whose state
/// needs no DNS server asks whether some mapping is forwarded from
/// `[::1]`, which only endpoints with an IPv6 address can have: the
/// partial index holds those only, so on an IPv4 host the question costs
/// nothing instead of a scan of every port (0.8 ms at 8000 endpoints).
const NAME_INDEX_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS endpoints_by_name ON endpoints (name);
CREATE INDEX IF NOT EXISTS endpoints_with_ip6 ON endpoints (ip6) WHERE ip6 IS NOT NULL;
";

/// Version 17: an endpoint's published ports as `ps` and `network inspect`
/// print them, written with its ports by [`Tx::insert_ports`] (the one
/// writer of `ports`; a row's ports go only with the row). A listing then
/// reads one text per endpoint instead of parsing and formatting each
/// mapping: at 1000 endpoints x 4 ports those were a quarter of a `ps`.
const PUBLISHED_COLUMN: (&str, &str) = ("endpoints", "published TEXT NOT NULL DEFAULT ''");

/// The `settings` row holding the host's RFC 4193 global ID (10 hex
/// digits), made once: every automatic IPv6 subnet comes from its /48.
pub const ULA_GLOBAL_ID: &str = "ula_global_id";

pub struct Store {
    conn: Connection,
    dir: PathBuf,
}

/// One transaction: every read and write of a command goes through it.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
}

/// What `insert_network` needs.
pub struct NewNetwork<'a> {
    pub name: &'a str,
    pub subnets: Vec<Subnet>,
    pub bridge: String,
    pub mtu: u32,
    pub policy: NetworkPolicy,
    pub driver: crate::model::Driver,
}

impl Store {
    /// Opens (creating if needed) the state in `dir`.
    /// The directory is 0700 and the database 0600 (see [`secure`]).
    pub fn open(dir: &Path) -> Result<Store> {
        secure::prepare_dir(dir)?;
        secure::prepare_db(dir)?;
        // Switching a new database to WAL and creating the schema take locks
        // for which SQLite does not always wait (it returns SQLITE_BUSY at
        // once rather than risk a deadlock), so concurrent first uses retry.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match Store::try_open(dir) {
                Err(Error::Store(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    fn try_open(dir: &Path) -> Result<Store> {
        let db = dir.join(secure::DB_FILE);
        let conn = Connection::open(&db)?;
        // Many berth processes may run at once: wait for the lock rather
        // than fail.
        conn.busy_timeout(Duration::from_secs(60))?;
        // A connect prepares some 30 distinct statements; rusqlite's
        // default cache of 16 would evict and re-parse them mid-command.
        conn.set_prepared_statement_cache_capacity(64);
        let version = secure::check_integrity(&conn, &db)?;
        // The journal mode is the file's own (SQLite keeps WAL across
        // opens): set when the state is made or upgraded, not per open.
        // The other two last as long as the connection.
        if version != SCHEMA_VERSION {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store {
            conn,
            dir: dir.to_path_buf(),
        };
        // The version was read with the schema: a current state (every
        // open but the first after an upgrade) needs no second look.
        if version != SCHEMA_VERSION {
            store.migrate()?;
        }
        Ok(store)
    }

    /// A private, writable copy of the state in memory, for `--dry-run`:
    /// planning runs the same code as doing (rows are inserted and rolled
    /// back), and with a copy nothing can reach the real state, and a user
    /// who can only read the state can ask what a command would do.
    pub fn scratch_copy(dir: &Path) -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        if let Some(source) = Store::open_read_only(dir)? {
            let backup = rusqlite::backup::Backup::new(&source.conn, &mut conn)?;
            backup.run_to_completion(i32::MAX, Duration::ZERO, None)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Store {
            conn,
            dir: dir.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        // Rebuilding a table that others reference needs the foreign keys
        // off (a no-op inside a transaction, so before it); they are
        // checked before the commit and turned on again after.
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        let result = self.migrate_tx();
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        result
    }

    fn migrate_tx(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(PORTS_SCHEMA)?;
                tx.execute_batch(INTENTS_SCHEMA)?;
                tx.execute_batch(MIGRATE_OWNERS)?;
                tx.execute_batch(DNS_SCHEMA)?;
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            1 => {
                tx.execute_batch(MIGRATE_1_TO_2)?;
                tx.execute_batch(PORTS_SCHEMA)?;
                tx.execute_batch(INTENTS_SCHEMA)?;
                tx.execute_batch(MIGRATE_OWNERS)?;
                tx.execute_batch(DNS_SCHEMA)?;
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            2 => {
                tx.execute_batch(PORTS_SCHEMA)?;
                tx.execute_batch(INTENTS_SCHEMA)?;
                tx.execute_batch(MIGRATE_OWNERS)?;
                tx.execute_batch(DNS_SCHEMA)?;
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            3 => {
                tx.execute_batch(INTENTS_SCHEMA)?;
                tx.execute_batch(MIGRATE_OWNERS)?;
                tx.execute_batch(DNS_SCHEMA)?;
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            4 => {
                tx.execute_batch(MIGRATE_OWNERS)?;
                tx.execute_batch(DNS_SCHEMA)?;
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            5 => {
                tx.execute_batch(DNS_SCHEMA)?;
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            // Version 7: CNI attachments and cluster CIDRs (src/store/attachments.rs).
            6 => {
                tx.execute_batch(ATTACHMENTS_SCHEMA)?;
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            // Version 8: detached runs (src/store/jobs.rs).
            7 => {
                tx.execute_batch(JOBS_SCHEMA)?;
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            // Version 9: bandwidth limits of endpoints.
            8 => {
                tx.execute_batch(BANDWIDTH_SCHEMA)?;
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            // Version 10: anti-spoofing and host access (src/firewall/guard.rs).
            9 => {
                tx.execute_batch(GUARDS_SCHEMA)?;
                tx.execute_batch(NAMES_ORDER_SCHEMA)?;
            }
            // Version 11: the order of an endpoint's DNS names.
            10 => tx.execute_batch(NAMES_ORDER_SCHEMA)?,
            // Version 12: route metrics and networks' own DNS servers (below).
            11 => {}
            // Version 13: macvlan and ipvlan networks (below).
            12 => {}
            // Version 14: the MAC index (below).
            13 => {}
            // Version 15: IPv6 (below).
            14 => {}
            // Version 16: the name index (below).
            15 => {}
            // Version 17: the published ports' text (below).
            16 => {}
            SCHEMA_VERSION => {}
            v => {
                return Err(Error::Other(format!(
                    "state in {} has schema version {v}, newer than this berth understands ({SCHEMA_VERSION})",
                    self.dir.display()
                )))
            }
        }
        if version < 12 {
            tx.execute_batch(METRIC_SCHEMA)?;
        }
        if version < 13 {
            tx.execute_batch(DRIVER_SCHEMA)?;
        }
        if version < 14 {
            tx.execute_batch(MAC_INDEX_SCHEMA)?;
        }
        if version < 15 {
            if version > 0 {
                relax_not_null(&tx, "networks", &["subnet TEXT", "gateway TEXT"])?;
                relax_not_null(&tx, "endpoints", &["ip INTEGER"])?;
            }
            // Each column once: a state half-edited by hand (or a test's
            // older version made from this one) may have some already.
            for (table, column) in IPV6_COLUMNS {
                add_column_once(&tx, table, column)?;
            }
            tx.execute_batch(IPV6_INDEX)?;
            let broken: Option<String> = tx
                .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
                .optional()?;
            if let Some(table) = broken {
                return Err(Error::Other(format!(
                    "state in {}: table {table} has rows whose references are gone; not migrating it",
                    self.dir.display()
                )));
            }
        }
        if version < 16 {
            tx.execute_batch(NAME_INDEX_SCHEMA)?;
        }
        if version < 17 {
            add_column_once(&tx, PUBLISHED_COLUMN.0, PUBLISHED_COLUMN.1)?;
            fill_published(&tx)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(())
    }

    /// Starts the command's transaction, taking the write lock at once so
    /// that what it reads stays true until it commits.
    pub fn begin(&mut self) -> Result<Tx<'_>> {
        Ok(Tx {
            tx: self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
        })
    }
}

/// Whether a claim on the address written `claim` stops a mapping on
/// the address written `ip` (both as `IpAddr` prints them): the same
/// address, either on every address (0.0.0.0), or `::` against any IPv6
/// address. The one statement of the rule: the lookups read the claims of
/// a port range and keep those this says clash.
fn addresses_clash(claim: &str, ip: &str) -> bool {
    claim == ip
        || claim == "0.0.0.0"
        || ip == "0.0.0.0"
        || (claim == "::" && ip.contains(':'))
        || (ip == "::" && claim.contains(':'))
}

/// Rebuilds `table` with `NOT NULL` taken off each of `columns` (given
/// as `name TYPE`), the way SQLite documents for a change ALTER TABLE
/// cannot make: a copy under the table's own definition minus those
/// constraints, the rows copied in column order, the old table dropped,
/// the copy renamed and the table's indexes made again. Working from the
/// stored definition keeps every column any earlier version added.
fn relax_not_null(tx: &rusqlite::Transaction, table: &str, columns: &[&str]) -> Result<()> {
    let sql: String = tx.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )?;
    let indexes: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
        )?;
        let rows = stmt.query_map([table], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let (_, body) = sql
        .split_once('(')
        .ok_or_else(|| Error::Other(format!("unreadable definition of table {table}")))?;
    let mut body = body.to_string();
    for column in columns {
        let strict = format!("{column} NOT NULL");
        // The column's own definition: at the start of a line or after a
        // comma or space, never the tail of another column's name.
        let at = body
            .match_indices(&strict)
            .find(|(i, _)| {
                body[..*i]
                    .chars()
                    .last()
                    .is_none_or(|c| c.is_whitespace() || c == ',' || c == '(')
            })
            .map(|(i, _)| i);
        match at {
            Some(i) => body.replace_range(i..i + strict.len(), column),
            // Already nullable (a state some tool edited): nothing to do.
            None => continue,
        }
    }
    let temp = format!("{table}_v15");
    tx.execute_batch(&format!(
        "CREATE TABLE {temp} ({body};
         INSERT INTO {temp} SELECT * FROM {table};
         DROP TABLE {table};
         ALTER TABLE {temp} RENAME TO {table};"
    ))?;
    for index in indexes {
        tx.execute_batch(&index)?;
    }
    Ok(())
}

/// Ten hex digits as a 40-bit global ID.
fn parse_global_id(text: &str) -> Option<[u8; 5]> {
    if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 5];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// 40 random bits from the kernel (RFC 4193 3.2: a pseudo-random global
/// ID, so two hosts' ULA prefixes are unlikely to meet).
fn random_global_id() -> Result<[u8; 5]> {
    use std::io::Read;
    let mut id = [0u8; 5];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| Error::Other(format!("reading /dev/urandom for the ULA global ID: {e}")))?;
    Ok(id)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub(crate) fn network_from_row(row: &Row) -> rusqlite::Result<Network> {
    let id: i64 = row.get(0)?;
    // Values that reach the kernel are checked again on the way out of the
    // database: a state file edited by hand (or by an older berth) must not
    // make berth create or delete an arbitrary device.
    let name: String = row.get(1)?;
    crate::model::names::check_network_name(&name).map_err(|_| bad_column(1, &name))?;
    let bridge: String = row.get(4)?;
    crate::model::names::check_ifname("bridge", &bridge).map_err(|_| bad_column(4, &bridge))?;
    Ok(Network {
        id,
        name,
        subnets: subnets_from_row(row)?,
        bridge,
        mtu: row.get(5)?,
        link_group: crate::model::names::network_link_group(id),
        route_table: ROUTE_TABLE_BASE + id as u32,
        policy: policy_from_row(row)?,
        driver: driver_from_row(row)?,
    })
}

/// Columns 2, 3 (IPv4) and 19, 20 (IPv6) of [`NETWORK_COLUMNS`]: a
/// subnet per family that has one, each checked to be of its family.
fn subnets_from_row(row: &Row) -> rusqlite::Result<Vec<Subnet>> {
    let mut out = Vec::new();
    for (family, net_col, gw_col) in [(Family::V4, 2, 3), (Family::V6, 19, 20)] {
        let net: Option<String> = row.get(net_col)?;
        let Some(net) = net else { continue };
        let parsed: crate::model::IpNet = net.parse().map_err(|_| bad_column(net_col, &net))?;
        if Family::of_net(&parsed) != family {
            return Err(bad_column(net_col, &net));
        }
        let gateway = match row.get::<_, Option<String>>(gw_col)? {
            Some(g) => {
                let ip: IpAddr = g.parse().map_err(|_| bad_column(gw_col, &g))?;
                if !parsed.contains(&ip) {
                    return Err(bad_column(gw_col, &g));
                }
                Some(ip)
            }
            None => None,
        };
        out.push(Subnet {
            net: parsed,
            gateway,
        });
    }
    Ok(out)
}

/// Columns 16..19 of [`NETWORK_COLUMNS`]; the parent is checked as an
/// interface name, as it reaches the kernel.
fn driver_from_row(row: &Row) -> rusqlite::Result<crate::model::Driver> {
    let driver: String = row.get(16)?;
    let parent: Option<String> = row.get(17)?;
    let mode: Option<String> = row.get(18)?;
    crate::model::Driver::parse(&driver, parent.as_deref(), mode.as_deref())
        .map_err(|_| bad_column(16, &driver))
}

/// Columns 6.. of [`NETWORK_COLUMNS`].
fn policy_from_row(row: &Row) -> rusqlite::Result<NetworkPolicy> {
    let deny: String = row.get(9)?;
    let deny_egress = deny
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad_column(9, s)))
        .collect::<rusqlite::Result<_>>()?;
    let uplink: Option<String> = row.get(10)?;
    let gateway: Option<String> = row.get(11)?;
    let uplink = match (uplink, gateway) {
        (Some(ifname), Some(g)) => Some(Uplink {
            ifname,
            gateway: g.parse().map_err(|_| bad_column(11, &g))?,
        }),
        _ => None,
    };
    Ok(NetworkPolicy {
        masquerade: row.get(6)?,
        icc: row.get(7)?,
        internal: row.get(8)?,
        deny_egress,
        uplink,
        log_drops: row.get(12)?,
        dns: row.get(13)?,
        cluster_cidrs: {
            let c: String = row.get(14)?;
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|_| bad_column(14, s)))
                .collect::<rusqlite::Result<_>>()?
        },
        host_access: row.get(15)?,
    })
}

/// Adds `column` (its SQL definition) to `table` unless it is there: a
/// state half-edited by hand (or a test's older version made from this
/// one) may have it already.
fn add_column_once(tx: &rusqlite::Transaction, table: &str, column: &str) -> Result<()> {
    let name = column.split(' ').next().unwrap_or_default();
    let exists: bool = tx.query_row(
        &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
        [name],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !exists {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column};"))?;
    }
    Ok(())
}

/// Writes every endpoint's `published` text from its `ports` rows (the
/// migration to version 17; afterwards [`Tx::insert_ports`] keeps it).
fn fill_published(tx: &rusqlite::Transaction) -> Result<()> {
    let mut by_endpoint: std::collections::BTreeMap<i64, Vec<PortMapping>> = Default::default();
    let mut stmt = tx.prepare(
        "SELECT host_ip, proto, host_port, container_port, count, endpoint_id FROM ports ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        by_endpoint
            .entry(row.get(5)?)
            .or_default()
            .push(port_from_row(row)?);
    }
    let mut update = tx.prepare("UPDATE endpoints SET published = ?2 WHERE id = ?1")?;
    for (id, ports) in by_endpoint {
        update.execute(params![id, crate::model::ports::published_text(&ports)])?;
    }
    Ok(())
}

pub(crate) fn endpoint_from_row(row: &Row) -> rusqlite::Result<Endpoint> {
    let ip: Option<u32> = row.get(5)?;
    let ip6: Option<String> = row.get(16)?;
    let mut ips: Vec<IpAddr> = ip
        .map(|ip| IpAddr::V4(Ipv4Addr::from(ip)))
        .into_iter()
        .collect();
    if let Some(text) = ip6 {
        let v6: Ipv6Addr = text.parse().map_err(|_| bad_column(16, &text))?;
        ips.push(IpAddr::V6(v6));
    }
    let mac: String = row.get(6)?;
    let ifname: String = row.get(7)?;
    crate::model::names::check_ifname("interface", &ifname).map_err(|_| bad_column(7, &ifname))?;
    let host_ifname: String = row.get(8)?;
    if !crate::model::names::is_host_veth_name(&host_ifname)
        && !crate::model::names::is_child_name(&host_ifname)
    {
        return Err(bad_column(8, &host_ifname));
    }
    Ok(Endpoint {
        id: row.get(0)?,
        network: row.get(1)?,
        name: row.get(2)?,
        netns: row.get(3)?,
        netns_inode: row.get::<_, i64>(4)? as u64,
        ips,
        mac: mac.parse().map_err(|_| bad_column(6, &mac))?,
        ifname,
        host_ifname,
        default_route: crate::model::Families::from_bits(row.get::<_, i64>(9)? as u8),
        metric: row.get::<_, Option<i64>>(15)?.map(|m| m as u32),
        ports: Vec::new(),
        bandwidth: bandwidth_from_row(row)?,
        allow_spoofing: row.get(14)?,
    })
}

/// Columns 10..14 of [`ENDPOINT_COLUMNS`]: a direction is limited when
/// its rate is set.
fn bandwidth_from_row(row: &Row) -> rusqlite::Result<Bandwidth> {
    Ok(bandwidth_of(
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
        row.get(13)?,
    ))
}

/// The limits of the rate and burst columns, in and out.
fn bandwidth_of(
    in_rate: Option<i64>,
    in_burst: Option<i64>,
    out_rate: Option<i64>,
    out_burst: Option<i64>,
) -> Bandwidth {
    let limit = |r: Option<i64>, b: Option<i64>| {
        r.map(|rate| Limit {
            rate: rate as u64,
            burst: b.unwrap_or(0) as u64,
        })
        .filter(|l| l.check("rate").is_ok())
    };
    Bandwidth {
        inbound: limit(in_rate, in_burst),
        outbound: limit(out_rate, out_burst),
    }
}

/// How many columns [`ENDPOINT_COLUMNS`] has: queries that select more
/// after them read those from here on.
pub(crate) fn endpoint_columns_len() -> usize {
    ENDPOINT_COLUMNS.split(',').count()
}

fn bad_column(index: usize, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("unreadable value {value:?}").into(),
    )
}

pub(crate) const NETWORK_COLUMNS: &str = "id, name, subnet, gateway, bridge, mtu, masquerade, icc, internal, deny_egress, uplink, uplink_gateway, log_drops, dns, cluster_cidrs, host_access, driver, parent, mode, subnet6, gateway6";
pub(crate) const ENDPOINT_COLUMNS: &str = "e.id, n.name, e.name, e.netns, e.netns_inode, e.ip, e.mac, e.ifname, e.host_ifname, e.default_route, e.bw_in_rate, e.bw_in_burst, e.bw_out_rate, e.bw_out_burst, e.allow_spoofing, e.metric, e.ip6";

impl Tx<'_> {
    pub fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }

    pub fn networks(&self) -> Result<Vec<Network>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {NETWORK_COLUMNS} FROM networks ORDER BY name"
        ))?;
        let rows = stmt.query_map([], network_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn network(&self, name: &str) -> Result<Option<Network>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {NETWORK_COLUMNS} FROM networks WHERE name = ?1"
        ))?;
        Ok(stmt.query_row([name], network_from_row).optional()?)
    }

    /// The network called `name`, or a bad-input error naming it.
    pub fn require_network(&self, name: &str) -> Result<Network> {
        self.network(name)?.ok_or_else(|| {
            Error::invalid(format!("no such network {name:?} (see `berth network ls`)"))
        })
    }

    pub fn insert_network(&self, n: &NewNetwork) -> Result<Network> {
        let p = &n.policy;
        let deny: Vec<String> = p.deny_egress.iter().map(|d| d.to_string()).collect();
        let of = |family: Family| n.subnets.iter().find(|s| s.family() == family);
        let net_text = |family| of(family).map(|s| s.net.to_string());
        let gw_text = |family| of(family).and_then(|s| s.gateway).map(|g| g.to_string());
        self.tx.execute(
            "INSERT INTO networks (name, subnet, gateway, bridge, mtu, masquerade, icc, internal, deny_egress, uplink, uplink_gateway, log_drops, dns, cluster_cidrs, host_access, driver, parent, mode, subnet6, gateway6)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
            params![
                n.name,
                net_text(Family::V4),
                gw_text(Family::V4),
                n.bridge,
                n.mtu,
                p.masquerade,
                p.icc,
                p.internal,
                deny.join(","),
                p.uplink.as_ref().map(|u| u.ifname.clone()),
                p.uplink.as_ref().map(|u| u.gateway.to_string()),
                p.log_drops,
                p.dns,
                p.cluster_cidrs
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                p.host_access,
                n.driver.name(),
                n.driver.parent(),
                n.driver.mode(),
                net_text(Family::V6),
                gw_text(Family::V6),
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        Ok(Network {
            id,
            name: n.name.to_string(),
            subnets: n.subnets.clone(),
            bridge: n.bridge.clone(),
            mtu: n.mtu,
            link_group: crate::model::names::network_link_group(id),
            route_table: ROUTE_TABLE_BASE + id as u32,
            policy: n.policy.clone(),
            driver: n.driver.clone(),
        })
    }

    /// A host setting berth recorded (e.g. the value of a sysctl before
    /// berth first changed it).
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?;
        Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
    }

    /// Records `key` unless it is already recorded (the first value wins).
    pub fn record_setting_once(&self, key: &str, value: &str) -> Result<()> {
        self.tx.execute(
            "INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    /// Sets `key` to `value` (a cursor berth moves, e.g. the next host port
    /// to try).
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        // Cached: a connect with ports sets two (the port cursor, then
        // the nf_tables generation).
        self.tx
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    /// The host's unique local /48 (RFC 4193): its 40-bit global ID is
    /// drawn at random the first time and kept, so automatic IPv6 subnets
    /// stay in one prefix for the life of the host (`reset` keeps it too).
    pub fn ula_prefix(&self) -> Result<crate::model::Ipv6Net> {
        let id = match self
            .setting(ULA_GLOBAL_ID)?
            .and_then(|t| parse_global_id(&t))
        {
            Some(id) => id,
            None => {
                let id = random_global_id()?;
                let text: String = id.iter().map(|b| format!("{b:02x}")).collect();
                self.set_setting(ULA_GLOBAL_ID, &text)?;
                id
            }
        };
        Ok(crate::model::subnet::ula_prefix(id))
    }

    /// Forgets everything: networks, endpoints and settings (but the
    /// host's ULA global ID).
    pub fn clear(&self) -> Result<()> {
        self.tx
            .execute_batch("DELETE FROM port_claims; DELETE FROM ports; DELETE FROM dns_names; DELETE FROM endpoints; DELETE FROM networks; DELETE FROM settings WHERE key != 'ula_global_id';")?;
        Ok(())
    }

    pub fn delete_network(&self, id: i64) -> Result<()> {
        // Ports, claims and DNS names go with their endpoints (ON DELETE
        // CASCADE).
        self.tx
            .execute("DELETE FROM endpoints WHERE network_id = ?1", [id])?;
        self.tx
            .execute("DELETE FROM networks WHERE id = ?1", [id])?;
        Ok(())
    }

    pub fn endpoint_count(&self, network_id: i64) -> Result<usize> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT count(*) FROM endpoints WHERE network_id = ?1")?;
        Ok(stmt.query_row([network_id], |r| r.get::<_, i64>(0))? as usize)
    }

    /// Endpoints of one network, or of all networks.
    pub fn endpoints(&self, network_id: Option<i64>) -> Result<Vec<Endpoint>> {
        // Two statements rather than `?1 IS NULL OR network_id = ?1`,
        // which SQLite answers by scanning every endpoint: one network's
        // are an index range.
        let sql = match network_id {
            Some(_) => format!(
                "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
                 WHERE e.network_id = ?1 ORDER BY e.ip, e.ip6, e.id"
            ),
            None => format!(
                "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
                 ORDER BY n.name, e.ip, e.ip6, e.id"
            ),
        };
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = match network_id {
            Some(id) => stmt.query_map([id], endpoint_from_row)?,
            None => stmt.query_map([], endpoint_from_row)?,
        };
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many endpoints each network has, by network id (networks
    /// without any are absent): one pass, not a count per network.
    pub fn endpoint_counts(&self) -> Result<std::collections::HashMap<i64, usize>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT network_id, count(*) FROM endpoints GROUP BY network_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The endpoints called `name`, on any network (a name is unique only
    /// within its network).
    pub fn endpoints_named(&self, name: &str) -> Result<Vec<Endpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.name = ?1 ORDER BY n.name, e.ip"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt.query_map([name], endpoint_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The endpoint of `network_id` that a TARGET refers to: by its spelling,
    /// or by the namespace's inode when the same namespace is named another way.
    pub fn find_endpoint(
        &self,
        network_id: i64,
        netns: &str,
        inode: Option<u64>,
    ) -> Result<Option<Endpoint>> {
        // Two indexed lookups rather than one OR, which SQLite would answer
        // by scanning the network's endpoints.
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.network_id = ?1 AND e.netns = ?2
             UNION ALL
             SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.netns_inode = ?3 AND e.network_id = ?1
             LIMIT 1"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        Ok(stmt
            .query_row(
                params![network_id, netns, inode.map(|i| i as i64)],
                endpoint_from_row,
            )
            .optional()?)
    }

    /// The endpoint of the network called `name`.
    /// The endpoint row `id`.
    pub fn endpoint(&self, id: i64) -> Result<Option<Endpoint>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.id = ?1"
        ))?;
        Ok(stmt.query_row(params![id], endpoint_from_row).optional()?)
    }

    pub fn endpoint_by_name(&self, network_id: i64, name: &str) -> Result<Option<Endpoint>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.network_id = ?1 AND e.name = ?2"
        ))?;
        Ok(stmt
            .query_row(params![network_id, name], endpoint_from_row)
            .optional()?)
    }

    pub fn endpoint_name_taken(&self, network_id: i64, name: &str) -> Result<bool> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT 1 FROM endpoints WHERE network_id = ?1 AND name = ?2")?;
        Ok(stmt.exists(params![network_id, name])?)
    }

    /// Who holds `ip` (its lease, either family) on the network, if anyone.
    pub fn ip_holder(&self, network_id: i64, ip: IpAddr) -> Result<Option<String>> {
        let (sql, value) = match ip {
            IpAddr::V4(v4) => (
                "SELECT name FROM endpoints WHERE network_id = ?1 AND ip = ?2",
                rusqlite::types::Value::Integer(i64::from(u32::from(v4))),
            ),
            IpAddr::V6(v6) => (
                "SELECT name FROM endpoints WHERE network_id = ?1 AND ip6 = ?2",
                rusqlite::types::Value::Text(v6.to_string()),
            ),
        };
        let mut stmt = self.tx.prepare_cached(sql)?;
        Ok(stmt
            .query_row(params![network_id, value], |r| r.get(0))
            .optional()?)
    }

    /// The last address of `family` handed out on the network (where the
    /// next lease starts looking).
    pub fn last_ip(&self, network_id: i64, family: Family) -> Result<Option<IpAddr>> {
        let sql = match family {
            Family::V4 => "SELECT last_ip FROM networks WHERE id = ?1",
            Family::V6 => "SELECT last_ip6 FROM networks WHERE id = ?1",
        };
        let mut stmt = self.tx.prepare_cached(sql)?;
        let last: Option<rusqlite::types::Value> = stmt.query_row([network_id], |r| r.get(0))?;
        Ok(match last {
            Some(rusqlite::types::Value::Integer(n)) => Some(IpAddr::V4(Ipv4Addr::from(n as u32))),
            Some(rusqlite::types::Value::Text(t)) => t.parse().ok(),
            _ => None,
        })
    }

    /// Whether some endpoint already gave the namespace its default route
    /// of `family` without a metric (routes with a metric are each
    /// endpoint's own). The column holds the families' bits.
    pub fn netns_has_default_route(&self, inode: u64, family: Family) -> Result<bool> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT 1 FROM endpoints WHERE netns_inode = ?1 AND (default_route & ?2) != 0 AND metric IS NULL",
        )?;
        let bit = crate::model::Families::of(family).bits();
        Ok(stmt.exists(params![inode as i64, bit])?)
    }

    /// The endpoint recorded under `host_ifname` (its host veth, or the
    /// name its macvlan/ipvlan child was born with).
    pub fn endpoint_by_host_ifname(&self, host_ifname: &str) -> Result<Option<Endpoint>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.host_ifname = ?1"
        ))?;
        Ok(stmt
            .query_row([host_ifname], endpoint_from_row)
            .optional()?)
    }

    /// Records an endpoint (its address is its lease) and advances the
    /// network's next-address cursor.
    pub fn insert_endpoint(&self, network: &Network, e: &Endpoint) -> Result<i64> {
        self.insert_endpoint_row(network, e, "")
    }

    /// Records a new endpoint with its published ports (`e.ports`) and
    /// their claims: what [`Tx::insert_endpoint`] and [`Tx::insert_ports`]
    /// do, with the ports' text written in the row's own insert rather
    /// than by an update after it (one statement fewer to parse).
    pub fn insert_endpoint_with_ports(&self, network: &Network, e: &Endpoint) -> Result<i64> {
        let published = crate::model::ports::published_text(&e.ports);
        let id = self.insert_endpoint_row(network, e, &published)?;
        self.insert_port_rows(id, &e.ports)?;
        Ok(id)
    }

    fn insert_endpoint_row(&self, network: &Network, e: &Endpoint, published: &str) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO endpoints (network_id, name, netns, netns_inode, ip, mac, ifname, host_ifname, default_route,
                                    bw_in_rate, bw_in_burst, bw_out_rate, bw_out_burst, allow_spoofing, metric, ip6,
                                    published)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                network.id,
                e.name,
                e.netns,
                e.netns_inode as i64,
                e.ip4().map(u32::from),
                e.mac.to_string(),
                e.ifname,
                e.host_ifname,
                e.default_route.bits(),
                e.bandwidth.inbound.map(|l| l.rate as i64),
                e.bandwidth.inbound.map(|l| l.burst as i64),
                e.bandwidth.outbound.map(|l| l.rate as i64),
                e.bandwidth.outbound.map(|l| l.burst as i64),
                e.allow_spoofing,
                e.metric.map(i64::from),
                e.ip6().map(|ip| ip.to_string()),
                published,
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        if let Some(ip) = e.ip4() {
            self.tx.execute(
                "UPDATE networks SET last_ip = ?2 WHERE id = ?1",
                params![network.id, u32::from(ip)],
            )?;
        }
        if let Some(ip) = e.ip6() {
            self.tx.execute(
                "UPDATE networks SET last_ip6 = ?2 WHERE id = ?1",
                params![network.id, ip.to_string()],
            )?;
        }
        Ok(id)
    }

    pub fn delete_endpoint(&self, id: i64) -> Result<()> {
        self.tx
            .execute("DELETE FROM endpoints WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Records an endpoint's published ports and claims their host ports.
    pub fn insert_ports(&self, endpoint_id: i64, ports: &[PortMapping]) -> Result<()> {
        if !ports.is_empty() {
            // After any the endpoint has, as `ORDER BY id` reads them.
            self.tx
                .prepare_cached(
                    "UPDATE endpoints SET published = CASE published WHEN '' THEN ?2
                     ELSE published || ', ' || ?2 END WHERE id = ?1",
                )?
                .execute(params![
                    endpoint_id,
                    crate::model::ports::published_text(ports)
                ])?;
        }
        self.insert_port_rows(endpoint_id, ports)
    }

    /// The rows of `ports` and their claims, without the endpoint's text.
    fn insert_port_rows(&self, endpoint_id: i64, ports: &[PortMapping]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let mut mapping = self.tx.prepare_cached(
            "INSERT INTO ports (endpoint_id, host_ip, proto, host_port, container_port, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut claim = self.tx.prepare_cached(
            "INSERT INTO port_claims (proto, host_port, host_ip, port_id) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for p in ports {
            mapping.execute(params![
                endpoint_id,
                p.host_ip.to_string(),
                p.proto.as_str(),
                p.host_port,
                p.container_port,
                p.count
            ])?;
            let id = self.tx.last_insert_rowid();
            for (host_port, _) in p.pairs() {
                claim.execute(params![
                    p.proto.as_str(),
                    host_port,
                    p.host_ip.to_string(),
                    id
                ])?;
            }
        }
        Ok(())
    }

    /// The published ports of one endpoint.
    pub fn ports_of(&self, endpoint_id: i64) -> Result<Vec<PortMapping>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT host_ip, proto, host_port, container_port, count FROM ports
             WHERE endpoint_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([endpoint_id], port_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Fills in `ports` of the endpoints of network `network_id`: the
    /// ports of that network only (an index range each), not every row.
    pub fn load_network_ports(&self, network_id: i64, endpoints: &mut [Endpoint]) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT p.host_ip, p.proto, p.host_port, p.container_port, p.count, p.endpoint_id
             FROM endpoints e JOIN ports p ON p.endpoint_id = e.id
             WHERE e.network_id = ?1 ORDER BY p.id",
        )?;
        let rows = stmt.query([network_id])?;
        fill_ports(rows, endpoints)
    }

    /// Fills in `ports` of each endpoint (one query for all of them).
    pub fn load_ports(&self, endpoints: &mut [Endpoint]) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT host_ip, proto, host_port, container_port, count, endpoint_id FROM ports ORDER BY id",
        )?;
        let rows = stmt.query([])?;
        fill_ports(rows, endpoints)
    }

    /// Who already holds a host port `m` would use: `NETWORK/ENDPOINT` and
    /// the mapping, or None. Every port of a range is an index lookup.
    pub fn port_holder(&self, m: &PortMapping) -> Result<Option<(String, PortMapping)>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT p.host_ip, p.proto, p.host_port, p.container_port, p.count, n.name || '/' || e.name,
                    c.host_ip
             FROM port_claims c JOIN ports p ON p.id = c.port_id
             JOIN endpoints e ON e.id = p.endpoint_id JOIN networks n ON n.id = e.network_id
             WHERE c.proto = ?1 AND c.host_port BETWEEN ?2 AND ?3",
        )?;
        let ip = m.host_ip.to_string();
        let mut rows = stmt.query(params![m.proto.as_str(), m.host_port, m.host_last()])?;
        while let Some(row) = rows.next()? {
            if addresses_clash(&row.get::<_, String>(6)?, &ip) {
                return Ok(Some((row.get(5)?, port_from_row(row)?)));
            }
        }
        Ok(None)
    }

    /// The host ports in `first..=last` of `proto` that a mapping on
    /// `host_ip` could not take (claimed on that address, on every address,
    /// or, for a mapping on every address, on any): what picking free host
    /// ports asks, one statement for a whole window of candidates rather
    /// than a `port_holder` each. The statement is the plainest range
    /// lookup, and the addresses are compared here as `port_holder`
    /// compares them: an OR of address terms made parsing and planning it
    /// (per process, as every statement) cost some 0.03 ms.
    pub fn claimed_ports(
        &self,
        proto: crate::model::Proto,
        host_ip: IpAddr,
        first: u16,
        last: u16,
    ) -> Result<Vec<u16>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT host_port, host_ip FROM port_claims WHERE proto = ?1 AND host_port BETWEEN ?2 AND ?3",
        )?;
        let ip = host_ip.to_string();
        let mut claimed = Vec::new();
        let mut rows = stmt.query(params![proto.as_str(), first, last])?;
        while let Some(row) = rows.next()? {
            let claim: String = row.get(1)?;
            if addresses_clash(&claim, &ip) {
                claimed.push(row.get(0)?);
            }
        }
        Ok(claimed)
    }

    /// Publishes of the endpoints of one network (for `network rm --force`).
    /// Each mapping once per address of its endpoint (either family).
    pub fn network_ports(&self, network_id: i64) -> Result<Vec<(IpAddr, PortMapping)>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT p.host_ip, p.proto, p.host_port, p.container_port, p.count, e.ip, e.ip6
             FROM ports p JOIN endpoints e ON e.id = p.endpoint_id
             WHERE e.network_id = ?1 ORDER BY p.id",
        )?;
        let rows = stmt.query_map([network_id], |row| {
            let v4: Option<u32> = row.get(5)?;
            let v6: Option<String> = row.get(6)?;
            let mut ips: Vec<IpAddr> = v4
                .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
                .into_iter()
                .collect();
            if let Some(t) = v6 {
                ips.push(t.parse().map_err(|_| bad_column(6, &t))?);
            }
            let m = port_from_row(row)?;
            Ok(ips.into_iter().map(|ip| (ip, m)).collect::<Vec<_>>())
        })?;
        let mut out = Vec::new();
        for r in rows {
            out.extend(r?);
        }
        Ok(out)
    }
}

/// Columns 0..5: host_ip, proto, host_port, container_port, count.
/// Gives each of `endpoints` its ports from `rows` (columns as
/// [`port_from_row`], then the endpoint id), in the rows' order.
fn fill_ports(mut rows: rusqlite::Rows, endpoints: &mut [Endpoint]) -> Result<()> {
    let index: std::collections::HashMap<i64, usize> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id, i))
        .collect();
    while let Some(row) = rows.next()? {
        let endpoint_id: i64 = row.get(5)?;
        if let Some(&i) = index.get(&endpoint_id) {
            endpoints[i].ports.push(port_from_row(row)?);
        }
    }
    Ok(())
}

fn port_from_row(row: &Row) -> rusqlite::Result<PortMapping> {
    // Read in place: a listing reads every port of every endpoint.
    use rusqlite::types::Type;
    let text = |i: usize| {
        row.get_ref(i)?
            .as_str()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, e.into()))
    };
    let (ip, proto) = (text(0)?, text(1)?);
    Ok(PortMapping {
        host_ip: ip.parse().map_err(|_| bad_column(0, ip))?,
        proto: Proto::parse(proto).ok_or_else(|| bad_column(1, proto))?,
        host_port: row.get(2)?,
        container_port: row.get(3)?,
        count: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mac;

    /// The state is at this build's schema version (a migration ran).
    fn assert_current_version(store: &Store) {
        let v: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    pub(super) fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("berth-store-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Network `web`, 10.90.0.0/24.
    pub(super) fn insert_web(tx: &Tx) -> Network {
        tx.insert_network(&NewNetwork {
            name: "web",
            subnets: vec![crate::model::Subnet {
                net: "10.90.0.0/24".parse().unwrap(),
                gateway: Some(std::net::IpAddr::V4(Ipv4Addr::new(10, 90, 0, 1))),
            }],
            bridge: "berth-web".into(),
            mtu: 1500,
            policy: NetworkPolicy::default(),
            driver: Default::default(),
        })
        .unwrap()
    }

    /// Endpoint `c1` of `web` at 10.90.0.2, in the namespace with `inode`.
    pub(super) fn endpoint_c1(inode: u64) -> Endpoint {
        let ip = Ipv4Addr::new(10, 90, 0, 2);
        Endpoint {
            id: 0,
            network: "web".into(),
            name: "c1".into(),
            netns: "c1".into(),
            netns_inode: inode,
            ips: vec![std::net::IpAddr::V4(ip)],
            mac: Mac::from_ipv4(ip),
            ifname: "eth0".into(),
            host_ifname: crate::model::names::host_veth_name("web", "c1"),
            default_route: crate::model::Families::V4,
            metric: None,
            ports: Vec::new(),
            bandwidth: Default::default(),
            allow_spoofing: false,
        }
    }

    #[test]
    fn networks_and_endpoints_round_trip() {
        let dir = temp_dir("rt");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        assert_eq!(tx.require_network("web").unwrap(), net);
        assert!(tx
            .require_network("nope")
            .unwrap_err()
            .to_string()
            .contains("nope"));
        let ep = endpoint_c1(4026532000);
        let id = tx.insert_endpoint(&net, &ep).unwrap();
        tx.commit().unwrap();

        let tx = store.begin().unwrap();
        let ip = ep.ips[0];
        assert_eq!(tx.last_ip(net.id, Family::V4).unwrap(), Some(ip));
        assert_eq!(tx.ip_holder(net.id, ip).unwrap().as_deref(), Some("c1"));
        assert_eq!(tx.last_ip(net.id, Family::V6).unwrap(), None);
        assert!(tx.netns_has_default_route(4026532000, Family::V4).unwrap());
        let found = tx
            .find_endpoint(net.id, "other-name", Some(4026532000))
            .unwrap()
            .unwrap();
        assert_eq!(found, Endpoint { id, ..ep.clone() });
        // A second lease of the same address is refused by the schema.
        assert!(tx
            .insert_endpoint(
                &net,
                &Endpoint {
                    name: "c2".into(),
                    netns: "c2".into(),
                    host_ifname: crate::model::names::host_veth_name("web", "c2"),
                    ..ep
                }
            )
            .is_err());
        tx.delete_endpoint(id).unwrap();
        assert_eq!(tx.endpoint_count(net.id).unwrap(), 0);
        tx.commit().unwrap();
        drop(store);
        // Reopening keeps the schema and data.
        let mut store = Store::open(&dir).unwrap();
        assert_eq!(store.begin().unwrap().networks().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn published_ports_are_claimed_per_port_and_go_with_their_endpoint() {
        use crate::model::PortSpec;
        let dir = temp_dir("ports");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let ep = endpoint_c1(1);
        let id = tx.insert_endpoint(&net, &ep).unwrap();
        let m = |s: &str| PortSpec::parse(s).unwrap().with_host_port(0);
        let ports = vec![m("9000-9002:9000-9002"), m("127.0.0.1:53:53/udp")];
        tx.insert_ports(id, &ports).unwrap();
        assert_eq!(tx.ports_of(id).unwrap(), ports);
        let holder = |s: &str| tx.port_holder(&m(s)).unwrap().map(|h| h.0);
        assert_eq!(holder("9002:1").as_deref(), Some("web/c1"));
        assert_eq!(holder("10.0.0.1:9001:1").as_deref(), Some("web/c1"));
        assert_eq!(holder("9003:1"), None);
        assert_eq!(holder("53:53/udp").as_deref(), Some("web/c1"));
        assert_eq!(holder("127.0.0.2:53:53/udp"), None);
        assert_eq!(holder("53:53/tcp"), None);
        // `::` is every IPv6 address: it meets 0.0.0.0 and IPv6 claims,
        // never an IPv4 address's.
        tx.insert_ports(id, &[m("[::]:7000:1"), m("[fd00::1]:7100:1")])
            .unwrap();
        assert_eq!(holder("[::1]:7000:1").as_deref(), Some("web/c1"));
        assert_eq!(holder("7000:1").as_deref(), Some("web/c1"));
        assert_eq!(holder("10.0.0.1:7000:1"), None);
        assert_eq!(holder("[::]:7100:1").as_deref(), Some("web/c1"));
        assert_eq!(holder("[fd00::2]:7100:1"), None);
        // A window of claims answers as a holder lookup of each port does.
        for spec in [
            "53:53/udp",
            "127.0.0.2:53:53/udp",
            "10.0.0.1:7000:1",
            "[::1]:7000:1",
            "[::]:7000:1",
            "7000:1",
            "[fd00::2]:7100:1",
            "[fd00::1]:7100:1",
            "10.0.0.1:9001:1",
        ] {
            let one = m(spec);
            let window = tx.claimed_ports(one.proto, one.host_ip, 1, 9999).unwrap();
            for port in 1..=9999u16 {
                let at = PortMapping {
                    host_port: port,
                    count: 1,
                    ..one
                };
                assert_eq!(
                    window.contains(&port),
                    tx.port_holder(&at).unwrap().is_some(),
                    "{spec} at port {port}"
                );
            }
        }
        let mut eps = vec![Endpoint { id, ..ep }];
        tx.load_ports(&mut eps).unwrap();
        assert_eq!(eps[0].ports.len(), 4);
        // The same, read through the network's endpoints only.
        let mut again = vec![Endpoint {
            ports: Vec::new(),
            ..eps[0].clone()
        }];
        tx.load_network_ports(net.id, &mut again).unwrap();
        assert_eq!(again[0].ports, eps[0].ports);
        tx.load_network_ports(net.id + 1, &mut again[..0]).unwrap();
        // Once per address of the endpoint (c1 has its IPv4 one only).
        assert_eq!(tx.network_ports(net.id).unwrap().len(), 4);
        // A second claim of the same port is refused by the schema too (the
        // command's transaction then rolls back).
        assert!(tx.insert_ports(id, &[m("9001:1")]).is_err());
        tx.delete_endpoint(id).unwrap();
        assert_eq!(holder("9000:1"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bandwidth_limits_round_trip_and_version_7_state_gains_them() {
        use crate::model::{Bandwidth, Limit};
        let dir = temp_dir("bw");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let limited = Endpoint {
            bandwidth: Bandwidth {
                inbound: None,
                outbound: Some(Limit {
                    rate: 40_000_000_000,
                    burst: 123_456,
                }),
            },
            ..endpoint_c1(1)
        };
        let id = tx.insert_endpoint(&net, &limited).unwrap();
        assert_eq!(
            tx.endpoint(id).unwrap().unwrap(),
            Endpoint { id, ..limited }
        );
        tx.commit().unwrap();
        // Back to version 8, before the bandwidth (and guard) columns.
        store
            .conn
            .execute_batch(
                "ALTER TABLE endpoints DROP COLUMN bw_in_rate; ALTER TABLE endpoints DROP COLUMN bw_in_burst; \
                 ALTER TABLE endpoints DROP COLUMN bw_out_rate; ALTER TABLE endpoints DROP COLUMN bw_out_burst; \
                 ALTER TABLE networks DROP COLUMN host_access; ALTER TABLE endpoints DROP COLUMN allow_spoofing; \
                 ALTER TABLE dns_names DROP COLUMN pos; ALTER TABLE endpoints DROP COLUMN metric; ALTER TABLE networks DROP COLUMN dns_servers; \
                 ALTER TABLE networks DROP COLUMN driver; ALTER TABLE networks DROP COLUMN parent; ALTER TABLE networks DROP COLUMN mode; PRAGMA user_version = 8;",
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let e = tx.endpoint(id).unwrap().unwrap();
        assert!(e.bandwidth.is_unlimited(), "{e:?}");
        // Version 11: every network before it is a bridge.
        assert!(tx.networks().unwrap().iter().all(Network::is_bridge));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An endpoint's own default route keeps its metric; one without a
    /// metric is the namespace's one and alone decides whether the next
    /// endpoint gets it; version 10 state gains the column.
    #[test]
    fn metrics_round_trip_and_only_a_route_without_one_is_the_namespaces() {
        let dir = temp_dir("metric");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let own = Endpoint {
            metric: Some(200),
            ..endpoint_c1(7)
        };
        let id = tx.insert_endpoint(&net, &own).unwrap();
        assert_eq!(tx.endpoint(id).unwrap().unwrap(), Endpoint { id, ..own });
        assert!(!tx.netns_has_default_route(7, Family::V4).unwrap());
        // A network's own DNS servers, and none again.
        let servers: Vec<std::net::IpAddr> =
            vec!["8.8.8.8".parse().unwrap(), "fd00::1".parse().unwrap()];
        tx.set_network_dns_servers(net.id, &servers).unwrap();
        assert_eq!(tx.network_dns_servers(net.id).unwrap(), servers);
        assert_eq!(tx.dns_networks().unwrap()[0].servers, servers);
        tx.set_network_dns_servers(net.id, &[]).unwrap();
        assert!(tx.network_dns_servers(net.id).unwrap().is_empty());
        tx.commit().unwrap();
        store
            .conn
            .execute_batch("ALTER TABLE endpoints DROP COLUMN metric; ALTER TABLE networks DROP COLUMN dns_servers; ALTER TABLE networks DROP COLUMN driver; ALTER TABLE networks DROP COLUMN parent; ALTER TABLE networks DROP COLUMN mode; PRAGMA user_version = 11;")
            .unwrap();
        drop(store);
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let e = tx.endpoint(id).unwrap().unwrap();
        assert_eq!(e.metric, None);
        assert!(tx.netns_has_default_route(7, Family::V4).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A state of version 14 (IPv4 columns NOT NULL, no IPv6 columns)
    /// opens: its rows keep their addresses, and afterwards a network may
    /// be IPv6-only and an endpoint have no IPv4 address, with IPv6 leases
    /// unique per network.
    #[test]
    fn version_14_state_opens_and_takes_ipv6() {
        let dir = temp_dir("v14");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let ep = endpoint_c1(11);
        let id = tx.insert_endpoint(&net, &ep).unwrap();
        tx.commit().unwrap();
        // Back to version 14: the columns as they were, NOT NULL again.
        store
            .conn
            .execute_batch(
                "DROP INDEX endpoints_by_ip6;
                 DROP INDEX endpoints_with_ip6;
                 DROP INDEX endpoints_by_name;
                 ALTER TABLE endpoints DROP COLUMN ip6;
                 ALTER TABLE networks DROP COLUMN subnet6;
                 ALTER TABLE networks DROP COLUMN gateway6;
                 ALTER TABLE networks DROP COLUMN last_ip6;
                 PRAGMA user_version = 14;",
            )
            .unwrap();
        store
            .conn
            .pragma_update(None, "foreign_keys", "OFF")
            .unwrap();
        {
            let tx = store.conn.transaction().unwrap();
            for (table, from, to) in [
                ("networks", "subnet TEXT,", "subnet TEXT NOT NULL,"),
                ("networks", "gateway TEXT,", "gateway TEXT NOT NULL,"),
                ("endpoints", "ip INTEGER,", "ip INTEGER NOT NULL,"),
            ] {
                let sql: String = tx
                    .query_row(
                        "SELECT sql FROM sqlite_master WHERE name = ?1",
                        [table],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert!(sql.contains(from), "{sql}");
                let body = sql.split_once('(').unwrap().1.replacen(from, to, 1);
                let indexes: Vec<String> = {
                    let mut st = tx
                        .prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL")
                        .unwrap();
                    let rows = st.query_map([table], |r| r.get(0)).unwrap();
                    rows.map(|r| r.unwrap()).collect()
                };
                tx.execute_batch(&format!(
                    "CREATE TABLE old_{table} ({body}; INSERT INTO old_{table} SELECT * FROM {table};
                     DROP TABLE {table}; ALTER TABLE old_{table} RENAME TO {table};"
                ))
                .unwrap();
                for i in indexes {
                    tx.execute_batch(&i).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        store
            .conn
            .pragma_update(None, "foreign_keys", "ON")
            .unwrap();
        let strict: String = store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'endpoints'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(strict.contains("ip INTEGER NOT NULL"), "{strict}");
        drop(store);

        let mut store = Store::open(&dir).unwrap();
        assert_current_version(&store);
        let tx = store.begin().unwrap();
        assert_eq!(tx.require_network("web").unwrap(), net);
        assert_eq!(
            tx.endpoint(id).unwrap().unwrap(),
            Endpoint { id, ..ep.clone() }
        );
        // An IPv6-only network and endpoint now fit.
        let v6net = tx
            .insert_network(&NewNetwork {
                name: "six",
                subnets: vec![Subnet {
                    net: "fd00:6::/64".parse().unwrap(),
                    gateway: Some("fd00:6::1".parse().unwrap()),
                }],
                bridge: "berth-six".into(),
                mtu: 1500,
                policy: NetworkPolicy::default(),
                driver: Default::default(),
            })
            .unwrap();
        assert_eq!(tx.require_network("six").unwrap(), v6net);
        let ip6: IpAddr = "fd00:6::2".parse().unwrap();
        let six = Endpoint {
            ips: vec![ip6],
            mac: crate::model::Mac::from_ip(ip6),
            host_ifname: crate::model::names::host_veth_name("six", "c1"),
            network: "six".into(),
            ..ep.clone()
        };
        let six_id = tx.insert_endpoint(&v6net, &six).unwrap();
        assert_eq!(tx.endpoint(six_id).unwrap().unwrap().ips, vec![ip6]);
        assert_eq!(tx.ip_holder(v6net.id, ip6).unwrap().as_deref(), Some("c1"));
        assert_eq!(tx.last_ip(v6net.id, Family::V6).unwrap(), Some(ip6));
        // The IPv6 lease is unique per network.
        let again = Endpoint {
            name: "c2".into(),
            netns: "c2".into(),
            host_ifname: crate::model::names::host_veth_name("six", "c2"),
            ..six.clone()
        };
        assert!(tx.insert_endpoint(&v6net, &again).is_err());
        // The ULA prefix is made once and kept.
        let ula = tx.ula_prefix().unwrap();
        assert_eq!(tx.ula_prefix().unwrap(), ula);
        assert_eq!(ula.prefix_len(), 48);
        assert_eq!(ula.network().segments()[0] >> 8, 0xfd);
        tx.clear().unwrap();
        assert_eq!(tx.ula_prefix().unwrap(), ula, "reset keeps it");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Version 15 state gains the name index, keeps its rows, and the
    /// lookups by name, by network and the per-network reads use indexes.
    #[test]
    fn version_15_state_gains_the_name_index() {
        let dir = temp_dir("v15");
        let id = {
            let mut store = Store::open(&dir).unwrap();
            let tx = store.begin().unwrap();
            let net = insert_web(&tx);
            let id = tx.insert_endpoint(&net, &endpoint_c1(7)).unwrap();
            tx.commit().unwrap();
            store
                .conn
                .execute_batch(
                    "DROP INDEX endpoints_by_name; DROP INDEX endpoints_with_ip6;
                     PRAGMA user_version = 15;",
                )
                .unwrap();
            id
        };
        let mut store = Store::open(&dir).unwrap();
        assert_current_version(&store);
        let plan = |sql: &str| -> String {
            let mut st = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = st.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let named = plan("SELECT id FROM endpoints WHERE name = 'c1'");
        assert!(named.contains("INDEX endpoints_by_name"), "{named}");
        let six = plan(&super::loopback::any_forward());
        assert!(six.contains("endpoints_with_ip6"), "{six}");
        let counts = plan("SELECT network_id, count(*) FROM endpoints GROUP BY network_id");
        assert!(!counts.contains("TEMP B-TREE"), "{counts}");
        let tx = store.begin().unwrap();
        let net = tx.require_network("web").unwrap();
        assert_eq!(tx.endpoints_named("c1").unwrap()[0].id, id);
        assert_eq!(tx.endpoints(Some(net.id)).unwrap()[0].id, id);
        assert_eq!(tx.endpoint_counts().unwrap().get(&net.id), Some(&1));
        assert!(!tx.endpoint_counts().unwrap().contains_key(&(net.id + 1)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Version 16 state gains each endpoint's published text, made from
    /// its ports in their order, and new ports go on writing it.
    #[test]
    fn version_16_state_gains_the_published_text() {
        use crate::model::PortSpec;
        let dir = temp_dir("v16");
        let m = |s: &str| PortSpec::parse(s).unwrap().with_host_port(0);
        let ports = vec![m("8080:80"), m("9000-9002:9000-9002"), m("[::1]:53:53/udp")];
        let (net, id, bare) = {
            let mut store = Store::open(&dir).unwrap();
            let tx = store.begin().unwrap();
            let net = insert_web(&tx);
            let id = tx.insert_endpoint(&net, &endpoint_c1(7)).unwrap();
            tx.insert_ports(id, &ports).unwrap();
            let mut e = endpoint_c1(8);
            e.name = "c2".into();
            e.netns = "c2".into();
            e.host_ifname = crate::model::names::host_veth_name("web", "c2");
            e.ips = vec![std::net::IpAddr::V4(Ipv4Addr::new(10, 90, 0, 3))];
            let bare = tx.insert_endpoint(&net, &e).unwrap();
            tx.commit().unwrap();
            store
                .conn
                .execute_batch(
                    "ALTER TABLE endpoints DROP COLUMN published; PRAGMA user_version = 16;",
                )
                .unwrap();
            (net, id, bare)
        };
        let mut store = Store::open(&dir).unwrap();
        assert_current_version(&store);
        let published = |store: &Store, id: i64| -> String {
            store
                .conn
                .query_row("SELECT published FROM endpoints WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        let want = crate::model::ports::published_text(&ports);
        assert_eq!(
            want,
            "0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9002->9000-9002/tcp, [::1]:53->53/udp"
        );
        assert_eq!(published(&store, id), want);
        assert_eq!(published(&store, bare), "");
        let tx = store.begin().unwrap();
        tx.insert_ports(bare, &[m("7000:70")]).unwrap();
        tx.insert_ports(bare, &[m("7001:71")]).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            published(&store, bare),
            "0.0.0.0:7000->70/tcp, 0.0.0.0:7001->71/tcp"
        );
        let tx = store.begin().unwrap();
        assert_eq!(tx.endpoints(Some(net.id)).unwrap().len(), 2);
        drop(tx);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn version_1_state_is_migrated_and_keeps_its_networks() {
        let dir = temp_dir("v1");
        std::fs::create_dir_all(&dir).unwrap();
        {
            let conn = Connection::open(dir.join("berth.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE networks (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
                   subnet TEXT NOT NULL, gateway TEXT NOT NULL, bridge TEXT NOT NULL UNIQUE,
                   mtu INTEGER NOT NULL, last_ip INTEGER);
                 CREATE TABLE endpoints (id INTEGER PRIMARY KEY AUTOINCREMENT,
                   network_id INTEGER NOT NULL REFERENCES networks(id), name TEXT NOT NULL,
                   netns TEXT NOT NULL, netns_inode INTEGER NOT NULL, ip INTEGER NOT NULL,
                   mac TEXT NOT NULL, ifname TEXT NOT NULL, host_ifname TEXT NOT NULL UNIQUE,
                   default_route INTEGER NOT NULL);
                 INSERT INTO networks (name, subnet, gateway, bridge, mtu)
                   VALUES ('old', '10.90.0.0/24', '10.90.0.1', 'berth-old', 1500);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let old = tx.require_network("old").unwrap();
        assert_eq!(old.policy, NetworkPolicy::default());
        tx.record_setting_once("k", "a").unwrap();
        tx.record_setting_once("k", "b").unwrap();
        assert_eq!(tx.setting("k").unwrap().as_deref(), Some("a"));
        tx.commit().unwrap();
        assert_current_version(&store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
