//! Strata's metadata store: the catalog of relations (tables and views) of one target, and
//! the history of runs and of each node's result.
//!
//! One SQLite file per target (`<lake>/metadata.sqlite` by default), so `dev` never touches
//! `prod`. The schema is migrated forward on open; writes are short transactions in WAL mode,
//! so readers (a dashboard, a second CLI) never wait for a long run.

mod db;
mod ingest;
mod lock;
pub mod pipelines;
mod postgres;
mod quality;
mod users;

pub use db::Connector;
pub use ingest::{IngestLoad, IngestedFile};
pub use lock::{LockError, TargetLock};
pub use quality::{MetricPoint, TestOutcome};
pub use users::{UserRecord, UserSecrets};

use db::{Conn, vals};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;
use serde::Serialize;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened or created.
    #[error("cannot open the metadata store {}: {source}", path.display())]
    Open {
        /// The SQLite file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file is not a SQLite database, or a damaged one.
    #[error("the catalog {} is damaged ({source}); the tables in the lake are intact", path.display())]
    Damaged {
        /// The SQLite file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A query on the store failed.
    #[error("metadata store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store was written by a newer Strata.
    #[error(
        "the metadata store {} has schema version {found}, newer than this Strata understands ({supported}); upgrade Strata",
        path.display()
    )]
    TooNew {
        /// The SQLite file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Newest version known.
        supported: i64,
    },
    /// A poisoned lock (a thread panicked while writing).
    #[error("metadata store lock poisoned")]
    Poisoned,
    /// A statement on a PostgreSQL store failed, or the connection did.
    #[error("metadata store (PostgreSQL): {0}")]
    Postgres(String),
    /// A value read back was not of the expected type.
    #[error("metadata store: {0}")]
    Value(String),
}

/// What kind of relation a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationKind {
    /// A Delta table at `location`.
    Table,
    /// A view defined by `sql`.
    View,
}

impl RelationKind {
    fn as_str(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::View => "view",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "view" {
            RelationKind::View
        } else {
            RelationKind::Table
        }
    }
}

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelationRecord {
    /// Catalog name.
    pub database: String,
    /// Schema name.
    pub schema: String,
    /// Table or view name.
    pub name: String,
    /// Table or view.
    pub kind: RelationKind,
    /// For tables: the Delta table's folder relative to the target's lake (`schema/name/`,
    /// URL-encoded).
    pub location: Option<String>,
    /// For views: the defining SQL.
    pub sql: Option<String>,
    /// The node that built it.
    pub unique_id: Option<String>,
    /// The run that last built it.
    pub run_id: Option<String>,
    /// When it was last built (RFC 3339).
    pub updated_at: String,
}

/// A run of a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// The run's id (the invocation id).
    pub run_id: String,
    /// `run`, `build`, ...
    pub command: String,
    /// The target's name.
    pub target: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// `running`, `success`, `error`.
    pub status: String,
    /// The command line.
    pub args: String,
}

/// The result of one node in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeResultRecord {
    /// The run.
    pub run_id: String,
    /// The node.
    pub unique_id: String,
    /// `success`, `error`, `skipped`.
    pub status: String,
    /// When it started.
    pub started_at: String,
    /// Seconds it took.
    pub seconds: f64,
    /// The relation it built.
    pub relation: Option<String>,
    /// Rows written, when known.
    pub rows_affected: Option<i64>,
    /// The error or status message.
    pub message: Option<String>,
    /// For tests: the failing rows (or anomalous values) found.
    pub failures: Option<i64>,
    /// For tests that found rows: the first few, as a JSON array of objects.
    pub sample: Option<String>,
}

const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE relations (
    database   TEXT NOT NULL,
    schema     TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('table', 'view')),
    location   TEXT,
    sql        TEXT,
    unique_id  TEXT,
    run_id     TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (database, schema, name)
);
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    target      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    args        TEXT NOT NULL
);
CREATE TABLE node_results (
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    unique_id     TEXT NOT NULL,
    status        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    seconds       REAL NOT NULL,
    relation      TEXT,
    rows_affected INTEGER,
    message       TEXT,
    PRIMARY KEY (run_id, unique_id)
);
CREATE INDEX node_results_by_node ON node_results(unique_id, started_at);
",
    // Table locations are relative to the target's lake, so a lake copied or moved with its
    // catalog finds its own tables (absolute URLs pointed at the original place).
    r"
UPDATE relations SET location = CASE
    WHEN schema NOT GLOB '*[^A-Za-z0-9_.-]*' AND name NOT GLOB '*[^A-Za-z0-9_.-]*'
    THEN schema || '/' || name || '/'
    END
