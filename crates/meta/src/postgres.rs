//! The store in PostgreSQL (`metadata: postgres://…` in a target), shared by every machine
//! working on the target: CI, a scheduler, people. Its tables live in a schema of their own
//! (one per target), with the same columns as the SQLite store's; the one-writer lock is a
//! PostgreSQL advisory lock, which the server releases when its holder's connection ends,
//! even when the holder is killed.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::db::{Conn, Connector, Pg, PgMessage};
use crate::{Error, MetaStore, Result};

/// The store's tables, as of the SQLite store's latest migration. `rowid` columns keep the
/// order rows were written in, as SQLite's implicit rowid does.
const PG_MIGRATIONS: &[&str] = &[r"
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
    rowid       BIGSERIAL,
    run_id      TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    target      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    args        TEXT NOT NULL
);
CREATE TABLE node_results (
    rowid         BIGSERIAL,
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    unique_id     TEXT NOT NULL,
    status        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    seconds       DOUBLE PRECISION NOT NULL,
    relation      TEXT,
    rows_affected BIGINT,
    message       TEXT,
    failures      BIGINT,
    sample        TEXT,
    PRIMARY KEY (run_id, unique_id)
);
CREATE INDEX node_results_by_node ON node_results(unique_id, started_at);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO settings (key, value) VALUES ('catalog_id', md5(random()::text || clock_timestamp()::text));
INSERT INTO settings (key, value) VALUES ('data_version', '0');
CREATE TABLE grants (
    database  TEXT NOT NULL,
    schema    TEXT NOT NULL,
    name      TEXT NOT NULL,
    privilege TEXT NOT NULL,
    grantee   TEXT NOT NULL,
    run_id    TEXT,
    PRIMARY KEY (database, schema, name, privilege, grantee)
);
CREATE TABLE ingest_loads (
    source    TEXT NOT NULL,
    version   BIGINT NOT NULL,
    replaced  BIGINT NOT NULL,
    loaded_at TEXT NOT NULL,
    rows      BIGINT,
    cursor    TEXT,
    PRIMARY KEY (source, version)
);
CREATE TABLE ingest_files (
    source   TEXT NOT NULL,
    version  BIGINT NOT NULL,
    path     TEXT NOT NULL,
    size     BIGINT NOT NULL,
    modified TEXT NOT NULL,
    PRIMARY KEY (source, version, path)
);
CREATE TABLE quality_metrics (
    node_id       TEXT NOT NULL,
    measure       TEXT NOT NULL,
    metric        TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    bucket_start  TEXT NOT NULL,
    bucket_end    TEXT NOT NULL,
    value         DOUBLE PRECISION,
    test_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    expected_low  DOUBLE PRECISION,
    expected_high DOUBLE PRECISION,
    anomalous     BIGINT,
    PRIMARY KEY (node_id, measure, metric, column_name, bucket_start)
);
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    scram         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE TABLE pipeline_runs (
    id             BIGSERIAL PRIMARY KEY,
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
    rowid       BIGSERIAL,
    run_id      BIGINT NOT NULL REFERENCES pipeline_runs(id),
    step        TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    exit_code   BIGINT,
    message     TEXT,
    log         TEXT,
    pid         BIGINT,
    PRIMARY KEY (run_id, step, attempt)
);
CREATE UNIQUE INDEX pipeline_runs_once ON pipeline_runs(pipeline, trigger, interval_start)
    WHERE trigger IN ('schedule', 'backfill');
