//! Unit tests (`unit_tests:` in properties files, as dbt 1.8 has them): a model's SQL run on
//! rows the test gives for its inputs, compared with the rows it expects.
//!
//! ```yaml
//! unit_tests:
//!   - name: refunds_are_negative
//!     model: fct_payments
//!     given:
//!       - input: ref('stg_payments')
//!         rows:
//!           - {payment_id: 1, amount: 10, kind: refund}
//!       - input: source('shop', 'rates')
//!         format: csv
//!         rows: |
//!           currency,rate
//!           EUR,1.1
//!     expect:
//!       rows:
//!         - {payment_id: 1, signed_amount: -10}
//!     overrides:
//!       vars: {currency: EUR}
//!       macros: {is_incremental: false}
//! ```
//!
//! Each input is replaced by a CTE of its rows. Columns an input does not give are NULL;
//! values take the input relation's column types when it exists in the warehouse (as dbt reads
//! them from it), else their literal types. Only the columns the expected rows name are
//! compared, as multisets of rows.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value as Json;
use strata_common::{Location, quote_ident, quote_literal};

use crate::config::{NodeConfig, yaml_to_json};
use crate::data_tests::{DataTest, TestKind};
use crate::error::{Error, Result};

/// Rows as a unit test writes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// `format: dict` (the default): a list of mappings.
    Dict(Vec<IndexMap<String, Json>>),
    /// `format: csv`: a header line, then values.
    Csv(String),
    /// `format: sql`: a query giving the rows.
    Sql(String),
}

/// One `given:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Given {
    /// `ref('model')` or `source('source', 'table')`, parsed.
    pub input: Input,
    pub rows: Rows,
}

/// What a `given:` entry stands in for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    Ref(String),
    Source(String, String),
}

/// A unit test's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitTest {
    /// The model it runs.
    pub model: String,
    pub given: Vec<Given>,
    pub expect: Rows,
    /// `overrides: vars:`.
    pub vars: IndexMap<String, Json>,
    /// `overrides: macros:` — each macro replaced by a constant.
    pub macros: IndexMap<String, Json>,
    /// `overrides: env_vars:`.
    pub env_vars: IndexMap<String, String>,
}

impl Input {
    fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let args = |inner: &str| -> Vec<String> {
            inner
                .split(',')
                .map(|a| a.trim().trim_matches(['\'', '"']).to_string())
                .collect()
        };
        if let Some(inner) = t.strip_prefix("ref(").and_then(|r| r.strip_suffix(')')) {
            let a = args(inner);
            return a.last().map(|m| Input::Ref(m.clone()));
        }
        let inner = t.strip_prefix("source(")?.strip_suffix(')')?;
        match args(inner).as_slice() {
            [s, t] => Some(Input::Source(s.clone(), t.clone())),
            _ => None,
        }
    }

    /// The name of the CTE that stands in for it.
    pub fn cte(&self) -> String {
        match self {
            Input::Ref(m) => format!("__dbt__cte__{m}"),
            Input::Source(s, t) => format!("__dbt__cte__{s}_{t}"),
        }
    }
}

