//! Seeds in PostgreSQL: a table with the types dbt-postgres gives a CSV file's columns
//! (`integer`, `float8`, `boolean`, `date`, `timestamp without time zone`, `text`, or the
//! seed's `column_types`), filled from the file with `COPY … FROM STDIN` and swapped in
//! like a table model, in one transaction.

use datafusion::arrow::datatypes::DataType;
use strata_common::Relation;
use strata_engine::{MaterializeOutcome, Result, SeedRequest};

use super::{PostgresWarehouse, suffixed};
use crate::{ident, literal};

/// The PostgreSQL type of a seed column inferred as `t`, as dbt-postgres names it.
fn pg_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "boolean",
        t if t.is_integer() => "integer",
        t if t.is_floating() => "float8",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        _ => "text",
    }
}

impl PostgresWarehouse {
    pub(super) async fn seed(&self, req: &SeedRequest) -> Result<MaterializeOutcome> {
        let node = &req.unique_id;
        let fail = |what: &str, e: tokio_postgres::Error| {
            self.error(&format!("{} ({node}): {what}", req.display_path), &e)
        };
        let schema = strata_engine::embedded::seed_columns(req).await?;
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                let ty = req
                    .column_types
                    .iter()
                    .find(|(c, _)| c == f.name())
                    .map(|(_, t)| t.clone())
                    .unwrap_or_else(|| pg_type(f.data_type()).to_string());
                format!("{} {ty}", ident(f.name()))
            })
            .collect();
        let relation = &req.relation;
        let tmp = Relation::new(
            &relation.database,
            &relation.schema,
            suffixed(&relation.identifier, "__dbt_tmp"),
        );
        self.ensure_schema(&relation.schema).await?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(|e| self.error(node, &e))?;
        self.drop_if_exists(&tx, &tmp)
            .await
            .map_err(|e| fail("cannot prepare the load", e))?;
        tx.batch_execute(&format!(
            "create table {} ({})",
            self.name(&tmp),
            columns.join(", ")
        ))
        .await
        .map_err(|e| fail("cannot create the table (check its column_types)", e))?;
        let names = schema
            .fields()
            .iter()
            .map(|f| ident(f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let sink = tx
            .copy_in(&format!(
                "copy {} ({names}) from stdin (format csv, header true, delimiter {})",
                self.name(&tmp),
                literal(&(req.delimiter as char).to_string())
            ))
            .await
            .map_err(|e| fail("cannot load the file", e))?;
        let rows = crate::load::send_file(sink, &req.path, &req.display_path).await?;
        self.swap_in(&tx, node, relation, &tmp).await?;
        tx.commit()
            .await
            .map_err(|e| fail("cannot commit the seed", e))?;
        Ok(MaterializeOutcome {
            rows_affected: Some(rows),
            version: None,
            message: format!("INSERT {rows}"),
            quarantined: 0,
            observed: Vec::new(),
        })
    }
}
