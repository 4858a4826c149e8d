//! Python list and dict methods dbt templates rely on. Jinja2 lists and dicts are Python's:
//! macros build them with `{% set parts = [] %}` and `{% do parts.append(x) %}` (dbt_utils'
//! `generate_surrogate_key`, `star`, ...) or `{% set seen = {} %}` and `{% do
//! seen.update({k: v}) %}`. minijinja's are immutable, so an empty list or dict assigned by
//! `set` becomes a [`PyList`] or [`PyDict`], which their methods change in place; every list
//! answers `index` and `count`, and strings and dicts Python's usual methods.

use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

/// The function `{% set x = [] %}` is rewritten to call.
pub const NEW_LIST: &str = "__strata_list";

/// The function `{% set x = {} %}` is rewritten to call.
pub const NEW_DICT: &str = "__strata_dict";

/// Rewrite `{% set name = [...] %}`, `{% set name = {} %}` and macro arguments defaulting to
/// `[]` (any whitespace control) so the list or dict can change.
pub fn mutable_empty_lists(source: &str) -> std::borrow::Cow<'_, str> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    #[allow(clippy::unwrap_used)] // a constant pattern
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"(\{%-?\s*set\s+[A-Za-z_][A-Za-z0-9_.]*\s*=\s*)(\[[^%]*?\]|\{\s*\})(\s*-?%\})",
        )
        .unwrap()
    });
    // A macro argument defaulting to `[]` gets a fresh list it may change, per call.
    static SIGNATURE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static EMPTY_DEFAULT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    #[allow(clippy::unwrap_used)] // constant patterns
    let signature = SIGNATURE.get_or_init(|| {
        regex::Regex::new(
            r"(\{%-?\s*(?:macro|test)\s+[A-Za-z_][A-Za-z0-9_]*\s*\()([^%]*)(\)\s*-?%\})",
        )
        .unwrap()
    });
    #[allow(clippy::unwrap_used)]
    let empty_default = EMPTY_DEFAULT.get_or_init(|| regex::Regex::new(r"=\s*\[\s*\]").unwrap());
    if !source.contains("set") && !source.contains("[]") {
        return std::borrow::Cow::Borrowed(source);
    }
    let lists = re.replace_all(source, |c: &regex::Captures<'_>| {
        match c[2].starts_with('[') {
            true => format!("{}{NEW_LIST}({}){}", &c[1], &c[2], &c[3]),
            false => format!("{}{NEW_DICT}(){}", &c[1], &c[3]),
        }
    });
    if !lists.contains("[]") {
        return lists;
    }
    std::borrow::Cow::Owned(
        signature
            .replace_all(&lists, |c: &regex::Captures<'_>| {
                let args = empty_default.replace_all(&c[2], format!("={NEW_LIST}()"));
                format!("{}{args}{}", &c[1], &c[3])
            })
            .into_owned(),
    )
}

/// A dict that methods may change.
#[derive(Debug, Default)]
pub struct PyDict(Mutex<indexmap::IndexMap<Value, Value>>);

impl PyDict {
    /// An empty dict, as a template value.
    pub fn new_value() -> Value {
        Value::from_object(PyDict::default())
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

/// Python methods on template values (the environment's unknown-method callback): lists'
/// `index` and `count` here, and the string and dict methods (`endswith`, `split`, `get`,
/// `items`, ...) of minijinja-contrib's Python compatibility.
pub fn python_method(
    state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if !matches!(value.kind(), minijinja::value::ValueKind::Seq) {
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
                "list.{method}() changes a list, and only lists assigned with `{{% set name = [...] %}}` can change; build this one that way"
            ),
        )),
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}
