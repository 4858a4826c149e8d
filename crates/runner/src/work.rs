//! One node's work: build a model (with its hooks), a microbatch model batch by batch, a
//! seed, or a data test, on a [`Warehouse`].

use std::time::Instant;

use futures::TryStreamExt;
use strata_engine::{
    Batch, HardDeletes, IncrementalStrategy, Materialization, MaterializeOutcome,
    MaterializeRequest, OnSchemaChange, SeedRequest, SnapshotSpec, SnapshotStrategy,
    StatementContext, Warehouse,
};
use strata_project::Relation;
use strata_project::compile::ModelHooks;
use strata_project::data_tests::DataTest;

use crate::events::{BatchEvent, Reporter, RunEvent};
use crate::microbatch::MicrobatchConfig;
use crate::quality::{
    Anomalies, check_quarantine_columns, observers, quarantine_of, run_anomaly_test, run_time,
};
use crate::results::NodeStatus;

/// How one node ended.
pub(crate) struct Done {
    pub status: NodeStatus,
    pub message: String,
    pub rows_affected: Option<u64>,
    pub failures: Option<u64>,
    pub sql: Option<String>,
    /// For tests that found rows: the first few, as a JSON array of objects.
    pub sample: Option<String>,
}

impl Done {
    pub(crate) fn error(message: String, sql: Option<String>) -> Self {
        Self {
            status: NodeStatus::Error,
            message: strata_common::without_backtrace(&message),
            rows_affected: None,
            failures: None,
            sql,
            sample: None,
        }
    }

    fn built(o: MaterializeOutcome, sql: Option<String>) -> Self {
        Self {
            status: NodeStatus::Success,
            message: o.message,
            rows_affected: o.rows_affected,
            failures: None,
            sql,
            sample: None,
        }
    }
}

/// A syntax error "at line N" of the compiled SQL, with the model file's line when the SQL's
/// lines are the file's.
fn at_file_line(
    message: String,
    compiled: &strata_project::compile::CompiledModel,
    file: &std::path::Path,
) -> String {
    let line = message
        .strip_prefix("SQL syntax error: ")
        .and_then(|m| m.rsplit_once(" at line "))
        .and_then(|(_, rest)| rest.split(',').next()?.trim().parse::<usize>().ok())
        .and_then(|n| compiled.file_line(n));
    match line {
        Some(l) => format!(
            "{}:{l}: {}",
            file.display(),
            message.replacen(" at line ", " (compiled SQL: line ", 1) + ")"
        ),
        None => message,
    }
}

/// What every node's work runs with.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub warehouse: &'a dyn Warehouse,
    /// Where anomaly tests keep their metrics.
    pub meta: Option<&'a strata_meta::MetaStore>,
    /// The (database, schema) where `store_failures` keeps failing rows.
    pub audit: Option<(&'a str, &'a str)>,
    /// Rebuild incremental models in full.
    pub full_refresh: bool,
    /// The run's time, for snapshots and anomaly tests.
    pub now: &'a str,
    /// Anomaly tests measured as their model is written.
    pub anomalies: &'a Anomalies,
    /// `--empty`: models are built with no rows.
    pub empty: bool,
    pub reporter: &'a dyn Reporter,
}

