//! What a source table's `ingest:` mapping says (the source's, with the table's over it),
//! read into a [`TableSpec`]; every mistake is an error naming the source table and the file.

use serde_json::{Map, Value};
use strata_engine::{Error, Result};
use strata_project::Source;

/// How a load changes the bronze table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Add the new rows (files: each file once).
    Append,
    /// Replace the table with everything the source has.
    Replace,
    /// Update the rows whose primary key a load has, insert the others.
    Merge(Vec<String>),
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Delimited text (`csv`, `tsv`).
    Csv,
    /// One JSON object per line (`ndjson`, `jsonl`).
    Ndjson,
    /// One JSON array of objects per file (`json`).
    Json,
    /// Parquet.
    Parquet,
}

/// Files: a path or glob, relative to the project folder.
#[derive(Debug, Clone)]
pub struct FilesSpec {
    /// The path or glob (`data/events/*.ndjson.gz`).
    pub path: String,
    /// The format; from the extension when not given.
    pub format: Option<Format>,
    /// CSV: the field delimiter (default `,`, a tab for `.tsv` files and `format: tsv`).
    pub delimiter: Option<u8>,
    /// CSV: whether the first line names the columns.
    pub header: bool,
    /// CSV: the quote character.
    pub quote: u8,
    /// JSON: nested objects spread into columns `parent__child` (else kept as structs).
    pub flatten: bool,
}

/// Where rows come from.
#[derive(Debug, Clone)]
pub enum Connector {
    /// Files on disk.
    Files(FilesSpec),
    /// A JSON REST endpoint.
    Http(Box<crate::http::HttpSpec>),
    /// A PostgreSQL table or query.
    Postgres(Box<crate::postgres::PgSpec>),
}

/// A source table's ingestion.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Where its rows come from.
    pub connector: Connector,
    /// How a load changes the table.
    pub write: Write,
    /// What a load does with rows that do not fit the table.
    pub contract: crate::evolve::Contract,
    /// Whether the table is partitioned by the date of each load (`_strata_load_date`).
    pub partition_by_load_date: bool,
    /// Row checks: failing rows go to `<schema>_quarantine.<table>` (`quarantine:`).
    pub quarantine: Vec<strata_project::quarantine::RowCheck>,
}

/// The keys an `ingest:` mapping may hold, by connector.
const FILE_KEYS: &[&str] = &[
    "type",
    "flatten",
    "partition_by_load_date",
    "contract",
    "quarantine",
    "path",
    "format",
    "delimiter",
    "header",
    "quote",
    "write",
    "primary_key",
];

/// The keys of HTTP ingestion.
const HTTP_KEYS: &[&str] = &[
    "type",
    "flatten",
    "partition_by_load_date",
    "contract",
    "quarantine",
    "base_url",
    "auth",
    "path",
    "params",
    "records",
    "paginate",
    "incremental",
    "write",
    "primary_key",
    "retries",
];

/// The keys of PostgreSQL ingestion.
const POSTGRES_KEYS: &[&str] = &[
    "type",
    "partition_by_load_date",
    "contract",
    "quarantine",
    "url",
    "host",
    "port",
    "user",
    "password",
    "database",
    "table",
    "query",
    "mode",
    "cursor",
    "lookback",
    "primary_key",
    "write",
    "parallel",
    "split_by",
    "sslmode",
    "sslrootcert",
];

