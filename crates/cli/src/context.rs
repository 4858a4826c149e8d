//! Shared steps of the commands: load the project, open the target's warehouse.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use strata_engine::{EmbeddedWarehouse, ExternalSource, Warehouse, WarehouseOptions};
use strata_meta::MetaStore;
use strata_project::select::{Selector, resolve};
use strata_project::{LoadOptions, Project};

use crate::{GlobalArgs, SelectArgs};

/// Load the project the global options point at.
pub fn load_project(global: &GlobalArgs) -> Result<Project> {
    load_project_with(global, false)
}

/// Load the project, for a `--full-refresh` run when `full_refresh`.
pub fn load_project_with(global: &GlobalArgs, full_refresh: bool) -> Result<Project> {
    let started = std::time::Instant::now();
    let project = Project::load(&LoadOptions {
        project_dir: global.project_dir(),
        profiles_dir: global.profiles_dir.clone(),
        target: global.target(),
        vars: global.vars.clone(),
        threads: global.threads,
        full_refresh,
        profile: global.profile.clone(),
    })?;
    tracing::debug!(
        "loaded project `{}` ({}) in {} ms: {} models, {} seeds, {} tests, {} sources; target `{}`, lake {}",
        project.name(),
        project.config_path.display(),
        started.elapsed().as_millis(),
        project.models.len(),
        project.seeds.len(),
        project.tests.len(),
        project.sources.len(),
        project.target.name,
        project.target.lake
    );
    let mut project = project;
    if global.store_failures {
        for t in project.tests.values_mut() {
            t.config.set("store_failures", serde_json::json!(true));
        }
    }
    if crate::logging::WarnPolicy::of(global)?.is_error("LogTestResult") {
        // A test that would warn fails instead, with the same condition.
        for t in project.tests.values_mut() {
            let warn_if = t.warn_if().to_string();
            t.config.set("severity", serde_json::json!("error"));
            t.config.set("error_if", serde_json::json!(warn_if));
        }
    }
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
    if let Some(name) = &args.selector {
        let mut chosen = strata_project::selectors::select_named(project, name, state.as_ref())?;
        for id in exclude.select_with_state(project, state.as_ref()) {
            chosen.remove(&id);
        }
        return Ok(chosen);
    }
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

/// How to reach a PostgreSQL metadata store (TLS as its url's `sslmode` says).
pub fn metadata_connector(
    shared: &strata_project::profile::SharedMetadata,
) -> Result<strata_meta::Connector> {
    let (config, tls) = strata_postgres::config_from_url(&shared.url).map_err(|why| {
        anyhow::anyhow!("`metadata`: {why}\n  hint: metadata: postgresql://user@host:5432/database")
    })?;
    Ok(Arc::new(move || {
        let (config, tls) = (config.clone(), tls.clone());
        Box::pin(async move {
            strata_postgres::connect(&config, &tls)
                .await
                .map_err(|why| format!("cannot connect: {why}"))
        })
    }))
}

/// Open the target's metadata store: its SQLite file, or its PostgreSQL schema.
pub fn open_meta(project: &Project) -> Result<Arc<MetaStore>> {
    if let Some(shared) = &project.target.shared_metadata {
        let store = MetaStore::open_postgres(
            &metadata_connector(shared)?,
            &shared.schema,
            &shared.display(),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\n  hint: check `metadata:` of target `{}` in profiles.yml (the password comes from PGPASSWORD or env_var())",
                project.target.name
            )
        })?;
        return Ok(Arc::new(store));
    }
    let meta = Arc::new(MetaStore::open(&project.target.metadata).map_err(|e| {
        if let strata_meta::Error::Damaged { .. } = e {
            return anyhow::anyhow!(
                "{e}\n  hint: `strata catalog rebuild --target {}` makes a new catalog from the lake's tables (the damaged file is kept beside it)",
                project.target.name
            );
        }
        let place = format!("the catalog {}", project.target.metadata.display());
        match strata_common::storage_problem(&format!("{e:?}"), &place) {
            Some((message, hint)) => anyhow::anyhow!(
                "target `{}`: {message}\n  hint: {hint}",
                project.target.name
            ),
            None => anyhow::anyhow!(
                "{e}\n  hint: check `lake:` / `metadata:` of target `{}` in profiles.yml",
                project.target.name
            ),
        }
    })?);
    Ok(meta)
}

/// The warehouse of the project's target: the embedded one (DataFusion over Delta tables),
/// or a PostgreSQL database (`type: postgres`).
pub enum TargetWarehouse {
    Embedded(EmbeddedWarehouse),
    Postgres(strata_postgres::PostgresWarehouse),
}

