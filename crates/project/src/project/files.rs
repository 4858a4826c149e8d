//! Finding a project's files: docs blocks, properties files, model, analysis, snapshot and
//! singular test files of the project and its packages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_common::{Location, relative_to};

use crate::config::ProjectConfig;
use crate::error::{Error, Result, read_to_string, yaml_error};
use crate::jinja::JinjaEnv;
use crate::node::SqlKind;
use crate::properties::{PropertiesFile, SourceEntry};

use super::Loader;

/// Files of a project folder set with a given extension, sorted, as (absolute, relative).
pub(super) fn files_with_ext(
    root: &Path,
    dirs: &[String],
    exts: &[&str],
) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in dirs {
        let base = root.join(dir);
        if !base.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&base)
            .sort_by_file_name()
            .into_iter()
            .filter_map(std::result::Result::ok)
        {
            let p = entry.path();
            if entry.file_type().is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
            {
                out.push((p.to_path_buf(), relative_to(p, root)));
            }
        }
    }
    out
}

/// The pattern of `{% <tag> name %} ... {% end<tag> %}` blocks: the name, then the body.
fn block_regex(tag: &str) -> regex::Regex {
    #[allow(clippy::unwrap_used)] // a constant pattern around a plain word
    regex::Regex::new(&format!(
        r"(?s)\{{%-?\s*{tag}\s+([A-Za-z_][A-Za-z0-9_]*)\s*-?%\}}(.*?)\{{%-?\s*end{tag}\s*-?%\}}"
    ))
    .unwrap()
}

/// The blocks `re` finds in `text`, as (name, body).
fn named_blocks<'t>(
    re: &regex::Regex,
    text: &'t str,
) -> impl Iterator<Item = (String, regex::Match<'t>)> {
    re.captures_iter(text)
        .filter_map(|c| Some((c.get(1)?.as_str().to_string(), c.get(2)?)))
}

fn docs_blocks(text: &str) -> Vec<(String, String)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| block_regex("docs"));
    named_blocks(re, text)
        .map(|(name, body)| (name, body.as_str().trim().to_string()))
        .collect()
}

/// The `{% snapshot name %} ... {% endsnapshot %}` blocks of a file, as (name, body), each body
/// preceded by the file's earlier lines as blank lines so Jinja errors point at the file's lines.
fn snapshot_blocks(text: &str) -> Vec<(String, String)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| block_regex("snapshot"));
    named_blocks(re, text)
        .map(|(name, body)| {
            let lines_before = text[..body.start()].matches('\n').count();
            (
                name,
                format!("{}{}", "\n".repeat(lines_before), body.as_str()),
            )
        })
        .collect()
}

/// A model file found on disk, before rendering.
pub(super) struct ModelFile {
    pub(super) abs: PathBuf,
    pub(super) rel: PathBuf,
    pub(super) path_in_model_dir: PathBuf,
    pub(super) name: String,
    pub(super) fqn: Vec<String>,
    pub(super) raw_sql: String,
    /// The package (root project or installed package) the model belongs to.
    pub(super) package: String,
    /// Model or snapshot.
    pub(super) kind: SqlKind,
    /// The Jinja template name of its SQL.
    pub(super) template: PathBuf,
}

/// dbt's fully qualified name: the package, the folders under the node's path, the name.
pub(super) fn fqn_of(package: &str, path_in_dir: &Path, name: &str) -> Vec<String> {
    let mut fqn = vec![package.to_string()];
    if let Some(parent) = path_in_dir.parent() {
        fqn.extend(
            parent
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned()),
        );
    }
    fqn.push(name.to_string());
    fqn
}

/// The entries of a project's properties files.
pub(super) struct Properties {
    /// Models and snapshots, by name, with their file.
    pub(super) models: HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    /// Seeds, by name, with their file.
    pub(super) seeds: HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    /// Sources, with their file.
    pub(super) sources: Vec<(PathBuf, SourceEntry)>,
    /// `unit_tests:` lists of the project's properties files, with their file.
    pub(super) unit_tests: Vec<(PathBuf, yaml_serde::Value)>,
    /// `exposures:` lists of the project's properties files, with their file.
    pub(super) exposures: Vec<(PathBuf, yaml_serde::Value)>,
}

