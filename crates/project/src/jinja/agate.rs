//! Query results as dbt's agate tables: `run_query`, `statement` blocks and `load_result`.

use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Serde, Value};
use minijinja::{Error as JError, ErrorKind, State};

use super::*;

pub(super) fn query_error(msg: String) -> JError {
    JError::new(ErrorKind::InvalidOperation, msg)
}

/// `run_query(sql)`: the result as a table, or none while parsing (as dbt does).
pub(super) fn run_query_fn(state: &State, sql: String) -> Result<Value, JError> {
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
pub(super) fn statement_fn(
    state: &mut State,
    name: String,
    kwargs: Kwargs,
) -> Result<Value, JError> {
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
pub(super) fn load_result_fn(state: &State, name: String) -> Result<Value, JError> {
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
pub(super) struct JTable(pub(super) QueryResult);

impl Object for JTable {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return (i < self.0.rows.len()).then(|| {
                Value::from_object(ByColumn {
                    table: self.clone(),
                    row: Some(i),
                })
            });
        }
        match key.as_str()? {
            "rows" => Some(Value::from(
                (0..self.0.rows.len())
                    .map(|i| {
                        Value::from_object(ByColumn {
                            table: self.clone(),
                            row: Some(i),
                        })
                    })
                    .collect::<Vec<_>>(),
            )),
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
            "columns" => Some(Value::from_object(ByColumn {
                table: self.clone(),
                row: None,
            })),
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
pub(super) struct JColumn(Arc<JTable>, usize);

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

/// Whether `obj` is one of the result objects with methods of their own, which `set` keeps as
/// they are.
pub(super) fn has_methods(obj: &minijinja::value::DynObject) -> bool {
    obj.downcast_ref::<JTable>().is_some() || obj.downcast_ref::<ByColumn>().is_some()
}

/// A row of a [`JTable`] (`row: Some(i)`, its cells) or the table's columns (`row: None`), as
/// agate's `MappedSequence`: a list (`row[0]`, `columns[0]`) that is also a mapping by column
/// name (`row.table_name`, `columns['id']`, `.keys()`, `.values()`, `.items()`).
#[derive(Debug)]
pub(super) struct ByColumn {
    pub(super) table: Arc<JTable>,
    pub(super) row: Option<usize>,
}

impl ByColumn {
    /// The `i`th cell of the row, or the `i`th column.
    fn item(&self, i: usize) -> Value {
        match self.row {
            Some(r) => {
                let v = self.table.0.rows.get(r).and_then(|cells| cells.get(i));
                v.map(|v| Value::from(Serde(v))).unwrap_or_default()
            }
            None => Value::from_object(JColumn(self.table.clone(), i)),
        }
    }
}

impl Object for ByColumn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let columns = &self.table.0.columns;
        let i = match key.as_str() {
            Some(name) => columns.iter().position(|(n, _)| n == name)?,
            None => {
                let i = key.as_i64()?;
                let i = if i < 0 { columns.len() as i64 + i } else { i };
                usize::try_from(i).ok().filter(|i| *i < columns.len())?
            }
        };
        Some(self.item(i))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.table.0.columns.len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, JError> {
        let columns = &self.table.0.columns;
        let names = || columns.iter().map(|(n, _)| Value::from(n.clone()));
        let items = || (0..columns.len()).map(|i| self.item(i));
        Ok(match method {
            "keys" => Value::from(names().collect::<Vec<_>>()),
            "values" => Value::from(items().collect::<Vec<_>>()),
            "items" => Value::from(
                names()
                    .zip(items())
                    .map(|(k, v)| Value::from(vec![k, v]))
                    .collect::<Vec<_>>(),
            ),
            _ => return Err(JError::from(ErrorKind::UnknownMethod)),
        })
    }
}
