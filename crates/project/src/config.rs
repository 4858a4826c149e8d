//! `strata.yml` / `dbt_project.yml` and the configuration of nodes.
//!
//! A node's configuration is layered, lowest precedence first: the project file's `models:`
//! tree (outer folders, then inner ones), the node's entry in a properties YAML file, and the
//! node's own `{{ config(...) }}` call. `tags` accumulate across layers; everything else is
//! replaced by the higher layer.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::error::{Error, Result, read_to_string, yaml_error};

/// File names a project file may have, in the order they are looked for.
pub const PROJECT_FILES: [&str; 2] = ["strata.yml", "dbt_project.yml"];

/// A project file (`strata.yml` or `dbt_project.yml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProjectConfig {
    /// The project's name; the package name of its nodes.
    pub name: String,
    /// The project's version, free text.
    #[serde(default)]
    pub version: Option<yaml_serde::Value>,
    /// The profile in `profiles.yml` to use; defaults to the project name.
    #[serde(default)]
    pub profile: Option<String>,
    /// Folders holding models.
    #[serde(default = "default_model_paths", alias = "source-paths")]
    pub model_paths: Vec<String>,
    /// Folders holding macros.
    #[serde(default = "default_macro_paths")]
    pub macro_paths: Vec<String>,
    /// Folders holding seeds.
    #[serde(default = "default_seed_paths", alias = "data-paths")]
    pub seed_paths: Vec<String>,
    /// Folders holding singular tests.
    #[serde(default = "default_test_paths")]
    pub test_paths: Vec<String>,
    /// Folders holding snapshots.
    #[serde(default = "default_snapshot_paths")]
    pub snapshot_paths: Vec<String>,
    /// Folders holding analyses.
    #[serde(default = "default_analysis_paths")]
    pub analysis_paths: Vec<String>,
    /// Folder for compiled SQL and artifacts.
    #[serde(default = "default_target_path")]
    pub target_path: String,
    /// Folders `strata clean` removes.
    #[serde(default)]
    pub clean_targets: Option<Vec<String>>,
    /// Project variables, global or scoped under a package name.
    #[serde(default)]
    pub vars: IndexMap<String, yaml_serde::Value>,
    /// The configuration tree for models.
    #[serde(default)]
    pub models: Option<yaml_serde::Value>,
    /// The configuration tree for seeds.
    #[serde(default)]
    pub seeds: Option<yaml_serde::Value>,
    /// The configuration tree for sources.
    #[serde(default)]
    pub sources: Option<yaml_serde::Value>,
    /// Settings accepted for compatibility and otherwise ignored.
    #[serde(flatten)]
    pub other: IndexMap<String, yaml_serde::Value>,
    /// Config keys of the file's trees that Strata does not know (already warned about).
    #[serde(skip)]
    pub unknown_configs: std::collections::BTreeSet<String>,
}

fn default_model_paths() -> Vec<String> {
    vec!["models".into()]
}
fn default_macro_paths() -> Vec<String> {
    vec!["macros".into()]
}
fn default_seed_paths() -> Vec<String> {
    vec!["seeds".into()]
}
fn default_test_paths() -> Vec<String> {
    vec!["tests".into()]
}
fn default_snapshot_paths() -> Vec<String> {
    vec!["snapshots".into()]
}
fn default_analysis_paths() -> Vec<String> {
    vec!["analyses".into()]
}
fn default_target_path() -> String {
    "target".into()
}

impl ProjectConfig {
    /// Where `deps` installs packages (`packages-install-path`, default `dbt_packages`).
    pub fn packages_install_path(&self) -> String {
        self.other
            .get("packages-install-path")
            .and_then(|v| v.as_str())
            .unwrap_or("dbt_packages")
            .to_string()
    }

