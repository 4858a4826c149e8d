//! dbt's artifacts: `manifest.json` (schema v12), written where dbt writes it, so tools that
//! read dbt artifacts (docs sites, lineage tools, state comparison) work on Strata projects.

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

/// The manifest of a loaded project.
pub fn manifest(project: &Project) -> Value {
    let package = project.name();
    let mut nodes = Map::new();
    for m in project.models.values() {
        let mut config = m.config.to_json();
        if let Value::Object(c) = &mut config {
            c.entry("materialized").or_insert(json!(m.materialized()));
            c.entry("enabled").or_insert(json!(true));
            c.entry("tags").or_insert(json!(m.config.tags()));
        }
        let compiled_path = Path::new(&project.config.target_path)
            .join("compiled")
            .join(&m.package)
            .join(&m.original_file_path);
        let parents: Vec<&str> = project.graph.parents(&m.unique_id);
        nodes.insert(
            m.unique_id.clone(),
            json!({
                "database": m.relation.database,
                "schema": m.relation.schema,
                "name": m.name,
                "resource_type": m.kind.as_str(),
                "package_name": m.package,
                "path": m.path.to_string_lossy(),
                "original_file_path": m.original_file_path.to_string_lossy(),
                "unique_id": m.unique_id,
                "fqn": m.fqn,
                "alias": m.relation.identifier,
                "checksum": {"name": "sha256", "checksum": m.checksum},
                "config": config,
                "tags": m.config.tags(),
                "description": m.description,
                "columns": columns_json(&m.columns),
                "meta": m.config.get("meta").cloned().unwrap_or(json!({})),
                "group": null,
                "docs": {"show": true, "node_color": null},
                "patch_path": m.patch_path.as_ref().map(|p| format!("{package}://{}", p.to_string_lossy())),
                "build_path": null,
                "unrendered_config": {},
                "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
                "relation_name": if m.materialized() == "ephemeral" { Value::Null } else { json!(m.relation.to_string()) },
                "raw_code": m.raw_sql,
                "language": "sql",
                "refs": m.refs.iter().map(|r| json!({"name": r.name, "package": r.package, "version": null})).collect::<Vec<_>>(),
                "sources": m.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>(),
                "metrics": [],
                "depends_on": {
                    "macros": m.macros.iter().map(|x| format!("macro.{package}.{x}")).collect::<Vec<_>>(),
                    "nodes": parents,
                },
                "compiled_path": compiled_path.to_string_lossy(),
                "contract": {"enforced": false, "alias_types": true, "checksum": null},
                "access": "protected",
                "constraints": [],
                "version": null,
                "latest_version": null,
                "deprecation_date": null,
            }),
        );
    }
    for s in project.seeds.values() {
        let mut config = s.config.to_json();
        if let Value::Object(c) = &mut config {
            c.entry("materialized").or_insert(json!("seed"));
            c.entry("enabled").or_insert(json!(true));
        }
        nodes.insert(
            s.unique_id.clone(),
            json!({
                "database": s.relation.database,
                "schema": s.relation.schema,
                "name": s.name,
                "resource_type": "seed",
                "package_name": s.package,
                "path": s.path.to_string_lossy(),
                "original_file_path": s.original_file_path.to_string_lossy(),
                "unique_id": s.unique_id,
                "fqn": s.fqn,
                "alias": s.relation.identifier,
                "checksum": {"name": if s.checksum.starts_with("path:") { "path" } else { "sha256" }, "checksum": s.checksum},
                "config": config,
                "tags": s.config.tags(),
                "description": s.description,
                "columns": columns_json(&s.columns),
                "meta": s.config.get("meta").cloned().unwrap_or(json!({})),
                "group": null,
                "docs": {"show": true, "node_color": null},
                "patch_path": s.patch_path.as_ref().map(|p| format!("{package}://{}", p.to_string_lossy())),
                "build_path": null,
                "unrendered_config": {},
                "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
                "relation_name": s.relation.to_string(),
                "raw_code": "",
                "root_path": project.root.to_string_lossy(),
                "depends_on": {"macros": []},
            }),
        );
    }
    let mut unit_tests = Map::new();
    for t in project.tests.values() {
        if let crate::data_tests::TestKind::Unit(unit) = &t.kind {
            unit_tests.insert(t.unique_id.clone(), unit_test_json(project, t, unit));
            continue;
        }
        let mut config = t.config.to_json();
        if let Value::Object(c) = &mut config {
            c.entry("materialized").or_insert(json!("test"));
            c.entry("severity")
                .or_insert(json!(t.severity().to_uppercase()));
            c.entry("warn_if").or_insert(json!(t.warn_if()));
            c.entry("error_if").or_insert(json!(t.error_if()));
            c.entry("enabled").or_insert(json!(true));
        }
        let (raw_code, test_metadata, column_name) = match &t.kind {
            crate::data_tests::TestKind::Generic {
                test_name,
                namespace,
                column,
                args,
                ..
            } => (
                t.jinja_call().unwrap_or_default(),
                json!({"name": test_name, "kwargs": args, "namespace": namespace}),
                json!(column),
            ),
            crate::data_tests::TestKind::Singular { raw_sql } => {
                (raw_sql.clone(), Value::Null, Value::Null)
            }
            crate::data_tests::TestKind::Unit(_) => continue,
        };
        nodes.insert(
            t.unique_id.clone(),
            json!({
                "database": project.target.database,
                "schema": format!("{}_dbt_test__audit", project.target.schema),
                "name": t.name,
                "resource_type": "test",
                "package_name": t.package,
                "path": t.original_file_path.to_string_lossy(),
                "original_file_path": t.original_file_path.to_string_lossy(),
                "unique_id": t.unique_id,
                "fqn": t.fqn,
                "alias": t.relation_name(),
                "checksum": {"name": "none", "checksum": ""},
                "config": config,
                "tags": t.config.tags(),
                "description": "",
                "columns": {},
                "meta": {},
                "raw_code": raw_code,
                "language": "sql",
                "test_metadata": test_metadata,
                "column_name": column_name,
                "attached_node": t.attached_node,
                "depends_on": {"macros": [], "nodes": t.depends_on},
                "refs": [],
                "sources": [],
                "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
            }),
        );
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
                "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
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
                "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
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
            "env": {},
            "project_name": package,
            "project_id": null,
            "user_id": null,
            "send_anonymous_usage_stats": false,
            "adapter_type": project.target.kind,
            "strata": {
                "target": project.target.name,
                "database": project.target.database,
                "lake": project.target.lake,
                "metadata": project.target.metadata.to_string_lossy(),
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
        "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
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
        "created_at": project.run_started_at.timestamp_micros() as f64 / 1e6,
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
