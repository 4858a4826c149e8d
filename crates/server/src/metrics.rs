//! Metrics defined once, in `metrics/*.yml`: a measure (an aggregate SQL expression) over a
//! model, a time column with the grains it may be read at, dimensions to break it down by,
//! and filters always applied. A query names a metric, a grain, dimensions and filters; the
//! SQL is drawn up here (with `ref()`, compiled like any inline query), so every reader —
//! the CLI, dashboards, the BI endpoint — computes a metric the same way.
//!
//! ```yaml
//! metrics:
//!   - name: mrr
//!     label: MRR
//!     model: fact_subscriptions_daily
//!     measure: sum(mrr_amount)
//!     time: {column: day, grains: [day, week, month]}
//!     dimensions: [plan, {name: region, expr: "upper(country)"}]
//!     filters: ["status = 'active'"]
//! ```

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use strata_common::{Location, did_you_mean};
use strata_project::{Error, Result};

/// Where metrics are defined, under the project's root.
pub const FOLDER: &str = "metrics";

/// The keys of a metric.
const KEYS: &[&str] = &[
    "name",
    "label",
    "description",
    "model",
    "measure",
    "time",
    "dimensions",
    "filters",
    "format",
    "meta",
];

/// A time grain a metric is read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Grain {
    pub const ALL: [Grain; 5] = [
        Grain::Day,
        Grain::Week,
        Grain::Month,
        Grain::Quarter,
        Grain::Year,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s.trim())
    }

    /// Every grain, as a list for messages.
    pub fn names() -> String {
        Self::ALL.map(Grain::as_str).join(", ")
    }
}

/// A column or expression a metric is broken down by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    pub name: String,
    /// SQL over the model's columns (the column itself when not given).
    pub expr: String,
}

/// One metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub label: String,
    pub description: String,
    /// The model it is computed over.
    pub model: String,
    /// An aggregate SQL expression over the model's columns.
    pub measure: String,
    /// The time column and the grains it may be read at.
    pub time: Option<(String, Vec<Grain>)>,
    pub dimensions: Vec<Dimension>,
    /// SQL conditions always applied.
    pub filters: Vec<String>,
    /// How values are shown: `number` (default), `percent`, `currency`.
    pub format: String,
    /// Where it is defined.
    pub file: PathBuf,
}

/// What a query asks of a metric.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Group by this grain of the time column.
    pub grain: Option<Grain>,
    /// Break down by these dimensions (by name).
    pub dimensions: Vec<String>,
    /// More conditions (SQL over the model's columns).
    pub filters: Vec<String>,
    /// From this time on (inclusive), and before `end`.
    pub start: Option<String>,
    pub end: Option<String>,
}

/// Every metric under `root/metrics/`; `models` are the project's model (and seed) names.
pub fn load(root: &Path, models: &[&str]) -> Result<Vec<Metric>> {
    let mut out: Vec<Metric> = Vec::new();
    for (rel, text, doc) in strata_project::config::yaml_files(root, FOLDER)? {
        let Some(list) = doc.get("metrics") else {
            continue;
        };
        let Json::Array(items) = list else {
            return Err(Error::at(
                Location::file(&rel),
                "`metrics:` must be a list of metrics",
            ));
        };
        for item in items {
            let name = item.get("name").and_then(Json::as_str).unwrap_or_default();
            let at = |key: &str| match line_of(&text, name, key) {
                Some(l) => Location::line(&rel, l),
                None => Location::file(&rel),
            };
            let metric = parse(item, models, &rel).map_err(|(key, msg)| {
                Error::at(at(&key), msg).with_node(format!("metric `{name}`"))
            })?;
            if let Some(other) = out.iter().find(|m| m.name == metric.name) {
                return Err(Error::at(
                    at("name"),
                    format!(
                        "metric `{}` is defined twice (also in {})",
                        metric.name,
                        other.file.display()
                    ),
                ));
            }
            out.push(metric);
        }
    }
    Ok(out)
}

/// The line of `key` in the entry of metric `name` (the first after its `name:` line).
fn line_of(text: &str, name: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        let t = l.trim_start().trim_start_matches('-').trim_start();
        t.strip_prefix("name:")
            .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == name)
    })?;
    if key == "name" {
        return Some(start + 1);
    }
    lines[start..]
        .iter()
        .position(|l| {
            l.trim_start()
                .trim_start_matches('-')
                .trim_start()
                .starts_with(&format!("{key}:"))
        })
        .map(|i| start + i + 1)
        .or(Some(start + 1))
}

