//! Embeds the project templates `strata init` and `strata demo` write: the starter project
//! (crates/cli/starter) and the SaaS example (examples/saas), every file but generated data,
//! lakes and build output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut out = String::new();
    for (name, dir) in [
        ("STARTER", root.join("starter")),
        ("SAAS", root.join("../../examples/saas")),
    ] {
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        collect(&dir, &dir, &mut files);
        files.sort();
        let _ = writeln!(out, "pub const {name}: &[(&str, &[u8])] = &[");
        for rel in files {
            let abs = dir.join(&rel);
            let abs = abs.canonicalize().unwrap_or(abs);
            let _ = writeln!(
                out,
                "    ({:?}, include_bytes!({:?})),",
                rel.to_string_lossy().replace('\\', "/"),
                abs.display().to_string()
            );
        }
        let _ = writeln!(out, "];");
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("templates.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}

/// Files under `dir`, relative to `base`, leaving out what a project generates.
fn collect(base: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
        let name = rel.to_string_lossy();
        if [".strata", "target", "logs", "data/raw", "dbt_packages"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        if path.is_dir() {
            collect(base, &path, files);
        } else {
            files.push(rel);
        }
    }
}
