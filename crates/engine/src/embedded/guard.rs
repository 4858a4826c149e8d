//! No leftovers: a table write on a local lake is bracketed by a marker file listing the
//! files the table folder held before. A write that fails removes what it added; a write that
//! was killed is cleaned up by the next build of the same table, which removes every file that
//! is neither in that list nor part of the table's current version.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use url::Url;

const MARKER: &str = "_strata_write_in_progress.json";

/// Files under a table folder, except the Delta log and the marker.
fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(std::result::Result::ok) {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if p.file_name().is_some_and(|n| n != "_delta_log") {
                    stack.push(p);
                }
            } else if p.file_name().is_some_and(|n| n != MARKER) {
                out.push(p);
            }
        }
    }
    out
}

fn has_log(dir: &Path) -> bool {
    dir.join("_delta_log").is_dir()
}

/// A write in progress on one table folder.
#[derive(Debug)]
pub struct WriteGuard {
    dir: PathBuf,
    existed: bool,
    before: HashSet<PathBuf>,
}

impl WriteGuard {
    /// Start a write: recover from an interrupted one, then record what is there now.
    ///
    /// `live_files` lists the files of the table's current version (empty for a new table).
    pub fn begin(dir: &Path, live_files: &[String]) -> std::io::Result<Self> {
        let marker = dir.join(MARKER);
        if marker.is_file() {
            recover(dir, &marker, live_files)?;
        }
        let existed = has_log(dir);
        std::fs::create_dir_all(dir)?;
        let before: HashSet<PathBuf> = list_files(dir).into_iter().collect();
        let listing: Vec<String> = before
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        std::fs::write(&marker, serde_json::to_vec(&listing).unwrap_or_default())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            existed,
            before,
        })
    }

    /// The write committed: nothing to clean.
    pub fn finish(self) {
        let _ = std::fs::remove_file(self.dir.join(MARKER));
    }

    /// The write failed before committing: remove what it added.
    pub fn abort(self) {
        if !self.existed {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        for f in list_files(&self.dir) {
            if !self.before.contains(&f) {
                let _ = std::fs::remove_file(&f);
            }
        }
        let _ = std::fs::remove_file(self.dir.join(MARKER));
    }
}

/// Clean up after a write that was killed: keep what was there before and what the current
/// version references (the write may have committed just before it was killed).
fn recover(dir: &Path, marker: &Path, live_files: &[String]) -> std::io::Result<()> {
    if !has_log(dir) {
        // The table was being created and never committed.
        return std::fs::remove_dir_all(dir);
    }
    let before: HashSet<PathBuf> = std::fs::read(marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let live: HashSet<PathBuf> = live_files
        .iter()
        .filter_map(|u| Url::parse(u).ok()?.to_file_path().ok())
        .collect();
    for f in list_files(dir) {
        if !before.contains(&f) && !live.contains(&f) {
            std::fs::remove_file(&f)?;
        }
    }
    std::fs::remove_file(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_writes_are_cleaned_but_live_files_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("t");
        std::fs::create_dir_all(dir.join("_delta_log")).expect("log");
        std::fs::write(dir.join("old.parquet"), b"old").expect("old");
        let guard = WriteGuard::begin(&dir, &[]).expect("begin");
        // The process dies here, after writing two files and committing one of them.
        std::fs::write(dir.join("orphan.parquet"), b"x").expect("orphan");
        std::fs::write(dir.join("committed.parquet"), b"y").expect("committed");
        std::mem::forget(guard);
        let live = Url::from_file_path(dir.join("committed.parquet"))
            .expect("url")
            .to_string();
        let next = WriteGuard::begin(&dir, &[live]).expect("recover");
        assert!(dir.join("old.parquet").exists());
        assert!(dir.join("committed.parquet").exists());
        assert!(!dir.join("orphan.parquet").exists());
        next.finish();
        assert!(!dir.join(MARKER).exists());
    }

    #[test]
    fn a_table_killed_while_being_created_is_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("new");
        let guard = WriteGuard::begin(&dir, &[]).expect("begin");
        std::fs::write(dir.join("part.parquet"), b"x").expect("part");
        std::mem::forget(guard);
        let next = WriteGuard::begin(&dir, &[]).expect("recover");
        assert!(!dir.join("part.parquet").exists());
        next.abort();
        assert!(!dir.exists());
    }
}
