//! [`Project::load`]: read a project folder into nodes, configs and a DAG.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use strata_common::{Location, did_you_mean};

use crate::config::{ProjectConfig, yaml_to_json};
use crate::data_tests::{DataTest, TestKind};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::jinja::JinjaEnv;
use crate::node::{Model, Node, Seed, Source};
use crate::profile::{Target, load_target};

mod checks;
mod declared_tests;
mod environment;
mod files;
mod nodes;

use checks::{build_graph, check_configs, check_unique_relations};
use declared_tests::TestInputs;
use files::{Properties, files_with_ext};

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

    /// Where `deps` installs packages.
    fn install_path(&self) -> String {
        self.config.packages_install_path()
    }
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
