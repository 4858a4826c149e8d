//! Data tests: generic tests declared in properties YAML (on columns, models, seeds and source
//! tables) and singular tests (`tests/*.sql`). A test is a query for failing rows; it passes
//! when the query returns nothing.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use strata_common::Location;

use crate::config::{NodeConfig, yaml_to_json};
use crate::error::{Error, Result};

/// Configuration keys of a test (everything else in a test's mapping is an argument).
const TEST_CONFIGS: &[&str] = &[
    "severity",
    "warn_if",
    "error_if",
    "where",
    "limit",
    "tags",
    "store_failures",
    "store_failures_as",
    "enabled",
    "meta",
    "alias",
    "schema",
    "database",
    "fail_calc",
];

/// What a generic test is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestTarget {
    /// A model or seed, by name.
    Ref(String),
    /// A source table.
    Source(String, String),
}

/// A data test.
#[derive(Debug, Clone)]
pub struct DataTest {
    /// `test.<package>.<name>`.
    pub unique_id: String,
    /// The test's name, e.g. `not_null_orders_order_id`.
    pub name: String,
    /// The package.
    pub package: String,
    /// The file declaring it (properties YAML or the singular test's SQL).
    pub original_file_path: PathBuf,
    /// Fully qualified name.
    pub fqn: Vec<String>,
    /// Generic or singular.
    pub kind: TestKind,
    /// `severity`, `warn_if`, `error_if`, `where`, `limit`, `tags`, `store_failures`, ...
    pub config: NodeConfig,
    /// Unique ids of the nodes it reads (filled in by the loader).
    pub depends_on: Vec<String>,
    /// For generic tests: the node it is attached to (its unique id).
    pub attached_node: Option<String>,
}

/// The two kinds of data test.
#[derive(Debug, Clone)]
pub enum TestKind {
    /// An instance of a generic test macro (`test_<name>`).
    Generic {
        /// The test's macro name without `test_` (`unique`, `accepted_values`, ...).
        test_name: String,
        /// The package named before it (`dbt_utils.not_empty_string`): its macro is used,
        /// even when the project defines a test of the same name.
        namespace: Option<String>,
        /// The model, seed or source table it tests.
        target: TestTarget,
        /// The column, for column tests.
        column: Option<String>,
        /// Its arguments.
        args: IndexMap<String, Json>,
    },
    /// A SQL file under a test path.
    Singular {
        /// Its SQL, with Jinja.
        raw_sql: String,
    },
}

impl DataTest {
    /// `error` (the default) or `warn`.
    pub fn severity(&self) -> &str {
        match self.config.get_str("severity") {
            Some(s) if s.eq_ignore_ascii_case("warn") => "warn",
            _ => "error",
        }
    }

    /// How failures are counted over the test query's rows (default `count(*)`), as dbt's
    /// `fail_calc`.
    pub fn fail_calc(&self) -> &str {
        self.config
            .get_str("fail_calc")
            .filter(|c| !c.trim().is_empty())
            .unwrap_or("count(*)")
    }

    /// The condition on the failure count that makes the test warn (default `!= 0`).
    pub fn warn_if(&self) -> &str {
        self.config.get_str("warn_if").unwrap_or("!= 0")
    }

    /// The condition on the failure count that makes the test fail (default `!= 0`).
    pub fn error_if(&self) -> &str {
        self.config.get_str("error_if").unwrap_or("!= 0")
    }

    /// At most this many failing rows are considered.
    pub fn limit(&self) -> Option<u64> {
        self.config.get("limit").and_then(Json::as_u64)
    }

    /// Whether failing rows are kept in the audit schema (`store_failures`).
    pub fn store_failures(&self) -> bool {
        matches!(self.config.get("store_failures"), Some(Json::Bool(true)))
            || self
                .config
                .get_str("store_failures_as")
                .is_some_and(|s| s == "table")
    }

    /// A filter applied to the tested relation before testing it.
    pub fn where_clause(&self) -> Option<&str> {
        self.config
            .get_str("where")
            .filter(|w| !w.trim().is_empty())
    }

