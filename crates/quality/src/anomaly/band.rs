//! Judging a value against its training values, and what a test then says.

use chrono::{DateTime, Utc};
use strata_project::anomaly::{AnomalySpec, Direction, Method};

use super::buckets::bucket_label;
use super::{Judgement, Metric};

/// One judged value.
pub(super) struct Judged {
    pub(super) metric: Metric,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) value: Option<f64>,
    pub(super) verdict: Verdict,
}

/// How one value compares with its training values.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The expected range, when there was history enough to draw one.
    pub expected: Option<(f64, f64)>,
    /// Whether the value is outside it (or zero with `fail_on_zero`).
    pub anomalous: bool,
    /// How many training values there were.
    pub training: usize,
}

/// Judge `value` against `training` as `spec` says.
pub fn judge(spec: &AnomalySpec, value: Option<f64>, training: &[f64]) -> Verdict {
    let n = training.len();
    let zero = spec.fail_on_zero && value == Some(0.0);
    if n < spec.min_training_set_size || n == 0 {
        return Verdict {
            expected: None,
            anomalous: zero,
            training: n,
        };
    }
    let (center, spread) = match spec.method {
        Method::Mad => {
            let median = median(training);
            let deviations: Vec<f64> = training.iter().map(|v| (v - median).abs()).collect();
            let mad = median_of(deviations.clone());
            // As the modified z-score does: when over half the values are equal (MAD 0), the
            // mean absolute deviation scaled to a standard deviation stands in.
            let spread = if mad > 0.0 {
                1.4826 * mad
            } else {
                1.2533 * deviations.iter().sum::<f64>() / n as f64
            };
            (median, spread)
        }
        Method::ZScore => {
            let mean = training.iter().sum::<f64>() / n as f64;
            let var = if n > 1 {
                training.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
            } else {
                0.0
            };
            (mean, var.sqrt())
        }
    };
    let (low, high) = (
        center - spec.sensitivity * spread,
        center + spec.sensitivity * spread,
    );
    let mean = training.iter().sum::<f64>() / n as f64;
    let anomalous = match value {
        None => false,
        Some(v) => {
            let spike = v > high
                && spec.direction != Direction::Drop
                && spec
                    .spike_threshold
                    .is_none_or(|p| v > mean + mean.abs() * p / 100.0);
            let drop = v < low
                && spec.direction != Direction::Spike
                && spec
                    .drop_threshold
                    .is_none_or(|p| v < mean - mean.abs() * p / 100.0);
            spike || drop
        }
    };
    Verdict {
        expected: Some((low, high)),
        anomalous: anomalous || zero,
        training: n,
    }
}