impl Loader {
    /// Docs blocks from every .md file under model and macro paths.
    pub(super) fn docs_blocks(&self) -> Result<HashMap<String, String>> {
        let mut docs = HashMap::new();
        let doc_dirs: Vec<String> = self
            .config
            .model_paths
            .iter()
            .chain(&self.config.macro_paths)
            .cloned()
            .collect();
        for (abs, _) in files_with_ext(&self.root, &doc_dirs, &["md"]) {
            for (name, body) in docs_blocks(&read_to_string(&abs)?) {
                docs.insert(name, body);
            }
        }

        Ok(docs)
    }

    /// Folders of generic tests: `generic/` under each test path.
    pub(super) fn generic_dirs(&self) -> Vec<String> {
        self.config
            .test_paths
            .iter()
            .map(|t| format!("{}/generic", t.trim_end_matches('/')))
            .collect()
    }

    /// Properties files (YAML under model, seed and snapshot paths) of the project and its
    /// packages: entries for models and snapshots, seeds, and sources.
    pub(super) fn properties(
        &self,
        roots: &[(PathBuf, &ProjectConfig, String)],
    ) -> Result<Properties> {
        let mut patches: HashMap<String, (PathBuf, crate::properties::ModelEntry)> = HashMap::new();
        let mut source_entries: Vec<(PathBuf, SourceEntry)> = Vec::new();
        let mut seed_patches: HashMap<String, (PathBuf, crate::properties::ModelEntry)> =
            HashMap::new();
        let mut property_files = Vec::new();
        let mut unit_tests: Vec<(PathBuf, yaml_serde::Value)> = Vec::new();
        let mut exposures: Vec<(PathBuf, yaml_serde::Value)> = Vec::new();
        for (root, config, pkg_name) in roots {
            let dirs: Vec<String> = config
                .model_paths
                .iter()
                .chain(&config.seed_paths)
                .chain(&config.snapshot_paths)
                .cloned()
                .collect();
            for (abs, _) in files_with_ext(root, &dirs, &["yml", "yaml"]) {
                let rel = relative_to(&abs, &self.root);
                property_files.push((abs, rel, *pkg_name == self.config.name));
            }
        }
        for (abs, rel, in_root) in property_files {
            let text = read_to_string(&abs)?;
            if text.trim().is_empty() {
                continue;
            }
            let file: PropertiesFile =
                yaml_serde::from_str(&text).map_err(|e| yaml_error(rel.clone(), &e))?;
            if in_root {
                crate::validate::warn_unused_properties(&rel, &file);
            }
            // The project's own unit tests (a package's are its own business, as in dbt).
            if let Some(list) = file.other.get("unit_tests").filter(|_| in_root) {
                unit_tests.push((rel.clone(), list.clone()));
            }
            if let Some(list) = file.other.get("exposures").filter(|_| in_root) {
                exposures.push((rel.clone(), list.clone()));
            }
            for entry in file.models {
                if let Some((first, _)) = patches.get(&entry.name) {
                    return Err(Error::at(
                        Location::file(&rel),
                        format!(
                            "model `{}` is described twice: here and in {}",
                            entry.name,
                            first.display()
                        ),
                    )
                    .with_hint("keep one `- name:` entry per model"));
                }
                patches.insert(entry.name.clone(), (rel.clone(), entry));
            }
            for s in file.sources {
                source_entries.push((rel.clone(), s));
            }
            for entry in file.seeds {
                seed_patches.insert(entry.name.clone(), (rel.clone(), entry));
            }
            for entry in file.snapshots {
                if let Some((first, _)) = patches.get(&entry.name) {
                    return Err(Error::at(
                        Location::file(&rel),
                        format!(
                            "`{}` is described twice: here and in {}",
                            entry.name,
                            first.display()
                        ),
                    )
                    .with_hint("keep one `- name:` entry per model or snapshot"));
                }
                patches.insert(entry.name.clone(), (rel.clone(), entry));
            }
        }

        Ok(Properties {
            models: patches,
            seeds: seed_patches,
            sources: source_entries,
            unit_tests,
            exposures,
        })
    }

