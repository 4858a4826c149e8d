//! Relations as templates see them: `ref`, `source`, `this` and `api.Relation.create`.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, from_args};
use minijinja::{Error as JError, ErrorKind, State};

use super::*;
use crate::node::{RefCall, Relation};

pub(super) fn ref_fn(state: &State, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, JError> {
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

pub(super) fn source_fn(state: &State, source: String, table: String) -> Result<Value, JError> {
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
    pub(super) relation: Relation,
    pub(super) cte: Option<String>,
    pub(super) filter: Option<String>,
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
pub(super) const RELATION_KEYS: &[&str] = &[
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

/// `api.Relation.create(database=, schema=, identifier=)` and `api.Column`.
#[derive(Debug)]
pub(super) struct Api;

impl Object for Api {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "Relation" => Some(Value::from_object(RelationFactory)),
            "Column" => Some(Value::from_object(super::column::ColumnFactory)),
            _ => None,
        }
    }
}

/// A relation from `database=`, `schema=` and `identifier=` keyword arguments.
pub(super) fn relation_from_kwargs(kwargs: &Kwargs) -> Result<Relation, JError> {
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
pub(super) struct RelationFactory;

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
