//! `strata clean`: remove the target folder and the project's `clean-targets`.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

/// Run the command. The warehouse (the lake and its metadata) is never touched.
pub fn clean(global: &GlobalArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let targets = project
        .config
        .clean_targets
        .clone()
        .unwrap_or_else(|| vec![project.config.target_path.clone()]);
    let console = Console::new(global);
    for t in targets {
        let path = project.root.join(&t);
        let Ok(resolved) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !resolved.starts_with(&project.root) || resolved == project.root {
            bail!(
                "refusing to delete {}: clean-targets must be folders inside the project",
                resolved.display()
            );
        }
        std::fs::remove_dir_all(&resolved)?;
        console.info(&format!("Removed {t}/"));
    }
    Ok(ExitCode::SUCCESS)
}
