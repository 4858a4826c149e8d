//! dbt-compatible Jinja on `minijinja`.
//!
//! One [`JinjaEnv`] per project holds every model and macro file, compiled once. A node is
//! rendered twice, as dbt does: in [`Mode::Parse`] `ref`, `source` and `config` are recorded
//! (and `execute` is false); in [`Mode::Compile`] they resolve to the relations the engine
//! reads. Project macros are global functions: each call evaluates the macro's file and calls
//! the macro with the caller's context, so `this`, `config` and `target` work inside macros,
//! and `{{ return(x) }}` hands `x` back to the caller as a value.

mod agate;
mod arith;
mod column;
mod datetime;
mod macros;
mod py_modules;
mod pylist;
mod re;
mod relation;
mod rewrite;

use agate::*;
use macros::*;
pub use relation::JRelation;
use relation::*;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Serde, Value, from_args};
use minijinja::{Environment, Error as JError, ErrorKind, State, UndefinedBehavior};

pub use datetime::{Modules, PyDate, PyDateTime, PyTimedelta};

use crate::config::NodeConfig;
use crate::node::{RefCall, Relation};

/// Which of the two renders this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Discover refs, sources and config; `execute` is false.
    Parse,
    /// Produce the SQL that runs; `execute` is true.
    Compile,
}

/// What a `ref` or `source` resolves to in [`Mode::Compile`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The relation to read.
    pub relation: Relation,
    /// For an ephemeral model: its unique id, and the name of the CTE it becomes.
    pub ephemeral: Option<(String, String)>,
    /// A condition its rows are filtered by (a microbatch reading an input with an
    /// `event_time`): the relation renders as `(select * from ... where <filter>)`.
    pub filter: Option<String>,
}

/// The batch a microbatch model is compiled for: `model.batch` in templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchWindow {
    /// The batch's id, e.g. `20240101`.
    pub id: String,
    /// The first instant of the batch (`YYYY-MM-DD HH:MM:SS`).
    pub start: String,
    /// The first instant after it.
    pub end: String,
}

pub use strata_common::{Introspector, QueryResult};

/// Resolves `ref` and `source` calls while compiling, and reaches the warehouse when one is
/// connected.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The relation `ref(...)` points to, or a message saying why there is none.
    fn resolve_ref(&self, call: &RefCall) -> Result<Resolved, String>;
    /// The relation `source(source, table)` points to, or a message saying why there is none.
    fn resolve_source(&self, source: &str, table: &str) -> Result<Resolved, String>;
    /// The warehouse, for `run_query`, `statement` and `adapter.get_relation`.
    fn introspector(&self) -> Option<&dyn Introspector> {
        None
    }
    /// The batch being compiled, for microbatch models.
    fn batch(&self) -> Option<&BatchWindow> {
        None
    }
}

/// What a render knows about the node being rendered.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `model.pkg.name`.
    pub unique_id: String,
    /// The node's name.
    pub name: String,
    /// The package.
    pub package: String,
    /// `model`, `macro`, ...
    pub resource_type: String,
    /// Fully qualified name.
    pub fqn: Vec<String>,
    /// The node's file.
    pub original_file_path: PathBuf,
    /// Configuration known before this render.
    pub config: NodeConfig,
    /// The node's relation (`this`), once known.
    pub relation: Option<Relation>,
}

/// What a parse render found.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// `ref` calls, in order, without duplicates.
    pub refs: Vec<RefCall>,
    /// `source` calls, in order, without duplicates.
    pub sources: Vec<(String, String)>,
    /// Keys set by `config(...)`.
    pub config: NodeConfig,
    /// Ephemeral models referenced: (unique id, CTE name).
    pub ephemerals: Vec<(String, String)>,
    /// Macros called.
    pub macros: Vec<String>,
}

