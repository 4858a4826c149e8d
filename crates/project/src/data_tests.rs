//! Data tests: generic tests declared in properties YAML (on columns, models, seeds and source
//! tables) and singular tests (`tests/*.sql`). A test is a query for failing rows; it passes
//! when the query returns nothing.

use std::path::PathBuf;

use indexmap::IndexMap;
use md5::Digest;
use serde_json::Value as Json;
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

/// The kinds of test.
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
    /// A unit test (`unit_tests:`): a model run on given rows, compared with expected ones.
    Unit(Box<crate::unit_tests::UnitTest>),
}

impl DataTest {
    /// `unit_test` for a unit test, else `test`, as dbt's `--resource-type` names them.
    pub fn resource_type(&self) -> &'static str {
        match self.kind {
            TestKind::Unit(_) => "unit_test",
            _ => "test",
        }
    }

    /// `error` (the default) or `warn`.
    pub fn severity(&self) -> &str {
        match self.config.get_str("severity") {
            Some(s) if s.eq_ignore_ascii_case("warn") => "warn",
            _ => "error",
        }
    }

    /// The name of the relation that keeps its failures (`store_failures`): its `alias`, which
    /// for a long generated name is the short one, else its name.
    pub fn relation_name(&self) -> &str {
        self.config.get_str("alias").unwrap_or(&self.name)
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

/// A test argument written with `{{ ... }}` as the expression dbt renders it to: the
/// expression alone keeps its value (`'{{ var("n") }}'`); text around it is joined as text
/// (`cast(d as date) = {{ dbt_date.yesterday() }}`).
fn templated_string(s: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}").map(|c| c + open) else {
            break;
        };
        if open > 0 {
            parts.push(jinja_string(&rest[..open]));
        }
        let expr = rest[open + 2..close]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-');
        parts.push(format!("({})", expr.trim()));
        rest = &rest[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(jinja_string(rest));
    }
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", parts.join(" ~ ")),
    }
}

/// A string as a Jinja string literal (JSON's escaping is Jinja's).
fn jinja_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "''".to_string())
}

