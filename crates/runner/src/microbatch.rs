//! Microbatch models: an incremental model processed one time period at a time. Its configs
//! (as dbt's): `event_time` (the model's time column), `batch_size` (`hour`, `day`, `month`,
//! `year`), `begin` (where the first build starts) and `lookback` (earlier batches re-run each
//! time, default 1). Each batch is compiled with its inputs filtered to the period (inputs
//! that declare an `event_time`) and replaces that period's rows in one commit.

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, Timelike};
use strata_project::Model;
use strata_project::jinja::BatchWindow;

/// The time unit of a microbatch model's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// One hour.
    Hour,
    /// One day.
    Day,
    /// One calendar month.
    Month,
    /// One calendar year.
    Year,
}

impl BatchSize {
    /// Parse a `batch_size` config.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            "year" => Some(Self::Year),
            _ => None,
        }
    }

    /// The start of the batch holding `t`.
    pub fn truncate(self, t: NaiveDateTime) -> NaiveDateTime {
        let d = t.date();
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or(t);
        match self {
            Self::Hour => t
                .with_nanosecond(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_minute(0))
                .unwrap_or(t),
            Self::Day => midnight(d),
            Self::Month => midnight(d.with_day(1).unwrap_or(d)),
            Self::Year => midnight(NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or(d)),
        }
    }

    /// The start of the next batch, from the start of one.
    pub fn next(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            Self::Hour => t + Duration::hours(1),
            Self::Day => t + Duration::days(1),
            Self::Month => t.checked_add_months(Months::new(1)).unwrap_or(t),
            Self::Year => t.checked_add_months(Months::new(12)).unwrap_or(t),
        }
    }

    /// The start of the previous batch, from the start of one.
    pub fn previous(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            Self::Hour => t - Duration::hours(1),
            Self::Day => t - Duration::days(1),
            Self::Month => t.checked_sub_months(Months::new(1)).unwrap_or(t),
            Self::Year => t.checked_sub_months(Months::new(12)).unwrap_or(t),
        }
    }

    fn id_format(self) -> &'static str {
        match self {
            Self::Hour => "%Y%m%d%H",
            Self::Day => "%Y%m%d",
            Self::Month => "%Y%m",
            Self::Year => "%Y",
        }
    }
}

