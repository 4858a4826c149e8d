//! Ingestion: land source tables in bronze Delta tables, exactly once.
//!
//! A source table with an `ingest:` mapping (see [`spec`]) is read by its connector into a
//! plan of rows (Arrow record batches, streamed by the writer), given the load columns
//! `_strata_loaded_at`, `_strata_batch_id` and `_strata_source`, and written to its bronze
//! table in one Delta commit. That commit carries the load's number as a Delta application
//! transaction; the ledger of what each load read (files) lives in the target's catalog,
//! written before the commit and trusted only up to the number the table holds. A load that
//! dies at any moment is thus either wholly in the table or not at all, and the next run
//! reads again exactly what is missing.

pub mod evolve;
pub mod files;
pub mod http;
pub mod nested;
pub mod postgres;
pub mod spec;

use std::path::Path;

use datafusion::common::ScalarValue;
use datafusion::prelude::lit;
use strata_engine::embedded::{IngestMode, IngestWrite};
use strata_engine::{EmbeddedWarehouse, Error, Result};
use strata_meta::MetaStore;
use strata_project::Source;

use crate::spec::{Connector, TableSpec, Write};

/// How a run of `strata ingest` loads.
#[derive(Debug, Clone)]
pub struct Options {
    /// Replace each table with everything its source has, forgetting what was loaded.
    pub full_refresh: bool,
    /// The invocation: each row's `_strata_batch_id`.
    pub run_id: String,
    /// Rows and bytes read by the table being loaded, as it goes (for a progress display).
    pub progress: std::sync::Arc<Progress>,
}

impl Options {
    /// Whether a load of `spec` replaces the table (rather than adding to it).
    pub fn replaces(&self, spec: &TableSpec) -> bool {
        self.full_refresh || spec.write == Write::Replace
    }
}

/// Rows and bytes a load has read so far (PostgreSQL, HTTP), or the files it is reading.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    /// Files being read by a files load, and their bytes in all.
    pub files: std::sync::atomic::AtomicU64,
    pub file_bytes: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// Start counting again (a new table).
    pub fn reset(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rows.store(0, Relaxed);
        self.bytes.store(0, Relaxed);
        self.files.store(0, Relaxed);
        self.file_bytes.store(0, Relaxed);
    }
}

/// What loading one source table did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Rows written (0 when there was nothing new).
    pub rows: u64,
    /// Files read (files) or requests made (http).
    pub files: usize,
    /// What `files` counts: `file` or `request`.
    pub unit: &'static str,
    /// Whether the table was replaced (else rows were added, or nothing was new).
    pub replaced: bool,
    /// Rows set aside by `quarantine:` checks.
    pub quarantined: u64,
    /// The load's number (the table's Delta transaction version for it); None when nothing
    /// was new.
    pub load: Option<i64>,
}

impl Outcome {
    /// Nothing new to load.
    fn nothing(unit: &'static str) -> Self {
        Outcome {
            rows: 0,
            files: 0,
            unit,
            replaced: false,
            quarantined: 0,
            load: None,
        }
    }
}

/// The column a table partitioned by load date is partitioned by: the date (UTC) of each
/// row's load.
pub const LOAD_DATE: &str = "_strata_load_date";

/// The Delta application id under which a source table's loads are numbered.
pub fn app_id(source: &Source) -> String {
    format!("strata-ingest:{}", source.unique_id)
}