/// One node's work, prepared on the scheduler and run concurrently.
pub(crate) enum Work<'a> {
    Model(
        &'a strata_project::Model,
        strata_project::Result<strata_project::compile::CompiledModel>,
    ),
    Seed(&'a strata_project::Seed),
    Test(&'a DataTest, strata_project::Result<String>),
    /// A microbatch model: its batches, each compiled for its period.
    Microbatch(
        &'a strata_project::Model,
        MicrobatchConfig,
        Vec<(
            strata_project::jinja::BatchWindow,
            strata_project::Result<strata_project::compile::CompiledModel>,
        )>,
    ),
}

impl Work<'_> {
    pub(crate) async fn execute(self, env: &Env<'_>, run_id: String) -> Done {
        let Env {
            warehouse,
            meta,
            audit,
            full_refresh,
            now,
            reporter,
            ..
        } = *env;
        match self {
            Work::Model(_, Err(e)) | Work::Test(_, Err(e)) => Done::error(e.to_string(), None),
            Work::Model(model, Ok(c)) => {
                let Some(materialization) = Materialization::parse(model.materialized()) else {
                    return Done::error(
                        format!(
                            "materialization `{}` is not supported; use table, view, incremental or ephemeral",
                            model.materialized()
                        ),
                        Some(c.sql),
                    );
                };
                let sql = match crate::contract::enforce(warehouse, model, &c.sql).await {
                    Ok(sql) => sql,
                    Err(message) => return Done::error(message, Some(c.sql)),
                };
                if let Err(message) = check_quarantine_columns(warehouse, model, &sql).await {
                    return Done::error(message, Some(c.sql));
                }
                let mut req = request_for(model, materialization, sql, run_id, full_refresh);
                if materialization == Materialization::Snapshot {
                    req.snapshot = Some(snapshot_spec(model, now));
                }
                if materialization == Materialization::Table
                    && let Some(tests) = env.anomalies.tests.get(&model.unique_id)
                {
                    req.observers = observers(warehouse, tests, &req.sql, now).await;
                }
                match warehouse.materialize(&req).await {
                    Ok(mut o) => {
                        if let Ok(mut m) = env.anomalies.measured.lock() {
                            m.extend(o.observed.drain(..));
                        }
                        Done::built(o, Some(c.sql))
                    }
                    Err(e) => Done::error(
                        at_file_line(e.to_string(), &c, &model.original_file_path),
                        Some(c.sql),
                    ),
                }
            }
            Work::Microbatch(model, config, batches) => {
                let batches = Batches {
                    config: &config,
                    list: batches,
                    reporter,
                };
                run_batches(warehouse, model, batches, run_id, full_refresh).await
            }
            Work::Seed(seed) => {
                let req = SeedRequest {
                    unique_id: seed.unique_id.clone(),
                    relation: seed.relation.clone(),
                    path: seed.abs_path.clone(),
                    display_path: seed.original_file_path.to_string_lossy().into_owned(),
                    delimiter: seed.delimiter(),
                    column_types: seed.column_types().into_iter().collect(),
                    run_id,
                    full_refresh,
                };
                match warehouse.load_seed(&req).await {
                    Ok(o) => Done::built(o, None),
                    Err(e) => Done::error(e.to_string(), None),
                }
            }
            Work::Test(test, Ok(sql)) => {
                if let Some(spec) = strata_project::anomaly::spec_of(test) {
                    // Empty models would enter their history as a drop to nothing.
                    if env.empty {
                        return Done {
                            status: NodeStatus::Pass,
                            message: "not measured: --empty builds no rows".into(),
                            rows_affected: None,
                            failures: None,
                            sql: Some(sql),
                            sample: None,
                        };
                    }
                    let measured = env
                        .anomalies
                        .measured
                        .lock()
                        .ok()
                        .and_then(|mut m| m.remove(&test.unique_id));
                    let (ids, now) = ((test, run_id.as_str()), run_time(now));
                    return run_anomaly_test(warehouse, meta, ids, spec, sql, now, measured).await;
                }
                let mut done = run_test(warehouse, test, &sql).await;
                if matches!(test.kind, strata_project::data_tests::TestKind::Unit(_))
                    && done.status.is_failure()
                {
                    done.message = unit_test_difference(warehouse, &sql, done.failures).await;
                    return done;
                }
                let found_rows = done.status.is_failure() || done.status == NodeStatus::Warn;
                if found_rows {
                    done.sample = sample_rows(warehouse, &sql).await;
                }
                if found_rows && let Some((db, schema)) = audit.filter(|_| test.store_failures()) {
                    let relation = Relation::new(db, schema, test.relation_name());
                    if let Err(e) = store_failures(warehouse, test, &sql, relation, &run_id).await {
                        return Done::error(
                            format!("storing the failing rows failed: {e}"),
                            Some(sql),
                        );
                    }
                }
                done
            }
        }
    }
}

/// Run a model's `pre-hook`s, then its `work`, then (when it was built) its `post-hook`s. A
/// failing hook fails the model.
pub(crate) async fn with_hooks(
    warehouse: &dyn Warehouse,
    hooks: Option<strata_project::Result<ModelHooks>>,
    context: &StatementContext,
    work: impl std::future::Future<Output = Done>,
) -> Done {
    let hooks = match hooks {
        None => return work.await,
        Some(Err(e)) => return Done::error(e.to_string(), None),
        Some(Ok(h)) => h,
    };
    for (i, sql) in hooks.pre.iter().enumerate() {
        if let Err(e) = warehouse.execute(sql, context).await {
            return Done::error(format!("pre-hook {} failed: {e}", i + 1), Some(sql.clone()));
        }
    }
    let mut done = work.await;
    if done.status == NodeStatus::Success {
        for (i, sql) in hooks.post.iter().enumerate() {
            if let Err(e) = warehouse.execute(sql, context).await {
                done = Done::error(
                    format!("post-hook {} failed (the model was built): {e}", i + 1),
                    done.sql,
                );
                break;
            }
        }
    }
    done
}

