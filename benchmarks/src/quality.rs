//! `quality`: the cost of data quality on a 10,000,000-row table model.
//! - Quarantine: the model built with three row checks (`not_null`, `accepted_values`,
//!   `expression`; 1% of the rows fail one and are set aside) against the same build without
//!   them (target: < 1.5×).
//! - Anomaly tests: `strata build` of the model with its anomaly tests (volume of the whole
//!   table, daily volume and freshness by its date column, `column_anomalies` of three metrics)
//!   against `strata run` of the model alone (target: < 10% more).

use std::path::Path;

use anyhow::Result;

use crate::{Row, base_project, measure, time_strata, time_strata_exit, write};

/// 10M rows dated over the last 30 days (so daily metrics have buckets to measure), 1% of
/// them with a status no check accepts.
fn facts(quarantine: &str) -> String {
    let today = chrono::Utc::now().date_naive();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let days = (today - epoch).num_days();
    format!(
        "{{{{ config(materialized='table'{quarantine}) }}}}
select value as id, value % 50000 as customer, (value % 1000) * 1.5 as amount,
       case when value % 100 = 0 then 'lost' else 'placed' end as status,
       arrow_cast(cast({days} - 30 + value % 30 as int), 'Date32') as day
from generate_series(1, 10000000)"
    )
}

const CHECKS: &str = ", quarantine=[{'not_null': 'id'}, {'accepted_values': {'column': 'status', 'values': ['placed', 'shipped']}}, {'expression': 'amount >= 0'}]";

const ANOMALY_TESTS: &str = "version: 2
models:
  - name: facts
    data_tests:
      - volume_anomalies
      - volume_anomalies: {timestamp_column: day}
      - freshness_anomalies: {timestamp_column: day}
    columns:
      - name: amount
        data_tests:
          - column_anomalies: {column_anomalies: [null_percent, average, zero_count]}
";

pub fn quality(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    base_project(dir, 2)?;
    write(dir, "models/facts.sql", &facts(""))?;
    time_strata(strata, dir, &["run"])?;
    let (plain, plain_min) = measure(runs, || time_strata(strata, dir, &["run"]))?;

    write(dir, "models/facts.sql", &facts(CHECKS))?;
    time_strata(strata, dir, &["run"])?;
    let (checked, checked_min) = measure(runs, || time_strata(strata, dir, &["run"]))?;

    write(dir, "models/facts.sql", &facts(""))?;
    write(dir, "models/facts.yml", ANOMALY_TESTS)?;
    // Warnings (too little history at first) exit 0; an anomaly would exit 1.
    let (tested, tested_min) =
        measure(runs, || time_strata_exit(strata, dir, &["build"], &[0, 1]))?;
    let ratio = |a: std::time::Duration| a.as_secs_f64() / plain.as_secs_f64();
    Ok(vec![
        Row {
            scenario: "10M table model".into(),
            size: "10000000".into(),
            median: plain,
            min: plain_min,
            note: "strata run, no checks".into(),
        },
        Row {
            scenario: "10M table model, quarantine".into(),
            size: "10000000".into(),
            median: checked,
            min: checked_min,
            note: format!(
                "3 row checks, 100,000 rows set aside: {:.2}x the build without (target < 1.5x)",
                ratio(checked)
            ),
        },
        Row {
            scenario: "10M table model + anomalies".into(),
            size: "10000000".into(),
            median: tested,
            min: tested_min,
            note: format!(
                "strata build with 4 anomaly tests: +{:.1}% over strata run (target < 10%)",
                (ratio(tested) - 1.0) * 100.0
            ),
        },
    ])
}