/// A project macro.
#[derive(Debug, Clone)]
pub struct MacroDef {
    /// Its name.
    pub name: String,
    /// The file defining it, relative to the project root.
    pub file: PathBuf,
    /// 1-based line of its `{% macro %}` tag.
    pub line: usize,
    /// The package defining it.
    pub package: String,
    /// The macro's source, from `{% macro %}` to `{% endmacro %}`.
    pub sql: String,
}

/// Project-wide values every render sees.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// The root project's name.
    pub project_name: String,
    /// `vars:` of the project file.
    pub project_vars: IndexMap<String, serde_json::Value>,
    /// `--vars` from the command line; they win over the project's.
    pub cli_vars: IndexMap<String, serde_json::Value>,
    /// `{% docs %}` blocks by name.
    pub docs: HashMap<String, String>,
    /// The `target` object's keys.
    pub target: IndexMap<String, serde_json::Value>,
    /// When the invocation started.
    pub run_started_at: chrono::DateTime<chrono::Utc>,
    /// The invocation id.
    pub invocation_id: String,
    /// `--full-refresh`: incremental models are rebuilt, `is_incremental()` is false.
    pub full_refresh: bool,
    /// The project's `dispatch:` entries: each `macro_namespace` and its `search_order`.
    pub dispatch: IndexMap<String, Vec<String>>,
}

/// The compiled templates of a project and its dbt-compatible context.
pub struct JinjaEnv {
    env: Environment<'static>,
    macros: Arc<IndexMap<String, MacroDef>>,
    materializations: Vec<CustomMaterialization>,
    graph: Arc<std::sync::OnceLock<Value>>,
}

/// `graph`: the project's nodes and sources as dbt's manifest describes them, once the
/// project is loaded (empty while it is being parsed, as its nodes are not all known yet).
#[derive(Debug)]
struct Graph(Arc<std::sync::OnceLock<Value>>);

impl Object for Graph {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.0.get() {
            Some(g) => g.get_item(key).ok().filter(|v| !v.is_undefined()),
            None => Some(Value::from(
                std::collections::BTreeMap::<String, Value>::new(),
            )),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&[
            "nodes",
            "sources",
            "exposures",
            "metrics",
            "groups",
            "semantic_models",
            "saved_queries",
            "unit_tests",
        ])
    }
}

/// A `{% materialization name, adapter='...' %}` block of a macro file: loaded, not run.
#[derive(Debug, Clone)]
pub struct CustomMaterialization {
    /// The name a model's `materialized` config would use.
    pub name: String,
    /// The file defining it.
    pub file: PathBuf,
    /// 1-based line of its tag.
    pub line: usize,
}

/// `source` with its `{% materialization %}` blocks blanked (lines kept, so errors still name
/// the right line), and the blocks found: dbt packages ship them beside their macros.
fn without_materializations(source: &str) -> (std::borrow::Cow<'_, str>, Vec<(String, usize)>) {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    #[allow(clippy::unwrap_used)] // a constant pattern
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"(?s)\{%-?\s*materialization\s+([A-Za-z_][A-Za-z0-9_]*).*?\{%-?\s*endmaterialization\s*-?%\}",
        )
        .unwrap()
    });
    if !source.contains("materialization") {
        return (std::borrow::Cow::Borrowed(source), Vec::new());
    }
    let mut found = Vec::new();
    let blanked = re.replace_all(source, |c: &regex::Captures<'_>| {
        let start = c.get(0).map_or(0, |m| m.start());
        found.push((c[1].to_string(), source[..start].matches('\n').count() + 1));
        c[0].chars().filter(|ch| *ch == '\n').collect::<String>()
    });
    (blanked, found)
}

impl fmt::Debug for JinjaEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JinjaEnv")
            .field("macros", &self.macros.len())
            .finish()
    }
}

const MACRO_PREFIX: &str = "__strata_macro__";

thread_local! {
    /// One slot per macro call in progress; `return(x)` fills the innermost.
    static RETURNS: RefCell<Vec<Option<Value>>> = const { RefCell::new(Vec::new()) };
}

