//! Anomaly tests: `volume_anomalies`, `freshness_anomalies` and `column_anomalies`, with the
//! names and arguments Elementary's users know. Their arguments are read here, when the
//! project loads, so a wrong one stops the load naming the test; the quality crate measures
//! and judges them when they run.

use serde_json::Value as Json;

use crate::data_tests::{DataTest, TestKind};

/// The generic tests Strata measures itself (with or without the `elementary.` prefix).
pub const ANOMALY_TESTS: [&str; 3] = [
    "volume_anomalies",
    "freshness_anomalies",
    "column_anomalies",
];

/// What `column_anomalies` can measure.
pub const COLUMN_METRICS: &[&str] = &[
    "null_count",
    "null_percent",
    "not_null_percent",
    "zero_count",
    "zero_percent",
    "not_zero_percent",
    "min",
    "max",
    "average",
    "standard_deviation",
    "variance",
    "sum",
    "min_length",
    "max_length",
    "average_length",
    "missing_count",
    "missing_percent",
    "not_missing_percent",
];

/// Arguments an anomaly test takes.
const ARGUMENTS: &[&str] = &[
    "timestamp_column",
    "where_expression",
    "time_bucket",
    "training_period",
    "detection_period",
    "days_back",
    "backfill_days",
    "detection_delay",
    "anomaly_sensitivity",
    "sensitivity",
    "anomaly_direction",
    "seasonality",
    "min_training_set_size",
    "ignore_small_changes",
    "fail_on_zero",
    "exclude_detection_period_from_training",
    "anomaly_method",
    "column_anomalies",
    "anomaly_exclude_metrics",
    "exclude_final_results",
];

/// A unit of time for buckets and periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Hour,
    Day,
    Week,
    Month,
}

impl Unit {
    /// Its name, as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().trim_end_matches('s') {
            "hour" => Unit::Hour,
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            _ => return None,
        })
    }
}

/// `{period: day, count: 14}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub unit: Unit,
    pub count: u32,
}

impl Period {
    pub const fn days(count: u32) -> Self {
        Self {
            unit: Unit::Day,
            count,
        }
    }

    /// Its length in seconds; a month counts 30 days.
    pub fn seconds(self) -> i64 {
        let unit = match self.unit {
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 7 * 86_400,
            Unit::Month => 30 * 86_400,
        };
        unit * i64::from(self.count)
    }

    /// `14 days`, `1 hour`.
    pub fn label(self) -> String {
        format!(
            "{} {}{}",
            self.count,
            self.unit.as_str(),
            if self.count == 1 { "" } else { "s" }
        )
    }
}

/// Which kind of anomaly test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// Row count, per time bucket or per run.
    Volume,
    /// Time since the last row, at the end of each bucket.
    Freshness,
    /// Column metrics (`column_anomalies`).
    Column,
}

/// Which way a value may stray and still count as an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    Spike,
    Drop,
}

/// How the expected range is drawn from the training values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Median ± sensitivity × MAD (scaled to a standard deviation): robust to past outliers.
    Mad,
    /// Mean ± sensitivity × standard deviation, as Elementary draws it.
    ZScore,
}

/// Training only on buckets like the one judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seasonality {
    DayOfWeek,
    HourOfDay,
    HourOfWeek,
}

/// An anomaly test's arguments, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySpec {
    pub monitor: Monitor,
    /// The column, for `column_anomalies`.
    pub column: Option<String>,
    /// The column metrics asked for (empty: those that fit the column's type).
    pub metrics: Vec<String>,
    /// Metrics left out (`anomaly_exclude_metrics`).
    pub excluded: Vec<String>,
    /// Buckets by this column's time; without it, each run measures the whole table.
    pub timestamp_column: Option<String>,
    /// A filter on the rows measured.
    pub where_expression: Option<String>,
    pub time_bucket: Period,
    pub training_period: Period,
    pub detection_period: Period,
    /// Buckets this recent are not judged yet (late data).
    pub detection_delay: Option<Period>,
    pub sensitivity: f64,
    pub direction: Direction,
    pub seasonality: Option<Seasonality>,
    pub min_training_set_size: usize,
    pub method: Method,
    pub fail_on_zero: bool,
    /// `ignore_small_changes`: a spike must also exceed the training mean by this percent.
    pub spike_threshold: Option<f64>,
    /// `ignore_small_changes`: a drop must also fall below the training mean by this percent.
    pub drop_threshold: Option<f64>,
    pub exclude_detection_period_from_training: bool,
}