    /// For generic tests: the Jinja call that renders the test's query.
    pub fn jinja_call(&self) -> Option<String> {
        let TestKind::Generic {
            test_name,
            namespace,
            target,
            column,
            args,
        } = &self.kind
        else {
            return None;
        };
        let relation = match target {
            TestTarget::Ref(name) => format!("ref({})", jinja_string(name)),
            TestTarget::Source(s, t) => {
                format!("source({}, {})", jinja_string(s), jinja_string(t))
            }
        };
        let model = match self.where_clause() {
            Some(w) => format!(
                "('(select * from ' ~ {relation} ~ ' where ' ~ {} ~ ') dbt_subquery')",
                jinja_string(w)
            ),
            None => relation,
        };
        let mut call = match namespace {
            Some(ns) => format!("{ns}.test_{test_name}(model={model}"),
            None => format!("test_{test_name}(model={model}"),
        };
        if let Some(c) = column {
            call.push_str(&format!(", column_name={}", jinja_string(c)));
        }
        for (k, v) in args {
            call.push_str(&format!(", {k}={}", jinja_literal(v)));
        }
        call.push(')');
        Some(format!("{{{{ {call} }}}}"))
    }
}

/// A string as a Jinja string literal (JSON's escaping is Jinja's).
fn jinja_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "''".to_string())
}

