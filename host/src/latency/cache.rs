//! The SQLite latency cache, keyed by model SHA-256 × board fingerprint × threads × cores × input
//! shape.
//!
//! It stores the whole agent report (JSON) with its P50 and the time it was measured, so a search
//! never measures the same model on the same kind of board twice (unless `--remeasure`). The
//! database is in WAL mode with a busy timeout, so several searches can share it, and every write
//! is one transaction, so a writer killed with `kill -9` leaves the last committed rows intact.
//!
//! Schema version 1 added three optional columns: the estimate's confidence interval
//! (`interval_low_ms`, `interval_high_ms`) and the SHA-256 of the reference model it was measured
//! against (`reference_sha256`), all `NULL` for the single-model protocol. A cache file of the
//! original schema gains them when opened (in one transaction; its rows are kept, with `NULL`s).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use serde::{Deserialize, Serialize};

use super::Interval;

/// What a cached latency depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    /// SHA-256 of the ONNX bytes, hex.
    pub model_sha256: String,
    /// `BoardInfo::fingerprint()` of the board that measured it.
    pub board_fingerprint: String,
    /// ORT intra-op threads.
    pub threads: u32,
    /// Pinned cores as written in boards.toml (`""` when not pinned).
    pub cores: String,
    /// Input shape, e.g. `1x3x224x224`.
    pub input_shape: String,
}

impl CacheKey {
    /// The key's columns in the order the queries bind them (`?1` … `?5`).
    fn params(&self) -> [&dyn ToSql; 5] {
        [
            &self.model_sha256,
            &self.board_fingerprint,
            &self.threads,
            &self.cores,
            &self.input_shape,
        ]
    }
}

/// One cached measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// What it was measured under.
    pub key: CacheKey,
    /// Median latency (the objective), ms.
    pub p50_ms: f64,
    /// The estimate's confidence interval, ms (`None` from the single-model protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// SHA-256 of the reference model the estimate was measured against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_sha256: Option<String>,
    /// The agent's whole report, as JSON text.
    pub report_json: String,
    /// When it was stored, seconds since the Unix epoch.
    pub measured_at: i64,
}

/// One measurement to store ([`Cache::put_many`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// What it was measured under.
    pub key: CacheKey,
    /// Median latency (or the interleaved estimate), ms.
    pub p50_ms: f64,
    /// The estimate's confidence interval, ms, if the protocol gives one.
    pub interval: Option<Interval>,
    /// SHA-256 of the reference model, for the interleaved protocol.
    pub reference_sha256: Option<String>,
    /// The agent's whole report, as JSON text.
    pub report_json: String,
}

impl NewEntry {
    /// A measurement without an interval or reference (the single-model protocol).
    pub fn single(key: CacheKey, p50_ms: f64, report_json: impl Into<String>) -> NewEntry {
        NewEntry {
            key,
            p50_ms,
            interval: None,
            reference_sha256: None,
            report_json: report_json.into(),
        }
    }
}

/// Counts per board fingerprint, for `shiftnas cache stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    /// The database file.
    pub path: PathBuf,
    /// All rows.
    pub entries: u64,
    /// Rows per board fingerprint: `(fingerprint, rows, oldest, newest)` (Unix seconds).
    pub boards: Vec<BoardStats>,
}

/// Rows of one board fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardStats {
    /// The board fingerprint.
    pub board_fingerprint: String,
    /// Rows.
    pub entries: u64,
    /// Oldest row, Unix seconds.
    pub oldest: i64,
    /// Newest row, Unix seconds.
    pub newest: i64,
}

/// An open latency cache.
#[derive(Debug)]
pub struct Cache {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS latency (
    model_sha256      TEXT NOT NULL,
    board_fingerprint TEXT NOT NULL,
    threads           INTEGER NOT NULL,
    cores             TEXT NOT NULL,
    input_shape       TEXT NOT NULL,
    p50_ms            REAL NOT NULL,
    report_json       TEXT NOT NULL,
    measured_at       INTEGER NOT NULL,
    interval_low_ms   REAL,
    interval_high_ms  REAL,
    reference_sha256  TEXT,
    PRIMARY KEY (model_sha256, board_fingerprint, threads, cores, input_shape)
);
CREATE INDEX IF NOT EXISTS latency_board ON latency (board_fingerprint, measured_at);
CREATE TABLE IF NOT EXISTS set_scale (
    reference_sha256  TEXT NOT NULL,
    board_fingerprint TEXT NOT NULL,
    threads           INTEGER NOT NULL,
    cores             TEXT NOT NULL,
    input_shape       TEXT NOT NULL,
    scale_ms          REAL NOT NULL,
    measured_at       INTEGER NOT NULL,
    PRIMARY KEY (reference_sha256, board_fingerprint, threads, cores, input_shape)
);
";

/// `PRAGMA user_version` of the current schema.
const SCHEMA_VERSION: i64 = 2;

/// Columns added after the original schema, with their types: an older file gains them.
const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("interval_low_ms", "REAL"),
    ("interval_high_ms", "REAL"),
    ("reference_sha256", "TEXT"),
];

