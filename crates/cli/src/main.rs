//! `strata`: the analytics platform in one binary.
//!
//! Every command takes the same walk: load the project, render its Jinja, analyse and plan
//! the DAG, execute on the target's warehouse, and record the results.

mod commands;
mod context;
mod logging;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Strata builds dbt-compatible SQL projects on an embedded DataFusion + Delta Lake warehouse.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The project folder (holding strata.yml or dbt_project.yml; default: STRATA_PROJECT_DIR,
    /// DBT_PROJECT_DIR, else the current folder).
    #[arg(long, global = true, env = "STRATA_PROJECT_DIR")]
    pub project_dir: Option<PathBuf>,
    /// The folder holding profiles.yml (default: STRATA_PROFILES_DIR, DBT_PROFILES_DIR, the
    /// project folder, then ~/.dbt).
    #[arg(long, global = true)]
    pub profiles_dir: Option<PathBuf>,
    /// The target (output) of the profile to use, e.g. dev or prod (default: STRATA_TARGET,
    /// DBT_TARGET, else the profile's `target`).
    #[arg(long, short = 't', global = true, env = "STRATA_TARGET")]
    pub target: Option<String>,
    /// The profile to use instead of the project file's `profile`.
    #[arg(long, global = true, env = "DBT_PROFILE")]
    pub profile: Option<String>,
    /// Project variables as YAML, e.g. --vars '{start_date: 2024-01-01}'.
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// How many models to build at once (overrides the target's `threads`).
    #[arg(long, global = true, env = "DBT_THREADS")]
    pub threads: Option<usize>,
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DBT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Print only errors and the final summary.
    #[arg(long, short = 'q', global = true, env = "DBT_QUIET", value_parser = clap::builder::BoolishValueParser::new())]
    pub quiet: bool,
    /// Seconds to wait when another strata process is writing to the same target, before
    /// giving up (0: fail at once).
    #[arg(
        long,
        global = true,
        default_value_t = 600,
        env = "STRATA_LOCK_TIMEOUT"
    )]
    pub lock_timeout: u64,
    /// Accepted for dbt's command lines: Strata parses the whole project every time, in well
    /// under a second for thousands of models.
    #[arg(long, global = true, hide = true)]
    pub no_partial_parse: bool,
    /// Accepted for dbt's command lines (see --no-partial-parse).
    #[arg(long, global = true, hide = true)]
    pub partial_parse: bool,
    /// Treat warnings as errors: a test that would warn fails (exit code 1), as dbt's
    /// --warn-error.
    #[arg(long, global = true, env = "DBT_WARN_ERROR", value_parser = clap::builder::BoolishValueParser::new())]
    pub warn_error: bool,
    /// Keep every test's failing rows in the audit schema, as `store_failures: true` on each
    /// (test and build).
    #[arg(long, global = true, env = "DBT_STORE_FAILURES", value_parser = clap::builder::BoolishValueParser::new())]
    pub store_failures: bool,
    /// The least severe events to show: debug, info, warn or error (as STRATA_LOG=LEVEL).
    #[arg(long, global = true, value_parser = ["debug", "info", "warn", "error"], env = "DBT_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Show Strata's debug events (as STRATA_LOG=debug).
    #[arg(long, short = 'd', global = true, env = "DBT_DEBUG", value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,
    /// Which warnings are errors, as dbt's --warn-error-options: YAML or JSON such as
    /// '{error: all, warn: [NoNodesForSelectionCriteria]}' or '{error: [TestWarning]}'
    /// (`include`/`exclude` are read as `error`/`warn`; `silence` hides warnings).
    #[arg(long, global = true, env = "DBT_WARN_ERROR_OPTIONS")]
    pub warn_error_options: Option<String>,
    /// Also write every status line and event, with Strata's debug events, to
    /// DIR/strata.log (appended), as dbt's --log-path.
    #[arg(long, global = true, env = "DBT_LOG_PATH", value_name = "DIR")]
    pub log_path: Option<PathBuf>,
    /// Hide what templates print with print() (dbt's --no-print; DBT_PRINT=false).
    #[arg(long, global = true, overrides_with = "print")]
    pub no_print: bool,
    /// Show what templates print with print() (the default).
    #[arg(long, global = true, hide = true)]
    pub print: bool,
}