    /// Find and read the project file in `dir`.
    pub fn load(dir: &Path) -> Result<(Self, PathBuf)> {
        let Some(path) = PROJECT_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        else {
            return Err(Error::user(format!(
                "no project file in {}: expected `strata.yml` or `dbt_project.yml`",
                dir.display()
            ))
            .with_hint(
                "run the command inside a project, pass `--project-dir DIR`, or create one with `strata init`",
            ));
        };
        let text = read_to_string(&path)?;
        let file_name = PathBuf::from(path.file_name().unwrap_or_default());
        if let Some(other) = PROJECT_FILES
            .iter()
            .filter(|f| **f != file_name.as_os_str())
            .find(|f| dir.join(f).is_file())
        {
            tracing::warn!(
                "both {} and {other} are here: using {} (rename or remove the other)",
                file_name.display(),
                file_name.display()
            );
        }
        let mut config: ProjectConfig =
            yaml_serde::from_str(&text).map_err(|e| yaml_error(file_name.clone(), &e))?;
        if let Ok(yaml_serde::Value::Mapping(doc)) = yaml_serde::from_str(&text) {
            config.unknown_configs = crate::validate::check_project_file(&file_name, &text, &doc)?;
        }
        if config.name.trim().is_empty() {
            return Err(Error::at(
                strata_common::Location::file(file_name),
                "the project `name` is empty",
            ));
        }
        if let Some(required) = config.other.get("require-dbt-version") {
            crate::validate::check_dbt_version(&config.name, &path, required);
        }
        Ok((config, path))
    }

    /// The profile name: `profile:` or the project name.
    pub fn profile_name(&self) -> &str {
        self.profile.as_deref().unwrap_or(&self.name)
    }
}

/// Configuration keys Strata acts on (or records for the manifest and catalog, as `meta`),
/// as written with `_`. Any other key is accepted, with a warning that it has no effect. In
/// a configuration tree, these names are configs even without a `+` prefix.
pub const KNOWN_CONFIGS: &[&str] = &[
    // every node
    "materialized",
    "schema",
    "database",
    "alias",
    "tags",
    "enabled",
    "meta",
    "docs",
    "description",
    "group",
    "access",
    "grants",
    "pre_hook",
    "post_hook",
    "full_refresh",
    "quoting",
    "persist_docs",
    // tables and incremental models
    "contract",
    "partition_by",
    "cluster_by",
    "target_file_size",
    "unique_key",
    "incremental_strategy",
    "on_schema_change",
    "merge_update_columns",
    "merge_exclude_columns",
    "incremental_predicates",
    "quarantine",
    // microbatch
    "event_time",
    "batch_size",
    "lookback",
    "begin",
    "concurrent_batches",
    // snapshots
    "strategy",
    "updated_at",
    "check_cols",
    "hard_deletes",
    "invalidate_hard_deletes",
    "dbt_valid_to_current",
    "target_schema",
    "target_database",
    // seeds
    "column_types",
    "delimiter",
    "quote_columns",
    // data tests
    "severity",
    "warn_if",
    "error_if",
    "where",
    "limit",
    "store_failures",
    "store_failures_as",
    "fail_calc",
];

/// The resolved configuration of one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeConfig {
    values: IndexMap<String, Json>,
}

impl NodeConfig {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one key, merging `tags` (which accumulate) and `meta` (merged by key).
    pub fn set(&mut self, key: &str, value: Json) {
        let key = key.trim_start_matches('+').replace('-', "_");
        match key.as_str() {
            "tags" => {
                let mut tags = self.tags();
                for t in tags_of(&value) {
                    if !tags.contains(&t) {
                        tags.push(t);
                    }
                }
                self.values.insert(
                    key,
                    Json::Array(tags.into_iter().map(Json::String).collect()),
                );
            }
            "meta" => {
                let mut merged = match self.values.get("meta") {
                    Some(Json::Object(m)) => m.clone(),
                    _ => serde_json::Map::new(),
                };
                if let Json::Object(m) = value {
                    merged.extend(m);
                }
                self.values.insert(key, Json::Object(merged));
            }
            "pre_hook" | "post_hook" => {
                let hooks = crate::hooks::accumulate(self.values.get(&key), value);
                self.values.insert(key, hooks);
            }
            _ => {
                self.values.insert(key, value);
            }
        }
    }

    /// Apply every key of `other` over this configuration.
    pub fn merge(&mut self, other: &NodeConfig) {
        for (k, v) in &other.values {
            self.set(k, v.clone());
        }
    }

