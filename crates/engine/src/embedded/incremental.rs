//! Incremental models: `append`, `merge`, `delete+insert` and `microbatch` batches, each one
//! Delta commit, and `on_schema_change`.
//!
//! Merges name the table `DBT_INTERNAL_DEST` and the new rows `DBT_INTERNAL_SOURCE`, as dbt
//! does, so `incremental_predicates` written for dbt work unchanged.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::prelude::DataFrame;
use deltalake::operations::merge::{InsertBuilder, MergeBuilder, MergeMetrics};
use strata_common::{quote_ident as q, quote_literal};

use super::{EmbeddedWarehouse, WriteTarget};
use crate::error::{Error, Result};
use crate::types::{cast_type, sql_type};
use crate::{
    IncrementalStrategy, MaterializeOutcome, MaterializeRequest, OnSchemaChange, Warehouse,
};

/// The table's alias in merge predicates.
pub(super) const DEST: &str = "DBT_INTERNAL_DEST";

/// The new rows' alias in merge predicates.
pub(super) const SOURCE: &str = "DBT_INTERNAL_SOURCE";

/// What `on_schema_change` asks for, once the columns are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaPlan {
    /// Write into the table's columns as they are.
    Keep,
    /// Add the new columns as part of the write.
    AddColumns,
    /// Rewrite the table with the query's columns (`sync_all_columns` after a change).
    Rewrite,
}

impl EmbeddedWarehouse {
    /// An incremental model: the first build (or `--full-refresh`) writes the table in full;
    /// later ones add or merge the query's rows in one commit.
    pub(super) async fn build_incremental(
        &self,
        req: &MaterializeRequest,
    ) -> Result<MaterializeOutcome> {
        let (schema, name) = (&req.relation.schema, &req.relation.identifier);
        let exists = self
            .shared
            .lake
            .table_exists(&self.shared.lake.table(schema, name)?)
            .await?;
        let strategy = req.strategy();
        // A key the query lacks is a mistake on every build, the first one included: never a
        // table built without it, nor rows appended instead of merged.
        if !req.unique_key.is_empty() {
            let columns: Vec<String> = self
                .describe(&req.sql)
                .await?
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            check_keys(req, &columns)?;
        }
        // A microbatch model's first batch creates the table, checked against its period.
        if !exists && strategy == IncrementalStrategy::Microbatch && req.batch.is_some() {
            return self.replace_batch(req).await;
        }
        if !exists || req.full_refresh {
            return self.build_table(req).await;
        }
        if matches!(
            strategy,
            IncrementalStrategy::Merge | IncrementalStrategy::DeleteInsert
        ) && req.unique_key.is_empty()
        {
            return Err(Error::user(format!(
                "incremental strategy `{strategy}` needs a `unique_key`"
            ))
            .with_hint(
                "set unique_key: 'id' (or a list) in the model's config, or use incremental_strategy: append",
            ));
        }
        let (req, plan) = self.check_schema_change(req).await?;
        let req = &req;
        if plan == SchemaPlan::Rewrite {
            return self.rewrite(req).await;
        }
        let add_columns = plan == SchemaPlan::AddColumns;
        match strategy {
            IncrementalStrategy::Append => self.append(req).await,
            IncrementalStrategy::Merge => self.merge(req, add_columns).await,
            IncrementalStrategy::Microbatch => self.replace_batch(req).await,
            IncrementalStrategy::DeleteInsert => self.delete_insert(req, add_columns).await,
        }
    }

