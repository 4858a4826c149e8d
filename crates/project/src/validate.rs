//! Checks of what users write in the project file and in configs: unknown top-level keys and
//! config keys get a warning with the file, the line and the closest valid key; values of the
//! wrong type (`materialized: [table]`, `enabled: "nah"`, `tags: 5`) are errors.

use std::path::Path;

use serde_json::Value as Json;
use strata_common::{Location, did_you_mean};

use crate::config::KNOWN_CONFIGS;
use crate::error::{Error, Result};

/// Top-level keys of a project file that Strata reads or accepts from dbt (dbt 1.x).
pub const PROJECT_KEYS: &[&str] = &[
    "name",
    "version",
    "config-version",
    "profile",
    "model-paths",
    "source-paths",
    "macro-paths",
    "seed-paths",
    "data-paths",
    "test-paths",
    "snapshot-paths",
    "analysis-paths",
    "docs-paths",
    "asset-paths",
    "function-paths",
    "target-path",
    "log-path",
    "packages-install-path",
    "clean-targets",
    "require-dbt-version",
    "query-comment",
    "vars",
    "models",
    "seeds",
    "snapshots",
    "sources",
    "tests",
    "data_tests",
    "unit_tests",
    "analyses",
    "exposures",
    "metrics",
    "semantic-models",
    "saved-queries",
    "functions",
    "on-run-start",
    "on-run-end",
    "dispatch",
    "quoting",
    "flags",
    "restrict-access",
    "dbt-cloud",
];

/// Configuration trees of a project file.
const TREES: [&str; 7] = [
    "models",
    "seeds",
    "snapshots",
    "sources",
    "tests",
    "data_tests",
    "analyses",
];

/// What a config's value must be.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A string.
    Text,
    /// `true` or `false`.
    Bool,
    /// A string or a list of strings.
    TextOrList,
    /// A whole number.
    Integer,
}

fn shape_of(key: &str) -> Option<Shape> {
    Some(match key {
        "materialized"
        | "schema"
        | "database"
        | "alias"
        | "incremental_strategy"
        | "on_schema_change"
        | "strategy"
        | "updated_at"
        | "event_time"
        | "batch_size"
        | "begin"
        | "hard_deletes"
        | "dbt_valid_to_current"
        | "delimiter"
        | "severity"
        | "store_failures_as"
        | "target_schema"
        | "target_database"
        | "warn_if"
        | "error_if" => Shape::Text,
        "enabled"
        | "full_refresh"
        | "quote_columns"
        | "store_failures"
        | "invalidate_hard_deletes" => Shape::Bool,
        "tags" | "unique_key" | "partition_by" | "cluster_by" | "check_cols" => Shape::TextOrList,
        "lookback" | "target_file_size" | "limit" => Shape::Integer,
        _ => return None,
    })
}