/// Whether a model is incremental with the `microbatch` strategy.
pub(crate) fn is_microbatch(model: &strata_project::Model) -> bool {
    model.materialized() == "incremental"
        && model.config.get_str(IncrementalStrategy::KEY)
            == Some(IncrementalStrategy::Microbatch.as_str())
}

/// Whether `--full-refresh` may rebuild a model (`full_refresh: false` protects it).
pub(crate) fn full_refresh_allowed(model: &strata_project::Model) -> bool {
    model
        .config
        .get("full_refresh")
        .and_then(serde_json::Value::as_bool)
        != Some(false)
}

/// The request building a model from its compiled SQL.
pub(crate) fn request_for(
    model: &strata_project::Model,
    materialization: Materialization,
    sql: String,
    run_id: String,
    full_refresh: bool,
) -> MaterializeRequest {
    let c = &model.config;
    MaterializeRequest {
        partition_by: partition_columns(c.get("partition_by")),
        // Words are checked when the project loads: a bad one cannot reach here.
        incremental_strategy: c
            .word(IncrementalStrategy::KEY, IncrementalStrategy::parse)
            .ok()
            .flatten(),
        unique_key: partition_columns(c.get("unique_key")),
        full_refresh: full_refresh && full_refresh_allowed(model),
        merge_update_columns: partition_columns(c.get("merge_update_columns")),
        merge_exclude_columns: partition_columns(c.get("merge_exclude_columns")),
        on_schema_change: c
            .word(OnSchemaChange::KEY, OnSchemaChange::parse)
            .ok()
            .flatten()
            .unwrap_or(OnSchemaChange::Ignore),
        incremental_predicates: partition_columns(c.get("incremental_predicates")),
        target_file_size: c
            .get("target_file_size")
            .and_then(serde_json::Value::as_u64),
        quarantine: quarantine_of(model),
        ..MaterializeRequest::new(
            model.unique_id.clone(),
            model.relation.clone(),
            materialization,
            sql,
            run_id,
        )
    }
}

/// The batches of a microbatch model, and where to report them.
struct Batches<'a> {
    config: &'a MicrobatchConfig,
    list: Vec<(
        strata_project::jinja::BatchWindow,
        strata_project::Result<strata_project::compile::CompiledModel>,
    )>,
    reporter: &'a dyn Reporter,
}

/// Build a microbatch model batch by batch, oldest first, each in its own commit. A failed
/// batch is retried once on its own; the others are written either way, and the message
/// names the periods still to re-run.
async fn run_batches(
    warehouse: &dyn Warehouse,
    model: &strata_project::Model,
    batches: Batches<'_>,
    run_id: String,
    full_refresh: bool,
) -> Done {
    let Batches {
        config,
        list: batches,
        reporter,
    } = batches;
    let total = batches.len();
    let relation_name = format!("{}.{}", model.relation.schema, model.relation.identifier);
    let mut rows = 0u64;
    let mut failed: Vec<(strata_project::jinja::BatchWindow, String)> = Vec::new();
    let mut first_sql = None;
    // A query without its event_time column would fail every batch: say it once, up front.
    if let Some((_, Ok(first))) = batches.first() {
        match warehouse.describe(&first.sql).await {
            Ok(schema)
                if schema
                    .fields()
                    .iter()
                    .all(|f| f.name() != &config.event_time) =>
            {
                let columns: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Done::error(
                    format!(
                        "the model's query has no column `{}`, its event_time{}; no batch was run (the columns are: {})",
                        config.event_time,
                        strata_common::did_you_mean(&config.event_time, columns.iter().copied()),
                        columns.join(", ")
                    ),
                    Some(first.sql.clone()),
                );
            }
            // A query that does not plan fails its batches with the reason.
            _ => {}
        }
    }
    for (i, (window, compiled)) in batches.into_iter().enumerate() {
        let clock = Instant::now();
        let report = |ok: bool, message: &str| {
            reporter.report(RunEvent::Batch(BatchEvent {
                unique_id: &model.unique_id,
                relation_name: &relation_name,
                index: i + 1,
                total,
                batch_id: &window.id,
                ok,
                message,
                seconds: clock.elapsed().as_secs_f64(),
            }))
        };
        let compiled = match compiled {
            Ok(c) => c,
            Err(e) => {
                report(false, "ERROR");
                failed.push((window, e.to_string()));
                continue;
            }
        };
        first_sql.get_or_insert_with(|| compiled.sql.clone());
        let mut req = request_for(
            model,
            Materialization::Incremental,
            compiled.sql.clone(),
            run_id.clone(),
            // Only the first batch of a full refresh replaces the table.
            full_refresh && i == 0,
        );
        req.batch = Some(Batch {
            event_time: config.event_time.clone(),
            start: window.start.clone(),
            end: window.end.clone(),
        });
        let mut outcome = warehouse.materialize(&req).await;
        if outcome.is_err() {
            outcome = warehouse.materialize(&req).await;
        }
        match outcome {
            Ok(o) => {
                report(true, &o.message);
                rows += o.rows_affected.unwrap_or(0);
            }
            Err(e) => {
                report(false, "ERROR");
                failed.push((window, e.to_string()));
            }
        }
    }
    if failed.is_empty() {
        return Done {
            status: NodeStatus::Success,
            message: format!(
                "{total} batch{} {rows} rows",
                if total == 1 { "," } else { "es," }
            ),
            rows_affected: Some(rows),
            failures: None,
            sql: first_sql,
            sample: None,
        };
    }
    let (first, last) = (&failed[0].0, &failed[failed.len() - 1].0);
    let details: Vec<String> = failed
        .iter()
        .map(|(w, e)| format!("batch {} ({} to {}): {e}", w.id, w.start, w.end))
        .collect();
    Done::error(
        format!(
            "{} of {total} batches failed, after a retry each; the other batches were written.\n{}\nRe-run the failed period with: --event-time-start '{}' --event-time-end '{}'",
            failed.len(),
            details.join("\n"),
            first.start,
            last.end
        ),
        first_sql,
    )
}

