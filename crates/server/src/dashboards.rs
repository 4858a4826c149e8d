//! Dashboards as code: `dashboards/*.yml`, each a title, filters and charts bound to a metric
//! (see [`crate::metrics`]) or to SQL (with `ref()`); drawn on the server as SVG.
//!
//! ```yaml
//! title: Sales
//! filters:
//!   - {name: period, type: date_range}                    # ?start=…&end=… bound every metric
//!   - {name: status, type: select, dimension: status}     # ?status=… on metrics with it
//! charts:
//!   - {title: Revenue, type: kpi, metric: revenue, by: month}
//!   - {title: Revenue by month, type: line, metric: revenue, by: month}
//!   - {title: By status, type: bar, metric: revenue, by: month, dimension: status, stacked: true}
//!   - {title: Top customers, type: table, sql: "select customer, sum(amount) as total from {{ ref('orders') }} group by 1 order by 2 desc limit 10"}
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use strata_common::did_you_mean;
use strata_project::Result;

use crate::metrics::{Grain, Metric, Query};

/// Where dashboards are defined, under the project's root.
pub const FOLDER: &str = "dashboards";

const KINDS: [&str; 6] = ["kpi", "line", "area", "bar", "table", "number"];

/// A dashboard filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `start` and `end` bound every metric's time column.
    DateRange { name: String },
    /// One value of a dimension, for the metrics that have it.
    Select { name: String, dimension: String },
}

/// What a chart shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Metric {
        metric: String,
        by: Option<Grain>,
        dimension: Option<String>,
    },
    Sql(String),
}

/// One chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    /// kpi, line, area, bar, table.
    pub kind: String,
    pub source: Source,
    /// Bars stacked (else grouped) when there is a dimension.
    pub stacked: bool,
}

/// One dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Its file's stem: its address.
    pub name: String,
    pub title: String,
    pub description: String,
    pub filters: Vec<Filter>,
    pub charts: Vec<Chart>,
    pub file: PathBuf,
}

/// Every dashboard under `root/dashboards/`, its metrics checked against `metrics`.
pub fn load(root: &Path, metrics: &[Metric]) -> Result<Vec<Dashboard>> {
    let mut out = Vec::new();
    for (rel, text, doc) in strata_project::config::yaml_files(root, FOLDER)? {
        let name = rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dashboard = parse(&name, &doc, metrics, &rel).map_err(|(needle, msg)| {
            strata_project::config::error_at_needle(&rel, &text, &needle, msg)
                .with_node(format!("dashboard `{name}`"))
        })?;
        out.push(dashboard);
    }
    Ok(out)
}

/// A dashboard's definition; an error carries text to find its line by.
fn parse(
    name: &str,
    doc: &Json,
    metrics: &[Metric],
    file: &Path,
) -> std::result::Result<Dashboard, (String, String)> {
    let Json::Object(m) = doc else {
        return Err((
            String::new(),
            "a dashboard must be a mapping with `title` and `charts`".into(),
        ));
    };
    const KEYS: [&str; 4] = ["title", "description", "filters", "charts"];
    for k in m.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err((
                format!("{k}:"),
                format!("`{k}` is not a key of a dashboard{}", did_you_mean(k, KEYS)),
            ));
        }
    }
    let text = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or_default().to_string();
    let mut filters = Vec::new();
    for f in m
        .get("filters")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let fname = text(f.get("name"));
        if fname.is_empty() {
            return Err(("filters:".into(), format!("a filter needs a `name`: {f}")));
        }
        match f.get("type").and_then(Json::as_str) {
            Some("date_range") => filters.push(Filter::DateRange { name: fname }),
            Some("select") => {
                let dimension = text(f.get("dimension"));
                let dimension = if dimension.is_empty() {
                    fname.clone()
                } else {
                    dimension
                };
                filters.push(Filter::Select {
                    name: fname,
                    dimension,
                });
            }
            other => {
                return Err((
                    format!("name: {fname}"),
                    format!(
                        "filter `{fname}`: `type` must be date_range or select, not {}",
                        other.unwrap_or("missing")
                    ),
                ));
            }
        }
    }
    let Some(list) = m.get("charts").and_then(Json::as_array) else {
        return Err((
            "charts".into(),
            "a dashboard needs `charts:`, a list".into(),
        ));
    };
    let mut charts = Vec::new();
    for c in list {
        let title = text(c.get("title"));
        let needle = format!("title: {title}");
        let kind = text(c.get("type"));
        if !KINDS.contains(&kind.as_str()) {
            return Err((
                needle,
                format!(
                    "chart `{title}`: `type: {kind}` is not a chart{}; the types are kpi, line, area, bar, table",
                    did_you_mean(&kind, KINDS)
                ),
            ));
        }
        let source = match (
            c.get("metric").and_then(Json::as_str),
            c.get("sql").and_then(Json::as_str),
        ) {
            (Some(metric), None) => {
                let def = crate::metrics::find(metrics, metric)
                    .map_err(|e| (needle.clone(), format!("chart `{title}`: {e}")))?;
                let by = match c.get("by").and_then(Json::as_str) {
                    None => None,
                    Some(g) => Some(Grain::parse(g).ok_or_else(|| {
                        (
                            needle.clone(),
                            format!(
                                "chart `{title}`: `by: {g}` is not a grain ({})",
                                Grain::names()
                            ),
                        )
                    })?),
                };
                let dimension = c
                    .get("dimension")
                    .and_then(Json::as_str)
                    .map(str::to_string);
                // The query is drawn up now, so a wrong grain or dimension is named here.
                def.sql(&Query {
                    grain: by,
                    dimensions: dimension.iter().cloned().collect(),
                    ..Query::default()
                })
                .map_err(|e| (needle.clone(), format!("chart `{title}`: {e}")))?;
                if matches!(kind.as_str(), "line" | "area" | "bar" | "kpi") && by.is_none() {
                    return Err((
                        needle,
                        format!(
                            "chart `{title}`: a {kind} chart of a metric needs `by:` (a grain of its time column)"
                        ),
                    ));
                }
                Source::Metric {
                    metric: def.name.clone(),
                    by,
                    dimension,
                }
            }
            (None, Some(sql)) => Source::Sql(sql.to_string()),
            _ => {
                return Err((
                    needle,
                    format!("chart `{title}` needs either `metric:` or `sql:`"),
                ));
            }
        };
        charts.push(Chart {
            title,
            kind,
            source,
            stacked: c.get("stacked").and_then(Json::as_bool).unwrap_or(false),
        });
    }
    Ok(Dashboard {
        name: name.to_string(),
        title: {
            let t = text(m.get("title"));
            if t.is_empty() { name.to_string() } else { t }
        },
        description: text(m.get("description")),
        filters,
        charts,
        file: file.to_path_buf(),
    })
}

