//! Models, snapshots, seeds and sources: the parse render of each model (its refs, sources
//! and config), the relations they build, and their described columns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use strata_common::{Location, did_you_mean, relative_to};

use crate::config::{ProjectConfig, config_from_tree, yaml_to_json};
use crate::error::{Error, Result};
use crate::jinja::{JinjaEnv, Mode, NodeInfo, describe_error};
use crate::node::{Column, Model, Relation, Seed, Source, SqlKind};
use crate::properties::{ColumnEntry, SourceEntry};

use super::Loader;
use super::files::{ModelFile, files_with_ext, fqn_of};

/// The name in a Jinja "unknown function" error.
fn unknown_name(e: &minijinja::Error) -> Option<String> {
    if e.kind() != minijinja::ErrorKind::UnknownFunction {
        return None;
    }
    let detail = e.detail()?;
    Some(detail.trim_end_matches(" is unknown").trim().to_string())
}

impl Loader {
    /// Parse-render each model: its refs, sources and inline config; the enabled models, and
    /// the unique ids of disabled ones.
    pub(super) fn parse_models(
        &self,
        jinja: &JinjaEnv,
        files: Vec<ModelFile>,
        packages: &[crate::packages::Package],
        patches: &HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    ) -> Result<(IndexMap<String, Model>, Vec<String>)> {
        let mut models: IndexMap<String, Model> = IndexMap::new();
        let mut disabled = Vec::new();
        for f in files {
            let _ = &f.abs;
            // A package's own `models:` tree first, then the root project's, which wins.
            let tree = |c: &ProjectConfig| match f.kind {
                SqlKind::Model => c.models.clone(),
                SqlKind::Snapshot => c.other.get("snapshots").cloned(),
                SqlKind::Analysis => c.other.get("analyses").cloned(),
            };
            let mut config = match packages.iter().find(|p| p.name == f.package) {
                Some(pkg) => {
                    let mut c = config_from_tree(tree(&pkg.config).as_ref(), &f.fqn);
                    c.merge(&config_from_tree(tree(&self.config).as_ref(), &f.fqn));
                    c
                }
                None => config_from_tree(tree(&self.config).as_ref(), &f.fqn),
            };
            let package = f.package.clone();
            let patch = patches.get(&f.name);
            if let Some((_, entry)) = patch {
                for (k, v) in &entry.config {
                    config.set(k, yaml_to_json(v));
                }
            }
            let kind = f.kind.as_str();
            let unique_id = format!("{kind}.{package}.{}", f.name);
            let info = NodeInfo {
                unique_id: unique_id.clone(),
                name: f.name.clone(),
                package: package.clone(),
                resource_type: kind.into(),
                fqn: f.fqn.clone(),
                original_file_path: f.rel.clone(),
                config: config.clone(),
                relation: None,
            };
            let (_, captured) =
                jinja
                    .render(&f.template, Mode::Parse, info, None)
                    .map_err(|e| {
                        let err = Error::jinja(f.rel.clone(), &e)
                            .with_node(format!("{kind} `{}`", f.name));
                        match unknown_name(&e) {
                            Some(name) => err.with_hint(format!(
                                "no macro or function is named `{name}`{} (macros live in {})",
                                did_you_mean(&name, jinja.macros().keys().map(String::as_str)),
                                self.config.macro_paths.join(", ")
                            )),
                            None => err,
                        }
                    })?;
            config.merge(&captured.config);
            if f.kind == SqlKind::Snapshot {
                config.set("materialized", serde_json::json!("snapshot"));
            }
            if !config.enabled() {
                disabled.push(unique_id);
                continue;
            }
            let (description, columns) = match patch {
                Some((_, entry)) => (
                    self.render_description(jinja, entry.description.as_deref(), &f.rel)?,
                    self.columns(jinja, &entry.columns, &f.rel)?,
                ),
                None => (String::new(), IndexMap::new()),
            };
            let mut relation = self.relation_for(
                jinja,
                &NodeInfo {
                    unique_id: unique_id.clone(),
                    name: f.name.clone(),
                    package: package.clone(),
                    resource_type: kind.into(),
                    fqn: f.fqn.clone(),
                    original_file_path: f.rel.clone(),
                    config: config.clone(),
                    relation: None,
                },
            )?;
            // Snapshots' older configs name their schema and database as they are.
            if f.kind == SqlKind::Snapshot {
                if let Some(s) = config.get_str("target_schema") {
                    relation.schema = s.to_string();
                }
                if let Some(d) = config.get_str("target_database") {
                    relation.database = d.to_string();
                }
            }
            let checksum = format!("{:x}", Sha256::digest(f.raw_sql.as_bytes()));
            models.insert(
                unique_id.clone(),
                Model {
                    kind: f.kind,
                    template: f.template,
                    unique_id,
                    name: f.name,
                    package: package.clone(),
                    original_file_path: f.rel,
                    path: f.path_in_model_dir,
                    fqn: f.fqn,
                    raw_sql: f.raw_sql,
                    config,
                    description,
                    columns,
                    patch_path: patch.map(|(p, _)| p.clone()),
                    refs: captured.refs,
                    sources: captured.sources,
                    macros: captured.macros,
                    relation,
                    checksum,
                },
            );
        }

        Ok((models, disabled))
    }

