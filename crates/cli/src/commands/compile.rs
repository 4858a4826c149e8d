//! `strata compile`: render models to SQL under target/compiled/.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use strata_engine::Warehouse;
use strata_project::artifacts::{manifest, write_artifact};
use strata_project::compile::Compiler;

use crate::context::{load_project, select};
use crate::report::Console;
use crate::{GlobalArgs, SelectArgs};

/// Options of `strata compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Compile this SQL (with Jinja, refs and macros) and print it, instead of the project's
    /// nodes.
    #[arg(long, conflicts_with = "select")]
    pub inline: Option<String>,
}

/// `strata parse`: load the project (every file, template and property checked) and write
/// its manifest.
pub fn parse(global: &GlobalArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    write_artifact(&project, "manifest.json", &manifest(&project))?;
    let nodes = project.models.len() + project.seeds.len() + project.tests.len();
    Console::new(global).info(&format!(
        "Parsed {nodes} node{} ({} models, {} seeds, {} tests, {} sources); wrote {}",
        if nodes == 1 { "" } else { "s" },
        project.models.len(),
        project.seeds.len(),
        project.tests.len(),
        project.sources.len(),
        project.target_dir().join("manifest.json").display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Run the command.
pub fn compile(global: &GlobalArgs, args: &CompileArgs) -> Result<ExitCode> {
    let project = std::sync::Arc::new(load_project(global)?);
    write_artifact(&project, "manifest.json", &manifest(&project))?;
    let selected = select(&project, &args.select)?;
    // Templates may query the warehouse (run_query, statement, adapter.get_relation).
    let (warehouse, _meta) = crate::context::open_warehouse(&project)?;
    let mut compiler = Compiler::new(project.clone()).with_introspector(warehouse.introspector());
    if let Some(sql) = &args.inline {
        println!("{}", compiler.compile_inline(sql)?);
        return Ok(ExitCode::SUCCESS);
    }
    let console = Console::new(global);
    let mut count = 0;
    let mut last = None;
    for id in project.graph.topological_order().unwrap_or_default() {
        if !selected.contains(id) {
            continue;
        }
        let (sql, path) = if let Some(model) = project.models.get(id) {
            (compiler.compile(id)?.sql, compiler.compiled_path(model))
        } else if let Some(test) = project.tests.get(id) {
            (
                compiler.compile_test(id)?,
                compiler.compiled_test_path(test),
            )
        } else {
            continue;
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &sql)?;
        count += 1;
        last = Some(sql);
    }
    // One selected node: show its SQL, as dbt does.
    if count == 1
        && !args.select.select.is_empty()
        && let Some(sql) = last
    {
        println!("{sql}");
        return Ok(ExitCode::SUCCESS);
    }
    console.info(&format!(
        "Compiled {count} node{} to {}",
        if count == 1 { "" } else { "s" },
        project.target_dir().join("compiled").display()
    ));
    Ok(ExitCode::SUCCESS)
}
