//! dbt's artifacts: `manifest.json` (schema v12), written where dbt writes it, so tools that
//! read dbt artifacts (docs sites, lineage tools, state comparison) work on Strata projects.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::project::Project;

/// The manifest schema this writes.
pub const MANIFEST_SCHEMA: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";

/// The version string written to artifacts.
pub const STRATA_VERSION: &str = concat!("strata-", env!("CARGO_PKG_VERSION"));

fn columns_json(columns: &indexmap::IndexMap<String, crate::node::Column>) -> Value {
    Value::Object(
        columns
            .values()
            .map(|c| {
                (
                    c.name.clone(),
                    json!({
                        "name": c.name,
                        "description": c.description,
                        "meta": c.meta,
                        "data_type": c.data_type,
                        "constraints": [],
                        "quote": null,
                        "tags": c.tags,
                    }),
                )
            })
            .collect(),
    )
}

/// The manifest of a loaded project, before anything is compiled.
pub fn manifest(project: &Project) -> Value {
    manifest_compiled(project, &HashMap::new())
}

/// The keys every node of `nodes` has, whatever its resource type (dbt's `ParsedNode`).
struct Base<'a> {
    unique_id: &'a str,
    name: &'a str,
    resource_type: &'a str,
    package: &'a str,
    database: &'a str,
    schema: &'a str,
    alias: &'a str,
    path: &'a Path,
    original_file_path: &'a Path,
    fqn: &'a [String],
    checksum: Value,
    config: Value,
    tags: Value,
    description: &'a str,
    columns: Value,
    meta: Value,
    patch_path: Option<&'a Path>,
    relation_name: Value,
    raw_code: &'a str,
}

impl Base<'_> {
    fn json(self, project: &Project) -> Map<String, Value> {
        let package = project.name();
        let Value::Object(map) = json!({
            "database": self.database,
            "schema": self.schema,
            "name": self.name,
            "resource_type": self.resource_type,
            "package_name": self.package,
            "path": self.path.to_string_lossy(),
            "original_file_path": self.original_file_path.to_string_lossy(),
            "unique_id": self.unique_id,
            "fqn": self.fqn,
            "alias": self.alias,
            "checksum": self.checksum,
            "config": self.config,
            "tags": self.tags,
            "description": self.description,
            "columns": self.columns,
            "meta": self.meta,
            "group": null,
            "docs": {"show": true, "node_color": null},
            "patch_path": self.patch_path.map(|p| format!("{package}://{}", p.to_string_lossy())),
            "build_path": null,
            "unrendered_config": {},
            "created_at": created_at(project),
            "relation_name": self.relation_name,
            "raw_code": self.raw_code,
        }) else {
            unreachable!("a JSON object literal")
        };
        map
    }
}

fn created_at(project: &Project) -> f64 {
    project.run_started_at.timestamp_micros() as f64 / 1e6
}

/// The keys of a node dbt compiles (`CompiledNode`: models, snapshots, tests), with its SQL
/// when this invocation compiled it.
fn compiled_keys(
    node: &mut Map<String, Value>,
    project: &Project,
    depends_on: &[&str],
    macros: Value,
    compiled_path: &Path,
    compiled: Option<&String>,
) {
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    for id in depends_on {
        if let Some(n) = project.node(id) {
            refs.push(json!({"name": n.name(), "package": null, "version": null}));
        } else if let Some(s) = project.sources.get(*id) {
            sources.push(json!([s.source_name, s.name]));
        }
    }
    let keys = json!({
        "language": "sql",
        "refs": refs,
        "sources": sources,
        "metrics": [],
        "depends_on": {"macros": macros, "nodes": depends_on},
        "compiled_path": compiled.map(|_| compiled_path.to_string_lossy()),
        "compiled": compiled.is_some(),
        "compiled_code": compiled,
        "extra_ctes_injected": compiled.is_some(),
        "extra_ctes": [],
        "contract": {"enforced": false, "alias_types": true, "checksum": null},
    });
    if let Value::Object(keys) = keys {
        node.extend(keys);
    }
}

