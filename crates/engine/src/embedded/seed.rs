//! Seeds: a CSV file read with every row used for type inference (integers, decimals,
//! booleans, dates, timestamps, text; empty fields are NULL), `column_types` applied as SQL
//! casts, streamed into a Delta table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use strata_common::{did_you_mean, quote_ident};

use crate::SeedRequest;
use crate::error::{Error, Result};

fn options(req: &SeedRequest) -> CsvReadOptions<'_> {
    CsvReadOptions::new()
        .has_header(true)
        .delimiter(req.delimiter)
        .null_regex(Some("^$".to_string()))
        .newlines_in_values(true)
}

/// The plan that reads a seed's file with the types it should have.
pub async fn plan(ctx: &SessionContext, req: &SeedRequest) -> Result<LogicalPlan> {
    let path = req.path.to_string_lossy().into_owned();
    let read_err = |e: datafusion::error::DataFusionError| {
        Error::Sql(format!(
            "{}: {}",
            req.display_path,
            crate::error::describe_datafusion_error(&e)
        ))
    };
    // Infer from every row, as dbt does: a column is an integer only if all its values are.
    let inferred = ctx
        .read_csv(&path, options(req).schema_infer_max_records(usize::MAX))
        .await
        .map_err(read_err)?;
    let columns: Vec<String> = inferred
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for (col, _) in &req.column_types {
        if !columns.contains(col) {
            return Err(Error::user(format!(
                "{}: column_types names column `{col}`, which the file does not have{}",
                req.display_path,
                did_you_mean(col, columns.iter().map(String::as_str))
            ))
            .with_hint(format!("the columns are: {}", columns.join(", "))));
        }
    }
    // Overridden columns are read as text and cast, so `01234` stays `01234` as a varchar.
    let overridden = |name: &str| {
        req.column_types
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t)
    };
    let fields: Vec<Field> = inferred
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let data_type = match (overridden(f.name()), f.data_type()) {
                (Some(_), _) => DataType::Utf8,
                // A column with no values at all is text.
                (None, DataType::Null) => DataType::Utf8,
                (None, t) => t.clone(),
            };
            Field::new(f.name(), data_type, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let df = ctx
        .read_csv(&path, options(req).schema(&schema))
        .await
        .map_err(read_err)?;
    let exprs: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let q = quote_ident(f.name());
            match overridden(f.name()) {
                Some(t) => format!("CAST({q} AS {t}) AS {q}"),
                None => q,
            }
        })
        .collect();
    let refs: Vec<&str> = exprs.iter().map(String::as_str).collect();
    let df = df.select_exprs(&refs).map_err(|e| {
        Error::user(format!(
            "{}: a column_types entry is not a valid SQL type: {}",
            req.display_path,
            crate::error::describe_datafusion_error(&e)
        ))
        .with_hint("use types such as integer, bigint, double, decimal(10, 2), varchar, date, timestamp, boolean")
    })?;
    Ok(df.logical_plan().clone())
}