/// A JSON value as a Jinja expression. Strings that are `ref(...)` or `source(...)` calls are
/// kept as calls, as dbt renders test arguments.
fn jinja_literal(v: &Json) -> String {
    match v {
        Json::Null => "none".into(),
        Json::Bool(b) => if *b { "true" } else { "false" }.into(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => {
            let t = s.trim();
            if (t.starts_with("ref(") || t.starts_with("source(")) && t.ends_with(')') {
                t.to_string()
            } else {
                jinja_string(s)
            }
        }
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(jinja_literal).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", jinja_string(k), jinja_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs of characters other than letters, digits and `_` become one `_`, as in dbt's names.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

fn arg_suffix(v: &Json) -> String {
    match v {
        Json::String(s) => sanitize(s),
        Json::Array(a) => a.iter().map(arg_suffix).collect::<Vec<_>>().join("__"),
        Json::Object(o) => o.values().map(arg_suffix).collect::<Vec<_>>().join("__"),
        Json::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        other => sanitize(&other.to_string()),
    }
}

/// dbt-style test names: `unique_orders_order_id`, `accepted_values_orders_status__a__b`,
/// `source_not_null_raw_orders_id`; long names are shortened with a hash.
fn test_name(
    test: &str,
    target: &TestTarget,
    column: Option<&str>,
    args: &IndexMap<String, Json>,
) -> String {
    let mut parts = match target {
        TestTarget::Ref(m) => format!("{test}_{m}"),
        TestTarget::Source(s, t) => format!("source_{test}_{s}_{t}"),
    };
    if let Some(c) = column {
        parts.push('_');
        parts.push_str(&sanitize(c));
    }
    let mut keys: Vec<&String> = args.keys().collect();
    keys.sort();
    let suffix: Vec<String> = keys.iter().map(|k| arg_suffix(&args[*k])).collect();
    if !suffix.is_empty() {
        parts.push_str("__");
        parts.push_str(&suffix.join("__"));
    }
    if parts.len() > 80 {
        let hash = format!("{:x}", Sha256::digest(parts.as_bytes()));
        let head: String = parts.chars().take(60).collect();
        parts = format!("{head}_{}", &hash[..10]);
    }
    parts
}

/// The tests under one `tests:` / `data_tests:` list of a properties entry.
pub(crate) fn parse_test_list(
    list: Option<&yaml_serde::Value>,
    target: &TestTarget,
    column: Option<&str>,
    package: &str,
    file: &PathBuf,
) -> Result<Vec<DataTest>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let yaml_serde::Value::Sequence(items) = list else {
        return Err(Error::at(
            Location::file(file),
            "`tests:` must be a list, e.g. `tests: [unique, not_null]`",
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let (test, body) = match item {
            yaml_serde::Value::String(s) => (s.clone(), None),
            yaml_serde::Value::Mapping(m) if m.len() == 1 => {
                let (k, v) = m
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap_or_default();
                match k.as_str() {
                    Some(name) => (name.to_string(), Some(v)),
                    None => {
                        return Err(Error::at(
                            Location::file(file),
                            "a test's name must be text",
                        ));
                    }
                }
            }
            other => {
                return Err(Error::at(
                    Location::file(file),
                    format!(
                        "cannot read test `{}`",
                        yaml_serde::to_string(other).unwrap_or_default().trim()
                    ),
                )
                .with_hint("write a test as `- unique` or `- accepted_values: {values: [a, b]}`"));
            }
        };
        // `dbt_utils.expression_is_true` names the macro `test_expression_is_true` of the
        // package `dbt_utils`.
        let (namespace, macro_name) = match test.rsplit_once('.') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, test.clone()),
        };
        let mut args: IndexMap<String, Json> = IndexMap::new();
        let mut config = NodeConfig::new();
        let mut custom_name = None;
        if let Some(yaml_serde::Value::Mapping(m)) = &body {
            let explicit_args = m.get("arguments").is_some();
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default();
                match key {
                    "arguments" => {
                        if let Json::Object(a) = yaml_to_json(v) {
                            args.extend(a);
                        }
                    }
                    "config" => {
                        if let Json::Object(c) = yaml_to_json(v) {
                            for (ck, cv) in c {
                                config.set(&ck, cv);
                            }
                        }
                    }
                    "name" => custom_name = v.as_str().map(str::to_string),
                    "description" => {}
                    k if TEST_CONFIGS.contains(&k) => config.set(k, yaml_to_json(v)),
                    k if !explicit_args => {
                        args.insert(k.to_string(), yaml_to_json(v));
                    }
                    _ => {}
                }
            }
        }
        let name = custom_name.unwrap_or_else(|| test_name(&macro_name, target, column, &args));
        let fqn = vec![package.to_string(), name.clone()];
        out.push(DataTest {
            unique_id: format!("test.{package}.{name}"),
            name,
            package: package.to_string(),
            original_file_path: file.clone(),
            fqn,
            kind: TestKind::Generic {
                test_name: macro_name,
                namespace: namespace.filter(|ns| ns != "dbt" && ns != package),
                target: target.clone(),
                column: column.map(str::to_string),
                args,
            },
            config,
            depends_on: Vec::new(),
            attached_node: None,
        });
    }
    Ok(out)
}

/// The `tests:` (or `data_tests:`) list of a properties mapping.
pub(crate) fn tests_key(other: &IndexMap<String, yaml_serde::Value>) -> Option<&yaml_serde::Value> {
    other.get("data_tests").or_else(|| other.get("tests"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Vec<DataTest> {
        let v: yaml_serde::Value = yaml_serde::from_str(yaml).expect("yaml");
        parse_test_list(
            Some(&v),
            &TestTarget::Ref("orders".into()),
            Some("status"),
            "shop",
            &PathBuf::from("models/schema.yml"),
        )
        .expect("parse")
    }

    #[test]
    fn both_argument_syntaxes_and_configs() {
        let t = parse(
            "- unique\n- accepted_values: {values: [placed, shipped], quote: true, severity: warn}\n- accepted_values:\n    arguments: {values: [a]}\n    config: {where: \"x > 1\", limit: 5}\n",
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].name, "unique_orders_status");
        assert_eq!(
            t[1].name,
            "accepted_values_orders_status__True__placed__shipped"
        );
        assert_eq!(t[1].severity(), "warn");
        assert_eq!(t[2].where_clause(), Some("x > 1"));
        assert_eq!(t[2].limit(), Some(5));
        let call = t[2].jinja_call().expect("generic");
        assert!(
            call.contains(r#"test_accepted_values(model=('(select * from ' ~ ref("orders") ~ ' where ' ~ "x > 1""#),
            "{call}"
        );
        assert!(call.contains(r#"values=["a"]"#), "{call}");
    }

    #[test]
    fn ref_arguments_stay_calls() {
        let t = parse("- relationships: {to: ref('customers'), field: id}\n");
        assert_eq!(t[0].name, "relationships_orders_status__id__ref_customers_");
        let call = t[0].jinja_call().expect("generic");
        assert!(call.contains("to=ref('customers')"), "{call}");
        assert!(call.contains("field=\"id\""), "{call}");
    }
}
