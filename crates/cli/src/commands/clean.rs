//! `strata clean`: remove the target folder and the project's `clean-targets`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use strata_project::profile::contains_path;

use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

/// Run the command. The warehouse (the lake and its metadata) is never touched: a clean target
/// that is outside the project, is the project, or holds a lake or a catalog (of any target)
/// is refused before anything is deleted.
pub fn clean(global: &GlobalArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let targets = project
        .config
        .clean_targets
        .clone()
        .unwrap_or_else(|| vec![project.config.target_path.clone()]);
    let mut protected: Vec<PathBuf> = vec![project.target.metadata.clone()];
    if !project.target.lake.contains("://") {
        protected.push(PathBuf::from(&project.target.lake));
    }
    let mut doomed = Vec::new();
    for t in targets {
        let path = project.root.join(&t);
        let Ok(resolved) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !resolved.starts_with(&project.root) || resolved == project.root {
            bail!(
                "refusing to delete {}: clean-targets must be folders inside the project\n  hint: remove `{t}` from clean-targets in the project file",
                resolved.display()
            );
        }
        let holds_warehouse = protected.iter().any(|p| contains_path(&resolved, p));
        if let Some(found) = holds_warehouse
            .then(|| resolved.clone())
            .or_else(|| warehouse_inside(&resolved))
        {
            bail!(
                "refusing to delete `{t}`: it holds a lake or a metadata catalog ({}); `strata clean` never deletes a warehouse\n  hint: remove `{t}` from clean-targets in the project file; to drop a target's tables, delete its lake folder yourself",
                found.display()
            );
        }
        doomed.push((t, resolved));
    }
    let console = Console::new(global);
    for (t, resolved) in doomed {
        std::fs::remove_dir_all(&resolved)?;
        console.info(&format!("Removed {t}/"));
    }
    Ok(ExitCode::SUCCESS)
}

/// A lake or catalog inside `dir`, of any target: a Delta table's log, a metadata store, or a
/// lake's claim file.
fn warehouse_inside(dir: &Path) -> Option<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| {
            let name = e.file_name();
            (e.file_type().is_dir() && (name == "_delta_log" || name == "_strata"))
                || name == "metadata.sqlite"
        })
        .map(|e| e.into_path())
}