/// The unit tests of one `unit_tests:` list.
pub fn parse_unit_tests(
    list: &yaml_serde::Value,
    package: &str,
    file: &Path,
) -> Result<Vec<DataTest>> {
    let bad = |what: String| {
        Error::at(Location::file(file), what).with_hint(
            "write a unit test as `- {name: ..., model: ..., given: [{input: ref('x'), rows: [...]}], expect: {rows: [...]}}`",
        )
    };
    let yaml_serde::Value::Sequence(items) = list else {
        return Err(bad("`unit_tests:` must be a list".into()));
    };
    let mut out = Vec::new();
    for item in items {
        let get = |k: &str| item.get(k);
        let name = get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("a unit test needs a `name`".into()))?
            .to_string();
        let model = get("model")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("unit test `{name}` needs the `model` it tests")))?
            .to_string();
        let mut given = Vec::new();
        if let Some(list) = get("given") {
            let yaml_serde::Value::Sequence(entries) = list else {
                return Err(bad(format!("unit test `{name}`: `given` must be a list")));
            };
            for g in entries {
                let input_text = g.get("input").and_then(|v| v.as_str()).unwrap_or_default();
                let input = Input::parse(input_text).ok_or_else(|| {
                    bad(format!(
                        "unit test `{name}`: input `{input_text}` is not ref('model') or source('source', 'table')"
                    ))
                })?;
                given.push(Given {
                    input,
                    rows: rows(g, &name, file)?,
                });
            }
        }
        let expect = match get("expect") {
            Some(e) => rows(e, &name, file)?,
            None => {
                return Err(bad(format!(
                    "unit test `{name}` needs `expect: {{rows: ...}}`"
                )));
            }
        };
        let overrides = get("overrides");
        let section = |k: &str| -> IndexMap<String, Json> {
            match overrides.and_then(|o| o.get(k)).map(yaml_to_json) {
                Some(Json::Object(m)) => m.into_iter().collect(),
                _ => IndexMap::new(),
            }
        };
        let mut config = NodeConfig::new();
        if let Some(Json::Object(c)) = get("config").map(yaml_to_json) {
            for (k, v) in c {
                config.set(&k, v);
            }
        }
        let unit = UnitTest {
            model: model.clone(),
            given,
            expect,
            vars: section("vars"),
            macros: section("macros"),
            env_vars: section("env_vars")
                .into_iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k, text)
                })
                .collect(),
        };
        out.push(DataTest {
            unique_id: format!("unit_test.{package}.{model}.{name}"),
            name: name.clone(),
            package: package.to_string(),
            original_file_path: file.to_path_buf(),
            fqn: vec![package.to_string(), model.clone(), name],
            kind: TestKind::Unit(Box::new(unit)),
            config,
            depends_on: Vec::new(),
            attached_node: None,
        });
    }
    Ok(out)
}

/// `rows:` (with `format:`) of a `given:` or `expect:` entry.
fn rows(entry: &yaml_serde::Value, test: &str, file: &Path) -> Result<Rows> {
    let format = entry
        .get("format")
        .and_then(|v| v.as_str())
        .unwrap_or("dict");
    let bad = |what: &str| Error::at(Location::file(file), format!("unit test `{test}`: {what}"));
    if entry.get("fixture").is_some() {
        return Err(bad(
            "`fixture:` files are not supported; write the rows inline",
        ));
    }
    let value = entry.get("rows");
    match format {
        "dict" => match value.map(yaml_to_json) {
            None | Some(Json::Null) => Ok(Rows::Dict(Vec::new())),
            Some(Json::Array(items)) => items
                .into_iter()
                .map(|r| match r {
                    Json::Object(m) => Ok(m.into_iter().collect()),
                    _ => Err(bad("each row must be a mapping of column to value")),
                })
                .collect::<Result<Vec<_>>>()
                .map(Rows::Dict),
            Some(_) => Err(bad(
                "`rows` must be a list of mappings (or set `format: csv` / `sql`)",
            )),
        },
        "csv" | "sql" => {
            let text = value
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("`rows` must be text for `format: csv` or `sql`"))?
                .to_string();
            Ok(if format == "csv" {
                Rows::Csv(text)
            } else {
                Rows::Sql(text)
            })
        }
        other => Err(bad(&format!(
            "unknown format `{other}` (use dict, csv or sql)"
        ))),
    }
}

/// A value written in a test as SQL: typed by `ty` when the column's type is known.
fn literal(v: &Json, ty: Option<&str>) -> String {
    let raw = match v {
        Json::Null => return ty.map_or("null".into(), |t| format!("cast(null as {t})")),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => quote_literal(s),
        other => quote_literal(&other.to_string()),
    };
    match ty {
        Some(t) => format!("cast({raw} as {t})"),
        None => raw,
    }
}

/// CSV text as rows of text values (empty is NULL).
fn csv_rows(text: &str) -> Vec<IndexMap<String, Json>> {
    let split = |line: &str| -> Vec<String> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut cur)),
                (c, _) => cur.push(c),
            }
        }
        fields.push(cur);
        fields
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<String> = split(header)
        .into_iter()
        .map(|n| n.trim().to_string())
        .collect();
    lines
        .map(|l| {
            names
                .iter()
                .cloned()
                .zip(split(l).into_iter().map(|v| {
                    if v.is_empty() {
                        Json::Null
                    } else if let Ok(n) = v.trim().parse::<i64>() {
                        Json::from(n)
                    } else {
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map_or(Json::String(v), Json::Number)
                    }
                }))
                .collect()
        })
        .collect()
}