impl std::ops::Deref for TargetWarehouse {
    type Target = dyn Warehouse;
    fn deref(&self) -> &(dyn Warehouse + 'static) {
        match self {
            TargetWarehouse::Embedded(w) => w,
            TargetWarehouse::Postgres(w) => w,
        }
    }
}

impl TargetWarehouse {
    /// The embedded warehouse, or an error saying `what` needs it.
    pub fn embedded(&self, project: &Project, what: &str) -> Result<&EmbeddedWarehouse> {
        match self {
            TargetWarehouse::Embedded(w) => Ok(w),
            TargetWarehouse::Postgres(w) => Err(postgres_target_error(project, w.server(), what)),
        }
    }
}

fn postgres_target_error(project: &Project, server: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "target `{}` builds in PostgreSQL ({server}); {what} needs the embedded warehouse\n  hint: use a `type: strata` target for it (`--target`)",
        project.target.name
    )
}

/// Open the metadata store and the warehouse of the project's target, whichever it is.
pub fn open_target(project: &Project) -> Result<(TargetWarehouse, Arc<MetaStore>)> {
    let Some(pg) = &project.target.postgres else {
        let (w, meta) = open_embedded(project)?;
        return Ok((TargetWarehouse::Embedded(w), meta));
    };
    let meta = open_meta(project)?;
    let endpoint = strata_postgres::Endpoint {
        host: pg.host.clone(),
        port: pg.port,
        user: pg.user.clone(),
        password: pg.password.clone(),
        dbname: pg.dbname.clone(),
        sslmode: pg.sslmode.clone(),
        sslrootcert: pg.sslrootcert.clone(),
        connect_timeout: pg.connect_timeout,
    };
    let options = strata_postgres::PostgresOptions::new(&endpoint, &project.target.schema)
        .map_err(|why| {
            anyhow::anyhow!(
                "target `{}`: {why}\n  hint: check `sslmode` / `sslrootcert` in profiles.yml",
                project.target.name
            )
        })?;
    Ok((
        TargetWarehouse::Postgres(strata_postgres::PostgresWarehouse::new(options)),
        meta,
    ))
}

/// Open the metadata store and the embedded warehouse of the project's target, for commands
/// that work on Delta tables (history, clone, quarantine, ingestion, serving).
pub fn open_warehouse(project: &Project) -> Result<(EmbeddedWarehouse, Arc<MetaStore>)> {
    if let Some(pg) = &project.target.postgres {
        return Err(postgres_target_error(
            project,
            &format!("{}:{}/{}", pg.host, pg.port, pg.dbname),
            "this command",
        ));
    }
    open_embedded(project)
}

fn open_embedded(project: &Project) -> Result<(EmbeddedWarehouse, Arc<MetaStore>)> {
    let meta = open_meta(project)?;
    let warehouse = EmbeddedWarehouse::open(
        WarehouseOptions {
            database: project.target.database.clone(),
            default_schema: project.target.schema.clone(),
            lake: project.target.lake.clone(),
            sources: external_sources(project),
            target_partitions: None,
            distributor: match &project.target.cluster {
                Some(scheduler) => Some(Arc::new(strata_cluster::Cluster::connect(scheduler)?)),
                None => None,
            },
        },
        meta.clone(),
    )?;
    Ok((warehouse, meta))
}

/// Take the lock a target's scheduler holds while it runs (one scheduler per target), without
/// waiting: `Ok(Err(..))` when another holds it.
pub fn scheduler_lock(
    project: &Project,
    command: &str,
) -> Result<std::result::Result<strata_meta::TargetLock, strata_meta::LockError>> {
    Ok(match &project.target.shared_metadata {
        Some(shared) => strata_meta::TargetLock::acquire_postgres(
            &metadata_connector(shared)?,
            (&shared.schema, "scheduler"),
            &shared.display(),
            command,
            std::time::Duration::ZERO,
            |_| {},
        ),
        None => strata_meta::TargetLock::acquire_file(
            strata_meta::TargetLock::scheduler_path_for(&project.target.metadata),
            command,
            std::time::Duration::ZERO,
            |_| {},
        ),
    })
}

