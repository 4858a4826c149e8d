//! The store's SQL, on either database: SQLite (a file per target, the default) or
//! PostgreSQL (shared by every machine working on a target).
//!
//! Statements are written once, in the SQL both understand (`INSERT … ON CONFLICT`,
//! `RETURNING`), with SQLite's `?N` parameters. SQLite binds them; for PostgreSQL they are
//! written into the statement as literals (numbers as digits, text quoted with `''`
//! doubled), which lets PostgreSQL type each from its column, and the statement runs over the
//! simple-query protocol, whose results are text. [`Row`] reads both alike.

use std::sync::mpsc;

use crate::{Error, Result};

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A Rust value as a statement parameter.
pub trait ToVal {
    fn val(&self) -> Val;
}

impl ToVal for str {
    fn val(&self) -> Val {
        Val::Text(self.to_string())
    }
}
impl ToVal for String {
    fn val(&self) -> Val {
        Val::Text(self.clone())
    }
}
impl ToVal for i64 {
    fn val(&self) -> Val {
        Val::Int(*self)
    }
}
impl ToVal for i32 {
    fn val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for u32 {
    fn val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for u64 {
    fn val(&self) -> Val {
        Val::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToVal for usize {
    fn val(&self) -> Val {
        Val::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToVal for f64 {
    fn val(&self) -> Val {
        Val::Real(*self)
    }
}
impl ToVal for bool {
    fn val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl<T: ToVal + ?Sized> ToVal for &T {
    fn val(&self) -> Val {
        (**self).val()
    }
}
impl<T: ToVal> ToVal for Option<T> {
    fn val(&self) -> Val {
        match self {
            Some(v) => v.val(),
            None => Val::Null,
        }
    }
}

/// Statement parameters: `vals![a, b]` (each anything [`ToVal`]).
macro_rules! vals {
    ($($e:expr),* $(,)?) => {
        &[$($crate::db::ToVal::val(&$e)),*][..]
    };
}
pub(crate) use vals;

/// A value read from a row as a Rust type.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}

impl FromVal for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            Val::Real(f) => Some(f.to_string()),
            Val::Null => None,
        }
    }
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            Val::Text(s) => s.parse().ok(),
            _ => None,
        }
    }
}
impl FromVal for u64 {
    fn from_val(v: &Val) -> Option<Self> {
        i64::from_val(v).and_then(|i| u64::try_from(i).ok())
    }
}
impl FromVal for u32 {
    fn from_val(v: &Val) -> Option<Self> {
        i64::from_val(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromVal for i32 {
    fn from_val(v: &Val) -> Option<Self> {
        i64::from_val(v).and_then(|i| i32::try_from(i).ok())
    }
}
impl FromVal for f64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Real(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            Val::Text(s) => s.parse().ok(),
            Val::Null => None,
        }
    }
}
impl FromVal for bool {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i != 0),
            Val::Text(s) => match s.as_str() {
                "t" | "true" | "1" => Some(true),
                "f" | "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A column that may be NULL.
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug)]
pub struct Row(Vec<Val>);

impl Row {
    /// The value of column `i` as `T`; an error when it is missing or of another type (a
    /// NULL where a value is required).
    pub fn get<T: FromVal>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).unwrap_or(&Val::Null);
        T::from_val(v).ok_or_else(|| {
            Error::Value(format!(
                "column {i} holds {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A connection to the store's database.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Pg),
}

impl Conn {
    /// Run a statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Val]) -> Result<usize> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute(sql, rusqlite::params_from_iter(params.iter()))?),
            Conn::Postgres(pg) => {
                let messages = pg.run(inline(sql, params))?;
                Ok(messages
                    .iter()
                    .map(|m| match m {
                        PgMessage::Done(n) => *n as usize,
                        PgMessage::Row(_) => 0,
                    })
                    .sum())
            }
        }
    }

    /// Run statements with no parameters (DDL, migrations).
    pub fn execute_batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => pg.run(sql.to_string()).map(|_| ()),
        }
    }

    /// Every row of a query.
    pub fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut values = Vec::with_capacity(width);
                    for i in 0..width {
                        values.push(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Val::Null,
                            rusqlite::types::ValueRef::Integer(i) => Val::Int(i),
                            rusqlite::types::ValueRef::Real(f) => Val::Real(f),
                            rusqlite::types::ValueRef::Text(t) => {
                                Val::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Blob(b) => {
                                Val::Text(String::from_utf8_lossy(b).into_owned())
                            }
                        });
                    }
                    out.push(Row(values));
                }
                Ok(out)
            }
            Conn::Postgres(pg) => Ok(pg
                .run(inline(sql, params))?
                .into_iter()
                .filter_map(|m| match m {
                    PgMessage::Row(values) => Some(Row(values
                        .into_iter()
                        .map(|v| v.map_or(Val::Null, Val::Text))
                        .collect())),
                    PgMessage::Done(_) => None,
                })
                .collect()),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query; an error when there is none.
    pub fn query_one(&mut self, sql: &str, params: &[Val]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| Error::Value(format!("no row from: {sql}")))
    }

    /// Run `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.execute_batch(match self {
            // Take the write lock up front: two writers never deadlock upgrading.
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Postgres(_) => "BEGIN",
        })?;
        match f(self) {
            Ok(v) => {
                self.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// `sql` with its `?N` parameters written in as PostgreSQL literals (a `?` inside a quoted
/// string or identifier is left alone).
pub fn inline(sql: &str, params: &[Val]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n: usize = digits.parse().unwrap_or(0);
                out.push_str(&literal(
                    params.get(n.wrapping_sub(1)).unwrap_or(&Val::Null),
                ));
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// A value as a PostgreSQL literal.
fn literal(v: &Val) -> String {
    match v {
        Val::Null => "NULL".into(),
        Val::Int(i) => i.to_string(),
        Val::Real(f) if f.is_finite() => format!("{f:?}"),
        Val::Real(f) => format!("'{f}'::float8"),
        // PostgreSQL text holds no NUL; standard_conforming_strings (the default since 9.1)
        // makes a doubled quote the only escape.
        Val::Text(s) => format!("'{}'", s.replace('\0', "").replace('\'', "''")),
    }
}

/// What a PostgreSQL statement returned: rows (as text), or a count of rows changed.
#[derive(Debug)]
pub enum PgMessage {
    Row(Vec<Option<String>>),
    Done(u64),
}

type Request = (
    String,
    mpsc::SyncSender<std::result::Result<Vec<PgMessage>, String>>,
);

/// A PostgreSQL connection used from synchronous code, whatever runtime (if any) the caller
/// runs in: the connection lives on a thread of its own with its own runtime, and each
/// statement is a request to it. Dropping it closes the connection (releasing its advisory
/// locks).
pub struct Pg {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Opens a connection (TLS and passwords are the caller's business).
pub type Connector = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = std::result::Result<tokio_postgres::Client, String>,
                    > + Send,
            >,
        > + Send
        + Sync,
>;

impl Pg {
    /// Connect with `connect`, on a thread of its own.
    pub fn open(connect: &Connector) -> std::result::Result<Self, String> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (ready, opened) = mpsc::sync_channel::<std::result::Result<(), String>>(1);
        let connect = connect.clone();
        let thread = std::thread::Builder::new()
            .name("strata-meta-pg".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                let client = match runtime.block_on(connect()) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok((sql, reply)) = incoming.recv() {
                    let result = runtime
                        .block_on(client.simple_query(&sql))
                        .map(|messages| {
                            messages
                                .into_iter()
                                .filter_map(|m| match m {
                                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                                        Some(PgMessage::Row(
                                            (0..r.len())
                                                .map(|i| r.get(i).map(str::to_string))
                                                .collect(),
                                        ))
                                    }
                                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => {
                                        Some(PgMessage::Done(n))
                                    }
                                    _ => None,
                                })
                                .collect()
                        })
                        .map_err(|e| describe(&e));
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| e.to_string())?;
        match opened.recv() {
            Ok(Ok(())) => Ok(Self {
                requests: Some(requests),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the connection thread ended".into()),
        }
    }

    /// Run `sql` (one or more statements).
    pub fn run(&self, sql: String) -> Result<Vec<PgMessage>> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .as_ref()
            .ok_or_else(|| Error::Postgres("the connection is closed".into()))?
            .send((sql, reply))
            .map_err(|_| Error::Postgres("the connection is closed".into()))?;
        answer
            .recv()
            .map_err(|_| Error::Postgres("the connection is closed".into()))?
            .map_err(Error::Postgres)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Ending the request channel ends the thread, which closes the connection.
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A PostgreSQL error's message, with its detail.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_literals_outside_quotes() {
        assert_eq!(
            inline(
                "SELECT '?1', \"a?2\" FROM t WHERE a = ?1 AND b = ?2 AND c = ?3 AND d = ?10",
                vals![
                    "it's",
                    7_i64,
                    None::<String>,
                    4_i64,
                    5_i64,
                    6_i64,
                    7_i64,
                    8_i64,
                    9_i64,
                    1.5_f64
                ]
            ),
            "SELECT '?1', \"a?2\" FROM t WHERE a = 'it''s' AND b = 7 AND c = NULL AND d = 1.5"
        );
    }

    #[test]
    fn rows_read_alike_from_text_and_typed_values() {
        let row = Row(vec![
            Val::Text("42".into()),
            Val::Int(42),
            Val::Null,
            Val::Text("t".into()),
            Val::Text("2.5".into()),
        ]);
        assert_eq!(row.get::<i64>(0).expect("text"), 42);
        assert_eq!(row.get::<i64>(1).expect("int"), 42);
        assert_eq!(row.get::<Option<String>>(2).expect("null"), None);
        assert!(row.get::<String>(2).is_err());
        assert!(row.get::<bool>(3).expect("bool"));
        assert_eq!(row.get::<Option<f64>>(4).expect("real"), Some(2.5));
    }
}