/// The SQL of `rows`. `columns`, when known (the input relation's columns and types), gives
/// every column in order, NULL where a row has no value; otherwise the rows' own columns.
pub fn rows_sql(rows: &Rows, columns: Option<&[(String, String)]>) -> String {
    let dict = match rows {
        Rows::Sql(sql) => return sql.trim().trim_end_matches(';').to_string(),
        Rows::Dict(d) => d.clone(),
        Rows::Csv(text) => csv_rows(text),
    };
    let names: Vec<(String, Option<String>)> = match columns {
        Some(cols) => cols
            .iter()
            .map(|(n, t)| (n.clone(), Some(t.clone())))
            .collect(),
        None => {
            let mut names: Vec<String> = Vec::new();
            for row in &dict {
                for k in row.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
            names.into_iter().map(|n| (n, None)).collect()
        }
    };
    if dict.is_empty() || names.is_empty() {
        // No rows: the columns, typed, and a false condition.
        let cols: Vec<String> = names
            .iter()
            .map(|(n, t)| {
                format!(
                    "{} as {}",
                    literal(&Json::Null, t.as_deref()),
                    quote_ident(n)
                )
            })
            .collect();
        let cols = if cols.is_empty() {
            "1 as __none".to_string()
        } else {
            cols.join(", ")
        };
        return format!("select {cols} where false");
    }
    dict.iter()
        .map(|row| {
            let cols: Vec<String> = names
                .iter()
                .map(|(n, t)| {
                    let v = row
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.clone())
                        .unwrap_or(Json::Null);
                    format!("{} as {}", literal(&v, t.as_deref()), quote_ident(n))
                })
                .collect();
            format!("select {}", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\nunion all\n")
}

/// The columns the expected rows name, in order.
pub fn expected_columns(expect: &Rows) -> Vec<String> {
    let dict = match expect {
        Rows::Dict(d) => d.clone(),
        Rows::Csv(text) => csv_rows(text),
        Rows::Sql(_) => return Vec::new(),
    };
    let mut names: Vec<String> = Vec::new();
    for row in &dict {
        for k in row.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names
}

/// The query whose rows are the differences between the model's output (`actual`) and the
/// expected rows, on `columns`: `-` rows were expected and not produced, `+` rows were
/// produced and not expected. Empty when the test passes.
pub fn diff_sql(actual: &str, expected: &str, columns: &[String]) -> String {
    let cols = if columns.is_empty() {
        "*".to_string()
    } else {
        columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "with __actual as (\n{actual}\n), __expected as (\n{expected}\n)\n\
         select '-' as diff, * from (select {cols} from __expected except all select {cols} from __actual) as missing\n\
         union all\n\
         select '+' as diff, * from (select {cols} from __actual except all select {cols} from __expected) as extra"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_sql_typed_by_the_inputs_columns() {
        let rows = Rows::Dict(vec![
            [
                ("id".to_string(), Json::from(1)),
                ("name".to_string(), Json::from("a'b")),
            ]
            .into_iter()
            .collect(),
        ]);
        assert_eq!(
            rows_sql(&rows, None),
            "select 1 as \"id\", 'a''b' as \"name\""
        );
        let cols = vec![
            ("id".to_string(), "BIGINT".to_string()),
            ("name".to_string(), "VARCHAR".to_string()),
            ("extra".to_string(), "DATE".to_string()),
        ];
        assert_eq!(
            rows_sql(&rows, Some(&cols)),
            "select cast(1 as BIGINT) as \"id\", cast('a''b' as VARCHAR) as \"name\", cast(null as DATE) as \"extra\""
        );
        let csv = Rows::Csv("id,name\n1,x\n2,\n".into());
        assert_eq!(
            rows_sql(&csv, None),
            "select 1 as \"id\", 'x' as \"name\"\nunion all\nselect 2 as \"id\", null as \"name\""
        );
        assert_eq!(
            rows_sql(&Rows::Dict(vec![]), Some(&cols[..1])),
            "select cast(null as BIGINT) as \"id\" where false"
        );
    }

    #[test]
    fn inputs_parse() {
        assert_eq!(Input::parse("ref('stg')"), Some(Input::Ref("stg".into())));
        assert_eq!(
            Input::parse("source(\"raw\", 'orders')"),
            Some(Input::Source("raw".into(), "orders".into()))
        );
        assert_eq!(Input::parse("stg"), None);
    }
}
