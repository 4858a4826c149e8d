//! Python list methods dbt templates rely on. Jinja2 lists are Python lists: macros build
//! them with `{% set parts = [] %}` and `{% do parts.append(x) %}` (dbt_utils'
//! `generate_surrogate_key`, `star`, ...). minijinja's lists are immutable, so an empty list
//! assigned by `set` becomes a [`PyList`], which `append`, `extend`, `insert`, `pop` and
//! `remove` change in place; every list answers `index` and `count`.

use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

/// The function `{% set x = [] %}` is rewritten to call.
pub const NEW_LIST: &str = "__strata_list";

/// Rewrite `{% set name = [] %}` (any whitespace control) so the list can grow.
pub fn mutable_empty_lists(source: &str) -> std::borrow::Cow<'_, str> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    #[allow(clippy::unwrap_used)] // a constant pattern
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(\{%-?\s*set\s+[A-Za-z_][A-Za-z0-9_.]*\s*=\s*)\[\s*\](\s*-?%\})")
            .unwrap()
    });
    if !source.contains("set") {
        return std::borrow::Cow::Borrowed(source);
    }
    re.replace_all(source, format!("${{1}}{NEW_LIST}()${{2}}"))
}

/// A list that methods may change.
#[derive(Debug, Default)]
pub struct PyList(Mutex<Vec<Value>>);

impl PyList {
    /// An empty list, as a template value.
    pub fn new_value() -> Value {
        Value::from_object(PyList::default())
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
                return sequence_method(state, &Value::from_object(self.items()), method, args);
            }
        }
        Ok(Value::UNDEFINED)
    }
}

/// Methods of every list (the environment's unknown-method callback): `index` and `count`.
pub fn sequence_method(
    _state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let unknown = || {
        Error::new(
            ErrorKind::UnknownMethod,
            format!("{} has no method named {method}", value.kind()),
        )
    };
    if !matches!(value.kind(), minijinja::value::ValueKind::Seq) {
        return Err(unknown());
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
                "list.{method}() changes a list, and only lists made empty with `{{% set name = [] %}}` can change; build this one that way"
            ),
        )),
        _ => Err(unknown()),
    }
}