/// The deepest nesting of macro calls a render may reach: far beyond what real projects use,
/// and well within the stack of the threads that render.
const MAX_MACRO_DEPTH: usize = 100;

/// `env_var('NAME', default)`: an environment variable, or the default, or an error.
pub fn env_var(name: String, default: Option<Value>) -> Result<Value, JError> {
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => default.ok_or_else(|| {
            JError::new(
                ErrorKind::InvalidOperation,
                format!(
                    "environment variable `{name}` is not set and no default was given; \
                     export it or write env_var('{name}', 'default')"
                ),
            )
        }),
    }
}

pub use crate::error::describe_error;

/// Rename `{% macro name(` so that calls by name, even inside the same file, go through the
/// global wrapper that implements dbt's `return()`.
fn mangle_macros(source: &str) -> String {
    let source = rewrite::mutable_literals(source);
    macro_tag_regex()
        .replace_all(&source, |c: &regex::Captures<'_>| {
            format!("{}{MACRO_PREFIX}{}{}", &c[1], &c[2], &c[3])
        })
        .into_owned()
}

fn macro_tag_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        #[allow(clippy::unwrap_used)] // a constant pattern
        regex::Regex::new(r"(\{%-?\s*macro\s+)([A-Za-z_][A-Za-z0-9_]*)(\s*\()").unwrap()
    })
}

/// dbt's `{% test name(...) %} ... {% endtest %}` blocks are macros named `test_<name>`.
pub fn tests_as_macros(source: &str) -> String {
    static OPEN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static CLOSE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    #[allow(clippy::unwrap_used)] // constant patterns
    let open = OPEN.get_or_init(|| {
        regex::Regex::new(r"\{%(-?)\s*test\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(").unwrap()
    });
    #[allow(clippy::unwrap_used)]
    let close = CLOSE.get_or_init(|| regex::Regex::new(r"\{%(-?)\s*endtest\s*(-?)%\}").unwrap());
    if !source.contains("test") {
        return source.to_string();
    }
    let s = open.replace_all(source, "{%${1} macro test_${2}(");
    close.replace_all(&s, "{%${1} endmacro ${2}%}").into_owned()
}

/// The macros a macro file defines, with their lines and sources.
pub fn find_macros(source: &str) -> Vec<(String, usize, String)> {
    static END: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    #[allow(clippy::unwrap_used)] // a constant pattern
    let end = END.get_or_init(|| regex::Regex::new(r"\{%-?\s*endmacro\s*-?%\}").unwrap());
    macro_tag_regex()
        .captures_iter(source)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let line = source[..whole.start()].matches('\n').count() + 1;
            let body_end = end
                .find_at(source, whole.end())
                .map(|m| m.end())
                .unwrap_or(source.len());
            Some((
                c[2].to_string(),
                line,
                source[whole.start()..body_end].to_string(),
            ))
        })
        .collect()
}

impl JinjaEnv {
    /// An environment with the dbt context and the given macro files (`(path, source)`,
    /// path relative to the project root) of `package`.
    pub fn new(
        globals: Globals,
        macro_files: &[(PathBuf, String, String)],
    ) -> Result<Self, (PathBuf, JError)> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        // SQL is never HTML- or JSON-escaped, whatever the template's file name.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_debug(false);
        let globals = Arc::new(globals);

