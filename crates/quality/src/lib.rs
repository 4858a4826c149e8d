//! Data quality beyond pass/fail: anomaly tests judged against the metrics kept per run
//! (`volume_anomalies`, `freshness_anomalies`, `column_anomalies`), and column profiles of a
//! table with the data tests they suggest (`strata profile`).

pub mod anomaly;
pub mod profile;
