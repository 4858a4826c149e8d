//! Packages from `packages.yml` (or `dependencies.yml`): local packages are read in place;
//! hub and git packages are used from `dbt_packages/` once `strata deps` (or `dbt deps`)
//! installed them there; a missing one is an error saying so.
//!
//! A package contributes its macros (callable as `package_name.macro()`, and by plain name
//! when the root project does not define the same name) and its generic tests.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_common::Location;

use crate::config::ProjectConfig;
use crate::error::{Error, Result, read_to_string, yaml_error};

/// An installed package.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its name (from its own project file).
    pub name: String,
    /// Its folder.
    pub root: PathBuf,
    /// Its project file.
    pub config: ProjectConfig,
}

#[derive(Debug, Deserialize)]
struct PackagesFile {
    #[serde(default)]
    packages: Vec<yaml_serde::Value>,
}

/// The packages of the project at `root`: those its `packages.yml` declares, the packages
/// those declare in turn, and every package installed under `install_path` (where `dbt deps`
/// puts the whole tree), each once.
pub fn load(root: &Path, install_path: &str) -> Result<Vec<Package>> {
    let mut out: Vec<Package> = Vec::new();
    let add = |out: &mut Vec<Package>, found: Vec<Package>| {
        for p in found {
            if !out.iter().any(|o| o.name == p.name) {
                out.push(p);
            }
        }
    };
    let found = declared(root, root, install_path)?;
    add(&mut out, found);
    let mut i = 0;
    while i < out.len() {
        let dir = out[i].root.clone();
        // A package's own `local:` packages are relative to it; its hub and git packages are
        // where `dbt deps` installed them, in the root project's install path.
        if dir != root {
            let found = declared(&dir, root, install_path)?;
            add(&mut out, found);
        }
        i += 1;
    }
    if let Ok(entries) = std::fs::read_dir(root.join(install_path)) {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|d| d.join("dbt_project.yml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let (config, _) = ProjectConfig::load(&dir)?;
            let found = vec![Package {
                name: config.name.clone(),
                root: dir,
                config,
            }];
            add(&mut out, found);
        }
    }
    Ok(out)
}

/// The packages the `packages.yml` (or `dependencies.yml`) of the project or package at `dir`
/// declares.
fn declared(dir: &Path, root: &Path, install_path: &str) -> Result<Vec<Package>> {
    let Some(file) = ["packages.yml", "dependencies.yml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        return Ok(Vec::new());
    };
    let rel = strata_common::relative_to(&file, root);
    let text = read_to_string(&file)?;
    let parsed: PackagesFile =
        yaml_serde::from_str(&text).map_err(|e| yaml_error(rel.clone(), &e))?;
    let mut out = Vec::new();
    for entry in parsed.packages {
        let get = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let package_dir = if let Some(local) = get("local") {
            dir.join(local)
        } else if let Some(name) = get("package").or_else(|| get("git")) {
            // `dbt deps` installs `org/name` as dbt_packages/name; a git URL as its repo name.
            let short = name
                .trim_end_matches('/')
                .trim_end_matches(".git")
                .rsplit('/')
                .next()
                .unwrap_or(&name)
                .to_string();
            let installed = root.join(install_path).join(&short);
            if !installed.join("dbt_project.yml").is_file() {
                return Err(Error::at(
                    Location::file(&rel),
                    format!("package `{name}` is not installed in {install_path}/"),
                )
                .with_hint(format!(
                    "run `strata deps` to install it; or copy the package into the project and declare it as `- local: path/to/{short}`"
                )));
            }
            installed
        } else {
            return Err(Error::at(
                Location::file(&rel),
                "a package entry needs `local:`, `package:` or `git:`",
            ));
        };
        if !package_dir.is_dir() {
            return Err(Error::at(
                Location::file(&rel),
                format!("package folder {} does not exist", package_dir.display()),
            )
            .with_hint("fix the `local:` path; it is relative to the project folder"));
        }
        let (config, _) = ProjectConfig::load(&package_dir).map_err(|e| {
            e.with_hint(format!(
                "{} should be a dbt package with a dbt_project.yml",
                package_dir.display()
            ))
        })?;
        out.push(Package {
            name: config.name.clone(),
            root: package_dir,
            config,
        });
    }
    Ok(out)
}
