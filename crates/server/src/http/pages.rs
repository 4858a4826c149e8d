//! The pages of the web UI besides dashboards: run history, data quality, the catalog, the
//! lineage graph and the SQL explorer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use super::dashboards::{definitions, query_rows};
use super::{AppState, allowed, error, esc, not_found, page};
use crate::users::Role;

pub(super) async fn runs(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let runs = match state.meta.runs(100) {
        Ok(r) => r,
        Err(e) => return error(&e.to_string()),
    };
    let mut body = String::from(
        "<table class=\"grid\"><thead><tr><th>Run</th><th>Command</th><th>Target</th><th>Started</th><th>Status</th></tr></thead><tbody>",
    );
    for r in &runs {
        let _ = write!(
            body,
            "<tr><td><a href=\"/runs/{0}\">{1}</a></td><td><code>{2}</code></td><td>{3}</td><td>{4}</td><td><span class=\"pill {5}\">{5}</span></td></tr>",
            esc(&r.run_id),
            esc(r.run_id.get(..8).unwrap_or(&r.run_id)),
            esc(&r.args),
            esc(&r.target),
            esc(&r.started_at),
            esc(&r.status)
        );
    }
    body.push_str("</tbody></table>");
    if runs.is_empty() {
        body = "<p>No run yet: <code>strata build</code> records its first.</p>".into();
    }
    let pipelines = match super::pipelines::latest(&state) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    page("Runs", &name, &format!("{pipelines}{body}")).into_response()
}

pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let nodes = match state.meta.node_results(&id) {
        Ok(n) => n,
        Err(e) => return error(&e.to_string()),
    };
    if nodes.is_empty() {
        return not_found().await;
    }
    let longest = nodes
        .iter()
        .map(|n| n.seconds)
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let mut body = String::from(
        "<table class=\"grid\"><thead><tr><th>Node</th><th>Status</th><th>Seconds</th><th></th><th>Rows</th><th>Message</th></tr></thead><tbody>",
    );
    for n in &nodes {
        let width = (160.0 * n.seconds / longest).max(1.0);
        let _ = write!(
            body,
            "<tr><td>{}</td><td><span class=\"pill {1}\">{1}</span></td><td>{2:.2}</td>\
             <td><svg width=\"160\" height=\"10\" role=\"img\" aria-label=\"{2:.2} s\"><rect width=\"{width:.1}\" height=\"10\" rx=\"2\" class=\"bar\"><title>{2:.2} s</title></rect></svg></td>\
             <td>{3}</td><td>{4}</td></tr>",
            esc(&n.unique_id),
            esc(&n.status),
            n.seconds,
            n.rows_affected.map(|r| r.to_string()).unwrap_or_default(),
            esc(n.message.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table>");
    page(&format!("Run {}", id.get(..8).unwrap_or(&id)), &name, &body).into_response()
}

pub(super) async fn quality(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&state, &headers, true) {
        return *r;
    }
    let warehouse = match state.warehouses.current() {
        Ok(w) => w,
        Err(e) => return error(&e),
    };
    match strata_quality::report::page(&state.project, &state.meta, &warehouse).await {
        Ok((html, _)) => Html(html).into_response(),
        Err(e) => error(&e.to_string()),
    }
}

/// The catalog's entries a role may see: `bi_reader` the gold layer and dashboards only.
pub(super) fn catalog_entries(
    state: &AppState,
    role: Role,
) -> Result<Vec<crate::catalog::Entry>, String> {
    let (metrics, dashboards) = definitions(state)?;
    let boards: Vec<(String, String, Vec<String>)> = dashboards
        .iter()
        .map(|d| {
            let mut models: Vec<String> = Vec::new();
            for c in &d.charts {
                match &c.source {
                    crate::dashboards::Source::Metric { metric, .. } => {
                        if let Ok(m) = crate::metrics::find(&metrics, metric) {
                            models.push(m.model.clone());
                        }
                    }
                    crate::dashboards::Source::Sql(sql) => {
                        models.extend(crate::catalog::refs_in(sql))
                    }
                }
            }
            models.sort();
            models.dedup();
            (d.name.clone(), d.title.clone(), models)
        })
        .collect();
    let all = crate::catalog::entries(&state.project, &state.meta, &boards);
    Ok(match role {
        Role::Admin => all,
        Role::BiReader => all
            .into_iter()
            .filter(|e| e.kind == "dashboard" || crate::catalog::is_gold(&e.schema))
            .collect(),
    })
}

pub(super) async fn catalog(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, role) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match catalog_entries(&state, role) {
        Ok(entries) => page("Catalog", &name, &crate::catalog::list(&entries)).into_response(),
        Err(e) => error(&e),
    }
}

