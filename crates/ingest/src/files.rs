//! The files connector: list the files a glob names, and read them (CSV/TSV, NDJSON, JSON
//! arrays, Parquet;
//! gzip, zstd, bzip2 or xz by extension) into one plan of rows, each with the file it came
//! from.

use std::path::Path;

use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::prelude::{CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, lit};
use strata_engine::{Error, Result};
use strata_meta::IngestedFile;

use crate::spec::{FilesSpec, Format, format_of};

/// The files `spec.path` names (under `root`, or in object storage: `s3://bucket/x/*.csv`),
/// sorted by path. A file in object storage is known by its URL, size and ETag.
pub async fn list(
    root: &Path,
    spec: &FilesSpec,
    name: &str,
    warehouse: &strata_engine::EmbeddedWarehouse,
) -> Result<Vec<IngestedFile>> {
    if spec.path.contains("://") {
        let files = warehouse
            .remote_files(&spec.path)
            .await
            .map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
        return Ok(files
            .into_iter()
            .map(|f| IngestedFile {
                path: f.url,
                size: f.size,
                modified: f.version,
            })
            .collect());
    }
    let pattern = match Path::new(&spec.path).is_absolute() {
        true => spec.path.clone(),
        false => root.join(&spec.path).to_string_lossy().into_owned(),
    };
    let paths = glob::glob(&pattern).map_err(|e| {
        Error::user(format!(
            "source `{name}`: `path: {}` is not a valid glob ({e})",
            spec.path
        ))
    })?;
    let mut out = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::user(format!("source `{name}`: {}: {e}", path.display())))?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            })
            .unwrap_or_default();
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        out.push(IngestedFile {
            path: shown,
            size: meta.len(),
            modified,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The rows of `files` (relative to `root`) as one plan: each file's columns (files may
/// differ: columns are matched by name, a column a file lacks is NULL), with
/// `_strata_source` naming the file.
pub async fn read(
    ctx: &datafusion::prelude::SessionContext,
    root: &Path,
    spec: &FilesSpec,
    files: &[IngestedFile],
    name: &str,
    table: Option<&datafusion::arrow::datatypes::Schema>,
    evolution: &mut crate::evolve::Evolution,
) -> Result<DataFrame> {
    let mut all: Option<DataFrame> = None;
    for f in files {
        let format = spec.format.or_else(|| format_of(&f.path)).ok_or_else(|| {
            Error::user(format!(
                "source `{name}`: cannot tell the format of {} from its name",
                f.path
            ))
            .with_hint("set `format:` (csv, tsv, ndjson or parquet) in its `ingest:`")
        })?;
        let remote = f.path.contains("://");
        let full = match remote {
            true => f.path.clone(),
            false => root.join(&f.path).to_string_lossy().into_owned(),
        };
        let compression = compression_of(&f.path);
        // A `.json` file (format not given) holding objects line by line is NDJSON (in
        // object storage, unless `format: json` says it holds an array).
        let format = match format {
            Format::Json
                if spec.format.is_none()
                    && (remote
                        || compression != FileCompressionType::UNCOMPRESSED
                        || !starts_with_array(&root.join(&f.path))) =>
            {
                Format::Ndjson
            }
            other => other,
        };
        let failed = |e: datafusion::error::DataFusionError| {
            Error::user(format!(
                "source `{name}`: cannot read {}: {}",
                f.path,
                strata_engine::error::describe_datafusion_error(&e)
            ))
        };
        let df = match format {
            Format::Csv => {
                let tsv = f.path.to_ascii_lowercase().contains(".tsv");
                let options = CsvReadOptions::new()
                    .has_header(spec.header)
                    .delimiter(spec.delimiter.unwrap_or(if tsv { b'\t' } else { b',' }))
                    .quote(spec.quote)
                    .file_extension("")
                    .file_compression_type(compression);
                // Under a contract that discards, into a table that exists: every column read
                // as text, so each value is judged against the table's type on its own (a
                // `2024-02-30` in a date column is left out, not a failed parse).
                let options = match table.is_some()
                    && matches!(
                        evolution.contract,
                        crate::evolve::Contract::DiscardRow | crate::evolve::Contract::DiscardValue
                    ) {
                    true => options.schema_infer_max_records(0),
                    false => options,
                };
                ctx.read_csv(full, options).await.map_err(failed)?
            }
            Format::Ndjson | Format::Json => {
                let mut options = JsonReadOptions::default()
                    .file_extension("")
                    .file_compression_type(compression);
                options.newline_delimited = format == Format::Ndjson;
                ctx.read_json(full, options).await.map_err(failed)?
            }
            Format::Parquet => {
                let options = ParquetReadOptions {
                    file_extension: "",
                    ..Default::default()
                };
                ctx.read_parquet(full, options).await.map_err(failed)?
            }
        };
        let df = match spec.flatten {
            true => crate::nested::flatten(df, name)?,
            false => df,
        };
        let df = match table {
            Some(t) => crate::evolve::fit(df, t, &f.path, name, evolution).await?,
            None => df,
        };
        let df = df
            .with_column(
                "_strata_source",
                lit(ScalarValue::Utf8(Some(f.path.clone()))),
            )
            .map_err(failed)?;
        all = Some(match all {
            None => df,
            Some(before) => before.union_by_name(df).map_err(|e| {
                Error::user(format!(
                    "source `{name}`: {} does not fit the files before it: {}",
                    f.path,
                    strata_engine::error::describe_datafusion_error(&e)
                ))
            })?,
        });
    }
    all.ok_or_else(|| Error::Internal(format!("source `{name}`: nothing to read")))
}

/// Of `files`, the first whose values cannot all be parsed as the types read from its start
/// (a CSV date column with `2024-02-30` further down): the file, and the value, row and
/// column.
pub async fn find_unparsable(
    ctx: &datafusion::prelude::SessionContext,
    root: &Path,
    spec: &FilesSpec,
    files: &[IngestedFile],
    name: &str,
) -> Option<String> {
    for f in files {
        let mut evolution = crate::evolve::Evolution::default();
        let Ok(df) = read(
            ctx,
            root,
            spec,
            std::slice::from_ref(f),
            name,
            None,
            &mut evolution,
        )
        .await
        else {
            continue;
        };
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|c| c.name().clone())
            .collect();
        // Every column read (a count would read none), batch by batch.
        let failure = match df.execute_stream().await {
            Err(e) => Some(e),
            Ok(mut stream) => {
                use futures::StreamExt;
                let mut failure = None;
                while let Some(batch) = stream.next().await {
                    if let Err(e) = batch {
                        failure = Some(e);
                        break;
                    }
                }
                failure
            }
        };
        if let Some(e) = failure {
            let text = strata_engine::error::describe_datafusion_error(&e);
            let text = text
                .rsplit("Parser error: ")
                .next()
                .unwrap_or(&text)
                .to_string();
            // "... for column 1 at line 2. Row data: ..." names the column by position.
            let text = match text.split_once(" for column ").and_then(|(head, rest)| {
                let (index, tail) = rest.split_once(' ')?;
                let column = columns.get(index.parse::<usize>().ok()?)?;
                Some(format!("{head} for column `{column}` {tail}"))
            }) {
                Some(t) => t,
                None => text,
            };
            return Some(format!("{}: {text}", f.path));
        }
    }
    None
}

/// Whether a file's first character (after white space) opens a JSON array.
fn starts_with_array(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[')
}

fn compression_of(path: &str) -> FileCompressionType {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".gz") {
        FileCompressionType::GZIP
    } else if lower.ends_with(".zst") {
        FileCompressionType::ZSTD
    } else if lower.ends_with(".bz2") {
        FileCompressionType::BZIP2
    } else if lower.ends_with(".xz") {
        FileCompressionType::XZ
    } else {
        FileCompressionType::UNCOMPRESSED
    }
}
