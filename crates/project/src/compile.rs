//! Compile a model: render its Jinja against resolved relations and inline ephemeral models
//! as common table expressions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use strata_common::did_you_mean;

use crate::error::{Error, Result};
use crate::jinja::{BatchWindow, Introspector, Mode, NodeInfo, Resolved, Resolver, describe_error};
use crate::node::{Model, RefCall};
use crate::project::Project;

/// A model's compiled SQL.
#[derive(Debug, Clone)]
pub struct CompiledModel {
    /// The model's unique id.
    pub unique_id: String,
    /// The SQL to execute, ephemeral parents inlined.
    pub sql: String,
    /// Ephemeral models inlined, in order.
    pub ephemerals: Vec<String>,
    /// The line of the model's file that the SQL's first line comes from, when the SQL's
    /// lines are the file's (no ephemeral inlined, no template line added or removed), so an
    /// error "at line N" of the SQL can name the file's line.
    pub source_line: Option<usize>,
}

impl CompiledModel {
    /// The model file's line for line `n` of the SQL, when known.
    pub fn file_line(&self, n: usize) -> Option<usize> {
        Some(self.source_line? + n - 1)
    }
}

/// A model's hooks, rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelHooks {
    /// Run before the model is built.
    pub pre: Vec<String>,
    /// Run after it was built.
    pub post: Vec<String>,
}

/// Resolves refs and sources of a project's nodes.
#[derive(Debug)]
pub struct ProjectResolver {
    models: HashMap<String, Resolved>,
    sources: HashMap<(String, String), Resolved>,
    /// The `event_time` column of models, seeds (by name) and sources that declare one.
    event_times: HashMap<String, String>,
    /// The batch being compiled: refs to inputs with an `event_time` read only its rows.
    batch: Option<BatchWindow>,
    introspector: Option<Arc<dyn Introspector>>,
    defer: Option<Defer>,
    /// `--empty`: every ref and source reads no rows (a build that checks the SQL and the
    /// schemas, fast, as dbt's `--empty`).
    empty: bool,
}

/// `--defer`: refs to models outside the selection that the current target has not built
/// resolve to the relations an earlier run built (read through another catalog).
#[derive(Debug, Clone, Default)]
pub struct Defer {
    /// Unique ids in the current selection (never deferred).
    pub selected: std::collections::HashSet<String>,
    /// Relations of the earlier run by model name, with the catalog that reads them.
    pub relations: HashMap<String, crate::node::Relation>,
    /// `--favor-state`: read the earlier run's relation even when this target has built one.
    pub favor_state: bool,
}

impl ProjectResolver {
    /// A resolver over the project's enabled models and sources.
    pub fn new(project: &Project) -> Self {
        let models = project
            .models
            .values()
            .filter(|m| m.refable())
            .map(|m| {
                let ephemeral = (m.materialized() == "ephemeral")
                    .then(|| (m.unique_id.clone(), cte_name(&m.name)));
                (
                    m.name.clone(),
                    Resolved {
                        relation: m.relation.clone(),
                        ephemeral,
                        filter: None,
                    },
                )
            })
            .chain(project.seeds.values().map(|s| {
                (
                    s.name.clone(),
                    Resolved {
                        relation: s.relation.clone(),
                        ephemeral: None,
                        filter: None,
                    },
                )
            }))
            .collect();
        let sources = project
            .sources
            .values()
            .map(|s| {
                (
                    (s.source_name.clone(), s.name.clone()),
                    Resolved {
                        relation: s.relation.clone(),
                        ephemeral: None,
                        filter: None,
                    },
                )
            })
            .collect();
        let event_times = project
            .nodes()
            .filter_map(|n| {
                Some((
                    n.name().to_string(),
                    n.config().get_str("event_time")?.to_string(),
                ))
            })
            .chain(project.sources.values().filter_map(|s| {
                Some((
                    format!("{}.{}", s.source_name, s.name),
                    s.config.get_str("event_time")?.to_string(),
                ))
            }))
            .collect();
        Self {
            models,
            sources,
            event_times,
            batch: None,
            introspector: None,
            defer: None,
            empty: false,
        }
    }

    /// A copy compiling for `batch`.
    fn for_batch(&self, batch: BatchWindow) -> Self {
        Self {
            models: self.models.clone(),
            sources: self.sources.clone(),
            event_times: self.event_times.clone(),
            batch: Some(batch),
            introspector: self.introspector.clone(),
            defer: self.defer.clone(),
            empty: self.empty,
        }
    }

