//! Dashboards in the web UI: the list, a dashboard with its filters, and each chart's rows
//! as CSV; and reading a query's rows for them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, allowed, error, esc, not_found, page};
use crate::users::Role;

/// The project's metrics and dashboards, read afresh (editing them needs no restart).
pub(super) fn definitions(
    state: &AppState,
) -> Result<
    (
        Vec<crate::metrics::Metric>,
        Vec<crate::dashboards::Dashboard>,
    ),
    String,
> {
    let names: Vec<&str> = state
        .project
        .models
        .values()
        .map(|m| m.name.as_str())
        .chain(state.project.seeds.values().map(|s| s.name.as_str()))
        .collect();
    let metrics = crate::metrics::load(&state.project.root, &names).map_err(|e| e.to_string())?;
    let dashboards =
        crate::dashboards::load(&state.project.root, &metrics).map_err(|e| e.to_string())?;
    Ok((metrics, dashboards))
}

pub(super) async fn dashboards(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, _) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (_, list) = match definitions(&state) {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let mut body = String::from("<ul>");
    for d in &list {
        let _ = write!(
            body,
            "<li><a href=\"/dashboards/{}\">{}</a> <span class=\"muted\">{}</span></li>",
            esc(&d.name),
            esc(&d.title),
            esc(&d.description)
        );
    }
    body.push_str("</ul>");
    if list.is_empty() {
        body = format!(
            "<p>No dashboards yet: define them in <code>{}/*.yml</code>.</p>",
            crate::dashboards::FOLDER
        );
    }
    page("Dashboards", &name, &body).into_response()
}

/// The filters' values, from the query string.
pub(super) fn chosen(
    d: &crate::dashboards::Dashboard,
    params: &HashMap<String, String>,
) -> crate::dashboards::Chosen {
    let mut c = crate::dashboards::Chosen::default();
    let value = |k: &str| params.get(k).filter(|v| !v.trim().is_empty()).cloned();
    for f in &d.filters {
        match f {
            crate::dashboards::Filter::DateRange { .. } => {
                c.start = value("start");
                c.end = value("end");
            }
            crate::dashboards::Filter::Select { name, dimension } => {
                if let Some(v) = value(name) {
                    c.selected.push((dimension.clone(), v));
                }
            }
        }
    }
    c
}

pub(super) async fn dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let (user_name, role) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (metrics, list) = match definitions(&state) {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let Some(d) = list.iter().find(|d| d.name == name) else {
        return not_found().await;
    };
    let warehouse = match state.warehouses.current() {
        Ok(w) => w,
        Err(e) => return error(&e),
    };
    let chosen = chosen(d, &params);
    let query_string: String = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    // The filters, as a form that reloads the page.
    let mut body = format!("<p class=\"muted\">{}</p>", esc(&d.description));
    if !d.filters.is_empty() {
        body.push_str("<form method=\"get\" class=\"filters\">");
        for f in &d.filters {
            match f {
                crate::dashboards::Filter::DateRange { .. } => {
                    let _ = write!(
                        body,
                        "<label>From <input type=\"date\" name=\"start\" value=\"{}\"></label><label>Before <input type=\"date\" name=\"end\" value=\"{}\"></label>",
                        esc(chosen.start.as_deref().unwrap_or("")),
                        esc(chosen.end.as_deref().unwrap_or(""))
                    );
                }
                crate::dashboards::Filter::Select { name, dimension } => {
                    let values =
                        dimension_values(&state, &warehouse, &metrics, dimension, role).await;
                    let current = params.get(name).cloned().unwrap_or_default();
                    let _ = write!(
                        body,
                        "<label>{} <select name=\"{}\"><option value=\"\">all</option>",
                        esc(name),
                        esc(name)
                    );
                    for v in values {
                        let _ = write!(
                            body,
                            "<option{}>{}</option>",
                            if v == current { " selected" } else { "" },
                            esc(&v)
                        );
                    }
                    body.push_str("</select></label>");
                }
            }
        }
        body.push_str("<button type=\"submit\">Apply</button></form>");
    }
    body.push_str("<div class=\"charts\">");
    // The charts' queries run at once.
    let read = futures::future::join_all(
        d.charts
            .iter()
            .map(|chart| chart_rows(&state, &warehouse, &metrics, chart, &chosen, role)),
    )
    .await;
    for (i, (chart, rows)) in d.charts.iter().zip(read).enumerate() {
        let drawn = match rows {
            Ok(rows) => crate::dashboards::render(chart, &rows),
            Err(e) => format!("<p class=\"bad\">{}</p>", esc(&e)),
        };
        let _ = write!(
            body,
            "<figure class=\"card kind-{}\"><figcaption><b>{}</b> <a class=\"csv\" href=\"/dashboards/{}/charts/{i}?{}\">CSV</a></figcaption>{drawn}</figure>",
            esc(&chart.kind),
            esc(&chart.title),
            esc(&d.name),
            esc(&query_string)
        );
    }
    body.push_str("</div>");
    page(&d.title, &user_name, &body).into_response()
}

