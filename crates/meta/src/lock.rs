//! One writer per target: commands that build or change tables hold an exclusive lock on a
//! file next to the target's metadata store (with a PostgreSQL store, an advisory lock in its
//! database, so machines sharing the store take turns). A second writer waits for it (up to a timeout)
//! and then fails with a message naming the process that holds it. The operating system
//! releases the lock when the holder exits, even when it is killed, so a crash never leaves a
//! stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process held the lock for the whole wait.
    #[error(
        "the target is busy: {holder} is writing to it; gave up after waiting {waited}s (lock {})",
        path.display()
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
        /// Seconds waited.
        waited: u64,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An exclusive lock on a target, released on drop (or when the process ends).
pub struct TargetLock {
    file: Option<File>,
    path: PathBuf,
    /// The advisory lock, for a PostgreSQL store.
    _pg: Option<crate::postgres::PgLock>,
}

impl std::fmt::Debug for TargetLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetLock({})", self.path.display())
    }
}

impl TargetLock {
    /// The lock file of the metadata store at `metadata`.
    pub fn path_for(metadata: &Path) -> PathBuf {
        let mut name = metadata
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".lock");
        metadata.with_file_name(name)
    }

    /// Take the lock of the target whose metadata store is `metadata`, waiting up to `timeout`
    /// for another holder. `on_wait` is called once, with the holder's description, when the
    /// lock is busy. `command` describes this process to others (`strata run`).
    pub fn acquire(
        metadata: &Path,
        command: &str,
        timeout: Duration,
        on_wait: impl FnOnce(&str),
    ) -> Result<Self, LockError> {
        Self::acquire_file(Self::path_for(metadata), command, timeout, on_wait)
    }

    /// The lock file a target's scheduler holds while it runs (one scheduler per target).
    pub fn scheduler_path_for(metadata: &Path) -> PathBuf {
        let mut name = metadata
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".scheduler.lock");
        metadata.with_file_name(name)
    }

    /// Take the lock file at `path` (see [`TargetLock::acquire`]).
    pub fn acquire_file(
        path: PathBuf,
        command: &str,
        timeout: Duration,
        on_wait: impl FnOnce(&str),
    ) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let started = Instant::now();
        let mut on_wait = Some(on_wait);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file);
                    if started.elapsed() >= timeout {
                        return Err(LockError::Busy {
                            path,
                            holder,
                            waited: started.elapsed().as_secs(),
                        });
                    }
                    if let Some(f) = on_wait.take() {
                        f(&holder);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let about = about(command);
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(about.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self {
            file: Some(file),
            path,
            _pg: None,
        })
    }

    /// Take the lock of `purpose` (`target` for writers, `scheduler` for a target's
    /// scheduler) of the PostgreSQL store in `schema` (see [`TargetLock::acquire`]);
    /// `display` names the store in messages.
    pub fn acquire_postgres(
        connect: &crate::Connector,
        (schema, purpose): (&str, &str),
        display: &str,
        command: &str,
        timeout: Duration,
        on_wait: impl FnOnce(&str),
    ) -> Result<Self, LockError> {
        let path = PathBuf::from(format!("{purpose} lock of {display}"));
        match crate::postgres::PgLock::acquire(
            connect,
            (schema, purpose),
            &about(command),
            timeout,
            on_wait,
        ) {
            Ok(lock) => Ok(Self {
                file: None,
                path,
                _pg: Some(lock),
            }),
            Err(crate::postgres::LockFailure::Busy { holder, waited }) => Err(LockError::Busy {
                path,
                holder,
                waited,
            }),
            Err(crate::postgres::LockFailure::Failed(why)) => Err(LockError::Io {
                path,
                source: std::io::Error::other(why),
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }
}

/// How a holder describes itself to those waiting.
fn about(command: &str) -> String {
    format!(
        "`{command}` (pid {} on {}, started {})",
        std::process::id(),
        hostname(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// This machine's name, for lock holders' descriptions (machines share a PostgreSQL store).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another strata process".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_fails_with_the_first_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = dir.path().join("metadata.sqlite");
        let first =
            TargetLock::acquire(&meta, "strata run", Duration::ZERO, |_| {}).expect("free lock");
        let mut told = String::new();
        let err = TargetLock::acquire(&meta, "strata build", Duration::from_millis(300), |h| {
            told = h.to_string()
        })
        .expect_err("the lock is held");
        assert!(told.contains("strata run"), "{told}");
        let text = err.to_string();
        assert!(
            text.contains("the target is busy") && text.contains("strata run"),
            "{text}"
        );
        drop(first);
        let again = TargetLock::acquire(&meta, "strata build", Duration::ZERO, |_| {});
        assert!(again.is_ok());
    }
}
