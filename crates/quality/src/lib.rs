//! Data quality beyond pass/fail: anomaly tests judged against the metrics kept per run
//! (`volume_anomalies`, `freshness_anomalies`, `column_anomalies`), and column profiles of a
//! table with the data tests they suggest (`strata profile`), and the quality report of every
//! check's history (`strata quality report`).

pub mod anomaly;
pub mod profile;
pub mod report;