    /// An input as this compile reads it: the batch's rows, or none under `--empty`.
    fn filtered(&self, resolved: Resolved, key: &str) -> Resolved {
        let mut resolved = self.batch_filtered(resolved, key);
        if self.empty && resolved.ephemeral.is_none() {
            resolved.filter = Some(match resolved.filter.take() {
                Some(f) => format!("({f}) and false"),
                None => "false".to_string(),
            });
        }
        resolved
    }

    /// Filter an input to the batch by its `event_time` (key: a node name or `source.table`).
    fn batch_filtered(&self, mut resolved: Resolved, key: &str) -> Resolved {
        if let (Some(batch), Some(column)) = (&self.batch, self.event_times.get(key)) {
            let col = strata_common::quote_ident(column);
            resolved.filter = Some(format!(
                "{col} >= cast({} as timestamp(6)) and {col} < cast({} as timestamp(6))",
                strata_common::quote_literal(&batch.start),
                strata_common::quote_literal(&batch.end)
            ));
        }
        resolved
    }
}

impl Resolver for ProjectResolver {
    fn resolve_ref(&self, call: &RefCall) -> std::result::Result<Resolved, String> {
        if let (Some(defer), Some(current)) = (&self.defer, self.models.get(&call.name))
            && current.ephemeral.is_none()
            && let Some(earlier) = defer.relations.get(&call.name)
        {
            let selected = defer
                .selected
                .iter()
                .any(|id| id.rsplit('.').next() == Some(call.name.as_str()));
            let built = self
                .introspector
                .as_ref()
                .is_some_and(|i| matches!(i.columns(&current.relation), Ok(Some(_))));
            if !selected && (defer.favor_state || !built) {
                let deferred = Resolved {
                    relation: earlier.clone(),
                    ephemeral: None,
                    filter: None,
                };
                return Ok(self.filtered(deferred, &call.name));
            }
        }
        let found = self.models.get(&call.name).cloned().ok_or_else(|| {
            format!(
                "ref('{}') does not exist{}",
                call.name,
                did_you_mean(&call.name, self.models.keys().map(String::as_str))
            )
        })?;
        Ok(self.filtered(found, &call.name))
    }

    fn resolve_source(&self, source: &str, table: &str) -> std::result::Result<Resolved, String> {
        let found = self
            .sources
            .get(&(source.to_string(), table.to_string()))
            .cloned()
            .ok_or_else(|| format!("source('{source}', '{table}') is not declared"))?;
        Ok(self.filtered(found, &format!("{source}.{table}")))
    }

    fn introspector(&self) -> Option<&dyn Introspector> {
        self.introspector.as_deref()
    }

    fn batch(&self) -> Option<&BatchWindow> {
        self.batch.as_ref()
    }
}

/// The CTE name dbt gives an ephemeral model.
pub fn cte_name(model: &str) -> String {
    format!("__dbt__cte__{model}")
}

/// Compiles models of one project, caching results.
#[derive(Debug)]
pub struct Compiler {
    project: Arc<Project>,
    resolver: Arc<ProjectResolver>,
    cache: HashMap<String, CompiledModel>,
}

impl Compiler {
    /// A compiler for `project`.
    pub fn new(project: Arc<Project>) -> Self {
        Self {
            resolver: Arc::new(ProjectResolver::new(&project)),
            project,
            cache: HashMap::new(),
        }
    }

    /// The project it compiles.
    pub fn project(&self) -> &Arc<Project> {
        &self.project
    }

    /// Let templates run queries on a warehouse (`run_query`, `statement`,
    /// `adapter.get_relation`, `adapter.get_columns_in_relation`).
    pub fn with_introspector(mut self, introspector: Option<Arc<dyn Introspector>>) -> Self {
        let mut resolver = ProjectResolver::new(&self.project);
        resolver.introspector = introspector;
        resolver.defer = self.resolver.defer.clone();
        self.resolver = Arc::new(resolver);
        self.cache.clear();
        self
    }

    /// Resolve refs to unbuilt, unselected models to an earlier run's relations.
    pub fn with_defer(mut self, defer: Option<Defer>) -> Self {
        let mut resolver = ProjectResolver::new(&self.project);
        resolver.introspector = self.resolver.introspector.clone();
        resolver.empty = self.resolver.empty;
        resolver.defer = defer;
        self.resolver = Arc::new(resolver);
        self.cache.clear();
        self
    }