/// A snapshot's configs: `unique_key`, `strategy`, `updated_at`, `check_cols`,
/// `hard_deletes` (or the older `invalidate_hard_deletes`), `dbt_valid_to_current`.
fn snapshot_spec(model: &strata_project::Model, now: &str) -> SnapshotSpec {
    let c = &model.config;
    let check_cols = match c.get("check_cols") {
        Some(serde_json::Value::String(s)) if s == "all" => Vec::new(),
        other => partition_columns(other),
    };
    // Words are checked when the project loads: a bad one cannot reach here.
    let hard_deletes = match c.word(HardDeletes::KEY, HardDeletes::parse).ok().flatten() {
        Some(h) => h,
        None if c
            .get("invalidate_hard_deletes")
            .and_then(serde_json::Value::as_bool)
            == Some(true) =>
        {
            HardDeletes::Invalidate
        }
        None => HardDeletes::Ignore,
    };
    SnapshotSpec {
        unique_key: partition_columns(c.get("unique_key")),
        strategy: c
            .word(SnapshotStrategy::KEY, SnapshotStrategy::parse)
            .ok()
            .flatten()
            .unwrap_or(SnapshotStrategy::Timestamp),
        updated_at: c.get_str("updated_at").map(str::to_string),
        check_cols,
        hard_deletes,
        valid_to_current: c.get_str("dbt_valid_to_current").map(str::to_string),
        now: now.to_string(),
    }
}

