//! Python list and dict methods dbt templates rely on. Jinja2 lists and dicts are Python's:
//! macros build them with `{% set parts = [] %}` and `{% do parts.append(x) %}` (dbt_utils'
//! `generate_surrogate_key`, `star`, ...) or `{% set seen = {} %}` and `{% do
//! seen.update({k: v}) %}`. minijinja's are immutable, so the template source is rewritten
//! (see [`super::rewrite`]) so that list and dict literals, and values assigned by `set`, are
//! a [`PyList`] or [`PyDict`], which their methods change in place; every list answers `index`
//! and `count`, and strings and dicts Python's usual methods.

use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

/// The function a list literal `[...]` is rewritten to call.
pub const NEW_LIST: &str = "__strata_list";

/// The function a dict literal `{...}` is rewritten to call.
pub const NEW_DICT: &str = "__strata_dict";

/// A dict that methods may change.
#[derive(Debug, Default)]
pub struct PyDict(Mutex<indexmap::IndexMap<Value, Value>>);

impl PyDict {
    /// A dict holding `items` (a dict literal's pairs), as a template value.
    pub fn new_value(items: Option<Value>) -> Result<Value, Error> {
        let mut map = indexmap::IndexMap::new();
        if let Some(items) = items {
            for k in items.try_iter()? {
                let v = items.get_item(&k)?;
                map.insert(k, v);
            }
        }
        Ok(Value::from_object(PyDict(Mutex::new(map))))
    }

    fn snapshot(&self) -> Value {
        let items = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        Value::from_iter(items)
    }
}

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .lock()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        )
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.0.lock().ok().map(|m| m.len())
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let poisoned = || Error::new(ErrorKind::InvalidOperation, "dict lock poisoned");
        match (method, args) {
            ("update", [other]) => {
                let pairs: Vec<(Value, Value)> = other
                    .try_iter()?
                    .map(|k| {
                        let v = other.get_item(&k).unwrap_or_default();
                        (k, v)
                    })
                    .collect();
                self.0.lock().map_err(|_| poisoned())?.extend(pairs);
                Ok(Value::UNDEFINED)
            }
            ("pop", [key, rest @ ..]) => {
                let found = self.0.lock().map_err(|_| poisoned())?.shift_remove(key);
                match (found, rest.first()) {
                    (Some(v), _) => Ok(v),
                    (None, Some(default)) => Ok(default.clone()),
                    (None, None) => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("dict.pop({key}): no such key"),
                    )),
                }
            }
            ("setdefault", [key, rest @ ..]) => {
                let mut m = self.0.lock().map_err(|_| poisoned())?;
                Ok(m.entry(key.clone())
                    .or_insert_with(|| rest.first().cloned().unwrap_or_default())
                    .clone())
            }
            _ => python_method(state, &self.snapshot(), method, args),
        }
    }
}

/// `{% set name = value %}`'s value as Python would have it: a plain list or mapping (a
/// filter's result, a config value, `a + b`) becomes a list or dict of its own that methods
/// may change; everything else, including lists and dicts that already may, is kept as it is.
pub fn own(value: Value) -> Result<Value, Error> {
    use minijinja::value::ValueKind;
    let Some(obj) = value.as_object() else {
        return Ok(value);
    };
    if obj.downcast_ref::<PyList>().is_some()
        || obj.downcast_ref::<PyDict>().is_some()
        || obj.downcast_ref::<PySet>().is_some()
    {
        return Ok(value);
    }
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable if plain(&value) => PyList::new_value(Some(value)),
        ValueKind::Map if plain(&value) => PyDict::new_value(Some(value)),
        _ => Ok(value),
    }
}

/// Whether `value` is one of minijinja's own lists or mappings (a literal, a filter's result,
/// deserialized data, a lazy `a + b`), not an object with methods of its own (a relation, a
/// result table, a tuple).
fn plain(value: &Value) -> bool {
    let Some(obj) = value.as_object() else {
        return false;
    };
    if value.is_tuple() || super::agate::has_methods(obj) {
        return false;
    }
    match value.kind() {
        // minijinja's maps are `IndexMap`s (the `preserve_order` feature).
        minijinja::value::ValueKind::Map => obj
            .downcast_ref::<indexmap::IndexMap<Value, Value>>()
            .is_some(),
        _ => true,
    }
}

/// A list that methods may change.
#[derive(Debug, Default)]
pub struct PyList(Mutex<Vec<Value>>);

impl PyList {
    /// A list holding `items` (a list literal's values), as a template value.
    pub fn new_value(items: Option<Value>) -> Result<Value, Error> {
        let items = match items {
            Some(v) => v.try_iter()?.collect(),
            None => Vec::new(),
        };
        Ok(Value::from_object(PyList(Mutex::new(items))))
    }

