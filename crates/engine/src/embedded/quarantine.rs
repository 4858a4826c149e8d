//! Row quarantine: a model's query runs once; each row is judged by the model's row checks as
//! it streams past. Passing rows go on to the model's write; failing rows are kept aside and,
//! when the query has ended (and before the model's commit), appended to the quarantine table
//! in one commit. A failure there fails the model's write, so the model is never committed
//! without its quarantined rows. A process killed between the two commits leaves quarantined
//! rows of a run whose model commit never happened: they are found by their run id (not in
//! the model table's history) and removed before the model is next written, and listings
//! skip them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, not};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::DataFrame;
use deltalake::protocol::SaveMode;
use futures::{StreamExt, TryStreamExt};
use strata_common::{Relation, quote_ident as q};

use super::stage::{CATALOG, SCHEMA};
use super::{EmbeddedWarehouse, WriteTarget};
use crate::error::{Error, Result};
use crate::{Materialization, MaterializeOutcome, MaterializeRequest, Quarantine};

/// The column flagging a failing row while the query streams (never written).
const FAILED: &str = "__strata_failed";
/// Columns a quarantined row carries besides the model's.
pub const QUARANTINE_COLUMNS: [&str; 3] = [
    "strata_failed_checks",
    "strata_run_id",
    "strata_quarantined_at",
];

impl EmbeddedWarehouse {
    /// Build a model whose failing rows are set aside (see the module's documentation).
    pub(super) async fn build_quarantined(
        &self,
        req: &MaterializeRequest,
        quarantine: &Quarantine,
    ) -> Result<MaterializeOutcome> {
        if !matches!(
            req.materialization,
            Materialization::Table | Materialization::Incremental
        ) {
            return Err(Error::user(
                "`quarantine` works for table and incremental models".to_string(),
            ));
        }
        let judged = format!(
            "select strata_q.*, coalesce({}, false) as {FAILED}, {} as {}, {} as {}, now() as {} \
             from (\n{}\n) as strata_q",
            quarantine.failing(),
            quarantine.failed_names(),
            q(QUARANTINE_COLUMNS[0]),
            strata_common::quote_literal(&req.run_id),
            q(QUARANTINE_COLUMNS[1]),
            q(QUARANTINE_COLUMNS[2]),
            req.sql
        );
        // A check naming a column the query lacks fails here, before anything is written.
        let df = self.plan(&judged).await?;
        self.drop_orphans(&req.relation, &quarantine.relation, req)
            .await?;
        let full: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let n = full.fields().len() - 4;
        let passing: SchemaRef = Arc::new(
            full.project(&(0..n).collect::<Vec<_>>())
                .map_err(datafusion::error::DataFusionError::from)?,
        );
        let set_aside = Arc::new(AtomicU64::new(0));
        let split = Split {
            df: Arc::new(Mutex::new(Some(df))),
            passing: passing.clone(),
            columns: n,
            warehouse: self.clone(),
            quarantine: quarantine.relation.clone(),
            unique_id: req.unique_id.clone(),
            run_id: req.run_id.clone(),
            set_aside: set_aside.clone(),
        };
        let table = format!("q{}", uuid::Uuid::new_v4().simple());
        let name = format!("{CATALOG}.{SCHEMA}.{table}");
        self.ctx.register_table(
            name.as_str(),
            Arc::new(datafusion::catalog::streaming::StreamingTable::try_new(
                passing,
                vec![Arc::new(split) as Arc<dyn PartitionStream>],
            )?),
        )?;
        let inner = MaterializeRequest {
            sql: format!("select * from {}.{}.{}", q(CATALOG), q(SCHEMA), q(&table)),
            quarantine: None,
            ..req.clone()
        };
        let outcome = match req.materialization {
            Materialization::Incremental => self.build_incremental(&inner).await,
            _ => self.build_table(&inner).await,
        };
        let _ = self.ctx.deregister_table(name.as_str());
        let mut outcome = outcome?;
        let n = set_aside.load(Ordering::Relaxed);
        if n > 0 {
            outcome.message = format!("{}, {n} quarantined", outcome.message);
        }
        Ok(outcome)
    }

    /// The runs whose quarantined rows in `quarantine` count: those whose write of `model`
    /// committed. `None` when there is no quarantine table.
    pub async fn quarantine_runs(
        &self,
        model: &Relation,
        quarantine: &Relation,
    ) -> Result<Option<(BTreeSet<String>, BTreeSet<String>)>> {
        let location = self
            .shared
            .lake
            .table(&quarantine.schema, &quarantine.identifier)?;
        if !self.shared.lake.table_exists(&location).await? {
            return Ok(None);
        }
        let sql = format!(
            "select distinct {} from {}",
            q(QUARANTINE_COLUMNS[1]),
            quarantine
        );
        let batches: Vec<RecordBatch> = self.plan(&sql).await?.collect().await?;
        let mut in_quarantine = BTreeSet::new();
        for b in &batches {
            let column = b.column(0);
            if let Some(a) = column.as_string_opt::<i32>() {
                in_quarantine.extend(a.iter().flatten().map(str::to_string));
            } else if let Some(a) = column.as_string_view_opt() {
                in_quarantine.extend(a.iter().flatten().map(str::to_string));
            }
        }
        let model_location = self.shared.lake.table(&model.schema, &model.identifier)?;
        let committed: BTreeSet<String> =
            match self.shared.lake.table_exists(&model_location).await? {
                true => self
                    .history(model)
                    .await?
                    .into_iter()
                    .filter_map(|v| v.run_id)
                    .collect(),
                false => BTreeSet::new(),
            };
        let (kept, orphans) = in_quarantine
            .into_iter()
            .partition(|r| committed.contains(r));
        Ok(Some((kept, orphans)))
    }