/// A JSON value as a Jinja expression. Strings that are `ref(...)` or `source(...)` calls are
/// kept as calls, as dbt renders test arguments.
pub fn jinja_literal(v: &Json) -> String {
    match v {
        Json::Null => "none".into(),
        Json::Bool(b) => if *b { "true" } else { "false" }.into(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => {
            let t = s.trim();
            if (t.starts_with("ref(") || t.starts_with("source(")) && t.ends_with(')') {
                t.to_string()
            } else if s.contains("{{") {
                templated_string(s)
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

/// Python's `str()` of a YAML value, as dbt's names and hashes see it.
fn py_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a YAML value.
fn py_repr(v: &Json) -> String {
    match v {
        Json::Null => "None".into(),
        Json::Bool(b) => if *b { "True" } else { "False" }.into(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => py_repr_str(s),
        Json::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Json::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `repr()` of a string: single quotes unless the text has one and no double quote.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The value dbt hashes a generic test's metadata as: mappings with sorted keys, lists kept,
/// every other value as its `str()`.
fn hashable(v: &Json) -> Json {
    match v {
        Json::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), hashable(&o[k])))
                    .collect(),
            )
        }
        Json::Array(a) => Json::Array(a.iter().map(hashable).collect()),
        other => Json::String(py_str(other)),
    }
}

/// A generic test's names, as dbt synthesizes them: the full name (the node's name, in its
/// unique_id and fqn) — the test (prefixed with its package namespace and `source_` for
/// source tests), the tested model or source table, and each argument's values in argument
/// order, runs of other characters than letters, digits and `_` made `_` — and, when that is
/// 64 characters or more, a short name for its relation and file: the first 30 characters of
/// test and target, and the MD5 of the full name.
fn test_names(
    test: &str,
    namespace: Option<&str>,
    target: &TestTarget,
    args: &IndexMap<String, Json>,
) -> (String, String) {
    let mut kind = match target {
        TestTarget::Ref(_) => test.to_string(),
        TestTarget::Source(..) => format!("source_{test}"),
    };
    if let Some(ns) = namespace {
        kind = format!("{ns}_{kind}");
    }
    let target_name = match target {
        TestTarget::Ref(m) => m.clone(),
        TestTarget::Source(s, t) => format!("{s}_{t}"),
    };
    let mut keys: Vec<&String> = args.keys().filter(|k| *k != "model").collect();
    keys.sort();
    let mut flat = Vec::new();
    for k in keys {
        match &args[k] {
            Json::Object(o) => flat.extend(o.values().map(py_str)),
            Json::Array(a) => flat.extend(a.iter().map(py_str)),
            other => flat.push(py_str(other)),
        }
    }
    let unique = flat
        .iter()
        .map(|a| sanitize(a))
        .collect::<Vec<_>>()
        .join("__");
    let identifier = format!("{kind}_{target_name}");
    let full = format!("{identifier}_{unique}");
    if full.len() < 64 {
        return (full.clone(), full);
    }
    let head: String = identifier.chars().take(30).collect();
    let short = format!("{head}_{:x}", md5::Md5::digest(full.as_bytes()));
    (short, full)
}

/// The ten hex digits that end a generic test's unique_id: the MD5 of its name and of its
/// metadata (`{name, kwargs, namespace}`) as dbt writes them.
fn test_hash(name: &str, metadata: &Json) -> String {
    let digest = format!(
        "{:x}",
        md5::Md5::digest(format!("{name}{}", py_repr(&hashable(metadata))).as_bytes())
    );
    digest[digest.len() - 10..].to_string()
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
        // dbt's arguments: the column, then those written, then the tested relation.
        let mut named_args: IndexMap<String, Json> = IndexMap::new();
        if let Some(c) = column {
            named_args.insert("column_name".into(), Json::String(c.to_string()));
        }
        named_args.extend(args.iter().map(|(k, v)| (k.clone(), v.clone())));
        named_args.insert(
            "model".into(),
            Json::String(format!(
                "{{{{ get_where_subquery({}) }}}}",
                match target {
                    TestTarget::Ref(m) => format!("ref('{m}')"),
                    TestTarget::Source(s, t) => format!("source('{s}', '{t}')"),
                }
            )),
        );
        let (short, full) = test_names(&macro_name, namespace.as_deref(), target, &named_args);
        let name = custom_name.unwrap_or(full);
        if short != name && config.get("alias").is_none() {
            config.set("alias", Json::String(short));
        }
        let metadata = serde_json::json!({
            "name": macro_name,
            "kwargs": Json::Object(named_args.into_iter().collect()),
            "namespace": namespace,
        });
        let fqn = vec![package.to_string(), name.clone()];
        let anomaly = crate::anomaly::ANOMALY_TESTS.contains(&macro_name.as_str());
        out.push(DataTest {
            unique_id: format!("test.{package}.{name}.{}", test_hash(&name, &metadata)),
            name,
            package: package.to_string(),
            original_file_path: file.clone(),
            fqn,
            kind: TestKind::Generic {
                test_name: macro_name,
                // Elementary's anomaly tests are Strata's own: `elementary.volume_anomalies`
                // needs no package.
                namespace: namespace
                    .filter(|ns| ns != "dbt" && ns != package && !(ns == "elementary" && anomaly)),
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

    /// Names and ids as dbt-core 1.11 gives them (its manifest for tests/compat/shop).
    #[test]
    fn names_and_ids_are_dbts() {
        let v: yaml_serde::Value = yaml_serde::from_str(
            "- shop_utils.at_least: {arguments: {minimum: 0}}\n- shop_utils.at_least: {arguments: {minimum: -100000000000000}}\n",
        )
        .expect("yaml");
        let t = parse_test_list(
            Some(&v),
            &TestTarget::Ref("orders_by_customer".into()),
            Some("n_orders"),
            "compat_shop",
            &PathBuf::from("models/orders/orders.yml"),
        )
        .expect("parse");
        assert_eq!(
            t[0].unique_id,
            "test.compat_shop.shop_utils_at_least_orders_by_customer_n_orders__0.f3cd23a340"
        );
        assert_eq!(t[0].relation_name(), t[0].name);
        // 64 characters or more: the node keeps the full name, its relation a short one.
        assert_eq!(
            t[1].unique_id,
            "test.compat_shop.shop_utils_at_least_orders_by_customer_n_orders___100000000000000.b6b3ec5cd3"
        );
        assert_eq!(
            t[1].relation_name(),
            "shop_utils_at_least_orders_by__f3e78816e4d56d5f11bd3ae4624e72d0"
        );
        let v: yaml_serde::Value = yaml_serde::from_str(
            "- unique: {column_name: \"store_id || '-' || cast(sold_on as varchar)\"}\n",
        )
        .expect("yaml");
        let t = parse_test_list(
            Some(&v),
            &TestTarget::Ref("sales_daily".into()),
            None,
            "compat_shop",
            &PathBuf::from("models/marts/marts.yml"),
        )
        .expect("parse");
        assert_eq!(
            t[0].unique_id,
            "test.compat_shop.unique_sales_daily_store_id_cast_sold_on_as_varchar_.b0e709b130"
        );
    }
}