/// The manifest of a loaded project, with the SQL of the nodes this invocation compiled
/// (`compiled`: unique id → SQL) as dbt writes it after `compile`, `run` or `build`.
pub fn manifest_compiled(project: &Project, compiled: &HashMap<String, String>) -> Value {
    let package = project.name();
    let compiled_dir = Path::new(&project.config.target_path).join("compiled");
    let mut nodes = Map::new();
    for m in project.models.values() {
        let mut config = m.config.to_json();
        if let Value::Object(c) = &mut config {
            c.entry("materialized").or_insert(json!(m.materialized()));
            c.entry("enabled").or_insert(json!(true));
            c.entry("tags").or_insert(json!(m.config.tags()));
        }
        let mut node = Base {
            unique_id: &m.unique_id,
            name: &m.name,
            resource_type: m.kind.as_str(),
            package: &m.package,
            database: &m.relation.database,
            schema: &m.relation.schema,
            alias: &m.relation.identifier,
            path: &m.path,
            original_file_path: &m.original_file_path,
            fqn: &m.fqn,
            checksum: json!({"name": "sha256", "checksum": m.checksum}),
            config,
            tags: json!(m.config.tags()),
            description: &m.description,
            columns: columns_json(&m.columns),
            meta: m.config.get("meta").cloned().unwrap_or(json!({})),
            patch_path: m.patch_path.as_deref(),
            relation_name: match m.materialized() {
                _ if !m.refable() => Value::Null,
                "ephemeral" => Value::Null,
                _ => json!(m.relation.to_string()),
            },
            raw_code: &m.raw_sql,
        }
        .json(project);
        compiled_keys(
            &mut node,
            project,
            &project.graph.parents(&m.unique_id),
            json!(
                m.macros
                    .iter()
                    .map(|x| format!("macro.{package}.{x}"))
                    .collect::<Vec<_>>()
            ),
            &compiled_dir.join(m.compiled_file()),
            compiled.get(&m.unique_id),
        );
        if m.kind == crate::node::SqlKind::Model {
            node.extend([
                ("access".into(), json!("protected")),
                ("constraints".into(), json!([])),
                ("version".into(), Value::Null),
                ("latest_version".into(), Value::Null),
                ("deprecation_date".into(), Value::Null),
            ]);
        }
        nodes.insert(m.unique_id.clone(), Value::Object(node));
    }
    for s in project.seeds.values() {
        let mut config = s.config.to_json();
        if let Value::Object(c) = &mut config {
            c.entry("materialized").or_insert(json!("seed"));
            c.entry("enabled").or_insert(json!(true));
        }
        let checksum = match s.checksum.starts_with("path:") {
            true => json!({"name": "path", "checksum": s.checksum}),
            false => json!({"name": "sha256", "checksum": s.checksum}),
        };
        let mut node = Base {
            unique_id: &s.unique_id,
            name: &s.name,
            resource_type: "seed",
            package: &s.package,
            database: &s.relation.database,
            schema: &s.relation.schema,
            alias: &s.relation.identifier,
            path: &s.path,
            original_file_path: &s.original_file_path,
            fqn: &s.fqn,
            checksum,
            config,
            tags: json!(s.config.tags()),
            description: &s.description,
            columns: columns_json(&s.columns),
            meta: s.config.get("meta").cloned().unwrap_or(json!({})),
            patch_path: s.patch_path.as_deref(),
            relation_name: json!(s.relation.to_string()),
            raw_code: "",
        }
        .json(project);
        node.insert("root_path".into(), json!(project.root.to_string_lossy()));
        node.insert("depends_on".into(), json!({"macros": []}));
        nodes.insert(s.unique_id.clone(), Value::Object(node));
    }
    let mut unit_tests = Map::new();
    let audit_schema = format!("{}_dbt_test__audit", project.target.schema);
    for t in project.tests.values() {
        let (raw_code, generic) = match &t.kind {
            crate::data_tests::TestKind::Unit(unit) => {
                unit_tests.insert(t.unique_id.clone(), unit_test_json(project, t, unit));
                continue;
            }
            crate::data_tests::TestKind::Singular { raw_sql } => (raw_sql.clone(), None),
            crate::data_tests::TestKind::Generic {
                test_name,
                namespace,
                target,
                column,
                args,
            } => (
                t.jinja_call().unwrap_or_default(),
                Some((test_name, namespace, target, column, args)),
            ),
        };
        let mut config = t.config.to_json();
        if let Value::Object(c) = &mut config {
            c.entry("materialized").or_insert(json!("test"));
            c.entry("severity")
                .or_insert(json!(t.severity().to_uppercase()));
            c.entry("warn_if").or_insert(json!(t.warn_if()));
            c.entry("error_if").or_insert(json!(t.error_if()));
            c.entry("enabled").or_insert(json!(true));
        }
        let path = match generic {
            Some(_) => t
                .original_file_path
                .join(format!("{}.sql", t.relation_name())),
            None => t.original_file_path.clone(),
        };
        let mut node = Base {
            unique_id: &t.unique_id,
            name: &t.name,
            resource_type: "test",
            package: &t.package,
            database: &project.target.database,
            schema: &audit_schema,
            alias: t.relation_name(),
            path: &path,
            original_file_path: &t.original_file_path,
            fqn: &t.fqn,
            checksum: json!({"name": "none", "checksum": ""}),
            config,
            tags: json!(t.config.tags()),
            description: "",
            columns: json!({}),
            meta: t.config.get("meta").cloned().unwrap_or(json!({})),
            patch_path: None,
            relation_name: Value::Null,
            raw_code: &raw_code,
        }
        .json(project);
        let depends_on: Vec<&str> = t.depends_on.iter().map(String::as_str).collect();
        compiled_keys(
            &mut node,
            project,
            &depends_on,
            json!([]),
            &compiled_dir.join(&t.package).join(&path),
            compiled.get(&t.unique_id),
        );
        if let Some((test_name, namespace, target, column, args)) = generic {
            // dbt's kwargs: the test's arguments, the column and the relation as the
            // template it renders.
            let mut kwargs: Map<String, Value> =
                args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if let Some(c) = column {
                kwargs.insert("column_name".into(), json!(c));
            }
            let (relation, file_key) = match target {
                crate::data_tests::TestTarget::Ref(name) => {
                    let key = match project.seeds.values().any(|s| &s.name == name) {
                        true => "seeds",
                        false => "models",
                    };
                    (format!("ref('{name}')"), format!("{key}.{name}"))
                }
                crate::data_tests::TestTarget::Source(s, table) => {
                    (format!("source('{s}', '{table}')"), format!("sources.{s}"))
                }
            };
            kwargs.insert(
                "model".into(),
                json!(format!("{{{{ get_where_subquery({relation}) }}}}")),
            );
            node.extend([
                ("column_name".into(), json!(column)),
                ("file_key_name".into(), json!(file_key)),
                ("attached_node".into(), json!(t.attached_node)),
                (
                    "test_metadata".into(),
                    json!({"name": test_name, "kwargs": kwargs, "namespace": namespace}),
                ),
            ]);
        }
        nodes.insert(t.unique_id.clone(), Value::Object(node));
    }
    let mut sources = Map::new();
    for s in project.sources.values() {
        sources.insert(
            s.unique_id.clone(),
            json!({
                "database": s.relation.database,
                "schema": s.relation.schema,
                "name": s.name,
                "resource_type": "source",
                "package_name": s.package,
                "path": s.original_file_path.to_string_lossy(),
                "original_file_path": s.original_file_path.to_string_lossy(),
                "unique_id": s.unique_id,
                "fqn": s.fqn,
                "source_name": s.source_name,
                "source_description": s.source_description,
                "loader": s.loader,
                "identifier": s.relation.identifier,
                "quoting": {},
                "loaded_at_field": s.config.get("loaded_at_field"),
                "freshness": s.config.get("freshness"),
                "external": s.external_location.as_ref().map(|l| json!({"location": l, "file_format": s.format})),
                "description": s.description,
                "columns": columns_json(&s.columns),
                "meta": s.meta,
                "source_meta": {},
                "tags": s.tags,
                "config": {"enabled": true},
                "patch_path": null,
                "unrendered_config": {},
                "relation_name": s.relation.to_string(),
                "created_at": created_at(project),
            }),
        );
    }
    let mut macros = Map::new();
    for m in project.jinja.macros().values() {
        let id = format!("macro.{}.{}", m.package, m.name);
        macros.insert(
            id.clone(),
            json!({
                "name": m.name,
                "resource_type": "macro",
                "package_name": m.package,
                "path": m.file.to_string_lossy(),
                "original_file_path": m.file.to_string_lossy(),
                "unique_id": id,
                "macro_sql": m.sql,
                "depends_on": {"macros": []},
                "description": "",
                "meta": {},
                "docs": {"show": true, "node_color": null},
                "patch_path": null,
                "arguments": [],
                "created_at": created_at(project),
                "supported_languages": null,
            }),
        );
    }
    let mut docs = Map::new();
    for (name, body) in &project.docs {
        let id = format!("doc.{package}.{name}");
        docs.insert(
            id.clone(),
            json!({"name": name, "resource_type": "doc", "package_name": package, "path": "", "original_file_path": "", "unique_id": id, "block_contents": body}),
        );
    }
    let mut parent_map = Map::new();
    let mut child_map = Map::new();
    for id in project.graph.ids() {
        parent_map.insert(id.to_string(), json!(project.graph.parents(id)));
        child_map.insert(id.to_string(), json!(project.graph.children(id)));
    }
    json!({
        "metadata": {
            "dbt_schema_version": MANIFEST_SCHEMA,
            "dbt_version": STRATA_VERSION,
            "generated_at": project.run_started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "invocation_id": project.invocation_id,
            "project_name": package,
            "project_id": null,
            "user_id": null,
            "send_anonymous_usage_stats": false,
            "adapter_type": project.target.kind,
            // Where this target's tables are, for `--defer` and `clone` reading this file as
            // `--state` (dbt's schema allows no other key here).
            "env": {
                "STRATA_TARGET": project.target.name,
                "STRATA_DATABASE": project.target.database,
                "STRATA_LAKE": project.target.lake,
                "STRATA_METADATA": match &project.target.shared_metadata {
                    Some(shared) => shared.url.clone(),
                    None => project.target.metadata.to_string_lossy().into_owned(),
                },
                // A shared store's schema (the env holds strings only: empty for SQLite).
                "STRATA_METADATA_SCHEMA": project
                    .target
                    .shared_metadata
                    .as_ref()
                    .map(|s| s.schema.clone())
                    .unwrap_or_default(),
            },
        },
        "nodes": nodes,
        "sources": sources,
        "macros": macros,
        "docs": docs,
        "exposures": project
            .exposures
            .values()
            .map(|e| (e.unique_id.clone(), exposure_json(project, e)))
            .collect::<Map<String, Value>>(),
        "metrics": {},
        "groups": {},
        "selectors": {},
        "disabled": project.disabled.iter().map(|d| (d.clone(), json!([]))).collect::<Map<String, Value>>(),
        "parent_map": parent_map,
        "child_map": child_map,
        "group_map": {},
        "saved_queries": {},
        "semantic_models": {},
        "unit_tests": unit_tests,
    })
}