/// Load one source table into its bronze table.
pub async fn ingest_table(
    root: &Path,
    warehouse: &EmbeddedWarehouse,
    meta: &MetaStore,
    source: &Source,
    spec: &TableSpec,
    options: &Options,
) -> Result<Outcome> {
    let name = format!("{}.{}", source.source_name, source.name);
    let app = app_id(source);
    let committed = warehouse.ingest_version(&source.relation, &app).await?;
    let files_spec = match &spec.connector {
        Connector::Files(f) => f,
        Connector::Http(h) => {
            return ingest_http(warehouse, meta, source, spec, h, committed, options).await;
        }
        Connector::Postgres(p) => {
            return ingest_postgres(warehouse, meta, source, spec, p, committed, options).await;
        }
    };
    let listed = files::list(root, files_spec, &name, warehouse).await?;
    let replace = options.replaces(spec);
    let todo = match replace {
        true => listed,
        false => {
            let loaded: std::collections::HashSet<_> = meta
                .ingested_files(&source.unique_id, committed)?
                .into_iter()
                .collect();
            listed.into_iter().filter(|f| !loaded.contains(f)).collect()
        }
    };
    if todo.is_empty() {
        if replace {
            return Err(Error::user(format!(
                "source `{name}`: no file matches `path: {}`",
                files_spec.path
            ))
            .with_hint("check the path: it is relative to the project folder"));
        }
        return Ok(Outcome::nothing("file"));
    }
    {
        use std::sync::atomic::Ordering::Relaxed;
        options.progress.files.store(todo.len() as u64, Relaxed);
        let total: u64 = todo.iter().map(|f| f.size).sum();
        options.progress.file_bytes.store(total, Relaxed);
    }
    let version = committed + 1;
    let now = chrono::Utc::now();
    meta.record_ingest_load(
        &source.unique_id,
        version,
        replace,
        (&todo, None),
        &now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )?;
    let written = async {
        let table = table_schema(warehouse, source, replace).await;
        let mut evolution = evolve::Evolution::new(spec.contract);
        let df = files::read(
            warehouse.session(),
            root,
            files_spec,
            &todo,
            &name,
            table.as_deref(),
            &mut evolution,
        )
        .await?;
        land(
            warehouse, source, spec, df, replace, version, &evolution, options,
        )
        .await
    }
    .await;
    // A failed write leaves its ledger rows: the next load keeps them only if the table
    // holds this load's commit (a failure after the commit), else drops them.
    let outcome = match written {
        Ok(o) => o,
        // A value that cannot be parsed as its column's type: name the file it is in.
        Err(e) if e.to_string().contains("Error while parsing value") => {
            let found =
                files::find_unparsable(warehouse.session(), root, files_spec, &todo, &name).await;
            return Err(match found {
                Some(why) => Error::user(format!("source `{name}`: {why}; nothing was written"))
                    .with_hint("fix the file, or say the column's type is text (quote the value)"),
                None => e,
            });
        }
        Err(e) => return Err(e),
    };
    meta.finish_ingest_load(&source.unique_id, version, outcome.rows_affected)?;
    Ok(Outcome {
        rows: outcome.rows_affected.unwrap_or(0),
        quarantined: outcome.quarantined,
        files: todo.len(),
        unit: "file",
        replaced: replace,
        load: Some(version),
    })
}

/// The columns of `source`'s bronze table, when it exists and the load adds to it.
async fn table_schema(
    warehouse: &EmbeddedWarehouse,
    source: &Source,
    replace: bool,
) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    use strata_engine::Warehouse;
    if replace {
        return None;
    }
    warehouse
        .describe(&format!("select * from {}", source.relation))
        .await
        .ok()
}

