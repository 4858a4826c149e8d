//! Snapshots (slowly changing dimensions, type 2): a table keeping every version of each
//! record of a query, with the columns dbt writes: `dbt_scd_id`, `dbt_updated_at`,
//! `dbt_valid_from`, `dbt_valid_to` (and `dbt_is_deleted` with `hard_deletes: new_record`).
//!
//! The first run writes the query's rows as current versions. Each later run is one MERGE
//! commit: current versions whose record changed (or, by `hard_deletes`, vanished) are closed
//! by setting `dbt_valid_to`, and new versions are inserted.

use datafusion::arrow::datatypes::Schema;

use super::EmbeddedWarehouse;
use super::incremental::{DEST, SOURCE, insert_columns};
use crate::error::{Error, Result};
use crate::snapshot_sql::{Parts, changes_sql, validate};
use crate::types::cast_type;
use crate::{MaterializeOutcome, MaterializeRequest, Warehouse};

/// A schema's columns as (name, the type to cast to).
fn typed(schema: &Schema) -> Vec<(String, String)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), cast_type(f.data_type())))
        .collect()
}

/// The columns a snapshot adds to the query's.
impl EmbeddedWarehouse {
    /// Build or update a snapshot.
    pub(super) async fn build_snapshot(
        &self,
        req: &MaterializeRequest,
    ) -> Result<MaterializeOutcome> {
        let Some(spec) = &req.snapshot else {
            return Err(Error::Internal("a snapshot came without its config".into()));
        };
        let source = self.describe(&req.sql).await?;
        let source = typed(&source);
        validate(req, spec, &source)?;
        let parts = Parts::new(spec, "timestamp(6)");
        let (schema, name) = (&req.relation.schema, &req.relation.identifier);
        if !self
            .shared
            .lake
            .table_exists(&self.shared.lake.table(schema, name)?)
            .await?
        {
            let upd = parts.updated("s");
            let mut first = req.clone();
            first.sql = format!(
                "select s.*, {scd} as dbt_scd_id, {upd} as dbt_updated_at, {upd} as dbt_valid_from, {vtc} as dbt_valid_to{deleted}\nfrom (\n{sql}\n) as s",
                scd = parts.scd_id("s", &upd),
                vtc = parts.valid_to_current,
                deleted = if parts.new_record() {
                    ", 'False' as dbt_is_deleted"
                } else {
                    ""
                },
                sql = req.sql,
            );
            return self.build_table(&first).await;
        }
        let target = self
            .describe(&format!("select * from {}", req.relation))
            .await?;
        // What to close and what to insert come from one evaluation of the query.
        let staged = self.stage_sql(&req.sql).await?;
        let sql = changes_sql(req, &parts, &source, &typed(&target), &staged.sql_name());
        let df = self.plan(&sql).await?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| c != "__strata_action")
            .collect();
        let predicate = format!(
            "{DEST}.dbt_scd_id = {SOURCE}.dbt_scd_id and {SOURCE}.__strata_action = 'close' and {}",
            parts.is_current(DEST)
        );
        let (version, metrics) = self
            .merge_into(
                &super::WriteTarget::of(req),
                df,
                (SOURCE, DEST),
                predicate,
                true,
                |b| {
                    b.when_matched_update(|u| {
                        u.update("dbt_valid_to", format!("{SOURCE}.dbt_valid_to"))
                    })?
                    .when_not_matched_insert(|i| {
                        let i = i.predicate(format!("{SOURCE}.__strata_action = 'insert'"));
                        insert_columns(i, &columns)
                    })
                },
            )
            .await?;
        let (inserted, closed) = (
            metrics.num_target_rows_inserted as u64,
            metrics.num_target_rows_updated as u64,
        );
        Ok(MaterializeOutcome {
            rows_affected: Some(inserted + closed),
            version,
            message: format!("INSERT {inserted}, UPDATE {closed}"),
            observed: Vec::new(),
            quarantined: 0,
        })
    }
}