pub(super) async fn catalog_entry(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (name, role) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let entries = match catalog_entries(&state, role) {
        Ok(e) => e,
        Err(e) => return error(&e),
    };
    let Some(entry) = entries.iter().find(|e| e.id == id && e.kind != "dashboard") else {
        return not_found().await;
    };
    let relation = state
        .project
        .node(&id)
        .map(|n| n.relation().clone())
        .or_else(|| state.project.sources.get(&id).map(|s| s.relation.clone()));
    // Column types from the relation itself, when it exists.
    let mut types = Vec::new();
    if let (Some(r), Ok(w)) = (relation, state.warehouses.current()) {
        use strata_engine::Warehouse;
        if let Ok(schema) = w.describe(&format!("select * from {r}")).await {
            types = schema
                .fields()
                .iter()
                .map(|f| {
                    (
                        f.name().clone(),
                        strata_engine::types::sql_type(f.data_type()),
                    )
                })
                .collect();
        }
    }
    let body = crate::catalog::detail(entry, &types, &entries);
    page(&entry.name, &name, &body).into_response()
}

pub(super) async fn lineage(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match catalog_entries(&state, Role::Admin) {
        Ok(entries) => {
            let body = format!(
                "<p class=\"muted\">Sources and seeds on the left; each arrow goes to what reads it; dashboards on the right.</p><div class=\"scroll\">{}</div>",
                crate::catalog::lineage(&entries)
            );
            page("Lineage", &name, &body).into_response()
        }
        Err(e) => error(&e),
    }
}

/// Rows the SQL explorer shows at most.
const EXPLORER_ROWS: usize = 1000;
/// How long an explorer query may run.
const EXPLORER_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQL explorer: a read-only query (Jinja with `ref()` and `source()` allowed), at most
/// [`EXPLORER_ROWS`] rows, stopped after [`EXPLORER_TIMEOUT`].
pub(super) async fn sql_explorer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let sql = params
        .get("q")
        .map(|q| q.trim().to_string())
        .unwrap_or_default();
    let mut body = format!(
        "<form method=\"get\" class=\"explorer\"><textarea name=\"q\" rows=\"6\" spellcheck=\"false\" placeholder=\"select * from {{{{ ref('orders') }}}} limit 10\">{}</textarea>\
         <button type=\"submit\">Run</button> <span class=\"muted\">read-only; at most {EXPLORER_ROWS} rows; {} s</span></form>",
        esc(&sql),
        EXPLORER_TIMEOUT.as_secs()
    );
    if !sql.is_empty() {
        let result = match state.warehouses.current() {
            Ok(w) => {
                let started = Instant::now();
                match tokio::time::timeout(
                    EXPLORER_TIMEOUT,
                    query_rows(&state, &w, &sql, EXPLORER_ROWS, Role::Admin),
                )
                .await
                {
                    Ok(Ok(rows)) => {
                        let n = rows.cells.len();
                        let table = crate::dashboards::render(
                            &crate::dashboards::Chart {
                                title: String::new(),
                                kind: "table".into(),
                                source: crate::dashboards::Source::Sql(String::new()),
                                stacked: false,
                            },
                            &rows,
                        );
                        format!(
                            "<p class=\"muted\">{n} row{}{} in {:.2} s</p>{table}",
                            if n == 1 { "" } else { "s" },
                            if n == EXPLORER_ROWS {
                                " (the first)"
                            } else {
                                ""
                            },
                            started.elapsed().as_secs_f64()
                        )
                    }
                    Ok(Err(e)) => format!("<pre class=\"bad\">{}</pre>", esc(&e)),
                    Err(_) => format!(
                        "<p class=\"bad\">The query ran longer than {} s and was stopped.</p>",
                        EXPLORER_TIMEOUT.as_secs()
                    ),
                }
            }
            Err(e) => format!("<pre class=\"bad\">{}</pre>", esc(&e)),
        };
        tracing::info!("SQL explorer query by `{name}`: {}", sql.replace('\n', " "));
        body.push_str(&result);
    }
    page("SQL", &name, &body).into_response()
}