/// The values a dashboard's filters were given (from the page's query string).
#[derive(Debug, Clone, Default)]
pub struct Chosen {
    pub start: Option<String>,
    pub end: Option<String>,
    /// (dimension, value) pairs.
    pub selected: Vec<(String, String)>,
}

impl Chart {
    /// The SQL this chart runs (with `ref()`), with the dashboard's filters applied.
    pub fn sql(&self, metrics: &[Metric], chosen: &Chosen) -> std::result::Result<String, String> {
        match &self.source {
            Source::Sql(sql) => Ok(sql.clone()),
            Source::Metric {
                metric,
                by,
                dimension,
            } => {
                let def = crate::metrics::find(metrics, metric)?;
                let filters = chosen
                    .selected
                    .iter()
                    .filter_map(|(d, v)| {
                        let dim = def.dimensions.iter().find(|x| &x.name == d)?;
                        Some(format!(
                            "{} = {}",
                            dim.expr,
                            strata_common::quote_literal(v)
                        ))
                    })
                    .collect();
                def.sql(&Query {
                    grain: *by,
                    dimensions: dimension.iter().cloned().collect(),
                    filters,
                    start: chosen.start.clone().filter(|_| def.time.is_some()),
                    end: chosen.end.clone().filter(|_| def.time.is_some()),
                })
            }
        }
    }
}

/// A chart's rows: column names, and cells as text with their numbers.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub cells: Vec<Vec<(String, Option<f64>)>>,
}

/// The chart drawn: SVG for kpi, line, area and bar charts, an HTML table for tables.
pub fn render(chart: &Chart, rows: &Rows) -> String {
    if rows.cells.is_empty() {
        return "<p class=\"muted\">No rows.</p>".into();
    }
    match chart.kind.as_str() {
        "table" => table(rows),
        "kpi" | "number" => kpi(rows),
        _ => xy(chart, rows),
    }
}

