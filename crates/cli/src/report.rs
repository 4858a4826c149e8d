//! What users see: dbt-style status lines, a progress bar on terminals, JSON logs, errors.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use strata_runner::{NodeResult, NodeStatus, Reporter, RunEvent, RunResults};

use crate::{GlobalArgs, LogFormat};

/// `println!` that also appends the line to the `--log-path` file.
macro_rules! out {
    () => {{
        println!();
    }};
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        crate::logging::to_file(&line);
    }};
}

/// `eprintln!` that also appends the line to the `--log-path` file.
macro_rules! eout {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        eprintln!("{line}");
        crate::logging::to_file(&line);
    }};
}

/// The last panic's message and place, kept for [`panicked`] instead of printed.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Keep panic messages off the terminal (a worker thread's panic becomes an error where it is
/// joined; the main thread's through [`panicked`]); `STRATA_LOG=debug` shows them.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown cause".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::debug!("panic: {message}{place}");
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{place}"));
        }
    }));
}

/// The error for a panic that reached `main`: a bug, said in one line.
pub fn panicked() -> anyhow::Error {
    let what = LAST_PANIC
        .lock()
        .ok()
        .and_then(|mut l| l.take())
        .unwrap_or_else(|| "unknown cause".into());
    anyhow::anyhow!(
        "internal error: {}\n  hint: this is a bug in Strata; please report it with the command you ran (STRATA_LOG=debug shows more)",
        strata_common::without_backtrace(&what)
    )
}