    /// Model and snapshot files of the project and its packages, added to the Jinja
    /// environment; with the file of each name. Every properties entry must name one.
    pub(super) fn model_files(
        &self,
        roots: &[(PathBuf, &ProjectConfig, String)],
        patches: &HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
        jinja: &mut JinjaEnv,
    ) -> Result<(Vec<ModelFile>, HashMap<String, PathBuf>)> {
        let mut files: Vec<ModelFile> = Vec::new();
        let mut by_name: HashMap<String, PathBuf> = HashMap::new();
        for (root, config, pkg_name) in roots {
            for model_dir in &config.model_paths {
                for (abs, _) in files_with_ext(root, std::slice::from_ref(model_dir), &["sql"]) {
                    let rel = relative_to(&abs, &self.root);
                    let path_in_model_dir = relative_to(&abs, &root.join(model_dir));
                    let name = abs
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_string();
                    if let Some(first) = by_name.insert(name.clone(), rel.clone()) {
                        return Err(Error::at(
                            Location::file(&rel),
                            format!(
                                "two models are named `{name}`: {} and {}",
                                first.display(),
                                rel.display()
                            ),
                        )
                        .with_hint(
                            "model names must be unique in a project: rename one of the files",
                        ));
                    }
                    let fqn = fqn_of(pkg_name, &path_in_model_dir, &name);
                    let raw_sql = read_to_string(&abs)?;
                    jinja.add_template(&rel, raw_sql.clone()).map_err(|e| {
                    Error::jinja(rel.clone(), &e)
                    .with_node(format!("model `{name}`"))
                    .with_hint("check that every {{ }} and {% %} is closed and every {% if %}/{% for %} has its end tag")
                })?;
                    files.push(ModelFile {
                        abs,
                        template: rel.clone(),
                        rel,
                        path_in_model_dir,
                        name,
                        fqn,
                        raw_sql,
                        package: pkg_name.clone(),
                        kind: SqlKind::Model,
                    });
                }
            }
        }
        for (root, config, pkg_name) in roots {
            if *pkg_name != self.config.name {
                continue;
            }
            for (abs, _) in files_with_ext(root, &config.model_paths, &["py"]) {
                tracing::warn!(
                    "{}: Python models are not supported; the model is ignored (write it in SQL)",
                    relative_to(&abs, &self.root).display()
                );
            }
        }
        self.snapshot_files(roots, patches, jinja, &mut files, &mut by_name)?;
        self.analysis_files(roots, jinja, &mut files)?;
        Ok((files, by_name))
    }

    /// Analyses: `.sql` files under analysis paths, compiled and never run.
    fn analysis_files(
        &self,
        roots: &[(PathBuf, &ProjectConfig, String)],
        jinja: &mut JinjaEnv,
        files: &mut Vec<ModelFile>,
    ) -> Result<()> {
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for (root, config, pkg_name) in roots {
            for dir in &config.analysis_paths {
                for (abs, _) in files_with_ext(root, std::slice::from_ref(dir), &["sql"]) {
                    let rel = relative_to(&abs, &self.root);
                    let path_in_dir = relative_to(&abs, &root.join(dir));
                    let name = abs
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_string();
                    if let Some(first) = seen.insert(name.clone(), rel.clone()) {
                        return Err(Error::at(
                            Location::file(&rel),
                            format!(
                                "two analyses are named `{name}`: {} and {}",
                                first.display(),
                                rel.display()
                            ),
                        )
                        .with_hint("rename one of the files"));
                    }
                    let raw_sql = read_to_string(&abs)?;
                    jinja.add_template(&rel, raw_sql.clone()).map_err(|e| {
                        Error::jinja(rel.clone(), &e)
                            .with_node(format!("analysis `{name}`"))
                            .with_hint("check that every {{ }} and {% %} is closed")
                    })?;
                    // dbt's fqn of an analysis: package, `analysis`, folders, name.
                    let mut fqn = fqn_of(pkg_name, &path_in_dir, &name);
                    fqn.insert(1, "analysis".into());
                    files.push(ModelFile {
                        abs,
                        template: rel.clone(),
                        rel,
                        path_in_model_dir: PathBuf::from(dir).join(&path_in_dir),
                        name,
                        fqn,
                        raw_sql,
                        package: pkg_name.clone(),
                        kind: SqlKind::Analysis,
                    });
                }
            }
        }
        Ok(())
    }

