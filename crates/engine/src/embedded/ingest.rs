//! Writes of ingestion: rows read from outside (files, databases, APIs) landed in a bronze
//! table in one commit that carries the load's number as a Delta application transaction
//! (`txn`), so whether a load is in the table is known from the table alone.

use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{ExprFunctionExt, LogicalPlan};
use datafusion::prelude::{DataFrame, col, lit};
use deltalake::protocol::SaveMode;
use strata_common::quote_ident as q;

use super::incremental::{DEST, SOURCE};
use super::{EmbeddedWarehouse, WriteTarget, damage};
use crate::MaterializeOutcome;
use crate::error::{Error, Result};

/// How a load changes its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestMode {
    /// Add the rows (new columns are added to the table).
    Append,
    /// Replace the table with the rows.
    Replace,
    /// Update the rows whose key (these columns) the load has, insert the others; of the
    /// load's rows with one key, the last file's wins.
    Merge(Vec<String>),
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
    /// The columns the table is partitioned by (when it is created).
    pub partition_by: &'a [String],
    /// Rows failing these checks go to the quarantine instead (`quarantine:`).
    pub quarantine: Option<&'a crate::Quarantine>,
}

/// A file in object storage.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    /// Its URL (`s3://bucket/key`).
    pub url: String,
    pub size: u64,
    /// Its version: the ETag, else the time it was last modified.
    pub version: String,
}

impl EmbeddedWarehouse {
    /// The files in object storage that `pattern` (`s3://bucket/events/*.ndjson`) names,
    /// sorted; the bucket's store is made known to the session, so the files can be read.
    pub async fn remote_files(&self, pattern: &str) -> Result<Vec<RemoteFile>> {
        use futures::TryStreamExt;
        let url = url::Url::parse(pattern)
            .map_err(|e| Error::user(format!("`{pattern}` is not a URL: {e}")))?;
        if !super::lake::SUPPORTED_SCHEMES.contains(&url.scheme()) {
            return Err(Error::user(format!(
                "`{pattern}`: {}:// is not an object store Strata reads (s3:// is)",
                url.scheme()
            )));
        }
        let mut bucket = url.clone();
        bucket.set_path("/");
        bucket.set_query(None);
        let store = deltalake::logstore::store_for(
            &bucket,
            std::collections::HashMap::<String, String>::new(),
        )
        .map_err(|e| Error::user(format!("`{pattern}`: {e}")))?;
        self.ctx
            .runtime_env()
            .register_object_store(&bucket, store.clone());
        let keys = url.path().trim_start_matches('/').to_string();
        // List under the folder before the first wildcard.
        let fixed = keys
            .find(['*', '?', '['])
            .map(|i| &keys[..i])
            .unwrap_or(&keys);
        let prefix = fixed.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        let listed: Vec<object_store::ObjectMeta> = store
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| {
                Error::user(format!(
                    "cannot list `{pattern}`: {}",
                    strata_common::without_backtrace(&e.to_string())
                ))
            })?;
        let host = url.host_str().unwrap_or_default();
        let mut files: Vec<RemoteFile> = listed
            .into_iter()
            .filter(|m| strata_common::glob_match(&keys, m.location.as_ref()))
            .map(|m| RemoteFile {
                url: format!("{}://{host}/{}", url.scheme(), m.location),
                size: m.size,
                version: m
                    .e_tag
                    .clone()
                    .unwrap_or_else(|| m.last_modified.to_rfc3339()),
            })
            .collect();
        files.sort_by(|a, b| a.url.cmp(&b.url));
        Ok(files)
    }

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
            partition_by: write.partition_by,
            file_size: None,
            replace_damaged: write.mode == IngestMode::Replace,
            txn: Some((write.app_id, write.version)),
        };
        if let Some(quarantine) = write.quarantine {
            let writer = super::quarantine::SplitWriter {
                relation: write.relation,
                quarantine,
                unique_id: write.unique_id,
                run_id: write.run_id,
                replace: write.mode == IngestMode::Replace,
            };
            let (passing, set_aside) = self.split_plan(&writer, plan).await?;
            let plan = self.plan(&format!("select * from {passing}")).await?;
            let unquarantined = IngestWrite {
                quarantine: None,
                mode: write.mode.clone(),
                ..*write
            };
            let outcome =
                Box::pin(self.write_ingest(&unquarantined, plan.logical_plan().clone())).await;
            self.unsplit(&passing);
            return super::quarantine::with_count(outcome, &set_aside);
        }
        let location = self
            .shared
            .lake
            .table(&write.relation.schema, &write.relation.identifier)?;
        let mode = match &write.mode {
            IngestMode::Append => SaveMode::Append,
            IngestMode::Replace => SaveMode::Overwrite,
            // The first load of a merged table creates it.
            IngestMode::Merge(_) if !self.shared.lake.table_exists(&location).await? => {
                SaveMode::Append
            }
            IngestMode::Merge(keys) => return self.merge_ingest(&target, plan, keys).await,
        };
        self.write_with_mode(&target, plan, mode).await
    }

    /// Merge a load into its table by `keys`, one row per key (the last file's).
    async fn merge_ingest(
        &self,
        target: &WriteTarget<'_>,
        plan: LogicalPlan,
        keys: &[String],
    ) -> Result<MaterializeOutcome> {
        let df = DataFrame::new(self.ctx.state(), plan);
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if let Some(missing) = keys.iter().find(|k| !columns.contains(k)) {
            return Err(Error::user(format!(
                "{}.{}: the primary key column `{missing}` is not in the loaded rows (columns: {})",
                target.relation.schema,
                target.relation.identifier,
                columns.join(", ")
            )));
        }
        let latest = latest_per_key(df, keys)?;
        let predicate = keys
            .iter()
            .map(|k| format!("{SOURCE}.{0} = {DEST}.{0}", q(k)))
            .collect::<Vec<_>>()
            .join(" and ");
        self.upsert(target, latest, predicate, true, (&columns, &columns))
            .await
    }
}

/// One row per key of `keys`: of the rows with one key, one from the last file
/// (`_strata_source` sorts last), as a load merged by primary key keeps.
pub fn latest_per_key(df: DataFrame, keys: &[String]) -> Result<DataFrame> {
    let rank = row_number()
        .partition_by(keys.iter().map(|k| col(q(k))).collect())
        .order_by(vec![col("_strata_source").sort(false, true)])
        .build()?
        .alias("__strata_rank");
    Ok(df
        .window(vec![rank])?
        .filter(col("__strata_rank").eq(lit(1u64)))?
        .drop_columns(&["__strata_rank"])?)
}
