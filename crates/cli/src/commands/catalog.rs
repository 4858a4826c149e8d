//! `strata catalog rebuild`: a new catalog (metadata store) made from the lake, for a catalog
//! file that is damaged or lost. The tables are the lake's Delta tables; the damaged file is
//! kept beside the new one.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use strata_engine::embedded::Lake;
use strata_meta::{MetaStore, RelationKind, RelationRecord};

use crate::GlobalArgs;
use crate::context::{load_project, lock_target};
use crate::report::Console;

/// `strata catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Make a new catalog from the lake's tables, when the catalog file is damaged or lost
    /// (the damaged file is kept). Views come back with the next `strata run`.
    Rebuild {
        /// Rebuild even though the catalog opens (its views and run history are set aside).
        #[arg(long)]
        force: bool,
    },
}

/// Run a `strata catalog` subcommand.
pub async fn catalog(global: &GlobalArgs, command: &CatalogCommand) -> Result<ExitCode> {
    let CatalogCommand::Rebuild { force } = command;
    let project = load_project(global)?;
    if let Some(shared) = &project.target.shared_metadata {
        bail!(
            "target `{}` keeps its catalog in PostgreSQL ({}); `catalog rebuild` remakes a SQLite catalog file\n  hint: a PostgreSQL store is not damaged the way a file is: check the server",
            project.target.name,
            shared.display()
        );
    }
    let _lock = lock_target(&project, global, "catalog rebuild")?;
    let path = project.target.metadata.clone();
    let console = Console::new(global);
    match MetaStore::open(&path) {
        Ok(_) if !force => bail!(
            "the catalog {} opens and reads fine; nothing to rebuild\n  hint: `strata catalog rebuild --force` rebuilds it anyway (its views and run history are set aside with the old file)",
            path.display()
        ),
        Ok(store) => drop(store),
        Err(strata_meta::Error::Damaged { .. }) => {}
        Err(e) if path.exists() => return Err(e.into()),
        Err(_) => {}
    }
    // Keep the old file (and its journal) beside the new one; never delete it.
    let mut kept = None;
    if path.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let aside = path.with_file_name(format!("{name}.damaged-{stamp}"));
        std::fs::rename(&path, &aside)?;
        for suffix in ["-wal", "-shm"] {
            let journal = path.with_file_name(format!("{name}{suffix}"));
            if journal.exists() {
                std::fs::rename(
                    &journal,
                    aside.with_file_name(format!("{name}.damaged-{stamp}{suffix}")),
                )?;
            }
        }
        kept = Some(aside);
    }
    let meta = MetaStore::open(&path)?;
    let lake = Lake::parse(&project.target.lake)?;
    // The lake records which catalog writes it: the new one takes that identity.
    if let Some(id) = lake.owner_catalog_id().await? {
        meta.set_catalog_id(&id)?;
    }
    let nodes: HashMap<(String, String), String> = project
        .nodes()
        .filter(|n| n.resource_type() != "analysis")
        .map(|n| {
            let r = n.relation();
            (
                (r.schema.clone(), r.identifier.clone()),
                n.unique_id().to_string(),
            )
        })
        .collect();
    let tables = lake.tables().await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (schema, name) in &tables {
        meta.upsert_relation(&RelationRecord {
            database: project.target.database.clone(),
            schema: schema.clone(),
            name: name.clone(),
            kind: RelationKind::Table,
            location: Some(lake.table(schema, name)?.relative),
            sql: None,
            unique_id: nodes.get(&(schema.clone(), name.clone())).cloned(),
            run_id: None,
            updated_at: now.clone(),
        })?;
    }
    let names: Vec<String> = tables.iter().map(|(s, n)| format!("{s}.{n}")).collect();
    console.info(&format!(
        "Rebuilt the catalog of target `{}` from its lake: {} table{}{}",
        project.target.name,
        tables.len(),
        if tables.len() == 1 { "" } else { "s" },
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    ));
    if let Some(aside) = kept {
        console.info(&format!("The old catalog is kept as {}", aside.display()));
    }
    console.info("Views come back with the next `strata run`; the run history starts afresh.");
    Ok(ExitCode::SUCCESS)
}