        let mut macros: IndexMap<String, MacroDef> = IndexMap::new();
        let mut materializations = Vec::new();
        for (path, package, source) in macro_files {
            let name = template_name(path);
            let (source, found) = without_materializations(source);
            materializations.extend(found.into_iter().map(|(name, line)| CustomMaterialization {
                name,
                file: path.clone(),
                line,
            }));
            env.add_template_owned(name.clone(), mangle_macros(&source))
                .map_err(|e| (path.clone(), e))?;
            for (macro_name, line, sql) in find_macros(&source) {
                macros.insert(
                    macro_name.clone(),
                    MacroDef {
                        name: macro_name,
                        file: path.clone(),
                        line,
                        package: package.clone(),
                        sql,
                    },
                );
            }
        }
        // Each package's macros are also reachable through its name: `dbt_utils.star(...)`.
        let mut by_package: HashMap<String, IndexMap<String, MacroDef>> = HashMap::new();
        for (path, package, source) in macro_files {
            for (macro_name, line, sql) in find_macros(source) {
                by_package.entry(package.clone()).or_default().insert(
                    macro_name.clone(),
                    MacroDef {
                        name: macro_name,
                        file: path.clone(),
                        line,
                        package: package.clone(),
                        sql,
                    },
                );
            }
        }
        let by_package: HashMap<String, Arc<IndexMap<String, MacroDef>>> = by_package
            .into_iter()
            .map(|(p, defs)| (p, Arc::new(defs)))
            .collect();
        let adapter = adapter_type(globals.target.get("type").and_then(|t| t.as_str()));
        let adapter_prefixes = prefixes(adapter);
        for (package, defs) in &by_package {
            // The root project's name is a namespace too (`my_project.my_macro()`).
            if package != "strata" && package != "dbt" {
                env.add_global(
                    package.clone(),
                    Value::from_object(Namespace(
                        defs.clone(),
                        NamespaceKind::Package,
                        adapter_prefixes,
                    )),
                );
            }
        }
        let macros = Arc::new(macros);
        let dispatcher = Arc::new(Dispatcher {
            global: macros.clone(),
            by_package,
            root: globals.project_name.clone(),
            search_orders: globals.dispatch.clone(),
            adapter,
        });
        env.add_global(
            "dbt",
            Value::from_object(Namespace(
                macros.clone(),
                NamespaceKind::Dbt,
                adapter_prefixes,
            )),
        );
        env.add_global("adapter", Value::from_object(Adapter(dispatcher)));
        env.add_global("api", Value::from_object(Api));
        // dbt's own macros are global: `type_numeric()` works without `dbt.` and dispatches to
        // `strata__type_numeric` or `default__type_numeric`, unless a macro of that name exists.
        let dispatched: std::collections::BTreeSet<&str> = macros
            .keys()
            .filter_map(|k| adapter_prefixes.iter().find_map(|p| k.strip_prefix(p)))
            .filter(|name| !macros.contains_key(*name))
            .collect();
        for name in dispatched {
            if let Some(f) = dispatch(&macros, adapter_prefixes, name) {
                env.add_global(name.to_string(), f);
            }
        }
        for def in macros.values() {
            if let Some(f) = macro_value(def) {
                env.add_global(def.name.clone(), f);
            }
        }