CREATE TABLE pipeline_schedules (
    pipeline TEXT PRIMARY KEY,
    cursor   TEXT NOT NULL
);
CREATE TABLE pipeline_alerts (
    run_id  BIGINT NOT NULL REFERENCES pipeline_runs(id),
    event   TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (run_id, event)
);
-- What servers watch to pick up new table versions (SQLite's data_version): every change to
-- the catalog or the ingestion ledger moves it.
CREATE FUNCTION bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE settings SET value = (value::bigint + 1)::text WHERE key = 'data_version';
    RETURN NULL;
END $$;
CREATE TRIGGER relations_changed AFTER INSERT OR UPDATE OR DELETE ON relations
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version();
CREATE TRIGGER ingest_changed AFTER INSERT OR UPDATE OR DELETE ON ingest_loads
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version();
"];

/// A PostgreSQL identifier, quoted.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory lock key of a purpose (`target`, `scheduler`) in a store's schema.
pub(crate) fn lock_key(schema: &str, purpose: &str) -> String {
    format!("hashtext({})", text(&format!("strata.{schema}.{purpose}")))
}

impl MetaStore {
    /// Open (creating and migrating when needed) the store in the PostgreSQL schema `schema`
    /// of the database `connect` reaches; `display` names it in messages (never with a
    /// password).
    pub fn open_postgres(connect: &Connector, schema: &str, display: &str) -> Result<Self> {
        let open_err = |e: String| Error::Open {
            path: PathBuf::from(display),
            source: e.into(),
        };
        let pg = Pg::open(connect).map_err(open_err)?;
        let q = quote(schema);
        // One migrator at a time (another machine may open the store at the same moment).
        pg.run(format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); CREATE SCHEMA IF NOT EXISTS {q}; \
             SET search_path TO {q}; \
             CREATE TABLE IF NOT EXISTS strata_schema_version (version BIGINT NOT NULL); COMMIT;",
            lock_key(schema, "migrate")
        ))
        .map_err(|e| open_err(e.to_string()))?;
        let mut conn = Conn::Postgres(pg);
        conn.transaction(|tx| {
            tx.execute_batch(&format!(
                "SELECT pg_advisory_xact_lock({})",
                lock_key(schema, "migrate")
            ))?;
            let version: i64 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM strata_schema_version",
                    &[],
                )?
                .get(0)?;
            let supported = PG_MIGRATIONS.len() as i64;
            if version > supported {
                return Err(Error::TooNew {
                    path: PathBuf::from(display),
                    found: version,
                    supported,
                });
            }
            for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql)?;
                tx.execute_batch(&format!(
                    "DELETE FROM strata_schema_version; INSERT INTO strata_schema_version VALUES ({})",
                    i + 1
                ))?;
            }
            Ok(())
        })?;
        Ok(Self {
            path: PathBuf::from(display),
            conn: Mutex::new(conn),
        })
    }
}

/// One holder at a time of a target (or of its scheduler), across machines: an advisory lock
/// on a connection of its own, with the holder's description in the store's `locks` table.
pub(crate) struct PgLock {
    pg: Pg,
    key: String,
}

impl PgLock {
    /// Take the lock of `purpose` (`target`, `scheduler`) in the store's `schema`, waiting up
    /// to `timeout`; `on_wait` is told the holder once.
    pub(crate) fn acquire(
        connect: &Connector,
        (schema, purpose): (&str, &str),
        about: &str,
        timeout: std::time::Duration,
        on_wait: impl FnOnce(&str),
    ) -> std::result::Result<Self, LockFailure> {
        let pg = Pg::open(connect).map_err(LockFailure::Failed)?;
        let key = lock_key(schema, purpose);
        let started = std::time::Instant::now();
        let mut on_wait = Some(on_wait);
        loop {
            let taken = pg
                .run(format!("SELECT pg_try_advisory_lock({key})"))
                .map_err(|e| LockFailure::Failed(e.to_string()))?;
            if matches!(taken.first(), Some(PgMessage::Row(v)) if v.first().and_then(|x| x.as_deref()) == Some("t"))
            {
                break;
            }
            let holder = holder(&pg, schema, purpose);
            if started.elapsed() >= timeout {
                return Err(LockFailure::Busy {
                    holder,
                    waited: started.elapsed().as_secs(),
                });
            }
            if let Some(f) = on_wait.take() {
                f(&holder);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let q = quote(schema);
        pg.run(format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); CREATE SCHEMA IF NOT EXISTS {q}; \
             CREATE TABLE IF NOT EXISTS {q}.locks (purpose TEXT PRIMARY KEY, holder TEXT NOT NULL); \
             INSERT INTO {q}.locks (purpose, holder) VALUES ({}, {}) \
             ON CONFLICT (purpose) DO UPDATE SET holder = excluded.holder; COMMIT;",
            lock_key(schema, "migrate"),
            text(purpose),
            text(about),
        ))
        .map_err(|e| LockFailure::Failed(e.to_string()))?;
        Ok(Self { pg, key })
    }
}

/// Why a lock was not taken.
pub(crate) enum LockFailure {
    /// Another holder kept it for the whole wait.
    Busy { holder: String, waited: u64 },
    /// The server could not be reached or asked.
    Failed(String),
}

/// A text literal.
fn text(s: &str) -> String {
    crate::db::inline("?1", &[crate::db::Val::Text(s.into())])
}

/// Who holds a lock, as the holder described itself.
fn holder(pg: &Pg, schema: &str, purpose: &str) -> String {
    let asked = pg.run(format!(
        "SELECT holder FROM {}.locks WHERE purpose = {}",
        quote(schema),
        text(purpose)
    ));
    match asked.ok().as_deref() {
        Some([PgMessage::Row(v), ..]) => v
            .first()
            .cloned()
            .flatten()
            .unwrap_or_else(|| "another strata process".into()),
        _ => "another strata process".into(),
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        // Closing the connection releases it too; unlocking first makes it immediate.
        let _ = self
            .pg
            .run(format!("SELECT pg_advisory_unlock({})", self.key));
    }
}
