//! `strata deps`: install the packages of packages.yml into dbt_packages/, pinned in
//! package-lock.yml (see `strata_project::deps`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::GlobalArgs;
use crate::report::Console;

/// Options of `strata deps`.
#[derive(Debug, Args)]
pub struct DepsArgs {
    /// Resolve every package again (newest matching hub versions, branch heads), rewriting
    /// package-lock.yml.
    #[arg(long)]
    pub upgrade: bool,
    /// Only resolve the packages and write package-lock.yml; install nothing.
    #[arg(long)]
    pub lock: bool,
}

/// Downloads over HTTPS, for hub packages.
struct Http;

impl strata_project::deps::Fetch for Http {
    fn get(&self, url: &str) -> std::result::Result<Vec<u8>, String> {
        let fetch = async {
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(|e| e.to_string())?
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        };
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(fetch))
    }
}

/// Run the command.
pub fn deps(global: &GlobalArgs, args: &DepsArgs) -> Result<ExitCode> {
    let root = std::fs::canonicalize(global.project_dir())?;
    let (config, _) = strata_project::ProjectConfig::load(&root)?;
    let mut hub_url = std::env::var("DBT_PACKAGE_HUB_URL")
        .unwrap_or_else(|_| "https://hub.getdbt.com/".to_string());
    if !hub_url.ends_with('/') {
        hub_url.push('/');
    }
    let options = strata_project::deps::Options {
        upgrade: args.upgrade,
        lock_only: args.lock,
        hub_url,
    };
    let console = Console::new(global);
    let outcome =
        strata_project::deps::install(&root, &config.packages_install_path(), &options, &Http)?;
    if outcome.packages.is_empty() && !outcome.lock_written {
        console.info("No packages to install: the project has no packages.yml entries");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &outcome.packages {
        let version = match p.source {
            "local" => String::new(),
            "git" => format!(" at {}", &p.version[..p.version.len().min(12)]),
            _ => format!(" {}", p.version),
        };
        console.info(&format!(
            "{} {} ({} {}{version})",
            if outcome.installed {
                "Installed"
            } else {
                "Resolved"
            },
            p.name,
            p.source,
            p.location
        ));
    }
    let lock = match outcome.lock_written {
        true => "wrote package-lock.yml",
        false => "from package-lock.yml",
    };
    console.info(&format!(
        "{} package{} {}, {lock}",
        outcome.packages.len(),
        if outcome.packages.len() == 1 { "" } else { "s" },
        match outcome.installed {
            true => format!("installed in {}", config.packages_install_path()),
            false => "resolved".to_string(),
        }
    ));
    Ok(ExitCode::SUCCESS)
}