        let g = globals.clone();
        env.add_function(
            "var",
            move |state: &State, name: String, default: Option<Value>| -> Result<Value, JError> {
                let scope = current_scope(state);
                if let Some(v) = scope.as_ref().and_then(|s| s.overrides.vars.get(&name)) {
                    return Ok(Value::from(Serde(v)));
                }
                let package = scope.map(|s| s.node.package.clone());
                lookup_var(&g, package.as_deref(), &name)
                    .or(default)
                    .ok_or_else(|| {
                        JError::new(
                            ErrorKind::InvalidOperation,
                            format!(
                                "required var `{name}` is not set; add it under `vars:` in the project file or pass --vars '{{{name}: ...}}'"
                            ),
                        )
                    })
            },
        );
        env.add_function(
            "env_var",
            |state: &State, name: String, default: Option<Value>| -> Result<Value, JError> {
                let scope = current_scope(state);
                match scope.as_ref().and_then(|s| s.overrides.env_vars.get(&name)) {
                    Some(v) => Ok(Value::from(v.clone())),
                    None => env_var(name, default),
                }
            },
        );
        env.add_function(pylist::NEW_LIST, pylist::PyList::new_value);
        // Python's `set(...)`, as dbt's context offers it: equal to any set of the same values.
        env.add_function("set", pylist::PySet::new_value);
        // `load_relation(relation)`: the relation when it exists in the warehouse, else none.
        env.add_function(
            "load_relation",
            |state: &State, relation: Value| -> Result<Value, JError> {
                let Some(r) = relation.downcast_object_ref::<JRelation>() else {
                    return Ok(Value::from(()));
                };
                let Some(scope) = current_scope(state) else {
                    return Ok(Value::from(()));
                };
                let Some(i) = scope.introspector() else {
                    return Ok(Value::from(()));
                };
                let exists = i.columns(&r.relation).map_err(query_error)?.is_some();
                Ok(if exists {
                    relation.clone()
                } else {
                    Value::from(())
                })
            },
        );
        env.add_function(pylist::NEW_DICT, pylist::PyDict::new_value);
        env.add_function(rewrite::OWN, pylist::own);
        env.add_function(arith::ARITH, arith::arith);
        env.set_unknown_method_callback(pylist::python_method);
        let g = globals.clone();
        env.add_function("doc", move |name: String| -> Result<Value, JError> {
            g.docs
                .get(&name)
                .map(|d| Value::from(d.clone()))
                .ok_or_else(|| {
                    JError::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "no docs block named `{name}`{}",
                            strata_common::did_you_mean(&name, g.docs.keys().map(String::as_str))
                        ),
                    )
                })
        });
        env.add_function("ref", ref_fn);
        env.add_function("run_query", run_query_fn);
        env.add_function("statement", statement_fn);
        env.add_function("load_result", load_result_fn);
        env.add_function("source", source_fn);
        let g = globals.clone();
        env.add_function("is_incremental", move |state: &State| -> bool {
            // True when compiling an incremental model whose table already exists, and
            // neither --full-refresh nor `full_refresh: true` asks for a rebuild.
            let Some(scope) = current_scope(state) else {
                return false;
            };
            let config = &scope.node.config;
            let forced = match config.get("full_refresh") {
                Some(serde_json::Value::Bool(b)) => *b,
                _ => g.full_refresh,
            };
            if config.materialized() != "incremental" || forced {
                return false;
            }
            match (scope.introspector(), &scope.node.relation) {
                (Some(i), Some(r)) => matches!(i.columns(r), Ok(Some(_))),
                _ => false,
            }
        });
        env.add_function(
            "log",
            |msg: Value, kwargs: Kwargs| -> Result<String, JError> {
                let info: Option<bool> = kwargs.get("info")?;
                if info.unwrap_or(false) {
                    tracing::info!(target: "strata::jinja", "{msg}");
                } else {
                    tracing::debug!(target: "strata::jinja", "{msg}");
                }
                Ok(String::new())
            },
        );
        env.add_function("print", |msg: Value| -> String {
            // Its own target, so `--no-print` can hide it.
            tracing::info!(target: "strata::print", "{msg}");
            String::new()
        });
        env.add_function("return", |value: Value| -> Result<Value, JError> {
            let stored = RETURNS.with(|r| match r.borrow_mut().last_mut() {
                Some(slot) => {
                    *slot = Some(value);
                    true
                }
                None => false,
            });
            Err(JError::new(
                ErrorKind::InvalidOperation,
                if stored {
                    "__strata_return__"
                } else {
                    "return() may only be used inside a macro"
                },
            ))
        });
        env.add_function(
            "exceptions_raise_compiler_error",
            |msg: String| -> Result<Value, JError> {
                Err(JError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        py_modules::register(&mut env);
        let graph = Arc::new(std::sync::OnceLock::new());
        env.add_global("graph", Value::from_object(Graph(graph.clone())));
        env.add_global("exceptions", Value::from_object(Exceptions));
        env.add_global("modules", Value::from_object(Modules));
        env.add_global(
            "run_started_at",
            Value::from_object(PyDateTime(globals.run_started_at)),
        );
        env.add_global("invocation_id", Value::from(globals.invocation_id.clone()));
        env.add_global("project_name", Value::from(globals.project_name.clone()));
        env.add_global("target", Value::from(Serde(&globals.target)));
        env.add_global(
            "flags",
            Value::from(Serde(
                serde_json::json!({"FULL_REFRESH": globals.full_refresh}),
            )),
        );
        env.add_filter("as_bool", |v: Value| -> bool {
            match v.as_str() {
                Some(s) => s.eq_ignore_ascii_case("true"),
                None => v.is_true(),
            }
        });
        env.add_filter("as_number", |v: Value| -> Value {
            match v.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
                Some(n) if n.fract() == 0.0 && n.abs() < 9e15 => Value::from(n as i64),
                Some(n) => Value::from(n),
                None => v,
            }
        });
        env.add_filter("as_text", |v: Value| -> String { v.to_string() });
        env.add_filter("as_native", |v: Value| v);
        Ok(Self {
            env,
            macros,
            materializations,
            graph,
        })
    }

    /// Fill `graph` once the project is loaded.
    pub fn set_graph(&self, graph: serde_json::Value) {
        let _ = self.graph.set(Value::from(Serde(graph)));
    }

    /// The custom materializations the macro files define (which Strata does not run).
    pub fn materializations(&self) -> &[CustomMaterialization] {
        &self.materializations
    }

    /// Compile a node's template. Call once per node before rendering it.
    pub fn add_template(&mut self, path: &std::path::Path, source: String) -> Result<(), JError> {
        let source = rewrite::mutable_literals(&source).into_owned();
        self.env.add_template_owned(template_name(path), source)
    }

    /// The project's macros by name.
    pub fn macros(&self) -> &IndexMap<String, MacroDef> {
        &self.macros
    }

    /// Render a node's template.
    pub fn render(
        &self,
        path: &std::path::Path,
        mode: Mode,
        node: NodeInfo,
        resolver: Option<Arc<dyn Resolver>>,
    ) -> Result<(String, Captured), JError> {
        let tmpl = self.env.get_template(&template_name(path))?;
        Scope::new(mode, node, resolver).run(|ctx| tmpl.render(ctx))
    }

    /// [`Self::render`] in compile mode with a unit test's `overrides`.
    pub fn render_with_overrides(
        &self,
        path: &std::path::Path,
        node: NodeInfo,
        resolver: Option<Arc<dyn Resolver>>,
        overrides: Overrides,
    ) -> Result<(String, Captured), JError> {
        let tmpl = self.env.get_template(&template_name(path))?;
        Scope::with_overrides(Mode::Compile, node, resolver, overrides).run(|ctx| tmpl.render(ctx))
    }

    /// Render SQL that is not a project file (such as `strata show --inline`), named `name`
    /// in error messages.
    pub fn render_source(
        &self,
        name: &str,
        source: &str,
        mode: Mode,
        node: NodeInfo,
        resolver: Option<Arc<dyn Resolver>>,
    ) -> Result<(String, Captured), JError> {
        Scope::new(mode, node, resolver).run(|ctx| {
            self.env
                .render_named_str(name, &rewrite::mutable_literals(source), ctx)
        })
    }

    /// [`Self::render_source`] with more variables in the context (`results`, `schemas` for
    /// run hooks).
    pub fn render_source_with(
        &self,
        name: &str,
        source: &str,
        node: NodeInfo,
        resolver: Option<Arc<dyn Resolver>>,
        extra: &serde_json::Value,
    ) -> Result<String, JError> {
        Scope::new(Mode::Compile, node, resolver)
            .run(|ctx| {
                let ctx = minijinja::context! { ..Value::from(Serde(extra)), ..ctx };
                self.env
                    .render_named_str(name, &rewrite::mutable_literals(source), ctx)
            })
            .map(|(out, _)| out)
    }

    /// Render a snippet (for example a call to `generate_schema_name`) in a node's context.
    pub fn render_snippet(&self, source: &str, node: NodeInfo) -> Result<String, JError> {
        Scope::new(Mode::Compile, node, None)
            .run(|ctx| self.env.render_str(&rewrite::mutable_literals(source), ctx))
            .map(|(out, _)| out)
    }

    /// Render a string (such as a YAML description) with the project context and no node.
    pub fn render_str(&self, source: &str) -> Result<String, JError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_string());
        }
        self.env.render_str(source, ())
    }
}

