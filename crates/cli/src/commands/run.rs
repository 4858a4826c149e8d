//! `strata run`: build the selected models.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use strata_project::Project;
use strata_project::artifacts::{STRATA_VERSION, manifest, manifest_compiled, write_artifact};
use strata_runner::{RunResults, Runner};

use crate::context::{TargetWarehouse, open_target, select};
use crate::report::Console;
use crate::{GlobalArgs, IndirectSelection, SelectArgs};

/// Re-running a period of microbatch models.
#[derive(Debug, Args, Default)]
pub struct EventTimeArgs {
    /// Microbatch models: build the batches from this time (e.g. 2024-01-01 or
    /// '2024-01-01 06:00'), replacing their rows, without a full refresh.
    #[arg(long)]
    pub event_time_start: Option<String>,
    /// Microbatch models: stop at this time (exclusive; default: now).
    #[arg(long, requires = "event_time_start")]
    pub event_time_end: Option<String>,
    /// Microbatch models: refuse to run more batches than this in one build (a `begin` far in
    /// the past would otherwise start thousands of batches).
    #[arg(long, default_value_t = strata_runner::microbatch::DEFAULT_MAX_BATCHES)]
    pub max_batches: usize,
}

impl EventTimeArgs {
    fn parse(&self) -> Result<(Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>)> {
        let parse = |flag: &str, v: &Option<String>| -> Result<Option<chrono::NaiveDateTime>> {
            match v {
                None => Ok(None),
                Some(text) => strata_runner::microbatch::parse_time(text).map(Some).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--{flag} `{text}` is not a time\n  hint: write it as 2024-01-01 or '2024-01-01 06:00:00' (UTC)"
                    )
                }),
            }
        };
        let start = parse("event-time-start", &self.event_time_start)?;
        let end = parse("event-time-end", &self.event_time_end)?;
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            anyhow::bail!("--event-time-start must be before --event-time-end");
        }
        Ok((start, end))
    }
}

/// Options of `strata run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub event_time: EventTimeArgs,
    /// Stop at the first failure; nodes not yet started are skipped.
    #[arg(long, short = 'x', env = "DBT_FAIL_FAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub fail_fast: bool,
    /// Rebuild incremental models from scratch (tables and views are always rebuilt).
    #[arg(long)]
    pub full_refresh: bool,
    /// Build every model with no rows: refs and sources read nothing, so a CI run checks the
    /// SQL and the schemas in seconds (as dbt's --empty).
    #[arg(long)]
    pub empty: bool,
}

/// Run the command.
pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<ExitCode> {
    execute(
        global,
        &args.select,
        Flags {
            event_time: args.event_time.parse()?,
            max_batches: args.event_time.max_batches,
            empty: args.empty,
            ..Flags::new(args.fail_fast, args.full_refresh)
        },
        "run",
        &["model"],
    )
    .await
}

/// Options of `strata seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Stop at the first failure; seeds not yet started are skipped.
    #[arg(long, short = 'x', env = "DBT_FAIL_FAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub fail_fast: bool,
    /// Accepted for dbt compatibility: seeds are always reloaded in full.
    #[arg(long)]
    pub full_refresh: bool,
}

/// `strata seed`: load the selected CSV seeds.
pub async fn seed(global: &GlobalArgs, args: &SeedArgs) -> Result<ExitCode> {
    let flags = Flags::new(args.fail_fast, args.full_refresh);
    execute(global, &args.select, flags, "seed", &["seed"]).await
}

/// Options of `strata test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Stop at the first failing test.
    #[arg(long, short = 'x', env = "DBT_FAIL_FAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub fail_fast: bool,
    /// Only these kinds of test: test (data tests), unit_test.
    #[arg(long, num_args = 1.., value_parser = ["test", "unit_test"])]
    pub resource_type: Vec<String>,
    /// Leave out these kinds of test.
    #[arg(long, num_args = 1.., value_parser = ["test", "unit_test"])]
    pub exclude_resource_type: Vec<String>,
}

/// `strata test`: run the data tests of the selected nodes.
pub async fn test(global: &GlobalArgs, args: &TestArgs) -> Result<ExitCode> {
    let flags = Flags::new(args.fail_fast, false);
    let types: Vec<&str> = ["test", "unit_test"]
        .into_iter()
        .filter(|t| args.resource_type.is_empty() || args.resource_type.iter().any(|r| r == t))
        .filter(|t| !args.exclude_resource_type.iter().any(|r| r == t))
        .collect();
    execute(global, &args.select, flags, "test", &types).await
}

/// Options of `strata snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Stop at the first failure; snapshots not yet started are skipped.
    #[arg(long, short = 'x', env = "DBT_FAIL_FAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub fail_fast: bool,
}

