//! `strata clone --state DIR`: make the selected models, seeds and snapshots of an earlier
//! run (another target's, such as prod) exist in this target, without rebuilding them: tables
//! as clones sharing the state run's data files, views with the state run's SQL, as dbt's
//! `clone`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use strata_engine::embedded::CloneSource;
use strata_engine::{Materialization, MaterializeRequest, Warehouse};
use strata_meta::RelationKind;
use strata_project::artifacts::write_artifact;
use strata_runner::{NodeResult, NodeStatus, RunResults};

use crate::context::{load_project, lock_target, open_warehouse, select, state_target};
use crate::report::Console;
use crate::{GlobalArgs, SelectArgs};

/// Options of `strata clone`.
#[derive(Debug, Args)]
pub struct CloneArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Clone over relations this target already has (they are replaced); without it they are
    /// kept.
    #[arg(long)]
    pub full_refresh: bool,
    /// Only these kinds of node: model, seed, snapshot.
    #[arg(long, num_args = 1.., value_parser = ["model", "seed", "snapshot"])]
    pub resource_type: Vec<String>,
    /// Leave out these kinds of node.
    #[arg(long, num_args = 1.., value_parser = ["model", "seed", "snapshot"])]
    pub exclude_resource_type: Vec<String>,
}

/// Run the command.
pub async fn clone(global: &GlobalArgs, args: &CloneArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let project = load_project(global)?;
    let state_dir = args.select.state.as_ref().context(
        "clone needs --state DIR: the folder holding the manifest.json of the run to clone (for example prod's target/)",
    )?;
    let path = state_dir.join("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a manifest", path.display()))?;
    let (state_db, state_lake, state_meta) = state_target(&manifest).with_context(|| {
        format!(
            "{} was not written by Strata, so it does not say where its tables are",
            path.display()
        )
    })?;
    let state_meta = crate::context::open_state_meta(&manifest, state_meta)
        .with_context(|| format!("cannot open the state run's catalog {state_meta}"))?;
    let selected = select(&project, &args.select)?;
    let want = |t: &str| {
        (args.resource_type.is_empty() || args.resource_type.iter().any(|r| r == t))
            && !args.exclude_resource_type.iter().any(|r| r == t)
    };
    let order = project.graph.topological_order().unwrap_or_default();
    let nodes: Vec<_> = order
        .into_iter()
        .filter(|id| selected.contains(*id))
        .filter_map(|id| project.node(id))
        .filter(|n| want(n.resource_type()) && n.materialized() != "ephemeral")
        .collect();
    let console = Console::new(global);
    if nodes.is_empty() {
        console.info("Nothing to do: the selection matched no models, seeds or snapshots.");
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = lock_target(&project, global, "clone")?;
    let (warehouse, meta) = open_warehouse(&project)?;
    console.info(&format!(
        "Cloning {} node{} from {} into target `{}`",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        state_dir.display(),
        project.target.name
    ));
    let mut results = Vec::new();
    let total = nodes.len();
    for (i, node) in nodes.iter().enumerate() {
        let t0 = Instant::now();
        let begun = now();
        let relation = node.relation();
        let state_node = &manifest["nodes"][node.unique_id()];
        let (status, message, rows) =
            match (state_node["schema"].as_str(), state_node["alias"].as_str()) {
                _ if !args.full_refresh
                    && meta
                        .relation(
                            &project.target.database,
                            &relation.schema,
                            &relation.identifier,
                        )?
                        .is_some() =>
                {
                    (
                        NodeStatus::Success,
                        "No-op: the relation exists in this target (--full-refresh clones over it)"
                            .to_string(),
                        None,
                    )
                }
                (Some(schema), Some(alias)) => {
                    match state_meta.relation(state_db, schema, alias)? {
                        Some(r) if r.kind == RelationKind::View => {
                            let request = MaterializeRequest::new(
                                node.unique_id(),
                                relation.clone(),
                                Materialization::View,
                                r.sql.unwrap_or_default(),
                                project.invocation_id.clone(),
                            );
                            match warehouse.materialize(&request).await {
                                Ok(o) => (NodeStatus::Success, o.message, None),
                                Err(e) => (NodeStatus::Error, e.to_string(), None),
                            }
                        }
                        Some(_) => {
                            let source = CloneSource {
                                lake: state_lake.to_string(),
                                schema: schema.to_string(),
                                name: alias.to_string(),
                            };
                            match warehouse
                                .clone_table(
                                    &source,
                                    relation,
                                    node.unique_id(),
                                    &project.invocation_id,
                                )
                                .await
                            {
                                Ok(o) => (NodeStatus::Success, o.message, o.rows_affected),
                                Err(e) => (NodeStatus::Error, e.to_string(), None),
                            }
                        }
                        None => (
                            NodeStatus::Skipped,
                            format!("the state run has no relation {schema}.{alias}"),
                            None,
                        ),
                    }
                }
                _ => (
                    NodeStatus::Skipped,
                    "not in the state run's manifest".to_string(),
                    None,
                ),
            };
        let word = match status {
            NodeStatus::Success => "OK",
            NodeStatus::Skipped => "SKIP",
            _ => "ERROR",
        };
        console.info(&format!(
            "{} of {total} {word} clone {}.{}: {message}",
            i + 1,
            relation.schema,
            relation.identifier
        ));
        results.push(NodeResult {
            unique_id: node.unique_id().to_string(),
            name: node.name().to_string(),
            resource_type: node.resource_type().to_string(),
            relation_name: format!("{}.{}", relation.schema, relation.identifier),
            relation: relation.to_string(),
            materialized: node.materialized().to_string(),
            status,
            message,
            seconds: t0.elapsed().as_secs_f64(),
            rows_affected: rows,
            failures: None,
            started_at: begun,
            completed_at: now(),
            compiled_sql: None,
            file: node.file().display().to_string(),
            sample: None,
        });
    }
    let results = RunResults {
        run_id: project.invocation_id.clone(),
        results,
        elapsed: started.elapsed().as_secs_f64(),
        hooks_failed: false,
        cancelled: false,
    };
    write_artifact(
        &project,
        "run_results.json",
        &super::run::run_results(&project, &results, "clone"),
    )?;
    console.summary(&results, "node");
    // A node the state run did not build is skipped, not a failure.
    let failed = results
        .results
        .iter()
        .any(|r| r.status == NodeStatus::Error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
