//! `strata docs generate`: dbt's `manifest.json` and `catalog.json` (the relations that exist,
//! with their columns and types), for tools that read dbt artifacts.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Map, Value, json};
use strata_engine::Warehouse;
use strata_engine::types::sql_type;
use strata_project::artifacts::{STRATA_VERSION, manifest, write_artifact};
use strata_project::{Project, Relation};

use crate::GlobalArgs;
use crate::context::{load_project, open_warehouse};
use crate::report::Console;

/// `strata docs` subcommands.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Write target/manifest.json and target/catalog.json.
    Generate,
}

async fn entry(
    warehouse: &dyn Warehouse,
    unique_id: &str,
    relation: &Relation,
    kind: &str,
) -> Option<Value> {
    let schema = warehouse
        .describe(&format!("select * from {relation}"))
        .await
        .ok()?;
    let columns: Map<String, Value> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                f.name().clone(),
                json!({"type": sql_type(f.data_type()), "index": i + 1, "name": f.name(), "comment": null}),
            )
        })
        .collect();
    Some(json!({
        "metadata": {
            "type": kind,
            "schema": relation.schema,
            "name": relation.identifier,
            "database": relation.database,
            "comment": null,
            "owner": null,
        },
        "columns": columns,
        "stats": {"has_stats": {"id": "has_stats", "label": "Has Stats?", "value": false, "include": false, "description": "Indicates whether there are statistics for this table"}},
        "unique_id": unique_id,
    }))
}

/// The catalog of the relations that exist in the target.
pub async fn catalog(project: &Project, warehouse: &dyn Warehouse) -> Value {
    let mut nodes = Map::new();
    for n in project.nodes() {
        if n.materialized() == "ephemeral" || n.resource_type() == "analysis" {
            continue;
        }
        let kind = if n.materialized() == "view" {
            "VIEW"
        } else {
            "BASE TABLE"
        };
        if let Some(e) = entry(warehouse, n.unique_id(), n.relation(), kind).await {
            nodes.insert(n.unique_id().to_string(), e);
        }
    }
    let mut sources = Map::new();
    for s in project.sources.values() {
        if let Some(e) = entry(warehouse, &s.unique_id, &s.relation, "BASE TABLE").await {
            sources.insert(s.unique_id.clone(), e);
        }
    }
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
            "dbt_version": STRATA_VERSION,
            "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "invocation_id": project.invocation_id,
            "env": {},
        },
        "nodes": nodes,
        "sources": sources,
        "errors": null,
    })
}

/// Run the command.
pub async fn docs(global: &GlobalArgs, command: &DocsCommand) -> Result<ExitCode> {
    match command {
        DocsCommand::Generate => {
            let project = load_project(global)?;
            write_artifact(&project, "manifest.json", &manifest(&project))?;
            let (warehouse, _meta) = open_warehouse(&project)?;
            let catalog = catalog(&project, &warehouse).await;
            let count = catalog["nodes"].as_object().map_or(0, Map::len)
                + catalog["sources"].as_object().map_or(0, Map::len);
            write_artifact(&project, "catalog.json", &catalog)?;
            Console::new(global).info(&format!(
                "Wrote manifest.json and catalog.json ({count} relations) to {}",
                project.target_dir().display()
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}