/// `strata snapshot`: record what changed in the selected snapshots' queries.
pub async fn snapshot(global: &GlobalArgs, args: &SnapshotArgs) -> Result<ExitCode> {
    let flags = Flags::new(args.fail_fast, false);
    execute(global, &args.select, flags, "snapshot", &["snapshot"]).await
}

/// Options of `strata build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub event_time: EventTimeArgs,
    /// Stop at the first failure.
    #[arg(long, short = 'x', env = "DBT_FAIL_FAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub fail_fast: bool,
    /// Rebuild incremental models and reload seeds from scratch (tables always are).
    #[arg(long)]
    pub full_refresh: bool,
    /// Build every model with no rows (refs and sources read nothing); seeds load as usual.
    #[arg(long)]
    pub empty: bool,
    /// First load the selected sources that have an `ingest:` mapping (as `strata ingest`),
    /// so one command goes from sources to gold; nothing is built when a load fails.
    #[arg(long)]
    pub ingest: bool,
    /// Only these kinds of node: model, seed, snapshot, test (data tests), unit_test.
    #[arg(long, num_args = 1.., value_parser = ["model", "seed", "snapshot", "test", "unit_test"])]
    pub resource_type: Vec<String>,
    /// Leave out these kinds of node.
    #[arg(long, num_args = 1.., value_parser = ["model", "seed", "snapshot", "test", "unit_test"])]
    pub exclude_resource_type: Vec<String>,
}

