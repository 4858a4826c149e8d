//! SQL behaviour of the embedded warehouse, as sqllogictest files under `tests/slt/`.
//!
//! Each file runs against its own empty lake and metadata store. Besides queries, two
//! statements build relations the way models do: `CREATE TABLE name AS <query>` writes a
//! Delta table and `CREATE VIEW name AS <query>` records a view, both in the `main` schema.
//!
//! Regenerate expected output with `STRATA_SLT_COMPLETE=1 cargo test -p strata-engine --test sqllogic`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use strata_common::Relation;
use strata_engine::{
    EmbeddedWarehouse, Materialization, MaterializeRequest, Warehouse, WarehouseOptions,
};
use strata_meta::MetaStore;

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

struct StrataDb {
    warehouse: EmbeddedWarehouse,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else if matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for row in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| {
                        let s = f.value(row).to_string();
                        if s.is_empty() {
                            "(empty)".to_string()
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

#[async_trait]
impl AsyncDB for StrataDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let trimmed = sql.trim().trim_end_matches(';');
        let lower = trimmed.to_lowercase();
        for (prefix, materialization) in [
            ("create table ", Materialization::Table),
            ("create view ", Materialization::View),
        ] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                let (name, _) = rest
                    .split_once(" as ")
                    .ok_or_else(|| SltError("expected CREATE TABLE|VIEW name AS query".into()))?;
                let query_start = prefix.len() + name.len() + 4;
                let request = MaterializeRequest::new(
                    format!("model.slt.{}", name.trim()),
                    Relation::new("strata", "main", name.trim()),
                    materialization,
                    &trimmed[query_start..],
                    "slt",
                );
                self.warehouse
                    .materialize(&request)
                    .await
                    .map_err(|e| SltError(e.to_string()))?;
                return Ok(DBOutput::StatementComplete(0));
            }
        }
        let stream = self
            .warehouse
            .query(trimmed, None)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let schema = stream.schema();
        let batches: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| SltError(strata_engine::error::describe_datafusion_error(&e)))?;
        Ok(DBOutput::Rows {
            types: schema
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect(),
            rows: rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }
}

fn slt_files() -> Vec<PathBuf> {
    // The folder as cargo runs the test (a build cache shared between clones may hold a binary
    // compiled in another one).
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let dir = crate_dir.join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let complete = std::env::var_os("STRATA_SLT_COMPLETE").is_some();
    // Regenerating expected output checks nothing: never in CI.
    assert!(
        !(complete && std::env::var_os("CI").is_some()),
        "STRATA_SLT_COMPLETE rewrites the expected output instead of checking it; it is refused when CI is set"
    );
    let mut failures = Vec::new();
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    for file in files {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = dir.path().join("lake");
        let meta = Arc::new(MetaStore::open(&dir.path().join("meta.sqlite")).expect("meta"));
        let make = move || {
            let lake = lake.clone();
            let meta = meta.clone();
            async move {
                let warehouse = EmbeddedWarehouse::open(
                    WarehouseOptions {
                        database: "strata".into(),
                        default_schema: "main".into(),
                        lake: lake.to_string_lossy().into_owned(),
                        sources: Vec::new(),
                        target_partitions: Some(2),
                        distributor: None,
                    },
                    meta,
                )
                .map_err(|e| SltError(e.to_string()))?;
                Ok::<_, SltError>(StrataDb { warehouse })
            }
        };
        let mut runner = sqllogictest::Runner::new(make);
        if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .expect("update test file");
        } else if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "sqllogictest failures:\n{}",
        failures.join("\n\n")
    );
}
