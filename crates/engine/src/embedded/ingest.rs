//! Writes of ingestion: rows read from outside (files, databases, APIs) landed in a bronze
//! table in one commit that carries the load's number as a Delta application transaction
//! (`txn`), so whether a load is in the table is known from the table alone.

use datafusion::logical_expr::LogicalPlan;
use deltalake::protocol::SaveMode;

use super::{EmbeddedWarehouse, WriteTarget, damage};
use crate::MaterializeOutcome;
use crate::error::Result;

/// How a load changes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Add the rows (new columns are added to the table).
    Append,
    /// Replace the table with the rows.
    Replace,
}

/// One load into a bronze table.
#[derive(Debug, Clone)]
pub struct IngestWrite<'a> {
    /// The source table's unique id.
    pub unique_id: &'a str,
    /// The invocation.
    pub run_id: &'a str,
    /// The bronze table.
    pub relation: &'a strata_common::Relation,
    /// Append or replace.
    pub mode: IngestMode,
    /// The Delta application id of this table's loads.
    pub app_id: &'a str,
    /// This load's number: one above the table's last committed load.
    pub version: i64,
}

impl EmbeddedWarehouse {
    /// The number of the last load committed to `relation` under `app_id` (0: none, or no
    /// table).
    pub async fn ingest_version(
        &self,
        relation: &strata_common::Relation,
        app_id: &str,
    ) -> Result<i64> {
        let location = self
            .shared
            .lake
            .table(&relation.schema, &relation.identifier)?;
        if !self.shared.lake.table_exists(&location).await? {
            return Ok(0);
        }
        let Some(table) = damage::open_checked(&location).await? else {
            return Ok(0);
        };
        let version = table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await?;
        Ok(version.unwrap_or(0))
    }

    /// Write the rows of `plan` as load `write.version`, in one commit.
    pub async fn write_ingest(
        &self,
        write: &IngestWrite<'_>,
        plan: LogicalPlan,
    ) -> Result<MaterializeOutcome> {
        let target = WriteTarget {
            unique_id: write.unique_id,
            run_id: write.run_id,
            relation: write.relation,
            partition_by: &[],
            file_size: None,
            replace_damaged: write.mode == IngestMode::Replace,
            txn: Some((write.app_id, write.version)),
        };
        let mode = match write.mode {
            IngestMode::Append => SaveMode::Append,
            IngestMode::Replace => SaveMode::Overwrite,
        };
        self.write_with_mode(&target, plan, mode).await
    }
}