/// Check one config value's type; the message names the key and what it must be.
pub fn check_value(key: &str, value: &Json) -> std::result::Result<(), String> {
    let Some(shape) = shape_of(key) else {
        return Ok(());
    };
    let ok = match (shape, value) {
        (_, Json::Null) => true,
        (Shape::Text, Json::String(_)) => true,
        (Shape::Bool, Json::Bool(_)) => true,
        (Shape::Bool, Json::String(s)) => matches!(s.to_lowercase().as_str(), "true" | "false"),
        (Shape::TextOrList, Json::String(_)) => true,
        (Shape::TextOrList, Json::Array(items)) => items.iter().all(Json::is_string),
        (Shape::Integer, Json::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let wanted = match shape {
        Shape::Text => "a string",
        Shape::Bool => "true or false",
        Shape::TextOrList => "a string or a list of strings",
        Shape::Integer => "a whole number",
    };
    Err(format!("`{key}` must be {wanted}, not {value}"))
}

/// Check a project file: unknown top-level keys warn (with the closest key), and the config
/// trees' values are checked, with the file and line of each problem.
pub fn check_project_file(
    file: &Path,
    text: &str,
    doc: &yaml_serde::Mapping,
) -> Result<std::collections::BTreeSet<String>> {
    for key in doc.keys().filter_map(yaml_serde::Value::as_str) {
        if !PROJECT_KEYS.contains(&key) {
            let line = yaml_line(text, &[key])
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            tracing::warn!(
                "{}{line}: `{key}` is not a project setting and is ignored{}",
                file.display(),
                did_you_mean(key, PROJECT_KEYS.iter().copied())
            );
        }
    }
    let mut unknown = std::collections::BTreeSet::new();
    for tree in TREES {
        if let Some(value) = doc.get(tree) {
            let mut path = vec![tree.to_string()];
            check_tree(file, text, value, &mut path, &mut unknown)?;
        }
    }
    Ok(unknown)
}

fn check_tree(
    file: &Path,
    text: &str,
    level: &yaml_serde::Value,
    path: &mut Vec<String>,
    unknown: &mut std::collections::BTreeSet<String>,
) -> Result<()> {
    let yaml_serde::Value::Mapping(m) = level else {
        return Ok(());
    };
    for (k, v) in m {
        let Some(key) = k.as_str() else {
            continue;
        };
        path.push(key.to_string());
        let config = key.strip_prefix('+').map(|k| k.replace('-', "_"));
        let plain_config = || {
            let name = key.replace('-', "_");
            (KNOWN_CONFIGS.contains(&name.as_str()) && !v.is_mapping()).then_some(name)
        };
        match config.or_else(plain_config) {
            Some(name) => {
                let at = || {
                    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                    match yaml_line(text, &refs) {
                        Some(line) => Location::line(file, line),
                        None => Location::file(file),
                    }
                };
                if let Err(msg) = check_value(&name, &crate::config::yaml_to_json(v)) {
                    return Err(Error::at(at(), format!("{} ({msg})", path.join(".")))
                        .with_hint("fix the value's type in the project file"));
                }
                if !KNOWN_CONFIGS.contains(&name.as_str()) && unknown.insert(name.clone()) {
                    let line = at().line.map(|l| format!(":{l}")).unwrap_or_default();
                    tracing::warn!(
                        "{}{line}: config `{key}` is not a config Strata knows and is ignored{}",
                        file.display(),
                        did_you_mean(&name, KNOWN_CONFIGS.iter().copied())
                    );
                }
            }
            None => check_tree(file, text, v, path, unknown)?,
        }
        path.pop();
    }
    Ok(())
}

/// The line (1-based) of `key=` in a model's SQL (an argument of its `config()` call).
pub fn config_call_line(sql: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    sql.lines()
        .position(|line| {
            line.match_indices(key).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + key.len()..].trim_start();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && after.starts_with('=')
                    && !after.starts_with("==")
            })
        })
        .map(|i| i + 1)
}

/// The line (1-based) of the key at `path` in a block-style YAML document, found by
/// indentation; `None` for flow style or a key not written out.
pub fn yaml_line(text: &str, path: &[&str]) -> Option<usize> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']).to_string();
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nested_keys() {
        let text = "name: x\nmodels:\n  x:\n    # staging\n    staging:\n      +materialized: view\n    +tags: [a]\n";
        assert_eq!(
            yaml_line(text, &["models", "x", "staging", "+materialized"]),
            Some(6)
        );
        assert_eq!(yaml_line(text, &["models", "x", "+tags"]), Some(7));
        assert_eq!(yaml_line(text, &["name"]), Some(1));
        assert_eq!(yaml_line(text, &["models", "y"]), None);
    }

    #[test]
    fn value_types() {
        assert!(check_value("materialized", &serde_json::json!(["table"])).is_err());
        assert!(check_value("enabled", &serde_json::json!("nah")).is_err());
        assert!(check_value("enabled", &serde_json::json!("false")).is_ok());
        assert!(check_value("tags", &serde_json::json!(5)).is_err());
        assert!(check_value("tags", &serde_json::json!(["a", "b"])).is_ok());
        assert!(check_value("materialized", &serde_json::json!(5)).is_err());
        assert!(check_value("whatever", &serde_json::json!(5)).is_ok());
    }
}

/// The dbt version whose projects Strata runs (the dbt-core its compatibility checks compare
/// with).
pub const DBT_COMPATIBLE: (u64, u64, u64) = (1, 11, 0);

/// `require-dbt-version` (`">=1.3.0"`, `[">=1.7.0", "<2.0.0"]`, `"1.5.x"`): a warning naming
/// the project when the dbt version Strata follows is outside it. dbt refuses to run then;
/// Strata goes on, since it is not that dbt, and says so.
pub fn check_dbt_version(project: &str, file: &Path, required: &yaml_serde::Value) {
    let constraints: Vec<String> = match required {
        yaml_serde::Value::String(s) => vec![s.clone()],
        yaml_serde::Value::Sequence(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            tracing::warn!(
                "{}: `require-dbt-version` must be a version range or a list of them",
                file.display()
            );
            return;
        }
    };
    for c in &constraints {
        match satisfies(DBT_COMPATIBLE, c) {
            Some(true) => {}
            Some(false) => {
                let (a, b, p) = DBT_COMPATIBLE;
                tracing::warn!(
                    "{}: project `{project}` requires dbt {} and Strata follows dbt {a}.{b}.{p}; it runs anyway, but may use what Strata lacks",
                    file.display(),
                    constraints.join(", ")
                );
                return;
            }
            None => {
                tracing::warn!(
                    "{}: cannot read `require-dbt-version` `{c}` (write it as \">=1.7.0\" or [\">=1.7.0\", \"<2.0.0\"])",
                    file.display()
                );
                return;
            }
        }
    }
}

