//! Shared steps of the commands: load the project, open the target's warehouse.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use strata_engine::{EmbeddedWarehouse, ExternalSource, WarehouseOptions};
use strata_meta::MetaStore;
use strata_project::select::{Selector, resolve};
use strata_project::{LoadOptions, Project};

use crate::{GlobalArgs, SelectArgs};

/// Load the project the global options point at.
pub fn load_project(global: &GlobalArgs) -> Result<Project> {
    let project = Project::load(&LoadOptions {
        project_dir: global.project_dir.clone(),
        profiles_dir: global.profiles_dir.clone(),
        target: global.target.clone(),
        vars: global.vars.clone(),
        threads: global.threads,
    })?;
    Ok(project)
}

/// The unique ids chosen by `--select` / `--exclude`.
pub fn select(project: &Project, args: &SelectArgs) -> Result<BTreeSet<String>> {
    let select = Selector::parse(&args.select)?;
    let exclude = Selector::parse(&args.exclude)?;
    let state = match &args.state {
        Some(dir) => Some(strata_project::select::State::load(dir)?),
        None => None,
    };
    Ok(resolve(project, &select, &exclude, state.as_ref())?)
}

/// Sources that read files, with locations made absolute.
pub fn external_sources(project: &Project) -> Vec<ExternalSource> {
    project
        .sources
        .values()
        .filter_map(|s| {
            let loc = s.external_location.as_ref()?;
            let location = if loc.contains("://") || std::path::Path::new(loc).is_absolute() {
                loc.clone()
            } else {
                project.root.join(loc).to_string_lossy().into_owned()
            };
            Some(ExternalSource {
                schema: s.relation.schema.clone(),
                name: s.relation.identifier.clone(),
                location,
                format: s.format.clone(),
                declared_in: s.original_file_path.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

/// Open the metadata store and the warehouse of the project's target.
pub fn open_warehouse(project: &Project) -> Result<(EmbeddedWarehouse, Arc<MetaStore>)> {
    let meta = Arc::new(MetaStore::open(&project.target.metadata).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n  hint: check `lake:` / `metadata:` of target `{}` in profiles.yml; the folder must be writable",
            project.target.name
        )
    })?);
    let warehouse = EmbeddedWarehouse::open(
        WarehouseOptions {
            database: project.target.database.clone(),
            default_schema: project.target.schema.clone(),
            lake: project.target.lake.clone(),
            sources: external_sources(project),
            target_partitions: None,
        },
        meta.clone(),
    )?;
    Ok((warehouse, meta))
}
