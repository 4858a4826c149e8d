//! Pipeline runs in the web UI: the latest runs on the run history page, and each run's steps
//! and attempts, read from the records `strata trigger`, `strata scheduler` and
//! `strata backfill` keep.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{AppState, allowed, error, esc, not_found, page};

/// The latest pipeline runs as a table; empty when there are none.
pub(super) fn latest(state: &AppState) -> Result<String, String> {
    let runs = state
        .meta
        .pipeline_runs(None, 50)
        .map_err(|e| e.to_string())?;
    if runs.is_empty() {
        return Ok(String::new());
    }
    let mut body = String::from(
        "<h2>Pipelines</h2><table class=\"grid\"><thead><tr><th>Run</th><th>Pipeline</th><th>Trigger</th><th>Interval</th><th>Started</th><th>Status</th></tr></thead><tbody>",
    );
    for r in &runs {
        let interval = match (&r.interval_start, &r.interval_end) {
            (Some(s), Some(e)) => format!("{} – {}", esc(s), esc(e)),
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/pipelines/runs/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{interval}</td><td>{3}</td><td><span class=\"pill {4}\">{4}</span></td></tr>",
            r.id,
            esc(&r.pipeline),
            esc(&r.trigger),
            esc(&r.started_at),
            esc(&r.status)
        );
    }
    body.push_str("</tbody></table><h2>Builds</h2>");
    Ok(body)
}

/// One pipeline run: each step's attempts, and the end of a failed attempt's output.
pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (run, steps) = match state.meta.pipeline_run(id) {
        Ok(Some(found)) => found,
        Ok(None) => return not_found().await,
        Err(e) => return error(&e.to_string()),
    };
    let mut body = format!(
        "<p>{} run of <b>{}</b>, started {} by {}: <span class=\"pill {4}\">{4}</span></p>",
        esc(&run.trigger),
        esc(&run.pipeline),
        esc(&run.started_at),
        esc(&run.owner),
        esc(&run.status)
    );
    body.push_str(
        "<table class=\"grid\"><thead><tr><th>Step</th><th>Attempt</th><th>Status</th><th>Started</th><th>Finished</th><th>Exit</th><th>Message</th></tr></thead><tbody>",
    );
    for s in &steps {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><span class=\"pill {2}\">{2}</span></td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td></tr>",
            esc(&s.step),
            match s.attempt {
                0 => "-".to_string(),
                n => n.to_string(),
            },
            esc(&s.status),
            esc(&s.started_at),
            esc(s.finished_at.as_deref().unwrap_or("")),
            s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            esc(s.message.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table>");
    for s in steps
        .iter()
        .filter(|s| matches!(s.status.as_str(), "failed" | "timed_out"))
    {
        let log = s.log.as_deref().unwrap_or("").trim_end();
        if !log.is_empty() {
            let _ = write!(
                body,
                "<h2>{} attempt {}: the end of its output</h2><pre>{}</pre>",
                esc(&s.step),
                s.attempt,
                esc(log)
            );
        }
    }
    page(&format!("Pipeline run {id}"), &name, &body).into_response()
}
