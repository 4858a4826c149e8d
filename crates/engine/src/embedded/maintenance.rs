//! Table maintenance: a table's history, rollback to a version, compaction (optimize,
//! z-order) and vacuum.

use futures::TryStreamExt;

use crate::error::{Error, Result};

use super::EmbeddedWarehouse;

/// One version of a table, as `strata history` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableVersion {
    /// The Delta version.
    pub version: u64,
    /// When it was committed (RFC 3339).
    pub timestamp: Option<String>,
    /// `WRITE`, `RESTORE`, ...
    pub operation: String,
    /// Rows the commit added.
    pub rows_written: Option<u64>,
    /// The Strata run that wrote it.
    pub run_id: Option<String>,
}

impl EmbeddedWarehouse {
    /// The versions of a table, newest first: time, operation, rows written, run.
    pub async fn history(&self, relation: &strata_common::Relation) -> Result<Vec<TableVersion>> {
        let table = self.delta_table(relation).await?;
        let latest = table.version().unwrap_or(0);
        let infos: Vec<deltalake::kernel::CommitInfo> = table.history(None).try_collect().await?;
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(i, info)| TableVersion {
                version: latest.saturating_sub(i as u64),
                timestamp: info
                    .timestamp
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                operation: info.operation.clone().unwrap_or_default(),
                rows_written: info
                    .info
                    .get("operationMetrics")
                    .and_then(|m| m.get("num_added_rows"))
                    .and_then(|v| v.as_u64()),
                run_id: info
                    .info
                    .get("strata.run_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            })
            .collect())
    }

    /// Make `version` the current content of a table again, as a new version (Delta RESTORE).
    /// Returns the new version.
    pub async fn rollback(&self, relation: &strata_common::Relation, version: u64) -> Result<u64> {
        self.ready_to_write().await?;
        let table = self.delta_table(relation).await?;
        let latest = table.version().unwrap_or(0);
        if version > latest {
            return Err(Error::user(format!(
                "{relation} has versions 0 to {latest}; there is no version {version}"
            ))
            .with_hint("see them with `strata history <model>`"));
        }
        let (table, _metrics) = table.restore().with_version_to_restore(version).await?;
        self.shared
            .invalidate(&relation.schema, &relation.identifier);
        Ok(table.version().unwrap_or(0))
    }

    /// Compact a table's small files into larger ones (and z-order them by `zorder` columns),
    /// in one commit. Returns (files added, files removed).
    pub async fn optimize(
        &self,
        relation: &strata_common::Relation,
        zorder: Vec<String>,
    ) -> Result<(u64, u64)> {
        self.ready_to_write().await?;
        let table = self.delta_table(relation).await?;
        let builder = table.optimize();
        let builder = if zorder.is_empty() {
            builder
        } else {
            builder.with_type(deltalake::operations::optimize::OptimizeType::ZOrder(
                zorder,
            ))
        };
        let (_, metrics) = builder.await?;
        self.shared
            .invalidate(&relation.schema, &relation.identifier);
        Ok((metrics.num_files_added, metrics.num_files_removed))
    }

    /// Delete files no version newer than the retention period needs. Shorter periods than
    /// the table's `delta.deletedFileRetentionDuration` (7 days by default) are refused, so
    /// readers of recent versions never lose files. Returns the files deleted (or that would
    /// be, with `dry_run`).
    pub async fn vacuum(
        &self,
        relation: &strata_common::Relation,
        retain_hours: Option<i64>,
        dry_run: bool,
    ) -> Result<Vec<String>> {
        self.ready_to_write().await?;
        let table = self.delta_table(relation).await?;
        let mut builder = table
            .vacuum()
            .with_dry_run(dry_run)
            .with_enforce_retention_duration(true);
        if let Some(h) = retain_hours {
            builder = builder.with_retention_period(chrono::Duration::hours(h));
        }
        let (_, metrics) = builder.await.map_err(|e| {
            if e.to_string().contains("Invalid retention period") {
                Error::user(format!("{relation}: {e}")).with_hint(
                    "a shorter retention could delete files that readers of recent versions still use; \
                     keep at least the table's retention (168 hours by default)",
                )
            } else {
                Error::Delta(e)
            }
        })?;
        Ok(metrics.files_deleted)
    }
}