    /// `--empty`: every ref and source reads no rows.
    pub fn with_empty(mut self, empty: bool) -> Self {
        let mut resolver = ProjectResolver::new(&self.project);
        resolver.introspector = self.resolver.introspector.clone();
        resolver.defer = self.resolver.defer.clone();
        resolver.empty = empty;
        self.resolver = Arc::new(resolver);
        self.cache.clear();
        self
    }

    /// Compile one model by unique id.
    pub fn compile(&mut self, unique_id: &str) -> Result<CompiledModel> {
        if let Some(c) = self.cache.get(unique_id) {
            return Ok(c.clone());
        }
        let model = self
            .project
            .models
            .get(unique_id)
            .ok_or_else(|| Error::Internal(format!("compile: unknown node {unique_id}")))?;
        let (body, captured, source_line) = self.render(model)?;
        let mut ctes: Vec<(String, String)> = Vec::new();
        let mut ephemerals = Vec::new();
        for (eph_id, cte) in &captured.ephemerals {
            let inner = self.compile(eph_id)?;
            ephemerals.push(eph_id.clone());
            ctes.push((cte.clone(), inner.sql));
        }
        let sql = inject_ctes(&body, &ctes);
        let compiled = CompiledModel {
            unique_id: unique_id.to_string(),
            source_line: source_line.filter(|_| ctes.is_empty()),
            sql,
            ephemerals,
        };
        self.cache.insert(unique_id.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// Compile a microbatch model for one batch: refs and sources with an `event_time` read
    /// only the batch's rows, and `model.batch` describes it. Not cached.
    pub fn compile_batch(&mut self, unique_id: &str, batch: BatchWindow) -> Result<CompiledModel> {
        let resolver = self.resolver.clone();
        let cache = std::mem::take(&mut self.cache);
        self.resolver = Arc::new(resolver.for_batch(batch));
        let compiled = self.compile(unique_id);
        self.resolver = resolver;
        self.cache = cache;
        compiled
    }

    /// Compile a data test to its failing-rows query.
    pub fn compile_test(&mut self, unique_id: &str) -> Result<String> {
        let test = self
            .project
            .tests
            .get(unique_id)
            .ok_or_else(|| Error::Internal(format!("compile: unknown test {unique_id}")))?;
        let info = NodeInfo {
            unique_id: test.unique_id.clone(),
            name: test.name.clone(),
            package: test.package.clone(),
            resource_type: "test".into(),
            fqn: test.fqn.clone(),
            original_file_path: test.original_file_path.clone(),
            config: test.config.clone(),
            relation: None,
        };
        let resolver: Arc<dyn Resolver> = self.resolver.clone();
        let rendered = match &test.kind {
            crate::data_tests::TestKind::Unit(unit) => {
                let (test, unit) = (test.clone(), unit.clone());
                return self.compile_unit_test(&test, &unit);
            }
            crate::data_tests::TestKind::Generic { .. } => self.project.jinja.render_source(
                &test.original_file_path.to_string_lossy(),
                &test.jinja_call().unwrap_or_default(),
                Mode::Compile,
                info,
                Some(resolver),
            ),
            crate::data_tests::TestKind::Singular { .. } => self.project.jinja.render(
                &test.original_file_path,
                Mode::Compile,
                info,
                Some(resolver),
            ),
        };
        let (body, captured) = rendered.map_err(|e| {
            Error::jinja(test.original_file_path.clone(), &e)
                .with_node(format!("test `{}`", test.name))
        })?;
        let mut ctes = Vec::new();
        for (eph_id, cte) in &captured.ephemerals {
            ctes.push((cte.clone(), self.compile(eph_id)?.sql));
        }
        Ok(inject_ctes(&clean_sql(&body), &ctes))
    }

    /// A model's `pre-hook`s and `post-hook`s, rendered in its context (`this`, `config`, ...),
    /// in the order they run.
    pub fn compile_hooks(&self, unique_id: &str) -> Result<ModelHooks> {
        let model = self
            .project
            .models
            .get(unique_id)
            .ok_or_else(|| Error::Internal(format!("compile: unknown node {unique_id}")))?;
        let render = |key: &str| -> Result<Vec<String>> {
            let hooks = model.config.hooks(key).map_err(|msg| {
                Error::at(
                    strata_common::Location::file(model.original_file_path.clone()),
                    msg,
                )
            })?;
            let what = key.replace('_', "-");
            let name = format!("{} ({what})", model.original_file_path.display());
            hooks
                .iter()
                .map(|h| {
                    let resolver: Arc<dyn Resolver> = self.resolver.clone();
                    self.project
                        .jinja
                        .render_source(
                            &name,
                            &h.sql,
                            Mode::Compile,
                            self.info(model),
                            Some(resolver),
                        )
                        .map(|(sql, _)| clean_sql(&sql))
                        .map_err(|e| {
                            Error::jinja(model.original_file_path.clone(), &e)
                                .with_node(format!("{what} of model `{}`", model.name))
                        })
                })
                .collect()
        };
        Ok(ModelHooks {
            pre: render("pre_hook")?,
            post: render("post_hook")?,
        })
    }

    /// One `on-run-start` or `on-run-end` hook (`phase`), rendered with the project's context
    /// and `extra` variables (`schemas`, `database_schemas`, and `results` at the end).
    pub fn compile_run_hook(
        &mut self,
        phase: &str,
        index: usize,
        sql: &str,
        extra: &serde_json::Value,
    ) -> Result<String> {
        let package = self.project.name().to_string();
        let name = format!("{package}-{phase}-{index}");
        let info = NodeInfo {
            unique_id: format!("operation.{package}.{name}"),
            name: name.clone(),
            package,
            resource_type: "operation".into(),
            fqn: vec![name],
            original_file_path: self
                .project
                .config_path
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default(),
            config: crate::config::NodeConfig::new(),
            relation: None,
        };
        let file = info.original_file_path.clone();
        let resolver: Arc<dyn Resolver> = self.resolver.clone();
        self.project
            .jinja
            .render_source_with(
                &format!("{} ({phase})", file.display()),
                sql,
                info,
                Some(resolver),
                extra,
            )
            .map(|sql| clean_sql(&sql))
            .map_err(|e| Error::jinja(file, &e).with_node(format!("{phase} hook {}", index + 1)))
    }

    /// Compile SQL given on the command line (`show --inline`): Jinja with refs and sources.
    pub fn compile_inline(&mut self, sql: &str) -> Result<String> {
        let package = self.project.name().to_string();
        let info = NodeInfo {
            unique_id: format!("sql_operation.{package}.inline"),
            name: "inline".into(),
            package,
            resource_type: "sql_operation".into(),
            fqn: vec!["inline".into()],
            original_file_path: PathBuf::from("<inline>"),
            config: crate::config::NodeConfig::new(),
            relation: None,
        };
        let resolver: Arc<dyn Resolver> = self.resolver.clone();
        let (body, captured) = self
            .project
            .jinja
            .render_source("<inline>", sql, Mode::Compile, info, Some(resolver))
            .map_err(|e| Error::user(format!("in the inline query: {}", describe_error(&e))))?;
        let mut ctes = Vec::new();
        for (eph_id, cte) in &captured.ephemerals {
            ctes.push((cte.clone(), self.compile(eph_id)?.sql));
        }
        Ok(inject_ctes(&clean_sql(&body), &ctes))
    }

    /// What templates see of a model.
    /// The compiler's resolver.
    pub(crate) fn resolver(&self) -> &Arc<ProjectResolver> {
        &self.resolver
    }

    /// What a render of `model` knows of it.
    pub(crate) fn node_info(&self, model: &Model) -> NodeInfo {
        self.info(model)
    }

    fn info(&self, model: &Model) -> NodeInfo {
        NodeInfo {
            unique_id: model.unique_id.clone(),
            name: model.name.clone(),
            package: model.package.clone(),
            resource_type: model.kind.as_str().into(),
            fqn: model.fqn.clone(),
            original_file_path: model.original_file_path.clone(),
            config: model.config.clone(),
            relation: Some(model.relation.clone()),
        }
    }

    fn render(&self, model: &Model) -> Result<(String, crate::jinja::Captured, Option<usize>)> {
        let info = self.info(model);
        let resolver: Arc<dyn Resolver> = self.resolver.clone();
        let (sql, captured) = self
            .project
            .jinja
            .render(&model.template, Mode::Compile, info, Some(resolver))
            .map_err(|e| {
                Error::jinja(model.original_file_path.clone(), &e)
                    .with_node(format!("model `{}`", model.name))
            })?;
        // A ref the parse render did not see (inside `{% if execute %}`, `{% if
        // is_incremental() %}`, ...) is not a dependency: the model could run before it.
        if let Some(call) = captured.refs.iter().find(|c| !model.refs.contains(c)) {
            let written = match &call.package {
                Some(p) => format!("ref('{p}', '{}')", call.name),
                None => format!("ref('{}')", call.name),
            };
            return Err(Error::at(
                strata_common::Location::file(model.original_file_path.clone()),
                format!(
                    "`{written}` is only called when the model runs (inside a block such as \
                     `{{% if execute %}}` or `{{% if is_incremental() %}}`), so it is not a \
                     declared dependency and `{}` could be built before the model",
                    call.name
                ),
            )
            .with_node(format!("model `{}`", model.name))
            .with_hint(format!(
                "add this line at the top of the model: -- depends_on: {{{{ {written} }}}}"
            )));
        }
        // Rendering kept the file's lines when it kept their number (a one-line `config()`
        // renders to an empty line); the SQL then starts after the blank lines trimmed off.
        let lines = |s: &str| s.trim_end().matches('\n').count();
        let same_lines = lines(&sql) == lines(&model.raw_sql);
        let trimmed = &sql[..sql.len() - sql.trim_start().len()];
        let source_line = same_lines.then(|| trimmed.matches('\n').count() + 1);
        Ok((clean_sql(&sql), captured, source_line))
    }

    /// Where `strata compile` writes a model's SQL (see [`Model::compiled_file`]).
    pub fn compiled_path(&self, model: &Model) -> PathBuf {
        self.project
            .target_dir()
            .join("compiled")
            .join(model.compiled_file())
    }

    /// Where `strata compile` writes a test's SQL, as dbt: a singular test at its file's
    /// path, a generic one under its properties file's path, named by its relation name.
    pub fn compiled_test_path(&self, test: &crate::data_tests::DataTest) -> PathBuf {
        let base = self
            .project
            .target_dir()
            .join("compiled")
            .join(&test.package)
            .join(&test.original_file_path);
        match test.kind {
            crate::data_tests::TestKind::Singular { .. } => base,
            _ => base.join(format!("{}.sql", test.relation_name())),
        }
    }
}

/// Trim whitespace and trailing semicolons, which would break wrapping the query.
pub(crate) fn clean_sql(sql: &str) -> String {
    sql.trim().trim_end_matches(';').trim_end().to_string()
}

/// Length of leading whitespace and SQL comments.
fn skip_trivia(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if sql[i..].starts_with("--") {
            i = sql[i..]
                .find('\n')
                .map(|n| i + n + 1)
                .unwrap_or(bytes.len());
        } else if sql[i..].starts_with("/*") {
            i = sql[i..]
                .find("*/")
                .map(|n| i + n + 2)
                .unwrap_or(bytes.len());
        } else {
            return i;
        }
    }
}

/// Put `ctes` in front of `sql`, merging with its own `WITH` when it has one.
pub fn inject_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("{name} as (\n{body}\n)"))
        .collect();
    let defs = defs.join(",\n");
    let start = skip_trivia(sql);
    let head = &sql[start..];
    let is_with = head.len() >= 4
        && head[..4].eq_ignore_ascii_case("with")
        && head[4..].starts_with(|c: char| c.is_whitespace());
    if is_with {
        format!("{}with {defs},\n{}", &sql[..start], head[4..].trim_start())
    } else {
        format!("with {defs}\n{sql}")
    }
}

/// Compiling runs on blocking threads while other nodes build: the compiler and the project
/// must cross threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Compiler>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctes_merge_with_an_existing_with() {
        let ctes = vec![("__dbt__cte__a".to_string(), "select 1 as x".to_string())];
        assert_eq!(
            inject_ctes("-- note\nWITH b as (select 2) select * from b", &ctes),
            "-- note\nwith __dbt__cte__a as (\nselect 1 as x\n),\nb as (select 2) select * from b"
        );
        assert_eq!(
            inject_ctes("select * from __dbt__cte__a", &ctes),
            "with __dbt__cte__a as (\nselect 1 as x\n)\nselect * from __dbt__cte__a"
        );
        assert_eq!(inject_ctes("select 1", &[]), "select 1");
    }

    #[test]
    fn trailing_semicolons_go() {
        assert_eq!(clean_sql("\n select 1 ;\n"), "select 1");
    }
}
