//! The quality report (`strata quality report`): per model, seed, snapshot and source table,
//! what was checked and how it went run after run, each measured metric's trend with the
//! range it was judged by, the latest failures with the rows they found, and what quarantine
//! set aside. One self-contained HTML file: inline CSS and SVG, no script, nothing fetched.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use strata_meta::{MetaStore, MetricPoint, TestOutcome};
use strata_project::Project;
use strata_project::data_tests::TestKind;

/// Outcomes of each test shown (newest first).
pub const HISTORY: usize = 30;

/// What the report says of one node.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub unique_id: String,
    pub name: String,
    /// `model`, `seed`, `snapshot`, `source`.
    pub resource_type: String,
    /// `schema.name`.
    pub relation: String,
    pub tests: Vec<TestReport>,
    pub metrics: Vec<MetricSeries>,
    /// Rows set aside by quarantine, by failed check.
    pub quarantined: Vec<(String, u64)>,
}

/// One test and its outcomes, newest first.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub name: String,
    /// `data test`, `unit test`, `anomaly test`, `singular test`.
    pub kind: &'static str,
    pub column: Option<String>,
    pub outcomes: Vec<TestOutcome>,
}

/// One metric's values over time.
#[derive(Debug, Clone)]
pub struct MetricSeries {
    pub metric: String,
    pub column: String,
    /// What else decides the values (timestamp column, bucket, filter).
    pub measure: String,
    pub points: Vec<MetricPoint>,
}

