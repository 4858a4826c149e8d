//! Deterministic synthetic data for the example projects (`strata datagen`).
//!
//! Every generator is a pure function of its options (scale and seed): the same options give
//! the same bytes on every machine. Generators stream: they hold one entity (an account, a
//! customer) in memory at a time, whatever the scale.

pub mod csv;
pub mod json;
pub mod retail;
pub mod rng;
pub mod saas;

use std::path::{Path, PathBuf};

/// What can go wrong while writing a data set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a file is written before it is whole.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Put a whole `<path>.partial` in place of `path`, unless `path` already holds the same
/// bytes: then it is left untouched and the partial file removed.
pub(crate) fn publish(path: &Path) -> Result<()> {
    let partial = partial_path(path);
    if same_bytes(&partial, path).map_err(|e| Error::io(path, e))? {
        std::fs::remove_file(&partial).map_err(|e| Error::io(&partial, e))
    } else {
        std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
    }
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return Ok(false);
    };
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
