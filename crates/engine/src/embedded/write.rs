//! Writing tables: a plan replaces or adds to a table, or a delta-rs operation changes it,
//! each in one Delta commit through the write guard, with the commit's metadata.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use strata_meta::RelationKind;

use crate::error::{Error, Result};
use crate::{Materialization, MaterializeOutcome, MaterializeRequest};

use super::guard::WriteGuard;
use super::{EmbeddedWarehouse, damage, lake};

impl EmbeddedWarehouse {
    /// Replace a table with the result of a plan, in one commit.
    pub(super) async fn write_table(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<MaterializeOutcome> {
        self.write_with_mode(target, plan, SaveMode::Overwrite)
            .await
    }

    /// Replace the rows of a table matching `predicate` with the result of a plan, in one
    /// commit (the plan's rows must all match it).
    pub(super) async fn write_replacing(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
        predicate: String,
    ) -> Result<MaterializeOutcome> {
        self.write_plan(target, plan, SaveMode::Overwrite, Some(predicate))
            .await
    }

    /// Write a plan to a table in one commit: replace it (`Overwrite`, schema replaced) or add
    /// to it (`Append`, new columns merged in).
    pub(super) async fn write_with_mode(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
        mode: SaveMode,
    ) -> Result<MaterializeOutcome> {
        self.write_plan(target, plan, mode, None).await
    }

    async fn write_plan(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
        mode: SaveMode,
        replace_where: Option<String>,
    ) -> Result<MaterializeOutcome> {
        let (schema, name) = (&target.relation.schema, &target.relation.identifier);
        let location = self.shared.lake.table(schema, name)?;
        // Analyse in Strata's own DataFusion session, so its SQL semantics apply to what is
        // written exactly as they apply to queries; the table's columns accept NULLs.
        let plan = crate::semantics::nullable_columns(self.distributed(self.analyzed(plan)?)?)?;
        if let Some(f) = plan.schema().fields().iter().find(|f| {
            matches!(f.data_type(), DataType::Decimal256(..))
                || matches!(f.data_type(), DataType::Decimal128(p, _) if *p > 38)
        }) {
            return Err(Error::user(format!(
                "{}: column `{}` is {}, but Delta Lake stores decimals of at most 38 digits",
                location.display,
                f.name(),
                crate::types::sql_type(f.data_type())
            ))
            .with_hint("cast it to decimal(38, s) or to double in the query"));
        }
        if plan.schema().fields().is_empty() {
            return Err(Error::user(format!(
                "{}: the query returns no columns; a table needs at least one",
                location.display
            )));
        }
        self.ready_to_write().await?;
        let mut exists = self.shared.lake.table_exists(&location).await?;
        let loaded = match self.shared.loaded_table(schema, name) {
            Some(t) => Some(t),
            None if exists => match damage::open_checked(&location).await {
                // A full refresh replaces a table whose log is damaged: nothing of it can be
                // read, and the rebuild brings every row back from the inputs.
                Err(Error::DamagedLog(why))
                    if target.replace_damaged && replace_where.is_none() =>
                {
                    tracing::warn!("replacing {}: {}", location.display, why.message);
                    self.shared.lake.remove_table(&location).await?;
                    self.shared.invalidate(schema, name);
                    exists = false;
                    None
                }
                other => other?,
            },
            None => None,
        };
        let table = if let Some(t) = loaded.filter(|_| exists) {
            t
        } else {
            // A new table: the first write creates it, in the same commit as its data.
            deltalake::DeltaTableBuilder::from_url(location.url.clone())?.build()?
        };
        let guard = begin_write(&table, &location, exists).await?;
        let write_id = uuid::Uuid::new_v4().to_string();
        let mut builder = table
            .write(Vec::<RecordBatch>::new())
            .with_input_plan(plan)
            .with_save_mode(mode)
            .with_session_state(Arc::new(self.ctx.state()))
            .with_commit_properties(commit_properties(target, &write_id));
        if let Some(size) = target.file_size {
            builder = builder.with_configuration([
                ("delta.targetFileSize".to_string(), Some(size.to_string())),
                // Merged tables take many small commits: a checkpoint every 10 keeps opening
                // them (replaying the log) cheap.
                (
                    "delta.checkpointInterval".to_string(),
                    Some(MERGED_TABLE_CHECKPOINT_INTERVAL.to_string()),
                ),
            ]);
        }
        // A period replaced also checks rows against the period: a failed check is then not
        // (only) about NULLs.
        let only_null_checks = replace_where.is_none();
        builder = match replace_where {
            // Part of the table is replaced: its layout and columns stay.
            Some(p) if exists => builder.with_replace_where(p),
            // A new table is created with its layout, its rows checked against the predicate.
            Some(p) => builder
                .with_replace_where(p)
                .with_partition_columns(target.partition_by.iter().cloned()),
            // Rows added to a table keep its layout.
            None if exists && mode == SaveMode::Append => {
                builder.with_schema_mode(SchemaMode::Merge)
            }
            None => builder
                .with_partition_columns(target.partition_by.iter().cloned())
                .with_schema_mode(if mode == SaveMode::Append {
                    SchemaMode::Merge
                } else {
                    SchemaMode::Overwrite
                }),
        };
        let written = builder.await.map(|t| (t, ()));
        let settled = settle(guard, &location, &write_id, written, only_null_checks).await?;
        let version = settled.table.version();
        let rows = last_commit_rows(&settled.table).await;
        self.record(target, RelationKind::Table, &location, None)?;
        self.shared.invalidate(schema, name);
        self.shared
            .remember_table(schema, name, settled.table)
            .await?;
        let mut message = match rows {
            Some(n) => format!("SELECT {n}"),
            None => "OK".into(),
        };
        if let Some(w) = settled.warning {
            message = format!("{message} ({w})");
        }
        Ok(MaterializeOutcome {
            rows_affected: rows,
            version,
            message,
            observed: Vec::new(),
            quarantined: 0,
        })
    }
}

impl EmbeddedWarehouse {
    /// Change an existing table with a delta-rs operation (merge, delete, update) given the
    /// table and the commit's metadata, in one commit through the write guard; the catalog
    /// records the write.
    pub(super) async fn change_table<T, F, Fut>(
        &self,
        target: &WriteTarget<'_>,
        op: F,
    ) -> Result<Settled<T>>
    where
        F: FnOnce(DeltaTable, CommitProperties) -> Fut,
        Fut: std::future::Future<Output = deltalake::DeltaResult<(DeltaTable, T)>>,
    {
        self.ready_to_write().await?;
        let (schema, name) = (&target.relation.schema, &target.relation.identifier);
        let location = self.shared.lake.table(schema, name)?;
        let table = match self.shared.loaded_table(schema, name) {
            Some(t) => t,
            None => damage::open_checked(&location)
                .await?
                .ok_or_else(|| Error::Internal(format!("{} has no Delta log", location.display)))?,
        };
        let guard = begin_write(&table, &location, true).await?;
        let write_id = uuid::Uuid::new_v4().to_string();
        let result = op(table, commit_properties(target, &write_id)).await;
        let settled = settle(guard, &location, &write_id, result, true).await?;
        self.record(target, RelationKind::Table, &location, None)?;
        self.shared.invalidate(schema, name);
        self.shared
            .remember_table(schema, name, settled.table.clone())
            .await?;
        Ok(settled)
    }
}

/// What a table write needs to know about its node.
#[derive(Clone, Copy)]
pub(super) struct WriteTarget<'a> {
    pub(super) unique_id: &'a str,
    pub(super) run_id: &'a str,
    pub(super) relation: &'a strata_common::Relation,
    pub(super) partition_by: &'a [String],
    /// `delta.targetFileSize` of a table the write creates, in bytes.
    pub(super) file_size: Option<u64>,
    /// `--full-refresh`: a table with a damaged log is replaced (its history with it).
    pub(super) replace_damaged: bool,
    /// A Delta application transaction (`txn`: app id, version) the commit carries, so what
    /// it loaded is known exactly when the commit is in the table (ingestion).
    pub(super) txn: Option<(&'a str, i64)>,
}

/// Data file size of tables that merges rewrite (incremental models, snapshots): a merge
/// rewrites every file holding a changed row, so smaller files mean less to rewrite.
/// Delta's default (100 MiB) suits tables that are only ever replaced.
const MERGED_TABLE_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// Commits between checkpoints of merged tables (Delta's default is 100).
const MERGED_TABLE_CHECKPOINT_INTERVAL: u64 = 10;

impl<'a> WriteTarget<'a> {
    pub(super) fn of(req: &'a MaterializeRequest) -> Self {
        let merged = matches!(
            req.materialization,
            Materialization::Incremental | Materialization::Snapshot
        );
        Self {
            unique_id: &req.unique_id,
            run_id: &req.run_id,
            relation: &req.relation,
            partition_by: &req.partition_by,
            file_size: req
                .target_file_size
                .or(merged.then_some(MERGED_TABLE_FILE_SIZE)),
            replace_damaged: req.full_refresh,
            txn: req.txn.as_ref().map(|(app, v)| (app.as_str(), *v)),
        }
    }
}

/// Start guarding a write to a table (`exists`: it has a committed version, `table`): files
/// of an earlier killed write are removed first.
async fn begin_write(
    table: &DeltaTable,
    location: &lake::TableLocation,
    exists: bool,
) -> Result<WriteGuard> {
    WriteGuard::begin(table, location.dir.clone(), exists)
        .await
        .map_err(|e| {
            Error::user(format!("cannot write {}: {e}", location.url))
                .with_hint("check that the lake is writable")
        })
}

/// A guarded write that committed.
pub(super) struct Settled<T> {
    /// The table at the write's version.
    pub(super) table: DeltaTable,
    /// What the operation reported (absent when it failed after committing).
    pub(super) done: Option<T>,
    /// Why the write reported an error though it committed.
    pub(super) warning: Option<String>,
}

/// End a guarded write. On error the table's log is read again: delta-rs can fail after the
/// commit (a checkpoint, log cleanup), and then the write did happen — its files stay and it
/// is reported as done, with a warning. Otherwise what the write left behind is removed.
/// With `only_null_checks` (no period check), a failed row check names the table's NOT NULL
/// columns.
async fn settle<T>(
    guard: WriteGuard,
    location: &lake::TableLocation,
    write_id: &str,
    result: deltalake::DeltaResult<(DeltaTable, T)>,
    only_null_checks: bool,
) -> Result<Settled<T>> {
    let error = match result {
        Ok((table, done)) => {
            guard.finish().await;
            return Ok(Settled {
                table,
                done: Some(done),
                warning: None,
            });
        }
        Err(e) => e,
    };
    let mut not_null: Vec<String> = Vec::new();
    match lake::open_delta(location.url.clone()).await {
        Ok(now) => {
            guard.fail(Ok(now.as_ref())).await;
            if let Some(t) = &now
                && let Ok(snapshot) = t.snapshot()
            {
                not_null = snapshot
                    .schema()
                    .fields()
                    .filter(|f| !f.is_nullable())
                    .map(|f| f.name().to_string())
                    .collect();
            }
            if let Some(table) = now
                && written_by(&table, write_id).await
            {
                return Ok(Settled {
                    table,
                    done: None,
                    warning: Some(format!(
                        "committed; a step after the commit failed: {error}"
                    )),
                });
            }
        }
        Err(_) => guard.fail(Err(())).await,
    }
    let error = delta_write_error(error);
    let text = error.to_string();
    if only_null_checks && text.contains("Invalid data found") && !not_null.is_empty() {
        let rows = text
            .split_once("Invalid data found: ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or("some");
        return Err(Error::user(format!(
            "{}: {rows} rows put NULL into a NOT NULL column ({}); the table took NOT NULL from the query of its first build",
            location.display,
            not_null.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        ))
        .with_hint(format!(
            "rebuild it with `--full-refresh` (tables are now created with nullable columns), or give the column a value in the query (coalesce({}, ...) or a cast)",
            not_null[0]
        )));
    }
    let place = match &location.dir {
        Some(dir) => format!("the table {} ({})", location.display, dir.display()),
        None => format!("the table {}", location.display),
    };
    match strata_common::storage_problem(&error.to_string(), &place) {
        Some((message, hint)) => Err(Error::user(message).with_hint(hint)),
        None => Err(error),
    }
}

/// Whether the table's latest commit is the write `write_id`.
async fn written_by(table: &DeltaTable, write_id: &str) -> bool {
    let mut history = table.history(Some(1));
    matches!(
        history.try_next().await,
        Ok(Some(info)) if info.info.get(WRITE_ID).and_then(|v| v.as_str()) == Some(write_id)
    )
}

/// Commit metadata key identifying one write.
const WRITE_ID: &str = "strata.write_id";

/// Commit metadata naming the run and node that wrote a version, and the write itself.
fn commit_properties(target: &WriteTarget<'_>, write_id: &str) -> CommitProperties {
    let properties = match target.txn {
        Some((app_id, version)) => CommitProperties::default()
            .with_application_transaction(deltalake::kernel::Transaction::new(app_id, version)),
        None => CommitProperties::default(),
    };
    properties.with_metadata([
        (
            "strata.run_id".to_string(),
            serde_json::json!(target.run_id),
        ),
        (
            "strata.node".to_string(),
            serde_json::json!(target.unique_id),
        ),
        (WRITE_ID.to_string(), serde_json::json!(write_id)),
    ])
}

pub(super) fn delta_write_error(e: deltalake::DeltaTableError) -> Error {
    match e {
        deltalake::DeltaTableError::Arrow { source } => Error::Sql(source.to_string()),
        other => {
            let text = other.to_string();
            // Query failures surface through the writer; show them as SQL errors.
            if text.contains("DataFusion")
                || text.contains("Arrow error")
                || text.contains("Execution error")
            {
                Error::Sql(text)
            } else {
                Error::Delta(other)
            }
        }
    }
}

async fn last_commit_rows(table: &DeltaTable) -> Option<u64> {
    let mut history = table.history(Some(1));
    let info = history.try_next().await.ok().flatten()?;
    info.info
        .get("operationMetrics")
        .and_then(|m| m.get("num_added_rows"))
        .and_then(|v| v.as_u64())
}