WHERE kind = 'table';
",
    // A store's identity: a lake records the store that writes it, and refuses another.
    r"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO settings (key, value) VALUES ('catalog_id', lower(hex(randomblob(16))));
",
    // The privileges a relation's `grants` config gives, as of its last build.
    r"
CREATE TABLE grants (
    database  TEXT NOT NULL,
    schema    TEXT NOT NULL,
    name      TEXT NOT NULL,
    privilege TEXT NOT NULL,
    grantee   TEXT NOT NULL,
    run_id    TEXT,
    PRIMARY KEY (database, schema, name, privilege, grantee)
);
",
    // What ingestion loaded: each load of a source table (its Delta transaction version, and
    // whether it replaced the table) and the files it read.
    r"
CREATE TABLE ingest_loads (
    source    TEXT NOT NULL,
    version   INTEGER NOT NULL,
    replaced  INTEGER NOT NULL,
    loaded_at TEXT NOT NULL,
    rows      INTEGER,
    cursor    TEXT,
    PRIMARY KEY (source, version)
);
CREATE TABLE ingest_files (
    source   TEXT NOT NULL,
    version  INTEGER NOT NULL,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    modified TEXT NOT NULL,
    PRIMARY KEY (source, version, path)
);
",
    // Data quality: each test's failures, and the metrics anomaly tests measure, per time
    // bucket (or per run, for metrics of a whole table), with the range each was judged by.
    r"
ALTER TABLE node_results ADD COLUMN failures INTEGER;
ALTER TABLE node_results ADD COLUMN sample TEXT;
CREATE TABLE quality_metrics (
    node_id       TEXT NOT NULL,
    measure       TEXT NOT NULL,
    metric        TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    bucket_start  TEXT NOT NULL,
    bucket_end    TEXT NOT NULL,
    value         REAL,
    test_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    expected_low  REAL,
    expected_high REAL,
    anomalous     INTEGER,
    PRIMARY KEY (node_id, measure, metric, column_name, bucket_start)
);
",
    // People and services allowed to read what is served: an argon2 hash for logins and a
    // SCRAM-SHA-256 verifier for the Postgres wire (never the password), and a role.
    r"
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    scram         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
",
    // Pipelines: each run (why, the data interval it covers, the process running it) and each
    // attempt of each of its steps.
    r"
CREATE TABLE pipeline_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline       TEXT NOT NULL,
    trigger        TEXT NOT NULL,
    interval_start TEXT,
    interval_end   TEXT,
    status         TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    owner          TEXT NOT NULL
);
CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs(pipeline, id);
CREATE TABLE pipeline_steps (
    run_id      INTEGER NOT NULL REFERENCES pipeline_runs(id),
    step        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    exit_code   INTEGER,
    message     TEXT,
    log         TEXT,
    pid         INTEGER,
    PRIMARY KEY (run_id, step, attempt)
);
-- A scheduled interval runs once, whatever happens to the scheduler.
CREATE UNIQUE INDEX pipeline_runs_once ON pipeline_runs(pipeline, trigger, interval_start)
    WHERE trigger IN ('schedule', 'backfill');
-- Where each pipeline's schedule has got to: the end of the last interval queued.
CREATE TABLE pipeline_schedules (
    pipeline TEXT PRIMARY KEY,
    cursor   TEXT NOT NULL
);
-- Alerts sent, one per run and event.
CREATE TABLE pipeline_alerts (
    run_id  INTEGER NOT NULL REFERENCES pipeline_runs(id),
    event   TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (run_id, event)
);
",
];

/// The metadata store of one target.
#[derive(Debug)]
pub struct MetaStore {
    path: PathBuf,
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Sqlite(_) => "SQLite",
            Conn::Postgres(_) => "PostgreSQL",
        })
    }
}