/// The columns of `table` (empty when there is none).
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    st.query_map([table], |r| r.get(0))?.collect()
}

/// How long a connection waits for another's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches the file to WAL. While several processes open a new file at once, SQLite can answer
/// the switch with `SQLITE_BUSY` at once, without calling the busy handler: retried here for up
/// to [`BUSY_TIMEOUT`].
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let t0 = Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && t0.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

/// Creates the table in a new file, or adds the columns an older file lacks. Reads only when the
/// schema is current, so a read-only cache of the current schema still opens.
fn ensure_schema(conn: &mut Connection) -> rusqlite::Result<()> {
    let have = columns(conn, "latency")?;
    let current = !have.is_empty()
        && ADDED_COLUMNS
            .iter()
            .all(|(c, _)| have.iter().any(|h| h == c))
        && !columns(conn, "set_scale")?.is_empty();
    if current {
        return Ok(());
    }
    // IMMEDIATE: two processes opening an old file at once migrate it one after the other.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    let have = columns(&tx, "latency")?;
    for (name, ty) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            tx.execute_batch(&format!("ALTER TABLE latency ADD COLUMN {name} {ty}"))?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// The interval stored in two nullable columns.
fn interval_of(low: Option<f64>, high: Option<f64>) -> Option<Interval> {
    Some(Interval {
        low: low?,
        high: high?,
    })
}

/// The default cache file: `$XDG_CACHE_HOME/shiftnas/latency.sqlite` or
/// `~/.cache/shiftnas/latency.sqlite`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| crate::paths::home_dir().join(".cache"));
    base.join("shiftnas").join("latency.sqlite")
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Cache {
    /// Opens (creating if needed) the cache at `path`, in WAL mode with a 10 s busy timeout.
    ///
    /// # Errors
    /// The directory cannot be created or the file is not a shiftnas cache.
    pub fn open(path: &Path) -> Result<Cache> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the cache directory {}", dir.display()))?;
        }
        let ctx = || {
            format!(
                "opening the latency cache {} (pass --cache PATH to use another)",
                path.display()
            )
        };
        let mut conn = Connection::open(path).with_context(ctx)?;
        conn.busy_timeout(BUSY_TIMEOUT).with_context(ctx)?;
        // WAL lets readers go on while one search writes; NORMAL sync is still crash-safe in WAL
        // (a power loss may drop the last transactions, never corrupt the file).
        set_wal(&conn).with_context(ctx)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .with_context(ctx)?;
        ensure_schema(&mut conn).with_context(|| {
            format!(
                "creating or updating the tables of the latency cache {} (it must be writable \
                 once after an upgrade of shiftnas; or pass --cache PATH to use another)",
                path.display()
            )
        })?;
        Ok(Cache {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the cache at `path` only if the file exists (creating nothing); `None` otherwise.
    ///
    /// # Errors
    /// As [`Cache::open`].
    pub fn open_existing(path: &Path) -> Result<Option<Cache>> {
        if !path.exists() {
            return Ok(None);
        }
        Cache::open(path).map(Some)
    }

    /// Fails unless rows can be written: checked before measuring, so a read-only cache does not
    /// cost a measurement. (SQLite opens a read-only file without complaint and only fails on the
    /// first write.) Writes nothing: the probe's transaction is rolled back.
    ///
    /// # Errors
    /// The file or its directory is read-only (naming the file and the fix).
    pub fn check_writable(&mut self) -> Result<()> {
        let path = self.path.display().to_string();
        let fix = || {
            format!(
                "the latency cache {path} is not writable; make it (and its directory) writable \
                 or pass --cache PATH to use another"
            )
        };
        if self.conn.is_readonly(rusqlite::MAIN_DB).with_context(fix)? {
            bail!("{}", fix());
        }
        let tx = self.conn.transaction().with_context(fix)?;
        tx.execute_batch("CREATE TABLE write_probe (x); DROP TABLE write_probe;")
            .with_context(fix)?;
        tx.rollback().with_context(fix)?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached entry for `key`, if any.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>> {
        self.conn
            .query_row(
                "SELECT p50_ms, report_json, measured_at, interval_low_ms, interval_high_ms, \
                 reference_sha256 FROM latency WHERE model_sha256 = ?1 AND board_fingerprint = ?2 \
                 AND threads = ?3 AND cores = ?4 AND input_shape = ?5",
                key.params(),
                |r| {
                    Ok(CacheEntry {
                        key: key.clone(),
                        p50_ms: r.get(0)?,
                        interval: interval_of(r.get(3)?, r.get(4)?),
                        reference_sha256: r.get(5)?,
                        report_json: r.get(1)?,
                        measured_at: r.get(2)?,
                    })
                },
            )
            .optional()
            .with_context(|| format!("reading the latency cache {}", self.path.display()))
    }

    /// The scale (ms) of the interleaved sets measured on `key`'s board against the reference
    /// `key.model_sha256`, if one was stored ([`crate::latency::cached`]).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn scale(&self, key: &CacheKey) -> Result<Option<f64>> {
        self.conn
            .query_row(
                "SELECT scale_ms FROM set_scale WHERE reference_sha256 = ?1 AND \
                 board_fingerprint = ?2 AND threads = ?3 AND cores = ?4 AND input_shape = ?5",
                key.params(),
                |r| r.get(0),
            )
            .optional()
            .with_context(|| format!("reading the latency cache {}", self.path.display()))
    }

    /// Stores (or replaces) the scale of the sets measured on `key`'s board against the
    /// reference `key.model_sha256`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_scale(&mut self, key: &CacheKey, scale_ms: f64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO set_scale (reference_sha256, board_fingerprint, threads, \
                 cores, input_shape, scale_ms, measured_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params_from_iter(
                    key.params()
                        .into_iter()
                        .chain([&scale_ms as &dyn ToSql, &now_s()]),
                ),
            )
            .with_context(|| format!("writing the latency cache {}", self.path.display()))?;
        Ok(())
    }

    /// Stores (or replaces) one measurement without an interval in its own transaction.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put(&mut self, key: &CacheKey, p50_ms: f64, report_json: &str) -> Result<()> {
        self.put_many(&[NewEntry::single(key.clone(), p50_ms, report_json)])
    }

    /// Stores (or replaces) several measurements in one transaction.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_many(&mut self, rows: &[NewEntry]) -> Result<()> {
        let at = now_s();
        let ctx = || format!("writing the latency cache {}", self.path.display());
        let tx = self.conn.transaction().with_context(ctx)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO latency (model_sha256, board_fingerprint, threads, \
                     cores, input_shape, p50_ms, report_json, measured_at, interval_low_ms, \
                     interval_high_ms, reference_sha256) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .with_context(ctx)?;
            for row in rows {
                let k = &row.key;
                st.execute(params![
                    k.model_sha256,
                    k.board_fingerprint,
                    k.threads,
                    k.cores,
                    k.input_shape,
                    row.p50_ms,
                    row.report_json,
                    at,
                    row.interval.map(|i| i.low),
                    row.interval.map(|i| i.high),
                    row.reference_sha256,
                ])
                .with_context(ctx)?;
            }
        }
        tx.commit().with_context(ctx)?;
        Ok(())
    }

    /// Row counts, in total and per board fingerprint.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stats(&self) -> Result<CacheStats> {
        let entries: u64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM latency", [], |r| r.get(0))?;
        let mut st = self.conn.prepare(
            "SELECT board_fingerprint, COUNT(*), MIN(measured_at), MAX(measured_at) FROM latency \
             GROUP BY board_fingerprint ORDER BY board_fingerprint",
        )?;
        let boards = st
            .query_map([], |r| {
                Ok(BoardStats {
                    board_fingerprint: r.get(0)?,
                    entries: r.get(1)?,
                    oldest: r.get(2)?,
                    newest: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(CacheStats {
            path: self.path.clone(),
            entries,
            boards,
        })
    }

    /// Every row, ordered by board then model.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn entries(&self) -> Result<Vec<CacheEntry>> {
        let mut st = self.conn.prepare(
            "SELECT model_sha256, board_fingerprint, threads, cores, input_shape, p50_ms, \
             report_json, measured_at, interval_low_ms, interval_high_ms, reference_sha256 \
             FROM latency ORDER BY board_fingerprint, model_sha256",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(CacheEntry {
                    key: CacheKey {
                        model_sha256: r.get(0)?,
                        board_fingerprint: r.get(1)?,
                        threads: r.get(2)?,
                        cores: r.get(3)?,
                        input_shape: r.get(4)?,
                    },
                    p50_ms: r.get(5)?,
                    interval: interval_of(r.get(8)?, r.get(9)?),
                    reference_sha256: r.get(10)?,
                    report_json: r.get(6)?,
                    measured_at: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Deletes rows older than `older_than` and/or of one board fingerprint; returns how many.
    /// A set scale goes with the last row measured on it, so the next set there sets a new one.
    ///
    /// With neither filter, deletes everything.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn prune(&mut self, older_than: Option<Duration>, board: Option<&str>) -> Result<u64> {
        let cutoff = older_than.map(|d| now_s() - d.as_secs() as i64);
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM latency WHERE (?1 IS NULL OR measured_at < ?1) \
             AND (?2 IS NULL OR board_fingerprint = ?2)",
            params![cutoff, board],
        )?;
        tx.execute(
            "DELETE FROM set_scale WHERE NOT EXISTS (SELECT 1 FROM latency l WHERE \
             l.board_fingerprint = set_scale.board_fingerprint AND l.threads = set_scale.threads \
             AND l.cores = set_scale.cores AND l.input_shape = set_scale.input_shape)",
            [],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }
}

/// Renders entries as CSV (without the report JSON; the interval and reference columns empty
/// where there are none): a pure function, tested without files.
pub fn to_csv(entries: &[CacheEntry]) -> String {
    let mut s = String::from(
        "model_sha256,board_fingerprint,threads,cores,input_shape,p50_ms,measured_at,\
         interval_low_ms,interval_high_ms,reference_sha256\n",
    );
    let q = |v: &str| {
        if v.contains([',', '"', '\n']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    };
    for e in entries {
        let (low, high) = e.interval.map_or((String::new(), String::new()), |i| {
            (i.low.to_string(), i.high.to_string())
        });
        s += &format!(
            "{},{},{},{},{},{},{},{low},{high},{}\n",
            q(&e.key.model_sha256),
            q(&e.key.board_fingerprint),
            e.key.threads,
            q(&e.key.cores),
            q(&e.key.input_shape),
            e.p50_ms,
            e.measured_at,
            q(e.reference_sha256.as_deref().unwrap_or_default()),
        );
    }
    s
}

/// Parses a duration such as `30d`, `12h`, `90m` or `45s`.
///
/// # Errors
/// A message with the accepted forms.
pub fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{s:?} is not an age; write e.g. 30d, 12h, 90m or 45s");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n * mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sha: &str, fp: &str) -> CacheKey {
        CacheKey {
            model_sha256: sha.into(),
            board_fingerprint: fp.into(),
            threads: 4,
            cores: "4-7".into(),
            input_shape: "1x3x32x32".into(),
        }
    }

    #[test]
    fn put_get_stats_prune() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("sub/latency.sqlite")).unwrap();
        assert!(c.get(&key("a", "fp1")).unwrap().is_none());
        c.put(&key("a", "fp1"), 1.5, "{\"p50_ms\":1.5}").unwrap();
        c.put(&key("b", "fp1"), 2.5, "{}").unwrap();
        c.put(&key("a", "fp2"), 3.0, "{}").unwrap();
        let e = c.get(&key("a", "fp1")).unwrap().unwrap();
        assert_eq!(e.p50_ms, 1.5);
        assert_eq!(e.report_json, "{\"p50_ms\":1.5}");
        // Another thread count is another key.
        let mut k = key("a", "fp1");
        k.threads = 1;
        assert!(c.get(&k).unwrap().is_none());
        let s = c.stats().unwrap();
        assert_eq!(s.entries, 3);
        assert_eq!(s.boards.len(), 2);
        assert_eq!(s.boards[0].entries, 2);
        assert_eq!(c.prune(Some(Duration::from_secs(3600)), None).unwrap(), 0);
        assert_eq!(c.prune(None, Some("fp1")).unwrap(), 2);
        assert_eq!(c.stats().unwrap().entries, 1);
        // Reopening sees what was committed.
        drop(c);
        let c = Cache::open(&dir.path().join("sub/latency.sqlite")).unwrap();
        assert_eq!(c.get(&key("a", "fp2")).unwrap().unwrap().p50_ms, 3.0);
    }

    /// A set scale is kept per board and reference, and goes with the last entry of its board.
    #[test]
    fn a_set_scale_lives_as_long_as_an_entry_on_its_board() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("l.sqlite")).unwrap();
        c.put_scale(&key("ref", "fp1"), 0.5).unwrap();
        c.put_scale(&key("ref", "fp2"), 0.7).unwrap();
        c.put(&key("a", "fp1"), 1.0, "{}").unwrap();
        c.put(&key("b", "fp1"), 1.0, "{}").unwrap();
        c.put(&key("a", "fp2"), 1.4, "{}").unwrap();
        assert_eq!(c.scale(&key("ref", "fp1")).unwrap(), Some(0.5));
        assert_eq!(
            c.scale(&key("other", "fp1")).unwrap(),
            None,
            "per reference"
        );
        let mut k = key("ref", "fp1");
        k.threads = 1;
        assert_eq!(c.scale(&k).unwrap(), None, "per thread count");
        assert_eq!(c.stats().unwrap().entries, 3, "a scale is not an entry");
        c.put_scale(&key("ref", "fp1"), 0.6).unwrap();
        assert_eq!(c.scale(&key("ref", "fp1")).unwrap(), Some(0.6), "replaced");
        // Pruning fp2's only entry takes its scale; fp1 keeps both.
        assert_eq!(c.prune(None, Some("fp2")).unwrap(), 1);
        assert_eq!(c.scale(&key("ref", "fp2")).unwrap(), None);
        assert_eq!(c.scale(&key("ref", "fp1")).unwrap(), Some(0.6));
        assert_eq!(c.prune(None, None).unwrap(), 2);
        assert_eq!(c.scale(&key("ref", "fp1")).unwrap(), None);
    }

    #[test]
    fn two_connections_share_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.sqlite");
        let mut a = Cache::open(&p).unwrap();
        let b = Cache::open(&p).unwrap();
        a.put(&key("x", "fp"), 1.0, "{}").unwrap();
        assert!(b.get(&key("x", "fp")).unwrap().is_some());
    }

    #[test]
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/latency.sqlite");
        assert!(Cache::open_existing(&p).unwrap().is_none());
        assert!(!dir.path().join("no").exists(), "no folders made");
        let p = dir.path().join("l.sqlite");
        Cache::open(&p)
            .unwrap()
            .put(&key("a", "fp"), 1.0, "{}")
            .unwrap();
        let c = Cache::open_existing(&p).unwrap().unwrap();
        assert_eq!(c.stats().unwrap().entries, 1);
    }

    /// A cache SQLite opened read-only is refused before anything is measured, and a writable
    /// one passes the probe without a trace.
    #[test]
    fn check_writable_refuses_a_read_only_cache() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.sqlite");
        let mut c = Cache::open(&p).unwrap();
        c.check_writable().unwrap();
        assert_eq!(c.stats().unwrap().entries, 0);
        let tables: u32 = c
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2, "latency and set_scale; the probe table is gone");
        drop(c);
        // What SQLite does with a file it may not write (chmod 444, a read-only mount): it opens
        // read-only.
        let conn =
            Connection::open_with_flags(&p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut ro = Cache {
            conn,
            path: p.clone(),
        };
        let e = format!("{:#}", ro.check_writable().unwrap_err());
        assert!(
            e.contains(&p.display().to_string()) && e.contains("--cache"),
            "{e}"
        );
        assert!(
            ro.put(&key("a", "fp"), 1.0, "{}").is_err(),
            "and indeed cannot write"
        );
    }

    #[test]
    fn csv_quotes_and_orders() {
        let e = CacheEntry {
            key: CacheKey {
                cores: "0,2".into(),
                ..key("a", "fp")
            },
            p50_ms: 1.25,
            interval: None,
            reference_sha256: None,
            report_json: "{}".into(),
            measured_at: 7,
        };
        let with_interval = CacheEntry {
            interval: Some(Interval {
                low: 1.5,
                high: 1.75,
            }),
            reference_sha256: Some("ref".into()),
            ..e.clone()
        };
        assert_eq!(
            to_csv(&[e, with_interval]),
            "model_sha256,board_fingerprint,threads,cores,input_shape,p50_ms,measured_at,\
             interval_low_ms,interval_high_ms,reference_sha256\n\
             a,fp,4,\"0,2\",1x3x32x32,1.25,7,,,\n\
             a,fp,4,\"0,2\",1x3x32x32,1.25,7,1.5,1.75,ref\n"
        );
    }

    /// An interval and a reference go in and come back out; a row without them reads `None`,
    /// and the JSON export leaves them out.
    #[test]
    fn intervals_and_references_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::open(&dir.path().join("l.sqlite")).unwrap();
        let interval = Interval {
            low: 1.4,
            high: 1.6,
        };
        c.put_many(&[
            NewEntry {
                interval: Some(interval),
                reference_sha256: Some("r".repeat(64)),
                ..NewEntry::single(key("a", "fp"), 1.5, "{}")
            },
            NewEntry::single(key("b", "fp"), 2.5, "{}"),
        ])
        .unwrap();
        let a = c.get(&key("a", "fp")).unwrap().unwrap();
        assert_eq!(
            (a.p50_ms, a.interval, a.reference_sha256.as_deref()),
            (1.5, Some(interval), Some("r".repeat(64).as_str()))
        );
        let b = c.get(&key("b", "fp")).unwrap().unwrap();
        assert_eq!((b.interval, b.reference_sha256.as_deref()), (None, None));
        assert_eq!(c.entries().unwrap()[0], a);
        let json = serde_json::to_value(&b).unwrap();
        assert!(json.get("interval").is_none(), "{json}");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["interval"]["low"], 1.4, "{json}");
    }

    /// A cache file of the original schema (no interval columns, `user_version` 0) opens, keeps
    /// its rows, gains the columns and takes rows with intervals.
    #[test]
    fn an_old_schema_file_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.sqlite");
        {
            let conn = Connection::open(&p).unwrap();
            conn.execute_batch(
                "CREATE TABLE latency (
                    model_sha256 TEXT NOT NULL, board_fingerprint TEXT NOT NULL,
                    threads INTEGER NOT NULL, cores TEXT NOT NULL, input_shape TEXT NOT NULL,
                    p50_ms REAL NOT NULL, report_json TEXT NOT NULL, measured_at INTEGER NOT NULL,
                    PRIMARY KEY (model_sha256, board_fingerprint, threads, cores, input_shape));
                 CREATE INDEX latency_board ON latency (board_fingerprint, measured_at);
                 INSERT INTO latency VALUES ('a', 'fp', 4, '4-7', '1x3x32x32', 1.5, '{}', 100);
                 INSERT INTO latency VALUES ('b', 'fp', 4, '4-7', '1x3x32x32', 2.5, '{}', 200);",
            )
            .unwrap();
        }
        let mut c = Cache::open(&p).unwrap();
        let a = c.get(&key("a", "fp")).unwrap().unwrap();
        assert_eq!((a.p50_ms, a.measured_at, a.interval), (1.5, 100, None));
        assert_eq!(c.stats().unwrap().entries, 2);
        let version: i64 = c
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let interval = Interval {
            low: 2.0,
            high: 2.2,
        };
        c.put_many(&[NewEntry {
            interval: Some(interval),
            ..NewEntry::single(key("b", "fp"), 2.1, "{}")
        }])
        .unwrap();
        drop(c);
        // Opening again migrates nothing and sees both rows.
        let c = Cache::open(&p).unwrap();
        let names = columns(&c.conn, "latency").unwrap();
        assert_eq!(names.len(), 11, "{names:?}");
        assert!(
            c.scale(&key("ref", "fp")).unwrap().is_none(),
            "gained set_scale"
        );
        assert_eq!(
            c.get(&key("b", "fp")).unwrap().unwrap().interval,
            Some(interval)
        );
        assert_eq!(c.stats().unwrap().entries, 2);
    }

    /// A read-only file of the original schema cannot be migrated (and is not half-migrated).
    #[test]
    fn a_read_only_old_schema_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.sqlite");
        Connection::open(&p)
            .unwrap()
            .execute_batch(
                "CREATE TABLE latency (model_sha256 TEXT, board_fingerprint TEXT, threads \
                 INTEGER, cores TEXT, input_shape TEXT, p50_ms REAL, report_json TEXT, \
                 measured_at INTEGER)",
            )
            .unwrap();
        let mut conn =
            Connection::open_with_flags(&p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert!(ensure_schema(&mut conn).is_err());
        assert_eq!(columns(&conn, "latency").unwrap().len(), 8);
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_age("3 days").is_err());
        assert!(parse_age("d").is_err());
    }
}
