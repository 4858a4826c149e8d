//! `strata ls`: list the selected nodes.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::context::{load_project, select};
use crate::{GlobalArgs, SelectArgs};

/// How `ls` prints each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LsOutput {
    /// The fully qualified name, dot-separated (usable as a selector).
    Selector,
    /// The node's name.
    Name,
    /// The node's file.
    Path,
    /// One JSON object per line.
    Json,
}

/// The resource types `ls` lists.
const KINDS: [&str; 8] = [
    "model",
    "snapshot",
    "seed",
    "test",
    "unit_test",
    "source",
    "analysis",
    "exposure",
];

/// Options of `strata ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Only nodes of these types: model, snapshot, seed, test (data tests), unit_test,
    /// source, analysis, exposure.
    #[arg(long, num_args = 1.., value_parser = KINDS)]
    pub resource_type: Vec<String>,
    /// Leave out nodes of these types.
    #[arg(long, num_args = 1.., value_parser = KINDS)]
    pub exclude_resource_type: Vec<String>,
    /// What to print for each node.
    #[arg(long, short = 'o', value_enum, default_value_t = LsOutput::Selector)]
    pub output: LsOutput,
}

/// Run the command.
pub fn ls(global: &GlobalArgs, args: &LsArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let selected = select(&project, &args.select)?;
    let want = |t: &str| {
        (args.resource_type.is_empty() || args.resource_type.iter().any(|r| r == t))
            && !args.exclude_resource_type.iter().any(|r| r == t)
    };
    for id in &selected {
        if let Some(m) = project.models.get(id) {
            if !want(m.kind.as_str()) {
                continue;
            }
            match args.output {
                LsOutput::Selector => println!("{}", m.fqn.join(".")),
                LsOutput::Name => println!("{}", m.name),
                LsOutput::Path => println!("{}", m.original_file_path.display()),
                LsOutput::Json => println!(
                    "{}",
                    serde_json::json!({
                        "name": m.name, "resource_type": m.kind.as_str(), "package_name": m.package,
                        "original_file_path": m.original_file_path, "unique_id": m.unique_id,
                        "alias": m.relation.identifier, "config": m.config.to_json(), "tags": m.config.tags(),
                        "depends_on": {"nodes": project.graph.parents(&m.unique_id)},
                    })
                ),
            }
        } else if let Some(s) = project.seeds.get(id) {
            if !want("seed") {
                continue;
            }
            match args.output {
                LsOutput::Selector => println!("{}", s.fqn.join(".")),
                LsOutput::Name => println!("{}", s.name),
                LsOutput::Path => println!("{}", s.original_file_path.display()),
                LsOutput::Json => println!(
                    "{}",
                    serde_json::json!({
                        "name": s.name, "resource_type": "seed", "package_name": s.package,
                        "original_file_path": s.original_file_path, "unique_id": s.unique_id,
                        "alias": s.relation.identifier, "config": s.config.to_json(), "tags": s.config.tags(),
                    })
                ),
            }
        } else if let Some(t) = project.tests.get(id) {
            if !want(t.resource_type()) {
                continue;
            }
            match args.output {
                LsOutput::Selector => println!("{}", t.fqn.join(".")),
                LsOutput::Name => println!("{}", t.name),
                LsOutput::Path => println!("{}", t.original_file_path.display()),
                LsOutput::Json => println!(
                    "{}",
                    serde_json::json!({
                        "name": t.name, "resource_type": t.resource_type(), "package_name": t.package,
                        "original_file_path": t.original_file_path, "unique_id": t.unique_id,
                        "config": t.config.to_json(), "depends_on": {"nodes": t.depends_on},
                    })
                ),
            }
        } else if let Some(s) = project.sources.get(id) {
            if !want("source") {
                continue;
            }
            match args.output {
                LsOutput::Selector => println!("source:{}.{}.{}", s.package, s.source_name, s.name),
                LsOutput::Name => println!("{}.{}", s.source_name, s.name),
                LsOutput::Path => println!("{}", s.original_file_path.display()),
                LsOutput::Json => println!(
                    "{}",
                    serde_json::json!({
                        "name": s.name, "source_name": s.source_name, "resource_type": "source",
                        "package_name": s.package, "unique_id": s.unique_id,
                        "original_file_path": s.original_file_path,
                    })
                ),
            }
        }
    }
    // Exposures are listed with everything, or when chosen by type, as dbt lists them.
    let everything = args.select.select.is_empty() && args.select.selector.is_none();
    if everything || !args.resource_type.is_empty() {
        for e in project.exposures.values() {
            if !want("exposure")
                || !(everything || args.resource_type.iter().any(|r| r == "exposure"))
            {
                continue;
            }
            match args.output {
                LsOutput::Selector => println!("exposure:{}.{}", e.package, e.name),
                LsOutput::Name => println!("{}", e.name),
                LsOutput::Path => println!("{}", e.original_file_path.display()),
                LsOutput::Json => println!(
                    "{}",
                    serde_json::json!({
                        "name": e.name, "resource_type": "exposure", "package_name": e.package,
                        "unique_id": e.unique_id, "original_file_path": e.original_file_path,
                        "depends_on": {"nodes": e.depends_on},
                    })
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