impl MetaStore {
    /// Open (creating and migrating when needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Open {
            path: path.to_path_buf(),
            source: e,
        };
        if path.is_dir() {
            return Err(open_err(Box::new(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "Is a directory",
            ))));
        }
        if let Some(parent) = path.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            return match path.is_file() {
                true => Self::open_read_only(path),
                false => Err(open_err(Box::new(e))),
            };
        }
        let damaged = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                Error::Damaged {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
            _ => open_err(Box::new(e)),
        };
        let conn = Connection::open(path).map_err(damaged)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        if let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            // A catalog on a read-only file system is still read (show, history, ls).
            return match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::CannotOpen) => {
                    drop(conn);
                    Self::open_read_only(path)
                }
                _ => Err(damaged(e)),
            };
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let store = Self {
            path: path.to_path_buf(),
            conn: Mutex::new(Conn::Sqlite(conn)),
        };
        store.migrate().map_err(|e| match e {
            Error::Sqlite(e) => damaged(e),
            other => other,
        })?;
        Ok(store)
    }

    /// Open an existing store for reading only, as it is (a catalog on read-only media): no
    /// migration, no journal files. Writes fail.
    fn open_read_only(path: &Path) -> Result<Self> {
        use rusqlite::OpenFlags;
        let open_err = |e: rusqlite::Error| Error::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let escaped = path
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23");
        let uri = format!("file:{escaped}?immutable=1");
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version != MIGRATIONS.len() as i64 {
            return Err(Error::Open {
                path: path.to_path_buf(),
                source: format!(
                    "Read-only file system: the catalog has schema version {version} and needs migrating to {}, which cannot be written here",
                    MIGRATIONS.len()
                )
                .into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(Conn::Sqlite(conn)),
        })
    }

    /// An in-memory store, for tests and one-off sessions.
    pub fn in_memory() -> Result<Self> {
        let store = Self {
            path: PathBuf::from(":memory:"),
            conn: Mutex::new(Conn::Sqlite(Connection::open_in_memory()?)),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The SQLite file (for a PostgreSQL store, its server and schema, for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store is in PostgreSQL (shared by several machines).
    pub fn is_shared(&self) -> bool {
        matches!(
            &*self.conn.lock().unwrap_or_else(|e| e.into_inner()),
            Conn::Postgres(_)
        )
    }

    /// A number that changes whenever another connection (another `strata` process) has
    /// changed the store: a build, an ingestion. Servers compare it to pick up new versions.
    pub fn data_version(&self) -> Result<i64> {
        let mut conn = self.conn()?;
        let sql = match &*conn {
            Conn::Sqlite(_) => "PRAGMA data_version",
            // Every write bumps the store's change counter (see `postgres.rs`).
            Conn::Postgres(_) => {
                "SELECT CAST(value AS BIGINT) FROM settings WHERE key = 'data_version'"
            }
        };
        conn.query_one(sql, &[])?.get(0)
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Conn>> {
        self.conn.lock().map_err(|_| Error::Poisoned)
    }

    fn migrate(&self) -> Result<()> {
        let mut guard = self.conn()?;
        let conn = match &mut *guard {
            Conn::Sqlite(c) => c,
            Conn::Postgres(_) => return Ok(()),
        };
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(Error::TooNew {
                path: self.path.clone(),
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Take over an identity (rebuilding a lost or damaged catalog for a lake that records
    /// the old one).
    pub fn set_catalog_id(&self, id: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE settings SET value = ?1 WHERE key = 'catalog_id'",
            vals![id],
        )?;
        Ok(())
    }

    /// This store's identity, made when it was created: the lake it writes records it, so a
    /// second store (another machine's, a lost and recreated one) cannot write the same lake
    /// unnoticed.
    pub fn catalog_id(&self) -> Result<String> {
        self.conn()?
            .query_one("SELECT value FROM settings WHERE key = 'catalog_id'", &[])?
            .get(0)
    }

    /// Make `grants` ((privilege, grantee) pairs) the privileges on a relation, replacing
    /// what an earlier build granted (as dbt revokes what the config no longer lists).
    pub fn set_grants(
        &self,
        database: &str,
        schema: &str,
        name: &str,
        grants: &[(String, String)],
        run_id: &str,
    ) -> Result<()> {
        self.conn()?.transaction(|tx| {
            tx.execute(
                "DELETE FROM grants WHERE database = ?1 AND schema = ?2 AND name = ?3",
                vals![database, schema, name],
            )?;
            for (privilege, grantee) in grants {
                tx.execute(
                    "INSERT INTO grants (database, schema, name, privilege, grantee, run_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    vals![database, schema, name, privilege, grantee, run_id],
                )?;
            }
            Ok(())
        })
    }

    /// The privileges on a relation, as (privilege, grantee), sorted.
    pub fn grants(
        &self,
        database: &str,
        schema: &str,
        name: &str,
    ) -> Result<Vec<(String, String)>> {
        self.conn()?
            .query(
                "SELECT privilege, grantee FROM grants WHERE database = ?1 AND schema = ?2 AND name = ?3
                 ORDER BY privilege, grantee",
                vals![database, schema, name],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }

    /// Insert or replace a catalog entry.
    pub fn upsert_relation(&self, r: &RelationRecord) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO relations (database, schema, name, kind, location, sql, unique_id, run_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (database, schema, name) DO UPDATE SET
               kind = excluded.kind, location = excluded.location, sql = excluded.sql,
               unique_id = excluded.unique_id, run_id = excluded.run_id, updated_at = excluded.updated_at",
            vals![
                r.database,
                r.schema,
                r.name,
                r.kind.as_str(),
                r.location,
                r.sql,
                r.unique_id,
                r.run_id,
                r.updated_at
            ],
        )?;
        Ok(())
    }

    /// Remove a catalog entry; returns whether it existed.
    pub fn drop_relation(&self, database: &str, schema: &str, name: &str) -> Result<bool> {
        let n = self.conn()?.execute(
            "DELETE FROM relations WHERE database = ?1 AND schema = ?2 AND name = ?3",
            vals![database, schema, name],
        )?;
        Ok(n > 0)
    }

    /// One catalog entry.
    pub fn relation(
        &self,
        database: &str,
        schema: &str,
        name: &str,
    ) -> Result<Option<RelationRecord>> {
        self.conn()?
            .query_opt(
                "SELECT database, schema, name, kind, location, sql, unique_id, run_id, updated_at
                 FROM relations WHERE database = ?1 AND schema = ?2 AND name = ?3",
                vals![database, schema, name],
            )?
            .as_ref()
            .map(row_to_relation)
            .transpose()
    }

    /// Catalog entries of a database (and schema), ordered by schema and name.
    pub fn relations(&self, database: &str, schema: Option<&str>) -> Result<Vec<RelationRecord>> {
        self.conn()?
            .query(
                "SELECT database, schema, name, kind, location, sql, unique_id, run_id, updated_at
                 FROM relations WHERE database = ?1 AND (?2 IS NULL OR schema = ?2)
                 ORDER BY schema, name",
                vals![database, schema],
            )?
            .iter()
            .map(row_to_relation)
            .collect()
    }

    /// Schemas holding at least one relation in `database`.
    pub fn schemas(&self, database: &str) -> Result<Vec<String>> {
        self.conn()?
            .query(
                "SELECT DISTINCT schema FROM relations WHERE database = ?1 ORDER BY schema",
                vals![database],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Record the start of a run.
    pub fn start_run(&self, run: &RunRecord) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO runs (run_id, command, target, started_at, finished_at, status, args)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            vals![
                run.run_id,
                run.command,
                run.target,
                run.started_at,
                run.finished_at,
                run.status,
                run.args
            ],
        )?;
        Ok(())
    }

    /// Record the end of a run.
    pub fn finish_run(&self, run_id: &str, status: &str, finished_at: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3 WHERE run_id = ?1",
            vals![run_id, status, finished_at],
        )?;
        Ok(())
    }

    /// Mark runs of `commands` still `running` as `interrupted`: called by a writer holding the
    /// target's lock, so no such run can still be going (its process was killed). Returns how
    /// many were marked.
    pub fn mark_interrupted(&self, commands: &[&str], finished_at: &str) -> Result<usize> {
        let mut conn = self.conn()?;
        let mut n = 0;
        for c in commands {
            n += conn.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ?2 WHERE status = 'running' AND command = ?1",
                vals![c, finished_at],
            )?;
        }
        Ok(n)
    }

    /// Record one node's result.
    pub fn record_node(&self, r: &NodeResultRecord) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO node_results
               (run_id, unique_id, status, started_at, seconds, relation, rows_affected, message,
                failures, sample)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (run_id, unique_id) DO UPDATE SET
               status = excluded.status, started_at = excluded.started_at,
               seconds = excluded.seconds, relation = excluded.relation,
               rows_affected = excluded.rows_affected, message = excluded.message,
               failures = excluded.failures, sample = excluded.sample",
            vals![
                r.run_id,
                r.unique_id,
                r.status,
                r.started_at,
                r.seconds,
                r.relation,
                r.rows_affected,
                r.message,
                r.failures,
                r.sample
            ],
        )?;
        Ok(())
    }

    /// The most recent runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.conn()?
            .query(
                "SELECT run_id, command, target, started_at, finished_at, status, args
                 FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1",
                vals![limit],
            )?
            .iter()
            .map(|r| {
                Ok(RunRecord {
                    run_id: r.get(0)?,
                    command: r.get(1)?,
                    target: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    status: r.get(5)?,
                    args: r.get(6)?,
                })
            })
            .collect()
    }

    /// The node results of a run, in the order they finished.
    pub fn node_results(&self, run_id: &str) -> Result<Vec<NodeResultRecord>> {
        self.conn()?
            .query(
                "SELECT run_id, unique_id, status, started_at, seconds, relation, rows_affected,
                        message, failures, sample
                 FROM node_results WHERE run_id = ?1 ORDER BY rowid",
                vals![run_id],
            )?
            .iter()
            .map(|r| {
                Ok(NodeResultRecord {
                    run_id: r.get(0)?,
                    unique_id: r.get(1)?,
                    status: r.get(2)?,
                    started_at: r.get(3)?,
                    seconds: r.get(4)?,
                    relation: r.get(5)?,
                    rows_affected: r.get(6)?,
                    message: r.get(7)?,
                    failures: r.get(8)?,
                    sample: r.get(9)?,
                })
            })
            .collect()
    }
}

fn row_to_relation(r: &db::Row) -> Result<RelationRecord> {
    let kind: String = r.get(3)?;
    Ok(RelationRecord {
        database: r.get(0)?,
        schema: r.get(1)?,
        name: r.get(2)?,
        kind: RelationKind::parse(&kind),
        location: r.get(4)?,
        sql: r.get(5)?,
        unique_id: r.get(6)?,
        run_id: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str) -> RelationRecord {
        RelationRecord {
            database: "strata".into(),
            schema: "main".into(),
            name: name.into(),
            kind: RelationKind::View,
            location: None,
            sql: Some("select 1".into()),
            unique_id: Some(format!("model.p.{name}")),
            run_id: Some("r1".into()),
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn absolute_table_locations_become_relative_to_the_lake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.sqlite");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("v1");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO relations VALUES ('db', 'main', 'orders', 'table', 'file:///old/place/main/orders/', NULL, NULL, NULL, 'now');
                 INSERT INTO relations VALUES ('db', 'main', 'odd name', 'table', 'file:///old/place/main/odd%20name/', NULL, NULL, NULL, 'now');
                 INSERT INTO relations VALUES ('db', 'main', 'v', 'view', NULL, 'select 1', NULL, NULL, 'now');",
            )
            .expect("rows");
        }
        let store = MetaStore::open(&path).expect("migrate");
        let location = |n: &str| {
            store
                .relation("db", "main", n)
                .expect("get")
                .expect("row")
                .location
        };
        assert_eq!(location("orders").as_deref(), Some("main/orders/"));
        assert_eq!(location("odd name"), None);
        assert_eq!(location("v"), None);
        let id = store.catalog_id().expect("id");
        assert_eq!(id.len(), 32);
        drop(store);
        assert_eq!(
            MetaStore::open(&path)
                .expect("reopen")
                .catalog_id()
                .expect("id"),
            id
        );
        let other = MetaStore::in_memory().expect("other");
        assert_ne!(other.catalog_id().expect("id"), id);
    }

    #[test]
    fn relations_survive_reopening_and_upsert_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/meta.sqlite");
        {
            let store = MetaStore::open(&path).expect("open");
            store.upsert_relation(&view("a")).expect("insert");
            let mut b = view("a");
            b.kind = RelationKind::Table;
            b.location = Some("main/a/".into());
            b.sql = None;
            store.upsert_relation(&b).expect("replace");
        }
        let store = MetaStore::open(&path).expect("reopen");
        let a = store
            .relation("strata", "main", "a")
            .expect("get")
            .expect("exists");
        assert_eq!(a.kind, RelationKind::Table);
        assert_eq!(store.relations("strata", None).expect("list").len(), 1);
        assert_eq!(store.schemas("strata").expect("schemas"), vec!["main"]);
        assert!(store.drop_relation("strata", "main", "a").expect("drop"));
        assert!(
            store
                .relation("strata", "main", "a")
                .expect("get")
                .is_none()
        );
    }

    #[test]
    fn runs_and_node_results_are_kept() {
        let store = MetaStore::in_memory().expect("open");
        store
            .start_run(&RunRecord {
                run_id: "r1".into(),
                command: "run".into(),
                target: "dev".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                finished_at: None,
                status: "running".into(),
                args: "strata run".into(),
            })
            .expect("start");
        store
            .record_node(&NodeResultRecord {
                run_id: "r1".into(),
                unique_id: "model.p.a".into(),
                status: "success".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                seconds: 0.5,
                relation: Some("\"strata\".\"main\".\"a\"".into()),
                rows_affected: Some(3),
                message: None,
                failures: None,
                sample: None,
            })
            .expect("node");
        store
            .finish_run("r1", "success", "2026-01-01T00:00:01Z")
            .expect("finish");
        let runs = store.runs(10).expect("runs");
        assert_eq!(runs[0].status, "success");
        assert_eq!(
            store.node_results("r1").expect("nodes")[0].rows_affected,
            Some(3)
        );
    }
}