/// Print a command's failure: the message (which names the file and line) and its cause chain.
pub fn print_error(global: &GlobalArgs, e: &anyhow::Error) {
    match global.log_format {
        LogFormat::Json => {
            let line = serde_json::json!({
                "ts": now(),
                "level": "error",
                "event": "error",
                "message": strata_common::without_backtrace(&format!("{e:#}")),
            });
            eout!("{line}");
        }
        LogFormat::Text => {
            eout!(
                "error: {}",
                strata_common::without_backtrace(&e.to_string())
            );
            for cause in e.chain().skip(1) {
                eout!(
                    "  caused by: {}",
                    strata_common::without_backtrace(&cause.to_string())
                );
            }
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// Writes status lines (and a progress bar when stdout is a terminal).
pub struct Console {
    format: LogFormat,
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
    tty: bool,
}

impl Console {
    /// A console for the global options.
    pub fn new(global: &GlobalArgs) -> Self {
        Self {
            format: global.log_format,
            quiet: global.quiet,
            bar: Mutex::new(None),
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Whether live progress is shown (text output to a terminal, not --quiet).
    pub fn live(&self) -> bool {
        self.tty && !self.quiet && self.format == LogFormat::Text
    }

    /// Print one informational line (suppressed by --quiet).
    pub fn info(&self, text: &str) {
        if self.quiet {
            return;
        }
        match self.format {
            LogFormat::Json => out!(
                "{}",
                serde_json::json!({"ts": now(), "level": "info", "event": "message", "message": text})
            ),
            LogFormat::Text => self.line(&format!("{}  {text}", clock())),
        }
    }

    fn line(&self, text: &str) {
        match self.bar.lock().ok().and_then(|b| b.clone()) {
            Some(bar) => {
                bar.println(text);
                crate::logging::to_file(text);
            }
            None => out!("{text}"),
        }
    }

    /// Print the end-of-run summary and the details of each failure.
    pub fn summary(&self, results: &RunResults, what: &str) {
        if let Ok(mut bar) = self.bar.lock()
            && let Some(b) = bar.take()
        {
            b.finish_and_clear();
        }
        let pass = results.count(NodeStatus::Success) + results.count(NodeStatus::Pass);
        let warn = results.count(NodeStatus::Warn);
        let error = results.count(NodeStatus::Error) + results.count(NodeStatus::Fail);
        let skip = results.count(NodeStatus::Skipped);
        let total = results.results.len();
        if self.format == LogFormat::Json {
            out!(
                "{}",
                serde_json::json!({
                    "ts": now(), "level": if error > 0 { "error" } else { "info" }, "event": "run_finished",
                    "pass": pass, "warn": warn, "error": error, "skip": skip, "total": total, "elapsed": results.elapsed,
                })
            );
            return;
        }
        if !self.quiet || error > 0 {
            out!();
            out!(
                "{}  Finished running {total} {what}{} in {:.2}s.",
                clock(),
                if total == 1 { "" } else { "s" },
                results.elapsed
            );
        }
        let failures: Vec<&NodeResult> = results
            .results
            .iter()
            .filter(|r| r.status.is_failure())
            .collect();
        if !failures.is_empty() {
            out!();
            out!(
                "{}  Completed with {} error{}:",
                clock(),
                failures.len(),
                if failures.len() == 1 { "" } else { "s" }
            );
            for f in failures {
                out!();
                out!(
                    "{}  Failure in {} {} ({})",
                    clock(),
                    f.resource_type,
                    f.name,
                    f.file
                );
                for l in f.message.lines() {
                    out!("{}    {l}", clock());
                }
            }
        }
        for w in results
            .results
            .iter()
            .filter(|r| r.status == NodeStatus::Warn)
        {
            out!();
            out!(
                "{}  Warning in {} {} ({})",
                clock(),
                w.resource_type,
                w.name,
                w.file
            );
            out!("{}    {}", clock(), w.message);
        }
        out!();
        out!(
            "{}  Done. PASS={pass} WARN={warn} ERROR={error} SKIP={skip} TOTAL={total}",
            clock()
        );
    }
}

fn status_line(index: usize, total: usize, r: &NodeResult) -> String {
    let seed = r.resource_type == "seed";
    let failures = r.failures.unwrap_or(0);
    let (word, desc, tail) = match r.status {
        NodeStatus::Pass => (
            "PASS",
            r.name.clone(),
            format!("[PASS in {:.2}s]", r.seconds),
        ),
        NodeStatus::Fail => (
            "FAIL",
            format!("{failures} {}", r.name),
            format!("[FAIL {failures} in {:.2}s]", r.seconds),
        ),
        NodeStatus::Warn => (
            "WARN",
            format!("{failures} {}", r.name),
            format!("[WARN {failures} in {:.2}s]", r.seconds),
        ),
        NodeStatus::Error if r.resource_type == "test" => (
            "ERROR",
            r.name.clone(),
            format!("[ERROR in {:.2}s]", r.seconds),
        ),
        NodeStatus::Success if seed => (
            "OK",
            format!("loaded seed file {}", r.relation_name),
            format!("[{} in {:.2}s]", r.message, r.seconds),
        ),
        NodeStatus::Success if r.resource_type == "snapshot" => (
            "OK",
            format!("snapshotted {}", r.relation_name),
            format!("[{} in {:.2}s]", r.message, r.seconds),
        ),
        NodeStatus::Success => (
            "OK",
            format!("created sql {} model {}", r.materialized, r.relation_name),
            format!("[{} in {:.2}s]", r.message, r.seconds),
        ),
        NodeStatus::Error if seed => (
            "ERROR",
            format!("loading seed file {}", r.relation_name),
            format!("[ERROR in {:.2}s]", r.seconds),
        ),
        NodeStatus::Error if r.resource_type == "snapshot" => (
            "ERROR",
            format!("snapshotting {}", r.relation_name),
            format!("[ERROR in {:.2}s]", r.seconds),
        ),
        NodeStatus::Error => (
            "ERROR",
            format!("creating sql {} model {}", r.materialized, r.relation_name),
            format!("[ERROR in {:.2}s]", r.seconds),
        ),
        NodeStatus::Skipped if r.resource_type == "test" => {
            ("SKIP", format!("test {}", r.name), "[SKIP]".to_string())
        }
        NodeStatus::Skipped => (
            "SKIP",
            format!("relation {}", r.relation_name),
            "[SKIP]".to_string(),
        ),
    };
    let head = format!("{index} of {total} {word} {desc} ");
    let width: usize = 72;
    let dots = width.saturating_sub(head.chars().count()).max(3);
    format!("{}  {head}{} {tail}", clock(), ".".repeat(dots))
}

/// A status line for part of a run (a batch, a hook): `head`, dots, `[status in 0.00s]`.
fn part_line(head: &str, ok: bool, message: &str, seconds: f64) -> String {
    let dots = 82usize.saturating_sub(head.chars().count()).max(3);
    let tail = if ok {
        format!("[{message} in {seconds:.2}s]")
    } else {
        format!("[ERROR in {seconds:.2}s]")
    };
    format!("{head}{} {tail}", ".".repeat(dots))
}

impl Reporter for Console {
    fn report(&self, event: RunEvent<'_>) {
        match event {
            RunEvent::Started { total } => {
                if self.tty && !self.quiet && self.format == LogFormat::Text && total > 1 {
                    let bar = ProgressBar::new(total as u64);
                    if let Ok(style) =
                        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                    {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    if let Ok(mut b) = self.bar.lock() {
                        *b = Some(bar);
                    }
                }
            }
            RunEvent::NodeStarted { unique_id, .. } => {
                if let Ok(b) = self.bar.lock()
                    && let Some(bar) = b.as_ref()
                {
                    bar.set_message(
                        unique_id
                            .rsplit('.')
                            .next()
                            .unwrap_or(unique_id)
                            .to_string(),
                    );
                }
            }
            RunEvent::Batch(b) => {
                if let Ok(bar) = self.bar.lock()
                    && let Some(bar) = bar.as_ref()
                {
                    bar.set_message(format!("{} batch {}/{}", b.relation_name, b.index, b.total));
                }
                if self.format == LogFormat::Json {
                    out!(
                        "{}",
                        serde_json::json!({
                            "ts": now(),
                            "level": if b.ok { "info" } else { "error" },
                            "event": "batch_finished",
                            "unique_id": b.unique_id,
                            "index": b.index,
                            "total": b.total,
                            "batch_id": b.batch_id,
                            "status": if b.ok { "success" } else { "error" },
                            "message": b.message,
                            "seconds": b.seconds,
                        })
                    );
                } else if !self.quiet || !b.ok {
                    let head = format!(
                        "{}  Batch {} of {} {} batch {} of {} ",
                        clock(),
                        b.index,
                        b.total,
                        if b.ok { "OK" } else { "ERROR" },
                        b.batch_id,
                        b.relation_name
                    );
                    self.line(&part_line(&head, b.ok, b.message, b.seconds));
                }
            }
            RunEvent::Hook(h) => {
                if self.format == LogFormat::Json {
                    out!(
                        "{}",
                        serde_json::json!({
                            "ts": now(),
                            "level": if h.ok { "info" } else { "error" },
                            "event": "hook_finished",
                            "phase": h.phase,
                            "name": h.name,
                            "index": h.index,
                            "total": h.total,
                            "status": if h.ok { "success" } else { "error" },
                            "message": h.message,
                            "seconds": h.seconds,
                        })
                    );
                } else if !self.quiet || !h.ok {
                    let head = format!(
                        "{}  {} of {} {} hook: {} ",
                        clock(),
                        h.index,
                        h.total,
                        if h.ok { "OK" } else { "ERROR" },
                        h.name
                    );
                    self.line(&part_line(&head, h.ok, h.message, h.seconds));
                    if !h.ok {
                        for l in h.message.lines() {
                            self.line(&format!("{}    {l}", clock()));
                        }
                    }
                }
            }
            RunEvent::NodeFinished {
                index,
                total,
                result,
            } => {
                if let Ok(b) = self.bar.lock()
                    && let Some(bar) = b.as_ref()
                {
                    bar.inc(1);
                }
                if self.format == LogFormat::Json {
                    out!(
                        "{}",
                        serde_json::json!({
                            "ts": now(),
                            "level": if result.status.is_failure() { "error" } else if result.status == NodeStatus::Warn { "warn" } else { "info" },
                            "event": "node_finished",
                            "index": index,
                            "total": total,
                            "unique_id": result.unique_id,
                            "relation": result.relation_name,
                            "materialized": result.materialized,
                            "status": result.status,
                            "message": result.message,
                            "rows_affected": result.rows_affected,
                            "failures": result.failures,
                            "seconds": result.seconds,
                        })
                    );
                } else if !self.quiet || result.status.is_failure() {
                    self.line(&status_line(index, total, result));
                }
            }
        }
    }
}
