//! `strata debug`: check that the project, profile, target, lake and metadata store work.

use std::process::ExitCode;

use anyhow::Result;
use futures::TryStreamExt;

use crate::GlobalArgs;
use crate::context::{load_project, open_target, open_warehouse};

/// Run the command.
pub async fn debug(global: &GlobalArgs) -> Result<ExitCode> {
    println!("strata {}", env!("CARGO_PKG_VERSION"));
    let project = match load_project(global) {
        Ok(p) => p,
        Err(e) => {
            println!("  project and profile: ERROR");
            return Err(e);
        }
    };
    let profiles =
        strata_project::profile::find_profiles_file(&project.root, global.profiles_dir.as_deref());
    println!("  project file:  {}", project.config_path.display());
    if let Some(p) = profiles {
        println!("  profiles.yml:  {}", p.display());
    }
    let t = &project.target;
    println!("  profile:       {}", t.profile_name);
    println!("  target:        {} (type: {})", t.name, t.kind);
    println!("  database:      {}", t.database);
    println!("  schema:        {}", t.schema);
    println!("  threads:       {}", t.threads);
    match &t.postgres {
        Some(pg) => println!("  postgres:      {pg:?}"),
        None => println!("  lake:          {}", t.lake),
    }
    if let Some(scheduler) = &t.cluster {
        println!("  engine:        ballista ({scheduler})");
    }
    match &t.shared_metadata {
        Some(shared) => println!("  metadata:      {} (shared)", shared.display()),
        None => println!("  metadata:      {}", t.metadata.display()),
    }
    println!(
        "  models:        {} ({} disabled), sources: {}, macros: {}",
        project.models.len(),
        project.disabled.len(),
        project.sources.len(),
        project.jinja.macros().len()
    );
    if t.postgres.is_some() {
        let (warehouse, _meta) = open_target(&project)?;
        let rows: usize = warehouse
            .query("select 1 as ok", None)
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .iter()
            .map(|b| b.num_rows())
            .sum();
        println!("  metadata:      OK");
        println!(
            "  connection:    {}",
            if rows == 1 { "OK" } else { "ERROR" }
        );
        println!("All checks passed!");
        return Ok(ExitCode::SUCCESS);
    }
    let (warehouse, _meta) = open_warehouse(&project)?;
    strata_engine::embedded::Lake::parse(&t.lake)?
        .ensure_writable()
        .await?;
    println!("  lake writable: OK");
    println!("  metadata:      OK");
    // On a cluster, the query is a job of the cluster's.
    let rows: usize = strata_engine::Warehouse::query(&warehouse, "select 1 as ok", None)
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .map(|b| b.num_rows())
        .sum();
    println!(
        "  query engine:  {}",
        if rows == 1 { "OK" } else { "ERROR" }
    );
    println!("All checks passed!");
    Ok(ExitCode::SUCCESS)
}
