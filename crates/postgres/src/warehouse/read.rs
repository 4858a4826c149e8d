//! Reading: a query's columns (prepared, never run), its rows streamed through
//! `COPY (…) TO STDOUT (FORMAT binary)` and decoded into Arrow record batches, and the
//! introspector templates query while compiling.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use strata_common::{Introspector, QueryResult, Relation};
use strata_engine::{Error, Result, Warehouse};

use super::{PostgresWarehouse, divide};
use crate::binary::{DecodeError, Decoder, OnBad};
use crate::ident;
use crate::types::{self, Column};

/// Rows per record batch.
const BATCH_ROWS: usize = 65_536;

impl PostgresWarehouse {
    /// The Arrow schema of a query's rows and how each column is read, from the prepared
    /// statement.
    pub(crate) async fn plan(&self, sql: &str) -> Result<(SchemaRef, Vec<Column>)> {
        let conn = self.conn().await?;
        let sql = divide::rewrite(sql.trim().trim_end_matches(';'));
        let statement = conn
            .prepare(&sql)
            .await
            .map_err(|e| self.error("the query failed", &e))?;
        let columns: Vec<Column> = statement
            .columns()
            .iter()
            .map(|c| types::column(c.name(), c.type_(), c.type_modifier()))
            .collect();
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        Ok((schema, columns))
    }

    /// Stream a query's rows (at most `limit`).
    pub(crate) async fn stream(
        &self,
        sql: &str,
        limit: Option<usize>,
    ) -> Result<SendableRecordBatchStream> {
        let body = sql.trim().trim_end_matches(';');
        let (schema, columns) = self.plan(body).await?;
        let body = divide::rewrite(body);
        // Types without a binary form we decode are read as text (see `types`).
        let projection: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let col = format!("strata_q.{}", ident(&format!("c{i}")));
                match c.as_text {
                    true => format!("{col}::text"),
                    false => col,
                }
            })
            .collect();
        // Columns are renamed by position, so duplicate names (`a.id, b.id`) read fine.
        let aliases: Vec<String> = (0..columns.len())
            .map(|i| ident(&format!("c{i}")))
            .collect();
        let copy = format!(
            "copy (select {} from ({body}\n) as strata_q ({}){}) to stdout (format binary)",
            if projection.is_empty() {
                "".to_string()
            } else {
                projection.join(", ")
            },
            aliases.join(", "),
            limit.map(|n| format!(" limit {n}")).unwrap_or_default()
        );
        let conn = self.conn().await?;
        let copy_out = conn
            .copy_out(copy.as_str())
            .await
            .map_err(|e| self.error("the query failed", &e))?;
        let decoder = Decoder::new(schema.clone(), columns, OnBad::Fail);
        let server = self.server().to_string();
        let state = (Some(conn), Box::pin(copy_out), decoder);
        let stream = futures::stream::unfold(state, move |(conn, mut copy, mut decoder)| {
            let server = server.clone();
            async move {
                conn.as_ref()?;
                let fail = DataFusionError::Execution;
                loop {
                    match copy.next().await {
                        Some(Ok(chunk)) => {
                            if let Err(e) = decoder.push(&chunk) {
                                let message = match e {
                                    DecodeError::Value(bad) => format!(
                                        "row {}: column `{}` ({}) {}",
                                        bad.row, bad.column, bad.pg_type, bad.why
                                    ),
                                    DecodeError::Format(m) => m,
                                };
                                return Some((Err(fail(message)), (None, copy, decoder)));
                            }
                            if decoder.buffered() >= BATCH_ROWS {
                                let batch = decoder.batch().map_err(|e| fail(format!("{e:?}")));
                                return Some((batch, (conn, copy, decoder)));
                            }
                        }
                        Some(Err(e)) => {
                            let message = format!(
                                "reading from PostgreSQL at {server} failed: {}",
                                crate::describe(&e)
                            );
                            return Some((Err(fail(message)), (None, copy, decoder)));
                        }
                        None => {
                            if let Err(e) = decoder.check_end() {
                                return Some((Err(fail(format!("{e:?}"))), (None, copy, decoder)));
                            }
                            let batch = decoder.batch().map_err(|e| fail(format!("{e:?}")));
                            return match batch {
                                Ok(b) if b.num_rows() == 0 => None,
                                other => Some((other, (None, copy, decoder))),
                            };
                        }
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Runs template queries (`run_query`, `statement`, `adapter.get_columns_in_relation`) on a
/// PostgreSQL warehouse; columns carry PostgreSQL's own type names, as in dbt-postgres.
#[derive(Debug)]
pub struct PgIntrospector {
    warehouse: PostgresWarehouse,
}

impl PgIntrospector {
    pub fn new(warehouse: PostgresWarehouse) -> Self {
        Self { warehouse }
    }

    fn block<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> std::result::Result<T, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "queries from templates need the async runtime".to_string())?;
        Ok(tokio::task::block_in_place(|| handle.block_on(fut)))
    }
}

impl Introspector for PgIntrospector {
    fn run_query(&self, sql: &str) -> std::result::Result<QueryResult, String> {
        self.block(async {
            let stream = self
                .warehouse
                .query(sql, None)
                .await
                .map_err(|e| e.to_string())?;
            let schema = stream.schema();
            let batches: Vec<RecordBatch> =
                stream.try_collect().await.map_err(|e| e.to_string())?;
            Ok(QueryResult {
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| {
                        (
                            f.name().clone(),
                            strata_engine::types::sql_type(f.data_type()),
                        )
                    })
                    .collect(),
                rows: strata_engine::embedded::rows_of(&batches)?,
            })
        })?
    }

    fn columns(
        &self,
        relation: &Relation,
    ) -> std::result::Result<Option<Vec<(String, String)>>, String> {
        self.block(async {
            let conn = self.warehouse.conn().await.map_err(|e| e.to_string())?;
            let columns = self
                .warehouse
                .columns_of(&conn, &relation.schema, &relation.identifier)
                .await
                .map_err(|e: Error| e.to_string())?;
            // A relation that does not exist is `none` to templates, as in dbt.
            Ok(Some(columns).filter(|c| !c.is_empty()))
        })?
    }
}