/// Take the target's write lock for `command`, waiting up to `--lock-timeout` seconds for
/// another strata process writing to the same target (and saying so once).
pub fn lock_target(
    project: &Project,
    global: &GlobalArgs,
    command: &str,
) -> Result<strata_meta::TargetLock> {
    let on_wait = |holder: &str| {
        eprintln!(
            "Waiting for {holder} to finish writing to target `{}` (up to {}s; see --lock-timeout)",
            project.target.name, global.lock_timeout
        )
    };
    let timeout = std::time::Duration::from_secs(global.lock_timeout);
    let lock = match &project.target.shared_metadata {
        Some(shared) => strata_meta::TargetLock::acquire_postgres(
            &metadata_connector(shared)?,
            (&shared.schema, "target"),
            &shared.display(),
            &format!("strata {command}"),
            timeout,
            on_wait,
        ),
        None => strata_meta::TargetLock::acquire(
            &project.target.metadata,
            &format!("strata {command}"),
            timeout,
            on_wait,
        ),
    }
    .map_err(|e| match &e {
        strata_meta::LockError::Busy { .. } => anyhow::anyhow!(
            "{e}\n  hint: wait for it to finish, or raise --lock-timeout; two commands never write to one target at once"
        ),
        strata_meta::LockError::Io { path, source } => {
            let place = format!("the target's folder {}", path.parent().unwrap_or(path).display());
            match strata_common::storage_problem(&source.to_string(), &place) {
                Some((message, hint)) => anyhow::anyhow!(
                    "target `{}`: {message} ({source})\n  hint: {hint}",
                    project.target.name
                ),
                None => anyhow::anyhow!("{e}"),
            }
        }
    })?;
    Ok(lock)
}

/// Where the tables of the run that wrote `manifest` are: its database, lake and catalog file,
/// from the manifest's `metadata.env` (`STRATA_*`; older manifests kept them under
/// `metadata.strata`).
pub fn state_target(manifest: &serde_json::Value) -> Option<(&str, &str, &str)> {
    let env = &manifest["metadata"]["env"];
    let old = &manifest["metadata"]["strata"];
    let get = |key: &str, old_key: &str| env[key].as_str().or_else(|| old[old_key].as_str());
    Some((
        get("STRATA_DATABASE", "database")?,
        get("STRATA_LAKE", "lake")?,
        get("STRATA_METADATA", "metadata")?,
    ))
}

/// Open the metadata store a state manifest names: its SQLite file, or its PostgreSQL store
/// (`STRATA_METADATA_SCHEMA` beside the url).
pub fn open_state_meta(manifest: &serde_json::Value, metadata: &str) -> Result<Arc<MetaStore>> {
    if metadata.starts_with("postgres://") || metadata.starts_with("postgresql://") {
        let shared = strata_project::profile::SharedMetadata {
            url: metadata.to_string(),
            schema: manifest["metadata"]["env"]["STRATA_METADATA_SCHEMA"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the state manifest names a PostgreSQL metadata store without its schema (STRATA_METADATA_SCHEMA)"
                    )
                })?
                .to_string(),
        };
        return Ok(Arc::new(MetaStore::open_postgres(
            &metadata_connector(&shared)?,
            &shared.schema,
            &shared.display(),
        )?));
    }
    Ok(Arc::new(MetaStore::open(std::path::Path::new(metadata))?))
}

/// The catalog name under which `--defer` reads the state run's relations.
pub const DEFER_CATALOG: &str = "strata_state";

/// Set up `--defer`: attach the state run's lake and catalog to `warehouse`, and map each model
/// of that run to its relation there.
pub fn defer(
    project: &Project,
    args: &SelectArgs,
    warehouse: &TargetWarehouse,
    selected: &BTreeSet<String>,
) -> Result<Option<strata_project::compile::Defer>> {
    let (true, Some(dir)) = (args.defer, &args.state) else {
        return Ok(None);
    };
    let path = dir.join("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| anyhow::anyhow!("{} is not a manifest: {e}", path.display()))?;
    // On the embedded warehouse the state's tables are read through a catalog attached for
    // them; in PostgreSQL they are in the same database, under their own names.
    if let TargetWarehouse::Embedded(warehouse) = warehouse {
        let Some((database, lake, metadata)) = state_target(&manifest) else {
            anyhow::bail!(
                "--defer: {} was not written by Strata, so it does not say where its tables are",
                path.display()
            );
        };
        let store = open_state_meta(&manifest, metadata)?;
        warehouse.attach(
            DEFER_CATALOG,
            database,
            lake,
            store,
            external_sources(project),
        )?;
    }
    let mut relations = std::collections::HashMap::new();
    if let Some(nodes) = manifest["nodes"].as_object() {
        for n in nodes.values() {
            if n["resource_type"] != "model" && n["resource_type"] != "seed" {
                continue;
            }
            if let (Some(name), Some(schema), Some(alias)) = (
                n["name"].as_str(),
                n["schema"].as_str(),
                n["alias"].as_str(),
            ) {
                let database = match warehouse {
                    TargetWarehouse::Embedded(_) => DEFER_CATALOG,
                    TargetWarehouse::Postgres(w) => n["database"].as_str().unwrap_or(w.database()),
                };
                relations.insert(
                    name.to_string(),
                    strata_project::Relation::new(database, schema, alias),
                );
            }
        }
    }
    Ok(Some(strata_project::compile::Defer {
        selected: selected.iter().cloned().collect(),
        relations,
        favor_state: args.favor_state,
    }))
}
