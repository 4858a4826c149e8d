//! No leftovers: a table write on a local lake is bracketed by a marker file, created when the
//! write starts. A write that fails removes the files it added (modified after the marker); a
//! write that was killed is cleaned up by the next write of the same table, which removes every
//! file modified after the marker that the table's current version does not reference. Times
//! come from the file system itself (the marker's own modification time), whose clock is
//! coarser than the system's: a file of an earlier write can share the marker's time, and is
//! kept; one of this write sharing it would be left behind, never a file of another write
//! removed. Nothing is listed while writes succeed, so the guard costs the same on a table of
//! 10 files and of 10,000.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// Files under `dir` modified after `since`.
fn written_since(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    list_files(dir)
        .into_iter()
        .filter(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > since)
        })
        .collect()
}

/// When a marker was written, by the file system's clock.
fn marker_time(marker: &Path) -> std::io::Result<SystemTime> {
    std::fs::metadata(marker)?.modified()
}

/// A write in progress on one table folder.
#[derive(Debug)]
pub struct WriteGuard {
    dir: PathBuf,
    existed: bool,
    started: SystemTime,
}

impl WriteGuard {
    /// Start a write: recover from an interrupted one, then mark this one's start.
    ///
    /// `live_files` gives the files of the table's current version (empty for a new table);
    /// it is called only to recover.
    pub fn begin(
        dir: &Path,
        live_files: impl FnOnce() -> std::io::Result<Vec<String>>,
    ) -> std::io::Result<Self> {
        let marker = dir.join(MARKER);
        if marker.is_file() {
            recover(dir, &marker, &live_files()?)?;
        }
        let existed = has_log(dir);
        std::fs::create_dir_all(dir)?;
        std::fs::write(&marker, std::process::id().to_string())?;
        let started = marker_time(&marker)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            existed,
            started,
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
        for f in written_since(&self.dir, self.started) {
            let _ = std::fs::remove_file(&f);
        }
        let _ = std::fs::remove_file(self.dir.join(MARKER));
    }
}

/// Clean up after a write that was killed: remove what it wrote, except what the current
/// version references (the write may have committed just before it was killed).
fn recover(dir: &Path, marker: &Path, live_files: &[String]) -> std::io::Result<()> {
    if !has_log(dir) {
        // The table was being created and never committed.
        return std::fs::remove_dir_all(dir);
    }
    let started = marker_time(marker).ok();
    let live: HashSet<PathBuf> = live_files
        .iter()
        .filter_map(|u| Url::parse(u).ok()?.to_file_path().ok())
        .collect();
    // A marker that cannot be read removes nothing: older versions' files must stay.
    if let Some(started) = started {
        for f in written_since(dir, started) {
            if !live.contains(&f) {
                std::fs::remove_file(&f)?;
            }
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
        std::thread::sleep(std::time::Duration::from_millis(10));
        let guard = WriteGuard::begin(&dir, || Ok(Vec::new())).expect("begin");
        // The file system's clock moves on (it ticks every few milliseconds).
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The process dies here, after writing two files and committing one of them.
        std::fs::write(dir.join("orphan.parquet"), b"x").expect("orphan");
        std::fs::write(dir.join("committed.parquet"), b"y").expect("committed");
        std::mem::forget(guard);
        let live = Url::from_file_path(dir.join("committed.parquet"))
            .expect("url")
            .to_string();
        let next = WriteGuard::begin(&dir, || Ok(vec![live])).expect("recover");
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
        let guard = WriteGuard::begin(&dir, || Ok(Vec::new())).expect("begin");
        std::fs::write(dir.join("part.parquet"), b"x").expect("part");
        std::mem::forget(guard);
        let next = WriteGuard::begin(&dir, || Ok(Vec::new())).expect("recover");
        assert!(!dir.join("part.parquet").exists());
        next.abort();
        assert!(!dir.exists());
    }
}
