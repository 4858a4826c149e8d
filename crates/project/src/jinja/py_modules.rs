//! The rest of dbt's Python context: `tojson`, `fromjson`, `toyaml`, `fromyaml`, `zip`,
//! `modules.itertools` (`chain`, `product`, `combinations`) and `modules.pytz` (`timezone`,
//! `utc`, with `datetime.astimezone(tz)` giving a date-time in that zone).

use std::fmt;
use std::sync::Arc;

use chrono::DateTime;
use minijinja::value::{Kwargs, Object, ObjectRepr, Rest, Serde, Value, from_args};
use minijinja::{Environment, Error, ErrorKind, State};

use super::datetime::PyDate;

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Register the functions in `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_function(
        "tojson",
        |value: Value, kwargs: Kwargs| -> Result<Value, Error> {
            let sort: Option<bool> = kwargs.get("sort_keys")?;
            kwargs.assert_all_used()?;
            let mut json = serde_json::to_value(&value).map_err(|e| invalid(e.to_string()))?;
            if sort.unwrap_or(false) {
                json = sorted(json);
            }
            Ok(Value::from(json.to_string()))
        },
    );
    env.add_function(
        "fromjson",
        |text: String, default: Option<Value>| -> Result<Value, Error> {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => Ok(Value::from(Serde(v))),
                Err(e) => default.ok_or_else(|| invalid(format!("fromjson: {e}"))),
            }
        },
    );
    env.add_function(
        "toyaml",
        |value: Value, kwargs: Kwargs| -> Result<Value, Error> {
            let _: Option<bool> = kwargs.get("sort_keys")?;
            kwargs.assert_all_used()?;
            let json = serde_json::to_value(&value).map_err(|e| invalid(e.to_string()))?;
            yaml_serde::to_string(&json)
                .map(Value::from)
                .map_err(|e| invalid(format!("toyaml: {e}")))
        },
    );
    env.add_function(
        "fromyaml",
        |text: String, default: Option<Value>| -> Result<Value, Error> {
            match yaml_serde::from_str::<serde_json::Value>(&text) {
                Ok(v) => Ok(Value::from(Serde(v))),
                Err(e) => default.ok_or_else(|| invalid(format!("fromyaml: {e}"))),
            }
        },
    );
    env.add_function("zip", |lists: Rest<Value>| -> Result<Value, Error> {
        let lists: Vec<Vec<Value>> = lists
            .iter()
            .map(|l| l.try_iter().map(Iterator::collect))
            .collect::<Result<_, _>>()?;
        let n = lists.iter().map(Vec::len).min().unwrap_or(0);
        Ok(Value::from(
            (0..n)
                .map(|i| Value::from(lists.iter().map(|l| l[i].clone()).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
        ))
    });
}

/// JSON with every object's keys in order.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => {
            let mut pairs: Vec<(String, serde_json::Value)> =
                o.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(pairs.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// `modules.itertools`.
#[derive(Debug)]
pub struct Itertools;

impl Object for Itertools {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let lists = |args: &[Value]| -> Result<Vec<Vec<Value>>, Error> {
            args.iter()
                .map(|l| l.try_iter().map(Iterator::collect))
                .collect()
        };
        match method {
            "chain" => Ok(Value::from(
                lists(args)?.into_iter().flatten().collect::<Vec<_>>(),
            )),
            "product" => {
                let mut out: Vec<Vec<Value>> = vec![Vec::new()];
                for list in lists(args)? {
                    out = out
                        .into_iter()
                        .flat_map(|prefix| {
                            list.iter().map(move |x| {
                                let mut p = prefix.clone();
                                p.push(x.clone());
                                p
                            })
                        })
                        .collect();
                }
                Ok(Value::from(
                    out.into_iter().map(Value::from).collect::<Vec<_>>(),
                ))
            }
            "combinations" => {
                let (items, r): (Value, usize) = from_args(args)?;
                let items: Vec<Value> = items.try_iter()?.collect();
                let mut out = Vec::new();
                combinations(&items, r, 0, &mut Vec::new(), &mut out);
                Ok(Value::from(out))
            }
            other => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!(
                    "modules.itertools.{other} is not available (chain, product, combinations are)"
                ),
            )),
        }
    }
}

fn combinations(
    items: &[Value],
    r: usize,
    from: usize,
    cur: &mut Vec<Value>,
    out: &mut Vec<Value>,
) {
    if cur.len() == r {
        out.push(Value::from(cur.clone()));
        return;
    }
    for i in from..items.len() {
        cur.push(items[i].clone());
        combinations(items, r, i + 1, cur, out);
        cur.pop();
    }
}

/// `modules.pytz`: `timezone(name)` and `utc`.
#[derive(Debug)]
pub struct Pytz;

impl Object for Pytz {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "utc" | "UTC" => Some(Value::from_object(Tz(chrono_tz::UTC))),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "timezone" => {
                let (name,): (String,) = from_args(args)?;
                name.parse::<chrono_tz::Tz>()
                    .map(|tz| Value::from_object(Tz(tz)))
                    .map_err(|_| invalid(format!("pytz.timezone('{name}'): unknown time zone")))
            }
            other => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.pytz.{other} is not available (timezone, utc are)"),
            )),
        }
    }
}

/// A time zone from `modules.pytz`.
#[derive(Debug, Clone, Copy)]
pub struct Tz(pub chrono_tz::Tz);

impl Object for Tz {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "zone").then(|| Value::from(self.0.name()))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

/// A date-time in a time zone (`datetime.astimezone(tz)`).
#[derive(Debug, Clone, Copy)]
pub struct ZonedDateTime(pub DateTime<chrono_tz::Tz>);

impl Object for ZonedDateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "tzinfo" => Some(Value::from_object(Tz(self.0.timezone()))),
            other => super::datetime::datetime_field(&self.0, other),
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => Ok(Value::from(
                self.0
                    .format(&super::datetime::strftime_arg(args)?)
                    .to_string(),
            )),
            "isoformat" => Ok(Value::from(
                self.0.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string(),
            )),
            "date" => Ok(Value::from_object(PyDate(self.0.date_naive()))),
            "astimezone" => {
                let (tz,): (Value,) = from_args(args)?;
                let tz = tz.downcast_object_ref::<Tz>().ok_or_else(|| {
                    invalid("astimezone() takes a time zone from modules.pytz".into())
                })?;
                Ok(Value::from_object(ZonedDateTime(
                    self.0.with_timezone(&tz.0),
                )))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f%:z"))
    }
}