impl AnomalySpec {
    /// The arguments that decide what is measured (not how it is judged): a metric's history
    /// is kept under these, so changing the sensitivity keeps the history.
    pub fn measure_key(&self) -> String {
        format!(
            "ts={};bucket={};where={}",
            self.timestamp_column.as_deref().unwrap_or(""),
            self.time_bucket.label(),
            self.where_expression.as_deref().unwrap_or("")
        )
    }
}

/// The anomaly test a data test is, if it is one: `Some(Err(..))` names a wrong argument.
pub fn spec_of(test: &DataTest) -> Option<Result<AnomalySpec, String>> {
    let TestKind::Generic {
        test_name,
        namespace,
        column,
        args,
        ..
    } = &test.kind
    else {
        return None;
    };
    if namespace.as_deref().is_some_and(|ns| ns != "elementary") {
        return None;
    }
    let monitor = match test_name.as_str() {
        "volume_anomalies" => Monitor::Volume,
        "freshness_anomalies" => Monitor::Freshness,
        "column_anomalies" => Monitor::Column,
        _ => return None,
    };
    Some(parse(monitor, column.as_deref(), args))
}

fn parse(
    monitor: Monitor,
    column: Option<&str>,
    args: &indexmap::IndexMap<String, Json>,
) -> Result<AnomalySpec, String> {
    for key in args.keys() {
        if !ARGUMENTS.contains(&key.as_str()) {
            return Err(format!(
                "`{key}` is not an argument of anomaly tests{}",
                strata_common::did_you_mean(key, ARGUMENTS.iter().copied())
            ));
        }
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match args.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(other) => Err(format!("`{key}` must be text, not {other}")),
        }
    };
    let number = |key: &str| -> Result<Option<f64>, String> {
        match args.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| format!("`{key}` must be a number")),
            Some(Json::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("`{key}` must be a number, not `{s}`")),
            Some(other) => Err(format!("`{key}` must be a number, not {other}")),
        }
    };
    let flag = |key: &str| -> Result<Option<bool>, String> {
        match args.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("`{key}` must be true or false, not {other}")),
        }
    };
    let whole = |key: &str| -> Result<Option<u32>, String> {
        match number(key)? {
            None => Ok(None),
            Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => {
                Ok(Some(v as u32))
            }
            Some(v) => Err(format!("`{key}` must be a whole number, not {v}")),
        }
    };
    let period = |key: &str| -> Result<Option<Period>, String> {
        let Some(value) = args.get(key) else {
            return Ok(None);
        };
        let Json::Object(m) = value else {
            return Err(format!(
                "`{key}` must be a mapping like {{period: day, count: 14}}, not {value}"
            ));
        };
        for k in m.keys() {
            if k != "period" && k != "count" {
                return Err(format!(
                    "`{key}` takes `period` and `count`, not `{k}`{}",
                    strata_common::did_you_mean(k, ["period", "count"])
                ));
            }
        }
        let unit = match m.get("period") {
            None => Unit::Day,
            Some(Json::String(s)) => Unit::parse(s).ok_or_else(|| {
                format!("`{key}.period` must be hour, day, week or month, not `{s}`")
            })?,
            Some(other) => {
                return Err(format!(
                    "`{key}.period` must be hour, day, week or month, not {other}"
                ));
            }
        };
        let count = match m.get("count") {
            None => 1,
            Some(Json::Number(n)) => n
                .as_u64()
                .filter(|c| (1..=10_000).contains(c))
                .ok_or_else(|| format!("`{key}.count` must be a whole number from 1, not {n}"))?
                as u32,
            Some(other) => {
                return Err(format!(
                    "`{key}.count` must be a whole number from 1, not {other}"
                ));
            }
        };
        Ok(Some(Period { unit, count }))
    };
    let list = |key: &str| -> Result<Vec<String>, String> {
        match args.get(key) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::String(s)) => Ok(vec![s.clone()]),
            Some(Json::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{key}` must be a list of names, not {v}"))
                })
                .collect(),
            Some(other) => Err(format!("`{key}` must be a list of names, not {other}")),
        }
    };

    let timestamp_column = text("timestamp_column")?;
    let time_bucket = period("time_bucket")?.unwrap_or(Period::days(1));
    if time_bucket.unit == Unit::Month && time_bucket.count != 1 {
        return Err("`time_bucket` of months must have count 1".into());
    }
    let training_period = match (period("training_period")?, whole("days_back")?) {
        (Some(p), _) => p,
        (None, Some(d)) if d > 0 => Period::days(d),
        (None, Some(_)) => return Err("`days_back` must be at least 1".into()),
        (None, None) => Period::days(14),
    };
    let detection_period = match (period("detection_period")?, whole("backfill_days")?) {
        (Some(p), _) => p,
        (None, Some(d)) if d > 0 => Period::days(d),
        (None, Some(_)) => return Err("`backfill_days` must be at least 1".into()),
        (None, None) => Period::days(2),
    };
    if timestamp_column.is_some() && detection_period.seconds() > training_period.seconds() {
        return Err(format!(
            "`detection_period` ({}) is longer than `training_period` ({}), which includes it",
            detection_period.label(),
            training_period.label()
        ));
    }
    let sensitivity = match (number("anomaly_sensitivity")?, number("sensitivity")?) {
        (Some(_), Some(_)) => {
            return Err("give `anomaly_sensitivity` or `sensitivity`, not both".into());
        }
        (Some(s), None) | (None, Some(s)) if s > 0.0 => s,
        (Some(s), None) | (None, Some(s)) => {
            return Err(format!("the sensitivity must be above 0, not {s}"));
        }
        (None, None) => 3.0,
    };
    let direction = match text("anomaly_direction")?.as_deref() {
        None if monitor == Monitor::Freshness => Direction::Spike,
        None | Some("both") => Direction::Both,
        Some("spike") => Direction::Spike,
        Some("drop") => Direction::Drop,
        Some(other) => {
            return Err(format!(
                "`anomaly_direction` must be both, spike or drop, not `{other}`"
            ));
        }
    };
    let seasonality = match text("seasonality")?.as_deref() {
        None => None,
        Some("day_of_week") => Some(Seasonality::DayOfWeek),
        Some("hour_of_day") => Some(Seasonality::HourOfDay),
        Some("hour_of_week") => Some(Seasonality::HourOfWeek),
        Some(other) => {
            return Err(format!(
                "`seasonality` must be day_of_week, hour_of_day or hour_of_week, not `{other}`"
            ));
        }
    };
    if matches!(
        seasonality,
        Some(Seasonality::HourOfDay | Seasonality::HourOfWeek)
    ) && timestamp_column.is_some()
        && time_bucket
            != (Period {
                unit: Unit::Hour,
                count: 1,
            })
    {
        return Err("hourly seasonality needs `time_bucket: {period: hour, count: 1}`".into());
    }
    if seasonality == Some(Seasonality::DayOfWeek)
        && timestamp_column.is_some()
        && time_bucket != Period::days(1)
    {
        return Err(
            "`seasonality: day_of_week` needs `time_bucket: {period: day, count: 1}`".into(),
        );
    }
    let method = match text("anomaly_method")?.as_deref() {
        None | Some("mad") => Method::Mad,
        Some("zscore" | "z_score" | "z-score") => Method::ZScore,
        Some(other) => {
            return Err(format!(
                "`anomaly_method` must be mad or zscore, not `{other}`"
            ));
        }
    };
    let (spike_threshold, drop_threshold) = match args.get("ignore_small_changes") {
        None | Some(Json::Null) => (None, None),
        Some(Json::Object(m)) => {
            let mut out = (None, None);
            for (k, v) in m {
                let value = match v {
                    Json::Null => None,
                    Json::Number(n) => Some(n.as_f64().filter(|p| *p >= 0.0).ok_or_else(|| {
                        format!("`ignore_small_changes.{k}` must be a percent from 0, not {n}")
                    })?),
                    other => {
                        return Err(format!(
                            "`ignore_small_changes.{k}` must be a percent, not {other}"
                        ));
                    }
                };
                match k.as_str() {
                    "spike_failure_percent_threshold" => out.0 = value,
                    "drop_failure_percent_threshold" => out.1 = value,
                    _ => {
                        let keys = [
                            "spike_failure_percent_threshold",
                            "drop_failure_percent_threshold",
                        ];
                        return Err(format!(
                            "`ignore_small_changes` takes {}, not `{k}`{}",
                            keys.join(" and "),
                            strata_common::did_you_mean(k, keys)
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(format!(
                "`ignore_small_changes` must be a mapping, not {other}"
            ));
        }
    };
    let mut metrics = list("column_anomalies")?;
    let excluded = list("anomaly_exclude_metrics")?;
    for m in metrics.iter().chain(&excluded) {
        if !COLUMN_METRICS.contains(&m.as_str()) {
            return Err(format!(
                "`{m}` is not a column metric{}; they are: {}",
                strata_common::did_you_mean(m, COLUMN_METRICS.iter().copied()),
                COLUMN_METRICS.join(", ")
            ));
        }
    }
    metrics.dedup();
    match monitor {
        Monitor::Column if column.is_none() => {
            return Err(
                "`column_anomalies` tests a column: list it under the column's `data_tests:`"
                    .into(),
            );
        }
        Monitor::Freshness if timestamp_column.is_none() => {
            return Err("`freshness_anomalies` needs `timestamp_column`: the column holding when each row arrived or changed".into());
        }
        Monitor::Volume | Monitor::Freshness if !metrics.is_empty() => {
            return Err("`column_anomalies` is an argument of the `column_anomalies` test".into());
        }
        _ => {}
    }
    let min_training_set_size = whole("min_training_set_size")?.unwrap_or(7) as usize;
    Ok(AnomalySpec {
        monitor,
        column: column.map(str::to_string),
        metrics,
        excluded,
        timestamp_column,
        where_expression: text("where_expression")?,
        time_bucket,
        training_period,
        detection_period,
        detection_delay: period("detection_delay")?,
        sensitivity,
        direction,
        seasonality,
        min_training_set_size: min_training_set_size.max(1),
        method,
        fail_on_zero: flag("fail_on_zero")?.unwrap_or(false),
        spike_threshold,
        drop_threshold,
        exclude_detection_period_from_training: flag("exclude_detection_period_from_training")?
            .unwrap_or(false),
    })
}

/// The line (1-based) where a properties file writes test `name` for node `node`: the first
/// line naming the test after the node's `name:` line.
pub fn test_line(text: &str, node: &str, name: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        let t = l.trim_start().trim_start_matches('-').trim_start();
        t.strip_prefix("name:")
            .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == node)
    })?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    lines[start..]
        .iter()
        .position(|l| {
            l.match_indices(name).any(|(i, _)| {
                !l[..i].chars().next_back().is_some_and(is_word)
                    && !l[i + name.len()..].chars().next().is_some_and(is_word)
            })
        })
        .map(|i| start + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(yaml: &str) -> indexmap::IndexMap<String, Json> {
        serde_json::from_str(yaml).expect("value")
    }

    #[test]
    fn elementary_defaults() {
        let s = parse(Monitor::Volume, None, &args("{}")).expect("value");
        assert_eq!(s.training_period, Period::days(14));
        assert_eq!(s.detection_period, Period::days(2));
        assert_eq!(s.time_bucket, Period::days(1));
        assert_eq!(s.sensitivity, 3.0);
        assert_eq!(s.direction, Direction::Both);
        assert_eq!(s.min_training_set_size, 7);
        let f = parse(
            Monitor::Freshness,
            None,
            &args(r#"{"timestamp_column": "at"}"#),
        )
        .expect("value");
        assert_eq!(f.direction, Direction::Spike);
    }

    #[test]
    fn wrong_arguments_are_named() {
        let e = parse(Monitor::Volume, None, &args(r#"{"sensitivty": 3}"#)).expect_err("an error");
        assert!(
            e.contains("`sensitivty`") && e.contains("did you mean"),
            "{e}"
        );
        let e = parse(
            Monitor::Volume,
            None,
            &args(r#"{"time_bucket": {"period": "fortnight"}}"#),
        )
        .expect_err("an error");
        assert!(e.contains("time_bucket.period"), "{e}");
        let e = parse(
            Monitor::Column,
            Some("a"),
            &args(r#"{"column_anomalies": ["nul_count"]}"#),
        )
        .expect_err("an error");
        assert!(e.contains("did you mean `null_count`"), "{e}");
        let e = parse(Monitor::Freshness, None, &args("{}")).expect_err("an error");
        assert!(e.contains("timestamp_column"), "{e}");
        let e = parse(Monitor::Column, None, &args("{}")).expect_err("an error");
        assert!(e.contains("column"), "{e}");
        let e = parse(Monitor::Volume, None, &args(r#"{"sensitivity": 0}"#)).expect_err("an error");
        assert!(e.contains("above 0"), "{e}");
    }

    #[test]
    fn lines_of_tests() {
        let text = "models:\n  - name: a\n    data_tests:\n      - volume_anomalies\n  - name: orders\n    data_tests:\n      - volume_anomalies: {x: 1}\n";
        assert_eq!(test_line(text, "orders", "volume_anomalies"), Some(7));
        assert_eq!(test_line(text, "a", "volume_anomalies"), Some(4));
    }
}
