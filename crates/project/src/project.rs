//! [`Project::load`]: read a project folder into nodes, configs and a DAG.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use strata_common::{Location, did_you_mean, relative_to};

use crate::config::{NodeConfig, ProjectConfig, config_from_tree, yaml_to_json};
use crate::data_tests::{DataTest, TestKind, TestTarget, parse_test_list};
use crate::error::{Error, Result, read_to_string, yaml_error};
use crate::graph::Graph;
use crate::jinja::{Globals, JinjaEnv, Mode, NodeInfo, describe_error};
use crate::node::{Column, Model, Node, RefCall, Relation, Seed, Source, SqlKind};
use crate::profile::{Target, load_target};
use crate::properties::{ColumnEntry, PropertiesFile, SourceEntry};

/// Strata's own generic tests: not_null, unique, accepted_values, relationships.
const BUILTIN_GENERIC_TESTS: &str = include_str!("builtin/generic_tests.sql");

/// Strata's implementations of dbt's cross-database macros (`dbt.datediff`, ...).
const BUILTIN_CROSS_DB: &str = include_str!("builtin/cross_db.sql");

/// What the test loader reads.
struct TestInputs<'a> {
    model_patches: &'a HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    seed_patches: &'a HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    source_entries: &'a [(PathBuf, SourceEntry)],
    singular: Vec<(PathBuf, String, String)>,
    unit_tests: &'a [(PathBuf, yaml_serde::Value)],
}

/// How to load a project.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The project folder.
    pub project_dir: PathBuf,
    /// Where `profiles.yml` is, when given on the command line.
    pub profiles_dir: Option<PathBuf>,
    /// The target to use instead of the profile's default.
    pub target: Option<String>,
    /// `--vars` as YAML text.
    pub vars: Option<String>,
    /// `--threads`, overriding the target's.
    pub threads: Option<usize>,
    /// `--full-refresh`.
    pub full_refresh: bool,
    /// `--profile`: the profile to use instead of the project file's.
    pub profile: Option<String>,
}

/// A loaded project: configuration, target, nodes and their graph.
#[derive(Debug)]
pub struct Project {
    /// The project folder (absolute).
    pub root: PathBuf,
    /// The project file.
    pub config: ProjectConfig,
    /// Path of the project file.
    pub config_path: PathBuf,
    /// The selected target.
    pub target: Target,
    /// Enabled models by unique id, in file order.
    pub models: IndexMap<String, Model>,
    /// Sources by unique id.
    pub sources: IndexMap<String, Source>,
    /// Enabled seeds by unique id.
    pub seeds: IndexMap<String, Seed>,
    /// Enabled data tests by unique id.
    pub tests: IndexMap<String, DataTest>,
    /// Exposures by unique id (kept for the manifest and `exposure:` selection).
    pub exposures: IndexMap<String, crate::exposures::Exposure>,
    /// Docs blocks by name.
    pub docs: HashMap<String, String>,
    /// Parents-to-children edges between nodes.
    pub graph: Graph,
    /// Compiled templates and the dbt context.
    pub jinja: Arc<JinjaEnv>,
    /// Unique ids of disabled models.
    pub disabled: Vec<String>,
    /// When this invocation started.
    pub run_started_at: chrono::DateTime<chrono::Utc>,
    /// This invocation's id.
    pub invocation_id: String,
    /// `on-run-start` hooks of the project file, in order.
    pub on_run_start: Vec<crate::hooks::Hook>,
    /// `on-run-end` hooks of the project file, in order.
    pub on_run_end: Vec<crate::hooks::Hook>,
}

