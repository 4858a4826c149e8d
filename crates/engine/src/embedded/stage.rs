//! Change sets evaluated once. A merge, a `delete+insert` or a snapshot reads its new rows more
//! than once (to find the files to rewrite, to join, to find what to close and what to insert);
//! a query whose result changes between evaluations (a view over a live table, `now()`,
//! `random()`) would then write an inconsistent change, such as two current versions of a
//! record. So the query runs once, its rows are kept — in memory while they are few, else
//! spilled to Parquet files — and every later reading reads them.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{DataFrame, ParquetReadOptions};
use futures::StreamExt;
use strata_common::quote_ident as q;

use crate::error::{Error, Result};

/// The catalog staged rows are registered in, and its one schema.
pub(super) const CATALOG: &str = "__strata_staged";
pub(super) const SCHEMA: &str = "rows";

/// Rows kept in memory before a change set spills to disk.
pub(super) const MEMORY_ROWS: usize = 1_000_000;

/// Register the catalog staged rows live in (once per session).
pub(super) fn register(ctx: &SessionContext) -> Result<()> {
    let catalog = MemoryCatalogProvider::new();
    datafusion::catalog::CatalogProvider::register_schema(
        &catalog,
        SCHEMA,
        Arc::new(MemorySchemaProvider::new()),
    )?;
    ctx.register_catalog(CATALOG, Arc::new(catalog));
    Ok(())
}

/// The rows of one evaluation of a query, readable by name until dropped.
pub(super) struct Staged {
    ctx: SessionContext,
    table: String,
    /// Rows staged.
    pub rows: usize,
    /// The spill folder, removed on drop.
    _spill: Option<tempfile::TempDir>,
}

impl Staged {
    /// The staged rows' name in SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}.{}", q(CATALOG), q(SCHEMA), q(&self.table))
    }

    /// The staged rows as a DataFrame.
    pub async fn frame(&self) -> Result<DataFrame> {
        Ok(self.ctx.table(self.sql_name()).await?)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = self
            .ctx
            .deregister_table(format!("{CATALOG}.{SCHEMA}.{}", self.table));
    }
}

/// Run `plan` once and keep its rows: up to `memory_rows` in memory, more in Parquet files
/// under `spill_dir` (a temporary folder inside it, removed when the rows are dropped).
pub(super) async fn stage(
    ctx: &SessionContext,
    plan: LogicalPlan,
    memory_rows: usize,
    spill_dir: &std::path::Path,
) -> Result<Staged> {
    let df = DataFrame::new(ctx.state(), plan);
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let table = format!("s{}", uuid::Uuid::new_v4().simple());
    let mut stream = df.execute_stream().await?;
    let (mut buffered, mut rows) = (Vec::<RecordBatch>::new(), 0usize);
    let mut spill: Option<(tempfile::TempDir, ArrowWriter<std::fs::File>)> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        match &mut spill {
            Some((_, writer)) => writer.write(&batch).map_err(spill_error)?,
            None if rows > memory_rows => {
                std::fs::create_dir_all(spill_dir).map_err(spill_error)?;
                let dir = tempfile::Builder::new()
                    .prefix("strata-staged-")
                    .tempdir_in(spill_dir)
                    .map_err(spill_error)?;
                let file = std::fs::File::create(dir.path().join("part-0.parquet"))
                    .map_err(spill_error)?;
                let mut writer =
                    ArrowWriter::try_new(file, schema.clone(), None).map_err(spill_error)?;
                for b in buffered.drain(..) {
                    writer.write(&b).map_err(spill_error)?;
                }
                writer.write(&batch).map_err(spill_error)?;
                spill = Some((dir, writer));
            }
            None => buffered.push(batch),
        }
    }
    let name = format!("{CATALOG}.{SCHEMA}.{table}");
    let spill = match spill {
        Some((dir, writer)) => {
            writer.close().map_err(spill_error)?;
            let path = dir.path().to_string_lossy().into_owned();
            ctx.register_parquet(
                name,
                &path,
                ParquetReadOptions::default().schema(schema.as_ref()),
            )
            .await?;
            Some(dir)
        }
        None => {
            ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![buffered])?))?;
            None
        }
    };
    Ok(Staged {
        ctx: ctx.clone(),
        table,
        rows,
        _spill: spill,
    })
}

fn spill_error(e: impl std::fmt::Display) -> Error {
    Error::user(format!("cannot spill a change set to disk: {e}"))
        .with_hint("check that the lake's folder (or the temporary folder) has free space")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn count(staged: &Staged) -> i64 {
        let batches: Vec<RecordBatch> = staged
            .frame()
            .await
            .expect("frame")
            .aggregate(
                vec![],
                vec![datafusion::functions_aggregate::count::count_all()],
            )
            .expect("count")
            .execute_stream()
            .await
            .expect("run")
            .try_collect()
            .await
            .expect("collect");
        datafusion::arrow::array::cast::AsArray::as_primitive::<
            datafusion::arrow::datatypes::Int64Type,
        >(batches[0].column(0))
        .value(0)
    }

    #[tokio::test]
    async fn a_query_is_evaluated_once_in_memory_or_spilled() {
        let ctx = SessionContext::new();
        register(&ctx).expect("register");
        let tmp = tempfile::tempdir().expect("tempdir");
        // random() differs at each evaluation: reading the staged rows twice gives the same sum.
        let plan = ctx
            .sql("select value as id, random() as r from generate_series(1, 5000)")
            .await
            .expect("sql")
            .logical_plan()
            .clone();
        for memory_rows in [1_000_000, 100] {
            let staged = stage(&ctx, plan.clone(), memory_rows, tmp.path())
                .await
                .expect("stage");
            assert_eq!(staged.rows, 5000);
            assert_eq!(count(&staged).await, 5000);
            let sum = format!("select sum(r) as s from {}", staged.sql_name());
            let first = ctx
                .sql(&sum)
                .await
                .expect("sum")
                .collect()
                .await
                .expect("a");
            let second = ctx
                .sql(&sum)
                .await
                .expect("sum")
                .collect()
                .await
                .expect("b");
            assert_eq!(first, second);
            let spilled = std::fs::read_dir(tmp.path()).expect("dir").count();
            assert_eq!(spilled, usize::from(memory_rows == 100));
            drop(staged);
        }
        assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
    }
}
