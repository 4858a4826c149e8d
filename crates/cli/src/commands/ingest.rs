//! `strata ingest`: load the selected sources that have an `ingest:` mapping into their bronze
//! tables (see `strata_ingest`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::context::{load_project, lock_target, open_warehouse, select};
use crate::report::Console;
use crate::{GlobalArgs, SelectArgs};

/// Options of `strata ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Replace each table with everything its source has, loading every file again.
    #[arg(long)]
    pub full_refresh: bool,
}

/// Run the command.
pub async fn ingest(global: &GlobalArgs, args: &IngestArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let selected = select(&project, &args.select)?;
    let console = Console::new(global);
    let sources = ingested(&project, &selected);
    if sources.is_empty() {
        console.info(
            "Nothing to ingest: no selected source has an `ingest:` mapping (see `ingest:` in docs/reference.md)",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let specs = specs(&project, &sources)?;
    let _lock = lock_target(&project, global, "ingest")?;
    let (warehouse, meta) = open_warehouse(&project)?;
    let failed = load(
        &project,
        &warehouse,
        &meta,
        &sources,
        &specs,
        args.full_refresh,
        &console,
    )
    .await;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The selected sources that have an `ingest:` mapping.
pub fn ingested<'a>(
    project: &'a strata_project::Project,
    selected: &std::collections::BTreeSet<String>,
) -> Vec<&'a strata_project::Source> {
    project
        .sources
        .values()
        .filter(|s| s.ingest.is_some() && selected.contains(&s.unique_id))
        .collect()
}

/// Every table's settings, read before anything is loaded.
pub fn specs(
    project: &strata_project::Project,
    sources: &[&strata_project::Source],
) -> Result<Vec<strata_ingest::spec::TableSpec>> {
    let render = |text: &str| -> strata_engine::Result<String> {
        project
            .jinja
            .render_str(text)
            .map_err(|e| strata_engine::Error::user(format!("`ingest:`: {e}")))
    };
    Ok(sources
        .iter()
        .map(|s| strata_ingest::spec::table_spec(s, &render))
        .collect::<strata_engine::Result<Vec<_>>>()?)
}

/// Load `sources` (with their `specs`), one line each and a summary; the number that failed.
pub async fn load(
    project: &strata_project::Project,
    warehouse: &strata_engine::EmbeddedWarehouse,
    meta: &strata_meta::MetaStore,
    sources: &[&strata_project::Source],
    specs: &[strata_ingest::spec::TableSpec],
    full_refresh: bool,
    console: &Console,
) -> usize {
    let started = Instant::now();
    let options = strata_ingest::Options {
        full_refresh,
        run_id: project.invocation_id.clone(),
        progress: Default::default(),
    };
    let total = sources.len();
    console.info(&format!(
        "Ingesting {total} source table{} into target `{}`",
        if total == 1 { "" } else { "s" },
        project.target.name
    ));
    let (mut loaded, mut current, mut failed) = (0, 0, 0);
    for (i, (source, spec)) in sources.iter().zip(specs).enumerate() {
        let t0 = Instant::now();
        let name = format!("{}.{}", source.source_name, source.name);
        let relation = format!("{}.{}", source.relation.schema, source.relation.identifier);
        options.progress.reset();
        let bar = live_progress(console, &name, &options.progress);
        let loaded_table =
            strata_ingest::ingest_table(&project.root, warehouse, meta, source, spec, &options)
                .await;
        if let Some((bar, ticker)) = bar {
            ticker.abort();
            bar.finish_and_clear();
        }
        match loaded_table {
            Ok(o) if o.load.is_none() => {
                current += 1;
                console.info(&format!(
                    "{} of {total} OK ingest {name}: up to date, nothing new [{:.2}s]",
                    i + 1,
                    t0.elapsed().as_secs_f64()
                ));
            }
            Ok(o) => {
                loaded += 1;
                console.info(&format!(
                    "{} of {total} OK ingest {name} into {relation}: {} row{} from {} {}{}{}{} [{:.2}s]",
                    i + 1,
                    o.rows,
                    if o.rows == 1 { "" } else { "s" },
                    o.files,
                    o.unit,
                    if o.files == 1 { "" } else { "s" },
                    if o.replaced { ", table replaced" } else { "" },
                    match o.quarantined {
                        0 => String::new(),
                        n => format!(", {n} quarantined"),
                    },
                    t0.elapsed().as_secs_f64()
                ));
            }
            Err(e) => {
                failed += 1;
                console.info(&format!(
                    "{} of {total} ERROR ingest {name}: {e} [{:.2}s]",
                    i + 1,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
    }
    console.info(&format!(
        "Ingested in {:.2}s. LOADED={loaded} UP-TO-DATE={current} ERROR={failed} TOTAL={total}",
        started.elapsed().as_secs_f64()
    ));
    failed
}

/// A line that shows, while `name` loads, the rows and bytes read and the rate (on a
/// terminal only); with the task that updates it.
fn live_progress(
    console: &Console,
    name: &str,
    progress: &std::sync::Arc<strata_ingest::Progress>,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    use std::sync::atomic::Ordering::Relaxed;
    if !console.live() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(format!("ingest {name}"));
    let (shown, progress, name) = (bar.clone(), progress.clone(), name.to_string());
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let (rows, bytes) = (progress.rows.load(Relaxed), progress.bytes.load(Relaxed));
            if rows == 0 && bytes == 0 {
                // A files load: what it is reading (its rows are counted as they are written).
                let files = progress.files.load(Relaxed);
                if files > 0 {
                    shown.set_message(format!(
                        "ingest {name}: reading {files} file{} ({:.1} MiB)",
                        if files == 1 { "" } else { "s" },
                        progress.file_bytes.load(Relaxed) as f64 / (1 << 20) as f64
                    ));
                }
                continue;
            }
            let seconds = started.elapsed().as_secs_f64().max(0.001);
            shown.set_message(format!(
                "ingest {name}: {rows} rows, {:.1} MiB, {:.0} rows/s",
                bytes as f64 / (1 << 20) as f64,
                rows as f64 / seconds
            ));
        }
    });
    Some((bar, ticker))
}