impl Project {
    /// Load the project in `opts.project_dir` with its profile's target.
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let root = std::fs::canonicalize(&opts.project_dir)
            .map_err(|e| Error::io("open project folder", &opts.project_dir, e))?;
        let (config, config_path) = ProjectConfig::load(&root)?;
        let mut target = load_target(
            &root,
            opts.profiles_dir.as_deref(),
            opts.profile.as_deref().unwrap_or(config.profile_name()),
            opts.target.as_deref(),
        )?;
        if let Some(t) = opts.threads {
            target.threads = t.max(1);
        }
        let cli_vars = parse_cli_vars(opts.vars.as_deref())?;
        let mut loader = Loader::new(root, config, config_path, target, cli_vars);
        loader.full_refresh = opts.full_refresh;
        loader.load()
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// A model by name (in the root package).
    pub fn model_by_name(&self, name: &str) -> Option<&Model> {
        self.models.values().find(|m| m.name == name)
    }

    /// A model or seed by unique id.
    pub fn node(&self, unique_id: &str) -> Option<Node<'_>> {
        self.models
            .get(unique_id)
            .map(Node::Model)
            .or_else(|| self.seeds.get(unique_id).map(Node::Seed))
    }

    /// Every model and seed.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        self.models
            .values()
            .map(Node::Model)
            .chain(self.seeds.values().map(Node::Seed))
    }

    /// The folder for artifacts and compiled SQL.
    pub fn target_dir(&self) -> PathBuf {
        self.root.join(&self.config.target_path)
    }
}

/// Parse `--vars` (YAML or JSON).
pub fn parse_cli_vars(text: Option<&str>) -> Result<IndexMap<String, serde_json::Value>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(IndexMap::new());
    };
    let value: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| {
        Error::user(format!("--vars is not valid YAML: {e}"))
            .with_hint("write it as a mapping, e.g. --vars '{start_date: 2024-01-01, limit: 10}'")
    })?;
    match yaml_to_json(&value) {
        serde_json::Value::Object(m) => Ok(m.into_iter().collect()),
        serde_json::Value::Null => Ok(IndexMap::new()),
        _ => Err(Error::user("--vars must be a mapping of names to values")
            .with_hint("e.g. --vars '{start_date: 2024-01-01}'")),
    }
}

