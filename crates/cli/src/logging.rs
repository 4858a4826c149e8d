//! Where events go: the console (filtered by `STRATA_LOG`, `--log-level`, `--quiet`), a log
//! file (`--log-path`), and the count of warnings that `--warn-error` /
//! `--warn-error-options` turn into errors.
//!
//! A warning dbt users may name in `--warn-error-options` is emitted with the target
//! `strata::warn::<EventName>` (dbt's event names: `NoNodesForSelectionCriteria`, ...);
//! test results that warn are `LogTestResult`, as in dbt.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{GlobalArgs, LogFormat};

/// Strata's own crates: the only ones whose events reach the console unless `STRATA_LOG`
/// names others (the storage libraries log their internals, and their errors reach us anyway).
const OWN_CRATES: [&str; 6] = [
    "strata",
    "strata_common",
    "strata_project",
    "strata_engine",
    "strata_runner",
    "strata_meta",
];

/// The prefix of the targets of named warnings.
const NAMED: &str = "strata::warn::";

/// Which warnings are errors and which are hidden (`--warn-error`, `--warn-error-options`).
#[derive(Debug, Default, Clone)]
pub struct WarnPolicy {
    all: bool,
    error: BTreeSet<String>,
    warn: BTreeSet<String>,
    silence: BTreeSet<String>,
}

impl WarnPolicy {
    /// The policy of the command line: `--warn-error` makes every warning an error;
    /// `--warn-error-options` takes dbt's forms (`error`/`include`: `all` or names,
    /// `warn`/`exclude`: names kept as warnings, `silence`: names hidden).
    pub fn of(global: &GlobalArgs) -> Result<Self> {
        let mut policy = WarnPolicy {
            all: global.warn_error,
            ..Default::default()
        };
        let Some(text) = &global.warn_error_options else {
            return Ok(policy);
        };
        let map = strata_project::project::parse_cli_vars(Some(text)).map_err(|e| {
            anyhow::anyhow!(
                "--warn-error-options: {e}; write YAML or JSON such as '{{error: all, warn: [NoNodesForSelectionCriteria]}}'"
            )
        })?;
        for (key, v) in &map {
            if !matches!(
                key.as_str(),
                "error" | "include" | "warn" | "exclude" | "silence"
            ) {
                anyhow::bail!(
                    "--warn-error-options: unknown key `{key}` (use error, warn or silence)"
                );
            }
            let names: Vec<String> = match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .with_context(|| {
                        format!("--warn-error-options: `{key}` must list event names")
                    })?,
                _ => anyhow::bail!(
                    "--warn-error-options: `{key}` must be `all` or a list of event names"
                ),
            };
            match key.as_str() {
                "error" | "include" => {
                    for n in names {
                        match n.as_str() {
                            "all" | "*" => policy.all = true,
                            _ => {
                                policy.error.insert(n);
                            }
                        }
                    }
                }
                "warn" | "exclude" => policy.warn.extend(names),
                "silence" => policy.silence.extend(names),
                other => anyhow::bail!(
                    "--warn-error-options: unknown key `{other}` (use error, warn or silence)"
                ),
            }
        }
        Ok(policy)
    }

    /// Whether the warning named `name` (empty: unnamed) is an error.
    pub fn is_error(&self, name: &str) -> bool {
        !self.warn.contains(name)
            && !self.silence.contains(name)
            && (self.all || self.error.contains(name))
    }
}

/// Warnings seen that the policy makes errors.
static WARNINGS_AS_ERRORS: AtomicUsize = AtomicUsize::new(0);

/// How many warnings so far were errors under `--warn-error(-options)`.
pub fn warnings_as_errors() -> usize {
    WARNINGS_AS_ERRORS.load(Ordering::Relaxed)
}

/// Counts Strata's warnings that the policy makes errors.
struct WarnCounter(WarnPolicy);

impl<S: tracing::Subscriber> Layer<S> for WarnCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != tracing::Level::WARN || !own(meta.target()) {
            return;
        }
        let name = meta.target().strip_prefix(NAMED).unwrap_or("");
        if self.0.is_error(name) {
            WARNINGS_AS_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn own(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    OWN_CRATES.contains(&krate)
}

/// The log file of `--log-path`, when given.
static LOG_FILE: OnceLock<Mutex<File>> = OnceLock::new();

/// Append a status line to the `--log-path` file, when there is one.
pub fn to_file(line: &str) {
    if let Some(file) = LOG_FILE.get()
        && let Ok(mut f) = file.lock()
    {
        let _ = writeln!(
            f,
            "{} {line}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }
}

/// Set up events: the console on stderr, the `--log-path` file, the warning counter.
/// `STRATA_LOG` sets the console filter: a level (`STRATA_LOG=debug`) applies to Strata's own
/// events; full directives (`STRATA_LOG=deltalake_core=debug`) are used as given.
pub fn init(global: &GlobalArgs, policy: &WarnPolicy) -> Result<()> {
    let own_at = |level: &str| {
        OWN_CRATES
            .iter()
            .map(|c| format!("{c}={level}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut directives = match std::env::var("STRATA_LOG") {
        Ok(v) if v.contains('=') || v.contains(',') => v,
        Ok(level) if !level.trim().is_empty() => format!("off,{}", own_at(level.trim())),
        _ if global.debug => format!("off,{}", own_at("debug")),
        _ if global.log_level.is_some() => {
            let level = global.log_level.as_deref().unwrap_or("info");
            format!("off,{},strata={level}", own_at(level))
        }
        _ if global.quiet => format!("off,{}", own_at("error")),
        _ => format!("off,{},strata=info", own_at("warn")),
    };
    let mut hidden = String::new();
    if global.no_print || std::env::var("DBT_PRINT").is_ok_and(|v| v == "false" || v == "0") {
        hidden.push_str(",strata::print=off");
    }
    for name in &policy.silence {
        hidden.push_str(&format!(",{NAMED}{name}=off"));
    }
    directives.push_str(&hidden);
    let console_filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("warning: STRATA_LOG: {e}; using the default");
        tracing_subscriber::EnvFilter::new(format!("off,{},strata=info{hidden}", own_at("warn")))
    });
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let console: Box<dyn Layer<_> + Send + Sync> = match global.log_format {
        LogFormat::Json => console.json().with_filter(console_filter).boxed(),
        LogFormat::Text => console.without_time().with_filter(console_filter).boxed(),
    };
    let file = match &global.log_path {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--log-path: cannot create {}", dir.display()))?;
            let path = dir.join("strata.log");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("--log-path: cannot write {}", path.display()))?;
            let copy = f
                .try_clone()
                .with_context(|| format!("--log-path: cannot write {}", path.display()))?;
            let _ = LOG_FILE.set(Mutex::new(copy));
            let filter =
                tracing_subscriber::EnvFilter::new(format!("off,{}{hidden}", own_at("debug")));
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(f))
                    .with_ansi(false)
                    .with_filter(filter),
            )
        }
        None => None,
    };
    let counter = WarnCounter(policy.clone()).with_filter(tracing_subscriber::EnvFilter::new(
        format!("off,{}{hidden}", own_at("warn")),
    ));
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .with(counter)
        .try_init();
    to_file(&format!(
        "strata {} {}",
        env!("CARGO_PKG_VERSION"),
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    ));
    Ok(())
}