/// An exposure as dbt's manifest describes one.
fn exposure_json(project: &Project, e: &crate::exposures::Exposure) -> Value {
    let prop = |k: &str| e.properties.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "name": e.name,
        "resource_type": "exposure",
        "package_name": e.package,
        "path": e.original_file_path.to_string_lossy(),
        "original_file_path": e.original_file_path.to_string_lossy(),
        "unique_id": e.unique_id,
        "fqn": [e.package.clone(), e.name.clone()],
        "type": prop("type"),
        "owner": prop("owner"),
        "description": e.properties.get("description").cloned().unwrap_or(json!("")),
        "label": prop("label"),
        "maturity": prop("maturity"),
        "url": prop("url"),
        "meta": e.properties.get("meta").cloned().unwrap_or(json!({})),
        "tags": e.properties.get("tags").cloned().unwrap_or(json!([])),
        "config": {"enabled": true},
        "unrendered_config": {},
        "depends_on": {"macros": [], "nodes": e.depends_on},
        "refs": [],
        "sources": [],
        "metrics": [],
        "created_at": created_at(project),
    })
}

/// Rows of a unit test as dbt's manifest keeps them: `{format, rows}`.
fn unit_rows_json(rows: &crate::unit_tests::Rows) -> Value {
    match rows {
        crate::unit_tests::Rows::Dict(d) => json!({"format": "dict", "rows": d}),
        crate::unit_tests::Rows::Csv(text) => json!({"format": "csv", "rows": text}),
        crate::unit_tests::Rows::Sql(text) => json!({"format": "sql", "rows": text}),
    }
}

