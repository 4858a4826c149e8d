//! Row quarantine: a model's query runs once; each row is judged by the model's row checks as
//! it streams past. Passing rows go on to the model's write; failing rows are kept aside and,
//! when the query has ended (and before the model's commit), written to the quarantine table
//! in one commit: a table model's quarantine is replaced (it holds what the current build set
//! aside), an incremental model's grows. A failure there fails the model's write, so the model
//! is never committed without its quarantined rows. A process killed between the two commits
//! leaves a quarantine commit of a run whose model commit never happened: before the model is
//! next written, such commits are undone (the quarantine restored to the version before
//! them), and listings skip their rows.

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
        let writer = SplitWriter {
            relation: &req.relation,
            quarantine,
            unique_id: &req.unique_id,
            run_id: &req.run_id,
            replace: req.materialization == Materialization::Table,
        };
        let (passing, set_aside) = self.split(&writer, &req.sql).await?;
        let inner = MaterializeRequest {
            sql: format!("select * from {passing}"),
            quarantine: None,
            ..req.clone()
        };
        let outcome = match req.materialization {
            Materialization::Incremental => self.build_incremental(&inner).await,
            _ => self.build_table(&inner).await,
        };
        let _ = self.ctx.deregister_table(passing.as_str());
        with_count(outcome, &set_aside)
    }

    /// The rows of `plan` that pass `quarantine`'s checks, as a plan reading them once (the
    /// failing rows go to the quarantine as the module says), and how many were set aside
    /// once the plan has run. Call [`EmbeddedWarehouse::unsplit`] with the name after.
    pub(super) async fn split_plan(
        &self,
        writer: &SplitWriter<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<(String, Arc<AtomicU64>)> {
        let view = format!("v{}", uuid::Uuid::new_v4().simple());
        let view_name = format!("{CATALOG}.{SCHEMA}.{view}");
        self.ctx.register_table(
            view_name.as_str(),
            DataFrame::new(self.ctx.state(), plan).into_view(),
        )?;
        let sql = format!("select * from {}.{}.{}", q(CATALOG), q(SCHEMA), q(&view));
        let split = self.split(writer, &sql).await;
        // The split's query is planned: the view is no longer needed by name.
        let _ = self.ctx.deregister_table(view_name.as_str());
        split
    }

    /// Forget a split's registered name.
    pub(super) fn unsplit(&self, name: &str) {
        let _ = self.ctx.deregister_table(name);
    }

    /// Register the passing rows of `sql` under a name (see [`Self::split_plan`]).
    async fn split(&self, writer: &SplitWriter<'_>, sql: &str) -> Result<(String, Arc<AtomicU64>)> {
        let quarantine = writer.quarantine;
        let judged = format!(
            "select strata_q.*, coalesce({}, false) as {FAILED}, {} as {}, {} as {}, now() as {} \
             from (\n{sql}\n) as strata_q",
            quarantine.failing(),
            quarantine.failed_names(),
            q(QUARANTINE_COLUMNS[0]),
            strata_common::quote_literal(writer.run_id),
            q(QUARANTINE_COLUMNS[1]),
            q(QUARANTINE_COLUMNS[2]),
        );
        // A check naming a column the query lacks fails here, before anything is written.
        let df = self.plan(&judged).await?;
        self.drop_orphans(writer.relation, &quarantine.relation)
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
            unique_id: writer.unique_id.to_string(),
            run_id: writer.run_id.to_string(),
            set_aside: set_aside.clone(),
            replace: writer.replace,
            quarantined: Arc::new(
                full.project(
                    &(0..full.fields().len())
                        .filter(|&i| i != n)
                        .collect::<Vec<_>>(),
                )
                .map_err(datafusion::error::DataFusionError::from)?,
            ),
        };
        let table = format!("q{}", uuid::Uuid::new_v4().simple());
        self.ctx.register_table(
            format!("{CATALOG}.{SCHEMA}.{table}").as_str(),
            Arc::new(datafusion::catalog::streaming::StreamingTable::try_new(
                passing,
                vec![Arc::new(split) as Arc<dyn PartitionStream>],
            )?),
        )?;
        Ok((
            format!("{}.{}.{}", q(CATALOG), q(SCHEMA), q(&table)),
            set_aside,
        ))
    }

    /// The quarantine's newest commits of runs that never committed the model: how many, and
    /// the version before them (`None`: the table began with them). `None` without a
    /// quarantine table.
    async fn orphan_commits(
        &self,
        model: &Relation,
        quarantine: &Relation,
    ) -> Result<Option<(usize, Option<u64>)>> {
        let location = self
            .shared
            .lake
            .table(&quarantine.schema, &quarantine.identifier)?;
        if !self.shared.lake.table_exists(&location).await? {
            return Ok(None);
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
        let history = self.history(quarantine).await?;
        let orphans = history
            .iter()
            .take_while(|v| {
                v.operation == "WRITE" && v.run_id.as_ref().is_some_and(|r| !committed.contains(r))
            })
            .count();
        Ok(Some((orphans, history.get(orphans).map(|v| v.version))))
    }

    /// SQL reading a model's quarantined rows as of its last committed write (skipping a
    /// quarantine commit whose model commit never happened). `None`: nothing quarantined.
    pub async fn quarantine_sql(
        &self,
        model: &Relation,
        quarantine: &Relation,
    ) -> Result<Option<String>> {
        Ok(match self.orphan_commits(model, quarantine).await? {
            None | Some((_, None)) => None,
            Some((0, _)) => Some(quarantine.to_string()),
            Some((_, Some(version))) => Some(format!(
                "table_at_version({}, {version})",
                strata_common::quote_literal(&format!(
                    "{}.{}",
                    quarantine.schema, quarantine.identifier
                ))
            )),
        })
    }

    /// Undo the quarantine's newest commits whose run never committed the model (see the
    /// module's documentation).
    async fn drop_orphans(&self, model: &Relation, quarantine: &Relation) -> Result<()> {
        let Some((orphans, before)) = self.orphan_commits(model, quarantine).await? else {
            return Ok(());
        };
        if orphans == 0 {
            return Ok(());
        }
        tracing::warn!(
            "{quarantine}: undoing {orphans} quarantine commit(s) of runs that never committed {model}"
        );
        match before {
            Some(version) => {
                self.rollback(quarantine, version).await?;
            }
            // The quarantine was created by a run that never committed the model.
            None => {
                let location = self
                    .shared
                    .lake
                    .table(&quarantine.schema, &quarantine.identifier)?;
                self.shared.lake.remove_table(&location).await?;
                self.shared
                    .invalidate(&quarantine.schema, &quarantine.identifier);
            }
        }
        Ok(())
    }
}

