//! A column as dbt's adapters describe it (`adapter.get_columns_in_relation`,
//! `api.Column.create`): its name and type, and the type questions packages ask
//! (`is_string()`, `is_float()`, `string_size()`, ...), answered as dbt's base `Column` does.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, from_args};
use minijinja::{Error as JError, ErrorKind, State};

/// One column: `name` and the type the warehouse reports (`VARCHAR`, `DECIMAL(10,2)`, ...).
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub dtype: String,
}

const KEYS: &[&str] = &[
    "name",
    "column",
    "dtype",
    "data_type",
    "quoted",
    "char_size",
    "numeric_precision",
    "numeric_scale",
];

impl Column {
    /// A column as a template value.
    pub fn value(name: impl Into<String>, dtype: impl Into<String>) -> Value {
        Value::from_object(Column {
            name: name.into(),
            dtype: dtype.into(),
        })
    }

    /// The type's name without its arguments, lowercase: `decimal` for `DECIMAL(10,2)`.
    fn base(&self) -> String {
        let t = self.dtype.split('(').next().unwrap_or_default();
        t.trim().to_ascii_lowercase()
    }

    /// The type's numeric arguments: `(10, 2)` for `DECIMAL(10,2)`, `(256)` for
    /// `VARCHAR(256)`.
    fn type_args(&self) -> Vec<i64> {
        let Some((_, rest)) = self.dtype.split_once('(') else {
            return Vec::new();
        };
        rest.trim_end_matches(')')
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    }

    fn is_string(&self) -> bool {
        matches!(
            self.base().as_str(),
            "text" | "character varying" | "character" | "varchar" | "string" | "char" | "bpchar"
        )
    }

    fn is_integer(&self) -> bool {
        matches!(
            self.base().as_str(),
            "smallint"
                | "integer"
                | "bigint"
                | "tinyint"
                | "ubigint"
                | "hugeint"
                | "int"
                | "int2"
                | "int4"
                | "int8"
                | "smallserial"
                | "serial"
                | "bigserial"
        )
    }

    fn is_float(&self) -> bool {
        matches!(
            self.base().as_str(),
            "real" | "float4" | "float" | "double precision" | "float8" | "double"
        )
    }

    fn is_numeric(&self) -> bool {
        matches!(self.base().as_str(), "numeric" | "decimal")
    }

    /// The declared length of a string type; 256 when it has none, as dbt's default.
    fn string_size(&self) -> Result<i64, JError> {
        if !self.is_string() {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                format!(
                    "string_size() is for string columns; `{}` is {}",
                    self.name, self.dtype
                ),
            ));
        }
        Ok(self.type_args().first().copied().unwrap_or(256))
    }
}

impl Object for Column {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let args = self.type_args();
        Some(match key.as_str()? {
            "name" | "column" => Value::from(self.name.clone()),
            "dtype" | "data_type" => Value::from(self.dtype.clone()),
            "quoted" => Value::from(strata_common::quote_ident(&self.name)),
            "char_size" if self.is_string() => args.first().map(|v| Value::from(*v))?,
            "numeric_precision" if self.is_numeric() => args.first().map(|v| Value::from(*v))?,
            "numeric_scale" if self.is_numeric() => args.get(1).map(|v| Value::from(*v))?,
            "char_size" | "numeric_precision" | "numeric_scale" => Value::from(()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(KEYS)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        Ok(match method {
            "is_string" => Value::from(self.is_string()),
            "is_integer" => Value::from(self.is_integer()),
            "is_float" => Value::from(self.is_float()),
            "is_numeric" => Value::from(self.is_numeric()),
            "is_number" => Value::from(self.is_integer() || self.is_float() || self.is_numeric()),
            "string_size" => Value::from(self.string_size()?),
            "string_type" => {
                let (size,): (i64,) = from_args(args)?;
                Value::from(format!("character varying({size})"))
            }
            // Whether this string column's values fit in `other` (a wider string column).
            "can_expand_to" => {
                let (other,): (Value,) = from_args(args)?;
                let Some(other) = other.downcast_object_ref::<Column>() else {
                    return Ok(Value::from(false));
                };
                Value::from(
                    self.is_string()
                        && other.is_string()
                        && self.string_size()? < other.string_size()?,
                )
            }
            "literal" => {
                let (v,): (Value,) = from_args(args)?;
                Value::from(format!("{v}::{}", self.dtype))
            }
            _ => {
                return Err(JError::new(
                    ErrorKind::UnknownMethod,
                    format!("a column has no method `{method}`"),
                ));
            }
        })
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Column {} ({})>", self.name, self.dtype)
    }
}

/// `api.Column`: `api.Column.create(name, dtype)` and `api.Column.translate_type(dtype)`.
#[derive(Debug)]
pub struct ColumnFactory;

impl Object for ColumnFactory {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, JError> {
        match method {
            "create" => {
                let (name, dtype): (String, String) = from_args(args)?;
                Ok(Column::value(name, dtype))
            }
            "translate_type" => {
                let (dtype,): (String,) = from_args(args)?;
                Ok(Value::from(dtype))
            }
            _ => Err(JError::from(ErrorKind::UnknownMethod)),
        }
    }
}
