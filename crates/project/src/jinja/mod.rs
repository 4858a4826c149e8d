//! dbt-compatible Jinja on `minijinja`.
//!
//! One [`JinjaEnv`] per project holds every model and macro file, compiled once. A node is
//! rendered twice, as dbt does: in [`Mode::Parse`] `ref`, `source` and `config` are recorded
//! (and `execute` is false); in [`Mode::Compile`] they resolve to the relations the engine
//! reads. Project macros are global functions: each call evaluates the macro's file and calls
//! the macro with the caller's context, so `this`, `config` and `target` work inside macros,
//! and `{{ return(x) }}` hands `x` back to the caller as a value.

mod datetime;
mod pylist;
pub use pylist::NEW_LIST;
mod re;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Serde, Value, from_args};
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
}

/// The compiled templates of a project and its dbt-compatible context.
pub struct JinjaEnv {
    env: Environment<'static>,
    macros: Arc<IndexMap<String, MacroDef>>,
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
    let source = pylist::mutable_empty_lists(source);
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
        for (path, package, source) in macro_files {
            let name = template_name(path);
            env.add_template_owned(name.clone(), mangle_macros(source))
                .map_err(|e| (path.clone(), e))?;
            for (macro_name, line, sql) in find_macros(source) {
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
        for (package, defs) in by_package {
            if package != globals.project_name && package != "strata" && package != "dbt" {
                env.add_global(
                    package,
                    Value::from_object(Namespace(Arc::new(defs), NamespaceKind::Package)),
                );
            }
        }
        let macros = Arc::new(macros);
        env.add_global(
            "dbt",
            Value::from_object(Namespace(macros.clone(), NamespaceKind::Dbt)),
        );
        env.add_global("adapter", Value::from_object(Adapter(macros.clone())));
        env.add_global("api", Value::from_object(Api));
        // dbt's own macros are global: `type_numeric()` works without `dbt.` and dispatches to
        // `strata__type_numeric` or `default__type_numeric`, unless a macro of that name exists.
        let dispatched: std::collections::BTreeSet<&str> = macros
            .keys()
            .filter_map(|k| {
                k.strip_prefix("default__")
                    .or_else(|| k.strip_prefix("strata__"))
            })
            .filter(|name| !macros.contains_key(*name))
            .collect();
        for name in dispatched {
            if let Some(f) = dispatch(&macros, name) {
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
                let package = current_scope(state).map(|s| s.node.package.clone());
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
        env.add_function("env_var", env_var);
        env.add_function(pylist::NEW_LIST, pylist::PyList::new_value);
        // Python's `set(...)`, as dbt's context offers it: the distinct values, in order.
        env.add_function("set", |items: Value| -> Result<Value, JError> {
            let mut out: Vec<Value> = Vec::new();
            for v in items.try_iter()? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::from(out))
        });
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
            tracing::info!(target: "strata::jinja", "{msg}");
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
        Ok(Self { env, macros })
    }

    /// Compile a node's template. Call once per node before rendering it.
    pub fn add_template(&mut self, path: &std::path::Path, source: String) -> Result<(), JError> {
        let source = pylist::mutable_empty_lists(&source).into_owned();
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
        Scope::new(mode, node, resolver).run(|ctx| self.env.render_named_str(name, source, ctx))
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
                    .render_named_str(name, &pylist::mutable_empty_lists(source), ctx)
            })
            .map(|(out, _)| out)
    }

