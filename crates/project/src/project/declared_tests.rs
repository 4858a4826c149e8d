//! Data tests and unit tests: those declared in properties files (on nodes, columns and
//! sources), singular tests, and `unit_tests:` entries, attached to what they test.

use std::collections::HashMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use strata_common::Location;

use crate::config::{NodeConfig, config_from_tree};
use crate::data_tests::{DataTest, TestKind, TestTarget, parse_test_list};
use crate::error::{Error, Result};
use crate::jinja::{JinjaEnv, Mode, NodeInfo, describe_error};
use crate::node::{Model, Seed, Source};
use crate::properties::{ColumnEntry, SourceEntry};

use super::Loader;

/// What the test loader reads.
pub(super) struct TestInputs<'a> {
    pub(super) model_patches: &'a HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    pub(super) seed_patches: &'a HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    pub(super) source_entries: &'a [(PathBuf, SourceEntry)],
    pub(super) singular: Vec<(PathBuf, String, String)>,
    pub(super) unit_tests: &'a [(PathBuf, yaml_serde::Value)],
}

/// The tests declared on a node (`tests:` of its entry) and on each of its columns.
fn tests_of(
    target: &TestTarget,
    other: &IndexMap<String, yaml_serde::Value>,
    columns: &[ColumnEntry],
    package: &str,
    file: &PathBuf,
) -> Result<Vec<DataTest>> {
    let mut out = parse_test_list(
        crate::data_tests::tests_key(other),
        target,
        None,
        package,
        file,
    )?;
    for c in columns {
        out.extend(parse_test_list(
            crate::data_tests::tests_key(&c.other),
            target,
            Some(&c.name),
            package,
            file,
        )?);
    }
    Ok(out)
}

/// Render config values written with Jinja (`enabled: "{{ target.type != 'spark' }}"`), as
/// dbt renders a test's configs: the result is read as Python would read it back, so `True`
/// and `False` are booleans and digits a number.
fn render_config_values(
    jinja: &JinjaEnv,
    config: &mut NodeConfig,
) -> std::result::Result<(), minijinja::Error> {
    let templated: Vec<(String, String)> = config
        .values()
        .iter()
        .filter_map(|(k, v)| {
            let s = v.as_str()?;
            (s.contains("{{") || s.contains("{%")).then(|| (k.clone(), s.to_string()))
        })
        .collect();
    for (key, source) in templated {
        let rendered = jinja.render_str(&source)?;
        let t = rendered.trim();
        let value = match t {
            "True" | "true" => serde_json::Value::Bool(true),
            "False" | "false" => serde_json::Value::Bool(false),
            _ => match t.parse::<i64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => serde_json::Value::String(rendered),
            },
        };
        config.set(&key, value);
    }
    Ok(())
}

impl Loader {
    /// A wrong argument of an anomaly test, at its line in the properties file.
    fn anomaly_error(&self, t: &DataTest, message: String) -> Error {
        let (node, test_name) = match &t.kind {
            TestKind::Generic {
                target, test_name, ..
            } => (
                match target {
                    TestTarget::Ref(n) | TestTarget::Source(_, n) => n.as_str(),
                },
                test_name.as_str(),
            ),
            _ => ("", ""),
        };
        let line = std::fs::read_to_string(self.root.join(&t.original_file_path))
            .ok()
            .and_then(|text| crate::anomaly::test_line(&text, node, test_name));
        let location = match line {
            Some(l) => Location::line(&t.original_file_path, l),
            None => Location::file(&t.original_file_path),
        };
        Error::at(location, message)
            .with_node(format!("test `{}`", t.name))
            .with_hint("anomaly tests take Elementary's arguments: see \"Anomaly tests\" in docs/reference.md")
    }