/// Gather the report of every node with tests or metrics from the metadata store.
pub fn gather(project: &Project, meta: &MetaStore) -> strata_meta::Result<Vec<NodeReport>> {
    let mut nodes: BTreeMap<String, NodeReport> = BTreeMap::new();
    let entry = |nodes: &mut BTreeMap<String, NodeReport>, id: &str| -> bool {
        if nodes.contains_key(id) {
            return true;
        }
        let (name, kind, relation) = if let Some(n) = project.node(id) {
            (
                n.name().to_string(),
                n.resource_type().to_string(),
                n.relation().clone(),
            )
        } else if let Some(s) = project.sources.get(id) {
            (
                format!("{}.{}", s.source_name, s.name),
                "source".to_string(),
                s.relation.clone(),
            )
        } else {
            return false;
        };
        nodes.insert(
            id.to_string(),
            NodeReport {
                unique_id: id.to_string(),
                name,
                resource_type: kind,
                relation: format!("{}.{}", relation.schema, relation.identifier),
                tests: Vec::new(),
                metrics: Vec::new(),
                quarantined: Vec::new(),
            },
        );
        true
    };
    for test in project.tests.values() {
        let Some(node) = test
            .attached_node
            .clone()
            .or_else(|| test.depends_on.first().cloned())
        else {
            continue;
        };
        if !entry(&mut nodes, &node) {
            continue;
        }
        let (kind, column) = match &test.kind {
            TestKind::Unit(_) => ("unit test", None),
            TestKind::Singular { .. } => ("singular test", None),
            TestKind::Generic { column, .. } => (
                if strata_project::anomaly::spec_of(test).is_some() {
                    "anomaly test"
                } else {
                    "data test"
                },
                column.clone(),
            ),
        };
        let outcomes = meta.test_outcomes(&test.unique_id, HISTORY)?;
        if let Some(n) = nodes.get_mut(&node) {
            n.tests.push(TestReport {
                name: test.name.clone(),
                kind,
                column,
                outcomes,
            });
        }
    }
    let ids: Vec<String> = nodes.keys().cloned().collect();
    for id in ids {
        let mut series: BTreeMap<(String, String, String), Vec<MetricPoint>> = BTreeMap::new();
        for p in meta.node_metrics(&id)? {
            series
                .entry((p.column_name.clone(), p.metric.clone(), p.measure.clone()))
                .or_default()
                .push(p);
        }
        if let Some(n) = nodes.get_mut(&id) {
            n.metrics = series
                .into_iter()
                .map(|((column, metric, measure), points)| MetricSeries {
                    metric,
                    column,
                    measure,
                    points,
                })
                .collect();
            n.tests.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    Ok(nodes.into_values().collect())
}

/// The whole report of a target: what [`gather`] finds, with the rows each model's
/// quarantine holds (as of its last committed build), as one HTML page.
pub async fn page(
    project: &Project,
    meta: &MetaStore,
    warehouse: &strata_engine::EmbeddedWarehouse,
) -> strata_engine::Result<(String, Vec<NodeReport>)> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use futures::TryStreamExt;
    use strata_engine::Warehouse;
    let mut nodes = gather(project, meta)?;
    for model in project
        .models
        .values()
        .filter(|m| m.config.get(strata_project::quarantine::KEY).is_some())
    {
        let q = strata_project::quarantine::relation(&model.relation);
        let Some(source) = warehouse.quarantine_sql(&model.relation, &q).await? else {
            continue;
        };
        let sql = format!(
            "select strata_failed_checks, count(*) from {source} group by 1 order by 2 desc"
        );
        let batches: Vec<datafusion::arrow::array::RecordBatch> =
            warehouse.query(&sql, None).await?.try_collect().await?;
        let mut counts = Vec::new();
        for b in &batches {
            let checks = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
                .map_err(datafusion::error::DataFusionError::from)?;
            let (Some(checks), Some(rows)) = (
                checks.as_string_opt::<i32>(),
                b.column(1).as_primitive_opt::<Int64Type>(),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                if checks.is_valid(i) {
                    counts.push((checks.value(i).to_string(), rows.value(i).max(0) as u64));
                }
            }
        }
        if counts.is_empty() {
            continue;
        }
        match nodes.iter_mut().find(|n| n.unique_id == model.unique_id) {
            Some(n) => n.quarantined = counts,
            None => nodes.push(NodeReport {
                unique_id: model.unique_id.clone(),
                name: model.name.clone(),
                resource_type: "model".into(),
                relation: format!("{}.{}", model.relation.schema, model.relation.identifier),
                tests: Vec::new(),
                metrics: Vec::new(),
                quarantined: counts,
            }),
        }
    }
    let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let title = format!("{} ({})", project.config.name, project.target.name);
    Ok((render(&title, &generated, &nodes), nodes))
}

/// A test's latest status.
fn latest(t: &TestReport) -> Option<&str> {
    t.outcomes.first().map(|o| o.status.as_str())
}

/// The report as one HTML page.
pub fn render(title: &str, generated_at: &str, nodes: &[NodeReport]) -> String {
    let mut html = String::new();
    let count = |status: &str| {
        nodes
            .iter()
            .flat_map(|n| &n.tests)
            .filter(|t| latest(t) == Some(status))
            .count()
    };
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · data quality</title><style>{STYLE}</style></head><body>\
         <header><h1>Data quality · {}</h1><p class=\"muted\">Generated {} from the target's run history.</p>\
         <p class=\"totals\"><span class=\"pill pass\">{} passing</span> <span class=\"pill warn\">{} warning</span> \
         <span class=\"pill fail\">{} failing</span> <span class=\"pill error\">{} erroring</span> \
         <span class=\"muted\">(latest result of each test)</span></p></header><main>",
        esc(title),
        esc(title),
        esc(generated_at),
        count("pass"),
        count("warn"),
        count("fail"),
        count("error")
    );
    if nodes.is_empty() {
        html.push_str(
            "<p>No test has run yet: run <code>strata build</code> or <code>strata test</code>.</p>",
        );
    }
    // The overview: one row per node.
    html.push_str("<section><h2>Overview</h2><table class=\"grid\"><thead><tr><th>Node</th><th>Type</th><th>Tests</th><th>Latest</th><th>Metrics</th><th>Quarantined</th></tr></thead><tbody>");
    for n in nodes {
        let statuses: Vec<&str> = n.tests.iter().filter_map(latest).collect();
        let worst = ["error", "fail", "warn", "pass", "skipped"]
            .into_iter()
            .find(|s| statuses.contains(s))
            .unwrap_or("none");
        let set_aside: u64 = n.quarantined.iter().map(|(_, c)| c).sum();
        let _ = write!(
            html,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td><span class=\"pill {worst}\">{worst}</span></td><td>{}</td><td>{}</td></tr>",
            anchor(&n.unique_id),
            esc(&n.name),
            esc(&n.resource_type),
            n.tests.len(),
            n.metrics.len(),
            set_aside
        );
    }
    html.push_str("</tbody></table></section>");
    for n in nodes {
        node_section(&mut html, n);
    }
    html.push_str("</main></body></html>\n");
    html
}