/// Where a split's rows go: the table written (whose commits decide which quarantine commits
/// count), its quarantine, and how.
pub(super) struct SplitWriter<'a> {
    pub relation: &'a Relation,
    pub quarantine: &'a Quarantine,
    pub unique_id: &'a str,
    pub run_id: &'a str,
    /// Replace the quarantine (a table model's, a replacing load's) rather than add to it.
    pub replace: bool,
}

/// A write's outcome, saying how many rows were set aside.
pub(super) fn with_count(
    outcome: Result<MaterializeOutcome>,
    set_aside: &AtomicU64,
) -> Result<MaterializeOutcome> {
    let mut outcome = outcome?;
    let n = set_aside.load(Ordering::Relaxed);
    if n > 0 {
        outcome.message = format!("{}, {n} quarantined", outcome.message);
    }
    outcome.quarantined = n;
    Ok(outcome)
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
    /// Replace the quarantine (a table model's) rather than add to it.
    replace: bool,
    /// The quarantined rows' columns: the model's and the three of [`QUARANTINE_COLUMNS`].
    quarantined: SchemaRef,
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
            replace: self.replace,
            schema: Some(self.quarantined.clone()),
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
    replace: bool,
    /// The quarantined rows' columns, once a batch has been seen.
    schema: Option<SchemaRef>,
}

