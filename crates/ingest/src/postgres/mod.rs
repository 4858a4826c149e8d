//! The PostgreSQL connector: a table or a query read with `COPY … TO STDOUT (FORMAT binary)`,
//! decoded straight into Arrow record batches, streamed to the bronze writer.
//!
//! One load sees one snapshot of the database: a first connection opens a read-only
//! repeatable-read transaction and exports its snapshot; it finds the columns, the new cursor
//! value and the key ranges there; every reader then imports that snapshot, so a table read
//! by several connections in parallel (one key range each) is read as of one instant, and the
//! cursor recorded is exactly the highest value the rows loaded hold.

pub use strata_postgres::{binary, load, tls, types};
use strata_postgres::{describe, ident, literal};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, TryStreamExt};
use strata_engine::{Error, Result};

use crate::Progress;
use tokio_postgres::{Client, Config};

use self::binary::{BadValue, DecodeError, Decoder, OnBad};
use self::types::Column;

/// Rows per record batch a reader hands on.
const BATCH_ROWS: usize = 65_536;
/// Below this many rows (the planner's estimate) a table is read by one connection.
const PARALLEL_MIN_ROWS: f64 = 200_000.0;

/// What to read.
#[derive(Debug, Clone)]
pub enum From {
    /// A table or view (`orders`, `sales.orders`): every row.
    Table(String),
    /// A query's rows.
    Query(String),
}

/// A PostgreSQL table's ingestion.
#[derive(Debug, Clone)]
pub struct PgSpec {
    /// Where to connect (with the password, which is never shown).
    pub config: Config,
    /// How the connection is encrypted (`sslmode`).
    pub tls: tls::Tls,
    /// The server as messages show it: `host:port/database`.
    pub server: String,
    pub from: From,
    /// The column whose highest loaded value the next load starts after.
    pub cursor: Option<String>,
    /// How far before the last cursor value the next load starts (`2 hours`, `100`).
    pub lookback: Option<String>,
    /// Connections reading one table at once (by ranges of `split_by`).
    pub parallel: usize,
    /// The integer column a large table is split on (default: a one-column primary key).
    pub split_by: Option<String>,
}

/// One load's extraction: rows still to stream (read as the writer pulls them).
pub struct Extraction {
    /// The rows, with the source's columns.
    pub df: DataFrame,
    /// The cursor value the load reaches (None: not incremental).
    pub cursor: Option<String>,
    /// Values left out (with the first), when the contract discards.
    pub discarded: Arc<Mutex<(u64, Option<BadValue>)>>,
    /// The connection holding the snapshot the readers import: kept open until the rows are
    /// written.
    _snapshot: Client,
}

/// Connect for source `name`.
async fn connect(spec: &PgSpec, name: &str) -> Result<Client> {
    strata_postgres::connect(&spec.config, &spec.tls)
        .await
        .map_err(|why| {
            Error::user(format!(
                "source `{name}`: cannot connect to PostgreSQL at {}: {why}",
                spec.server
            ))
            .with_hint(
                "check the server is up, and the url, user and password the source's `ingest:` gives (from the environment)",
            )
        })
}

/// Connect to the database a libpq-style url names (`sslmode` and `sslrootcert` in it), for
/// commands that write to a source database (`strata datagen retail --to URL`).
pub async fn connect_url(url: &str) -> Result<Client> {
    let (config, tls) =
        strata_postgres::config_from_url(url).map_err(|why| Error::user(format!("--to: {why}")))?;
    strata_postgres::connect(&config, &tls)
        .await
        .map_err(|why| {
            Error::user(format!(
                "--to: cannot connect to PostgreSQL at {}: {why}",
                strata_postgres::server_name(&config)
            ))
            .with_hint("check the server is up, and the url's user and password (or PGPASSWORD)")
        })
}

