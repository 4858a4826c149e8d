//! A small stand-in for Python's `datetime` module, as dbt exposes it to templates through
//! `modules.datetime` and `run_started_at`.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, from_args};
use minijinja::{Error, ErrorKind, State};

/// A timezone-aware instant (`datetime.datetime` in UTC).
#[derive(Debug, Clone, Copy)]
pub struct PyDateTime(pub DateTime<Utc>);

/// A calendar date (`datetime.date`).
#[derive(Debug, Clone, Copy)]
pub struct PyDate(pub NaiveDate);

/// A duration (`datetime.timedelta`).
#[derive(Debug, Clone, Copy)]
pub struct PyTimedelta(pub Duration);

/// A date-time's attribute as Python names it (`year`, ..., `microsecond`).
pub(super) fn datetime_field(d: &(impl Datelike + Timelike), key: &str) -> Option<Value> {
    Some(Value::from(match key {
        "year" => d.year() as i64,
        "month" => d.month() as i64,
        "day" => d.day() as i64,
        "hour" => d.hour() as i64,
        "minute" => d.minute() as i64,
        "second" => d.second() as i64,
        "microsecond" => (d.nanosecond() / 1000) as i64,
        _ => return None,
    }))
}

/// The one `timedelta` argument of `add()`.
fn timedelta_arg(args: &[Value]) -> Result<Duration, Error> {
    let (delta,): (Value,) = from_args(args)?;
    delta
        .downcast_object_ref::<PyTimedelta>()
        .map(|d| d.0)
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "add() takes a timedelta"))
}

/// A Python `strftime` format for chrono: Python's `%f` is microseconds (chrono's is
/// nanoseconds); `%%` stays a literal percent.
pub(super) fn strftime_arg(args: &[Value]) -> Result<String, Error> {
    let (fmt,): (String,) = from_args(args)?;
    let mut out = String::with_capacity(fmt.len() + 2);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        match (c, c == '%') {
            (_, true) => match chars.next() {
                Some('f') => out.push_str("%6f"),
                Some(n) => {
                    out.push('%');
                    out.push(n);
                }
                None => out.push('%'),
            },
            (c, false) => out.push(c),
        }
    }
    Ok(out)
}

impl Object for PyDateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        datetime_field(&self.0, key.as_str()?)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => Ok(Value::from(self.0.format(&strftime_arg(args)?).to_string())),
            "isoformat" => Ok(Value::from(
                self.0.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
            )),
            "date" => Ok(Value::from_object(PyDate(self.0.date_naive()))),
            "timestamp" => Ok(Value::from(self.0.timestamp_micros() as f64 / 1e6)),
            "astimezone" => {
                let (tz,): (Value,) = from_args(args)?;
                let tz = tz
                    .downcast_object_ref::<super::py_modules::Tz>()
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidOperation,
                            "astimezone() takes a time zone from modules.pytz",
                        )
                    })?;
                Ok(Value::from_object(super::py_modules::ZonedDateTime(
                    self.0.with_timezone(&tz.0),
                )))
            }
            "replace" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let mut d = self.0;
                for key in [
                    "year",
                    "month",
                    "day",
                    "hour",
                    "minute",
                    "second",
                    "microsecond",
                ] {
                    if let Some(v) = kwargs.get::<Option<u32>>(key)? {
                        let next = match key {
                            "year" => d.with_year(v as i32),
                            "month" => d.with_month(v),
                            "day" => d.with_day(v),
                            "hour" => d.with_hour(v),
                            "minute" => d.with_minute(v),
                            "second" => d.with_second(v),
                            _ => v.checked_mul(1000).and_then(|n| d.with_nanosecond(n)),
                        };
                        d = next.ok_or_else(|| {
                            Error::new(ErrorKind::InvalidOperation, format!("invalid {key} {v}"))
                        })?;
                    }
                }
                kwargs.assert_all_used()?;
                Ok(Value::from_object(PyDateTime(d)))
            }
            "add" => Ok(Value::from_object(PyDateTime(
                self.0 + timedelta_arg(args)?,
            ))),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f+00:00"))
    }
}