fn template_name(path: &std::path::Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

fn lookup_var(g: &Globals, package: Option<&str>, name: &str) -> Option<Value> {
    if let Some(v) = g.cli_vars.get(name) {
        return Some(Value::from(Serde(v)));
    }
    if let Some(pkg) = package
        && let Some(serde_json::Value::Object(scoped)) = g.project_vars.get(pkg)
        && let Some(v) = scoped.get(name)
    {
        return Some(Value::from(Serde(v)));
    }
    g.project_vars.get(name).map(|v| Value::from(Serde(v)))
}

/// The per-render state: the node, its mode, and what the render found.
#[derive(Debug)]
struct Scope {
    mode: Mode,
    node: NodeInfo,
    resolver: Option<Arc<dyn Resolver>>,
    captured: Mutex<Captured>,
    /// Results of `{% call statement(name, fetch_result=True) %}` blocks, for `load_result`.
    statements: Mutex<HashMap<String, QueryResult>>,
    /// Vars and macros a unit test replaces.
    overrides: Overrides,
}

/// What a unit test's `overrides:` replace for one render: vars, and macros by constants.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `var(name)` gives these first.
    pub vars: IndexMap<String, serde_json::Value>,
    /// Each macro (or context function such as `is_incremental`) returns its value.
    pub macros: IndexMap<String, serde_json::Value>,
    /// `env_var(name)` gives these first.
    pub env_vars: IndexMap<String, String>,
}

