//! Alerts: a JSON POST to a webhook (Slack-style incoming webhooks read its `text`) when a
//! run fails, when a step spends its retries, when a run is late (not finished by its
//! pipeline's `sla`), or when it succeeds, as its pipeline's `alerts: {on: […]}` asks.
//! `{{ env_var('NAME') }}` in the webhook is read from the environment when it is sent, so the
//! secret URL stays out of files. Each alert is recorded with its run, and sent once.

use std::time::Duration;

use serde_json::json;
use strata_meta::MetaStore;

use crate::pipeline::Pipeline;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Failure,
    RetriesExhausted,
    SlaMiss,
    Success,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::RetriesExhausted => "retries_exhausted",
            Event::SlaMiss => "sla_miss",
            Event::Success => "success",
        }
    }
}

/// One alert about one run.
#[derive(Debug, Clone)]
pub struct Alert<'a> {
    pub event: Event,
    pub pipeline: &'a Pipeline,
    pub run_id: i64,
    /// One line for people.
    pub text: String,
    /// The steps concerned.
    pub steps: Vec<String>,
}

/// Send `alert` where its pipeline says, if it asks for this event and it was not sent
/// before; what went wrong, if anything (an alert that cannot be sent is logged, and never
/// fails a run).
pub async fn send(meta: &MetaStore, alert: &Alert<'_>) -> Result<(), String> {
    let alerts = &alert.pipeline.alerts;
    if !alerts.on.iter().any(|e| e == alert.event.as_str()) {
        return Ok(());
    }
    if alerts.webhook.is_none() && alerts.email.is_empty() {
        return Ok(());
    }
    let first = meta
        .record_pipeline_alert(alert.run_id, alert.event.as_str(), &crate::execute::now())
        .map_err(|e| format!("cannot record the alert: {e}"))?;
    if !first {
        return Ok(());
    }
    let mailed = match alerts.email.is_empty() {
        true => Ok(()),
        false => mail(alert).await,
    };
    let posted = match &alerts.webhook {
        Some(webhook) => post(webhook, alert).await,
        None => Ok(()),
    };
    match (mailed, posted) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(m), Err(p)) => Err(format!("{m}; {p}")),
    }
}

/// The alert by e-mail, to the pipeline's `email` addresses.
async fn mail(alert: &Alert<'_>) -> Result<(), String> {
    let server = crate::smtp::Server::from_env()?;
    let mut body = format!(
        "{}\n\npipeline: {}\nrun: {}\nevent: {}\n",
        alert.text,
        alert.pipeline.name,
        alert.run_id,
        alert.event.as_str()
    );
    if !alert.steps.is_empty() {
        body.push_str(&format!("steps: {}\n", alert.steps.join(", ")));
    }
    body.push_str(&format!(
        "\n`strata runs show {}` tells what happened.\n",
        alert.run_id
    ));
    server
        .send(
            &alert.pipeline.alerts.email,
            &format!("[strata] {}", alert.text),
            &body,
        )
        .await
        .map_err(|e| format!("e-mail: {e}"))
}

/// The alert as a JSON POST to the webhook.
async fn post(webhook: &str, alert: &Alert<'_>) -> Result<(), String> {
    let url = strata_project::profile::render_env_vars(webhook, "a pipeline's webhook")
        .map_err(|e| e.to_string())?;
    let body = json!({
        "text": alert.text,
        "pipeline": alert.pipeline.name,
        "run_id": alert.run_id,
        "event": alert.event.as_str(),
        "steps": alert.steps,
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url.trim())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("the webhook did not answer: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the webhook answered {}", response.status()));
    }
    Ok(())
}

/// When a run of the interval ending at `due` is late: `sla` after it, or `sla`'s time of day
/// on the day it is due, in `timezone` (the next day's, when that is earlier than `due`).
pub fn deadline(
    due: chrono::DateTime<chrono::Utc>,
    timezone: chrono_tz::Tz,
    sla: crate::pipeline::Sla,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let sla = match sla {
        crate::pipeline::Sla::After(d) => return Some(due + chrono::Duration::from_std(d).ok()?),
        crate::pipeline::Sla::At(t) => t,
    };
    let local = due.with_timezone(&timezone);
    let mut day = local.date_naive();
    if sla < local.time() {
        day = day.succ_opt()?;
    }
    timezone
        .from_local_datetime(&day.and_time(sla))
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone, Utc};

    #[test]
    fn a_runs_deadline_is_its_sla_on_the_day_it_is_due() {
        let berlin = chrono_tz::Europe::Berlin;
        let sla = crate::pipeline::Sla::At(NaiveTime::from_hms_opt(7, 30, 0).expect("time"));
        // Due 06:00 Berlin (05:00 UTC in winter): late after 07:30 Berlin, 06:30 UTC.
        let due = Utc
            .with_ymd_and_hms(2026, 1, 10, 5, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            deadline(due, berlin, sla),
            Utc.with_ymd_and_hms(2026, 1, 10, 6, 30, 0).single()
        );
        // Due 23:00: its deadline is 07:30 the next morning.
        let late = Utc
            .with_ymd_and_hms(2026, 1, 10, 22, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            deadline(late, berlin, sla),
            Utc.with_ymd_and_hms(2026, 1, 11, 6, 30, 0).single()
        );
        let after = crate::pipeline::Sla::After(std::time::Duration::from_secs(7200));
        assert_eq!(
            deadline(due, berlin, after),
            Utc.with_ymd_and_hms(2026, 1, 10, 7, 0, 0).single()
        );
    }
}
