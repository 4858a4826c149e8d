//! Damaged Delta logs: a commit file that is empty or not JSON (a disk that filled up, a
//! copy cut short, a hand edit). delta-rs skips an empty commit silently, losing its rows, and
//! fails on a broken one with a parser message that names neither the table nor the file.
//! Every open goes through [`open_checked`]: a damaged log is reported with the table, the
//! file and the way back, and nothing is written on top of it.

use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::lake::TableLocation;
use crate::error::{Error, Hinted, Result};

/// Open the Delta table at `table` (`None` when there is none), refusing a damaged log.
pub(crate) async fn open_checked(table: &TableLocation) -> Result<Option<DeltaTable>> {
    let url = &table.url;
    match deltalake::open_table(url.clone()).await {
        Ok(loaded) => {
            let version = loaded.version().map(|v| v as i64);
            let commits = match &table.dir {
                // A local folder is read directly: a listing through the object store costs
                // more than the rest of opening a small table.
                Some(dir) => local_commits(&dir.join("_delta_log")),
                None => replayed_commits(loaded.object_store().as_ref()).await,
            };
            if let Some(problem) = empty_commit(commits, version) {
                return Err(damaged(table, problem));
            }
            Ok(Some(loaded))
        }
        Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
            Ok(None)
        }
        Err(e) => {
            let store = deltalake::DeltaTableBuilder::from_url(url.clone())
                .and_then(|b| b.build())
                .map(|t| t.object_store());
            match store {
                Ok(store) => match broken_commit(&store).await {
                    Some(problem) => Err(damaged(table, problem)),
                    None => Err(e.into()),
                },
                Err(_) => Err(e.into()),
            }
        }
    }
}

/// What is wrong with one commit file.
struct Problem {
    file: String,
    what: String,
}

fn damaged(table: &TableLocation, p: Problem) -> Error {
    let name = table.display.rsplit('.').next().unwrap_or(&table.display);
    let file = match &table.dir {
        Some(dir) => dir.join(&p.file).display().to_string(),
        None => format!("{}{}", table.url, p.file),
    };
    Error::DamagedLog(Hinted {
        message: format!(
            "table {} has a damaged Delta log: {file} {}; the table is neither read nor written until it is repaired",
            table.display, p.what
        ),
        hint: Some(format!(
            "rebuild it from its inputs with `strata run --select {name} --full-refresh` (the damaged table and its history are replaced), or put back that file from a backup"
        )),
    })
}

/// The commit files after the newest checkpoint (those a reader replays), with their sizes,
/// oldest first, from `(file name, path, size)` entries of a log folder.
fn after_checkpoint(
    entries: impl Iterator<Item = (String, ObjectPath, u64)>,
) -> Vec<(i64, ObjectPath, u64)> {
    let mut checkpoint = -1;
    let mut commits = Vec::new();
    for (name, path, size) in entries {
        let version = name.split('.').next().and_then(|v| v.parse::<i64>().ok());
        match version {
            Some(v) if name.contains(".checkpoint") => checkpoint = checkpoint.max(v),
            Some(v) if name.ends_with(".json") && name.len() == 25 => commits.push((v, path, size)),
            _ => {}
        }
    }
    commits.retain(|(v, _, _)| *v > checkpoint);
    commits.sort_by_key(|(v, _, _)| *v);
    commits
}

/// [`after_checkpoint`] through the object store.
async fn replayed_commits(store: &dyn ObjectStore) -> Vec<(i64, ObjectPath, u64)> {
    let prefix = ObjectPath::from("_delta_log");
    let Ok(entries) = store
        .list(Some(&prefix))
        .try_collect::<Vec<object_store::ObjectMeta>>()
        .await
    else {
        return Vec::new();
    };
    after_checkpoint(entries.into_iter().filter_map(|m| {
        let name = m.location.filename()?.to_string();
        Some((name, m.location, m.size))
    }))
}

/// [`after_checkpoint`] of a local log folder.
fn local_commits(log: &std::path::Path) -> Vec<(i64, ObjectPath, u64)> {
    let Ok(dir) = std::fs::read_dir(log) else {
        return Vec::new();
    };
    after_checkpoint(dir.flatten().filter_map(|e| {
        let name = e.file_name().into_string().ok()?;
        let size = e.metadata().ok()?.len();
        let path = ObjectPath::from(format!("_delta_log/{name}"));
        Some((name, path, size))
    }))
}

/// An empty commit among those the loaded version replays.
fn empty_commit(commits: Vec<(i64, ObjectPath, u64)>, loaded: Option<i64>) -> Option<Problem> {
    let loaded = loaded?;
    commits
        .into_iter()
        .find(|(v, _, size)| *v <= loaded && *size == 0)
        .map(|(_, path, _)| Problem {
            file: path.to_string(),
            what: "is empty (0 bytes)".into(),
        })
}

/// A commit that is empty or holds a line that is not JSON.
async fn broken_commit(store: &dyn ObjectStore) -> Option<Problem> {
    for (_, path, size) in replayed_commits(store).await {
        if size == 0 {
            return Some(Problem {
                file: path.to_string(),
                what: "is empty (0 bytes)".into(),
            });
        }
        let Ok(got) = store.get(&path).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
                return Some(Problem {
                    file: path.to_string(),
                    what: format!("is not valid JSON at line {} ({e})", i + 1),
                });
            }
        }
    }
    None
}