/// Files of a project folder set with a given extension, sorted, as (absolute, relative).
fn files_with_ext(root: &Path, dirs: &[String], exts: &[&str]) -> Vec<(PathBuf, PathBuf)> {
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

struct Loader {
    root: PathBuf,
    config: ProjectConfig,
    config_path: PathBuf,
    target: Target,
    cli_vars: IndexMap<String, serde_json::Value>,
    run_started_at: chrono::DateTime<chrono::Utc>,
    invocation_id: String,
    full_refresh: bool,
}

/// A model file found on disk, before rendering.
struct ModelFile {
    abs: PathBuf,
    rel: PathBuf,
    path_in_model_dir: PathBuf,
    name: String,
    fqn: Vec<String>,
    raw_sql: String,
    /// The package (root project or installed package) the model belongs to.
    package: String,
    /// Model or snapshot.
    kind: SqlKind,
    /// The Jinja template name of its SQL.
    template: PathBuf,
}

impl Loader {
    fn new(
        root: PathBuf,
        config: ProjectConfig,
        config_path: PathBuf,
        target: Target,
        cli_vars: IndexMap<String, serde_json::Value>,
    ) -> Self {
        Self {
            root,
            config,
            config_path,
            target,
            cli_vars,
            run_started_at: chrono::Utc::now(),
            invocation_id: uuid_like(),
            full_refresh: false,
        }
    }

    /// Load the project, phase by phase: docs blocks, packages and macros (the Jinja
    /// environment), properties files, model and test files, the parse render of each model,
    /// seeds, sources and tests, then the checks and the graph.
    fn load(self) -> Result<Project> {
        let package = self.config.name.clone();
        let docs = self.docs_blocks()?;
        let packages = crate::packages::load(&self.root, &self.install_path())?;
        let macro_files = self.macro_files(&packages)?;
        let mut jinja = self.jinja_env(&docs, &macro_files)?;
        // The root project, then each package: (folder, project file, package name).
        let roots: Vec<(PathBuf, &ProjectConfig, String)> =
            std::iter::once((self.root.clone(), &self.config, package.clone()))
                .chain(
                    packages
                        .iter()
                        .map(|p| (p.root.clone(), &p.config, p.name.clone())),
                )
                .collect();
        let Properties {
            models: patches,
            seeds: seed_patches,
            sources: source_entries,
            unit_tests,
            exposures: exposure_lists,
        } = self.properties(&roots)?;
        let (files, mut by_name) = self.model_files(&roots, &patches, &mut jinja)?;
        let singular = self.singular_tests(&mut jinja)?;
        let jinja = Arc::new(jinja);
        let (models, mut disabled) = self.parse_models(&jinja, files, &packages, &patches)?;
        // A `models:` entry naming a seed describes the seed, as in dbt.
        let seed_files: std::collections::HashSet<String> =
            files_with_ext(&self.root, &self.config.seed_paths, &["csv"])
                .into_iter()
                .filter_map(|(abs, _)| Some(abs.file_stem()?.to_str()?.to_string()))
                .collect();
        let mut seed_patches = seed_patches;
        for (name, patch) in &patches {
            if !by_name.contains_key(name)
                && seed_files.contains(name)
                && !seed_patches.contains_key(name)
            {
                seed_patches.insert(name.clone(), patch.clone());
            }
        }
        let model_names: Vec<String> = by_name.keys().cloned().collect();
        let seeds = self.seeds(&jinja, &seed_patches, &mut by_name, &package, &mut disabled)?;
        // As dbt does, an entry for a model that does not exist is a warning (a model removed
        // or renamed, its YAML left behind), and its tests do not run.
        for (name, (file, _)) in &patches {
            if !model_names.contains(name) && !seeds.values().any(|s| &s.name == name) {
                tracing::warn!(
                    "{}: describes model `{name}`, but there is no model file `{name}.sql`{}; the entry and its tests are ignored (fix the `name:` or remove the entry)",
                    file.display(),
                    did_you_mean(name, model_names.iter().map(String::as_str))
                );
            }
        }
        let sources = self.sources(&jinja, &source_entries, &package)?;
        let tests = self.tests(
            &jinja,
            TestInputs {
                model_patches: &patches,
                seed_patches: &seed_patches,
                source_entries: &source_entries,
                singular,
                unit_tests: &unit_tests,
            },
            &models,
            &seeds,
            &sources,
        )?;

        let lookup = |text: &str| -> Option<String> {
            let (kind, parts) = crate::exposures::parse_call(text)?;
            match (kind, parts.as_slice()) {
                ("ref", [.., name]) => models
                    .values()
                    .find(|m| &m.name == name)
                    .map(|m| m.unique_id.clone())
                    .or_else(|| {
                        seeds
                            .values()
                            .find(|s| &s.name == name)
                            .map(|s| s.unique_id.clone())
                    }),
                ("source", [s, t]) => {
                    let id = format!("source.{package}.{s}.{t}");
                    sources.contains_key(&id).then_some(id)
                }
                _ => None,
            }
        };
        let mut exposures = IndexMap::new();
        for (file, list) in &exposure_lists {
            for e in crate::exposures::parse_exposures(list, &package, file, &lookup)? {
                exposures.insert(e.unique_id.clone(), e);
            }
        }
        check_unique_relations(&models, &seeds)?;
        let mut graph = build_graph(&models, &seeds, &sources, &disabled)?;
        for t in tests.values() {
            graph.add_node(&t.unique_id);
            for d in &t.depends_on {
                graph.add_edge(d, &t.unique_id);
            }
            // A unit test runs before its model, which `build` skips when the test fails.
            if let (TestKind::Unit(_), Some(model)) = (&t.kind, &t.attached_node) {
                graph.add_edge(&t.unique_id, model);
            }
        }
        check_configs(
            &models,
            &seeds,
            &tests,
            &self.config.unknown_configs,
            jinja.materializations(),
        )?;
        let (on_run_start, on_run_end) = run_hooks(&self.config, &self.config_path)?;
        let project = Project {
            on_run_start,
            on_run_end,
            root: self.root,
            config: self.config,
            config_path: self.config_path,
            target: self.target,
            models,
            sources,
            seeds,
            tests,
            exposures,
            docs,
            graph,
            jinja,
            disabled,
            run_started_at: self.run_started_at,
            invocation_id: self.invocation_id,
        };
        // dbt's `graph` (nodes and sources as the manifest has them), for templates that
        // read it; built only when one does.
        let mentions_graph = |sql: &str| sql.contains("graph.") || sql.contains("graph[");
        if project.models.values().any(|m| mentions_graph(&m.raw_sql))
            || project
                .jinja
                .macros()
                .values()
                .any(|m| mentions_graph(&m.sql))
        {
            let manifest = crate::artifacts::manifest(&project);
            project.jinja.set_graph(serde_json::json!({
                "nodes": manifest["nodes"],
                "sources": manifest["sources"],
                "exposures": {},
                "metrics": {},
                "groups": {},
                "semantic_models": {},
                "saved_queries": {},
                "unit_tests": manifest["unit_tests"],
            }));
        }
        Ok(project)
    }

    /// Docs blocks from every .md file under model and macro paths.
    fn docs_blocks(&self) -> Result<HashMap<String, String>> {
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

    /// Where `deps` installs packages.
    fn install_path(&self) -> String {
        self.config.packages_install_path()
    }

    /// Folders of generic tests: `generic/` under each test path.
    fn generic_dirs(&self) -> Vec<String> {
        self.config
            .test_paths
            .iter()
            .map(|t| format!("{}/generic", t.trim_end_matches('/')))
            .collect()
    }

    /// Every macro file, as (file, package, text): Strata's built-ins, then the packages', then
    /// the project's (macro paths, and generic tests under test paths), so later definitions
    /// win. A macro defined twice in the project is an error.
    fn macro_files(
        &self,
        packages: &[crate::packages::Package],
    ) -> Result<Vec<(PathBuf, String, String)>> {
        let package = self.config.name.clone();
        // Macros: project macro paths and generic tests under test paths (`tests/generic`).
        let generic_dirs = self.generic_dirs();
        let mut macro_files = Vec::new();
        for (abs, rel) in files_with_ext(&self.root, &self.config.macro_paths, &["sql"])
            .into_iter()
            .chain(files_with_ext(&self.root, &generic_dirs, &["sql"]))
        {
            let text = crate::jinja::tests_as_macros(&read_to_string(&abs)?);
            macro_files.push((rel, package.clone(), text));
        }
        let mut seen_macros: HashMap<String, PathBuf> = HashMap::new();
        for (file, _, text) in &macro_files {
            for (name, line, _) in crate::jinja::find_macros(text) {
                if let Some(first) = seen_macros.insert(name.clone(), file.clone()) {
                    return Err(Error::at(
                        Location::line(file, line),
                        format!("macro `{name}` is also defined in {}", first.display()),
                    )
                    .with_hint("rename one of them; macro names are global to a project"));
                }
            }
        }
        // Package macros come before the root project's, so the root's definitions win.
        let mut package_macros = Vec::new();
        for pkg in packages {
            let dirs: Vec<String> = pkg
                .config
                .macro_paths
                .iter()
                .cloned()
                .chain(
                    pkg.config
                        .test_paths
                        .iter()
                        .map(|t| format!("{}/generic", t.trim_end_matches('/'))),
                )
                .collect();
            for (abs, _) in files_with_ext(&pkg.root, &dirs, &["sql"]) {
                let text = crate::jinja::tests_as_macros(&read_to_string(&abs)?);
                package_macros.push((relative_to(&abs, &self.root), pkg.name.clone(), text));
            }
        }
        macro_files.splice(0..0, package_macros);
        // Built-in macros come first, so a project's own definitions replace them.
        macro_files.insert(
            0,
            (
                PathBuf::from("<strata>/generic_tests.sql"),
                "strata".to_string(),
                crate::jinja::tests_as_macros(BUILTIN_GENERIC_TESTS),
            ),
        );
        macro_files.insert(
            1,
            (
                PathBuf::from("<strata>/cross_db.sql"),
                "strata".to_string(),
                BUILTIN_CROSS_DB.to_string(),
            ),
        );
        Ok(macro_files)
    }

    /// The project file's `dispatch:` list: for each `macro_namespace`, its `search_order`.
    fn dispatch_search_orders(&self) -> Result<IndexMap<String, Vec<String>>> {
        let mut out = IndexMap::new();
        let Some(entries) = self.config.other.get("dispatch") else {
            return Ok(out);
        };
        let bad = || {
            Error::at(
                Location::file(&self.config_path),
                "`dispatch:` must be a list of `{macro_namespace: <package>, search_order: [<package>, ...]}`",
            )
        };
        let yaml_serde::Value::Sequence(entries) = entries else {
            return Err(bad());
        };
        for entry in entries {
            let namespace = entry.get("macro_namespace").and_then(|v| v.as_str());
            let order = entry.get("search_order").and_then(|v| v.as_sequence());
            let (Some(namespace), Some(order)) = (namespace, order) else {
                return Err(bad());
            };
            let order: Option<Vec<String>> = order
                .iter()
                .map(|p| p.as_str().map(str::to_string))
                .collect();
            out.insert(namespace.to_string(), order.ok_or_else(bad)?);
        }
        Ok(out)
    }

    /// The Jinja environment: the dbt context (vars, target, docs, ...) and every macro.
    fn jinja_env(
        &self,
        docs: &HashMap<String, String>,
        macro_files: &[(PathBuf, String, String)],
    ) -> Result<JinjaEnv> {
        let globals = Globals {
            project_name: self.config.name.clone(),
            project_vars: self
                .config
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), yaml_to_json(v)))
                .collect(),
            cli_vars: self.cli_vars.clone(),
            docs: docs.clone(),
            target: target_context(&self.target),
            run_started_at: self.run_started_at,
            invocation_id: self.invocation_id.clone(),
            full_refresh: self.full_refresh,
            dispatch: self.dispatch_search_orders()?,
        };
        JinjaEnv::new(globals, macro_files).map_err(|(file, e)| {
            Error::jinja(file, &e).with_hint(
                "fix the macro's Jinja syntax: every {% macro %} needs an {% endmacro %}",
            )
        })
    }

    /// Properties files (YAML under model, seed and snapshot paths) of the project and its
    /// packages: entries for models and snapshots, seeds, and sources.
    fn properties(&self, roots: &[(PathBuf, &ProjectConfig, String)]) -> Result<Properties> {
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
    fn model_files(
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
    fn singular_tests(&self, jinja: &mut JinjaEnv) -> Result<Vec<(PathBuf, String, String)>> {
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

    /// Parse-render each model: its refs, sources and inline config; the enabled models, and
    /// the unique ids of disabled ones.
    fn parse_models(
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

    fn seeds(
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

    fn tests(
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

    fn sources(
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

fn target_context(t: &Target) -> IndexMap<String, serde_json::Value> {
    let mut m = t.raw.clone();
    // Secrets never reach templates through `target`.
    for secret in ["password", "private_key", "private_key_passphrase", "token"] {
        m.shift_remove(secret);
    }
    m.insert("name".into(), t.name.clone().into());
    m.insert("target_name".into(), t.name.clone().into());
    m.insert("profile_name".into(), t.profile_name.clone().into());
    m.insert("type".into(), t.kind.clone().into());
    m.insert("schema".into(), t.schema.clone().into());
    m.insert("database".into(), t.database.clone().into());
    m.insert("threads".into(), t.threads.into());
    m
}

fn build_graph(
    models: &IndexMap<String, Model>,
    seeds: &IndexMap<String, Seed>,
    sources: &IndexMap<String, Source>,
    disabled: &[String],
) -> Result<Graph> {
    let mut graph = Graph::new();
    let names: HashMap<&str, &str> = models
        .values()
        .filter(|m| m.refable())
        .map(|m| (m.name.as_str(), m.unique_id.as_str()))
        .chain(
            seeds
                .values()
                .map(|s| (s.name.as_str(), s.unique_id.as_str())),
        )
        .collect();
    let disabled: HashSet<&str> = disabled
        .iter()
        .filter_map(|d| d.rsplit('.').next())
        .collect();
    for s in sources.keys().chain(seeds.keys()) {
        graph.add_node(s);
    }
    for m in models.values() {
        graph.add_node(&m.unique_id);
    }
    for m in models.values() {
        for r in &m.refs {
            let parent = resolve_ref_id(&names, m, r).map_err(|msg| {
                let analysis = models
                    .values()
                    .any(|a| !a.refable() && a.name == r.name);
                let hint = if analysis {
                    format!(
                        "`{}` is an analysis: analyses are compiled, never built, so nothing can ref them; make it a model to use its rows",
                        r.name
                    )
                } else if disabled.contains(r.name.as_str()) {
                    format!(
                        "model `{}` is disabled (enabled: false); enable it or remove this ref",
                        r.name
                    )
                } else {
                    "check the model name; refs name a model file without `.sql`".to_string()
                };
                Error::at(Location::file(&m.original_file_path), msg)
                    .with_node(format!("model `{}`", m.name))
                    .with_hint(hint)
            })?;
            graph.add_edge(parent, &m.unique_id);
        }
        for (s, t) in &m.sources {
            let id = format!("source.{}.{s}.{t}", m.package);
            if !sources.contains_key(&id) {
                let known: Vec<String> = sources
                    .values()
                    .map(|x| format!("{}.{}", x.source_name, x.name))
                    .collect();
                return Err(Error::at(
                    Location::file(&m.original_file_path),
                    format!(
                        "source('{s}', '{t}') is not declared{}",
                        did_you_mean(&format!("{s}.{t}"), known.iter().map(String::as_str))
                    ),
                )
                .with_node(format!("model `{}`", m.name))
                .with_hint("declare it under `sources:` in a .yml file in a model folder"));
            }
            graph.add_edge(&id, &m.unique_id);
        }
    }
    if let Some(cycle) = graph.find_cycle() {
        // The cycle follows parent -> child edges; print it as "refs": each model refs the next.
        let mut names: Vec<String> = cycle
            .iter()
            .rev()
            .map(|id| id.rsplit('.').next().unwrap_or(id).to_string())
            .collect();
        if let Some(first) = names
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.as_str())
            .map(|(i, _)| i)
        {
            names.rotate_left(first);
        }
        let first = models
            .values()
            .find(|m| m.name == names[0])
            .map(|m| m.original_file_path.clone());
        let err = Error::user(format!(
            "models depend on each other in a cycle: {} -> {} (each refs the next)",
            names.join(" -> "),
            names[0]
        ))
        .with_hint("a model cannot (indirectly) ref itself; remove one of these refs");
        return Err(match first {
            Some(f) => err.with_location(Location::file(f)),
            None => err,
        });
    }
    Ok(graph)
}

fn resolve_ref_id<'a>(
    names: &HashMap<&str, &'a str>,
    _from: &Model,
    r: &RefCall,
) -> std::result::Result<&'a str, String> {
    let found = names.get(r.name.as_str()).copied();
    if let Some(pkg) = &r.package {
        return match found {
            Some(id) if id.split('.').nth(1) == Some(pkg.as_str()) => Ok(id),
            Some(id) => Err(format!(
                "ref('{pkg}', '{}'): `{}` is not in package `{pkg}` (it is {id})",
                r.name, r.name
            )),
            None => Err(format!(
                "ref('{pkg}', '{}') does not exist; is package `{pkg}` in packages.yml?",
                r.name
            )),
        };
    }
    found.ok_or_else(|| {
        format!(
            "ref('{}') does not exist{}",
            r.name,
            did_you_mean(&r.name, names.keys().copied())
        )
    })
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

/// dbt's fully qualified name: the package, the folders under the node's path, the name.
fn fqn_of(package: &str, path_in_dir: &Path, name: &str) -> Vec<String> {
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

/// The name in a Jinja "unknown function" error.
fn unknown_name(e: &minijinja::Error) -> Option<String> {
    if e.kind() != minijinja::ErrorKind::UnknownFunction {
        return None;
    }
    let detail = e.detail()?;
    Some(detail.trim_end_matches(" is unknown").trim().to_string())
}

fn uuid_like() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha256::digest(format!("{now}-{}", std::process::id()).as_bytes());
    let h = format!("{digest:x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Relations must be unique: two models writing the same table would clobber each other.
fn check_unique_relations(
    models: &IndexMap<String, Model>,
    seeds: &IndexMap<String, Seed>,
) -> Result<()> {
    let mut relations: HashMap<&Relation, Node<'_>> = HashMap::new();
    for n in models
        .values()
        .map(Node::Model)
        .chain(seeds.values().map(Node::Seed))
    {
        if n.materialized() == "ephemeral" {
            continue;
        }
        if let Some(other) = relations.insert(n.relation(), n) {
            return Err(Error::at(
                Location::file(n.file()),
                format!(
                    "{} `{}` and {} `{}` both build {}",
                    other.resource_type(),
                    other.name(),
                    n.resource_type(),
                    n.name(),
                    n.relation()
                ),
            )
            .with_hint("give one of them another `alias` or `schema`"));
        }
    }

    Ok(())
}

/// The entries of a project's properties files.
struct Properties {
    /// Models and snapshots, by name, with their file.
    models: HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    /// Seeds, by name, with their file.
    seeds: HashMap<String, (PathBuf, crate::properties::ModelEntry)>,
    /// Sources, with their file.
    sources: Vec<(PathBuf, SourceEntry)>,
    /// `unit_tests:` lists of the project's properties files, with their file.
    unit_tests: Vec<(PathBuf, yaml_serde::Value)>,
    /// `exposures:` lists of the project's properties files, with their file.
    exposures: Vec<(PathBuf, yaml_serde::Value)>,
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

/// Check what can be checked of the nodes' configurations at load: words from a fixed list
/// (`materialized`, `incremental_strategy`, ...), hooks that must be SQL, grants; keys Strata
/// does not act on are named once per file, as a warning.
fn check_configs(
    models: &IndexMap<String, Model>,
    seeds: &IndexMap<String, Seed>,
    tests: &IndexMap<String, DataTest>,
    warned_in_project_file: &std::collections::BTreeSet<String>,
    custom: &[crate::jinja::CustomMaterialization],
) -> Result<()> {
    use strata_common::words::{
        HardDeletes, IncrementalStrategy, Materialized, OnSchemaChange, SnapshotStrategy,
    };
    for m in models.values() {
        let c = &m.config;
        // A materialization a package defines with `{% materialization %}`: named plainly.
        if Materialized::parse(c.materialized()).is_err()
            && let Some(def) = custom.iter().find(|d| d.name == c.materialized())
        {
            return Err(Error::at(
                Location::file(&m.original_file_path),
                format!(
                    "materialized `{}` is a custom materialization ({}:{}), and Strata does not run custom materializations",
                    def.name,
                    def.file.display(),
                    def.line
                ),
            )
            .with_node(format!("{} `{}`", m.kind.as_str(), m.name))
            .with_hint("use one of Strata's: table, view, incremental, ephemeral (or a snapshot), and a post-hook for what the custom one added"));
        }
        let checked = (|| -> std::result::Result<(), String> {
            c.word(Materialized::KEY, Materialized::parse)?;
            c.word(IncrementalStrategy::KEY, IncrementalStrategy::parse)?;
            c.word(OnSchemaChange::KEY, OnSchemaChange::parse)?;
            if let Some(q) = c.get(crate::quarantine::KEY) {
                if !matches!(c.materialized(), "table" | "incremental") {
                    return Err(format!(
                        "`quarantine` sets rows aside while a table is written: it works for table and incremental models, not {}",
                        c.materialized()
                    ));
                }
                crate::quarantine::checks(q).map_err(|e| format!("`quarantine`: {e}"))?;
            }
            if c.materialized() == "snapshot" {
                c.word(SnapshotStrategy::KEY, SnapshotStrategy::parse)?;
                c.word(HardDeletes::KEY, HardDeletes::parse)?;
            }
            Ok(())
        })();
        let checked = checked.and_then(|()| {
            c.values()
                .iter()
                .try_for_each(|(key, value)| crate::validate::check_value(key, value))
        });
        checked.map_err(|msg| {
            // Name the line of the `config()` argument when the value was set there.
            let key = msg.split('`').nth(1).unwrap_or_default();
            let location = match crate::validate::config_call_line(&m.raw_sql, key) {
                Some(line) => Location::line(&m.original_file_path, line),
                None => Location::file(&m.original_file_path),
            };
            Error::at(location, msg).with_node(format!("{} `{}`", m.kind.as_str(), m.name))
        })?;
    }
    for seed in seeds.values() {
        if let Some(d) = seed.config.get("delimiter") {
            let one_byte = d.as_str().is_some_and(|d| d.len() == 1);
            if !one_byte {
                return Err(Error::at(
                    Location::file(&seed.original_file_path),
                    format!("`delimiter` must be one character, not {d}"),
                )
                .with_node(format!("seed `{}`", seed.name))
                .with_hint("use a single character such as `;`, `|` or `\\t`"));
            }
        }
    }
    let mut warned: std::collections::HashSet<(String, PathBuf)> = Default::default();
    let nodes = models
        .values()
        .map(|m| {
            (
                &m.config,
                &m.original_file_path,
                format!("model `{}`", m.name),
                // Value types of models were checked above, with the config() line.
                true,
            )
        })
        .chain(seeds.values().map(|s| {
            (
                &s.config,
                &s.original_file_path,
                format!("seed `{}`", s.name),
                false,
            )
        }))
        .chain(tests.values().map(|t| {
            (
                &t.config,
                &t.original_file_path,
                format!("test `{}`", t.name),
                false,
            )
        }));
    for (config, file, node, values_checked) in nodes {
        for key in ["pre_hook", "post_hook"] {
            config.hooks(key).map_err(|msg| {
                Error::at(Location::file(file), msg)
                    .with_node(node.clone())
                    .with_hint("write hooks as SQL strings, e.g. post_hook: \"delete from {{ this }} where amount < 0\"")
            })?;
        }
        config
            .grants()
            .map_err(|msg| Error::at(Location::file(file), msg).with_node(node.clone()))?;
        for (key, value) in config.values().iter().filter(|_| !values_checked) {
            crate::validate::check_value(key, value)
                .map_err(|msg| Error::at(Location::file(file), msg).with_node(node.clone()))?;
        }
        for key in config.values().keys() {
            if !crate::config::KNOWN_CONFIGS.contains(&key.as_str())
                && !warned_in_project_file.contains(key)
                && warned.insert((key.clone(), file.clone()))
            {
                tracing::warn!(
                    "{}: config `{key}` ({node}) is not a config Strata knows and is ignored{}",
                    file.display(),
                    strata_common::did_you_mean(key, crate::config::KNOWN_CONFIGS.iter().copied())
                );
            }
        }
    }
    Ok(())
}

/// The project file's `on-run-start` and `on-run-end` hooks.
fn run_hooks(
    config: &ProjectConfig,
    path: &Path,
) -> Result<(Vec<crate::hooks::Hook>, Vec<crate::hooks::Hook>)> {
    let file = PathBuf::from(path.file_name().unwrap_or_default());
    let read = |key: &str| -> Result<Vec<crate::hooks::Hook>> {
        let Some(value) = config.other.get(key) else {
            return Ok(Vec::new());
        };
        crate::hooks::parse_hooks(&yaml_to_json(value), key).map_err(|msg| {
            Error::at(Location::file(&file), msg)
                .with_hint(format!("{key}: a SQL string, or a list of them"))
        })
    };
    Ok((read("on-run-start")?, read("on-run-end")?))
}
