//! `strata docs generate`: dbt's `manifest.json` and `catalog.json` (the relations that exist,
//! with their columns and types), for tools that read dbt artifacts, and the project's docs
//! site (`index.html`, which reads them); `strata docs serve` serves that folder over HTTP.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Map, Value, json};
use strata_engine::Warehouse;
use strata_project::artifacts::{STRATA_VERSION, manifest, write_artifact};
use strata_project::{Project, Relation};

use crate::GlobalArgs;
use crate::context::{load_project, open_target};
use crate::report::Console;

/// `strata docs` subcommands.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Write target/manifest.json, target/catalog.json and the docs site (target/index.html).
    Generate {
        /// Also write target/static_index.html: the site with both files inside, to open
        /// from disk or share as one file.
        #[arg(long = "static")]
        static_site: bool,
    },
    /// Serve the docs site of target/ over HTTP, until Ctrl-C.
    Serve {
        /// The port to listen on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on (0.0.0.0 for every interface).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Accepted for dbt's command lines: Strata prints the address and opens no browser.
        #[arg(long, hide = true)]
        browser: bool,
        /// Accepted for dbt's command lines (no browser is opened).
        #[arg(long, hide = true)]
        no_browser: bool,
    },
}

/// The docs site: one page that reads manifest.json and catalog.json beside it.
const SITE: &str = include_str!("docs_site.html");

async fn entry(
    warehouse: &dyn Warehouse,
    unique_id: &str,
    relation: &Relation,
    kind: &str,
) -> Option<Value> {
    let columns: Map<String, Value> = warehouse
        .columns(relation)
        .await
        .ok()??
        .into_iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            (
                name.clone(),
                json!({"type": ty, "index": i + 1, "name": name, "comment": null}),
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
        DocsCommand::Generate { static_site } => {
            let project = load_project(global)?;
            let manifest = manifest(&project);
            write_artifact(&project, "manifest.json", &manifest)?;
            let (warehouse, _meta) = open_target(&project)?;
            let catalog = catalog(&project, &*warehouse).await;
            let count = catalog["nodes"].as_object().map_or(0, Map::len)
                + catalog["sources"].as_object().map_or(0, Map::len);
            write_artifact(&project, "catalog.json", &catalog)?;
            let dir = project.target_dir();
            std::fs::write(dir.join("index.html"), SITE)?;
            let mut written = "manifest.json, catalog.json and index.html".to_string();
            if *static_site {
                let data = json!({"manifest": manifest, "catalog": catalog}).to_string();
                // Inside a <script>, `</` could end it early.
                let script = format!(
                    "<script>window.STRATA_DOCS = {};</script>\n<script>",
                    data.replace("</", "<\\/")
                );
                std::fs::write(
                    dir.join("static_index.html"),
                    SITE.replacen("<script>", &script, 1),
                )?;
                written.push_str(" and static_index.html");
            }
            Console::new(global).info(&format!(
                "Wrote {written} ({count} relations) to {}",
                dir.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        DocsCommand::Serve { port, host, .. } => {
            let project = load_project(global)?;
            super::docs_serve::serve(global, &project.target_dir(), host, *port).await
        }
    }
}
