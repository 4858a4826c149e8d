//! Snapshots (SCD type 2) in PostgreSQL: the query's rows are staged in a temporary table,
//! the changes computed as on the embedded warehouse ([`strata_engine::snapshot_sql`]), then
//! current versions are closed and new versions inserted, in one transaction.

use strata_engine::snapshot_sql::{ACTION, Parts, changes_sql, validate};
use strata_engine::{Error, MaterializeOutcome, MaterializeRequest, Result};

use super::{PostgresWarehouse, divide};
use crate::ident;

const STAGED: &str = "strata_snapshot_source";
const CHANGES: &str = "strata_snapshot_changes";

impl PostgresWarehouse {
    pub(super) async fn build_snapshot(
        &self,
        req: &MaterializeRequest,
    ) -> Result<MaterializeOutcome> {
        let Some(spec) = &req.snapshot else {
            return Err(Error::Internal("a snapshot came without its config".into()));
        };
        let node = &req.unique_id;
        let fail =
            |what: &str, e: tokio_postgres::Error| self.error(&format!("{node}: {what}"), &e);
        self.ensure_schema(&req.relation.schema).await?;
        let mut conn = self.conn().await?;
        let sql = divide::rewrite(req.sql.trim().trim_end_matches(';'));
        let tx = conn.transaction().await.map_err(|e| self.error(node, &e))?;
        tx.batch_execute(&format!(
            "create temp table {STAGED} on commit drop as (\n{sql}\n)"
        ))
        .await
        .map_err(|e| fail("the snapshot's SQL failed", e))?;
        let source = self.temp_columns(&tx, STAGED).await?;
        validate(req, spec, &source)?;
        let parts = Parts::new(spec, "timestamp");
        let table = self.name(&req.relation);
        let (inserted, closed) = match self.kind_of(tx.client(), &req.relation).await? {
            None => {
                let upd = parts.updated("s");
                let rows = tx
                    .execute(
                        &format!(
                            "create table {table} as (select s.*, {scd} as dbt_scd_id, {upd} as dbt_updated_at, {upd} as dbt_valid_from, {vtc} as dbt_valid_to{deleted} from {STAGED} as s)",
                            scd = parts.scd_id("s", &upd),
                            vtc = parts.valid_to_current,
                            deleted = if parts.new_record() {
                                ", 'False'::text as dbt_is_deleted"
                            } else {
                                ""
                            },
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| fail("cannot create the snapshot table", e))?;
                (rows, 0)
            }
            Some(_) => {
                let target = self
                    .columns_of(tx.client(), &req.relation.schema, &req.relation.identifier)
                    .await?;
                // Columns new in the query (and dbt_is_deleted, for `new_record`) are added.
                let mut added: Vec<(String, String)> = source
                    .iter()
                    .filter(|(n, _)| !target.iter().any(|(t, _)| t == n))
                    .cloned()
                    .collect();
                if parts.new_record() && !target.iter().any(|(t, _)| t == "dbt_is_deleted") {
                    added.push(("dbt_is_deleted".into(), "text".into()));
                }
                for (n, t) in &added {
                    tx.batch_execute(&format!("alter table {table} add column {} {t}", ident(n)))
                        .await
                        .map_err(|e| fail("cannot add a column", e))?;
                }
                let target = self
                    .columns_of(tx.client(), &req.relation.schema, &req.relation.identifier)
                    .await?;
                let changes = changes_sql(req, &parts, &source, &target, STAGED);
                tx.batch_execute(&format!(
                    "create temp table {CHANGES} on commit drop as (\n{changes}\n)"
                ))
                .await
                .map_err(|e| fail("cannot find the changed records", e))?;
                let closed = tx
                    .execute(
                        &format!(
                            "update {table} as d set dbt_valid_to = c.dbt_valid_to from {CHANGES} as c \
                             where c.{ACTION} = 'close' and c.dbt_scd_id = d.dbt_scd_id and {}",
                            parts.is_current("d")
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| fail("cannot close changed versions", e))?;
                let cols = target
                    .iter()
                    .map(|(n, _)| ident(n))
                    .collect::<Vec<_>>()
                    .join(", ");
                let inserted = tx
                    .execute(
                        &format!(
                            "insert into {table} ({cols}) select {cols} from {CHANGES} where {ACTION} = 'insert'"
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| fail("cannot insert new versions", e))?;
                (inserted, closed)
            }
        };
        tx.commit()
            .await
            .map_err(|e| fail("cannot commit the snapshot", e))?;
        Ok(MaterializeOutcome {
            rows_affected: Some(inserted + closed),
            version: None,
            message: format!("INSERT {inserted}, UPDATE {closed}"),
            quarantined: 0,
            observed: Vec::new(),
        })
    }
}