/// Read `source`'s ingestion; `render` renders a string's Jinja (`env_var()`).
pub fn table_spec(source: &Source, render: &dyn Fn(&str) -> Result<String>) -> Result<TableSpec> {
    let name = format!("{}.{}", source.source_name, source.name);
    let file = source.original_file_path.display().to_string();
    let bad = |message: String| {
        Error::user(format!("{file}: source `{name}`: {message}"))
            .with_hint("see `ingest:` in docs/reference.md for each connector's keys")
    };
    let Some(Value::Object(map)) = &source.ingest else {
        return Err(bad("has no `ingest:` mapping".into()));
    };
    let text = |key: &str| -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => render(s).map(Some),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(bad(format!("`{key}` must be text, not {other}"))),
        }
    };
    let flag = |key: &str| -> Result<bool> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(bad(format!("`{key}` must be true or false, not {other}"))),
        }
    };
    let kind = text("type")?.ok_or_else(|| {
        bad("`ingest:` needs a `type` (files, postgres or http) on the source or the table".into())
    })?;
    let incremental = match text("mode")?.as_deref() {
        None | Some("full") => false,
        Some("incremental") => true,
        Some(other) => {
            return Err(bad(format!(
                "`mode: {other}` is not a mode (full or incremental)"
            )));
        }
    };
    let primary_key: Vec<String> = match map.get("primary_key") {
        Some(Value::String(k)) => vec![k.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("`primary_key` must list column names".into()))?,
        _ => vec![],
    };
    let write = match text("write")?.as_deref() {
        // An API without an incremental cursor answers everything each time: replace.
        None if kind == "http" && map.get("incremental").is_none() => Write::Replace,
        // A database table read whole is replaced by each load.
        None if kind == "postgres" && !incremental => Write::Replace,
        None | Some("append") => Write::Append,
        Some("replace") => Write::Replace,
        Some("merge") => {
            if primary_key.is_empty() {
                return Err(bad(
                    "`write: merge` needs `primary_key` (a column, or a list of columns)".into(),
                ));
            }
            Write::Merge(primary_key.clone())
        }
        Some(other) => {
            return Err(bad(format!(
                "`write: {other}` is not a write mode (append, replace or merge)"
            )));
        }
    };
    let connector = match kind.as_str() {
        "files" => {
            unknown_keys(map, FILE_KEYS).map_err(|k| {
                bad(format!(
                    "`{k}` is not a key of files ingestion{}",
                    strata_common::did_you_mean(&k, FILE_KEYS.iter().copied())
                ))
            })?;
            let path = text("path")?.ok_or_else(|| {
                bad(
                    "files ingestion needs a `path` (a file or a glob such as data/events/*.csv)"
                        .into(),
                )
            })?;
            let format = match text("format")?.as_deref() {
                None => None,
                Some("csv") | Some("tsv") => Some(Format::Csv),
                Some("ndjson") | Some("jsonl") => Some(Format::Ndjson),
                Some("parquet") => Some(Format::Parquet),
                Some("json") => Some(Format::Json),
                Some(other) => {
                    return Err(bad(format!(
                        "`format: {other}` is not a file format (csv, tsv, ndjson, json, parquet)"
                    )));
                }
            };
            let tsv = text("format")?.as_deref() == Some("tsv");
            let single_byte = |key: &str| -> Result<Option<u8>> {
                match text(key)? {
                    None => Ok(None),
                    Some(s) if s == "\\t" => Ok(Some(b'\t')),
                    Some(s) if s.len() == 1 => Ok(Some(s.as_bytes()[0])),
                    Some(s) => Err(bad(format!("`{key}` must be one character, not `{s}`"))),
                }
            };
            let header = match map.get("header") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(bad(format!("`header` must be true or false, not {other}")));
                }
            };
            Connector::Files(FilesSpec {
                path,
                format,
                delimiter: single_byte("delimiter")?.or(tsv.then_some(b'\t')),
                header,
                quote: single_byte("quote")?.unwrap_or(b'"'),
                flatten: flag("flatten")?,
            })
        }
        "http" => {
            unknown_keys(map, HTTP_KEYS).map_err(|k| {
                bad(format!(
                    "`{k}` is not a key of http ingestion{}",
                    strata_common::did_you_mean(&k, HTTP_KEYS.iter().copied())
                ))
            })?;
            let mut spec = http_spec(map, &text, render, &bad)?;
            spec.flatten = flag("flatten")?;
            Connector::Http(Box::new(spec))
        }
        "postgres" => {
            unknown_keys(map, POSTGRES_KEYS).map_err(|k| {
                bad(format!(
                    "`{k}` is not a key of postgres ingestion{}",
                    strata_common::did_you_mean(&k, POSTGRES_KEYS.iter().copied())
                ))
            })?;
            if incremental && write == Write::Replace {
                return Err(bad(
                    "`mode: incremental` adds to the table: use `write: append` or `write: merge` (with `primary_key`)".into(),
                ));
            }
            Connector::Postgres(Box::new(postgres_spec(
                source,
                map,
                &text,
                (incremental, &primary_key),
                &bad,
            )?))
        }
        other => {
            return Err(bad(format!(
                "`type: {other}` is not a connector (files, postgres or http)"
            )));
        }
    };
    let contract = match text("contract")? {
        None => crate::evolve::Contract::Evolve,
        Some(c) => crate::evolve::Contract::parse(&c).ok_or_else(|| {
            bad(format!(
                "`contract: {c}` is not a contract (evolve, freeze, discard_row or discard_value)"
            ))
        })?,
    };
    let partition_by_load_date = flag("partition_by_load_date")?;
    let quarantine = match map.get("quarantine") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            strata_project::quarantine::checks(v).map_err(|e| bad(format!("`quarantine`: {e}")))?
        }
    };
    Ok(TableSpec {
        connector,
        write,
        contract,
        partition_by_load_date,
        quarantine,
    })
}