fn table(rows: &Rows) -> String {
    let mut html = String::from("<table class=\"grid\"><thead><tr>");
    for c in &rows.columns {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("</tr></thead><tbody>");
    for r in &rows.cells {
        html.push_str("<tr>");
        for (text, n) in r {
            let class = if n.is_some() { " class=\"num\"" } else { "" };
            let _ = write!(html, "<td{class}>{}</td>", esc(text));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// The latest value, and its change against the period before.
fn kpi(rows: &Rows) -> String {
    let value = |r: &Vec<(String, Option<f64>)>| r.last().and_then(|(_, n)| *n);
    let last = rows.cells.last().and_then(value);
    let before = rows
        .cells
        .len()
        .checked_sub(2)
        .and_then(|i| value(&rows.cells[i]));
    let period = rows
        .cells
        .last()
        .filter(|r| r.len() > 1)
        .map(|r| r[0].0.clone())
        .unwrap_or_default();
    let change = match (last, before) {
        (Some(l), Some(b)) if b != 0.0 => {
            let pct = (l - b) / b.abs() * 100.0;
            format!(
                "<span class=\"{}\">{}{pct:.1}%</span> vs the period before",
                if pct >= 0.0 { "up" } else { "down" },
                if pct >= 0.0 { "▲ +" } else { "▼ " }
            )
        }
        _ => String::new(),
    };
    format!(
        "<div class=\"kpi\"><div class=\"value\">{}</div><div class=\"muted\">{}</div><div>{change}</div></div>",
        last.map(number).unwrap_or_else(|| "—".into()),
        esc(&period)
    )
}

/// Line, area and bar charts: x is the first column; with three columns the second names the
/// series; the value is the last.
fn xy(chart: &Chart, rows: &Rows) -> String {
    const W: f64 = 560.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 56.0;
    const BOTTOM: f64 = 28.0;
    const TOP: f64 = 10.0;
    let mut xs: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    let mut points: Vec<(usize, usize, f64)> = Vec::new();
    for r in &rows.cells {
        let x = r.first().map(|c| c.0.clone()).unwrap_or_default();
        let s = if r.len() >= 3 {
            r[1].0.clone()
        } else {
            String::new()
        };
        let y = r.last().and_then(|c| c.1).unwrap_or(0.0);
        let xi = xs.iter().position(|v| *v == x).unwrap_or_else(|| {
            xs.push(x);
            xs.len() - 1
        });
        let si = series.iter().position(|v| *v == s).unwrap_or_else(|| {
            series.push(s);
            series.len() - 1
        });
        points.push((xi, si, y));
    }
    let stacked = chart.kind == "bar" && chart.stacked || chart.kind == "area" && series.len() > 1;
    let mut top = 0.0f64;
    let mut bottom = 0.0f64;
    for xi in 0..xs.len() {
        let vals = points.iter().filter(|p| p.0 == xi).map(|p| p.2);
        if stacked {
            top = top.max(vals.clone().filter(|v| *v > 0.0).sum());
            bottom = bottom.min(vals.filter(|v| *v < 0.0).sum());
        } else {
            for v in vals {
                top = top.max(v);
                bottom = bottom.min(v);
            }
        }
    }
    if top == bottom {
        top = bottom + 1.0;
    }
    // Round the scale to a step of 1, 2 or 5 times a power of ten, in four steps.
    let step = nice_step((top - bottom) / 4.0);
    top = (top / step).ceil() * step;
    bottom = (bottom / step).floor() * step;
    let levels = ((top - bottom) / step).round().max(1.0) as usize;
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (top - v) / (top - bottom);
    let band = plot_w / xs.len().max(1) as f64;
    let xc = |i: usize| LEFT + band * (i as f64 + 0.5);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(&chart.title)
    );
    // Gridlines and labels at five levels.
    for k in 0..=levels {
        let v = bottom + step * k as f64;
        let (right, at, label_x, label_y) = (W - 8.0, y(v), LEFT - 6.0, y(v) + 4.0);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{right}\" y1=\"{at:.1}\" y2=\"{at:.1}\"/><text class=\"axis\" x=\"{label_x}\" y=\"{label_y:.1}\" text-anchor=\"end\">{}</text>",
            number(v)
        );
    }
    let every = xs.len().div_ceil(6).max(1);
    for (i, x) in xs.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                xc(i),
                H - 8.0,
                esc(x)
            );
        }
    }
    let value_at =
        |xi: usize, si: usize| points.iter().find(|p| p.0 == xi && p.1 == si).map(|p| p.2);
    match chart.kind.as_str() {
        "bar" => {
            let n = series.len().max(1) as f64;
            for (xi, x_label) in xs.iter().enumerate() {
                let mut base_pos = 0.0;
                let mut base_neg = 0.0;
                for (si, name) in series.iter().enumerate() {
                    let Some(v) = value_at(xi, si) else { continue };
                    let (x0, w, from) = if stacked {
                        let from = if v >= 0.0 { base_pos } else { base_neg };
                        (xc(xi) - band * 0.35, band * 0.7, from)
                    } else {
                        let w = band * 0.7 / n;
                        (xc(xi) - band * 0.35 + w * si as f64, w, 0.0)
                    };
                    let (a, b) = (y(from), y(from + v));
                    if stacked {
                        if v >= 0.0 {
                            base_pos += v
                        } else {
                            base_neg += v
                        }
                    }
                    let _ = write!(
                        svg,
                        "<rect class=\"s{}\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}{}: {}</title></rect>",
                        si % 6,
                        a.min(b),
                        (w - 1.0).max(1.0),
                        (a - b).abs().max(0.5),
                        esc(x_label),
                        if name.is_empty() {
                            String::new()
                        } else {
                            format!(" · {}", esc(name))
                        },
                        number(v)
                    );
                }
            }
        }
        _ => {
            let mut below = vec![0.0f64; xs.len()];
            for (si, name) in series.iter().enumerate() {
                let mut line = Vec::new();
                let mut floor = Vec::new();
                for (xi, base) in below.iter_mut().enumerate() {
                    let Some(v) = value_at(xi, si) else { continue };
                    let from = if stacked { *base } else { 0.0 };
                    line.push((xi, from + v, v));
                    floor.push((xi, from));
                    if stacked {
                        *base += v;
                    }
                }
                if chart.kind == "area" {
                    let mut pts: Vec<String> = line
                        .iter()
                        .map(|(xi, t, _)| format!("{:.1},{:.1}", xc(*xi), y(*t)))
                        .collect();
                    pts.extend(
                        floor
                            .iter()
                            .rev()
                            .map(|(xi, f)| format!("{:.1},{:.1}", xc(*xi), y(*f))),
                    );
                    let _ = write!(
                        svg,
                        "<polygon class=\"area s{}\" points=\"{}\"/>",
                        si % 6,
                        pts.join(" ")
                    );
                }
                let pts: Vec<String> = line
                    .iter()
                    .map(|(xi, t, _)| format!("{:.1},{:.1}", xc(*xi), y(*t)))
                    .collect();
                let _ = write!(
                    svg,
                    "<polyline class=\"line s{}\" points=\"{}\"/>",
                    si % 6,
                    pts.join(" ")
                );
                for (xi, t, v) in &line {
                    let _ = write!(
                        svg,
                        "<circle class=\"dot s{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}{}: {}</title></circle>",
                        si % 6,
                        xc(*xi),
                        y(*t),
                        esc(&xs[*xi]),
                        if name.is_empty() {
                            String::new()
                        } else {
                            format!(" · {}", esc(name))
                        },
                        number(*v)
                    );
                }
            }
        }
    }
    svg.push_str("</svg>");
    if series.len() > 1 {
        svg.push_str("<div class=\"legend\">");
        for (si, s) in series.iter().enumerate() {
            let _ = write!(svg, "<span><i class=\"s{}\"></i>{}</span>", si % 6, esc(s));
        }
        svg.push_str("</div>");
    }
    svg
}