/// Parse a time given as `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or ISO 8601 (`T`, optional
/// `Z`), as UTC.
pub fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim().trim_end_matches('Z').replace('T', " ");
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(&t, format) {
            return Some(parsed);
        }
    }
    NaiveDate::parse_from_str(&t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// Batches one build may run unless `--max-batches` allows more.
pub const DEFAULT_MAX_BATCHES: usize = 1000;

/// A microbatch model's configs.
#[derive(Debug, Clone)]
pub struct MicrobatchConfig {
    /// The model's time column.
    pub event_time: String,
    /// The batch size.
    pub batch_size: BatchSize,
    /// Where the first build starts.
    pub begin: Option<NaiveDateTime>,
    /// Batches before the current one re-run by each build.
    pub lookback: u32,
}

impl MicrobatchConfig {
    /// Read and check a model's configs; the error says what to set.
    pub fn of(model: &Model) -> Result<Self, String> {
        let c = &model.config;
        let event_time = c.get_str("event_time").ok_or_else(|| {
            "microbatch models need `event_time`: the column holding each row's time".to_string()
        })?;
        let batch_size = match c.get_str("batch_size") {
            Some(s) => BatchSize::parse(s)
                .ok_or_else(|| format!("batch_size `{s}` is not one of hour, day, month, year"))?,
            None => {
                return Err("microbatch models need `batch_size`: hour, day, month or year".into());
            }
        };
        let begin = match c.get("begin") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                Some(parse_time(&text).ok_or_else(|| {
                    format!("begin `{text}` is not a date or time such as 2024-01-01")
                })?)
            }
        };
        let lookback = match c.get("lookback") {
            None => 1,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("lookback `{v}` is not a whole number of batches"))?,
        };
        Ok(Self {
            event_time: event_time.to_string(),
            batch_size,
            begin,
            lookback,
        })
    }

    /// The batches a build covers, oldest first.
    ///
    /// With `range` (`--event-time-start`, `--event-time-end`) exactly that period; else from
    /// `begin` when the table is new or rebuilt in full; else the current batch and `lookback`
    /// batches before it. Batches run to the end of the period holding `now`.
    pub fn batches(
        &self,
        fresh: bool,
        range: (Option<NaiveDateTime>, Option<NaiveDateTime>),
        now: NaiveDateTime,
    ) -> Result<Vec<BatchWindow>, String> {
        let size = self.batch_size;
        let start = match (range.0, fresh, self.begin) {
            (Some(s), _, _) => s,
            (None, true, Some(b)) => b,
            (None, true, None) => {
                return Err(
                    "the first build of a microbatch model needs `begin` (e.g. begin: '2024-01-01'), or --event-time-start".into(),
                );
            }
            (None, false, _) => {
                let mut t = size.truncate(now);
                for _ in 0..self.lookback {
                    t = size.previous(t);
                }
                t
            }
        };
        let end = range.1;
        let last = end.unwrap_or(now);
        if start >= last {
            return Err(format!(
                "the batch period is empty: it starts at {start} and ends at {last}"
            ));
        }
        let mut out = Vec::new();
        let mut t = size.truncate(start);
        while t < last {
            let next = size.next(t);
            let stop = match end {
                Some(e) if e < next => e,
                _ => next,
            };
            out.push(BatchWindow {
                id: t.format(size.id_format()).to_string(),
                start: t.format("%Y-%m-%d %H:%M:%S").to_string(),
                end: stop.format("%Y-%m-%d %H:%M:%S").to_string(),
            });
            t = next;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        parse_time(s).expect("time")
    }

    fn config(size: BatchSize, begin: Option<&str>, lookback: u32) -> MicrobatchConfig {
        MicrobatchConfig {
            event_time: "ts".into(),
            batch_size: size,
            begin: begin.map(at),
            lookback,
        }
    }

    #[test]
    fn first_build_starts_at_begin_and_ends_with_the_current_period() {
        let c = config(BatchSize::Day, Some("2024-01-01"), 1);
        let b = c
            .batches(true, (None, None), at("2024-01-03 10:00"))
            .expect("batches");
        let ids: Vec<&str> = b.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["20240101", "20240102", "20240103"]);
        assert_eq!(b[2].end, "2024-01-04 00:00:00");
    }

    #[test]
    fn later_builds_redo_the_lookback() {
        let c = config(BatchSize::Hour, None, 2);
        let b = c
            .batches(false, (None, None), at("2024-01-03 10:30"))
            .expect("batches");
        let starts: Vec<&str> = b.iter().map(|b| b.start.as_str()).collect();
        assert_eq!(
            starts,
            [
                "2024-01-03 08:00:00",
                "2024-01-03 09:00:00",
                "2024-01-03 10:00:00"
            ]
        );
    }

    #[test]
    fn an_explicit_range_is_cut_at_its_end() {
        let c = config(BatchSize::Month, None, 1);
        let b = c
            .batches(
                false,
                (Some(at("2024-01-15")), Some(at("2024-03-10"))),
                at("2025-01-01"),
            )
            .expect("batches");
        let spans: Vec<(&str, &str)> = b
            .iter()
            .map(|b| (b.start.as_str(), b.end.as_str()))
            .collect();
        assert_eq!(
            spans,
            [
                ("2024-01-01 00:00:00", "2024-02-01 00:00:00"),
                ("2024-02-01 00:00:00", "2024-03-01 00:00:00"),
                ("2024-03-01 00:00:00", "2024-03-10 00:00:00"),
            ]
        );
    }

    #[test]
    fn a_first_build_without_begin_says_what_to_set() {
        let c = config(BatchSize::Day, None, 1);
        let err = c
            .batches(true, (None, None), at("2024-01-03"))
            .expect_err("no begin");
        assert!(err.contains("begin"), "{err}");
    }
}