/// A table name as SQL: each dot-separated part quoted (`sales.Orders` → `"sales"."Orders"`).
fn table_sql(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// Start extracting the rows `spec` names (only those after `since` on the cursor, when
/// given): find the columns and the cursor, plan the readers. None when an incremental load
/// has nothing new.
pub async fn extract(
    ctx: &SessionContext,
    spec: &PgSpec,
    name: &str,
    since: Option<&str>,
    on_bad: OnBad,
    progress: Arc<Progress>,
) -> Result<Option<Extraction>> {
    let failed = |what: &str, e: &tokio_postgres::Error| {
        Error::user(format!(
            "source `{name}`: {what} on PostgreSQL at {}: {}",
            spec.server,
            describe(e)
        ))
    };
    let client = connect(spec, name).await?;
    client
        .batch_execute(
            "set time zone 'UTC'; start transaction isolation level repeatable read read only",
        )
        .await
        .map_err(|e| failed("cannot start a read-only transaction", &e))?;
    let snapshot: String = client
        .query_one("select pg_export_snapshot()", &[])
        .await
        .map_err(|e| failed("cannot export a snapshot", &e))?
        .get(0);
    let base = match &spec.from {
        From::Table(t) => format!("select * from {}", table_sql(t)),
        From::Query(q) => q.trim().trim_end_matches(';').to_string(),
    };
    let what = match &spec.from {
        From::Table(t) => format!("table `{t}`"),
        From::Query(_) => "the query".to_string(),
    };
    let statement = client
        .prepare(&format!("select * from ({base}) as strata_q"))
        .await
        .map_err(|e| {
            Error::user(format!(
                "source `{name}`: cannot read {what} on PostgreSQL at {}: {}",
                spec.server,
                describe(&e)
            ))
            .with_hint(match &spec.from {
                From::Table(_) => "`table:` names the table to load (schema.table); without it, the source table's name is used",
                From::Query(_) => "check the `query:`: it must be one select",
            })
        })?;
    let columns: Vec<Column> = statement
        .columns()
        .iter()
        .map(|c| types::column(c.name(), c.type_(), c.type_modifier()))
        .collect();
    if columns.is_empty() {
        return Err(Error::user(format!(
            "source `{name}`: {what} has no columns"
        )));
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.name == c.name) {
            return Err(Error::user(format!(
                "source `{name}`: {what} has two columns named `{}`",
                c.name
            ))
            .with_hint("give each column its own name (`as ...`) in the query"));
        }
    }
    let column = |wanted: &str, role: &str| -> Result<&Column> {
        columns.iter().find(|c| c.name == wanted).ok_or_else(|| {
            Error::user(format!(
                "source `{name}`: the {role} column `{wanted}` is not in {what} (columns: {})",
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };

    // Incremental: the rows after the last cursor value (less the lookback), and the
    // highest value they hold.
    let mut filter = String::new();
    let mut cursor = None;
    if let Some(c) = &spec.cursor {
        let col = column(c, "cursor")?;
        if !col.kind.is_cursor() {
            return Err(Error::user(format!(
                "source `{name}`: the cursor column `{c}` is {}; a cursor must be a timestamp, a date or a number",
                col.pg_type
            )));
        }
        let cast = types::cursor_cast(&col.kind);
        let after = since.map(|s| {
            let start = format!("{}::{cast}", literal(s));
            match (&spec.lookback, cast) {
                (None, _) => start,
                (Some(l), "bigint" | "numeric") => format!("({start} - {}::{cast})", literal(l)),
                (Some(l), _) => format!("({start} - {}::interval)", literal(l)),
            }
        });
        if let Some(after) = &after {
            filter = format!(" where {} > {after}", ident(c));
        }
        let newer = match since {
            Some(s) => format!("max({0}) > {1}::{cast}", ident(c), literal(s)),
            None => "true".into(),
        };
        let row = client
            .query_one(
                &format!(
                    "select max({0})::text, coalesce({newer}, false) from ({base}) as strata_q{filter}",
                    ident(c)
                ),
                &[],
            )
            .await
            .map_err(|e| failed("cannot read the cursor", &e))?;
        let highest: Option<String> = row.get(0);
        let newer: bool = row.get(1);
        if since.is_some() && !newer {
            return Ok(None);
        }
        cursor = highest.or_else(|| since.map(str::to_string));
    }

    // Large tables: one reader per key range.
    let split = spec.split_by.as_deref();
    let mut ranges = vec![String::new()];
    if let (Some(key), true) = (split, spec.parallel > 1) {
        let col = column(key, "split_by")?;
        if !col.kind.is_integer() {
            return Err(Error::user(format!(
                "source `{name}`: `{key}` is {}; a table is split for parallel reading on an integer column",
                col.pg_type
            ))
            .with_hint("set `split_by:` to an integer column, or `parallel: 1`"));
        }
        let estimate = estimated_rows(
            &client,
            &format!("explain (format json) select * from ({base}) as strata_q{filter}"),
        )
        .await;
        if estimate >= PARALLEL_MIN_ROWS {
            let row = client
                .query_one(
                    &format!(
                        "select min({0})::int8, max({0})::int8 from ({base}) as strata_q{filter}",
                        ident(key)
                    ),
                    &[],
                )
                .await
                .map_err(|e| failed("cannot read the key range", &e))?;
            if let (Some(lo), Some(hi)) =
                (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
            {
                ranges = key_ranges(ident(key), lo, hi, spec.parallel);
            }
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow(), true))
            .collect::<Vec<_>>(),
    ));
    let select = columns
        .iter()
        .map(|c| match c.as_text {
            // The type's own output (what psql shows: `10.0.0.1`, where ::text on an inet
            // would add the netmask).
            true => format!(
                "case when {0} is null then null else format('%s', {0}) end",
                ident(&c.name)
            ),
            false => ident(&c.name),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let discarded = Arc::new(Mutex::new((0, None)));
    let readers: Vec<Arc<dyn PartitionStream>> = ranges
        .iter()
        .map(|range| {
            let condition = match (filter.is_empty(), range.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!(" where {range}"),
                (false, true) => filter.clone(),
                (false, false) => format!("{filter} and {range}"),
            };
            Arc::new(Reader {
                parallel: ranges.len() > 1,
                spec: spec.clone(),
                name: name.to_string(),
                schema: schema.clone(),
                columns: columns.clone(),
                snapshot: snapshot.clone(),
                sql: format!(
                    "copy (select {select} from ({base}) as strata_q{condition}) to stdout (format binary)"
                ),
                on_bad,
                progress: progress.clone(),
                discarded: discarded.clone(),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    let table = datafusion::catalog::streaming::StreamingTable::try_new(schema, readers)
        .map_err(|e| Error::Internal(format!("source `{name}`: {e}")))?;
    let df = ctx
        .read_table(Arc::new(table))
        .map_err(|e| Error::Internal(format!("source `{name}`: {e}")))?;
    Ok(Some(Extraction {
        df,
        cursor,
        discarded,
        _snapshot: client,
    }))
}

/// The planner's estimate of the rows a query returns (0 when it cannot say).
async fn estimated_rows(client: &Client, explain: &str) -> f64 {
    let Ok(messages) = client.simple_query(explain).await else {
        return 0.0;
    };
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .and_then(|plan| serde_json::from_str::<serde_json::Value>(plan).ok())
        .and_then(|plan| plan.pointer("/0/Plan/Plan Rows").and_then(|r| r.as_f64()))
        .unwrap_or(0.0)
}

/// `parts` conditions splitting `key`'s values from `lo` to `hi` into ranges of equal width
/// (the first also takes NULL keys).
fn key_ranges(key: String, lo: i64, hi: i64, parts: usize) -> Vec<String> {
    let width = (i128::from(hi) - i128::from(lo) + 1) / parts as i128;
    if width < 1 {
        return vec![String::new()];
    }
    let bounds: Vec<i64> = (1..parts)
        .map(|i| (i128::from(lo) + width * i as i128) as i64)
        .collect();
    let mut out = Vec::with_capacity(parts);
    for i in 0..parts {
        out.push(match i {
            0 => format!("({key} < {} or {key} is null)", bounds[0]),
            i if i == parts - 1 => format!("{key} >= {}", bounds[i - 1]),
            i => format!("({key} >= {} and {key} < {})", bounds[i - 1], bounds[i]),
        });
    }
    out
}

/// One connection reading one key range of a load, in the load's snapshot.
#[derive(Debug, Clone)]
struct Reader {
    /// Whether other readers read the table's other key ranges.
    parallel: bool,
    spec: PgSpec,
    name: String,
    schema: SchemaRef,
    columns: Vec<Column>,
    snapshot: String,
    sql: String,
    on_bad: OnBad,
    progress: Arc<Progress>,
    discarded: Arc<Mutex<(u64, Option<BadValue>)>>,
}

impl Reader {
    /// A message about a value of the load, naming the row and the column.
    fn bad_value(&self, bad: &BadValue) -> String {
        format!(
            "source `{}`: row {} of the extraction{}: column `{}` ({}) {}",
            self.name,
            bad.row,
            match self.parallel {
                true => " (one of several parallel readers)",
                false => "",
            },
            bad.column,
            bad.pg_type,
            bad.why
        )
    }

    async fn open(
        self: Arc<Self>,
    ) -> std::result::Result<
        impl futures::Stream<Item = std::result::Result<RecordBatch, DataFusionError>>,
        DataFusionError,
    > {
        let fail = DataFusionError::Execution;
        let client = connect(&self.spec, &self.name)
            .await
            .map_err(|e| fail(e.to_string()))?;
        client
            .batch_execute(&format!(
                "start transaction isolation level repeatable read read only; set transaction snapshot {}",
                literal(&self.snapshot)
            ))
            .await
            .map_err(|e| {
                fail(format!(
                    "source `{}`: cannot join the load's snapshot on PostgreSQL at {}: {}",
                    self.name,
                    self.spec.server,
                    describe(&e)
                ))
            })?;
        let copy = client.copy_out(self.sql.as_str()).await.map_err(|e| {
            fail(format!(
                "source `{}`: cannot read from PostgreSQL at {}: {}",
                self.name,
                self.spec.server,
                describe(&e)
            ))
        })?;
        let decoder = Decoder::new(self.schema.clone(), self.columns.clone(), self.on_bad);
        let state = (Some(client), Box::pin(copy), decoder, self);
        Ok(futures::stream::unfold(
            state,
            move |(client, mut copy, mut decoder, me)| async move {
                client.as_ref()?;
                loop {
                    match copy.next().await {
                        Some(Ok(chunk)) => {
                            me.progress
                                .bytes
                                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            let before = decoder.rows;
                            if let Err(e) = decoder.push(&chunk) {
                                let message = match e {
                                    DecodeError::Value(bad) => me.bad_value(&bad),
                                    DecodeError::Format(m) => format!("source `{}`: {m}", me.name),
                                };
                                return Some((Err(fail(message)), (None, copy, decoder, me)));
                            }
                            me.progress
                                .rows
                                .fetch_add(decoder.rows - before, Ordering::Relaxed);
                            if decoder.buffered() >= BATCH_ROWS {
                                let batch = decoder.batch().map_err(|e| fail(format!("{e:?}")));
                                return Some((batch, (client, copy, decoder, me)));
                            }
                        }
                        Some(Err(e)) => {
                            let message = format!(
                                "source `{}`: reading from PostgreSQL at {} failed: {}",
                                me.name,
                                me.spec.server,
                                describe(&e)
                            );
                            return Some((Err(fail(message)), (None, copy, decoder, me)));
                        }
                        None => {
                            if let Err(DecodeError::Format(m)) = decoder.check_end() {
                                let message = format!("source `{}`: {m}", me.name);
                                return Some((Err(fail(message)), (None, copy, decoder, me)));
                            }
                            if let Ok(mut d) = me.discarded.lock() {
                                d.0 += decoder.discarded.0;
                                if d.1.is_none() {
                                    d.1 = decoder.discarded.1.take();
                                }
                            }
                            if decoder.buffered() == 0 {
                                return None;
                            }
                            let batch = decoder.batch().map_err(|e| fail(format!("{e:?}")));
                            return Some((batch, (None, copy, decoder, me)));
                        }
                    }
                }
            },
        ))
    }
}

impl PartitionStream for Reader {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let me = Arc::new(self.clone());
        let stream = futures::stream::once(me.open()).try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_keys() {
        let r = key_ranges("\"id\"".into(), 1, 100, 4);
        assert_eq!(
            r,
            vec![
                "(\"id\" < 26 or \"id\" is null)",
                "(\"id\" >= 26 and \"id\" < 51)",
                "(\"id\" >= 51 and \"id\" < 76)",
                "\"id\" >= 76",
            ]
        );
        assert_eq!(key_ranges("k".into(), 5, 5, 4), vec![String::new()]);
        assert_eq!(key_ranges("k".into(), i64::MIN, i64::MAX, 2).len(), 2);
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(table_sql("sales.Orders"), "\"sales\".\"Orders\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
