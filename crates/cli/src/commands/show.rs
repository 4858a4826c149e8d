//! `strata show`: preview a model's query or an inline query.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use strata_project::compile::Compiler;

use crate::GlobalArgs;
use crate::context::{load_project, open_target};

/// How `show` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowOutput {
    /// An aligned table for reading.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Options of `strata show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model whose query to run, or a test whose failing rows to show.
    #[arg(
        long,
        short = 's',
        conflicts_with = "inline",
        required_unless_present = "inline"
    )]
    pub select: Option<String>,
    /// A query to run instead; it may use {{ ref('...') }} and {{ source('...', '...') }}.
    #[arg(long)]
    pub inline: Option<String>,
    /// How many rows to print (-1 for all).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub limit: i64,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ShowOutput::Table)]
    pub output: ShowOutput,
}

/// Run the command.
pub async fn show(global: &GlobalArgs, args: &ShowArgs) -> Result<ExitCode> {
    let project = std::sync::Arc::new(load_project(global)?);
    let (warehouse, _meta) = open_target(&project)?;
    let mut compiler = Compiler::new(project.clone()).with_introspector(warehouse.introspector());
    let (label, sql) = match (&args.select, &args.inline) {
        (Some(name), _) => {
            if let Some(model) = project.model_by_name(name) {
                (name.clone(), compiler.compile(&model.unique_id)?.sql)
            } else if let Some(test) = project.tests.values().find(|t| &t.name == name) {
                // A test shows the rows it finds (its failures).
                (name.clone(), compiler.compile_test(&test.unique_id)?)
            } else {
                let names: Vec<&str> = project
                    .models
                    .values()
                    .map(|m| m.name.as_str())
                    .chain(project.tests.values().map(|t| t.name.as_str()))
                    .collect();
                bail!(
                    "no model or test named `{name}`{}",
                    strata_common::did_you_mean(name, names.iter().copied())
                );
            }
        }
        (None, Some(inline)) => ("inline query".to_string(), compiler.compile_inline(inline)?),
        (None, None) => bail!("give --select MODEL or --inline \"SQL\""),
    };
    let limit = usize::try_from(args.limit).ok();
    let stream = warehouse
        .query(&sql, limit)
        .await
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    let schema = stream.schema();
    let mut batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| {
        anyhow::anyhow!(
            "{label}: {}",
            strata_engine::error::describe_datafusion_error(&e)
        )
    })?;
    // No rows still shows the columns (table and CSV headers, JSON `columns`).
    if batches.iter().all(|b| b.num_rows() == 0) {
        batches = vec![RecordBatch::new_empty(schema.clone())];
    }
    let node = args.select.as_deref().unwrap_or("inline_query");
    print_batches(&batches, &schema, args.output, node)?;
    Ok(ExitCode::SUCCESS)
}

/// `batch` with its nested columns (lists, structs, maps), which CSV has no form for, written
/// as text the way the table output shows them.
fn flat_for_csv(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringBuilder};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let nested = |t: &DataType| t.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let options = FormatOptions::default();
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let mut text = StringBuilder::new();
        for i in 0..column.len() {
            match column.is_null(i) {
                true => text.append_null(),
                false => text.append_value(formatter.value(i).to_string()),
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(std::sync::Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
    )?)
}

pub(crate) fn print_batches(
    batches: &[RecordBatch],
    schema: &datafusion::arrow::datatypes::SchemaRef,
    output: ShowOutput,
    node: &str,
) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match output {
        ShowOutput::Table => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}")?;
        }
        ShowOutput::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                w.write(&flat_for_csv(b)?)?;
            }
        }
        ShowOutput::Json => {
            // dbt's shape (`node`, `show`), with the columns and their types.
            let columns: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name(),
                        "type": strata_engine::types::sql_type(f.data_type()),
                    })
                })
                .collect();
            writeln!(
                out,
                "{{\"node\":{},\"columns\":{},\"show\":{}}}",
                serde_json::to_string(node)?,
                serde_json::to_string(&columns)?,
                json_rows(batches)?
            )?;
        }
    }
    Ok(())
}

/// Rows as a JSON array of objects, numbers exactly as Arrow writes them (decimals keep every
/// digit). JSON has no NaN or infinity: those float values are written as the strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"` (as JavaScript and most JSON tools spell them),
/// never dropped, so nothing is lost.
fn json_rows(batches: &[RecordBatch]) -> Result<String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
    let mut rows: Vec<String> = Vec::new();
    for b in batches {
        // Non-finite floats, by row: the writer writes them as null.
        let mut fixes: Vec<Vec<(String, &str)>> = vec![Vec::new(); b.num_rows()];
        for (field, column) in b.schema().fields().iter().zip(b.columns()) {
            for (i, row) in fixes.iter_mut().enumerate() {
                let v = match field.data_type() {
                    _ if column.is_null(i) => continue,
                    DataType::Float64 => column.as_primitive::<Float64Type>().value(i),
                    DataType::Float32 => f64::from(column.as_primitive::<Float32Type>().value(i)),
                    _ => break,
                };
                if v.is_finite() {
                    continue;
                }
                let text = match v {
                    v if v.is_nan() => "NaN",
                    v if v > 0.0 => "Infinity",
                    _ => "-Infinity",
                };
                row.push((serde_json::to_string(field.name())?, text));
            }
        }
        let mut buf = Vec::new();
        {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(b)?;
            w.finish()?;
        }
        let text = String::from_utf8(buf)?;
        for (line, row_fixes) in text.lines().zip(fixes) {
            let mut row = line.to_string();
            for (key, value) in row_fixes {
                // A quote inside a string value is escaped, so `"key":null` is the field.
                row = row.replacen(&format!("{key}:null"), &format!("{key}:\"{value}\""), 1);
            }
            rows.push(row);
        }
    }
    Ok(format!("[{}]", rows.join(",")))
}

/// The rows of an inline query (with `ref()` and `source()`), as `strata show --inline` runs
/// it, for commands that read a few numbers back.
pub async fn inline_rows(global: &GlobalArgs, sql: &str) -> Result<Vec<RecordBatch>> {
    let project = std::sync::Arc::new(load_project(global)?);
    let (warehouse, _meta) = open_target(&project)?;
    let mut compiler = Compiler::new(project.clone()).with_introspector(warehouse.introspector());
    let sql = compiler.compile_inline(sql)?;
    let stream = warehouse.query(&sql, None).await?;
    stream
        .try_collect()
        .await
        .map_err(|e| anyhow::anyhow!(strata_engine::error::describe_datafusion_error(&e)))
}
