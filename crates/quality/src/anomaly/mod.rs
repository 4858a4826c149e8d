//! Anomaly tests: measure a relation's metrics, keep them, and judge the newest against the
//! range the earlier ones draw.
//!
//! With a `timestamp_column`, the metrics are measured per time bucket of the data itself
//! (the training period's buckets give the history at once); without one, each run measures
//! the whole table and the history builds up run by run in the metadata store. Either way a
//! value is judged against training values before it: median ± sensitivity × MAD (scaled to a
//! standard deviation), or mean ± sensitivity × standard deviation with `anomaly_method:
//! zscore`.

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema};
use futures::TryStreamExt;
use strata_engine::Warehouse;
use strata_meta::{MetaStore, MetricPoint};
use strata_project::anomaly::{AnomalySpec, Monitor};

mod band;
mod buckets;

use band::{Judged, summarize};
pub use band::{Verdict, judge};
use buckets::{Window, bucket_width, next_bucket, same_season, training_seconds};

/// One metric measured: its name, its column (empty for table metrics) and its SQL.
#[derive(Debug, Clone)]
struct Metric {
    name: String,
    column: String,
    expr: String,
}

/// Where the test's judged values and their history are.
pub struct Subject<'a> {
    /// The test's unique id.
    pub test_id: &'a str,
    /// The node it tests.
    pub node_id: &'a str,
    /// The run measuring it.
    pub run_id: &'a str,
}

/// What an anomaly test found.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Values outside their expected range.
    pub anomalies: usize,
    /// Values judged.
    pub judged: usize,
    /// What to show: the anomalies, or the values and their ranges.
    pub message: String,
    /// Too little history to judge anything: "not enough history: N of M ...".
    pub short_history: bool,
}

/// The one query measuring `relation_sql` (of columns `schema`) as `spec` says, as of `now`.
/// Errors name the argument or column at fault.
pub fn measure_query(
    spec: &AnomalySpec,
    schema: &Schema,
    relation_sql: &str,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let metrics = metrics_of(spec, schema)?;
    let Some(column) = spec.timestamp_column.as_deref() else {
        let exprs: Vec<String> = metrics
            .iter()
            .map(|m| format!("{} as {}", m.expr, strata_common::quote_ident(&m.name)))
            .collect();
        return Ok(format!(
            "select {} from (\n{relation_sql}\n) as strata_measured{}",
            exprs.join(", "),
            match &spec.where_expression {
                Some(w) => format!(" where ({w})"),
                None => String::new(),
            }
        ));
    };
    let ts = column_of(schema, column, "timestamp_column")?;
    let ts_type = schema
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(column))
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Utf8);
    Ok(bucket_query(
        spec,
        &metrics,
        (&ts, &ts_type),
        &Window::of(spec, now),
        relation_sql,
    ))
}