/// The load columns every row gets, and the write of load `version` (with the table's
/// widened columns rewritten in the same commit).
#[allow(clippy::too_many_arguments)]
async fn land(
    warehouse: &EmbeddedWarehouse,
    source: &Source,
    spec: &TableSpec,
    df: datafusion::prelude::DataFrame,
    replace: bool,
    version: i64,
    evolution: &evolve::Evolution,
    options: &Options,
) -> Result<strata_engine::MaterializeOutcome> {
    let name = format!("{}.{}", source.source_name, source.name);
    let failed = |e: datafusion::error::DataFusionError| {
        Error::user(format!(
            "source `{name}`: {}",
            strata_engine::error::describe_datafusion_error(&e)
        ))
    };
    let df = df
        .with_column(
            "_strata_loaded_at",
            lit(ScalarValue::TimestampMicrosecond(
                Some(chrono::Utc::now().timestamp_micros()),
                Some("UTC".into()),
            )),
        )
        .map_err(failed)?
        .with_column(
            "_strata_batch_id",
            lit(ScalarValue::Utf8(Some(options.run_id.clone()))),
        )
        .map_err(failed)?;
    let partition_by: Vec<String> = match spec.partition_by_load_date {
        true => vec![LOAD_DATE.to_string()],
        false => vec![],
    };
    let df = match spec.partition_by_load_date {
        true => df
            .with_column(
                LOAD_DATE,
                datafusion::prelude::cast(
                    datafusion::prelude::col("_strata_loaded_at"),
                    datafusion::arrow::datatypes::DataType::Date32,
                ),
            )
            .map_err(failed)?,
        false => df,
    };
    // A merged table replaced in full keeps one row per key too.
    let df = match (&spec.write, replace) {
        (Write::Merge(keys), true) => strata_engine::embedded::latest_per_key(df, keys)?,
        _ => df,
    };
    // Columns that arrive wider than the table's: the table's rows are rewritten with the
    // wider types, with the new rows, in this load's one commit.
    let widen = !replace && !evolution.widen.is_empty();
    let df = match widen {
        false => df,
        true => {
            if let Write::Merge(_) = spec.write {
                return Err(Error::user(format!(
                    "source `{name}`: {} must widen, which a merged table does by a rebuild",
                    evolution
                        .widen
                        .iter()
                        .map(|(c, t)| format!("`{c}` (to {})", strata_engine::types::sql_type(t)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .with_hint("strata ingest --full-refresh rebuilds it with the wider types"));
            }
            let rows = warehouse
                .session()
                .sql(&format!("select * from {}", source.relation))
                .await
                .map_err(failed)?;
            evolve::widened(rows, evolution, &name)?
                .union_by_name(df)
                .map_err(failed)?
        }
    };
    let quarantine = quarantine_of(source, spec, &df, &name)?;
    let app = app_id(source);
    let write = IngestWrite {
        unique_id: &source.unique_id,
        run_id: &options.run_id,
        relation: &source.relation,
        mode: match (&spec.write, replace || widen) {
            (_, true) => IngestMode::Replace,
            (Write::Merge(keys), false) => IngestMode::Merge(keys.clone()),
            _ => IngestMode::Append,
        },
        app_id: &app,
        version,
        partition_by: &partition_by,
        quarantine: quarantine.as_ref(),
    };
    warehouse
        .write_ingest(&write, df.logical_plan().clone())
        .await
        .map_err(|e| match e {
            Error::User(_) => e,
            other => Error::user(format!("source `{name}`: {other}")),
        })
}

/// A source table's quarantine (`quarantine:` checks), its columns checked against the rows
/// loaded: a check naming a column they lack stops the load, naming it.
fn quarantine_of(
    source: &Source,
    spec: &TableSpec,
    df: &datafusion::prelude::DataFrame,
    name: &str,
) -> Result<Option<strata_engine::Quarantine>> {
    if spec.quarantine.is_empty() {
        return Ok(None);
    }
    let columns: Vec<&str> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    for check in &spec.quarantine {
        if let Some(c) = &check.column
            && !columns.iter().any(|n| n.eq_ignore_ascii_case(c))
        {
            return Err(Error::user(format!(
                "source `{name}`: quarantine check `{}` names column `{c}`, which the loaded rows do not have{}; nothing was loaded (the columns are: {})",
                check.name,
                strata_common::did_you_mean(c, columns.iter().copied()),
                columns.join(", ")
            )));
        }
    }
    Ok(Some(strata_engine::Quarantine {
        relation: strata_project::quarantine::relation(&source.relation),
        checks: spec
            .quarantine
            .iter()
            .map(|c| (c.name.clone(), c.failing.clone()))
            .collect(),
    }))
}

/// Load one table from a JSON REST endpoint: every page (since the last load's cursor, when
/// incremental), in one commit.
async fn ingest_http(
    warehouse: &EmbeddedWarehouse,
    meta: &MetaStore,
    source: &Source,
    spec: &TableSpec,
    http_spec: &http::HttpSpec,
    committed: i64,
    options: &Options,
) -> Result<Outcome> {
    let name = format!("{}.{}", source.source_name, source.name);
    let since = cursor_since(
        meta,
        source,
        spec,
        options,
        committed,
        http_spec.incremental.is_some(),
    )?;
    let fetched = http::fetch(http_spec, since.as_deref(), &name, &options.progress).await?;
    let Some(batch) = fetched.batch else {
        return Ok(Outcome::nothing("request"));
    };
    let df = warehouse
        .session()
        .read_batch(batch)
        .map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
    let read = Read {
        df,
        origin: &fetched.url,
        cursor: fetched.cursor.as_deref(),
        flatten: http_spec.flatten,
    };
    let (outcome, version) =
        land_read(warehouse, meta, source, spec, read, committed, options).await?;
    meta.finish_ingest_load(&source.unique_id, version, outcome.rows_affected)?;
    Ok(Outcome {
        rows: outcome.rows_affected.unwrap_or(0),
        quarantined: outcome.quarantined,
        files: fetched.requests,
        unit: "request",
        replaced: options.replaces(spec),
        load: Some(version),
    })
}

/// Load one table from PostgreSQL: the table or query (the rows after the last cursor value,
/// when incremental), read in one snapshot, streamed into one commit.
async fn ingest_postgres(
    warehouse: &EmbeddedWarehouse,
    meta: &MetaStore,
    source: &Source,
    spec: &TableSpec,
    pg: &postgres::PgSpec,
    committed: i64,
    options: &Options,
) -> Result<Outcome> {
    let name = format!("{}.{}", source.source_name, source.name);
    let since = cursor_since(meta, source, spec, options, committed, pg.cursor.is_some())?;
    let progress = options.progress.clone();
    let Some(extraction) = postgres::extract(
        warehouse.session(),
        pg,
        &name,
        since.as_deref(),
        match spec.contract {
            evolve::Contract::DiscardRow => postgres::binary::OnBad::DropRow,
            evolve::Contract::DiscardValue => postgres::binary::OnBad::Null,
            _ => postgres::binary::OnBad::Fail,
        },
        progress,
    )
    .await?
    else {
        return Ok(Outcome::nothing("query"));
    };
    let origin = match &pg.from {
        postgres::From::Table(t) => format!("postgres://{}/{t}", pg.server),
        postgres::From::Query(_) => format!("postgres://{} (query)", pg.server),
    };
    let read = Read {
        df: extraction.df.clone(),
        origin: &origin,
        cursor: extraction.cursor.as_deref(),
        flatten: false,
    };
    let (outcome, version) =
        land_read(warehouse, meta, source, spec, read, committed, options).await?;
    let discarded = match extraction.discarded.lock() {
        Ok(mut d) => (d.0, d.1.take()),
        Err(_) => (0, None),
    };
    if let (n, Some(first)) = discarded {
        tracing::warn!(
            "source `{name}`: {n} {} left out, as the source's contract says (the first: row {} column `{}` ({}) {})",
            match spec.contract {
                evolve::Contract::DiscardRow => "rows",
                _ => "values",
            },
            first.row,
            first.column,
            first.pg_type,
            first.why
        );
    }
    drop(extraction);
    meta.finish_ingest_load(&source.unique_id, version, outcome.rows_affected)?;
    Ok(Outcome {
        rows: outcome.rows_affected.unwrap_or(0),
        quarantined: outcome.quarantined,
        files: 1,
        unit: "query",
        replaced: options.replaces(spec),
        load: Some(version),
    })
}

/// The cursor value an incremental load starts after: the last committed load's (none when
/// the load replaces the table, or is not incremental).
fn cursor_since(
    meta: &MetaStore,
    source: &Source,
    spec: &TableSpec,
    options: &Options,
    committed: i64,
    incremental: bool,
) -> Result<Option<String>> {
    match incremental && !options.replaces(spec) {
        true => Ok(meta.ingest_cursor(&source.unique_id, committed)?),
        false => Ok(None),
    }
}

/// Rows read in one go (an API's pages, a database query), still to be landed.
struct Read<'a> {
    df: datafusion::prelude::DataFrame,
    /// Where they came from (each row's `_strata_source`).
    origin: &'a str,
    /// The cursor value the load reaches.
    cursor: Option<&'a str>,
    /// Nested records spread into `parent__child` columns.
    flatten: bool,
}

/// Land `read` as the table's next load: recorded in the ledger (with its cursor) first, then
/// fitted to the table and written in one commit. The write's outcome and the load's number.
async fn land_read(
    warehouse: &EmbeddedWarehouse,
    meta: &MetaStore,
    source: &Source,
    spec: &TableSpec,
    read: Read<'_>,
    committed: i64,
    options: &Options,
) -> Result<(strata_engine::MaterializeOutcome, i64)> {
    let name = format!("{}.{}", source.source_name, source.name);
    let replace = options.replaces(spec);
    let version = committed + 1;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    meta.record_ingest_load(
        &source.unique_id,
        version,
        replace,
        (&[], read.cursor),
        &now,
    )?;
    let df = read
        .df
        .with_column(
            "_strata_source",
            lit(ScalarValue::Utf8(Some(read.origin.to_string()))),
        )
        .map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
    let df = match read.flatten {
        true => nested::flatten(df, &name)?,
        false => df,
    };
    let mut evolution = evolve::Evolution::new(spec.contract);
    let df = match table_schema(warehouse, source, replace).await {
        Some(t) => evolve::fit(df, &t, read.origin, &name, &mut evolution).await?,
        None => df,
    };
    let outcome = land(
        warehouse, source, spec, df, replace, version, &evolution, options,
    )
    .await?;
    Ok((outcome, version))
}