impl Scope {
    fn new(mode: Mode, node: NodeInfo, resolver: Option<Arc<dyn Resolver>>) -> Arc<Self> {
        Self::with_overrides(mode, node, resolver, Overrides::default())
    }

    fn with_overrides(
        mode: Mode,
        node: NodeInfo,
        resolver: Option<Arc<dyn Resolver>>,
        overrides: Overrides,
    ) -> Arc<Self> {
        Arc::new(Scope {
            mode,
            node,
            resolver,
            captured: Mutex::new(Captured::default()),
            statements: Mutex::new(HashMap::new()),
            overrides,
        })
    }

    /// Render with this scope's context; returns the output and what the render recorded.
    fn run(
        self: Arc<Self>,
        render: impl FnOnce(Value) -> Result<String, JError>,
    ) -> Result<(String, Captured), JError> {
        let out = render(self.context())?;
        let captured = self.captured.lock().map(|c| c.clone()).unwrap_or_default();
        Ok((out, captured))
    }

    fn context(self: &Arc<Self>) -> Value {
        let this = match &self.node.relation {
            Some(r) => Value::from_object(JRelation {
                relation: r.clone(),
                cte: None,
                filter: None,
            }),
            None => Value::from_object(JRelation {
                relation: Relation::new("", "", self.node.name.clone()),
                cte: None,
                filter: None,
            }),
        };
        let model = serde_json::json!({
            "unique_id": self.node.unique_id,
            "name": self.node.name,
            "alias": self.node.relation.as_ref().map(|r| r.identifier.clone()).unwrap_or_else(|| self.node.name.clone()),
            "schema": self.node.relation.as_ref().map(|r| r.schema.clone()),
            "database": self.node.relation.as_ref().map(|r| r.database.clone()),
            "package_name": self.node.package,
            "resource_type": self.node.resource_type,
            "fqn": self.node.fqn,
            "original_file_path": self.node.original_file_path.to_string_lossy(),
            "config": self.node.config.to_json(),
            "tags": self.node.config.tags(),
            "batch": self.resolver.as_ref().and_then(|r| r.batch()).map(|b| serde_json::json!({
                "id": b.id,
                "event_time_start": b.start,
                "event_time_end": b.end,
            })),
        });
        let ctx = minijinja::context! {
            __strata => Value::from_dyn_object(self.clone()),
            this => this,
            model => Value::from(Serde(&model)),
            config => Value::from_object(ConfigObj(self.clone())),
            execute => self.mode == Mode::Compile,
        };
        if self.overrides.macros.is_empty() {
            return ctx;
        }
        let replaced: std::collections::BTreeMap<String, Value> = self
            .overrides
            .macros
            .iter()
            .map(|(name, v)| {
                let v = Value::from(Serde(v));
                (
                    name.clone(),
                    Value::from_function(move |_args: minijinja::value::Rest<Value>| v.clone()),
                )
            })
            .collect();
        minijinja::context! { ..Value::from(replaced), ..ctx }
    }