    fn render_description(
        &self,
        jinja: &JinjaEnv,
        text: Option<&str>,
        file: &Path,
    ) -> Result<String> {
        let Some(text) = text else {
            return Ok(String::new());
        };
        jinja
            .render_str(text)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                Error::at(
                    Location::file(file),
                    format!("in a description: {}", describe_error(&e)),
                )
            })
    }

    fn columns(
        &self,
        jinja: &JinjaEnv,
        entries: &[ColumnEntry],
        file: &Path,
    ) -> Result<IndexMap<String, Column>> {
        let mut out = IndexMap::new();
        for c in entries {
            out.insert(
                c.name.clone(),
                Column {
                    name: c.name.clone(),
                    description: self.render_description(jinja, c.description.as_deref(), file)?,
                    data_type: c.data_type.clone(),
                    meta: c
                        .meta
                        .as_ref()
                        .map(yaml_to_json)
                        .unwrap_or(serde_json::json!({})),
                    tags: c.tags.clone(),
                },
            );
        }
        Ok(out)
    }

    /// Where a model is built: database, schema (dbt's `generate_schema_name`) and alias.
    fn relation_for(&self, jinja: &JinjaEnv, info: &NodeInfo) -> Result<Relation> {
        let (name, config) = (info.name.as_str(), &info.config);
        let file = &info.original_file_path;
        let kind = &info.resource_type;
        let call = |macro_name: &str, arg: Option<&str>| -> Result<Option<String>> {
            if !jinja.macros().contains_key(macro_name) {
                return Ok(None);
            }
            let arg = match arg {
                Some(a) => strata_common::quote_literal(a).replace('\\', "\\\\"),
                None => "none".to_string(),
            };
            let snippet = format!("{{{{ {macro_name}({arg}, model) }}}}");
            jinja
                .render_snippet(&snippet, info.clone())
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| {
                    Error::at(
                        Location::file(file),
                        format!("{macro_name} failed: {}", describe_error(&e)),
                    )
                    .with_node(format!("{kind} `{name}`"))
                })
        };
        let schema = match call("generate_schema_name", config.schema())? {
            Some(s) => s,
            None => match config.schema() {
                Some(custom) => format!("{}_{}", self.target.schema, custom.trim()),
                None => self.target.schema.clone(),
            },
        };
        let identifier = match call("generate_alias_name", config.alias())? {
            Some(s) => s,
            None => config.alias().unwrap_or(name).to_string(),
        };
        let database = match call("generate_database_name", config.database())? {
            Some(s) => s,
            None => config
                .database()
                .unwrap_or(&self.target.database)
                .to_string(),
        };
        for (what, value) in [
            ("schema", &schema),
            ("alias", &identifier),
            ("database", &database),
        ] {
            if value.is_empty() {
                return Err(Error::at(
                    Location::file(file),
                    format!("the {what} of this {kind} is empty"),
                )
                .with_node(format!("{kind} `{name}`")));
            }
        }
        Ok(Relation::new(database, schema, identifier))
    }

    pub(super) fn seeds(
        &self,
        jinja: &JinjaEnv,
        patches: &HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
        by_name: &mut HashMap<String, PathBuf>,
        package: &str,
        disabled: &mut Vec<String>,
    ) -> Result<IndexMap<String, Seed>> {
        let mut out = IndexMap::new();
        for seed_dir in &self.config.seed_paths {
            for (abs, rel) in files_with_ext(&self.root, std::slice::from_ref(seed_dir), &["csv"]) {
                let path = relative_to(&abs, &self.root.join(seed_dir));
                let name = abs
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some(first) = by_name.insert(name.clone(), rel.clone()) {
                    return Err(Error::at(
                        Location::file(&rel),
                        format!("`{name}` is both {} and {}", first.display(), rel.display()),
                    )
                    .with_hint(
                        "models and seeds share one namespace for ref(): rename one of the files",
                    ));
                }
                let fqn = fqn_of(package, &path, &name);
                let mut config = config_from_tree(self.config.seeds.as_ref(), &fqn);
                let patch = patches.get(&name);
                if let Some((_, entry)) = patch {
                    for (k, v) in &entry.config {
                        config.set(k, yaml_to_json(v));
                    }
                }
                let unique_id = format!("seed.{package}.{name}");
                if !config.enabled() {
                    disabled.push(unique_id);
                    continue;
                }
                let info = NodeInfo {
                    unique_id: unique_id.clone(),
                    name: name.clone(),
                    package: package.to_string(),
                    resource_type: "seed".into(),
                    fqn: fqn.clone(),
                    original_file_path: rel.clone(),
                    config: config.clone(),
                    relation: None,
                };
                let relation = self.relation_for(jinja, &info)?;
                let (description, columns) = match patch {
                    Some((file, entry)) => (
                        self.render_description(jinja, entry.description.as_deref(), file)?,
                        self.columns(jinja, &entry.columns, file)?,
                    ),
                    None => (String::new(), IndexMap::new()),
                };
                let size = std::fs::metadata(&abs).map(|m| m.len()).unwrap_or(u64::MAX);
                let checksum = if size <= 1 << 20 {
                    let bytes = std::fs::read(&abs).map_err(|e| Error::io("read", &abs, e))?;
                    format!("{:x}", Sha256::digest(&bytes))
                } else {
                    format!("path:{}", rel.display())
                };
                out.insert(
                    unique_id.clone(),
                    Seed {
                        unique_id,
                        name,
                        package: package.to_string(),
                        original_file_path: rel,
                        abs_path: abs,
                        path,
                        fqn,
                        config,
                        description,
                        columns,
                        patch_path: patch.map(|(p, _)| p.clone()),
                        relation,
                        checksum,
                    },
                );
            }
        }
        for (name, (file, _)) in patches {
            if !out.values().any(|s: &Seed| &s.name == name)
                && !disabled.iter().any(|d| d.ends_with(&format!(".{name}")))
            {
                return Err(Error::at(
                    Location::file(file),
                    format!("describes seed `{name}`, but there is no seed file `{name}.csv`"),
                )
                .with_hint("fix the `name:` or remove the entry"));
            }
        }
        Ok(out)
    }

    pub(super) fn sources(
        &self,
        jinja: &JinjaEnv,
        entries: &[(PathBuf, SourceEntry)],
        package: &str,
    ) -> Result<IndexMap<String, Source>> {
        let mut out = IndexMap::new();
        for (file, s) in entries {
            let source_desc = self.render_description(jinja, s.description.as_deref(), file)?;
            for t in &s.tables {
                let unique_id = format!("source.{package}.{}.{}", s.name, t.name);
                if out.contains_key(&unique_id) {
                    return Err(Error::at(
                        Location::file(file),
                        format!("source table `{}.{}` is declared twice", s.name, t.name),
                    ));
                }
                let mut config = config_from_tree(
                    self.config.sources.as_ref(),
                    &[package.to_string(), s.name.clone(), t.name.clone()],
                );
                // `freshness` and `loaded_at_field` as properties of the source or the table
                // (the table's win; `freshness: null` turns it off), or in their configs.
                for key in ["freshness", "loaded_at_field"] {
                    for v in [s.other.get(key), t.other.get(key)].into_iter().flatten() {
                        config.set(key, yaml_to_json(v));
                    }
                }
                for (k, v) in s.config.iter().chain(&t.config) {
                    config.set(k, yaml_to_json(v));
                }
                let mut meta = serde_json::Map::new();
                for m in [s.meta.as_ref(), t.meta.as_ref()].into_iter().flatten() {
                    if let serde_json::Value::Object(o) = yaml_to_json(m) {
                        meta.extend(o);
                    }
                }
                let lookup = |key: &str| -> Option<String> {
                    t.config
                        .get(key)
                        .and_then(|v| v.as_str().map(str::to_string))
                        .or_else(|| {
                            t.meta
                                .as_ref()
                                .and_then(|m| m.get(key))
                                .and_then(|v| v.as_str().map(str::to_string))
                        })
                        .or_else(|| {
                            s.config
                                .get(key)
                                .and_then(|v| v.as_str().map(str::to_string))
                        })
                        .or_else(|| {
                            s.meta
                                .as_ref()
                                .and_then(|m| m.get(key))
                                .and_then(|v| v.as_str().map(str::to_string))
                        })
                };
                let identifier = t.identifier.clone().unwrap_or_else(|| t.name.clone());
                let external_location = t
                    .external_location
                    .clone()
                    .or_else(|| lookup("external_location"))
                    .map(|loc| {
                        loc.replace("{name}", &t.name)
                            .replace("{identifier}", &identifier)
                    });
                let mut tags = s.tags.clone();
                tags.extend(t.tags.iter().cloned());
                // `ingest:` on the source (connection) and on the table (what and how).
                let ingest = match (s.other.get("ingest"), t.other.get("ingest")) {
                    (None, None) => None,
                    (source_level, table_level) => {
                        let mut merged = serde_json::Map::new();
                        for (what, v) in [("source", source_level), ("table", table_level)] {
                            match v.map(yaml_to_json) {
                                None | Some(serde_json::Value::Null) => {}
                                Some(serde_json::Value::Object(m)) => merged.extend(m),
                                Some(_) => {
                                    return Err(Error::at(
                                        Location::file(file),
                                        format!(
                                            "source `{}.{}`: `ingest:` on the {what} must be a mapping such as {{type: files}}",
                                            s.name, t.name
                                        ),
                                    ));
                                }
                            }
                        }
                        Some(serde_json::Value::Object(merged))
                    }
                };
                // An ingested table's rows say when they were loaded: freshness reads that
                // unless the source names another field.
                if ingest.is_some() && config.get("loaded_at_field").is_none() {
                    config.set("loaded_at_field", serde_json::json!("_strata_loaded_at"));
                }
                // Ingested sources land in the bronze schema unless the source names one.
                let default_schema = match ingest {
                    Some(_) => "bronze".to_string(),
                    None => s.name.clone(),
                };
                out.insert(
                    unique_id.clone(),
                    Source {
                        unique_id,
                        source_name: s.name.clone(),
                        name: t.name.clone(),
                        package: package.to_string(),
                        original_file_path: file.clone(),
                        source_description: source_desc.clone(),
                        description: self.render_description(
                            jinja,
                            t.description.as_deref(),
                            file,
                        )?,
                        columns: self.columns(jinja, &t.columns, file)?,
                        relation: Relation::new(
                            s.database
                                .clone()
                                .unwrap_or_else(|| self.target.database.clone()),
                            s.schema.clone().unwrap_or(default_schema),
                            identifier,
                        ),
                        external_location,
                        format: lookup("format"),
                        ingest,
                        meta: serde_json::Value::Object(meta),
                        config,
                        fqn: vec![package.to_string(), s.name.clone(), t.name.clone()],
                        tags,
                        loader: s.loader.clone().unwrap_or_default(),
                    },
                );
            }
        }
        Ok(out)
    }
}