fn median(values: &[f64]) -> f64 {
    median_of(values.to_vec())
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The message of a test: its anomalies, or (none found) each metric's newest value and range.
pub(super) fn summarize(spec: &AnomalySpec, judged: &[Judged]) -> Judgement {
    let anomalies: Vec<&Judged> = judged.iter().filter(|j| j.verdict.anomalous).collect();
    let with_range = judged
        .iter()
        .filter(|j| j.verdict.expected.is_some())
        .count();
    let unit = if spec.timestamp_column.is_some() {
        "buckets"
    } else {
        "runs"
    };
    if anomalies.is_empty() && with_range == 0 {
        let most = judged.iter().map(|j| j.verdict.training).max().unwrap_or(0);
        return Judgement {
            anomalies: 0,
            judged: 0,
            message: format!(
                "not enough history: {most} of {} {unit} (min_training_set_size); judged once there are {} earlier values{}",
                spec.min_training_set_size,
                spec.min_training_set_size,
                if spec.timestamp_column.is_some() {
                    " in the training period"
                } else {
                    ", one per run"
                }
            ),
            short_history: true,
        };
    }
    let describe = |j: &Judged| {
        let what = match j.metric.column.as_str() {
            "" => j.metric.name.clone(),
            c => format!("{} of {c}", j.metric.name),
        };
        let when = if spec.timestamp_column.is_some() {
            format!(" for {}", bucket_label(spec, j.start, j.end))
        } else {
            String::new()
        };
        let value = j
            .value
            .map_or("no value".to_string(), |v| show(&j.metric.name, v));
        match j.verdict.expected {
            Some((low, high)) => format!(
                "{what}{when}: {value}, expected {} to {} ({} training values)",
                show(&j.metric.name, low.max(lower_bound(&j.metric.name))),
                show(&j.metric.name, high),
                j.verdict.training
            ),
            None => format!("{what}{when}: {value}"),
        }
    };
    if anomalies.is_empty() {
        // The newest judged value of each metric.
        let mut latest: Vec<&Judged> = Vec::new();
        for j in judged.iter().rev() {
            if j.verdict.expected.is_some()
                && !latest
                    .iter()
                    .any(|l| l.metric.name == j.metric.name && l.metric.column == j.metric.column)
            {
                latest.push(j);
            }
        }
        latest.reverse();
        let lines: Vec<String> = latest.into_iter().map(describe).collect();
        return Judgement {
            anomalies: 0,
            judged: with_range,
            message: format!("PASS: {}", lines.join("; ")),
            short_history: false,
        };
    }
    let mut lines = vec![format!(
        "{} anomal{} found:",
        anomalies.len(),
        if anomalies.len() == 1 { "y" } else { "ies" }
    )];
    for j in anomalies.iter().take(10) {
        let zero = spec.fail_on_zero && j.value == Some(0.0);
        lines.push(format!(
            "  {}{}",
            describe(j),
            if zero { " (zero, fail_on_zero)" } else { "" }
        ));
    }
    if anomalies.len() > 10 {
        lines.push(format!("  and {} more", anomalies.len() - 10));
    }
    Judgement {
        anomalies: anomalies.len(),
        judged: with_range,
        message: lines.join("\n"),
        short_history: false,
    }
}

/// Counts, percents and durations cannot go below zero: a range is shown from 0 for them.
fn lower_bound(metric: &str) -> f64 {
    match metric {
        "min" | "max" | "average" | "sum" => f64::NEG_INFINITY,
        _ => 0.0,
    }
}

/// A value as people read it: durations in hours or days, counts whole, others rounded.
fn show(metric: &str, v: f64) -> String {
    if metric == "freshness" {
        let hours = v / 3600.0;
        return if hours >= 48.0 {
            format!("{:.1} days", hours / 24.0)
        } else if hours >= 1.0 {
            format!("{hours:.1} h")
        } else {
            format!("{:.0} min", v / 60.0)
        };
    }
    if metric.ends_with("_percent") {
        return format!("{v:.2}%");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    format!("{v:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::spec;

    #[test]
    fn a_drop_outside_the_band_is_an_anomaly() {
        let s = spec("{}");
        let training = [100.0, 104.0, 98.0, 101.0, 97.0, 103.0, 99.0, 102.0];
        let v = judge(&s, Some(60.0), &training);
        assert!(v.anomalous, "{v:?}");
        let (low, high) = v.expected.expect("value");
        assert!(low < 97.0 && high > 104.0, "{low} {high}");
        assert!(!judge(&s, Some(101.0), &training).anomalous);
        let spikes_only = spec(r#"{"anomaly_direction": "spike"}"#);
        assert!(!judge(&spikes_only, Some(60.0), &training).anomalous);
    }

    #[test]
    fn too_little_history_is_not_judged() {
        let s = spec("{}");
        let v = judge(&s, Some(0.0), &[1.0, 2.0]);
        assert_eq!(v.expected, None);
        assert!(!v.anomalous);
        assert_eq!(v.training, 2);
    }

    #[test]
    fn identical_history_still_flags_a_change() {
        let s = spec("{}");
        let v = judge(&s, Some(900.0), &[1000.0; 8]);
        assert!(v.anomalous);
        assert!(!judge(&s, Some(1000.0), &[1000.0; 8]).anomalous);
        let small = spec(r#"{"ignore_small_changes": {"drop_failure_percent_threshold": 20}}"#);
        assert!(!judge(&small, Some(900.0), &[1000.0; 8]).anomalous);
        assert!(judge(&small, Some(700.0), &[1000.0; 8]).anomalous);
    }
}
