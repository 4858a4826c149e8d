//! Macros as callables: dbt's dispatch, package namespaces and `adapter`.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::{Kwargs, Object, ObjectRepr, Rest, Value, from_args};
use minijinja::{Error as JError, ErrorKind, State};

use super::column::Column;
use super::*;

/// Call macro `name` of `template` (by its `mangled` name); `kwargs`, for a macro that takes
/// undeclared keyword arguments, is what it sees as `kwargs`.
pub(super) fn call_macro_with(
    state: &State,
    template: &str,
    mangled: &str,
    name: &str,
    args: &[Value],
    kwargs: Option<Value>,
    varargs: Option<Value>,
) -> Result<Value, JError> {
    let ctx = match current_scope(state) {
        Some(scope) => scope.context(),
        None => Value::UNDEFINED,
    };
    let ctx = match kwargs {
        Some(kwargs) => minijinja::context! { kwargs => kwargs, ..ctx },
        None => ctx,
    };
    let ctx = match varargs {
        Some(varargs) => minijinja::context! { varargs => varargs, ..ctx },
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

/// The adapter implementations dispatch tries on the embedded warehouse, in order: Strata's
/// own, then those of the warehouses whose SQL our engine runs as written (PostgreSQL's
/// first: DataFusion follows its dialect — `at time zone`, `to_char`-free date parts, `~`
/// regexes — while DuckDB's implementations lean on DuckDB-only functions), then the
/// portable default.
pub(super) const EMBEDDED_PREFIXES: &[&str] = &["strata__", "duckdb__", "default__"];

/// The adapter implementations dispatch tries on a PostgreSQL warehouse, as dbt-postgres.
pub(super) const POSTGRES_PREFIXES: &[&str] = &["postgres__", "default__"];

/// The adapter a target's `type` runs on (`adapter.type()`, and what dispatch looks for):
/// `postgres` for PostgreSQL warehouses, `strata` for the embedded one.
pub fn adapter_type(target_type: Option<&str>) -> &'static str {
    match target_type {
        Some("postgres") => "postgres",
        _ => "strata",
    }
}

/// The dispatch prefixes of an adapter, in the order they are tried.
pub(super) fn prefixes(adapter: &str) -> &'static [&'static str] {
    match adapter {
        "postgres" => POSTGRES_PREFIXES,
        _ => EMBEDDED_PREFIXES,
    }
}

/// A callable for the macro `name`, looked up as dbt's dispatch does among `macros`: each of
/// the adapter's `prefixes`, then `name` itself.
pub(super) fn dispatch(
    macros: &IndexMap<String, MacroDef>,
    prefixes: &[&str],
    name: &str,
) -> Option<Value> {
    let def = prefixes
        .iter()
        .chain(&[""])
        .find_map(|p| macros.get(&format!("{p}{name}")))?;
    macro_value(def)
}

/// Every macro, globally (the root project's winning) and per package, and the project's
/// `dispatch:` search orders: what `adapter.dispatch(name, macro_namespace)` searches.
#[derive(Debug)]
pub(super) struct Dispatcher {
    pub(super) global: Arc<IndexMap<String, MacroDef>>,
    pub(super) by_package: HashMap<String, Arc<IndexMap<String, MacroDef>>>,
    pub(super) root: String,
    pub(super) search_orders: IndexMap<String, Vec<String>>,
    /// The adapter (`strata`, `postgres`).
    pub(super) adapter: &'static str,
}

impl Dispatcher {
    /// The packages dispatch searches for `namespace`, as dbt: the project's `search_order`
    /// for it when set; for an installed package, the root project and then the package (so
    /// a project overrides a package's implementation); `None` is every macro.
    fn search(&self, namespace: Option<&str>) -> Vec<Option<String>> {
        match namespace {
            None | Some("dbt") => vec![None],
            Some(ns) => match self.search_orders.get(ns) {
                Some(order) => order.iter().cloned().map(Some).collect(),
                None if self.by_package.contains_key(ns) => {
                    vec![Some(self.root.clone()), Some(ns.to_string())]
                }
                None => vec![Some(ns.to_string())],
            },
        }
    }