/// A unit test as dbt's manifest describes one (`unit_tests` section).
fn unit_test_json(
    project: &Project,
    t: &crate::data_tests::DataTest,
    unit: &crate::unit_tests::UnitTest,
) -> Value {
    let given: Vec<Value> = unit
        .given
        .iter()
        .map(|g| {
            let input = match &g.input {
                crate::unit_tests::Input::Ref(m) => format!("ref('{m}')"),
                crate::unit_tests::Input::Source(s, tb) => format!("source('{s}', '{tb}')"),
            };
            let mut entry = unit_rows_json(&g.rows);
            if let Value::Object(e) = &mut entry {
                e.insert("input".into(), json!(input));
            }
            entry
        })
        .collect();
    json!({
        "model": unit.model,
        "given": given,
        "expect": unit_rows_json(&unit.expect),
        "name": t.name,
        "resource_type": "unit_test",
        "package_name": t.package,
        "path": t.original_file_path.to_string_lossy(),
        "original_file_path": t.original_file_path.to_string_lossy(),
        "unique_id": t.unique_id,
        "fqn": t.fqn,
        "description": "",
        "overrides": {"vars": unit.vars, "macros": unit.macros, "env_vars": unit.env_vars},
        "depends_on": {"macros": [], "nodes": t.attached_node.iter().collect::<Vec<_>>()},
        "config": {"tags": t.config.tags(), "meta": t.config.get("meta").cloned().unwrap_or(json!({})), "enabled": true},
        "checksum": null,
        "schema": project.target.schema,
        "created_at": created_at(project),
        "versions": null,
        "version": null,
    })
}

/// Write a JSON artifact to `<target-path>/<name>`.
pub fn write_artifact(project: &Project, name: &str, value: &Value) -> Result<()> {
    let dir = project.target_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let path = dir.join(name);
    let text = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    // Write then rename, so readers never see half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("write", &path, e))
}