/// `partition_by` as column names: a name, a list of names, or dbt-BigQuery's
/// `{field: name, ...}`.
fn partition_columns(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::Object(o)) => o
            .get("field")
            .and_then(|f| f.as_str())
            .map(|f| vec![f.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Append a test's failing rows, stamped with the run, to its audit table: the history of
/// failures is kept, not replaced each run.
async fn store_failures(
    warehouse: &dyn Warehouse,
    test: &DataTest,
    sql: &str,
    relation: Relation,
    run_id: &str,
) -> strata_engine::Result<()> {
    let limited = match test.limit() {
        Some(n) => format!("select * from (\n{sql}\n) as dbt_limited limit {n}"),
        None => sql.to_string(),
    };
    let request = MaterializeRequest::new(
        test.unique_id.clone(),
        relation,
        Materialization::Table,
        format!(
            "select {} as strata_run_id, now() as strata_stored_at, failing.* from (\n{limited}\n) as failing",
            strata_common::quote_literal(run_id)
        ),
        run_id,
    );
    warehouse.append(&request).await.map(|_| ())
}

/// Rows a test found, kept with its result for the quality report: at most this many.
const SAMPLE_ROWS: usize = 5;

/// The first rows a test's query returns, as a JSON array of objects (`None` when they
/// cannot be read: the result stands without them).
async fn sample_rows(warehouse: &dyn Warehouse, sql: &str) -> Option<String> {
    let shown = format!("select * from (\n{sql}\n) as strata_sample limit {SAMPLE_ROWS}");
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> = warehouse
        .query(&shown, None)
        .await
        .ok()?
        .try_collect()
        .await
        .ok()?;
    // NULLs are written out: a row of only NULLs (a `not_null` test's) is still a row.
    let mut writer = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, datafusion::arrow::json::writer::JsonArray>(Vec::new());
    let refs: Vec<&datafusion::arrow::record_batch::RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs).ok()?;
    writer.finish().ok()?;
    let bytes = writer.into_inner();
    match bytes.is_empty() {
        true => Some("[]".into()),
        false => String::from_utf8(bytes).ok(),
    }
}

/// A failed unit test's message: the rows that differ, `-` expected and missing, `+` produced
/// and unexpected (at most 20).
async fn unit_test_difference(warehouse: &dyn Warehouse, sql: &str, n: Option<u64>) -> String {
    let shown = format!("select * from (\n{sql}\n) as unit_diff order by 1, 2 limit 20");
    let mut lines = vec![format!(
        "actual differs from expected in {} row{}:",
        n.unwrap_or(0),
        if n == Some(1) { "" } else { "s" }
    )];
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> =
        match warehouse.query(&shown, None).await {
            Ok(stream) => stream.try_collect().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
    if let Some(first) = batches.first() {
        let names: Vec<String> = first
            .schema()
            .fields()
            .iter()
            .skip(1)
            .map(|f| f.name().clone())
            .collect();
        lines.push(format!("    {}", names.join(" | ")));
    }
    let formatter = datafusion::arrow::util::display::FormatOptions::default().with_null("NULL");
    for b in &batches {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .filter_map(|c| {
                datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &formatter)
                    .ok()
            })
            .collect();
        for row in 0..b.num_rows() {
            let cells: Vec<String> = columns.iter().map(|c| c.value(row).to_string()).collect();
            if let Some((mark, rest)) = cells.split_first() {
                lines.push(format!("  {mark} {}", rest.join(" | ")));
            }
        }
    }
    lines.join("\n")
}

/// Count a test's failures (`fail_calc`, by default the rows) and judge them by `severity`,
/// `warn_if` and `error_if`.
async fn run_test(warehouse: &dyn Warehouse, test: &DataTest, sql: &str) -> Done {
    let limited = match test.limit() {
        Some(n) => format!("select * from (\n{sql}\n) as dbt_limited limit {n}"),
        None => sql.to_string(),
    };
    let calc = test.fail_calc();
    let query = format!(
        "select cast({calc} as bigint) as failures, {calc} {} as should_warn, {calc} {} as should_error \
         from (\n{limited}\n) as dbt_internal_test",
        test.warn_if(),
        test.error_if()
    );
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> =
        match warehouse.query(&query, None).await {
            Ok(stream) => match stream.try_collect().await {
                Ok(b) => b,
                Err(e) => {
                    return Done::error(
                        strata_engine::error::describe_datafusion_error(&e),
                        Some(sql.to_string()),
                    );
                }
            },
            Err(e) => return Done::error(e.to_string(), Some(sql.to_string())),
        };
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Done::error(
            "the test query returned no count".into(),
            Some(sql.to_string()),
        );
    };
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    let failures = batch
        .column(0)
        .as_primitive_opt::<Int64Type>()
        .map(|a| a.value(0))
        .unwrap_or(0);
    let flag = |i: usize| {
        batch
            .column(i)
            .as_boolean_opt()
            .is_some_and(|a| a.is_valid(0) && a.value(0))
    };
    let (should_warn, should_error) = (flag(1), flag(2));
    let status = if test.severity() == "error" && should_error {
        NodeStatus::Fail
    } else if should_warn {
        NodeStatus::Warn
    } else {
        NodeStatus::Pass
    };
    let message = match status {
        NodeStatus::Pass => "PASS".to_string(),
        _ => format!(
            "Got {failures} result{}, configured to {} if {}",
            if failures == 1 { "" } else { "s" },
            if status == NodeStatus::Fail {
                "fail"
            } else {
                "warn"
            },
            if status == NodeStatus::Fail {
                test.error_if()
            } else {
                test.warn_if()
            }
        ),
    };
    Done {
        status,
        message,
        rows_affected: None,
        // As dbt: a passing test reports no failures, whatever `fail_calc` counted.
        failures: Some(if status == NodeStatus::Pass {
            0
        } else {
            failures.max(0) as u64
        }),
        sql: Some(sql.to_string()),
        sample: None,
    }
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
