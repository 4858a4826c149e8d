//! `strata compile`: render models to SQL under target/compiled/.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use strata_project::artifacts::{manifest, manifest_compiled, write_artifact};
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

/// Options of `strata run-operation`.
#[derive(Debug, Args)]
pub struct RunOperationArgs {
    /// The macro to run (`name` or `package.name`).
    pub macro_name: String,
    /// Its arguments, as YAML: --args '{table: orders, days: 7}'.
    #[arg(long)]
    pub args: Option<String>,
}

/// `strata run-operation MACRO --args '{...}'`: call a macro with the project's context, as
/// dbt does; what it logs is printed, and so is what it returns, when anything.
pub fn run_operation(global: &GlobalArgs, args: &RunOperationArgs) -> Result<ExitCode> {
    let project = std::sync::Arc::new(load_project(global)?);
    let (warehouse, _meta) = crate::context::open_target(&project)?;
    let mut compiler = Compiler::new(project.clone()).with_introspector(warehouse.introspector());
    // The same YAML mapping as --vars.
    let call_args = strata_project::project::parse_cli_vars(args.args.as_deref()).map_err(|e| {
        anyhow::anyhow!("--args: {e} (give a YAML mapping, e.g. --args '{{table: orders}}')")
    })?;
    let name = &args.macro_name;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        anyhow::bail!("`{name}` is not a macro name");
    }
    let plain = name.rsplit('.').next().unwrap_or(name);
    if !project.jinja.macros().contains_key(plain) {
        anyhow::bail!(
            "no macro named `{name}`{}",
            strata_common::did_you_mean(plain, project.jinja.macros().keys().map(String::as_str))
        );
    }
    let kwargs: Vec<String> = call_args
        .iter()
        .map(|(k, v)| format!("{k}={}", strata_project::data_tests::jinja_literal(v)))
        .collect();
    let out = compiler.compile_inline(&format!("{{{{ {name}({}) }}}}", kwargs.join(", ")))?;
    if !out.trim().is_empty() {
        println!("{}", out.trim());
    }
    Ok(ExitCode::SUCCESS)
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
    let (warehouse, _meta) = crate::context::open_target(&project)?;
    let mut compiler = Compiler::new(project.clone()).with_introspector(warehouse.introspector());
    if let Some(sql) = &args.inline {
        println!("{}", compiler.compile_inline(sql)?);
        return Ok(ExitCode::SUCCESS);
    }
    let console = Console::new(global);
    let mut count = 0;
    let mut last = None;
    let mut compiled = std::collections::HashMap::new();
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
        compiled.insert(id.to_string(), sql.clone());
        last = Some(sql);
    }
    write_artifact(
        &project,
        "manifest.json",
        &manifest_compiled(&project, &compiled),
    )?;
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
