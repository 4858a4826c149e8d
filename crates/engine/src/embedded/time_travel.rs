//! Reading an older version of a table in SQL: `select * from table_at_version('gold.orders', 3)`.
//! The name is `schema.table` (or a table of the default schema); the version is one that
//! `strata history` lists.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use strata_meta::RelationKind;

use super::catalog::CatalogShared;

/// The `table_at_version(name, version)` table function.
#[derive(Debug)]
pub(crate) struct TableAtVersion {
    pub shared: Arc<CatalogShared>,
    pub default_schema: String,
}

fn literal(e: Option<&Expr>) -> Option<&ScalarValue> {
    match e? {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn usage(msg: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "table_at_version: {msg}; write table_at_version('schema.table', 3)"
    ))
}

impl TableFunctionImpl for TableAtVersion {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let name = match literal(exprs.first()) {
            Some(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
            ) => s.clone(),
            _ => return Err(usage("the first argument must be a table name in quotes")),
        };
        let version = match literal(exprs.get(1)) {
            Some(ScalarValue::Int64(Some(v))) if *v >= 0 => *v as u64,
            Some(ScalarValue::Int32(Some(v))) if *v >= 0 => *v as u64,
            Some(ScalarValue::UInt64(Some(v))) => *v,
            _ => return Err(usage("the second argument must be a version number")),
        };
        let (schema, table) = match name.split_once('.') {
            Some((s, t)) => (
                s.trim_matches('"').to_string(),
                t.trim_matches('"').to_string(),
            ),
            None => (
                self.default_schema.clone(),
                name.trim_matches('"').to_string(),
            ),
        };
        let record = self
            .shared
            .meta
            .relation(&self.shared.database, &schema, &table)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if record
            .as_ref()
            .is_some_and(|r| r.kind == RelationKind::View)
        {
            return Err(usage(&format!(
                "{schema}.{table} is a view; only tables have versions"
            )));
        }
        let url = self
            .shared
            .lake
            .table(&schema, &table)
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .url;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        let loaded = tokio::task::block_in_place(|| {
            handle.block_on(async {
                deltalake::DeltaTableBuilder::from_url(url)?
                    .with_version(version)
                    .load()
                    .await
            })
        })
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "table_at_version('{schema}.{table}', {version}): {e}; `strata history` lists the versions"
            ))
        })?;
        tokio::task::block_in_place(|| {
            handle.block_on(self.shared.provider_of(&schema, &table, &loaded))
        })
    }
}