/// Whether a raw (unrendered) setting spells a secret out instead of taking it from the
/// environment.
fn literal_secret(raw: &str) -> bool {
    let from_env = raw.contains("{{") && raw.contains("env_var(");
    !raw.is_empty() && !from_env
}

fn postgres_spec(
    source: &Source,
    map: &Map<String, Value>,
    text: &dyn Fn(&str) -> Result<Option<String>>,
    (incremental, primary_key): (bool, &[String]),
    bad: &dyn Fn(String) -> Error,
) -> Result<crate::postgres::PgSpec> {
    use crate::postgres::{From, PgSpec};
    let from_env = "take it from the environment: password: \"{{ env_var('SHOP_PASSWORD') }}\"";
    if let Some(Value::String(raw)) = map.get("password")
        && literal_secret(raw)
    {
        return Err(bad(format!(
            "`password` is written in the file; {from_env}"
        )));
    }
    if let Some(Value::String(raw)) = map.get("url") {
        // postgresql://user:password@host/db: a password written in the url.
        let userinfo = raw
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(info, _)| info);
        if let Some((_, password)) = userinfo.and_then(|i| i.split_once(':'))
            && literal_secret(password)
            && !raw.contains("{{")
        {
            return Err(bad(format!(
                "the `url` holds a password written in the file; put the whole url in an environment variable (url: \"{{{{ env_var('SHOP_DATABASE_URL') }}}}\") or {from_env}"
            )));
        }
    }
    let (mut sslmode, mut sslrootcert) = (None, None);
    let mut config = match text("url")? {
        Some(url) => {
            let (url, mode, root) = crate::postgres::tls::from_url(&url).map_err(bad)?;
            (sslmode, sslrootcert) = (mode, root);
            url.parse::<tokio_postgres::Config>().map_err(|_| {
                bad("`url` is not a PostgreSQL url (postgresql://user@host:port/database)".into())
            })?
        }
        None => tokio_postgres::Config::new(),
    };
    sslmode = text("sslmode")?.or(sslmode);
    sslrootcert = text("sslrootcert")?
        .map(std::path::PathBuf::from)
        .or(sslrootcert);
    let (tls, mode) = crate::postgres::tls::mode(sslmode.as_deref(), sslrootcert).map_err(bad)?;
    strata_postgres::finish_config(&mut config, mode);
    if let Some(host) = text("host")? {
        config.host(&host);
    }
    if let Some(port) = text("port")? {
        config.port(
            port.parse()
                .map_err(|_| bad(format!("`port: {port}` is not a port number")))?,
        );
    }
    if let Some(user) = text("user")? {
        config.user(&user);
    }
    if let Some(password) = text("password")? {
        config.password(password);
    }
    if let Some(db) = text("database")? {
        config.dbname(&db);
    }
    if config.get_hosts().is_empty() {
        return Err(bad(
            "postgres ingestion needs a `url` (postgresql://user@host:port/database) or a `host`"
                .into(),
        ));
    }
    if config.get_user().is_none() {
        return Err(bad(
            "postgres ingestion needs a `user` (or one in the `url`)".into(),
        ));
    }
    let server = strata_postgres::server_name(&config);
    let from = match (text("table")?, text("query")?) {
        (Some(_), Some(_)) => {
            return Err(bad("give `table` or `query`, not both".into()));
        }
        (None, Some(q)) => From::Query(q),
        (Some(t), None) => From::Table(t),
        (None, None) => From::Table(source.name.clone()),
    };
    let cursor = text("cursor")?;
    if incremental != cursor.is_some() {
        return Err(bad(match incremental {
            true => {
                "`mode: incremental` needs a `cursor` (a timestamp or number column that grows)"
                    .into()
            }
            false => "a `cursor` is for `mode: incremental`: add it, or remove the cursor".into(),
        }));
    }
    let parallel = match text("parallel")? {
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "`parallel: {p}` must be a number of connections from 1 to 64"
                ))
            })?,
        None => std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(1),
    };
    let split_by = text("split_by")?.or(match primary_key {
        [one] => Some(one.clone()),
        _ => None,
    });
    Ok(PgSpec {
        config,
        tls,
        server,
        from,
        cursor,
        lookback: text("lookback")?,
        parallel,
        split_by,
    })
}

/// A nested mapping's text value, rendered.
fn nested_text(
    map: &Map<String, Value>,
    key: &str,
    render: &dyn Fn(&str) -> Result<String>,
) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => render(s).map(Some),
        Some(other) => Ok(Some(other.to_string())),
    }
}