/// Whether `version` meets one constraint: an operator (`>=`, `>`, `<=`, `<`, `==`, `=`,
/// none) and a version whose missing or `x` parts match anything.
fn satisfies(version: (u64, u64, u64), constraint: &str) -> Option<bool> {
    let c = constraint.trim();
    let (op, rest) = [">=", "<=", "==", ">", "<", "="]
        .iter()
        .find_map(|op| c.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("=", c));
    let parts: Vec<&str> = rest.trim().trim_start_matches('v').split('.').collect();
    let mut bound = [0u64; 3];
    let mut exact = 0;
    for (i, p) in parts.iter().take(3).enumerate() {
        if *p == "x" || *p == "*" {
            break;
        }
        // Pre-release suffixes (`1.8.0b1`) count as the version they precede.
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        bound[i] = digits.parse().ok()?;
        exact = i + 1;
    }
    let v = [version.0, version.1, version.2];
    let cmp = v[..exact].cmp(&bound[..exact]);
    use std::cmp::Ordering::*;
    Some(match op {
        ">=" => cmp != Less,
        ">" => cmp == Greater,
        "<=" => cmp != Greater,
        "<" => cmp == Less,
        _ => cmp == Equal,
    })
}

#[cfg(test)]
mod version_tests {
    use super::satisfies;

    #[test]
    fn dbt_version_ranges() {
        let v = (1, 11, 0);
        assert_eq!(satisfies(v, ">=1.3.0"), Some(true));
        assert_eq!(satisfies(v, "<2.0.0"), Some(true));
        assert_eq!(satisfies(v, ">=1.12.0"), Some(false));
        assert_eq!(satisfies(v, "1.11.x"), Some(true));
        assert_eq!(satisfies(v, "1.10.x"), Some(false));
        assert_eq!(satisfies(v, "<1.11"), Some(false));
        assert_eq!(satisfies(v, ">=1.8.0b1"), Some(true));
        assert_eq!(satisfies(v, "soon"), None);
    }
}

/// Properties Strata reads and acts on, per place; anything else in a properties file is named
/// once, as a warning, so nothing is skipped silently.
const ACTED_FILE_KEYS: &[&str] = &[
    "version",
    "models",
    "sources",
    "seeds",
    "snapshots",
    "unit_tests",
    "exposures",
];
const ACTED_NODE_KEYS: &[&str] = &[
    "name",
    "description",
    "config",
    "columns",
    "data_tests",
    "tests",
    "meta",
    "docs",
    "tags",
    "relation",
];
const ACTED_COLUMN_KEYS: &[&str] = &[
    "name",
    "description",
    "data_type",
    "meta",
    "tags",
    "data_tests",
    "tests",
];

/// Warn once per key of `file` for what Strata does not act on: sections (`exposures:`,
/// `metrics:`, `semantic_models:`, ...), model properties (`versions`, `access`, `group`,
/// `constraints`, ...) and column properties.
pub fn warn_unused_properties(file: &Path, doc: &crate::properties::PropertiesFile) {
    let mut warned = std::collections::BTreeSet::new();
    let mut warn = |what: String| {
        if warned.insert(what.clone()) {
            tracing::warn!(
                "{}: {what} is not supported yet and is ignored",
                file.display()
            );
        }
    };
    for key in doc.other.keys() {
        if !ACTED_FILE_KEYS.contains(&key.as_str()) {
            warn(format!("`{key}:`"));
        }
    }
    let entries = doc.models.iter().chain(&doc.seeds).chain(&doc.snapshots);
    for entry in entries {
        for key in entry.other.keys() {
            if !ACTED_NODE_KEYS.contains(&key.as_str()) {
                warn(format!("the property `{key}` (on `{}`)", entry.name));
            }
        }
        for column in &entry.columns {
            for key in column.other.keys() {
                if !ACTED_COLUMN_KEYS.contains(&key.as_str()) {
                    warn(format!(
                        "the column property `{key}` (on `{}.{}`)",
                        entry.name, column.name
                    ));
                }
            }
        }
    }
}