fn node_section(html: &mut String, n: &NodeReport) {
    let _ = write!(
        html,
        "<section id=\"{}\"><h2>{} <span class=\"muted\">{} · {}</span></h2>",
        anchor(&n.unique_id),
        esc(&n.name),
        esc(&n.resource_type),
        esc(&n.relation)
    );
    if !n.tests.is_empty() {
        html.push_str("<h3>Checks</h3><table class=\"grid\"><thead><tr><th>Test</th><th>Kind</th><th>Column</th><th>Latest</th><th>Found</th><th>History (oldest → newest)</th></tr></thead><tbody>");
        for t in &n.tests {
            let (status, found) = match t.outcomes.first() {
                Some(o) => (o.status.as_str(), o.failures.map(|f| f.to_string())),
                None => ("not run", None),
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"pill {}\">{}</span></td><td>{}</td><td>{}</td></tr>",
                esc(&t.name),
                t.kind,
                esc(t.column.as_deref().unwrap_or("")),
                status.replace(' ', "-"),
                esc(status),
                found.unwrap_or_default(),
                history_strip(&t.outcomes)
            );
        }
        html.push_str("</tbody></table>");
    }
    if !n.metrics.is_empty() {
        html.push_str("<h3>Metrics</h3><div class=\"metrics\">");
        for m in &n.metrics {
            metric_card(html, m);
        }
        html.push_str("</div>");
    }
    let failures: Vec<(&TestReport, &TestOutcome)> = n
        .tests
        .iter()
        .filter_map(|t| {
            let o = t.outcomes.first()?;
            matches!(o.status.as_str(), "fail" | "warn" | "error").then_some((t, o))
        })
        .collect();
    if !failures.is_empty() {
        html.push_str("<h3>Latest failures</h3>");
        for (t, o) in failures {
            let _ = write!(
                html,
                "<div class=\"failure\"><p><span class=\"pill {}\">{}</span> <b>{}</b> <span class=\"muted\">{}</span></p><pre>{}</pre>",
                o.status,
                esc(&o.status),
                esc(&t.name),
                esc(&o.started_at),
                esc(o.message.as_deref().unwrap_or(""))
            );
            if let Some(rows) = o.sample.as_deref() {
                sample_table(html, rows);
            }
            html.push_str("</div>");
        }
    }
    if !n.quarantined.is_empty() {
        html.push_str("<h3>Quarantined rows</h3><table class=\"grid\"><thead><tr><th>Failed checks</th><th>Rows</th></tr></thead><tbody>");
        for (check, rows) in &n.quarantined {
            let _ = write!(html, "<tr><td>{}</td><td>{rows}</td></tr>", esc(check));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section>");
}

/// A test's outcomes as a strip of squares, oldest first, each with its run in a tooltip.
fn history_strip(outcomes: &[TestOutcome]) -> String {
    let n = outcomes.len();
    let mut svg = format!(
        "<svg class=\"strip\" width=\"{}\" height=\"12\" role=\"img\" aria-label=\"{n} runs\">",
        (n * 9).max(1)
    );
    for (i, o) in outcomes.iter().rev().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"1\" width=\"7\" height=\"10\" rx=\"1\" class=\"{}\"><title>{} · {}{}</title></rect>",
            i * 9,
            o.status,
            esc(&o.started_at),
            esc(&o.status),
            o.failures
                .filter(|f| *f > 0)
                .map(|f| format!(" · {f} found"))
                .unwrap_or_default()
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One metric's trend: its values as a line, the expected range each was judged by as a band,
/// anomalies in red; every point has its bucket, value and range in a tooltip.
fn metric_card(html: &mut String, m: &MetricSeries) {
    const W: f64 = 260.0;
    const H: f64 = 64.0;
    const PAD: f64 = 4.0;
    let label = match m.column.as_str() {
        "" => m.metric.clone(),
        c => format!("{} of {c}", m.metric),
    };
    let values: Vec<(usize, f64)> = m
        .points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.value.map(|v| (i, v)))
        .collect();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in &m.points {
        for v in [p.value, p.expected_low, p.expected_high]
            .into_iter()
            .flatten()
        {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if (hi - lo).abs() < f64::EPSILON {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let n = m.points.len().max(2);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / (hi - lo);
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(&label)
    );
    // The band: upper edge left to right, lower edge back.
    let band: Vec<(usize, f64, f64)> = m
        .points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.expected_low?, p.expected_high?)))
        .collect();
    if band.len() > 1 {
        let mut pts: Vec<String> = band
            .iter()
            .map(|(i, _, h)| format!("{:.1},{:.1}", x(*i), y(*h)))
            .collect();
        pts.extend(
            band.iter()
                .rev()
                .map(|(i, l, _)| format!("{:.1},{:.1}", x(*i), y(*l))),
        );
        let _ = write!(
            svg,
            "<polygon class=\"band\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    if values.len() > 1 {
        let pts: Vec<String> = values
            .iter()
            .map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"line\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    for (i, v) in &values {
        let p = &m.points[*i];
        let range = match (p.expected_low, p.expected_high) {
            (Some(l), Some(h)) => format!(" (expected {} to {})", num(l), num(h)),
            _ => String::new(),
        };
        let class = match p.anomalous {
            Some(true) => "dot anomaly",
            _ if *i + 1 == m.points.len() => "dot last",
            _ => "dot",
        };
        let _ = write!(
            svg,
            "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\"><title>{}: {}{range}</title></circle>",
            x(*i),
            y(*v),
            if class == "dot" { 1.6 } else { 3.0 },
            esc(p.bucket_start.get(..16).unwrap_or(&p.bucket_start)),
            num(*v)
        );
    }
    svg.push_str("</svg>");
    let last = m.points.last();
    let anomalies = m
        .points
        .iter()
        .filter(|p| p.anomalous == Some(true))
        .count();
    let _ = write!(
        html,
        "<figure class=\"card\"><figcaption><b>{}</b> <span class=\"muted\">{}</span></figcaption>{svg}\
         <p>latest <b>{}</b>{} · {} value{}{}</p></figure>",
        esc(&label),
        esc(&measured(&m.measure)),
        last.and_then(|p| p.value)
            .map(num)
            .unwrap_or_else(|| "—".into()),
        last.and_then(|p| Some(format!(
            ", expected {} to {}",
            num(p.expected_low?),
            num(p.expected_high?)
        )))
        .unwrap_or_default(),
        m.points.len(),
        if m.points.len() == 1 { "" } else { "s" },
        match anomalies {
            0 => String::new(),
            a => format!(
                " · <span class=\"bad\">{a} anomal{}</span>",
                if a == 1 { "y" } else { "ies" }
            ),
        }
    );
}

/// The rows a test found (a JSON array of objects) as a table.
fn sample_table(html: &mut String, json: &str) {
    let Ok(serde_json::Value::Array(rows)) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    let mut columns: Vec<String> = Vec::new();
    for r in &rows {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        return;
    }
    html.push_str("<table class=\"grid rows\"><thead><tr>");
    for c in &columns {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("</tr></thead><tbody>");
    for r in &rows {
        html.push_str("<tr>");
        for c in &columns {
            let cell = match r.get(c) {
                None | Some(serde_json::Value::Null) => "<span class=\"muted\">NULL</span>".into(),
                Some(serde_json::Value::String(s)) => esc(s),
                Some(v) => esc(&v.to_string()),
            };
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
}

/// How a metric was measured, as people say it: `per run`, `per 1 day of ordered_at`.
fn measured(measure: &str) -> String {
    let part = |key: &str| {
        measure
            .split(';')
            .find_map(|p| p.strip_prefix(key))
            .filter(|v| !v.is_empty())
    };
    let mut out = match (part("ts="), part("bucket=")) {
        (Some(ts), Some(bucket)) => format!("per {bucket} of {ts}"),
        _ => "per run".to_string(),
    };
    if let Some(w) = part("where=") {
        out.push_str(&format!(", where {w}"));
    }
    out
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn anchor(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Text made safe for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
:root{--fg:#1d2430;--muted:#6b7280;--line:#e5e7eb;--pass:#15803d;--warn:#b45309;--fail:#b91c1c;--band:#dbeafe;--accent:#1d4ed8}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:#f8fafc}
header{padding:20px 28px;background:#fff;border-bottom:1px solid var(--line)}h1{margin:0 0 4px;font-size:22px}
main{padding:8px 28px 40px;max-width:1200px}section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:16px 0 8px;color:#374151}.muted{color:var(--muted);font-weight:normal}
table.grid{border-collapse:collapse;width:100%}table.grid th,table.grid td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
table.grid th{font-weight:600;color:#374151;background:#f9fafb}table.rows{margin-top:6px;font-size:13px}a{color:var(--accent);text-decoration:none}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e5e7eb;color:#374151}
.pill.pass,.pill.success{background:#dcfce7;color:var(--pass)}.pill.warn{background:#fef3c7;color:var(--warn)}.pill.fail,.pill.error{background:#fee2e2;color:var(--fail)}
rect.pass,rect.success{fill:#22c55e}rect.warn{fill:#f59e0b}rect.fail,rect.error{fill:#ef4444}rect.skipped{fill:#d1d5db}
.metrics{display:flex;flex-wrap:wrap;gap:12px}.card{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:#fff}
.card p{margin:4px 0 0;font-size:12px}.spark{display:block;max-width:100%;height:auto}.band{fill:var(--band)}.line{fill:none;stroke:#2563eb;stroke-width:1.5}
.dot{fill:#2563eb}.dot.last{fill:#1e3a8a}.dot.anomaly{fill:var(--fail)}.bad{color:var(--fail);font-weight:600}
.failure{border-left:3px solid var(--fail);padding:4px 10px;margin:8px 0}pre{white-space:pre-wrap;margin:4px 0;font-size:12px}
@media (max-width:700px){main,header{padding-left:12px;padding-right:12px}table.grid{font-size:12px}}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_nothing_is_fetched() {
        let nodes = vec![NodeReport {
            unique_id: "model.p.orders".into(),
            name: "orders<script>".into(),
            resource_type: "model".into(),
            relation: "main.orders".into(),
            tests: vec![TestReport {
                name: "not_null_orders_id".into(),
                kind: "data test",
                column: Some("id".into()),
                outcomes: vec![TestOutcome {
                    run_id: "r".into(),
                    started_at: "2026-11-30T10:00:00Z".into(),
                    status: "fail".into(),
                    failures: Some(2),
                    message: Some("Got 2 results".into()),
                    sample: Some(r#"[{"id":null,"note":"<b>"}]"#.into()),
                }],
            }],
            metrics: vec![],
            quarantined: vec![("not_null(id)".into(), 3)],
        }];
        let html = render("shop", "now", &nodes);
        assert!(html.contains("orders&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("&lt;b&gt;") && html.contains(">NULL<"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("1 failing"));
    }
}
