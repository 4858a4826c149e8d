//! Sources read straight from files: CSV, JSON (arrays or newline-delimited), Parquet and
//! Delta, by path, glob or URL.

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;

/// A source table backed by files.
#[derive(Debug, Clone)]
pub struct ExternalSource {
    /// Schema it is queried under (the source's schema).
    pub schema: String,
    /// Table name it is queried under.
    pub name: String,
    /// Absolute path, glob or URL of the files.
    pub location: String,
    /// Format, when the extension does not tell (`csv`, `json`, `ndjson`, `parquet`, `delta`).
    pub format: Option<String>,
    /// Where it was declared, for error messages (`models/sources.yml`).
    pub declared_in: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
    NdJson,
    Parquet,
    Delta,
}

fn format_of(src: &ExternalSource) -> Result<Format> {
    let by_name = |f: &str| match f.to_ascii_lowercase().as_str() {
        "csv" | "tsv" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "ndjson" | "jsonl" => Some(Format::NdJson),
        "parquet" => Some(Format::Parquet),
        "delta" => Some(Format::Delta),
        _ => None,
    };
    if let Some(f) = &src.format {
        return by_name(f).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "source {}.{} ({}): unknown format `{f}`; use csv, json, ndjson, parquet or delta",
                src.schema, src.name, src.declared_in
            ))
        });
    }
    let loc = src.location.trim_end_matches('/');
    if Path::new(loc).join("_delta_log").is_dir() {
        return Ok(Format::Delta);
    }
    let ext = loc
        .rsplit('/')
        .next()
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_string())
        .unwrap_or_default();
    let ext = ext.trim_end_matches(".gz");
    by_name(ext).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "source {}.{} ({}): cannot tell the format of `{}` from its extension; add `format: csv|json|ndjson|parquet|delta` to the source's meta",
            src.schema, src.name, src.declared_in, src.location
        ))
    })
}

/// Whether a local JSON file holds one array (rather than one object per line).
fn is_json_array(location: &str) -> bool {
    use std::io::Read;
    let path = location.trim_start_matches("file://");
    let first = glob_first(path);
    let Some(first) = first else { return false };
    let Ok(mut f) = std::fs::File::open(first) else {
        return false;
    };
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf).unwrap_or(0);
    buf[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[')
}

fn glob_first(path: &str) -> Option<std::path::PathBuf> {
    if !path.contains(['*', '?']) {
        return Some(path.into());
    }
    glob_matches(path)?.into_iter().min()
}

/// The files of a folder whose names match the glob in the last part of `path`.
fn glob_matches(path: &str) -> Option<Vec<std::path::PathBuf>> {
    let (dir, pattern) = path.rsplit_once('/')?;
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .filter_map(std::result::Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| strata_common::glob_match(pattern, n))
            })
            .map(|e| e.path())
            .collect(),
    )
}

/// Make the object store of an `s3://` location known to the session (local paths need none).
fn register_store(location: &str, state: &SessionState) -> Result<()> {
    let Ok(url) = url::Url::parse(location) else {
        return Ok(());
    };
    if !super::lake::SUPPORTED_SCHEMES.contains(&url.scheme()) {
        return Ok(());
    }
    let mut bucket = url.clone();
    bucket.set_path("/");
    let runtime = state.runtime_env();
    let store =
        deltalake::logstore::store_for(&bucket, std::collections::HashMap::<String, String>::new())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    runtime.register_object_store(&bucket, store);
    Ok(())
}

/// Open a file source as a DataFusion table.
pub async fn open_external(
    src: &ExternalSource,
    state: &SessionState,
) -> Result<Arc<dyn TableProvider>> {
    let format = format_of(src)?;
    let missing = |e: DataFusionError| {
        DataFusionError::Plan(format!(
            "source {}.{} ({}): cannot read `{}`: {e}",
            src.schema, src.name, src.declared_in, src.location
        ))
    };
    let (file_format, ext): (Arc<dyn FileFormat>, Option<&str>) = match format {
        Format::Delta => {
            let url = url::Url::from_directory_path(src.location.trim_start_matches("file://"))
                .or_else(|_| url::Url::parse(&src.location))
                .map_err(|_| DataFusionError::Plan(format!("bad location {}", src.location)))?;
            let table = deltalake::open_table(url)
                .await
                .map_err(|e| missing(DataFusionError::External(Box::new(e))))?;
            return super::lake::provider_of(&table).await;
        }
        Format::Csv => {
            let delimiter = if src.location.ends_with(".tsv") {
                b'\t'
            } else {
                b','
            };
            (
                Arc::new(
                    CsvFormat::default()
                        .with_has_header(true)
                        .with_delimiter(delimiter)
                        .with_schema_infer_max_rec(10_000),
                ),
                None,
            )
        }
        Format::Json | Format::NdJson => {
            let array = format == Format::Json && is_json_array(&src.location);
            (
                Arc::new(
                    JsonFormat::default()
                        .with_newline_delimited(!array)
                        .with_schema_infer_max_rec(10_000),
                ),
                None,
            )
        }
        Format::Parquet => (Arc::new(ParquetFormat::default()), None),
    };
    let url = ListingTableUrl::parse(&src.location).map_err(missing)?;
    register_store(&src.location, state).map_err(missing)?;
    // The file's own extension, so a `.json` file is read even when the format is ndjson.
    let file_ext = src
        .location
        .rsplit('/')
        .next()
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| format!(".{e}"))
        .unwrap_or_default();
    let options = ListingOptions::new(file_format)
        .with_file_extension(ext.map(str::to_string).unwrap_or(file_ext));
    let schema = options.infer_schema(state, &url).await.map_err(missing)?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(config).map_err(missing)?);
    if let Some(bytes) = local_bytes(&src.location) {
        crate::table_sizes::record(&table, bytes);
    }
    Ok(table)
}

/// The bytes of the local files a location names (a file, a folder's files, or a glob's
/// matches); `None` for object stores.
fn local_bytes(location: &str) -> Option<u64> {
    if location.contains("://") && !location.starts_with("file://") {
        return None;
    }
    let path = location.trim_start_matches("file://");
    let size = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    };
    if !path.contains(['*', '?']) {
        let path = Path::new(path);
        if path.is_dir() {
            let entries = std::fs::read_dir(path).ok()?;
            return Some(entries.filter_map(|e| size(&e.ok()?.path())).sum());
        }
        return size(path);
    }
    Some(glob_matches(path)?.iter().filter_map(|p| size(p)).sum())
}