impl Object for PyDate {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let d = self.0;
        Some(Value::from(match key.as_str()? {
            "year" => d.year() as i64,
            "month" => d.month() as i64,
            "day" => d.day() as i64,
            _ => return None,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => Ok(Value::from(self.0.format(&strftime_arg(args)?).to_string())),
            "isoformat" => Ok(Value::from(self.0.format("%Y-%m-%d").to_string())),
            "add" => Ok(Value::from_object(PyDate(self.0 + timedelta_arg(args)?))),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl Object for PyTimedelta {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "days" => Some(Value::from(self.0.num_days())),
            "seconds" => Some(Value::from(self.0.num_seconds() % 86_400)),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "total_seconds" => Ok(Value::from(self.0.num_milliseconds() as f64 / 1000.0)),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.num_seconds();
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let hms = format!("{}:{:02}:{:02}", rest / 3600, (rest % 3600) / 60, rest % 60);
        match days {
            0 => write!(f, "{hms}"),
            1 | -1 => write!(f, "{days} day, {hms}"),
            _ => write!(f, "{days} days, {hms}"),
        }
    }
}

/// `modules.datetime.datetime`, `.date` and `.timedelta`: the class-like objects.
#[derive(Debug, Clone, Copy)]
enum PyClass {
    DateTime,
    Date,
    Timedelta,
}

impl Object for PyClass {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        match **self {
            PyClass::Timedelta => {
                // Python's order of positional arguments, and each unit in seconds.
                const UNITS: [(&str, f64); 7] = [
                    ("days", 86_400.0),
                    ("seconds", 1.0),
                    ("microseconds", 1e-6),
                    ("milliseconds", 1e-3),
                    ("minutes", 60.0),
                    ("hours", 3_600.0),
                    ("weeks", 604_800.0),
                ];
                let (positional, kwargs): (Rest<f64>, Kwargs) = from_args(args)?;
                if positional.len() > UNITS.len() {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "timedelta() takes at most 7 arguments",
                    ));
                }
                let mut d = Duration::zero();
                let micros =
                    |v: f64, unit: f64| Duration::microseconds((v * unit * 1e6).round() as i64);
                for (v, (_, unit)) in positional.iter().zip(UNITS) {
                    d += micros(*v, unit);
                }
                for (key, unit) in UNITS {
                    if let Some(v) = kwargs.get::<Option<f64>>(key)? {
                        d += micros(v, unit);
                    }
                }
                kwargs.assert_all_used()?;
                Ok(Value::from_object(PyTimedelta(d)))
            }
            PyClass::Date => {
                let (y, m, d): (i32, u32, u32) = from_args(args)?;
                NaiveDate::from_ymd_opt(y, m, d)
                    .map(|d| Value::from_object(PyDate(d)))
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "invalid date"))
            }
            PyClass::DateTime => {
                let (y, m, d, time): (i32, u32, u32, Rest<u32>) = from_args(args)?;
                let part = |i: usize| time.get(i).copied().unwrap_or(0);
                NaiveDate::from_ymd_opt(y, m, d)
                    .and_then(|date| date.and_hms_opt(part(0), part(1), part(2)))
                    .map(|dt| Value::from_object(PyDateTime(dt.and_utc())))
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "invalid datetime"))
            }
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match (**self, method) {
            (PyClass::DateTime, "now" | "utcnow" | "today") => {
                Ok(Value::from_object(PyDateTime(Utc::now())))
            }
            (PyClass::Date, "today") => Ok(Value::from_object(PyDate(Utc::now().date_naive()))),
            (PyClass::DateTime, "strptime") => {
                let (text, fmt): (String, String) = from_args(args)?;
                chrono::NaiveDateTime::parse_from_str(&text, &fmt)
                    .map(|dt| Value::from_object(PyDateTime(dt.and_utc())))
                    .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
            }
            (PyClass::Date, "fromisoformat") => {
                let (text,): (String,) = from_args(args)?;
                NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map(|d| Value::from_object(PyDate(d)))
                    .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// The `modules` global: `modules.datetime.{datetime,date,timedelta}` and `modules.re`.
#[derive(Debug)]
pub struct Modules;

impl Object for Modules {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(DateTimeModule)),
            "re" => Some(Value::from_object(super::re::ReModule)),
            "itertools" => Some(Value::from_object(super::py_modules::Itertools)),
            "pytz" => Some(Value::from_object(super::py_modules::Pytz)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["datetime", "re", "itertools", "pytz"])
    }
}

#[derive(Debug)]
struct DateTimeModule;

impl Object for DateTimeModule {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(match key.as_str()? {
            "datetime" => PyClass::DateTime,
            "date" => PyClass::Date,
            "timedelta" => PyClass::Timedelta,
            _ => return None,
        }))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["datetime", "date", "timedelta"])
    }
}