    /// One raw value.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.values.get(key)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Json::as_str)
    }

    /// All values, in the order they were first set.
    pub fn values(&self) -> &IndexMap<String, Json> {
        &self.values
    }

    /// `materialized`, default `view`.
    pub fn materialized(&self) -> &str {
        self.get_str("materialized").unwrap_or("view")
    }

    /// `enabled`, default true.
    pub fn enabled(&self) -> bool {
        match self.values.get("enabled") {
            Some(Json::Bool(b)) => *b,
            Some(Json::String(s)) => !matches!(s.to_lowercase().as_str(), "false" | "no" | "0"),
            _ => true,
        }
    }

    /// The custom schema (`schema`), when set.
    pub fn schema(&self) -> Option<&str> {
        self.get_str("schema").filter(|s| !s.is_empty())
    }

    /// `alias`, when set.
    pub fn alias(&self) -> Option<&str> {
        self.get_str("alias").filter(|s| !s.is_empty())
    }

    /// `database`, when set.
    pub fn database(&self) -> Option<&str> {
        self.get_str("database").filter(|s| !s.is_empty())
    }

    /// `tags`.
    pub fn tags(&self) -> Vec<String> {
        self.values.get("tags").map(tags_of).unwrap_or_default()
    }

    /// A config whose value is one of a fixed set of words (`strata_common::words`), parsed;
    /// `None` when unset.
    pub fn word<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> std::result::Result<Option<T>, String> {
        match self.values.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => parse(s).map(Some),
            Some(other) => Err(format!("`{key}` must be a word, not {other}")),
        }
    }

    /// The hooks of `key` (`pre_hook` or `post_hook`), in the order they run.
    pub fn hooks(&self, key: &str) -> std::result::Result<Vec<crate::hooks::Hook>, String> {
        match self.values.get(key) {
            Some(v) => crate::hooks::parse_hooks(v, &key.replace('_', "-")),
            None => Ok(Vec::new()),
        }
    }

    /// `grants`: privilege → the roles it is granted to, as (privilege, grantee) pairs in
    /// order. `{select: [reporter, bi]}`; a single role may be a string.
    pub fn grants(&self) -> std::result::Result<Vec<(String, String)>, String> {
        let bad = || {
            "`grants` must map privileges to roles, e.g. grants: {select: [reporter]}".to_string()
        };
        match self.values.get("grants") {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Object(map)) => {
                let mut out = Vec::new();
                for (privilege, roles) in map {
                    let roles: Vec<&Json> = match roles {
                        Json::Array(a) => a.iter().collect(),
                        one => vec![one],
                    };
                    for r in roles {
                        let role = r.as_str().ok_or_else(bad)?;
                        out.push((
                            privilege.trim_start_matches('+').to_lowercase(),
                            role.to_string(),
                        ));
                    }
                }
                Ok(out)
            }
            Some(_) => Err(bad()),
        }
    }

    /// The configuration as a JSON object (for the manifest and for Jinja's `config.get`).
    pub fn to_json(&self) -> Json {
        Json::Object(self.values.clone().into_iter().collect())
    }
}

fn tags_of(value: &Json) -> Vec<String> {
    match value {
        Json::String(s) => vec![s.clone()],
        Json::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Convert YAML to JSON (keys stringified).
pub fn yaml_to_json(value: &yaml_serde::Value) -> Json {
    match value {
        yaml_serde::Value::Null => Json::Null,
        yaml_serde::Value::Bool(b) => Json::Bool(*b),
        yaml_serde::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number)
                    .unwrap_or(Json::Null)
            }
        }
        yaml_serde::Value::String(s) => Json::String(s.clone()),
        yaml_serde::Value::Sequence(seq) => Json::Array(seq.iter().map(yaml_to_json).collect()),
        yaml_serde::Value::Mapping(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect(),
        ),
        yaml_serde::Value::Tagged(t) => yaml_to_json(&t.value),
    }
}