/// A step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

/// A number as people read it: thousands grouped, at most two decimals (none from 1,000).
pub fn number(v: f64) -> String {
    let rounded = if v.abs() >= 1000.0 {
        v.round()
    } else {
        (v * 100.0).round() / 100.0
    };
    let a = rounded.abs();
    let frac = a - a.trunc();
    let frac = if frac < 0.005 {
        String::new()
    } else {
        let s = format!("{frac:.2}");
        s.get(1..)
            .unwrap_or_default()
            .trim_end_matches('0')
            .to_string()
    };
    let digits = (a.trunc() as u128).to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{}{grouped}{frac}", if rounded < 0.0 { "-" } else { "" })
}

fn esc(s: &str) -> String {
    strata_quality::report::esc(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_step_by_round_numbers() {
        assert_eq!(nice_step(1466.7), 2000.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(40.0), 50.0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1234567.0), "1,234,567");
        assert_eq!(number(-1500.4), "-1,500");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(3.0), "3");
    }

    #[test]
    fn charts_draw_their_values() {
        let rows = Rows {
            columns: vec!["month".into(), "status".into(), "revenue".into()],
            cells: vec![
                vec![
                    ("2026-01-01".into(), None),
                    ("placed".into(), None),
                    ("50".into(), Some(50.0)),
                ],
                vec![
                    ("2026-01-01".into(), None),
                    ("shipped".into(), None),
                    ("150".into(), Some(150.0)),
                ],
                vec![
                    ("2026-02-01".into(), None),
                    ("placed".into(), None),
                    ("20".into(), Some(20.0)),
                ],
            ],
        };
        let chart = Chart {
            title: "By status".into(),
            kind: "bar".into(),
            source: Source::Sql(String::new()),
            stacked: true,
        };
        let svg = render(&chart, &rows);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(
            svg.contains("<title>2026-01-01 · shipped: 150</title>"),
            "{svg}"
        );
        assert!(svg.contains("class=\"legend\""));
        let kpi = render(
            &Chart {
                kind: "kpi".into(),
                ..chart.clone()
            },
            &Rows {
                columns: vec!["month".into(), "revenue".into()],
                cells: vec![
                    vec![("2026-01-01".into(), None), ("200".into(), Some(200.0))],
                    vec![("2026-02-01".into(), None), ("120".into(), Some(120.0))],
                ],
            },
        );
        assert!(kpi.contains(">120<") && kpi.contains("▼ -40.0%"), "{kpi}");
    }
}