    fn record<F: FnOnce(&mut Captured)>(&self, f: F) {
        if let Ok(mut c) = self.captured.lock() {
            f(&mut c);
        }
    }
}

impl Object for Scope {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
}

impl Scope {
    /// The warehouse, when this render may run queries (compiling with a connection).
    fn introspector(&self) -> Option<&dyn Introspector> {
        if self.mode != Mode::Compile {
            return None;
        }
        self.resolver.as_ref()?.introspector()
    }
}

fn current_scope(state: &State) -> Option<Arc<Scope>> {
    state.lookup("__strata")?.downcast_object::<Scope>()
}

fn no_scope() -> JError {
    JError::new(
        ErrorKind::InvalidOperation,
        "ref() and source() can only be used in a model",
    )
}

/// `config`: callable (`config(materialized='table')`) with `get` and `require` methods.
#[derive(Debug)]
struct ConfigObj(Arc<Scope>);

impl Object for ConfigObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, JError> {
        let (kwargs,): (Kwargs,) = from_args(args)?;
        let mut set = NodeConfig::new();
        for key in kwargs.args() {
            let v: Value = kwargs.peek(key)?;
            let json = serde_json::to_value(&v)
                .map_err(|e| JError::new(ErrorKind::InvalidOperation, e.to_string()))?;
            set.set(key, json);
        }
        self.0.record(|c| c.config.merge(&set));
        Ok(Value::from(""))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        let (key, default): (String, Option<Value>) = from_args(args)?;
        let mut effective = self.0.node.config.clone();
        self.0.record(|c| effective.merge(&c.config));
        let found = effective
            .get(&key.replace('-', "_"))
            .map(|v| Value::from(Serde(v)));
        match method {
            "get" => Ok(found.or(default).unwrap_or(Value::from(()))),
            "require" => found.ok_or_else(|| {
                JError::new(
                    ErrorKind::InvalidOperation,
                    format!("config `{key}` is required but not set"),
                )
            }),
            _ => Err(JError::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `exceptions.raise_compiler_error(msg)` and `exceptions.warn(msg)`.
#[derive(Debug)]
struct Exceptions;

impl Object for Exceptions {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        let (msg,): (String,) = from_args(args)?;
        match method {
            "raise_compiler_error" | "raise_not_implemented" => {
                Err(JError::new(ErrorKind::InvalidOperation, msg))
            }
            "warn" => {
                tracing::warn!(target: "strata::jinja", "{msg}");
                Ok(Value::from(""))
            }
            _ => Err(JError::from(ErrorKind::UnknownMethod)),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}

#[cfg(test)]
mod tests;