/// Measure the relation `relation_sql` (the test's compiled query) as `spec` says (or take
/// `measured`, what [`measure_query`] returned when it ran as the model was written), keep
/// the metrics in `meta`, and judge them. Errors name the argument or column at fault.
pub async fn run(
    warehouse: &dyn Warehouse,
    meta: Option<&MetaStore>,
    subject: &Subject<'_>,
    spec: &AnomalySpec,
    relation_sql: &str,
    now: DateTime<Utc>,
    measured: Option<Vec<RecordBatch>>,
) -> Result<Judgement, String> {
    let schema = warehouse
        .describe(relation_sql)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = metrics_of(spec, &schema)?;
    let batches = match measured {
        Some(b) => b,
        None => collect(warehouse, &measure_query(spec, &schema, relation_sql, now)?).await?,
    };
    let measure = spec.measure_key();
    let mut judged: Vec<Judged> = Vec::new();
    let mut points: Vec<MetricPoint> = Vec::new();
    if spec.timestamp_column.is_some() {
        let window = Window::of(spec, now);
        // Freshness: the newest row before the window came in the same scan, bucketed NULL.
        let prior = match spec.monitor {
            Monitor::Freshness => newest_before(&batches),
            _ => None,
        };
        for (i, metric) in metrics.iter().enumerate() {
            let series = series_of(spec, &window, &batches, i, prior);
            for (k, (start, end, value)) in series.iter().enumerate() {
                let verdict = (*start >= window.detection_start).then(|| {
                    let training: Vec<f64> = series[..k]
                        .iter()
                        .filter(|(s, _, _)| {
                            *s >= *start - window.training
                                && (!spec.exclude_detection_period_from_training
                                    || *s < window.detection_start)
                                && same_season(spec.seasonality, *s, *start)
                        })
                        .filter_map(|(_, _, v)| *v)
                        .collect();
                    judge(spec, *value, &training)
                });
                points.push(point(
                    subject, &measure, metric, *start, *end, *value, &verdict,
                ));
                if let Some(v) = verdict {
                    judged.push(Judged {
                        metric: metric.clone(),
                        start: *start,
                        end: *end,
                        value: *value,
                        verdict: v,
                    });
                }
            }
        }
    } else {
        let since = now - Duration::seconds(training_seconds(spec));
        for (i, metric) in metrics.iter().enumerate() {
            let value = first_f64(&batches, i);
            let history = match meta {
                Some(m) => m
                    .metric_history(
                        subject.node_id,
                        &measure,
                        &metric.name,
                        &metric.column,
                        &rfc3339(since),
                        &rfc3339(now),
                    )
                    .map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            let training: Vec<f64> = history
                .iter()
                .filter(|p| {
                    DateTime::parse_from_rfc3339(&p.bucket_start)
                        .is_ok_and(|t| same_season(spec.seasonality, t.to_utc(), now))
                })
                .filter_map(|p| p.value)
                .collect();
            let verdict = judge(spec, value, &training);
            points.push(point(
                subject,
                &measure,
                metric,
                now,
                now,
                value,
                &Some(verdict.clone()),
            ));
            judged.push(Judged {
                metric: metric.clone(),
                start: now,
                end: now,
                value,
                verdict,
            });
        }
    }
    if let Some(m) = meta {
        m.record_metrics(&points).map_err(|e| e.to_string())?;
    }
    Ok(summarize(spec, &judged))
}

/// The SQL of the metrics of a relation per bucket of its timestamp column `ts` (of type
/// `ts_type`): the bucket's start and its newest time as epoch seconds, then the metrics.
/// Rows are compared with the window's bounds and bucketed in the column's own type (a date
/// is its own day bucket), so no value is converted row by row; the conversions apply to
/// the buckets. For freshness, rows before the window are read too, in a NULL bucket whose
/// newest time is where the first bucket's freshness starts from.
fn bucket_query(
    spec: &AnomalySpec,
    metrics: &[Metric],
    (ts, ts_type): (&str, &DataType),
    window: &Window,
    relation_sql: &str,
) -> String {
    let is_date = matches!(ts_type, DataType::Date32 | DataType::Date64);
    let is_plain_timestamp = matches!(ts_type, DataType::Timestamp(_, None));
    // The column as a value comparable with the bounds, and the bounds.
    let (t, start, end) = if is_date && spec.time_bucket == strata_project::anomaly::Period::days(1)
    {
        (
            ts.to_string(),
            date_literal(window.start),
            date_literal(window.end),
        )
    } else if is_plain_timestamp {
        (
            ts.to_string(),
            timestamp_literal(window.start),
            timestamp_literal(window.end),
        )
    } else {
        (
            format!("cast({ts} as timestamp)"),
            timestamp_literal(window.start),
            timestamp_literal(window.end),
        )
    };
    let key = if t == ts && is_date {
        t.clone()
    } else {
        match bucket_width(spec) {
            Some((w, offset)) => format!(
                "date_bin(interval '{w} seconds', {t}, {})",
                timestamp_literal(chrono::DateTime::from_timestamp(offset, 0).unwrap_or_default())
            ),
            None => format!("date_trunc('month', {t})"),
        }
    };
    let (key, bounds) = match spec.monitor {
        Monitor::Freshness => (
            format!("case when {t} >= {start} then {key} end"),
            format!("{t} < {end}"),
        ),
        _ => (key, format!("{t} >= {start} and {t} < {end}")),
    };
    let mut inner = vec![
        format!("{key} as strata_key"),
        format!("max({t}) as strata_newest"),
    ];
    inner.extend(
        metrics
            .iter()
            .map(|m| format!("{} as {}", m.expr, strata_common::quote_ident(&m.name))),
    );
    let mut outer = vec![
        "cast(extract(epoch from cast(strata_key as timestamp)) as bigint) as strata_bucket"
            .to_string(),
        "cast(extract(epoch from cast(strata_newest as timestamp)) as double) as strata_latest"
            .to_string(),
    ];
    outer.extend(metrics.iter().map(|m| strata_common::quote_ident(&m.name)));
    format!(
        "select {} from (select {} from (\n{relation_sql}\n) as strata_measured \
         where {bounds}{} group by 1) as strata_buckets",
        outer.join(", "),
        inner.join(", "),
        filter(spec)
    )
}

/// The newest time (epoch seconds) of the rows before the window: the NULL bucket's.
fn newest_before(batches: &[RecordBatch]) -> Option<f64> {
    for b in batches {
        let (Some(buckets), Some(latest)) = (
            b.column(0).as_primitive_opt::<Int64Type>(),
            b.column(1).as_primitive_opt::<Float64Type>(),
        ) else {
            continue;
        };
        for row in 0..b.num_rows() {
            if buckets.is_null(row) && latest.is_valid(row) {
                return Some(latest.value(row));
            }
        }
    }
    None
}

fn date_literal(t: DateTime<Utc>) -> String {
    format!("date '{}'", t.format("%Y-%m-%d"))
}

fn filter(spec: &AnomalySpec) -> String {
    match &spec.where_expression {
        Some(w) => format!(" and ({w})"),
        None => String::new(),
    }
}

fn timestamp_literal(t: DateTime<Utc>) -> String {
    format!("timestamp '{}'", t.format("%Y-%m-%d %H:%M:%S"))
}

/// Every bucket of the window with metric `i`'s value: a bucket without rows counts 0 rows,
/// and its freshness is the time since the newest row before its end.
fn series_of(
    spec: &AnomalySpec,
    window: &Window,
    batches: &[RecordBatch],
    i: usize,
    prior: Option<f64>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, Option<f64>)> {
    let mut by_bucket: std::collections::BTreeMap<i64, (Option<f64>, Option<f64>)> =
        std::collections::BTreeMap::new();
    for b in batches {
        let (Some(buckets), latest) = (
            b.column(0).as_primitive_opt::<Int64Type>(),
            b.column(1).as_primitive_opt::<Float64Type>(),
        ) else {
            continue;
        };
        let values = b.column(2 + i);
        for row in 0..b.num_rows() {
            if buckets.is_null(row) {
                continue;
            }
            let latest = latest.filter(|l| l.is_valid(row)).map(|l| l.value(row));
            by_bucket.insert(buckets.value(row), (latest, f64_at(values.as_ref(), row)));
        }
    }
    let mut out = Vec::new();
    let mut newest = prior;
    let mut start = window.start;
    while start < window.end {
        let end = next_bucket(spec, start);
        let found = by_bucket.get(&start.timestamp());
        if let Some((Some(l), _)) = found {
            newest = Some(newest.map_or(*l, |n: f64| n.max(*l)));
        }
        let value = match spec.monitor {
            Monitor::Freshness => newest.map(|n| (end.timestamp() as f64 - n).max(0.0)),
            Monitor::Volume => Some(found.and_then(|(_, v)| *v).unwrap_or(0.0)),
            Monitor::Column => found.and_then(|(_, v)| *v),
        };
        out.push((start, end, value));
        start = end;
    }
    out
}

/// The metrics a test measures, with their SQL; a column must exist and fit its metrics.
fn metrics_of(spec: &AnomalySpec, schema: &Schema) -> Result<Vec<Metric>, String> {
    let table = |name: &str, expr: &str| Metric {
        name: name.to_string(),
        column: String::new(),
        expr: expr.to_string(),
    };
    match spec.monitor {
        Monitor::Volume => return Ok(vec![table("row_count", "cast(count(*) as double)")]),
        Monitor::Freshness => {
            // The value comes from the newest timestamp; the SQL only counts.
            return Ok(vec![table("freshness", "cast(count(*) as double)")]);
        }
        Monitor::Column => {}
    }
    let name = spec.column.as_deref().unwrap_or_default();
    let c = column_of(schema, name, "column")?;
    let data_type = schema
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(name))
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null);
    let numeric = data_type.is_numeric();
    let text = matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let chosen: Vec<String> = if spec.metrics.is_empty() {
        let mut d = vec!["null_count", "null_percent"];
        if numeric {
            d.extend([
                "zero_count",
                "zero_percent",
                "min",
                "max",
                "average",
                "standard_deviation",
                "variance",
            ]);
        }
        if text {
            d.extend([
                "min_length",
                "max_length",
                "average_length",
                "missing_count",
                "missing_percent",
            ]);
        }
        d.into_iter().map(str::to_string).collect()
    } else {
        spec.metrics.clone()
    };
    let n = "cast(count(*) as double)";
    let pct = |count: &str| format!("100.0 * {count} / nullif({n}, 0)");
    let nulls = format!("cast(count(*) - count({c}) as double)");
    let zeros = format!("cast(sum(case when {c} = 0 then 1 else 0 end) as double)");
    let missing =
        format!("cast(sum(case when {c} is null or trim({c}) = '' then 1 else 0 end) as double)");
    let num = format!("cast({c} as double)");
    let len = format!("cast(character_length({c}) as double)");
    let mut out = Vec::new();
    for m in chosen {
        if spec.excluded.contains(&m) {
            continue;
        }
        let needs_number = matches!(
            m.as_str(),
            "zero_count"
                | "zero_percent"
                | "not_zero_percent"
                | "min"
                | "max"
                | "average"
                | "standard_deviation"
                | "variance"
                | "sum"
        );
        let needs_text = m.contains("length") || m.contains("missing");
        if (needs_number && !numeric) || (needs_text && !text) {
            return Err(format!(
                "column_anomalies: `{m}` measures {} columns, and `{name}` is {data_type}",
                if needs_number { "number" } else { "text" }
            ));
        }
        let expr = match m.as_str() {
            "null_count" => nulls.clone(),
            "null_percent" => pct(&nulls),
            "not_null_percent" => format!("100.0 - {}", pct(&nulls)),
            "zero_count" => zeros.clone(),
            "zero_percent" => pct(&zeros),
            "not_zero_percent" => format!("100.0 - {}", pct(&zeros)),
            "min" => format!("min({num})"),
            "max" => format!("max({num})"),
            "average" => format!("avg({num})"),
            "standard_deviation" => format!("stddev_samp({num})"),
            "variance" => format!("var_samp({num})"),
            "sum" => format!("sum({num})"),
            "min_length" => format!("min({len})"),
            "max_length" => format!("max({len})"),
            "average_length" => format!("avg({len})"),
            "missing_count" => missing.clone(),
            "missing_percent" => pct(&missing),
            "not_missing_percent" => format!("100.0 - {}", pct(&missing)),
            other => return Err(format!("`{other}` is not a column metric")),
        };
        out.push(Metric {
            name: m,
            column: name.to_string(),
            expr,
        });
    }
    if out.is_empty() {
        return Err("column_anomalies: every metric is excluded; nothing to measure".into());
    }
    Ok(out)
}