impl GlobalArgs {
    /// The project folder: --project-dir, STRATA_PROJECT_DIR, DBT_PROJECT_DIR, else `.`.
    pub fn project_dir(&self) -> PathBuf {
        self.project_dir
            .clone()
            .or_else(|| std::env::var_os("DBT_PROJECT_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The target: --target, STRATA_TARGET, DBT_TARGET, else the profile's default.
    pub fn target(&self) -> Option<String> {
        self.target
            .clone()
            .or_else(|| std::env::var("DBT_TARGET").ok().filter(|t| !t.is_empty()))
    }
}

/// How log and status lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// dbt's `--indirect-selection` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum IndirectSelection {
    /// A test any of whose nodes is selected.
    #[default]
    Eager,
    /// A test all of whose nodes are selected.
    Cautious,
    /// A test whose nodes are all selected or ancestors of the selection.
    Buildable,
    /// No test through its nodes.
    Empty,
}

/// Node selection, as dbt spells it.
#[derive(Debug, Clone, Args, Default)]
pub struct SelectArgs {
    /// Nodes to include: names, `+name`, `name+`, `@name`, `tag:x`, `path:dir`,
    /// `config.materialized:table`; spaces make a union, commas an intersection.
    #[arg(long, short = 's', num_args = 1.., alias = "models", short_alias = 'm')]
    pub select: Vec<String>,
    /// Nodes to leave out, in the same grammar.
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// Which tests of the selected nodes are selected too: eager (a test any of whose nodes
    /// is selected), cautious (all of them), buildable (all of them or their ancestors), empty.
    #[arg(long, value_enum, default_value_t = IndirectSelection::Eager, env = "DBT_INDIRECT_SELECTION")]
    pub indirect_selection: IndirectSelection,
    /// A named selection of the project's selectors.yml (as dbt's --selector).
    #[arg(long, conflicts_with = "select")]
    pub selector: Option<String>,
    /// A folder holding an earlier run's manifest.json, for `state:new` and `state:modified`.
    #[arg(long, env = "DBT_STATE")]
    pub state: Option<std::path::PathBuf>,
    /// Read models outside the selection that this target has not built from the run in
    /// --state (its target's tables), instead of failing.
    #[arg(long, requires = "state", env = "DBT_DEFER", value_parser = clap::builder::BoolishValueParser::new())]
    pub defer: bool,
    /// With --defer, read the --state run's relation for every model outside the selection,
    /// even one this target has built.
    #[arg(long, requires = "defer", env = "DBT_FAVOR_STATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub favor_state: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a starter project that builds out of the box.
    Init {
        /// Folder to create (default: ./strata_project).
        dir: Option<PathBuf>,
    },
    /// The whole platform on a SaaS product's data: writes the SaaS example project, generates
    /// two years of data, loads it into bronze, builds silver and gold, runs every test and
    /// prints MRR and churn. Running it again in the same folder works.
    Demo {
        /// Folder for the demo project (default: ./strata-demo).
        dir: Option<PathBuf>,
    },
    /// Generate the example projects' raw data: `strata datagen saas --scale 10 --out data/raw`.
    Datagen {
        #[command(subcommand)]
        command: commands::datagen::DatagenCommand,
    },
    /// Check the project file, profile, target, lake and metadata store.
    Debug,
    /// Run the processes of a Ballista cluster (a scheduler, executors) that targets with
    /// `engine: ballista` run their queries on.
    Cluster {
        #[command(subcommand)]
        command: commands::cluster::ClusterCommand,
    },
    /// Call a macro with the project's context: `strata run-operation my_macro --args '{a: 1}'`.
    #[command(name = "run-operation")]
    RunOperation(commands::compile::RunOperationArgs),
    /// Sources: `strata source freshness` checks how recent their newest rows are.
    Source {
        #[command(subcommand)]
        command: commands::freshness::SourceCommand,
    },
    /// Run again what the last run (run, seed, test, snapshot or build) left in error, failed
    /// or skipped, with the same command.
    Retry,
    /// Make the selected models, seeds and snapshots of the run in --state exist in this
    /// target without rebuilding them: tables cloned (sharing its data files), views with its
    /// SQL.
    Clone(commands::clone::CloneArgs),
    /// Load the selected sources that have an `ingest:` mapping (PostgreSQL tables and
    /// queries, files local or in S3, JSON REST APIs) into their bronze tables, exactly once.
    Ingest(commands::ingest::IngestArgs),
    /// List the source tables: how each is loaded, its last load (time, rows) and freshness.
    Sources(commands::sources::SourcesArgs),
    /// Install the packages of packages.yml (local, git and hub) into dbt_packages/, pinned
    /// in package-lock.yml.
    Deps(commands::deps::DepsArgs),
    /// Load and check the project and write target/manifest.json, without compiling or running
    /// anything.
    Parse,
    /// Render models and tests to SQL under target/compiled/ without running them (or `--inline SQL`).
    Compile(commands::compile::CompileArgs),
    /// Build the selected models in the warehouse, in dependency order.
    Run(commands::run::RunArgs),
    /// Load the selected CSV seeds (seed-paths) as tables.
    Seed(commands::run::SeedArgs),
    /// Run the data tests of the selected nodes (a test passes when it finds no rows).
    Test(commands::run::TestArgs),
    /// Record what changed in the selected snapshots' queries (slowly changing dimensions).
    Snapshot(commands::run::SnapshotArgs),
    /// Seeds, models, snapshots and tests together, in dependency order.
    Build(commands::run::BuildArgs),
    /// List the selected nodes.
    #[command(alias = "list")]
    Ls(commands::ls::LsArgs),
    /// Run a model's query, a test's, or an inline query, and print the first rows.
    Show(commands::show::ShowArgs),
    /// Profile a table, column by column: NULL share, distinct values, least and greatest,
    /// most common values, a histogram; `--suggest` prints the data tests it would keep.
    Profile(commands::profile::ProfileArgs),
    /// Serve the web UI (runs, data quality) over the target's catalog, behind a login;
    /// `--dev` serves without one, on this machine only.
    Serve(commands::serve::ServeArgs),
    /// The users who may read what `strata serve` serves, and their roles (admin,
    /// bi_reader); passwords are asked for, never given on the command line.
    Users {
        #[command(subcommand)]
        command: commands::users::UsersCommand,
    },
    /// Metrics defined once in metrics/*.yml: list them, or answer one by name, by a time
    /// grain and by its dimensions (`strata metrics query mrr --by month`).
    Metrics {
        #[command(subcommand)]
        command: commands::metrics::MetricsCommand,
    },
    /// Data quality across runs: `strata quality report` writes the history of every check
    /// and metric as one HTML page.
    Quality {
        #[command(subcommand)]
        command: commands::quality::QualityCommand,
    },
    /// Rows models set aside with their `quarantine:` checks: list them, or retry them after
    /// a fix.
    Quarantine {
        #[command(subcommand)]
        command: commands::quarantine::QuarantineCommand,
    },
    /// List the pipelines (pipelines/*.yml) with their schedules and last runs, checking
    /// each: a mistake is named with its file and line.
    Pipelines,
    /// Run a pipeline now, in this process: its steps in dependency order, with their
    /// retries, timeouts and sensors; the exit code is 1 when the run fails.
    Trigger(commands::pipelines::TriggerArgs),
    /// Run the pipelines on their schedules (cron in a time zone, or after another
    /// pipeline) until Ctrl-C; one scheduler per target. After a crash the next one resumes
    /// the runs left unfinished.
    Scheduler(commands::pipelines::SchedulerArgs),
    /// Run a pipeline for each interval its schedule cuts between --start and --end, with
    /// the interval's bounds given to its steps; again, it runs only what did not succeed.
    Backfill(commands::pipelines::BackfillArgs),
    /// Run one attempt of one step of a pipeline, as an Airflow task does (its data
    /// interval from STRATA_INTERVAL_START and STRATA_INTERVAL_END).
    Step(commands::pipelines::StepArgs),
    /// Write a pipeline for another orchestrator: `strata export airflow daily` writes an
    /// Airflow DAG file.
    Export {
        #[command(subcommand)]
        command: commands::pipelines::ExportCommand,
    },
    /// Pipeline runs, newest first (`strata runs daily`), or one run's steps and attempts
    /// (`strata runs show 12`).
    Runs(commands::pipelines::RunsArgs),
    /// List the versions of a table model (time, operation, rows written, run).
    History(commands::history::HistoryArgs),
    /// Make an earlier version of a table model current again, as a new version.
    Rollback(commands::history::RollbackArgs),
    /// Compact the selected tables' files (z-ordered by `cluster_by` when set).
    Optimize(commands::history::OptimizeArgs),
    /// Delete table files that no version within the retention period needs.
    Vacuum(commands::history::VacuumArgs),
    /// Documentation artifacts: `strata docs generate`.
    Docs {
        #[command(subcommand)]
        command: commands::docs::DocsCommand,
    },
    /// Delete the target folder (compiled SQL and artifacts) and the project's clean-targets.
    Clean,
    /// The target's catalog: `strata catalog rebuild` makes a new one from the lake.
    Catalog {
        #[command(subcommand)]
        command: commands::catalog::CatalogCommand,
    },
}

/// What to say for a dbt command Strata does not have (yet), instead of clap's suggestion of
/// a similar-sounding command.
fn dbt_command_not_here(name: &str) -> Option<&'static str> {
    Some(match name {
        "environment" => {
            "strata has no `environment` command (a dbt Cloud CLI command): `strata debug` shows the project, profile, target, lake and catalog in use"
        }
        "invocation" | "reattach" => {
            "strata has no `invocation` or `reattach` command (dbt Cloud CLI commands): runs happen in this process; target/run_results.json and `strata history MODEL` record them"
        }
        _ => return None,
    })
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Some(missing) = missing_cpu_features() {
        eprintln!(
            "error: this strata was built for x86-64-v3 CPUs, and this CPU lacks {missing}\n  \
             hint: build it for this machine: RUSTFLAGS=\"-C target-cpu=native\" cargo install --path crates/cli"
        );
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::{ContextKind, ContextValue, ErrorKind};
            if e.kind() == ErrorKind::InvalidSubcommand
                && let Some(ContextValue::String(name)) = e.get(ContextKind::InvalidSubcommand)
                && let Some(message) = dbt_command_not_here(name)
            {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    let policy = match logging::WarnPolicy::of(&cli.global) {
        Ok(p) => p,
        Err(e) => {
            report::print_error(&cli.global, &e);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(&cli.global, &policy) {
        report::print_error(&cli.global, &e);
        return ExitCode::from(2);
    }
    report::quiet_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Templates render on these threads; deep macro nesting needs more than the default.
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let run = std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            match cli.command {
                Command::Init { dir } => commands::init::init(&cli.global, dir),
                Command::Demo { dir } => commands::demo::demo(&cli.global, dir).await,
                Command::Debug => commands::debug::debug(&cli.global).await,
                Command::Cluster { command } => {
                    commands::cluster::cluster(&cli.global, &command).await
                }
                Command::Datagen { command } => {
                    commands::datagen::datagen(&cli.global, &command).await
                }
                Command::Compile(args) => commands::compile::compile(&cli.global, &args),
                Command::Run(args) => commands::run::run(&cli.global, &args).await,
                Command::Seed(args) => commands::run::seed(&cli.global, &args).await,
                Command::Test(args) => commands::run::test(&cli.global, &args).await,
                Command::Snapshot(args) => commands::run::snapshot(&cli.global, &args).await,
                Command::Build(args) => commands::run::build(&cli.global, &args).await,
                Command::Ls(args) => commands::ls::ls(&cli.global, &args),
                Command::Parse => commands::compile::parse(&cli.global),
                Command::Deps(args) => commands::deps::deps(&cli.global, &args),
                Command::Sources(args) => commands::sources::sources(&cli.global, &args).await,
                Command::Ingest(args) => commands::ingest::ingest(&cli.global, &args).await,
                Command::Clone(args) => commands::clone::clone(&cli.global, &args).await,
                Command::Retry => commands::run::retry(&cli.global).await,
                Command::Source { command } => {
                    commands::freshness::run(&cli.global, &command).await
                }
                Command::RunOperation(args) => commands::compile::run_operation(&cli.global, &args),
                Command::Show(args) => commands::show::show(&cli.global, &args).await,
                Command::Clean => commands::clean::clean(&cli.global),
                Command::Catalog { command } => {
                    commands::catalog::catalog(&cli.global, &command).await
                }
                Command::Docs { command } => commands::docs::docs(&cli.global, &command).await,
                Command::Profile(args) => commands::profile::profile(&cli.global, &args).await,
                Command::Users { command } => commands::users::users(&cli.global, &command).await,
                Command::Serve(args) => commands::serve::serve(&cli.global, &args).await,
                Command::Pipelines => commands::pipelines::list(&cli.global).await,
                Command::Trigger(args) => commands::pipelines::trigger(&cli.global, &args).await,
                Command::Runs(args) => commands::pipelines::runs(&cli.global, &args).await,
                Command::Backfill(args) => commands::pipelines::backfill(&cli.global, &args).await,
                Command::Step(args) => commands::pipelines::step(&cli.global, &args).await,
                Command::Export { command } => {
                    commands::pipelines::export(&cli.global, &command).await
                }
                Command::Scheduler(args) => {
                    commands::pipelines::scheduler(&cli.global, &args).await
                }
                Command::Metrics { command } => {
                    commands::metrics::metrics(&cli.global, &command).await
                }
                Command::Quality { command } => {
                    commands::quality::quality(&cli.global, &command).await
                }
                Command::Quarantine { command } => {
                    commands::quarantine::quarantine(&cli.global, &command).await
                }
                Command::History(args) => commands::history::history(&cli.global, &args).await,
                Command::Optimize(args) => commands::history::optimize(&cli.global, &args).await,
                Command::Vacuum(args) => commands::history::vacuum(&cli.global, &args).await,
                Command::Rollback(args) => commands::history::rollback(&cli.global, &args).await,
            }
        })
    });
    // A bug that panics ends in one line, never a panic message or a backtrace.
    let result = std::panic::catch_unwind(run).unwrap_or_else(|_| Err(report::panicked()));
    match result {
        // --warn-error: a command that warned fails, once it has done its work.
        Ok(code) if code == ExitCode::SUCCESS && logging::warnings_as_errors() > 0 => {
            let n = logging::warnings_as_errors();
            report::print_error(
                &cli.global,
                &anyhow::anyhow!(
                    "{n} warning{} treated as error{} (--warn-error / --warn-error-options)",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "" } else { "s" }
                ),
            );
            ExitCode::from(1)
        }
        Ok(code) => code,
        Err(e) => {
            report::print_error(&cli.global, &e);
            ExitCode::from(2)
        }
    }
}

/// The CPU features this binary was built to use (`.cargo/config.toml`) that this CPU lacks:
/// said before any of them runs, rather than dying of an illegal instruction later.
fn missing_cpu_features() -> Option<&'static str> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return Some("AVX2");
        }
        if !std::arch::is_x86_feature_detected!("fma") {
            return Some("FMA");
        }
        if !std::arch::is_x86_feature_detected!("bmi2") {
            return Some("BMI2");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    /// Every command's options are consistent (unique names and short flags, valid
    /// defaults): clap checks it here rather than when a user runs the command.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