    /// `on_schema_change`: compare the query's columns with the table's. `ignore` (the
    /// default) keeps the table's columns (new ones are dropped, missing ones are NULL),
    /// `fail` stops with the differences, `append_new_columns` adds new columns,
    /// `sync_all_columns` makes the table's columns the query's (added, removed, retyped).
    async fn check_schema_change(
        &self,
        req: &MaterializeRequest,
    ) -> Result<(MaterializeRequest, SchemaPlan)> {
        let source = self.describe(&req.sql).await?;
        let target = self
            .describe(&format!("select * from {}", req.relation))
            .await?;
        let names =
            |s: &Schema| -> Vec<String> { s.fields().iter().map(|f| f.name().clone()).collect() };
        let (src, tgt) = (names(&source), names(&target));
        let added: Vec<&str> = src
            .iter()
            .filter(|c| !tgt.contains(c))
            .map(String::as_str)
            .collect();
        let missing: Vec<&str> = tgt
            .iter()
            .filter(|c| !src.contains(c))
            .map(String::as_str)
            .collect();
        let retyped: Vec<&str> = source
            .fields()
            .iter()
            .filter(|f| {
                target
                    .field_with_name(f.name())
                    .is_ok_and(|t| sql_type(t.data_type()) != sql_type(f.data_type()))
            })
            .map(|f| f.name().as_str())
            .collect();
        let mode = req.on_schema_change;
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        match mode {
            _ if added.is_empty() && missing.is_empty() && retyped.is_empty() => {
                Ok((req.clone(), SchemaPlan::Keep))
            }
            OnSchemaChange::SyncAllColumns => Ok((req.clone(), SchemaPlan::Rewrite)),
            // Changed types alone are left to the write's casts, as dbt leaves them.
            _ if added.is_empty() && missing.is_empty() => Ok((req.clone(), SchemaPlan::Keep)),
            OnSchemaChange::AppendNewColumns => Ok((req.clone(), SchemaPlan::AddColumns)),
            OnSchemaChange::Fail => Err(Error::user(format!(
                "the columns of {} changed (new: {}; missing: {}) and on_schema_change is `fail`; nothing was written",
                req.relation,
                list(&added),
                list(&missing),
            ))
            .with_hint("run with --full-refresh to rebuild the table, or set on_schema_change: append_new_columns or sync_all_columns")),
            OnSchemaChange::Ignore => {
                // Keep the table's columns: drop new ones, fill missing ones with NULL.
                let cols: Vec<String> = target
                    .fields()
                    .iter()
                    .map(|f| {
                        if src.contains(f.name()) {
                            q(f.name())
                        } else {
                            format!("cast(null as {}) as {}", cast_type(f.data_type()), q(f.name()))
                        }
                    })
                    .collect();
                let mut projected = req.clone();
                projected.sql = format!(
                    "select {} from (\n{}\n) as incoming",
                    cols.join(", "),
                    req.sql
                );
                Ok((projected, SchemaPlan::Keep))
            }
        }
    }

    /// `sync_all_columns` after a change: rewrite the table with the query's columns, the kept
    /// rows converted to them, and the new rows applied by the model's strategy, in one commit.
    async fn rewrite(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        let source = self.describe(&req.sql).await?;
        // The kept rows are filtered by the new ones: both from one evaluation of the query.
        let staged = self.stage_sql(&req.sql).await?;
        let incoming = format!("select * from {}", staged.sql_name());
        let target = self
            .describe(&format!("select * from {}", req.relation))
            .await?;
        let kept: Vec<String> = source
            .fields()
            .iter()
            .map(|f| {
                let ty = cast_type(f.data_type());
                if target.field_with_name(f.name()).is_ok() {
                    format!("cast({DEST}.{} as {ty}) as {}", q(f.name()), q(f.name()))
                } else {
                    format!("cast(null as {ty}) as {}", q(f.name()))
                }
            })
            .collect();
        let filter = match req.strategy() {
            IncrementalStrategy::Merge | IncrementalStrategy::DeleteInsert => {
                let matches = req
                    .unique_key
                    .iter()
                    .map(|k| format!("{SOURCE}.{} = {DEST}.{}", q(k), q(k)))
                    .collect::<Vec<_>>()
                    .join(" and ");
                format!("where not exists (select 1 from ({incoming}) as {SOURCE} where {matches})")
            }
            IncrementalStrategy::Microbatch => match &req.batch {
                Some(b) => format!("where not ({})", b.predicate(&format!("{DEST}."))),
                None => String::new(),
            },
            IncrementalStrategy::Append => String::new(),
        };
        let mut rewritten = req.clone();
        rewritten.sql = format!(
            "select {} from {} as {DEST} {filter}\nunion all\n{incoming}",
            kept.join(", "),
            req.relation,
        );
        self.build_table(&rewritten).await
    }

    /// Merge the query's rows into the table by `unique_key`: matched rows are updated, new
    /// ones inserted, in one commit.
    async fn merge(
        &self,
        req: &MaterializeRequest,
        add_columns: bool,
    ) -> Result<MaterializeOutcome> {
        let df = self.plan(&req.sql).await?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let update_cols: Vec<String> = columns
            .iter()
            .filter(|c| req.merge_update_columns.is_empty() || req.merge_update_columns.contains(c))
            .filter(|c| !req.merge_exclude_columns.contains(c))
            .cloned()
            .collect();
        self.upsert(
            &WriteTarget::of(req),
            df,
            key_predicate(req),
            add_columns,
            (&update_cols, &columns),
        )
        .await
    }