/// A column of the relation, quoted as it is named there; a missing one is named with the
/// columns there are.
fn column_of(schema: &Schema, name: &str, argument: &str) -> Result<String, String> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    match names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        Some(n) => Ok(strata_common::quote_ident(n)),
        None => Err(format!(
            "`{argument}`: the tested relation has no column `{name}`{} (its columns: {})",
            strata_common::did_you_mean(name, names.iter().copied()),
            names.join(", ")
        )),
    }
}

async fn collect(warehouse: &dyn Warehouse, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let stream = warehouse
        .query(sql, None)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .try_collect()
        .await
        .map_err(|e| strata_engine::error::describe_datafusion_error(&e))
}

fn f64_at(array: &dyn Array, row: usize) -> Option<f64> {
    if array.is_null(row) {
        return None;
    }
    array
        .as_primitive_opt::<Float64Type>()
        .map(|a| a.value(row))
        .filter(|v| v.is_finite())
}

fn first_f64(batches: &[RecordBatch], column: usize) -> Option<f64> {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| f64_at(b.column(column).as_ref(), 0))
}

fn point(
    subject: &Subject<'_>,
    measure: &str,
    metric: &Metric,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    value: Option<f64>,
    verdict: &Option<Verdict>,
) -> MetricPoint {
    MetricPoint {
        node_id: subject.node_id.to_string(),
        measure: measure.to_string(),
        metric: metric.name.clone(),
        column_name: metric.column.clone(),
        bucket_start: rfc3339(start),
        bucket_end: rfc3339(end),
        value,
        test_id: subject.test_id.to_string(),
        run_id: subject.run_id.to_string(),
        expected_low: verdict.as_ref().and_then(|v| v.expected.map(|e| e.0)),
        expected_high: verdict.as_ref().and_then(|v| v.expected.map(|e| e.1)),
        anomalous: verdict
            .as_ref()
            .filter(|v| v.expected.is_some() || v.anomalous)
            .map(|v| v.anomalous),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An anomaly test's spec from its arguments as JSON, for tests.
#[cfg(test)]
pub(crate) fn spec(args: &str) -> AnomalySpec {
    let args: indexmap::IndexMap<String, serde_json::Value> =
        serde_json::from_str(args).expect("value");
    let test = strata_project::data_tests::DataTest {
        unique_id: "test.p.t".into(),
        name: "t".into(),
        package: "p".into(),
        original_file_path: "models/p.yml".into(),
        fqn: vec![],
        kind: strata_project::data_tests::TestKind::Generic {
            test_name: "volume_anomalies".into(),
            namespace: None,
            target: strata_project::data_tests::TestTarget::Ref("m".into()),
            column: None,
            args,
        },
        config: Default::default(),
        depends_on: vec![],
        attached_node: None,
    };
    strata_project::anomaly::spec_of(&test)
        .expect("value")
        .expect("value")
}
