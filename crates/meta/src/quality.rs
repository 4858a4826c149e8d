//! Data-quality history: the metrics anomaly tests measure (per time bucket, or per run for a
//! whole table) with the range each value was judged by, and every test's outcome per run.

use serde::Serialize;

use crate::db::{Row, vals};
use crate::{MetaStore, Result};

/// One measured value of a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricPoint {
    /// The node measured.
    pub node_id: String,
    /// What was measured, beyond the metric: the timestamp column, bucket and filter.
    pub measure: String,
    /// `row_count`, `freshness`, `null_percent`, ...
    pub metric: String,
    /// The column, or empty for table metrics.
    pub column_name: String,
    /// The bucket's start (RFC 3339); for whole-table metrics, when it was measured.
    pub bucket_start: String,
    /// The bucket's end.
    pub bucket_end: String,
    /// The value (`None`: nothing to measure, e.g. the average of no rows).
    pub value: Option<f64>,
    /// The test that measured it.
    pub test_id: String,
    /// The run that measured it.
    pub run_id: String,
    /// The expected range it was judged by, when it was judged.
    pub expected_low: Option<f64>,
    pub expected_high: Option<f64>,
    /// Whether it fell outside that range (`None`: not judged).
    pub anomalous: Option<bool>,
}

/// One outcome of a test in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    pub run_id: String,
    pub started_at: String,
    pub status: String,
    pub failures: Option<i64>,
    pub message: Option<String>,
    /// The first rows it found, as a JSON array of objects.
    pub sample: Option<String>,
}

impl MetaStore {
    /// Keep measured values; a bucket measured again (late rows) is replaced.
    pub fn record_metrics(&self, points: &[MetricPoint]) -> Result<()> {
        self.conn()?.transaction(|tx| {
            for p in points {
                tx.execute(
                    "INSERT INTO quality_metrics
                       (node_id, measure, metric, column_name, bucket_start, bucket_end, value,
                        test_id, run_id, expected_low, expected_high, anomalous)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (node_id, measure, metric, column_name, bucket_start) DO UPDATE SET
                       bucket_end = excluded.bucket_end, value = excluded.value,
                       test_id = excluded.test_id, run_id = excluded.run_id,
                       expected_low = excluded.expected_low,
                       expected_high = excluded.expected_high, anomalous = excluded.anomalous",
                    vals![
                        p.node_id,
                        p.measure,
                        p.metric,
                        p.column_name,
                        p.bucket_start,
                        p.bucket_end,
                        p.value,
                        p.test_id,
                        p.run_id,
                        p.expected_low,
                        p.expected_high,
                        p.anomalous
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The values of one metric of a node measured from `since` (inclusive) to `before`
    /// (exclusive), oldest first.
    pub fn metric_history(
        &self,
        node_id: &str,
        measure: &str,
        metric: &str,
        column: &str,
        since: &str,
        before: &str,
    ) -> Result<Vec<MetricPoint>> {
        self.conn()?
            .query(
                "SELECT node_id, measure, metric, column_name, bucket_start, bucket_end, value,
                        test_id, run_id, expected_low, expected_high, anomalous
                 FROM quality_metrics
                 WHERE node_id = ?1 AND measure = ?2 AND metric = ?3 AND column_name = ?4
                   AND bucket_start >= ?5 AND bucket_start < ?6
                 ORDER BY bucket_start",
                vals![node_id, measure, metric, column, since, before],
            )?
            .iter()
            .map(metric_point)
            .collect()
    }

    /// Every value measured of a node's metrics, by metric and column, oldest first.
    pub fn node_metrics(&self, node_id: &str) -> Result<Vec<MetricPoint>> {
        self.conn()?
            .query(
                "SELECT node_id, measure, metric, column_name, bucket_start, bucket_end, value,
                        test_id, run_id, expected_low, expected_high, anomalous
                 FROM quality_metrics WHERE node_id = ?1
                 ORDER BY column_name, metric, measure, bucket_start",
                vals![node_id],
            )?
            .iter()
            .map(metric_point)
            .collect()
    }

    /// A test's outcomes, newest first, at most `limit`.
    pub fn test_outcomes(&self, unique_id: &str, limit: usize) -> Result<Vec<TestOutcome>> {
        self.conn()?
            .query(
                "SELECT run_id, started_at, status, failures, message, sample FROM node_results
                 WHERE unique_id = ?1 ORDER BY started_at DESC, rowid DESC LIMIT ?2",
                vals![unique_id, limit],
            )?
            .iter()
            .map(|r| {
                Ok(TestOutcome {
                    run_id: r.get(0)?,
                    started_at: r.get(1)?,
                    status: r.get(2)?,
                    failures: r.get(3)?,
                    message: r.get(4)?,
                    sample: r.get(5)?,
                })
            })
            .collect()
    }
}

fn metric_point(r: &Row) -> Result<MetricPoint> {
    Ok(MetricPoint {
        node_id: r.get(0)?,
        measure: r.get(1)?,
        metric: r.get(2)?,
        column_name: r.get(3)?,
        bucket_start: r.get(4)?,
        bucket_end: r.get(5)?,
        value: r.get(6)?,
        test_id: r.get(7)?,
        run_id: r.get(8)?,
        expected_low: r.get(9)?,
        expected_high: r.get(10)?,
        anomalous: r.get(11)?,
    })
}