    /// Remove quarantined rows of runs whose model commit never happened.
    async fn drop_orphans(
        &self,
        model: &Relation,
        quarantine: &Relation,
        req: &MaterializeRequest,
    ) -> Result<()> {
        let Some((_, orphans)) = self.quarantine_runs(model, quarantine).await? else {
            return Ok(());
        };
        if orphans.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = orphans
            .iter()
            .map(|r| strata_common::quote_literal(r))
            .collect();
        let sql = format!(
            "delete from {quarantine} where {} in ({})",
            q(QUARANTINE_COLUMNS[1]),
            listed.join(", ")
        );
        self.run_statements(
            &sql,
            &crate::StatementContext {
                unique_id: req.unique_id.clone(),
                run_id: req.run_id.clone(),
            },
        )
        .await?;
        Ok(())
    }
}

/// The model's query, split as it streams: passing rows flow on, failing rows are kept and
/// written to the quarantine table when the query ends.
struct Split {
    /// The judged query, run once.
    df: Arc<Mutex<Option<DataFrame>>>,
    /// The model's columns.
    passing: SchemaRef,
    /// How many they are.
    columns: usize,
    warehouse: EmbeddedWarehouse,
    quarantine: Relation,
    unique_id: String,
    run_id: String,
    set_aside: Arc<AtomicU64>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("quarantine", &self.quarantine.to_string())
            .finish()
    }
}

impl PartitionStream for Split {
    fn schema(&self) -> &SchemaRef {
        &self.passing
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let df = self.df.lock().ok().and_then(|mut d| d.take());
        let columns = self.columns;
        let held: Arc<Mutex<Vec<RecordBatch>>> = Arc::new(Mutex::new(Vec::new()));
        let failing = held.clone();
        let set_aside = self.set_aside.clone();
        let end = EndOfQuery {
            warehouse: self.warehouse.clone(),
            quarantine: self.quarantine.clone(),
            unique_id: self.unique_id.clone(),
            run_id: self.run_id.clone(),
            held,
        };
        let rows = futures::stream::once(async move {
            let df = df.ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "a quarantined model's query was read twice".into(),
                )
            })?;
            df.execute_stream().await
        })
        .try_flatten()
        .map(move |batch| {
            let batch = batch?;
            let flags = batch
                .column(columns)
                .as_boolean_opt()
                .cloned()
                .unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()]));
            let bad = flags.true_count();
            if bad > 0 {
                let rows = filter_record_batch(&batch, &flags)?;
                let keep: Vec<usize> = (0..batch.num_columns()).filter(|&i| i != columns).collect();
                let rows = rows.project(&keep)?;
                set_aside.fetch_add(bad as u64, Ordering::Relaxed);
                if let Ok(mut f) = failing.lock() {
                    f.push(rows);
                }
            }
            let good = match bad {
                0 => batch,
                _ => filter_record_batch(&batch, &not(&flags)?)?,
            };
            Ok(good.project(&(0..columns).collect::<Vec<_>>())?)
        });
        // After the last row, and before the model's write can commit: the quarantine's commit.
        let done = futures::stream::once(async move { end.write().await }).filter_map(
            |r: std::result::Result<(), datafusion::error::DataFusionError>| async move {
                r.err().map(Err)
            },
        );
        Box::pin(RecordBatchStreamAdapter::new(
            self.passing.clone(),
            rows.chain(done),
        ))
    }
}

/// The quarantine's write, once the query has ended.
struct EndOfQuery {
    warehouse: EmbeddedWarehouse,
    quarantine: Relation,
    unique_id: String,
    run_id: String,
    held: Arc<Mutex<Vec<RecordBatch>>>,
}

impl EndOfQuery {
    async fn write(self) -> std::result::Result<(), datafusion::error::DataFusionError> {
        let batches = match self.held.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => Vec::new(),
        };
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let fail = |e: Error| {
            datafusion::error::DataFusionError::External(
                format!("writing the quarantined rows to {}: {e}", self.quarantine).into(),
            )
        };
        let schema = first.schema();
        let table = MemTable::try_new(schema, vec![batches])?;
        let plan = self
            .warehouse
            .ctx
            .read_table(Arc::new(table))?
            .logical_plan()
            .clone();
        let target = WriteTarget {
            unique_id: &self.unique_id,
            run_id: &self.run_id,
            relation: &self.quarantine,
            partition_by: &[],
            file_size: None,
            replace_damaged: false,
            txn: None,
        };
        Box::pin(
            self.warehouse
                .write_with_mode(&target, plan, SaveMode::Append),
        )
        .await
        .map_err(fail)?;
        Ok(())
    }
}