    /// Singular tests: SQL files under test paths, outside `generic/`, as (file, name, SQL).
    pub(super) fn singular_tests(
        &self,
        jinja: &mut JinjaEnv,
    ) -> Result<Vec<(PathBuf, String, String)>> {
        let generic_dirs = self.generic_dirs();
        let mut singular = Vec::new();
        for (abs, rel) in files_with_ext(&self.root, &self.config.test_paths, &["sql"]) {
            if generic_dirs.iter().any(|g| rel.starts_with(g)) {
                continue;
            }
            let name = abs
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let raw_sql = read_to_string(&abs)?;
            jinja
                .add_template(&rel, raw_sql.clone())
                .map_err(|e| Error::jinja(rel.clone(), &e).with_node(format!("test `{name}`")))?;
            singular.push((rel, name, raw_sql));
        }
        Ok(singular)
    }

    /// Snapshots: `{% snapshot %}` blocks in `.sql` files under snapshot paths, and YAML
    /// entries under `snapshots:` with a `relation:`.
    fn snapshot_files(
        &self,
        roots: &[(PathBuf, &ProjectConfig, String)],
        patches: &HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
        jinja: &mut JinjaEnv,
        files: &mut Vec<ModelFile>,
        by_name: &mut HashMap<String, PathBuf>,
    ) -> Result<()> {
        let mut found: Vec<(PathBuf, PathBuf, PathBuf, String, String, String)> = Vec::new();
        for (root, config, pkg_name) in roots {
            for dir in &config.snapshot_paths {
                for (abs, _) in files_with_ext(root, std::slice::from_ref(dir), &["sql"]) {
                    let rel = relative_to(&abs, &self.root);
                    let text = read_to_string(&abs)?;
                    let blocks = snapshot_blocks(&text);
                    if blocks.is_empty() {
                        return Err(Error::at(
                            Location::file(&rel),
                            "has no {% snapshot <name> %} ... {% endsnapshot %} block",
                        )
                        .with_hint(
                            "wrap the snapshot's query in a snapshot block, or move the file out of the snapshot folder",
                        ));
                    }
                    let single = blocks.len() == 1;
                    for (name, body) in blocks {
                        let template = if single {
                            rel.clone()
                        } else {
                            PathBuf::from(format!("{}#{name}", rel.display()))
                        };
                        let in_dir = relative_to(&abs, &root.join(dir));
                        found.push((rel.clone(), template, in_dir, name, body, pkg_name.clone()));
                    }
                }
            }
        }
        for (name, (file, entry)) in patches {
            let Some(relation) = entry.other.get("relation") else {
                continue;
            };
            let Some(relation) = relation.as_str() else {
                return Err(Error::at(
                    Location::file(file),
                    format!("snapshot `{name}`: `relation` must be text such as ref('orders')"),
                ));
            };
            let relation = relation
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}");
            let template = PathBuf::from(format!("{}#{name}", file.display()));
            let in_dir = PathBuf::from(format!("{name}.yml"));
            let sql = format!("select * from {{{{ {} }}}}", relation.trim());
            found.push((
                file.clone(),
                template,
                in_dir,
                name.clone(),
                sql,
                self.config.name.clone(),
            ));
        }
        for (rel, template, in_dir, name, body, package) in found {
            if let Some(first) = by_name.insert(name.clone(), rel.clone()) {
                return Err(Error::at(
                    Location::file(&rel),
                    format!(
                        "snapshot `{name}` has the name of another model or snapshot, in {}",
                        first.display()
                    ),
                )
                .with_hint("names must be unique in a project: rename one of them"));
            }
            jinja.add_template(&template, body.clone()).map_err(|e| {
                Error::jinja(rel.clone(), &e)
                    .with_node(format!("snapshot `{name}`"))
                    .with_hint("check that every {{ }} and {% %} is closed")
            })?;
            let fqn = fqn_of(&package, &in_dir, &name);
            files.push(ModelFile {
                abs: self.root.join(&rel),
                rel,
                template,
                path_in_model_dir: in_dir,
                name,
                fqn,
                raw_sql: body.trim().to_string(),
                package,
                kind: SqlKind::Snapshot,
            });
        }
        Ok(())
    }
}
