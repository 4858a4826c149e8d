//! `strata sources`: every source table of the project, how it is loaded, and its last load
//! (time, rows) with its freshness.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::context::{load_project, open_warehouse, select};
use crate::{GlobalArgs, SelectArgs};

/// Options of `strata sources`.
#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// One JSON object per source table instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run the command.
pub async fn sources(global: &GlobalArgs, args: &SourcesArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let selected = select(&project, &args.select)?;
    let (warehouse, meta) = open_warehouse(&project)?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for s in project.sources.values() {
        if !selected.contains(&s.unique_id) {
            continue;
        }
        let kind = match (&s.ingest, &s.external_location) {
            (Some(i), _) => i
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("ingest")
                .to_string(),
            (None, Some(_)) => "external".to_string(),
            (None, None) => "warehouse".to_string(),
        };
        let last = match s.ingest {
            Some(_) => {
                let committed = warehouse
                    .ingest_version(&s.relation, &strata_ingest::app_id(s))
                    .await?;
                meta.last_ingest_load(&s.unique_id, committed)?
            }
            None => None,
        };
        let age = last.as_ref().and_then(|l| {
            chrono::DateTime::parse_from_rfc3339(&l.loaded_at)
                .ok()
                .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds())
        });
        let freshness = s.config.get("freshness");
        let limit = |key: &str| {
            super::freshness::limit_seconds(key, freshness.and_then(|f| f.get(key)))
                .ok()
                .flatten()
        };
        let status = match (age, limit("error_after"), limit("warn_after")) {
            (None, _, _) => "",
            (Some(a), Some(e), _) if a > e => "error",
            (Some(a), _, Some(w)) if a > w => "warn",
            (Some(_), None, None) => "",
            (Some(_), _, _) => "pass",
        };
        rows.push(json!({
            "source": format!("{}.{}", s.source_name, s.name),
            "unique_id": s.unique_id,
            "kind": kind,
            "relation": format!("{}.{}", s.relation.schema, s.relation.identifier),
            "last_load": last.as_ref().map(|l| l.loaded_at.clone()),
            "last_load_rows": last.as_ref().and_then(|l| l.rows),
            "last_load_replaced": last.as_ref().map(|l| l.replaced),
            "age_seconds": age,
            "freshness": if status.is_empty() { None } else { Some(status) },
        }));
    }
    if args.json {
        for r in &rows {
            println!("{r}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28}  {:<9}  {:<28}  {:<24}  {:>10}  freshness",
        "source", "loaded by", "relation", "last load", "rows"
    );
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let age = r["age_seconds"].as_i64().map(ago).unwrap_or_default();
        println!(
            "{:<28}  {:<9}  {:<28}  {:<24}  {:>10}  {}",
            text("source"),
            text("kind"),
            text("relation"),
            match text("last_load") {
                t if t.is_empty() => "never".to_string(),
                _ => age,
            },
            r["last_load_rows"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_default(),
            text("freshness")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `3 min ago`, `2 h ago`, `5 days ago`.
fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3_600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3_600),
        s => format!("{} days ago", s / 86_400),
    }
}