/// `strata build`: seeds, models, snapshots and tests in DAG order; a failing test skips what is
/// downstream of the node it tests.
pub async fn build(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode> {
    execute(
        global,
        &args.select,
        Flags {
            event_time: args.event_time.parse()?,
            max_batches: args.event_time.max_batches,
            empty: args.empty,
            ingest: args.ingest,
            ..Flags::new(args.fail_fast, args.full_refresh)
        },
        "build",
        &build_types(&args.resource_type, &args.exclude_resource_type),
    )
    .await
}

/// `strata retry`: run again, with the same command, the nodes the last run's
/// run_results.json lists as errored, failed or skipped.
pub async fn retry(global: &GlobalArgs) -> Result<ExitCode> {
    let project = crate::context::load_project(global)?;
    let path = project.target_dir().join("run_results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "there is no earlier run to retry ({}: {e}); run `strata build` first",
            path.display()
        )
    })?;
    let results: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a run_results.json ({e})", path.display()))?;
    let which = results["args"]["which"]
        .as_str()
        .unwrap_or("build")
        .to_string();
    let names: Vec<String> = results["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| matches!(r["status"].as_str(), Some("error" | "fail" | "skipped")))
        .filter_map(|r| {
            let id = r["unique_id"].as_str()?;
            let parts: Vec<&str> = id.split('.').collect();
            // model.pkg.name, test.pkg.name.hash, unit_test.pkg.model.name
            Some(match parts.as_slice() {
                ["test", _, name, ..] => name.to_string(),
                [.., name] => name.to_string(),
                [] => return None,
            })
        })
        .collect();
    if names.is_empty() {
        crate::report::Console::new(global).info(&format!(
            "Nothing to retry: the last `{which}` had no errors, failures or skipped nodes"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let select = SelectArgs {
        select: names,
        ..Default::default()
    };
    let types: &[&str] = match which.as_str() {
        "run" => &["model"],
        "seed" => &["seed"],
        "test" => &["test", "unit_test"],
        "snapshot" => &["snapshot"],
        _ => &["seed", "model", "snapshot", "test", "unit_test"],
    };
    let command = match which.as_str() {
        "run" | "seed" | "test" | "snapshot" => which.as_str(),
        _ => "build",
    };
    execute(global, &select, Flags::new(false, false), command, types).await
}

/// The node kinds `build` runs, given `--resource-type` and `--exclude-resource-type`.
fn build_types(only: &[String], except: &[String]) -> Vec<&'static str> {
    ["seed", "model", "snapshot", "test", "unit_test"]
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
        .filter(|t| !except.iter().any(|e| e == t))
        .collect()
}

/// How a command builds.
struct Flags {
    fail_fast: bool,
    full_refresh: bool,
    empty: bool,
    event_time: (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>),
    max_batches: usize,
    /// Load ingested sources first (`build --ingest`).
    ingest: bool,
}

impl Flags {
    fn new(fail_fast: bool, full_refresh: bool) -> Self {
        Self {
            fail_fast,
            full_refresh,
            empty: false,
            event_time: (None, None),
            max_batches: strata_runner::microbatch::DEFAULT_MAX_BATCHES,
            ingest: false,
        }
    }
}

/// Build the selected nodes of the given resource types and report as dbt does.
async fn execute(
    global: &GlobalArgs,
    select_args: &SelectArgs,
    flags: Flags,
    command: &str,
    types: &[&str],
) -> Result<ExitCode> {
    let Flags {
        fail_fast,
        full_refresh,
        empty,
        event_time,
        max_batches,
        ingest,
    } = flags;
    let project = std::sync::Arc::new(crate::context::load_project_with(global, full_refresh)?);
    write_artifact(&project, "manifest.json", &manifest(&project))?;
    let mut selected = select(&project, select_args)?;
    if types.contains(&"test") || types.contains(&"unit_test") {
        add_tests_of(&project, select_args, &mut selected)?;
    }
    let nodes = Runner::runnable(&project, &selected, types);
    let console = Console::new(global);
    let noun = match command {
        "build" => "node".to_string(),
        "test" => "test".to_string(),
        _ => types.join(" and "),
    };
    if nodes.is_empty() {
        console.info(&format!(
            "Nothing to do: the selection matched no {noun}s to build."
        ));
        return Ok(ExitCode::SUCCESS);
    }
    // Tests only read (unless they store failures, or run hooks may write); everything else
    // writes tables.
    let writes = command != "test"
        || !project.on_run_start.is_empty()
        || !project.on_run_end.is_empty()
        || nodes
            .iter()
            .filter_map(|id| project.tests.get(id))
            .any(|t| t.store_failures());
    let _lock = match writes {
        true => Some(crate::context::lock_target(&project, global, command)?),
        false => None,
    };
    let (warehouse, meta) = open_target(&project)?;
    if let TargetWarehouse::Postgres(w) = &warehouse {
        w.check()
            .await
            .map_err(|e| anyhow::anyhow!("target `{}`: {e}", project.target.name))?;
    }
    if writes {
        // This process holds the target's lock: a run still marked `running` was killed.
        let killed = meta.mark_interrupted(
            &["run", "seed", "snapshot", "build"],
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )?;
        if killed > 0 {
            console.info(&format!(
                "{killed} earlier run{} of this target ended without finishing (killed); marked `interrupted`",
                if killed == 1 { "" } else { "s" }
            ));
        }
    }
    if ingest {
        // Sources first, under the same lock: models then read what was just loaded.
        let sources = super::ingest::ingested(&project, &selected);
        if !sources.is_empty() {
            let specs = super::ingest::specs(&project, &sources)?;
            let failed = super::ingest::load(
                &project,
                warehouse.embedded(&project, "ingesting sources (--ingest)")?,
                &meta,
                &sources,
                &specs,
                full_refresh,
                &console,
            )
            .await;
            if failed > 0 {
                eprintln!(
                    "error: {failed} source table{} failed to load; nothing was built",
                    if failed == 1 { "" } else { "s" }
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    console.info(&format!(
        "Running {} {noun}{} on target `{}` with {} thread{}",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        project.target.name,
        project.target.threads,
        if project.target.threads == 1 { "" } else { "s" }
    ));
    let argv: Vec<String> = std::env::args().collect();
    let deferral = crate::context::defer(&project, select_args, &warehouse, &selected)?;
    let (cancel, signal) = interrupt_signals();
    let results = Runner::new(project.clone(), &*warehouse)
        .with_cancel(cancel)
        .with_defer(deferral)
        .with_full_refresh(full_refresh)
        .with_empty(empty)
        .with_event_time(event_time.0, event_time.1)
        .with_max_batches(max_batches)
        .with_meta(meta)
        .with_fail_fast(fail_fast)
        .with_command(command, &argv.join(" "))
        .run(&nodes, &console)
        .await?;
    write_compiled(&project, &results)?;
    // The manifest again, now with the SQL each node ran, as dbt writes it after a run.
    let compiled: std::collections::HashMap<String, String> = results
        .results
        .iter()
        .filter_map(|r| Some((r.unique_id.clone(), r.compiled_sql.clone()?)))
        .collect();
    write_artifact(
        &project,
        "manifest.json",
        &manifest_compiled(&project, &compiled),
    )?;
    write_artifact(
        &project,
        "run_results.json",
        &run_results(&project, &results, command),
    )?;
    if results.cancelled {
        let which = signal.await.unwrap_or("a signal");
        let mut left = Vec::new();
        for r in results
            .results
            .iter()
            .filter(|r| r.message.starts_with("interrupted"))
        {
            if let Some(node) = project.node(&r.unique_id)
                && node.materialized() != "view"
            {
                let relation = node.relation();
                let name = format!("{}.{}", relation.schema, relation.identifier);
                let history = match &warehouse {
                    TargetWarehouse::Embedded(w) => w.history(relation).await.ok(),
                    TargetWarehouse::Postgres(_) => None,
                };
                left.push(match history {
                    Some(versions) if !versions.is_empty() => {
                        format!("{name} left at version {}", versions[0].version)
                    }
                    _ => format!("{name} not created"),
                });
            }
        }
        let tables = match left.is_empty() {
            true => String::new(),
            false => format!("; {}", left.join(", ")),
        };
        eprintln!("interrupted by {which}: the run is recorded as cancelled{tables}");
        return Ok(ExitCode::from(if which == "SIGTERM" { 143 } else { 130 }));
    }
    signal.abort();
    console.summary(&results, &noun);
    Ok(if results.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// SIGINT (Ctrl-C) and SIGTERM stop a run: the receiver turns true, and the task ends with the
/// signal's name. Installed only while nodes run, so a signal at any other time ends the
/// process as usual.
fn interrupt_signals() -> (
    tokio::sync::watch::Receiver<bool>,
    tokio::task::JoinHandle<&'static str>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        #[cfg(unix)]
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        let which = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            () = terminated => "SIGTERM",
        };
        let _ = tx.send(true);
        which
    });
    (rx, task)
}

/// dbt's indirect selection: the tests of selected nodes are selected too (`--indirect-selection`
/// eager: a test any of whose nodes is selected; cautious: all of them; buildable: all of them
/// or their ancestors; empty: none), and the tests of excluded nodes are left out. A unit test
/// goes with its model.
fn add_tests_of(
    project: &Project,
    args: &SelectArgs,
    selected: &mut std::collections::BTreeSet<String>,
) -> Result<()> {
    if args.select.is_empty() && args.exclude.is_empty() && args.selector.is_none() {
        return Ok(());
    }
    let excluded = strata_project::select::Selector::parse(&args.exclude)?.select(project);
    let chosen = selected.clone();
    let ancestors: std::collections::BTreeSet<&str> = chosen
        .iter()
        .flat_map(|id| project.graph.ancestors(id, None))
        .collect();
    for t in project.tests.values() {
        let tested: Vec<&str> = match (&t.kind, &t.attached_node) {
            (strata_project::data_tests::TestKind::Unit(_), Some(model)) => vec![model.as_str()],
            _ => t.depends_on.iter().map(String::as_str).collect(),
        };
        let touches_excluded =
            excluded.contains(&t.unique_id) || tested.iter().any(|d| excluded.contains(*d));
        let picked = |d: &&str| chosen.contains(*d);
        let add = match args.indirect_selection {
            IndirectSelection::Eager => tested.iter().any(picked),
            IndirectSelection::Cautious => !tested.is_empty() && tested.iter().all(picked),
            IndirectSelection::Buildable => {
                tested.iter().any(picked)
                    && tested.iter().all(|d| picked(d) || ancestors.contains(d))
            }
            IndirectSelection::Empty => false,
        };
        if touches_excluded {
            selected.remove(&t.unique_id);
        } else if add {
            selected.insert(t.unique_id.clone());
        }
    }
    Ok(())
}

/// Keep each node's compiled SQL under target/compiled/ (and target/run/), as dbt does.
pub fn write_compiled(project: &Project, results: &RunResults) -> Result<()> {
    for r in &results.results {
        let (Some(sql), Some(model)) = (&r.compiled_sql, project.models.get(&r.unique_id)) else {
            continue;
        };
        for kind in ["compiled", "run"] {
            let path = project.target_dir().join(kind).join(model.compiled_file());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, sql)?;
        }
    }
    Ok(())
}

/// `run_results.json` (dbt's schema v6).
pub fn run_results(project: &Project, results: &RunResults, which: &str) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = results
        .results
        .iter()
        .map(|r| {
            json!({
                "status": r.status.as_str(),
                "timing": [
                    {"name": "compile", "started_at": r.started_at, "completed_at": r.started_at},
                    {"name": "execute", "started_at": r.started_at, "completed_at": r.completed_at},
                ],
                "thread_id": "Thread-1",
                "execution_time": r.seconds,
                "adapter_response": {"_message": r.message, "code": r.message.split(' ').next(), "rows_affected": r.rows_affected},
                "message": r.message,
                "failures": r.failures,
                "unique_id": r.unique_id,
                "compiled": r.compiled_sql.is_some(),
                "compiled_code": r.compiled_sql,
                "relation_name": r.relation,
                "batch_results": null,
            })
        })
        .collect();
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": STRATA_VERSION,
            "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "invocation_id": project.invocation_id,
            "env": {},
        },
        "results": entries,
        "elapsed_time": results.elapsed,
        "args": {"which": which, "target": project.target.name, "threads": project.target.threads},
    })
}