    pub(super) fn tests(
        &self,
        jinja: &JinjaEnv,
        inputs: TestInputs<'_>,
        models: &IndexMap<String, Model>,
        seeds: &IndexMap<String, Seed>,
        sources: &IndexMap<String, Source>,
    ) -> Result<IndexMap<String, DataTest>> {
        let package = self.config.name.as_str();
        let mut found: Vec<DataTest> = Vec::new();
        // A seed described under `models:` is in both maps: its tests are read once.
        let entries = inputs
            .model_patches
            .iter()
            .filter(|(name, _)| !inputs.seed_patches.contains_key(*name))
            .map(|(_, entry)| entry)
            .chain(inputs.seed_patches.values());
        for (file, entry) in entries {
            let target = TestTarget::Ref(entry.name.clone());
            found.extend(tests_of(
                &target,
                &entry.other,
                &entry.columns,
                package,
                file,
            )?);
        }
        for (file, s) in inputs.source_entries {
            for t in &s.tables {
                let target = TestTarget::Source(s.name.clone(), t.name.clone());
                found.extend(tests_of(&target, &t.other, &t.columns, package, file)?);
            }
        }
        for (file, list) in inputs.unit_tests {
            found.extend(crate::unit_tests::parse_unit_tests(list, package, file)?);
        }
        for (rel, name, raw_sql) in inputs.singular {
            found.push(DataTest {
                unique_id: format!("test.{package}.{name}"),
                name: name.clone(),
                package: package.to_string(),
                original_file_path: rel,
                fqn: vec![package.to_string(), name],
                kind: TestKind::Singular { raw_sql },
                config: NodeConfig::new(),
                depends_on: Vec::new(),
                attached_node: None,
            });
        }

        let tree = self
            .config
            .other
            .get("data_tests")
            .or_else(|| self.config.other.get("tests"));
        let by_name: HashMap<&str, &str> = models
            .values()
            .filter(|m| m.refable())
            .map(|m| (m.name.as_str(), m.unique_id.as_str()))
            .chain(
                seeds
                    .values()
                    .map(|s| (s.name.as_str(), s.unique_id.as_str())),
            )
            .collect();
        let mut out: IndexMap<String, DataTest> = IndexMap::new();
        for mut t in found {
            // A test of a disabled (or missing) model is dropped, as dbt does.
            if let TestKind::Generic {
                target: TestTarget::Ref(name),
                ..
            } = &t.kind
                && !by_name.contains_key(name.as_str())
            {
                continue;
            }
            let mut config = config_from_tree(tree, &t.fqn);
            config.merge(&t.config);
            t.config = config;
            render_config_values(jinja, &mut t.config).map_err(|e| {
                Error::at(Location::file(&t.original_file_path), describe_error(&e))
                    .with_node(format!("test `{}`", t.name))
            })?;
            if !t.config.enabled() {
                continue;
            }
            if let Some(Err(message)) = crate::anomaly::spec_of(&t) {
                return Err(self.anomaly_error(&t, message));
            }
            if let TestKind::Unit(unit) = &t.kind {
                // A unit test reads what its model reads; it is attached to the model.
                let Some(model) = models.values().find(|m| m.name == unit.model) else {
                    tracing::warn!(
                        "{}: unit test `{}` tests model `{}`, which does not exist or is disabled; the test is ignored",
                        t.original_file_path.display(),
                        t.name,
                        unit.model
                    );
                    continue;
                };
                t.attached_node = Some(model.unique_id.clone());
                t.depends_on = model
                    .refs
                    .iter()
                    .filter_map(|r| by_name.get(r.name.as_str()).map(|id| id.to_string()))
                    .chain(
                        model
                            .sources
                            .iter()
                            .map(|(s, tb)| format!("source.{package}.{s}.{tb}"))
                            .filter(|id| sources.contains_key(id)),
                    )
                    .collect();
                if out.contains_key(&t.unique_id) {
                    return Err(Error::at(
                        Location::file(&t.original_file_path),
                        format!(
                            "model `{}` has two unit tests named `{}`",
                            unit.model, t.name
                        ),
                    ));
                }
                out.insert(t.unique_id.clone(), t);
                continue;
            }
            let info = NodeInfo {
                unique_id: t.unique_id.clone(),
                name: t.name.clone(),
                package: package.to_string(),
                resource_type: "test".into(),
                fqn: t.fqn.clone(),
                original_file_path: t.original_file_path.clone(),
                config: t.config.clone(),
                relation: None,
            };
            let rendered = match &t.kind {
                TestKind::Generic { .. } => {
                    let call = t.jinja_call().unwrap_or_default();
                    jinja.render_source(
                        &t.original_file_path.to_string_lossy(),
                        &call,
                        Mode::Parse,
                        info,
                        None,
                    )
                }
                TestKind::Singular { .. } | TestKind::Unit(_) => {
                    jinja.render(&t.original_file_path, Mode::Parse, info, None)
                }
            };
            let (_, captured) = rendered.map_err(|e| {
                Error::at(
                    Location {
                        file: t.original_file_path.clone(),
                        line: if matches!(t.kind, TestKind::Singular { .. }) { e.line() } else { None },
                        column: None,
                    },
                    describe_error(&e),
                )
                .with_node(format!("test `{}`", t.name))
                .with_hint("generic tests are macros named test_<name>: define them in macros/ or tests/generic/ with {% test name(model, column_name) %}")
            })?;
            t.config.merge(&captured.config);
            // `{{ config(enabled=false) }}` in the test's own SQL disables it, as in dbt.
            if !t.config.enabled() {
                continue;
            }
            let mut deps = Vec::new();
            for r in &captured.refs {
                let id = by_name.get(r.name.as_str()).ok_or_else(|| {
                    Error::at(
                        Location::file(&t.original_file_path),
                        format!(
                            "ref('{}') does not exist{}",
                            r.name,
                            strata_common::did_you_mean(&r.name, by_name.keys().copied())
                        ),
                    )
                    .with_node(format!("test `{}`", t.name))
                })?;
                deps.push(id.to_string());
            }
            for (s, tb) in &captured.sources {
                let id = format!("source.{package}.{s}.{tb}");
                if !sources.contains_key(&id) {
                    return Err(Error::at(
                        Location::file(&t.original_file_path),
                        format!("source('{s}', '{tb}') is not declared"),
                    )
                    .with_node(format!("test `{}`", t.name)));
                }
                deps.push(id);
            }
            t.attached_node = match &t.kind {
                TestKind::Generic {
                    target: TestTarget::Ref(name),
                    ..
                } => by_name.get(name.as_str()).map(|s| s.to_string()),
                TestKind::Generic {
                    target: TestTarget::Source(s, tb),
                    ..
                } => Some(format!("source.{package}.{s}.{tb}")),
                TestKind::Singular { .. } | TestKind::Unit(_) => None,
            };
            t.depends_on = deps;
            if let Some(first) = out.get(&t.unique_id) {
                return Err(Error::at(
                    Location::file(&t.original_file_path),
                    format!(
                        "two tests are named `{}` (the other is in {})",
                        t.name,
                        first.original_file_path.display()
                    ),
                )
                .with_hint("give one of them a `name:`"));
            }
            out.insert(t.unique_id.clone(), t);
        }
        Ok(out)
    }
}
