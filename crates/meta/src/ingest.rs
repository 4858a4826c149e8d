//! The ingestion ledger: each load of a source table and the files it read.
//!
//! A load is numbered like the Delta transaction (`txn`) its commit carries; the ledger rows of
//! a load are written before that commit. The commit is the only point of truth: rows of a
//! load numbered above the table's committed transaction never committed (the process died
//! in between), and are dropped when the ledger is next read. So a file is "loaded" exactly
//! when the commit holding its rows is in the table.

use serde::Serialize;

use crate::db::vals;
use crate::{MetaStore, Result};

/// A file a load read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IngestedFile {
    /// Its path or URL, as listed.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time (RFC 3339) or ETag.
    pub modified: String,
}

/// One load of a source table.
#[derive(Debug, Clone, Serialize)]
pub struct IngestLoad {
    /// Its number (the Delta transaction version of its commit).
    pub version: i64,
    /// Whether it replaced the table (else it added rows).
    pub replaced: bool,
    /// When it committed.
    pub loaded_at: String,
    /// Rows it wrote.
    pub rows: Option<u64>,
}

impl MetaStore {
    /// The files in the table of `source` as of its committed load `committed`: those read by
    /// loads since its last replacing load. Ledger rows of loads above `committed` (which never
    /// committed) are dropped first.
    pub fn ingested_files(&self, source: &str, committed: i64) -> Result<Vec<IngestedFile>> {
        self.conn()?.transaction(|tx| {
            tx.execute(
                "DELETE FROM ingest_files WHERE source = ?1 AND version > ?2",
                vals![source, committed],
            )?;
            tx.execute(
                "DELETE FROM ingest_loads WHERE source = ?1 AND version > ?2",
                vals![source, committed],
            )?;
            let base: i64 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM ingest_loads
                     WHERE source = ?1 AND replaced = 1 AND version <= ?2",
                    vals![source, committed],
                )?
                .get(0)?;
            tx.query(
                "SELECT path, size, modified FROM ingest_files
                 WHERE source = ?1 AND version >= ?2 AND version <= ?3 ORDER BY version, path",
                vals![source, base, committed],
            )?
            .iter()
            .map(|r| {
                Ok(IngestedFile {
                    path: r.get(0)?,
                    size: r.get(1)?,
                    modified: r.get(2)?,
                })
            })
            .collect()
        })
    }

    /// Record load `version` of `source`, the files it reads and the greatest incremental
    /// cursor value it read, before its commit.
    pub fn record_ingest_load(
        &self,
        source: &str,
        version: i64,
        replaced: bool,
        (files, cursor): (&[IngestedFile], Option<&str>),
        loaded_at: &str,
    ) -> Result<()> {
        self.conn()?.transaction(|tx| {
            tx.execute(
                "INSERT INTO ingest_loads (source, version, replaced, loaded_at, rows, cursor)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)
                 ON CONFLICT (source, version) DO UPDATE SET replaced = excluded.replaced,
                   loaded_at = excluded.loaded_at, rows = NULL, cursor = excluded.cursor",
                vals![source, version, replaced, loaded_at, cursor],
            )?;
            for f in files {
                tx.execute(
                    "INSERT INTO ingest_files (source, version, path, size, modified)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (source, version, path) DO UPDATE SET size = excluded.size,
                       modified = excluded.modified",
                    vals![source, version, f.path, f.size, f.modified],
                )?;
            }
            Ok(())
        })
    }

    /// The incremental cursor of the last committed load of `source` that has one, since its
    /// last replacing load.
    pub fn ingest_cursor(&self, source: &str, committed: i64) -> Result<Option<String>> {
        self.conn()?
            .query_opt(
                "SELECT cursor FROM ingest_loads
                 WHERE source = ?1 AND version <= ?2 AND cursor IS NOT NULL
                 ORDER BY version DESC LIMIT 1",
                vals![source, committed],
            )?
            .map(|r| r.get(0))
            .transpose()
    }

    /// After its commit: the rows load `version` of `source` wrote.
    pub fn finish_ingest_load(&self, source: &str, version: i64, rows: Option<u64>) -> Result<()> {
        self.conn()?.execute(
            "UPDATE ingest_loads SET rows = ?3 WHERE source = ?1 AND version = ?2",
            vals![source, version, rows],
        )?;
        Ok(())
    }

    /// The last committed load of `source`, when any (`committed` as for [`Self::ingested_files`]).
    pub fn last_ingest_load(&self, source: &str, committed: i64) -> Result<Option<IngestLoad>> {
        self.conn()?
            .query_opt(
                "SELECT version, replaced, loaded_at, rows FROM ingest_loads
                 WHERE source = ?1 AND version <= ?2 ORDER BY version DESC LIMIT 1",
                vals![source, committed],
            )?
            .map(|r| {
                Ok(IngestLoad {
                    version: r.get(0)?,
                    replaced: r.get(1)?,
                    loaded_at: r.get(2)?,
                    rows: r.get(3)?,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> IngestedFile {
        IngestedFile {
            path: path.into(),
            size: 10,
            modified: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_ledger_follows_the_committed_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetaStore::open(&dir.path().join("m.sqlite")).expect("open");
        let at = "2026-01-01T00:00:00Z";
        store
            .record_ingest_load("s", 1, false, (&[file("a")], None), at)
            .expect("load 1");
        store
            .record_ingest_load("s", 2, false, (&[file("b")], None), at)
            .expect("load 2");
        // Load 2 never committed: it is forgotten.
        assert_eq!(
            store.ingested_files("s", 1).expect("files"),
            vec![file("a")]
        );
        assert_eq!(
            store.ingested_files("s", 2).expect("files"),
            vec![file("a")]
        );
        store
            .record_ingest_load("s", 2, false, (&[file("b")], None), at)
            .expect("load 2 again");
        assert_eq!(
            store.ingested_files("s", 2).expect("files"),
            vec![file("a"), file("b")]
        );
        // A replacing load starts afresh.
        store
            .record_ingest_load("s", 3, true, (&[file("c")], None), at)
            .expect("load 3");
        assert_eq!(
            store.ingested_files("s", 3).expect("files"),
            vec![file("c")]
        );
        assert_eq!(
            store
                .last_ingest_load("s", 3)
                .expect("last")
                .map(|l| l.version),
            Some(3)
        );
    }
}