    fn items(&self) -> Vec<Value> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Object for PyList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.0.lock().ok()?;
        let i = key.as_i64()?;
        let i = if i < 0 { items.len() as i64 + i } else { i };
        items.get(usize::try_from(i).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.0.lock().ok().map(|v| v.len())
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let poisoned = || Error::new(ErrorKind::InvalidOperation, "list lock poisoned");
        let mut items = self.0.lock().map_err(|_| poisoned())?;
        match (method, args) {
            ("append", [x]) => items.push(x.clone()),
            ("extend", [xs]) => items.extend(xs.try_iter()?),
            ("insert", [i, x]) => {
                let i = i.as_i64().unwrap_or(0).clamp(0, items.len() as i64) as usize;
                items.insert(i, x.clone());
            }
            ("pop", []) => return Ok(items.pop().unwrap_or_default()),
            ("pop", [i]) => {
                let i = i.as_i64().unwrap_or(-1);
                let i = if i < 0 { items.len() as i64 + i } else { i };
                return match usize::try_from(i).ok().filter(|i| *i < items.len()) {
                    Some(i) => Ok(items.remove(i)),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "pop index out of range",
                    )),
                };
            }
            ("remove", [x]) => match items.iter().position(|v| v == x) {
                Some(i) => {
                    items.remove(i);
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("list.remove({x}): not in the list"),
                    ));
                }
            },
            _ => {
                drop(items);
                return python_method(state, &Value::from_object(self.items()), method, args);
            }
        }
        Ok(Value::UNDEFINED)
    }
}

/// Python's `set(...)`: distinct values (kept in first-seen order for iteration) that compare
/// equal to another set with the same values in any order, with `add`, `update`, `discard`,
/// `remove`, `union`, `intersection`, `difference`, `issubset` and `issuperset`.
#[derive(Debug, Default)]
pub struct PySet(Mutex<Vec<Value>>);

impl PySet {
    /// The set of `items`' values (empty without).
    pub fn new_value(items: Option<Value>) -> Result<Value, Error> {
        let mut out: Vec<Value> = Vec::new();
        if let Some(items) = items {
            for v in items.try_iter()? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        Ok(Value::from_object(PySet(Mutex::new(out))))
    }

    fn items(&self) -> Vec<Value> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Object for PySet {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        None
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.0.lock().ok().map(|v| v.len())
    }

    fn custom_cmp(
        self: &Arc<Self>,
        other: &minijinja::value::DynObject,
    ) -> Option<std::cmp::Ordering> {
        let other = other.downcast_ref::<PySet>()?.items();
        let mine = self.items();
        (mine.len() == other.len() && mine.iter().all(|v| other.contains(v)))
            .then_some(std::cmp::Ordering::Equal)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let poisoned = || Error::new(ErrorKind::InvalidOperation, "set lock poisoned");
        let others = |args: &[Value]| -> Result<Vec<Value>, Error> {
            let mut all = Vec::new();
            for a in args {
                all.extend(a.try_iter()?);
            }
            Ok(all)
        };
        let mine = self.items();
        match method {
            "add" | "update" | "discard" | "remove" => {
                let mut items = self.0.lock().map_err(|_| poisoned())?;
                let values = if method == "add" || method == "discard" || method == "remove" {
                    args.to_vec()
                } else {
                    others(args)?
                };
                for v in values {
                    match method {
                        "add" | "update" => {
                            if !items.contains(&v) {
                                items.push(v);
                            }
                        }
                        _ => match items.iter().position(|x| x == &v) {
                            Some(i) => {
                                items.remove(i);
                            }
                            None if method == "remove" => {
                                return Err(Error::new(
                                    ErrorKind::InvalidOperation,
                                    format!("set.remove({v}): not in the set"),
                                ));
                            }
                            None => {}
                        },
                    }
                }
                Ok(Value::UNDEFINED)
            }
            "union" => PySet::new_value(Some(Value::from(
                mine.into_iter().chain(others(args)?).collect::<Vec<_>>(),
            ))),
            "intersection" | "difference" => {
                let other = others(args)?;
                let keep = method == "intersection";
                PySet::new_value(Some(Value::from(
                    mine.into_iter()
                        .filter(|v| other.contains(v) == keep)
                        .collect::<Vec<_>>(),
                )))
            }
            "issubset" => {
                let other = others(args)?;
                Ok(Value::from(mine.iter().all(|v| other.contains(v))))
            }
            "issuperset" => {
                let other = others(args)?;
                Ok(Value::from(other.iter().all(|v| mine.contains(v))))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a set has no method `{method}`"),
            )),
        }
    }
}

/// Python methods on template values (the environment's unknown-method callback): lists'
/// `index` and `count` here, and the string and dict methods (`endswith`, `split`, `get`,
/// `items`, ...) of minijinja-contrib's Python compatibility.
pub fn python_method(
    state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if !matches!(
        value.kind(),
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable
    ) {
        return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args);
    }
    match (method, args) {
        ("index", [x]) => value
            .try_iter()?
            .position(|v| &v == x)
            .map(Value::from)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("list.index({x}): not in the list"),
                )
            }),
        ("count", [x]) => Ok(Value::from(value.try_iter()?.filter(|v| v == x).count())),
        ("append" | "extend" | "insert" | "pop" | "remove", _) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "list.{method}() changes a list, and this one was not assigned: assign it first, with `{{% set name = ... %}}`, and change `name`"
            ),
        )),
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}
