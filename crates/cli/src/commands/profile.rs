//! `strata profile`: what a table holds, column by column, and the data tests that would guard
//! it (see `strata_quality::profile`).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use strata_common::Relation;

use crate::GlobalArgs;
use crate::context::{load_project, open_warehouse};

/// Options of `strata profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The model, seed or snapshot to profile (by name), or a source table (`source.table`).
    pub node: String,
    /// Print the data tests the profile suggests, as a properties file (YAML) to adapt and keep.
    #[arg(long)]
    pub suggest: bool,
    /// Print the profile as JSON.
    #[arg(long, conflicts_with = "suggest")]
    pub json: bool,
}

/// What is profiled: a node's name, the properties-file section it is documented in
/// (`models`, `seeds`, `snapshots`, `sources`), and its table.
fn resolve(
    project: &strata_project::Project,
    node: &str,
) -> Result<(String, &'static str, Relation)> {
    if let Some(m) = project.model_by_name(node) {
        let section = match m.kind {
            strata_project::node::SqlKind::Snapshot => "snapshots",
            _ => "models",
        };
        return Ok((m.name.clone(), section, m.relation.clone()));
    }
    if let Some(s) = project.seeds.values().find(|s| s.name == node) {
        return Ok((s.name.clone(), "seeds", s.relation.clone()));
    }
    if let Some((source, table)) = node.split_once('.')
        && let Some(s) = project
            .sources
            .values()
            .find(|s| s.source_name == source && s.name == table)
    {
        return Ok((node.to_string(), "sources", s.relation.clone()));
    }
    let names: Vec<String> = project
        .models
        .values()
        .map(|m| m.name.clone())
        .chain(project.seeds.values().map(|s| s.name.clone()))
        .chain(
            project
                .sources
                .values()
                .map(|s| format!("{}.{}", s.source_name, s.name)),
        )
        .collect();
    bail!(
        "no model, seed, snapshot or source table named `{node}`{}",
        strata_common::did_you_mean(node, names.iter().map(String::as_str))
    )
}

/// Run the command.
pub async fn profile(global: &GlobalArgs, args: &ProfileArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let (name, section, relation) = resolve(&project, &args.node)?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let shown = format!("{}.{}", relation.schema, relation.identifier);
    let profile =
        strata_quality::profile::profile(warehouse.session(), &relation.to_string(), &shown)
            .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&profile)?);
    } else if args.suggest {
        print!("{}", suggestion(&profile, &name, section));
    } else {
        print!("{}", table(&profile));
    }
    Ok(ExitCode::SUCCESS)
}

/// The suggested tests as a properties file: under the node's section, or under the source's
/// table.
fn suggestion(profile: &strata_quality::profile::Profile, name: &str, section: &str) -> String {
    use strata_quality::profile::{suggested_columns, suggested_table_tests};
    let indent = match section {
        "sources" => 8,
        _ => 4,
    };
    let columns = format!(
        "{}{}",
        suggested_table_tests(profile, indent),
        suggested_columns(profile, indent)
    );
    let package = match columns.contains("dbt_expectations.") {
        true => {
            "# The dbt_expectations tests need that package in packages.yml (then strata deps).\n"
        }
        false => "",
    };
    let header = format!(
        "# Data tests suggested by `strata profile --suggest` from {} rows of {}: keep what holds.\n{package}version: 2\n",
        profile.rows, profile.relation
    );
    match name.split_once('.').filter(|_| section == "sources") {
        Some((source, table)) => format!(
            "{header}sources:\n  - name: {source}\n    tables:\n      - name: {table}\n{columns}"
        ),
        None => format!("{header}{section}:\n  - name: {name}\n{columns}"),
    }
}

/// The profile as an aligned table, one line per column.
fn table(profile: &strata_quality::profile::Profile) -> String {
    use strata_quality::profile::sparkline;
    let mut lines = vec![vec![
        "column".to_string(),
        "type".into(),
        "null %".into(),
        "distinct".into(),
        "min".into(),
        "max".into(),
        "most common".into(),
        "histogram".into(),
    ]];
    let clip = |s: &str| match s.chars().count() > 24 {
        true => format!("{}…", s.chars().take(23).collect::<String>()),
        false => s.to_string(),
    };
    for c in &profile.columns {
        lines.push(vec![
            c.name.clone(),
            c.sql_type.clone(),
            format!("{:.1}", c.null_percent),
            match (c.distinct, c.unique) {
                (_, true) => "all (unique)".into(),
                (Some(d), false) => format!("~{d}"),
                (None, _) => "-".into(),
            },
            clip(c.min.as_deref().unwrap_or("")),
            clip(c.max.as_deref().unwrap_or("")),
            c.top
                .iter()
                .take(3)
                .map(|(v, n)| format!("{} ({n})", clip(v)))
                .collect::<Vec<_>>()
                .join(", "),
            sparkline(&c.histogram),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!("{}: {} rows\n", profile.relation, profile.rows);
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