    /// Render a snippet (for example a call to `generate_schema_name`) in a node's context.
    pub fn render_snippet(&self, source: &str, node: NodeInfo) -> Result<String, JError> {
        Scope::new(Mode::Compile, node, None)
            .run(|ctx| self.env.render_str(source, ctx))
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

/// Call macro `name` of `template` (by its `mangled` name); `kwargs`, for a macro that takes
/// undeclared keyword arguments, is what it sees as `kwargs`.
fn call_macro_with(
    state: &State,
    template: &str,
    mangled: &str,
    name: &str,
    args: &[Value],
    kwargs: Option<Value>,
) -> Result<Value, JError> {
    let ctx = match current_scope(state) {
        Some(scope) => scope.context(),
        None => Value::UNDEFINED,
    };
    let ctx = match kwargs {
        Some(kwargs) => minijinja::context! { kwargs => kwargs, ..ctx },
        None => ctx,
    };
    // Each call renders the macro's file anew, so minijinja's own recursion limit (per render)
    // never sees the nesting: count it here.
    let depth = RETURNS.with(|r| r.borrow().len());
    if depth >= MAX_MACRO_DEPTH {
        return Err(JError::new(
            ErrorKind::InvalidOperation,
            format!(
                "macro `{name}` is nested {depth} calls deep: a macro that keeps calling itself \
                 (or macros calling each other) without an end; check its stopping condition"
            ),
        ));
    }
    let tmpl = state.env().get_template(template)?;
    let mut captured = tmpl.render_captured(ctx)?;
    if let Some(scope) = current_scope(state)
        && let Ok(mut c) = scope.captured.lock()
        && !c.macros.iter().any(|m| m == name)
    {
        c.macros.push(name.to_string());
    }
    captured.with_state_mut(|st| {
        let m = st.lookup(mangled).ok_or_else(|| {
            JError::new(
                ErrorKind::UnknownFunction,
                format!("macro `{name}` is not defined in {template}"),
            )
        })?;
        RETURNS.with(|r| r.borrow_mut().push(None));
        let result = m.call(st, args);
        let returned = RETURNS.with(|r| r.borrow_mut().pop().flatten());
        match (returned, result) {
            (Some(v), _) => Ok(v),
            (None, Ok(out)) => Ok(out),
            (None, Err(e)) => Err(e),
        }
    })
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
}

impl Scope {
    fn new(mode: Mode, node: NodeInfo, resolver: Option<Arc<dyn Resolver>>) -> Arc<Self> {
        Arc::new(Scope {
            mode,
            node,
            resolver,
            captured: Mutex::new(Captured::default()),
            statements: Mutex::new(HashMap::new()),
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
        minijinja::context! {
            __strata => Value::from_dyn_object(self.clone()),
            this => this,
            model => Value::from(Serde(&model)),
            config => Value::from_object(ConfigObj(self.clone())),
            execute => self.mode == Mode::Compile,
        }
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

fn query_error(msg: String) -> JError {
    JError::new(ErrorKind::InvalidOperation, msg)
}

/// `run_query(sql)`: the result as a table, or none while parsing (as dbt does).
fn run_query_fn(state: &State, sql: String) -> Result<Value, JError> {
    let Some(scope) = current_scope(state) else {
        return Ok(Value::from(()));
    };
    match scope.introspector() {
        Some(i) => Ok(Value::from_object(JTable(
            i.run_query(&sql).map_err(query_error)?,
        ))),
        None => Ok(Value::from(())),
    }
}

/// `{% call statement('name', fetch_result=True) %} SQL {% endcall %}`.
fn statement_fn(state: &mut State, name: String, kwargs: Kwargs) -> Result<Value, JError> {
    let caller: Value = kwargs.get("caller")?;
    let fetch: Option<bool> = kwargs.get("fetch_result")?;
    let _: Option<Value> = kwargs.get("auto_begin")?;
    let sql = caller.call(state, &[])?.to_string();
    let Some(scope) = current_scope(state) else {
        return Ok(Value::from(""));
    };
    if let Some(i) = scope.introspector() {
        let result = i.run_query(&sql).map_err(query_error)?;
        if fetch.unwrap_or(false)
            && let Ok(mut st) = scope.statements.lock()
        {
            st.insert(name, result);
        }
    }
    Ok(Value::from(""))
}

/// `load_result('name')`: `{data, table, response}` of a statement block.
fn load_result_fn(state: &State, name: String) -> Result<Value, JError> {
    let Some(scope) = current_scope(state) else {
        return Ok(Value::from(()));
    };
    let result = scope
        .statements
        .lock()
        .ok()
        .and_then(|st| st.get(&name).cloned());
    Ok(match result {
        Some(r) => {
            let n = r.rows.len();
            minijinja::context! {
                data => Value::from(Serde(&r.rows)),
                table => Value::from_object(JTable(r)),
                response => minijinja::context! { code => "SELECT", rows_affected => n },
            }
        }
        None => Value::from(()),
    })
}

/// A query result as dbt's agate table: `.rows`, `.columns[i].values()`, `.column_names`.
#[derive(Debug)]
struct JTable(QueryResult);

impl Object for JTable {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.0.rows.get(i).map(|r| Value::from(Serde(r)));
        }
        match key.as_str()? {
            "rows" => Some(Value::from(Serde(&self.0.rows))),
            "column_names" => Some(Value::from(
                self.0
                    .columns
                    .iter()
                    .map(|(n, _)| Value::from(n.clone()))
                    .collect::<Vec<_>>(),
            )),
            "column_types" => Some(Value::from(
                self.0
                    .columns
                    .iter()
                    .map(|(_, t)| Value::from(t.clone()))
                    .collect::<Vec<_>>(),
            )),
            "columns" => Some(Value::from(
                (0..self.0.columns.len())
                    .map(|i| Value::from_object(JColumn(self.clone(), i)))
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.rows.len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, JError> {
        match method {
            "print_table" => Ok(Value::from("")),
            _ => Err(JError::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// One column of a [`JTable`].
#[derive(Debug)]
struct JColumn(Arc<JTable>, usize);

impl Object for JColumn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let (name, ty) = self.0.0.columns.get(self.1)?;
        match key.as_str()? {
            "name" => Some(Value::from(name.clone())),
            "data_type" | "dtype" => Some(Value::from(ty.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, JError> {
        match method {
            "values" => Ok(Value::from(
                self.0
                    .0
                    .rows
                    .iter()
                    .map(|r| Value::from(Serde(r.get(self.1).cloned().unwrap_or_default())))
                    .collect::<Vec<_>>(),
            )),
            _ => Err(JError::from(ErrorKind::UnknownMethod)),
        }
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

fn ref_fn(state: &State, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, JError> {
    // `v=` / `version=` select a model version; versions are not modelled yet.
    let _version: Option<Value> = kwargs.get("v").or_else(|_| kwargs.get("version"))?;
    let scope = current_scope(state).ok_or_else(no_scope)?;
    let mut positional: Vec<String> = Vec::new();
    for a in args.iter() {
        if a.is_kwargs() {
            continue;
        }
        positional.push(a.as_str().map(str::to_string).ok_or_else(|| {
            JError::new(
                ErrorKind::InvalidOperation,
                "ref() takes model names as strings",
            )
        })?);
    }
    let call = match positional.as_slice() {
        [name] => RefCall {
            package: None,
            name: name.clone(),
        },
        [package, name] => RefCall {
            package: Some(package.clone()),
            name: name.clone(),
        },
        _ => {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                "ref() takes one or two arguments: ref('model') or ref('package', 'model')",
            ));
        }
    };
    match (scope.mode, &scope.resolver) {
        (Mode::Compile, Some(resolver)) => {
            let resolved = resolver
                .resolve_ref(&call)
                .map_err(|msg| JError::new(ErrorKind::InvalidOperation, msg))?;
            scope.record(|c| {
                if let Some(eph) = &resolved.ephemeral
                    && !c.ephemerals.contains(eph)
                {
                    c.ephemerals.push(eph.clone());
                }
                if !c.refs.contains(&call) {
                    c.refs.push(call.clone());
                }
            });
            Ok(Value::from_object(JRelation {
                relation: resolved.relation,
                cte: resolved.ephemeral.map(|(_, cte)| cte),
                filter: resolved.filter,
            }))
        }
        _ => {
            let rel = Relation::new("", "", call.name.clone());
            scope.record(|c| {
                if !c.refs.contains(&call) {
                    c.refs.push(call);
                }
            });
            Ok(Value::from_object(JRelation {
                relation: rel,
                cte: None,
                filter: None,
            }))
        }
    }
}

fn source_fn(state: &State, source: String, table: String) -> Result<Value, JError> {
    let scope = current_scope(state).ok_or_else(no_scope)?;
    match (scope.mode, &scope.resolver) {
        (Mode::Compile, Some(resolver)) => {
            let resolved = resolver
                .resolve_source(&source, &table)
                .map_err(|msg| JError::new(ErrorKind::InvalidOperation, msg))?;
            Ok(Value::from_object(JRelation {
                relation: resolved.relation,
                cte: None,
                filter: resolved.filter,
            }))
        }
        _ => {
            let rel = Relation::new("", source.clone(), table.clone());
            scope.record(|c| {
                let key = (source, table);
                if !c.sources.contains(&key) {
                    c.sources.push(key);
                }
            });
            Ok(Value::from_object(JRelation {
                relation: rel,
                cte: None,
                filter: None,
            }))
        }
    }
}

/// A relation as templates see it: renders as its quoted name, with dbt's attributes.
#[derive(Debug, Clone)]
pub struct JRelation {
    relation: Relation,
    cte: Option<String>,
    filter: Option<String>,
}

impl JRelation {
    /// The SQL naming it: the quoted relation or CTE, filtered to a batch when it has one.
    fn rendered(&self) -> String {
        let name = match &self.cte {
            Some(cte) => cte.clone(),
            None => self.relation.to_string(),
        };
        match &self.filter {
            Some(filter) => format!("(select * from {name} where {filter})"),
            None => name,
        }
    }
}

/// The keys a relation shows as a mapping, as dbt's `BaseRelation` does.
const RELATION_KEYS: &[&str] = &[
    "database",
    "schema",
    "identifier",
    "path",
    "metadata",
    "type",
];

impl Object for JRelation {
    /// A mapping, as dbt's relations are (packages check `obj is mapping` and
    /// `obj.metadata.type`); it renders as its SQL name.
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let r = &self.relation;
        Some(match key.as_str()? {
            "database" => Value::from(r.database.clone()),
            "schema" => Value::from(r.schema.clone()),
            "identifier" | "name" | "table" => Value::from(r.identifier.clone()),
            "path" => minijinja::context! {
                database => r.database.clone(),
                schema => r.schema.clone(),
                identifier => r.identifier.clone(),
            },
            "metadata" => minijinja::context! { type => "StrataRelation" },
            "type" => Value::from(if self.cte.is_some() { "cte" } else { "table" }),
            "is_table" | "is_view" => Value::from(false),
            "is_cte" => Value::from(self.cte.is_some()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(RELATION_KEYS)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        match method {
            "render" => Ok(Value::from(self.rendered())),
            // `relation.get('metadata', {})`, as on dbt's relation (a mapping).
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                Ok(self.get_value(&key).or(default).unwrap_or_default())
            }
            "include" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let db: Option<bool> = kwargs.get("database")?;
                let schema: Option<bool> = kwargs.get("schema")?;
                let ident: Option<bool> = kwargs.get("identifier")?;
                let r = &self.relation;
                let parts: Vec<String> = [
                    (db.unwrap_or(true), &r.database),
                    (schema.unwrap_or(true), &r.schema),
                    (ident.unwrap_or(true), &r.identifier),
                ]
                .into_iter()
                .filter(|(keep, p)| *keep && !p.is_empty())
                .map(|(_, p)| strata_common::quote_ident(p))
                .collect();
                Ok(Value::from_safe_string(parts.join(".")))
            }
            _ => Err(JError::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered())
    }
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

/// A callable for the macro `name`, looked up as dbt's dispatch does: `strata__name`, then
/// `default__name`, then `name` itself.
fn dispatch(macros: &IndexMap<String, MacroDef>, name: &str) -> Option<Value> {
    let def = ["strata__", "default__", ""]
        .iter()
        .find_map(|p| macros.get(&format!("{p}{name}")))?;
    macro_value(def)
}

/// The macro named exactly `name`.
fn exact(macros: &IndexMap<String, MacroDef>, name: &str) -> Option<Value> {
    macro_value(macros.get(name)?)
}

/// A macro as a callable value. A macro whose body uses `kwargs` takes keyword arguments it
/// does not declare, as in Jinja2: they reach it as the mapping `kwargs`.
fn macro_value(def: &MacroDef) -> Option<Value> {
    let template = template_name(&def.file);
    let mangled = format!("{MACRO_PREFIX}{}", def.name);
    let macro_name = def.name.clone();
    let catch_all = uses_kwargs(&def.sql).then(|| declared_args(&def.sql));
    Some(Value::from_function(
        move |state: &State, args: Rest<Value>, kwargs: Kwargs| -> Result<Value, JError> {
            let mut args = args.0;
            let mut extra: Vec<(String, Value)> = Vec::new();
            let mut named: Vec<(String, Value)> = Vec::new();
            for key in kwargs.args() {
                let v: Value = kwargs.peek(key)?;
                match &catch_all {
                    Some(declared) if key != "caller" && !declared.iter().any(|d| d == key) => {
                        extra.push((key.to_string(), v));
                    }
                    _ => named.push((key.to_string(), v)),
                }
            }
            if !named.is_empty() {
                args.push(Value::from(Kwargs::from_iter(named)));
            }
            let extra = catch_all.as_ref().map(|_| {
                Value::from(
                    extra
                        .into_iter()
                        .collect::<std::collections::BTreeMap<String, Value>>(),
                )
            });
            call_macro_with(state, &template, &mangled, &macro_name, &args, extra)
        },
    ))
}

/// Whether a macro's body (past its signature) uses `kwargs`.
fn uses_kwargs(sql: &str) -> bool {
    let body = sql.split_once("%}").map(|(_, b)| b).unwrap_or_default();
    body.match_indices("kwargs").any(|(i, _)| {
        let before = body[..i].chars().next_back();
        let after = body[i + "kwargs".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The argument names of a macro's signature: `{% macro m(a, b=[1, 2], c=none) %}` gives
/// a, b, c.
fn declared_args(sql: &str) -> Vec<String> {
    let Some(open) = sql.find('(') else {
        return Vec::new();
    };
    let mut depth = 0usize;
    let mut current = String::new();
    let mut parts = Vec::new();
    for c in sql[open + 1..].chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                break;
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts
        .iter()
        .filter_map(|p| {
            let name = p.split('=').next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// `dbt`: dbt's cross-database macros (`dbt.date_trunc`, `dbt.datediff`, ...).
#[derive(Debug)]
struct Namespace(Arc<IndexMap<String, MacroDef>>, NamespaceKind);

/// How a namespace finds `ns.name`.
#[derive(Debug, Clone, Copy)]
enum NamespaceKind {
    /// `dbt.name`: dbt's macro, dispatched (`strata__name`, `default__name`, then `name`).
    Dbt,
    /// `package.name`: the package's macro of that name (which may dispatch itself), else its
    /// dispatched variants.
    Package,
}

impl Object for Namespace {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        match self.1 {
            NamespaceKind::Dbt => dispatch(&self.0, name),
            NamespaceKind::Package => exact(&self.0, name).or_else(|| dispatch(&self.0, name)),
        }
    }
}

/// `adapter`: `quote`, `dispatch` and the names dbt's adapters share.
#[derive(Debug)]
struct Adapter(Arc<IndexMap<String, MacroDef>>);

impl Object for Adapter {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from("strata")),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        match method {
            "get_relation" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let relation = relation_from_kwargs(&kwargs)?;
                let Some(scope) = current_scope(state) else {
                    return Ok(Value::from(()));
                };
                let Some(i) = scope.introspector() else {
                    return Ok(Value::from(()));
                };
                Ok(match i.columns(&relation).map_err(query_error)? {
                    Some(_) => Value::from_object(JRelation {
                        relation,
                        cte: None,
                        filter: None,
                    }),
                    None => Value::from(()),
                })
            }
            "get_columns_in_relation" => {
                let (rel,): (Value,) = from_args(args)?;
                let Some(r) = rel.downcast_object_ref::<JRelation>() else {
                    return Err(query_error(
                        "get_columns_in_relation() takes a relation".into(),
                    ));
                };
                let Some(scope) = current_scope(state) else {
                    return Ok(Value::from(Vec::<Value>::new()));
                };
                let Some(i) = scope.introspector() else {
                    return Ok(Value::from(Vec::<Value>::new()));
                };
                let columns = i
                    .columns(&r.relation)
                    .map_err(query_error)?
                    .unwrap_or_default();
                Ok(Value::from(
                    columns
                        .into_iter()
                        .map(|(name, ty)| {
                            minijinja::context! {
                                name => name.clone(),
                                column => name.clone(),
                                quoted => strata_common::quote_ident(&name),
                                data_type => ty.clone(),
                                dtype => ty,
                            }
                        })
                        .collect::<Vec<_>>(),
                ))
            }
            "quote" => {
                let (ident,): (String,) = from_args(args)?;
                Ok(Value::from_safe_string(strata_common::quote_ident(&ident)))
            }
            "quote_as_configured" => {
                let (ident, _kind): (String, Option<String>) = from_args(args)?;
                Ok(Value::from(ident))
            }
            "dispatch" => {
                let (name, namespace, kwargs): (String, Option<String>, Kwargs) = from_args(args)?;
                let _namespace: Option<String> = namespace.or(kwargs.get("macro_namespace")?);
                dispatch(&self.0, &name).ok_or_else(|| {
                    JError::new(
                        ErrorKind::UnknownFunction,
                        format!(
                            "adapter.dispatch('{name}'): no macro `strata__{name}` or `default__{name}` exists"
                        ),
                    )
                })
            }
            other => Err(JError::new(
                ErrorKind::UnknownMethod,
                format!("adapter.{other}() is not available in Strata yet"),
            )),
        }
    }
}

/// `api.Relation.create(database=, schema=, identifier=)`.
#[derive(Debug)]
struct Api;

impl Object for Api {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "Relation").then(|| Value::from_object(RelationFactory))
    }
}

/// A relation from `database=`, `schema=` and `identifier=` keyword arguments.
fn relation_from_kwargs(kwargs: &Kwargs) -> Result<Relation, JError> {
    let part = |k: &str| -> Result<String, JError> {
        Ok(kwargs.get::<Option<String>>(k)?.unwrap_or_default())
    };
    Ok(Relation::new(
        part("database")?,
        part("schema")?,
        part("identifier")?,
    ))
}

#[derive(Debug)]
struct RelationFactory;

impl Object for RelationFactory {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        if method != "create" {
            return Err(JError::from(ErrorKind::UnknownMethod));
        }
        let (kwargs,): (Kwargs,) = from_args(args)?;
        let relation = relation_from_kwargs(&kwargs)?;
        let _ = kwargs.get::<Option<Value>>("type")?;
        Ok(Value::from_object(JRelation {
            relation,
            cte: None,
            filter: None,
        }))
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