    /// MERGE `source` (aliased [`SOURCE`]) into `target`'s table ([`DEST`]) on `predicate`:
    /// a matched row takes the source's `columns.0`, an unmatched source row is inserted with
    /// `columns.1`; one commit, reported as `MERGE n`.
    pub(super) async fn upsert(
        &self,
        target: &WriteTarget<'_>,
        source: DataFrame,
        predicate: String,
        add_columns: bool,
        columns: (&[String], &[String]),
    ) -> Result<MaterializeOutcome> {
        let (update_cols, insert_cols) = columns;
        let (version, metrics) = self
            .merge_into(
                target,
                source,
                (SOURCE, DEST),
                predicate,
                add_columns,
                |b| {
                    b.when_matched_update(|mut u| {
                        for c in update_cols {
                            u = u.update(q(c), format!("{SOURCE}.{}", q(c)));
                        }
                        u
                    })?
                    .when_not_matched_insert(|i| insert_columns(i, insert_cols))
                },
            )
            .await?;
        let rows = (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64;
        Ok(MaterializeOutcome {
            rows_affected: Some(rows),
            version,
            message: format!("MERGE {rows}"),
            observed: Vec::new(),
            quarantined: 0,
        })
    }

    /// `delete+insert`: delete every row whose key the query returns, then insert all the
    /// query's rows, in one commit. Written as one MERGE over the query's rows plus one
    /// "delete" row per distinct key: delete rows match and delete, the others insert.
    async fn delete_insert(
        &self,
        req: &MaterializeRequest,
        add_columns: bool,
    ) -> Result<MaterializeOutcome> {
        let schema = self.describe(&req.sql).await?;
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        // The rows to insert and the keys to delete come from one evaluation of the query.
        let staged = self.stage_sql(&req.sql).await?;
        let keys: Vec<String> = req.unique_key.iter().map(|k| q(k)).collect();
        let deletes: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                if req.unique_key.contains(f.name()) {
                    q(f.name())
                } else {
                    format!(
                        "cast(null as {}) as {}",
                        cast_type(f.data_type()),
                        q(f.name())
                    )
                }
            })
            .collect();
        let sql = format!(
            "select incoming.*, false as __strata_delete from {sql} as incoming\n\
             union all\n\
             select {deletes}, true as __strata_delete from (select distinct {keys} from {sql} as incoming) as incoming",
            sql = staged.sql_name(),
            deletes = deletes.join(", "),
            keys = keys.join(", "),
        );
        let df = self.plan(&sql).await?;
        let predicate = format!("{} and {SOURCE}.__strata_delete", key_predicate(req));
        let (version, metrics) = self
            .merge_into(
                &WriteTarget::of(req),
                df,
                (SOURCE, DEST),
                predicate,
                add_columns,
                |b| {
                    b.when_matched_delete(|d| d)?.when_not_matched_insert(|i| {
                        let i = i.predicate(format!("not {SOURCE}.__strata_delete"));
                        insert_columns(i, &columns)
                    })
                },
            )
            .await?;
        let (deleted, inserted) = (
            metrics.num_target_rows_deleted as u64,
            metrics.num_target_rows_inserted as u64,
        );
        Ok(MaterializeOutcome {
            rows_affected: Some(inserted),
            version,
            message: format!("DELETE {deleted} INSERT {inserted}"),
            observed: Vec::new(),
            quarantined: 0,
        })
    }

    /// One microbatch: replace the rows of the batch's time range with the query's, in one
    /// commit. A batch with no rows, over a period the table has no rows in, writes nothing (a
    /// first build from a `begin` far in the past would otherwise commit once per empty day);
    /// the table itself is created by the first batch, empty or not.
    async fn replace_batch(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        let Some(batch) = &req.batch else {
            return Err(Error::Internal(
                "a microbatch write came without its batch".into(),
            ));
        };
        let df = self.plan(&req.sql).await?;
        // The batch's rows, evaluated once: counted here, written below.
        let staged = self.stage(df.logical_plan().clone()).await?;
        if staged.rows == 0 {
            let location = self
                .shared
                .lake
                .table(&req.relation.schema, &req.relation.identifier)?;
            // A table that does not exist yet is created, empty, so later runs find it.
            let must_write = !self.shared.lake.table_exists(&location).await?
                || !self
                    .plan(&format!(
                        "select 1 from {} where {} limit 1",
                        req.relation,
                        batch.predicate("")
                    ))
                    .await?
                    .collect()
                    .await?
                    .iter()
                    .all(|b| b.num_rows() == 0);
            if !must_write {
                // Nothing to add and nothing to remove: no commit.
                return Ok(MaterializeOutcome {
                    rows_affected: Some(0),
                    version: None,
                    message: "no rows (nothing to write)".into(),
                    observed: Vec::new(),
                    quarantined: 0,
                });
            }
        }
        let rows = staged.frame().await?;
        self.write_replacing(
            &WriteTarget::of(req),
            rows.logical_plan().clone(),
            batch.predicate(""),
        )
        .await
        .map_err(|e| {
            let text = e.to_string();
            match text.find("rows failed validation check") {
                Some(_) => Error::user(format!(
                    "the batch from {} to {} returned rows whose `{}` is outside it; nothing was written for this batch\n{}",
                    batch.start, batch.end, batch.event_time,
                    text.split_once("Preview of invalid data:").map(|(_, p)| p.trim()).unwrap_or_default()
                ))
                .with_hint("a microbatch model must return only rows of its batch: derive `event_time` from inputs that declare an event_time, or filter on model.batch.event_time_start/end"),
                None => e,
            }
        })
    }

    /// Run a MERGE of `source` into `target`'s table in one commit, guarded so a failed or
    /// killed merge leaves no files behind; `aliases` name the source and the table in
    /// predicates, `clauses` adds the WHEN clauses. Returns the new version and what the
    /// merge did. With no source rows nothing is written (no version): a merge cannot prune
    /// the table's files without them, so it would read the whole table to change nothing.
    pub(super) async fn merge_into(
        &self,
        target: &WriteTarget<'_>,
        source: DataFrame,
        aliases: (&str, &str),
        predicate: String,
        add_columns: bool,
        clauses: impl FnOnce(MergeBuilder) -> deltalake::DeltaResult<MergeBuilder>,
    ) -> Result<(Option<u64>, MergeMetrics)> {
        // The new rows are read more than once by the merge (to prune the table's files, then
        // to join): evaluate them once.
        self.ready_to_write().await?;
        let staged = self.stage(source.logical_plan().clone()).await?;
        if staged.rows == 0 {
            return Ok((None, MergeMetrics::default()));
        }
        let source = staged.frame().await?;
        let state = Arc::new(self.ctx.state());
        let changed = self
            .change_table(target, |table, commit| {
                let builder = table
                    .merge(source, predicate)
                    .with_source_alias(aliases.0)
                    .with_target_alias(aliases.1)
                    .with_merge_schema(add_columns)
                    .with_session_state(state)
                    .with_commit_properties(commit);
                async move { clauses(builder)?.await }
            })
            .await?;
        let metrics = match changed.done {
            Some(m) => m,
            // Committed, but the merge's own report is lost: read it from the commit.
            None => committed_merge_metrics(&changed.table).await,
        };
        Ok((changed.table.version(), metrics))
    }
}