fn yaml_key(k: &yaml_serde::Value) -> String {
    match k {
        yaml_serde::Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The configuration a `models:`-style tree gives a node at `fqn_path` (the project name
/// followed by the node's folders, e.g. `["shop", "staging"]`, and finally its name).
pub fn config_from_tree(tree: Option<&yaml_serde::Value>, fqn: &[String]) -> NodeConfig {
    let mut config = NodeConfig::new();
    let Some(mut level) = tree else {
        return config;
    };
    apply_level(&mut config, level);
    for part in fqn {
        let Some(yaml_serde::Value::Mapping(m)) = Some(level) else {
            break;
        };
        match m.get(yaml_serde::Value::String(part.clone())) {
            Some(next) if next.is_mapping() => {
                apply_level(&mut config, next);
                level = next;
            }
            _ => break,
        }
    }
    config
}

fn apply_level(config: &mut NodeConfig, level: &yaml_serde::Value) {
    let yaml_serde::Value::Mapping(m) = level else {
        return;
    };
    for (k, v) in m {
        let key = yaml_key(k);
        if let Some(name) = key.strip_prefix('+') {
            config.set(name, yaml_to_json(v));
        } else if (KNOWN_CONFIGS.contains(&key.replace('-', "_").as_str()) && !v.is_mapping())
            || matches!(key.as_str(), "meta" | "docs" | "contract")
        {
            // Plain keys are configs when they name one (and are not a folder's mapping).
            config.set(&key, yaml_to_json(v));
        }
    }
}

/// An error in the file `rel` (whose text is `text`), at the first line holding `needle`, or
/// at the file when none does (or `needle` is empty).
pub fn error_at_needle(
    rel: &std::path::Path,
    text: &str,
    needle: &str,
    message: impl Into<String>,
) -> crate::Error {
    let line = text
        .lines()
        .position(|l| !needle.is_empty() && l.contains(needle))
        .map(|i| i + 1);
    let at = match line {
        Some(l) => strata_common::Location::line(rel, l),
        None => strata_common::Location::file(rel),
    };
    crate::Error::at(at, message)
}

/// The YAML files of `root/<folder>/`, in name order: each as (its path from `root`, its
/// text, its content as JSON). No folder, no files.
pub fn yaml_files(
    root: &std::path::Path,
    folder: &str,
) -> crate::Result<Vec<(std::path::PathBuf, String, serde_json::Value)>> {
    use crate::Error;
    use strata_common::Location;
    let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(root.join(folder)) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::at(Location::file(&rel), format!("cannot read it: {e}")))?;
            let yaml: yaml_serde::Value = yaml_serde::from_str(&text)
                .map_err(|e| Error::at(Location::file(&rel), format!("not valid YAML: {e}")))?;
            let doc = yaml_to_json(&yaml);
            Ok((rel, text, doc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> yaml_serde::Value {
        yaml_serde::from_str(yaml).expect("test yaml")
    }

    #[test]
    fn deeper_folders_override_and_tags_accumulate() {
        let t = tree(
            r"
+materialized: view
+tags: [all]
shop:
  staging:
    +schema: silver
    +tags: stg
  marts:
    +materialized: table
    finance:
      +enabled: false
",
        );
        let fqn = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let stg = config_from_tree(Some(&t), &fqn(&["shop", "staging", "stg_a"]));
        assert_eq!(stg.materialized(), "view");
        assert_eq!(stg.schema(), Some("silver"));
        assert_eq!(stg.tags(), vec!["all", "stg"]);
        let fin = config_from_tree(Some(&t), &fqn(&["shop", "marts", "finance", "rev"]));
        assert_eq!(fin.materialized(), "table");
        assert!(!fin.enabled());
        let other = config_from_tree(Some(&t), &fqn(&["other_pkg", "x"]));
        assert_eq!(other.tags(), vec!["all"]);
    }

    #[test]
    fn plain_keys_that_are_configs_apply() {
        let t = tree("shop:\n  materialized: table\n  staging:\n    materialized: view\n");
        let c = config_from_tree(Some(&t), &["shop".into(), "staging".into(), "m".into()]);
        assert_eq!(c.materialized(), "view");
    }
}