/// One metric's entry; an error names the key at fault.
fn parse(
    item: &Json,
    models: &[&str],
    file: &Path,
) -> std::result::Result<Metric, (String, String)> {
    let err = |key: &str, msg: String| (key.to_string(), msg);
    let Json::Object(m) = item else {
        return Err(err(
            "name",
            format!("a metric must be a mapping, not {item}"),
        ));
    };
    for k in m.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(err(
                k,
                format!(
                    "`{k}` is not a key of a metric{}",
                    did_you_mean(k, KEYS.iter().copied())
                ),
            ));
        }
    }
    let text = |key: &str| -> std::result::Result<Option<String>, (String, String)> {
        match m.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(other) => Err(err(key, format!("`{key}` must be text, not {other}"))),
        }
    };
    let name = text("name")?.ok_or_else(|| err("name", "a metric needs a `name`".into()))?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(err(
            "name",
            format!("metric name `{name}` must be letters, digits and `_` (it names a column)"),
        ));
    }
    let model = text("model")?.ok_or_else(|| {
        err(
            "model",
            format!("metric `{name}` needs a `model` to be computed over"),
        )
    })?;
    if !models.contains(&model.as_str()) {
        return Err(err(
            "model",
            format!(
                "metric `{name}`: there is no model or seed `{model}`{}",
                did_you_mean(&model, models.iter().copied())
            ),
        ));
    }
    let measure = text("measure")?.ok_or_else(|| {
        err(
            "measure",
            format!("metric `{name}` needs a `measure`: an aggregate such as sum(amount) or count(distinct customer_id)"),
        )
    })?;
    let time = match m.get("time") {
        None | Some(Json::Null) => None,
        Some(Json::String(c)) => Some((c.clone(), Grain::ALL.to_vec())),
        Some(Json::Object(t)) => {
            for k in t.keys() {
                if k != "column" && k != "grains" {
                    return Err(err(
                        "time",
                        format!(
                            "`time` takes `column` and `grains`, not `{k}`{}",
                            did_you_mean(k, ["column", "grains"])
                        ),
                    ));
                }
            }
            let column = t.get("column").and_then(Json::as_str).ok_or_else(|| {
                err(
                    "time",
                    "`time` needs `column`: the model's date or timestamp column".into(),
                )
            })?;
            let grains = match t.get("grains") {
                None => Grain::ALL.to_vec(),
                Some(Json::Array(a)) => a
                    .iter()
                    .map(|g| {
                        g.as_str().and_then(Grain::parse).ok_or_else(|| {
                            err("time", format!("`{g}` is not a grain ({})", Grain::names()))
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
                Some(other) => {
                    return Err(err("time", format!("`grains` must be a list, not {other}")));
                }
            };
            Some((column.to_string(), grains))
        }
        Some(other) => {
            return Err(err(
                "time",
                format!("`time` must be {{column: ..., grains: [...]}}, not {other}"),
            ));
        }
    };
    let dimensions = match m.get("dimensions") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|d| match d {
                Json::String(s) => Ok(Dimension {
                    name: s.clone(),
                    expr: s.clone(),
                }),
                Json::Object(o) => {
                    let name = o.get("name").and_then(Json::as_str).ok_or_else(|| {
                        err("dimensions", format!("a dimension needs a `name`: {d}"))
                    })?;
                    let expr = o.get("expr").and_then(Json::as_str).unwrap_or(name);
                    Ok(Dimension {
                        name: name.to_string(),
                        expr: expr.to_string(),
                    })
                }
                other => Err(err(
                    "dimensions",
                    format!("a dimension is a column name or {{name, expr}}, not {other}"),
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(err(
                "dimensions",
                format!("`dimensions` must be a list, not {other}"),
            ));
        }
    };
    let filters = match m.get("filters") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .map(|f| {
                f.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err("filters", format!("a filter is SQL text, not {f}")))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(err(
                "filters",
                format!("`filters` must be a list of SQL conditions, not {other}"),
            ));
        }
    };
    let format = text("format")?.unwrap_or_else(|| "number".into());
    if !["number", "percent", "currency"].contains(&format.as_str()) {
        return Err(err(
            "format",
            format!("`format: {format}` must be number, percent or currency"),
        ));
    }
    Ok(Metric {
        label: text("label")?.unwrap_or_else(|| name.clone()),
        description: text("description")?.unwrap_or_default(),
        name,
        model,
        measure,
        time,
        dimensions,
        filters,
        format,
        file: file.to_path_buf(),
    })
}

impl Metric {
    /// The SQL answering `q` (with `ref()`, to compile as an inline query): one row per
    /// period and dimension value, in their order, the metric's value last.
    pub fn sql(&self, q: &Query) -> std::result::Result<String, String> {
        let mut select = Vec::new();
        let mut conditions: Vec<String> = self.filters.iter().map(|f| format!("({f})")).collect();
        let time = self.time.as_ref();
        if let Some(grain) = q.grain {
            let Some((column, grains)) = time else {
                return Err(format!(
                    "metric `{}` has no `time` column, so it cannot be read by {}",
                    self.name,
                    grain.as_str()
                ));
            };
            if !grains.contains(&grain) {
                return Err(format!(
                    "metric `{}` is read by {}, not by {}",
                    self.name,
                    grains
                        .iter()
                        .map(|g| g.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    grain.as_str()
                ));
            }
            select.push(format!(
                "cast(date_trunc('{}', cast({column} as timestamp)) as date) as {}",
                grain.as_str(),
                grain.as_str()
            ));
        }
        for d in &q.dimensions {
            let Some(dim) = self.dimensions.iter().find(|x| &x.name == d) else {
                let names: Vec<&str> = self.dimensions.iter().map(|x| x.name.as_str()).collect();
                return Err(format!(
                    "metric `{}` has no dimension `{d}`{} (its dimensions: {})",
                    self.name,
                    did_you_mean(d, names.iter().copied()),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            };
            select.push(format!(
                "{} as {}",
                dim.expr,
                strata_common::quote_ident(&dim.name)
            ));
        }
        for (bound, op) in [(&q.start, ">="), (&q.end, "<")] {
            if let Some(b) = bound {
                let Some((column, _)) = time else {
                    return Err(format!(
                        "metric `{}` has no `time` column to bound by --start/--end",
                        self.name
                    ));
                };
                conditions.push(format!(
                    "cast({column} as timestamp) {op} cast({} as timestamp)",
                    strata_common::quote_literal(b)
                ));
            }
        }
        conditions.extend(q.filters.iter().map(|f| format!("({f})")));
        let groups = select.len();
        select.push(format!(
            "{} as {}",
            self.measure,
            strata_common::quote_ident(&self.name)
        ));
        let mut sql = format!(
            "select {}\nfrom {{{{ ref('{}') }}}}",
            select.join(", "),
            self.model
        );
        if !conditions.is_empty() {
            sql.push_str(&format!("\nwhere {}", conditions.join(" and ")));
        }
        if groups > 0 {
            let positions: Vec<String> = (1..=groups).map(|i| i.to_string()).collect();
            sql.push_str(&format!(
                "\ngroup by {0}\norder by {0}",
                positions.join(", ")
            ));
        }
        Ok(sql)
    }
}

/// The metric named `name`, or an error naming the closest.
pub fn find<'m>(metrics: &'m [Metric], name: &str) -> std::result::Result<&'m Metric, String> {
    metrics
        .iter()
        .find(|m| m.name == name || m.label == name)
        .ok_or_else(|| {
            format!(
                "no metric named `{name}`{}{}",
                did_you_mean(name, metrics.iter().map(|m| m.name.as_str())),
                if metrics.is_empty() {
                    format!("; define metrics in {FOLDER}/*.yml")
                } else {
                    String::new()
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(yaml: &str) -> std::result::Result<Metric, (String, String)> {
        let v: yaml_serde::Value = yaml_serde::from_str(yaml).expect("yaml");
        parse(
            &strata_project::config::yaml_to_json(&v),
            &["orders"],
            Path::new("metrics/m.yml"),
        )
    }

    #[test]
    fn a_query_is_drawn_up_from_the_definition() {
        let m = metric("name: revenue\nmodel: orders\nmeasure: sum(amount)\ntime: {column: ordered_at, grains: [day, month]}\ndimensions: [status, {name: big, expr: amount > 100}]\nfilters: [\"status <> 'test'\"]\n").expect("metric");
        let sql = m
            .sql(&Query {
                grain: Some(Grain::Month),
                dimensions: vec!["status".into()],
                filters: vec!["amount > 0".into()],
                start: Some("2026-01-01".into()),
                end: None,
            })
            .expect("sql");
        assert_eq!(
            sql,
            "select cast(date_trunc('month', cast(ordered_at as timestamp)) as date) as month, status as \"status\", sum(amount) as \"revenue\"\nfrom {{ ref('orders') }}\nwhere (status <> 'test') and cast(ordered_at as timestamp) >= cast('2026-01-01' as timestamp) and (amount > 0)\ngroup by 1, 2\norder by 1, 2"
        );
        let total = m.sql(&Query::default()).expect("sql");
        assert!(!total.contains("group by"), "{total}");
        let e = m
            .sql(&Query {
                grain: Some(Grain::Year),
                ..Query::default()
            })
            .expect_err("grain");
        assert!(e.contains("read by day, month, not by year"), "{e}");
        let e = m
            .sql(&Query {
                dimensions: vec!["stats".into()],
                ..Query::default()
            })
            .expect_err("dimension");
        assert!(e.contains("did you mean `status`"), "{e}");
    }

    #[test]
    fn wrong_definitions_name_the_key() {
        let (key, e) = metric("name: r\nmodel: order\nmeasure: sum(a)\n").expect_err("model");
        assert_eq!(key, "model");
        assert!(e.contains("did you mean `orders`"), "{e}");
        let (key, e) = metric("name: r\nmodel: orders\nmesure: sum(a)\n").expect_err("key");
        assert_eq!(key, "mesure");
        assert!(e.contains("did you mean `measure`"), "{e}");
        let (_, e) = metric(
            "name: r\nmodel: orders\nmeasure: sum(a)\ntime: {column: d, grains: [fortnight]}\n",
        )
        .expect_err("grain");
        assert!(
            e.contains("`\"fortnight\"` is not a grain") || e.contains("fortnight"),
            "{e}"
        );
    }
}