fn http_spec(
    map: &Map<String, Value>,
    text: &dyn Fn(&str) -> Result<Option<String>>,
    render: &dyn Fn(&str) -> Result<String>,
    bad: &dyn Fn(String) -> Error,
) -> Result<crate::http::HttpSpec> {
    use crate::http::{Auth, HttpSpec, Paginate};
    let base_url = text("base_url")?
        .ok_or_else(|| bad("http ingestion needs a `base_url` (on the source)".into()))?;
    let path = text("path")?.unwrap_or_default();
    let object = |key: &str| -> Result<Option<&Map<String, Value>>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(bad(format!("`{key}` must be a mapping, not {other}"))),
        }
    };
    let auth = match object("auth")? {
        None => None,
        Some(a) => {
            if let Some(token) = nested_text(a, "bearer", render)? {
                Some(Auth::Bearer(token))
            } else if let Some(Value::Object(b)) = a.get("basic") {
                let user = nested_text(b, "username", render)?.unwrap_or_default();
                let password = nested_text(b, "password", render)?.unwrap_or_default();
                Some(Auth::Basic(user, password))
            } else if let Some(Value::Object(h)) = a.get("header") {
                let name = nested_text(h, "name", render)?
                    .ok_or_else(|| bad("`auth: {header: ...}` needs `name` and `value`".into()))?;
                let value = nested_text(h, "value", render)?.unwrap_or_default();
                Some(Auth::Header(name, value))
            } else {
                return Err(bad(
                    "`auth` must be {bearer: ...}, {basic: {username, password}} or {header: {name, value}}, each from env_var()"
                        .into(),
                ));
            }
        }
    };
    let mut params = Vec::new();
    if let Some(p) = object("params")? {
        for k in p.keys() {
            params.push((k.clone(), nested_text(p, k, render)?.unwrap_or_default()));
        }
    }
    let paginate = match object("paginate")? {
        None => Paginate::None,
        Some(p) => {
            let get = |k: &str| nested_text(p, k, render);
            if let Some(param) = get("cursor_param")? {
                let path = get("cursor_path")?.ok_or_else(|| {
                    bad("`paginate: {cursor_param}` needs `cursor_path`, where the next token is in an answer".into())
                })?;
                Paginate::Cursor { param, path }
            } else if let Some(param) = get("page_param")? {
                let start = get("start")?.and_then(|s| s.parse().ok()).unwrap_or(1);
                Paginate::Page { param, start }
            } else if let Some(offset_param) = get("offset_param")? {
                Paginate::Offset {
                    offset_param,
                    limit_param: get("limit_param")?.unwrap_or_else(|| "limit".into()),
                    limit: get("limit")?.and_then(|s| s.parse().ok()).unwrap_or(100),
                }
            } else if p.get("link_header").and_then(Value::as_bool) == Some(true) {
                Paginate::Link
            } else {
                return Err(bad(
                    "`paginate` must be {cursor_param, cursor_path}, {page_param}, {offset_param, limit_param, limit} or {link_header: true}"
                        .into(),
                ));
            }
        }
    };
    let incremental = match object("incremental")? {
        None => None,
        Some(i) => Some((
            nested_text(i, "param", render)?
                .ok_or_else(|| bad("`incremental` needs `param` (the query parameter) and `cursor` (the record field)".into()))?,
            nested_text(i, "cursor", render)?
                .ok_or_else(|| bad("`incremental` needs `param` (the query parameter) and `cursor` (the record field)".into()))?,
        )),
    };
    Ok(HttpSpec {
        base_url,
        path,
        params,
        records: text("records")?.unwrap_or_default(),
        auth,
        paginate,
        incremental,
        attempts: text("retries")?
            .and_then(|r| r.parse::<u32>().ok())
            .unwrap_or(4)
            + 1,
        backoff: std::time::Duration::from_millis(500),
        flatten: false,
    })
}

fn unknown_keys(map: &Map<String, Value>, known: &[&str]) -> std::result::Result<(), String> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(k.clone()),
        None => Ok(()),
    }
}

/// The format of a file from its name (`x.csv.gz` is CSV), when it can be told.
pub fn format_of(path: &str) -> Option<Format> {
    let name = path.to_ascii_lowercase();
    let name = ["gz", "zst", "bz2", "xz"]
        .iter()
        .find_map(|c| name.strip_suffix(&format!(".{c}")))
        .unwrap_or(&name);
    let ext = name.rsplit('.').next()?;
    Some(match ext {
        "csv" | "tsv" | "txt" => Format::Csv,
        "ndjson" | "jsonl" => Format::Ndjson,
        // A `.json` file holds one array, or one object per line: the first byte tells
        // (see `files::read`).
        "json" => Format::Json,
        "parquet" => Format::Parquet,
        _ => return None,
    })
}
