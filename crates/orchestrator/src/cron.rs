//! Cron expressions: five fields (minute, hour, day of month, month, day of week), or six
//! with seconds first, read in a time zone, so `0 6 * * *` in Europe/Berlin is 06:00 there
//! in winter and in summer.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;

/// A cron expression, checked; the error says what is wrong.
pub fn parse(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "`{expression}` is not a cron expression: it has {fields} fields, and a cron expression has 5 (minute hour day-of-month month day-of-week, e.g. \"0 6 * * *\"), or 6 with seconds first"
        ));
    }
    Cron::from_str(expression).map_err(|e| {
        format!(
            "`{expression}` is not a cron expression: {e} (minute hour day-of-month month day-of-week, e.g. \"0 6 * * *\")"
        )
    })
}

/// The first time after `after` that `cron` names, read in `timezone`.
pub fn next_after(
    cron: &Cron,
    timezone: chrono_tz::Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&timezone), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The last time before `before` that `cron` names, read in `timezone`.
pub fn previous_before(
    cron: &Cron,
    timezone: chrono_tz::Tz,
    before: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&before.with_timezone(&timezone), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expressions_are_checked_and_read_in_their_time_zone() {
        assert!(parse("0 6 * * *").is_ok());
        assert!(parse("@daily").is_ok());
        let err = parse("0 6 * *").expect_err("four fields");
        assert!(err.contains("has 4 fields"), "{err}");
        let err = parse("0 25 * * *").expect_err("hour 25");
        assert!(err.contains("not a cron expression"), "{err}");
        let cron = parse("0 6 * * *").expect("cron");
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("tz");
        // Winter: 06:00 in Berlin is 05:00 UTC; summer: 04:00 UTC.
        let winter = Utc
            .with_ymd_and_hms(2026, 1, 10, 12, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            next_after(&cron, berlin, winter),
            Utc.with_ymd_and_hms(2026, 1, 11, 5, 0, 0).single()
        );
        let summer = Utc
            .with_ymd_and_hms(2026, 7, 10, 12, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            next_after(&cron, berlin, summer),
            Utc.with_ymd_and_hms(2026, 7, 11, 4, 0, 0).single()
        );
    }
}