impl EndOfQuery {
    async fn write(self) -> std::result::Result<(), datafusion::error::DataFusionError> {
        let batches = match self.held.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => Vec::new(),
        };
        let fail = |e: Error| {
            datafusion::error::DataFusionError::External(
                format!("writing the quarantined rows to {}: {e}", self.quarantine).into(),
            )
        };
        let schema = match (batches.first(), &self.schema) {
            (Some(first), _) => first.schema(),
            // Nothing set aside: a table model's quarantine is emptied, if there is one.
            (None, Some(schema)) if self.replace => {
                let location = self
                    .warehouse
                    .shared
                    .lake
                    .table(&self.quarantine.schema, &self.quarantine.identifier)
                    .map_err(fail)?;
                if !self
                    .warehouse
                    .shared
                    .lake
                    .table_exists(&location)
                    .await
                    .map_err(fail)?
                {
                    return Ok(());
                }
                schema.clone()
            }
            _ => return Ok(()),
        };
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
        Box::pin(self.warehouse.write_with_mode(
            &target,
            plan,
            if self.replace {
                SaveMode::Overwrite
            } else {
                SaveMode::Append
            },
        ))
        .await
        .map_err(fail)?;
        Ok(())
    }
}

/// What `strata quarantine retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retried {
    /// Rows that now pass and were written to the model.
    pub moved: u64,
    /// Rows that still fail a check and stay.
    pub remaining: u64,
}

impl EmbeddedWarehouse {
    /// Re-judge a model's quarantined rows by its current checks: those that pass are written
    /// to the model (appended, or merged as the model merges, per `template`) and then removed
    /// from the quarantine. The model's commit carries the quarantine's version as a Delta
    /// application transaction, so a retry killed between the two commits is finished, not
    /// repeated, by the next one.
    pub async fn retry_quarantined(
        &self,
        template: &MaterializeRequest,
        quarantine: &Quarantine,
    ) -> Result<Retried> {
        let model = &template.relation;
        let qrel = &quarantine.relation;
        self.drop_orphans(model, qrel).await?;
        if self.orphan_commits(model, qrel).await?.is_none() {
            return Ok(Retried {
                moved: 0,
                remaining: 0,
            });
        }
        let location = self.shared.lake.table(&qrel.schema, &qrel.identifier)?;
        let table = super::damage::open_checked(&location)
            .await?
            .ok_or_else(|| Error::Internal(format!("{} has no Delta log", location.display)))?;
        let version = table.version().unwrap_or(0);
        let app = format!("strata-quarantine-retry:{qrel}");
        let passing = format!("not coalesce({}, false)", quarantine.failing());
        let columns: Vec<String> = self
            .plan(&format!("select * from {qrel}"))
            .await?
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| !QUARANTINE_COLUMNS.contains(&c.as_str()))
            .collect();
        let count = |filter: String| async move {
            let sql = format!("select count(*) from {qrel} where {filter}");
            let batches: Vec<RecordBatch> = self.plan(&sql).await?.collect().await?;
            Ok::<u64, Error>(
                batches
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                    })
                    .map(|a| a.value(0).max(0) as u64)
                    .unwrap_or(0),
            )
        };
        let moved = count(passing.clone()).await?;
        if moved == 0 {
            let remaining = count("true".into()).await?;
            return Ok(Retried { moved, remaining });
        }
        // The model's commit for this quarantine version is in unless an earlier retry
        // committed it and was stopped before removing the rows.
        // Transaction versions start at 1; table versions at 0.
        let txn = version as i64 + 1;
        if self.ingest_version(model, &app).await? != txn {
            let selected: Vec<String> = columns.iter().map(|c| q(c)).collect();
            let request = MaterializeRequest {
                sql: format!("select {} from {qrel} where {passing}", selected.join(", ")),
                quarantine: None,
                txn: Some((app, txn)),
                full_refresh: false,
                ..template.clone()
            };
            match request.materialization {
                Materialization::Incremental => self.build_incremental(&request).await?,
                _ => {
                    let df = self.plan(&request.sql).await?;
                    self.write_with_mode(
                        &WriteTarget::of(&request),
                        df.logical_plan().clone(),
                        SaveMode::Append,
                    )
                    .await?
                }
            };
        }
        self.run_statements(
            &format!("delete from {qrel} where {passing}"),
            &crate::StatementContext {
                unique_id: template.unique_id.clone(),
                run_id: template.run_id.clone(),
            },
        )
        .await?;
        let remaining = count("true".into()).await?;
        Ok(Retried { moved, remaining })
    }
}
