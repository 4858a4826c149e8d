//! No leftovers, and nothing committed lost. A table write is bracketed by a marker object in
//! the table's folder (local or on an object store), put when the write starts:
//!
//! - a write that returns an error re-reads the table's log first: delta-rs can fail *after*
//!   the commit (writing a checkpoint, cleaning up old log files), so the files to remove are
//!   those written since the marker that the table's current version does not reference; a
//!   table that has no log was never created, and goes entirely;
//! - a write that was killed is cleaned up the same way by the next write of the table.
//!
//! Files written since the marker can only be referenced by a version committed since, so the
//! current version is the only one to ask. Times are the store's own (a file's modification
//! time, an object's `Last-Modified`), compared with the marker's: a file sharing the marker's
//! time is kept, so a coarse clock (S3 has seconds) may leave a file behind, never remove a file
//! of another write. Nothing is listed while writes succeed, so the guard costs the same on a
//! table of 10 files and of 10,000.

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::logstore::ObjectStoreRef;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

const MARKER: &str = "_strata_write_in_progress.json";

type IoResult<T> = std::result::Result<T, object_store::Error>;

/// A write in progress on one table.
#[derive(Debug)]
pub struct WriteGuard {
    /// The table's store, rooted at the table.
    store: ObjectStoreRef,
    /// The table's folder, on a local lake (removed whole when a new table fails).
    dir: Option<PathBuf>,
    started: DateTime<Utc>,
}

impl WriteGuard {
    /// Start a write on `table` (its current version when `exists`, else a table the write
    /// creates): clean up after a write that was killed, then mark this one's start.
    pub async fn begin(table: &DeltaTable, dir: Option<PathBuf>, exists: bool) -> IoResult<Self> {
        let store = table.object_store();
        let marker = Path::from(MARKER);
        match store.head(&marker).await {
            Ok(meta) => {
                let live = if exists {
                    Some(live_files(table)?)
                } else {
                    None
                };
                sweep(&store, dir.as_deref(), meta.last_modified, live.as_ref()).await?;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        store
            .put(
                &marker,
                PutPayload::from(std::process::id().to_string().into_bytes()),
            )
            .await?;
        let started = store.head(&marker).await?.last_modified;
        Ok(Self {
            store,
            dir,
            started,
        })
    }

    /// The write committed and nothing failed after: nothing to clean.
    pub async fn finish(self) {
        let _ = self.store.delete(&Path::from(MARKER)).await;
    }

    /// The write returned an error. `now` is the table as its log says it is now, re-read
    /// after the error (`None`: it has no log, so the write never created it). Removes what
    /// no committed version references. When the log could not be read, nothing is removed
    /// and the marker stays, so the next write recovers.
    pub async fn fail(self, now: std::result::Result<Option<&DeltaTable>, ()>) {
        let live = match now {
            Ok(Some(table)) => match live_files(table) {
                Ok(files) => Some(files),
                Err(_) => return,
            },
            Ok(None) => None,
            Err(()) => return,
        };
        if sweep(
            &self.store,
            self.dir.as_deref(),
            self.started,
            live.as_ref(),
        )
        .await
        .is_ok()
        {
            let _ = self.store.delete(&Path::from(MARKER)).await;
        }
    }
}

/// The data files of a table's loaded version, relative to the table's root.
fn live_files(table: &DeltaTable) -> IoResult<HashSet<Path>> {
    let snapshot = table.snapshot().map_err(|e| object_store::Error::Generic {
        store: "delta",
        source: Box::new(e),
    })?;
    Ok(snapshot
        .log_data()
        .into_iter()
        .map(|f| f.object_store_path())
        .collect())
}

/// Remove the files written after `since` that `live` does not reference. Without `live` (the
/// table has no log: it was never created) the table goes entirely.
async fn sweep(
    store: &ObjectStoreRef,
    dir: Option<&std::path::Path>,
    since: DateTime<Utc>,
    live: Option<&HashSet<Path>>,
) -> IoResult<()> {
    if live.is_none()
        && let Some(dir) = dir
    {
        return match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })
            }
            _ => Ok(()),
        };
    }
    let keep = |path: &Path, modified: DateTime<Utc>| {
        let p = path.as_ref();
        p.starts_with("_delta_log/")
            || p == MARKER
            || live.is_some_and(|l| modified <= since || l.contains(path))
    };
    match dir {
        // Local folders are walked directly: object stores hide files still being written
        // (`name#1`), and a killed write leaves exactly those.
        Some(dir) => {
            for (rel, modified) in local_files(dir) {
                if !keep(&Path::from(rel.as_str()), modified) {
                    match std::fs::remove_file(dir.join(&rel)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(object_store::Error::Generic {
                                store: "local",
                                source: Box::new(e),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        None => {
            let doomed: Vec<Path> = store
                .list(None)
                .try_filter(|m| futures::future::ready(!keep(&m.location, m.last_modified)))
                .map_ok(|m| m.location)
                .try_collect()
                .await?;
            for path in doomed {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if live.is_none() {
        let _ = store.delete(&Path::from(MARKER)).await;
    }
    Ok(())
}

/// Files under a local table folder, as (path relative to it with `/`, modification time).
fn local_files(dir: &std::path::Path) -> Vec<(String, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(std::result::Result::ok) {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if let (Ok(rel), Ok(modified)) = (path.strip_prefix(dir), meta.modified()) {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), DateTime::<Utc>::from(modified)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn table_at(dir: &std::path::Path) -> DeltaTable {
        std::fs::create_dir_all(dir).expect("dir");
        let url = Url::from_directory_path(dir).expect("url");
        deltalake::DeltaTableBuilder::from_url(url)
            .expect("builder")
            .build()
            .expect("table")
    }

    #[tokio::test]
    async fn a_table_killed_while_being_created_is_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("new");
        let table = table_at(&dir);
        let guard = WriteGuard::begin(&table, Some(dir.clone()), false)
            .await
            .expect("begin");
        std::fs::write(dir.join("part.parquet"), b"x").expect("part");
        std::mem::forget(guard);
        let next = WriteGuard::begin(&table, Some(dir.clone()), false)
            .await
            .expect("recover");
        assert!(!dir.join("part.parquet").exists());
        next.fail(Ok(None)).await;
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn an_unreadable_log_removes_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("t");
        let table = table_at(&dir);
        let guard = WriteGuard::begin(&table, Some(dir.clone()), false)
            .await
            .expect("begin");
        std::fs::write(dir.join("part.parquet"), b"x").expect("part");
        guard.fail(Err(())).await;
        assert!(dir.join("part.parquet").exists());
        assert!(dir.join(MARKER).exists(), "the next write recovers");
    }
}