impl MaterializeRequest {
    /// The incremental strategy: the configured one, else `merge` with a `unique_key` and
    /// `append` without.
    pub fn strategy(&self) -> IncrementalStrategy {
        match self.incremental_strategy {
            Some(s) => s,
            None if self.unique_key.is_empty() => IncrementalStrategy::Append,
            None => IncrementalStrategy::Merge,
        }
    }
}

impl crate::Batch {
    /// SQL selecting the batch's rows by the event-time column, qualified by `prefix`.
    pub fn predicate(&self, prefix: &str) -> String {
        format!(
            "{prefix}{col} >= cast({start} as timestamp(6)) and {prefix}{col} < cast({end} as timestamp(6))",
            col = q(&self.event_time),
            start = quote_literal(&self.start),
            end = quote_literal(&self.end),
        )
    }
}

/// What the latest commit (a merge) did, from its commit info.
async fn committed_merge_metrics(table: &deltalake::DeltaTable) -> MergeMetrics {
    let mut metrics = MergeMetrics::default();
    let mut history = table.history(Some(1));
    if let Ok(Some(info)) = futures::TryStreamExt::try_next(&mut history).await
        && let Some(m) = info.info.get("operationMetrics")
    {
        let get = |k: &str| m.get(k).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        metrics.num_target_rows_inserted = get("num_target_rows_inserted");
        metrics.num_target_rows_updated = get("num_target_rows_updated");
        metrics.num_target_rows_deleted = get("num_target_rows_deleted");
    }
    metrics
}

/// An insert clause setting each of `columns` from the new row.
pub(super) fn insert_columns(mut insert: InsertBuilder, columns: &[String]) -> InsertBuilder {
    for c in columns {
        insert = insert.set(q(c), format!("{SOURCE}.{}", q(c)));
    }
    insert
}

/// The merge condition: keys equal, and the model's `incremental_predicates`.
fn key_predicate(req: &MaterializeRequest) -> String {
    req.unique_key
        .iter()
        .map(|k| format!("{DEST}.{} = {SOURCE}.{}", q(k), q(k)))
        .chain(req.incremental_predicates.iter().map(|p| format!("({p})")))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn check_keys(req: &MaterializeRequest, columns: &[String]) -> Result<()> {
    for k in &req.unique_key {
        if !columns.contains(k) {
            return Err(Error::user(format!(
                "unique_key `{k}` is not a column of the model's query (columns: {}){}; nothing was written",
                columns.join(", "),
                strata_common::did_you_mean(k, columns.iter().map(String::as_str)),
            ))
            .with_hint("unique_key names the columns (one, or a list) that identify a row: fix its spelling in the model's config, or select that column"));
        }
    }
    Ok(())
}
