//! `strata source freshness`: how long ago each selected source's newest row was loaded,
//! judged by its `freshness` (`warn_after`, `error_after`) on its `loaded_at_field`, as dbt
//! does; results in `target/sources.json`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use futures::TryStreamExt;
use serde_json::{Value, json};
use strata_engine::Warehouse;
use strata_project::artifacts::write_artifact;
use strata_project::node::Source;

use crate::context::{load_project, open_warehouse, select};
use crate::report::Console;
use crate::{GlobalArgs, SelectArgs};

/// `strata source ...`.
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// How long ago each selected source's newest row was loaded, against its `freshness`.
    Freshness(FreshnessArgs),
}

/// Options of `strata source freshness`.
#[derive(Debug, Args)]
pub struct FreshnessArgs {
    #[command(flatten)]
    pub select: SelectArgs,
}

/// A `warn_after` / `error_after` limit in seconds (none when not given); an error naming
/// what is wrong when it cannot be read.
pub(crate) fn limit_seconds(key: &str, v: Option<&Value>) -> Result<Option<i64>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let count = v.get("count").and_then(Value::as_i64).filter(|c| *c >= 0);
    let unit = match v.get("period").and_then(Value::as_str) {
        Some("minute") => Some(60),
        Some("hour") => Some(3_600),
        Some("day") => Some(86_400),
        _ => None,
    };
    match (count, unit) {
        (Some(c), Some(u)) => Ok(Some(c * u)),
        _ => Err(format!(
            "`{key}` must be {{count: <whole number>, period: minute|hour|day}}, not {v}"
        )),
    }
}

/// Run the command.
pub async fn run(global: &GlobalArgs, command: &SourceCommand) -> Result<ExitCode> {
    let SourceCommand::Freshness(args) = command;
    let project = load_project(global)?;
    let selected = select(&project, &args.select)?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let console = Console::new(global);
    let started = chrono::Utc::now();
    let checked: Vec<&Source> = project
        .sources
        .values()
        .filter(|s| {
            (args.select.select.is_empty() && args.select.selector.is_none())
                || selected.contains(&s.unique_id)
        })
        .filter(|s| {
            s.config.get_str("loaded_at_field").is_some()
                && s.config.get("freshness").is_some_and(|f| !f.is_null())
        })
        .collect();
    if checked.is_empty() {
        console.info(
            "Nothing to check: no selected source has both `freshness` and `loaded_at_field`",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut results = Vec::new();
    let mut worst = 0;
    for (i, s) in checked.iter().enumerate() {
        let field = s.config.get_str("loaded_at_field").unwrap_or_default();
        let freshness = s.config.get("freshness").cloned().unwrap_or(Value::Null);
        let sql = format!(
            "select cast(max({field}) as timestamp(6)) as max_loaded_at from {}",
            s.relation
        );
        let t0 = std::time::Instant::now();
        let max_loaded_at = match warehouse.query(&sql, None).await {
            Ok(stream) => stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| strata_engine::error::describe_datafusion_error(&e))
                .map(|batches| {
                    batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
                        let col = b.column(0).as_primitive_opt::<TimestampMicrosecondType>()?;
                        col.is_valid(0)
                            .then(|| chrono::DateTime::from_timestamp_micros(col.value(0)))
                            .flatten()
                    })
                }),
            Err(e) => Err(e.to_string()),
        };
        let now = chrono::Utc::now();
        let label = format!("{}.{}", s.source_name, s.name);
        let (status, age, line) = match max_loaded_at {
            Err(e) => (
                "runtime error",
                None,
                format!("ERROR freshness of {label}: {e}"),
            ),
            Ok(None) => (
                "error",
                None,
                format!("ERROR STALE freshness of {label}: no rows"),
            ),
            Ok(Some(t)) => {
                let age = (now - t).num_seconds();
                let limits =
                    limit_seconds("warn_after", freshness.get("warn_after")).and_then(|warn| {
                        Ok((
                            warn,
                            limit_seconds("error_after", freshness.get("error_after"))?,
                        ))
                    });
                match limits {
                    Err(e) => (
                        "runtime error",
                        Some((t, age)),
                        format!("ERROR freshness of {label}: {e}"),
                    ),
                    Ok((warn, error)) => {
                        let status = if error.is_some_and(|l| age > l) {
                            "error"
                        } else if warn.is_some_and(|l| age > l) {
                            "warn"
                        } else {
                            "pass"
                        };
                        let word = match status {
                            "error" => "ERROR STALE",
                            "warn" => "WARN",
                            _ => "PASS",
                        };
                        (
                            status,
                            Some((t, age)),
                            format!(
                                "{word} freshness of {label}: newest row loaded {age} s ago ({t})"
                            ),
                        )
                    }
                }
            }
        };
        worst = worst.max(match status {
            "pass" => 0,
            "warn" => 1,
            _ => 2,
        });
        console.info(&format!("{} of {} {line}", i + 1, checked.len()));
        results.push(json!({
            "unique_id": s.unique_id,
            "max_loaded_at": age.map(|(t, _)| t.to_rfc3339()),
            "snapshotted_at": now.to_rfc3339(),
            "max_loaded_at_time_ago_in_s": age.map(|(_, a)| a as f64),
            "status": status,
            "criteria": {
                "warn_after": freshness.get("warn_after").cloned().unwrap_or(json!({})),
                "error_after": freshness.get("error_after").cloned().unwrap_or(json!({})),
                "filter": freshness.get("filter").cloned().unwrap_or(Value::Null),
            },
            "adapter_response": {},
            "timing": [],
            "thread_id": "Thread-1",
            "execution_time": t0.elapsed().as_secs_f64(),
        }));
    }
    write_artifact(
        &project,
        "sources.json",
        &json!({
            "metadata": {
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json",
                "dbt_version": env!("CARGO_PKG_VERSION"),
                "generated_at": chrono::Utc::now().to_rfc3339(),
                "invocation_id": project.invocation_id,
                "env": {},
            },
            "results": results,
            "elapsed_time": (chrono::Utc::now() - started).num_milliseconds() as f64 / 1000.0,
        }),
    )?;
    // As dbt: an error (or a source that cannot be read) fails the command; a warning does not.
    Ok(if worst >= 2 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
