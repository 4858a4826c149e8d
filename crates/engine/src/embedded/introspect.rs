//! Queries from templates while compiling: `run_query`, `statement` blocks and
//! `adapter.get_columns_in_relation` run on the warehouse. Templates render synchronously, so
//! each query blocks the rendering thread until its result is collected.

use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use strata_common::Relation;
use strata_common::{Introspector, QueryResult};

use super::EmbeddedWarehouse;
use crate::Warehouse;
use crate::types::sql_type;

/// Runs template queries on an embedded warehouse.
#[derive(Debug)]
pub struct SqlIntrospector {
    warehouse: EmbeddedWarehouse,
}

impl SqlIntrospector {
    pub fn new(warehouse: EmbeddedWarehouse) -> Self {
        Self { warehouse }
    }

    fn block<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "queries from templates need the async runtime".to_string())?;
        Ok(tokio::task::block_in_place(|| handle.block_on(fut)))
    }
}

/// Rows of `batches` as JSON values in column order, as templates see a query's rows.
pub fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Vec<serde_json::Value>>, String> {
    let mut out = Vec::new();
    for b in batches {
        let b = &widen_floats(b)?;
        let mut buf = Vec::new();
        {
            let mut w = datafusion::arrow::json::writer::ArrayWriter::new(&mut buf);
            w.write(b).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())?;
        }
        if buf.is_empty() {
            continue;
        }
        let objects: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
        for o in objects {
            out.push(
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| o.get(f.name()).cloned().unwrap_or(serde_json::Value::Null))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// `b` with single-precision floats as doubles holding the same value: a template sees a
/// REAL's exact value (3.3f32 is 3.299999952316284), as Python's float of it is, so the value
/// written back into SQL compares equal to the column.
fn widen_floats(b: &RecordBatch) -> Result<RecordBatch, String> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let narrow = |t: &DataType| matches!(t, DataType::Float16 | DataType::Float32);
    if !b.schema().fields().iter().any(|f| narrow(f.data_type())) {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if narrow(f.data_type()) {
            columns.push(
                datafusion::arrow::compute::cast(c, &DataType::Float64)
                    .map_err(|e| e.to_string())?,
            );
            fields.push(Field::new(f.name(), DataType::Float64, f.is_nullable()));
        } else {
            columns.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
}

impl Introspector for SqlIntrospector {
    fn run_query(&self, sql: &str) -> Result<QueryResult, String> {
        self.block(async {
            let stream = self
                .warehouse
                .query(sql, None)
                .await
                .map_err(|e| e.to_string())?;
            let schema = stream.schema();
            let batches: Vec<RecordBatch> = stream
                .try_collect()
                .await
                .map_err(|e| crate::error::describe_datafusion_error(&e))?;
            Ok(QueryResult {
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), sql_type(f.data_type())))
                    .collect(),
                rows: rows_of(&batches)?,
            })
        })?
    }

    fn columns(&self, relation: &Relation) -> Result<Option<Vec<(String, String)>>, String> {
        self.block(async {
            match self
                .warehouse
                .describe(&format!("select * from {relation}"))
                .await
            {
                Ok(schema) => Ok(Some(
                    schema
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), sql_type(f.data_type())))
                        .collect(),
                )),
                // A relation that does not exist is `none` to templates, as in dbt.
                Err(_) => Ok(None),
            }
        })?
    }
}