pub(super) async fn chart_csv(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((name, chart)): Path<(String, usize)>,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let role = match allowed(&state, &headers, false) {
        Ok((_, role)) => role,
        Err(r) => return *r,
    };
    let (metrics, list) = match definitions(&state) {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let Some((d, c)) = list
        .iter()
        .find(|d| d.name == name)
        .and_then(|d| d.charts.get(chart).map(|c| (d, c)))
    else {
        return not_found().await;
    };
    let warehouse = match state.warehouses.current() {
        Ok(w) => w,
        Err(e) => return error(&e),
    };
    match chart_rows(&state, &warehouse, &metrics, c, &chosen(d, &params), role).await {
        Ok(rows) => {
            let mut csv = rows
                .columns
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(",");
            csv.push('\n');
            for r in &rows.cells {
                csv.push_str(
                    &r.iter()
                        .map(|(t, _)| csv_cell(t))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                csv.push('\n');
            }
            let file = format!("{}-{chart}.csv", d.name);
            let mut response = csv.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => error(&e),
    }
}

pub(super) fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub(super) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Run a chart's query and read its rows.
pub(super) async fn chart_rows(
    state: &AppState,
    warehouse: &strata_engine::EmbeddedWarehouse,
    metrics: &[crate::metrics::Metric],
    chart: &crate::dashboards::Chart,
    chosen: &crate::dashboards::Chosen,
    role: Role,
) -> Result<crate::dashboards::Rows, String> {
    let sql = chart.sql(metrics, chosen)?;
    query_rows(state, warehouse, &sql, CHART_ROWS, role).await
}

/// Rows a chart reads at most.
const CHART_ROWS: usize = 10_000;

/// Values of a dimension for a pick-list: from the first metric that has it.
pub(super) async fn dimension_values(
    state: &AppState,
    warehouse: &strata_engine::EmbeddedWarehouse,
    metrics: &[crate::metrics::Metric],
    dimension: &str,
    role: Role,
) -> Vec<String> {
    let Some((m, d)) = metrics.iter().find_map(|m| {
        m.dimensions
            .iter()
            .find(|d| d.name == dimension)
            .map(|d| (m, d))
    }) else {
        return Vec::new();
    };
    let sql = format!(
        "select distinct {} as v from {{{{ ref('{}') }}}} where {} is not null order by 1 limit 200",
        d.expr, m.model, d.expr
    );
    query_rows(state, warehouse, &sql, 200, role)
        .await
        .map(|r| {
            r.cells
                .into_iter()
                .filter_map(|c| c.into_iter().next().map(|x| x.0))
                .collect()
        })
        .unwrap_or_default()
}

/// Compile SQL (with `ref()`) and read its rows as text and numbers.
pub(super) async fn query_rows(
    state: &AppState,
    warehouse: &strata_engine::EmbeddedWarehouse,
    sql: &str,
    limit: usize,
    role: Role,
) -> Result<crate::dashboards::Rows, String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    use futures::TryStreamExt;
    use strata_engine::Warehouse;
    let compiled = strata_project::compile::Compiler::new(state.project.clone())
        .with_introspector(warehouse.introspector())
        .compile_inline(sql)
        .map_err(|e| e.to_string())?;
    // The BI role reads the gold layer only, whatever the query names.
    if role == Role::BiReader {
        let read = warehouse
            .relations_read(&compiled)
            .await
            .map_err(|e| e.to_string())?;
        if let Some((schema, name)) = read.iter().find(|(s, _)| !crate::catalog::is_gold(s)) {
            tracing::warn!("bi_reader refused: a query reads {schema}.{name}");
            return Err(format!(
                "this reads {schema}.{name}, outside the gold layer: the bi_reader role sees gold only"
            ));
        }
    }
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> = warehouse
        .query(&compiled, Some(limit))
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| strata_engine::error::describe_datafusion_error(&e))?;
    let mut rows = crate::dashboards::Rows::default();
    let Some(first) = batches.first() else {
        return Ok(rows);
    };
    rows.columns = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let options = datafusion::arrow::util::display::FormatOptions::default().with_null("");
    for b in &batches {
        let mut columns = Vec::new();
        for c in b.columns() {
            let text =
                datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                    .map_err(|e| e.to_string())?;
            let numbers = match c.data_type().is_numeric() {
                true => datafusion::arrow::compute::cast(c, &DataType::Float64).ok(),
                false => None,
            };
            columns.push((text, numbers));
        }
        for row in 0..b.num_rows() {
            rows.cells.push(
                columns
                    .iter()
                    .map(|(text, numbers)| {
                        let n = numbers.as_ref().and_then(|a| {
                            a.as_primitive_opt::<Float64Type>()
                                .filter(|p| p.is_valid(row))
                                .map(|p| p.value(row))
                        });
                        (text.value(row).to_string(), n)
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}