    /// `adapter.dispatch(name, namespace)`: the first `<adapter>__name` found, package by
    /// package; an error naming what was tried when there is none.
    pub(super) fn dispatch(&self, name: &str, namespace: Option<&str>) -> Result<Value, JError> {
        let search = self.search(namespace);
        let mut tried = Vec::new();
        for package in &search {
            let macros = match package {
                None => Some(&self.global),
                Some(p) => self.by_package.get(p),
            };
            for prefix in prefixes(self.adapter) {
                let candidate = format!("{prefix}{name}");
                if let Some(def) = macros.and_then(|m| m.get(&candidate)) {
                    return macro_value(def).ok_or_else(|| {
                        JError::new(ErrorKind::UnknownFunction, format!("macro `{candidate}`"))
                    });
                }
                tried.push(match package {
                    Some(p) => format!("{p}.{candidate}"),
                    None => candidate,
                });
            }
        }
        // dbt's own macros (namespace `dbt` or none) may also be called by their plain name.
        if search == [None]
            && let Some(def) = self.global.get(name)
            && let Some(f) = macro_value(def)
        {
            return Ok(f);
        }
        Err(JError::new(
            ErrorKind::UnknownFunction,
            format!(
                "adapter.dispatch('{name}'{}): no implementation found; tried {}",
                namespace.map(|n| format!(", '{n}'")).unwrap_or_default(),
                tried.join(", ")
            ),
        ))
    }
}

/// The macro named exactly `name`.
pub(super) fn exact(macros: &IndexMap<String, MacroDef>, name: &str) -> Option<Value> {
    macro_value(macros.get(name)?)
}

/// A macro as a callable value. A macro whose body uses `kwargs` takes keyword arguments it
/// does not declare, as in Jinja2: they reach it as the mapping `kwargs`.
pub(super) fn macro_value(def: &MacroDef) -> Option<Value> {
    let template = template_name(&def.file);
    let mangled = format!("{MACRO_PREFIX}{}", def.name);
    let macro_name = def.name.clone();
    let catch_all = uses_name(&def.sql, "kwargs").then(|| declared_args(&def.sql));
    // A macro using `varargs` takes positional arguments beyond those it declares.
    let positional = uses_name(&def.sql, "varargs").then(|| declared_args(&def.sql).len());
    Some(Value::from_function(
        move |state: &State, args: Rest<Value>, kwargs: Kwargs| -> Result<Value, JError> {
            let mut args = args.0;
            let varargs = positional.map(|n| Value::from(args.split_off(n.min(args.len()))));
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
            call_macro_with(
                state,
                &template,
                &mangled,
                &macro_name,
                &args,
                extra,
                varargs,
            )
        },
    ))
}

/// Whether a macro's body (past its signature) uses the variable `name` (`kwargs`, `varargs`).
pub(super) fn uses_name(sql: &str, name: &str) -> bool {
    let body = sql.split_once("%}").map(|(_, b)| b).unwrap_or_default();
    body.match_indices(name).any(|(i, _)| {
        let before = body[..i].chars().next_back();
        let after = body[i + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The argument names of a macro's signature: `{% macro m(a, b=[1, 2], c=none) %}` gives
/// a, b, c.
pub(super) fn declared_args(sql: &str) -> Vec<String> {
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
pub(super) struct Namespace(
    pub(super) Arc<IndexMap<String, MacroDef>>,
    pub(super) NamespaceKind,
    /// The adapter's dispatch prefixes.
    pub(super) &'static [&'static str],
);

/// How a namespace finds `ns.name`.
#[derive(Debug, Clone, Copy)]
pub(super) enum NamespaceKind {
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
            NamespaceKind::Dbt => dispatch(&self.0, self.2, name),
            NamespaceKind::Package => {
                exact(&self.0, name).or_else(|| dispatch(&self.0, self.2, name))
            }
        }
    }
}

/// `adapter`: `quote`, `dispatch` and the names dbt's adapters share.
#[derive(Debug)]
pub(super) struct Adapter(pub(super) Arc<Dispatcher>);

impl Object for Adapter {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from(self.0.adapter)),
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
                        .map(|(name, ty)| Column::value(name, ty))
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
                let namespace: Option<String> = namespace.or(kwargs.get("macro_namespace")?);
                self.0.dispatch(&name, namespace.as_deref())
            }
            other => Err(JError::new(
                ErrorKind::UnknownMethod,
                format!("adapter.{other}() is not available in Strata yet"),
            )),
        }
    }
}
