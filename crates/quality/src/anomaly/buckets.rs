//! Time buckets: where they start, which are measured and judged, and which are alike.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use strata_project::anomaly::{AnomalySpec, Seasonality, Unit};

/// The timestamps bounding what is measured and judged.
pub(super) struct Window {
    /// The first bucket measured.
    pub(super) start: DateTime<Utc>,
    /// The end of the last complete bucket.
    pub(super) end: DateTime<Utc>,
    /// Buckets from here on are judged.
    pub(super) detection_start: DateTime<Utc>,
    /// How far back a judged bucket's training values go.
    pub(super) training: Duration,
}

impl Window {
    pub(super) fn of(spec: &AnomalySpec, now: DateTime<Utc>) -> Self {
        let delay = spec.detection_delay.map_or(0, |d| d.seconds());
        let end = bucket_floor(spec, now - Duration::seconds(delay));
        let training = Duration::seconds(training_seconds(spec));
        let detection_start = bucket_floor(
            spec,
            end - Duration::seconds(spec.detection_period.seconds()),
        );
        // The measured span holds the judged buckets and, before the first, a training period.
        let start = bucket_floor(spec, detection_start - training);
        Self {
            start,
            end,
            detection_start,
            training,
        }
    }
}

/// How far back training values go: the training period, seven times over for weekly
/// seasonality (a day is compared with as many of its weekdays as there are days otherwise).
pub(super) fn training_seconds(spec: &AnomalySpec) -> i64 {
    let base = spec.training_period.seconds();
    match spec.seasonality {
        Some(Seasonality::DayOfWeek | Seasonality::HourOfWeek) => base * 7,
        Some(Seasonality::HourOfDay) => base * 24,
        None => base,
    }
}

pub(super) fn same_season(season: Option<Seasonality>, a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    match season {
        None => true,
        Some(Seasonality::DayOfWeek) => a.weekday() == b.weekday(),
        Some(Seasonality::HourOfDay) => a.hour() == b.hour(),
        Some(Seasonality::HourOfWeek) => a.weekday() == b.weekday() && a.hour() == b.hour(),
    }
}

/// The width of a bucket in seconds and its offset from the epoch (weeks start on Monday;
/// 1970-01-01 was a Thursday). `None` for months.
pub(super) fn bucket_width(spec: &AnomalySpec) -> Option<(i64, i64)> {
    let b = spec.time_bucket;
    match b.unit {
        Unit::Month => None,
        Unit::Week => Some((b.seconds(), 4 * 86_400)),
        Unit::Hour | Unit::Day => Some((b.seconds(), 0)),
    }
}

/// The start of the bucket holding `t`.
pub(super) fn bucket_floor(spec: &AnomalySpec, t: DateTime<Utc>) -> DateTime<Utc> {
    match bucket_width(spec) {
        Some((w, offset)) => {
            let s = t.timestamp();
            let floored = (s - offset).div_euclid(w) * w + offset;
            Utc.timestamp_opt(floored, 0).single().unwrap_or(t)
        }
        None => Utc
            .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(t),
    }
}

/// The start of the bucket after the one starting at `t`.
pub(super) fn next_bucket(spec: &AnomalySpec, t: DateTime<Utc>) -> DateTime<Utc> {
    match bucket_width(spec) {
        Some((w, _)) => t + Duration::seconds(w),
        None => {
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t)
        }
    }
}

pub(super) fn bucket_label(spec: &AnomalySpec, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    match (spec.time_bucket.unit, spec.time_bucket.count) {
        (Unit::Day, 1) => start.format("%Y-%m-%d").to_string(),
        (Unit::Month, _) => start.format("%Y-%m").to_string(),
        (Unit::Hour, _) => format!(
            "{} to {}",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%H:%M")
        ),
        _ => format!("{} to {}", start.format("%Y-%m-%d"), end.format("%Y-%m-%d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::spec;

    #[test]
    fn buckets_start_on_the_unit() {
        let day = spec("{}");
        let t = Utc
            .with_ymd_and_hms(2026, 11, 30, 15, 4, 5)
            .single()
            .expect("value");
        assert_eq!(
            bucket_floor(&day, t),
            Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0)
                .single()
                .expect("value")
        );
        let week = spec(r#"{"time_bucket": {"period": "week", "count": 1}}"#);
        // 2026-11-30 is a Monday.
        assert_eq!(
            bucket_floor(&week, t + Duration::days(3)),
            Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0)
                .single()
                .expect("value")
        );
        let month = spec(r#"{"time_bucket": {"period": "month", "count": 1}}"#);
        assert_eq!(
            next_bucket(&month, bucket_floor(&month, t)),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .single()
                .expect("value")
        );
        let w = Window::of(&day, t);
        assert_eq!(
            w.end,
            Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0)
                .single()
                .expect("value")
        );
        assert_eq!(w.detection_start, w.end - Duration::days(2));
        assert_eq!(w.start, w.detection_start - Duration::days(14));
    }
}
