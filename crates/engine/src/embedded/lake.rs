//! The lake: a folder or an object-store prefix (`s3://bucket/prefix`) holding one Delta table
//! per relation, at `<root>/<schema>/<table>/`.
//!
//! Object stores are configured the way delta-rs and the AWS tools read it, from the
//! environment: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! and `AWS_ALLOW_HTTP=true` for a plain-HTTP S3-compatible server. Secrets never go in files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use url::Url;

/// Object-store URL schemes a lake may use.
pub const SUPPORTED_SCHEMES: [&str; 2] = ["s3", "s3a"];

use crate::error::{Error, Result};

/// Where a target's tables live.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    local: Option<PathBuf>,
}

impl Lake {
    /// A lake at a local folder (absolute) or a URL.
    pub fn parse(location: &str) -> Result<Self> {
        if location.contains("://") && !location.starts_with("file://") {
            let mut url = Url::parse(location)
                .map_err(|e| Error::user(format!("lake `{location}` is not a valid URL: {e}")))?;
            if !SUPPORTED_SCHEMES.contains(&url.scheme()) {
                return Err(Error::user(format!(
                    "lake `{url}`: `{}://` object stores are not supported",
                    url.scheme()
                ))
                .with_hint(format!(
                    "use a local folder or one of: {}",
                    SUPPORTED_SCHEMES
                        .iter()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            return Ok(Self {
                root: url,
                local: None,
            });
        }
        let path = PathBuf::from(location.trim_start_matches("file://"));
        if !path.is_absolute() {
            return Err(Error::Internal(format!(
                "lake path {location} is not absolute"
            )));
        }
        let root = Url::from_directory_path(&path)
            .map_err(|_| Error::Internal(format!("cannot make a URL of {}", path.display())))?;
        Ok(Self {
            root,
            local: Some(path),
        })
    }

    /// The lake's root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Create the root folder (or write a probe object), failing clearly when the lake cannot
    /// be written.
    pub async fn ensure_writable(&self) -> Result<()> {
        if let Some(root) = &self.local {
            std::fs::create_dir_all(root).map_err(|e| lake_not_writable(&root.display(), &e))?;
            let probe = root.join(".strata-write-probe");
            std::fs::write(&probe, b"").map_err(|e| lake_not_writable(&root.display(), &e))?;
            let _ = std::fs::remove_file(&probe);
            return Ok(());
        }
        let store = self.object_store()?;
        let probe = ObjectPath::from(format!(
            "{}/.strata-write-probe",
            self.root.path().trim_matches('/')
        ));
        store
            .put(&probe, PutPayload::from_static(b""))
            .await
            .map_err(|e| lake_not_writable(&self.root, &e))?;
        let _ = store.delete(&probe).await;
        Ok(())
    }

    /// Record that the metadata store `catalog_id` (at `metadata`) writes this lake, or check
    /// that it is the one recorded. Two stores over one lake would each miss the other's
    /// tables and locks, so a lake written by another store is refused. The record is
    /// `_strata/catalog.json` in the lake, created atomically (a conditional put on object
    /// stores), so two first writers cannot both win.
    pub async fn claim(&self, catalog_id: &str, metadata: &str) -> Result<()> {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let mine =
            serde_json::json!({"catalog_id": catalog_id, "metadata": metadata, "host": host});
        let body = serde_json::to_vec_pretty(&mine)
            .map_err(|e| Error::Internal(format!("owner record: {e}")))?;
        let found = match &self.local {
            Some(root) => claim_local(&root.join(OWNER), &body)
                .map_err(|e| lake_not_writable(&root.display(), &e))?,
            None => {
                let store = self.object_store()?;
                let path =
                    ObjectPath::from(format!("{}/{OWNER}", self.root.path().trim_matches('/')));
                claim_object(store.as_ref(), &path, body)
                    .await
                    .map_err(|e| lake_not_writable(&self.root, &e))?
            }
        };
        let Some(found) = found else {
            return Ok(());
        };
        let owner: serde_json::Value = serde_json::from_slice(&found).unwrap_or_default();
        if owner["catalog_id"].as_str() == Some(catalog_id) {
            return Ok(());
        }
        let field = |k: &str| owner[k].as_str().unwrap_or("?").to_string();
        Err(Error::user(format!(
            "the lake {} is written by another metadata store ({} on host `{}`), not by this target's ({metadata}); two stores over one lake would each miss the other's tables, so nothing was written",
            self.root,
            field("metadata"),
            field("host"),
        ))
        .with_hint(format!(
            "run Strata where that metadata store is (or point the target's `metadata:` at it), or give this target a `lake:` of its own; if that store is gone for good, delete {}{OWNER} to hand the lake to this one",
            self.root
        )))
    }

    /// The catalog id the lake records as its writer (`_strata/catalog.json`), if any.
    pub async fn owner_catalog_id(&self) -> Result<Option<String>> {
        let found = match &self.local {
            Some(root) => match std::fs::read(root.join(OWNER)) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(lake_not_writable(&root.display(), &e)),
            },
            None => {
                let store = self.object_store()?;
                let path =
                    ObjectPath::from(format!("{}/{OWNER}", self.root.path().trim_matches('/')));
                match read_object(store.as_ref(), &path).await {
                    Ok(b) => Some(b),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => return Err(Error::user(format!("cannot read {path}: {e}"))),
                }
            }
        };
        Ok(found.and_then(|b| {
            let owner: serde_json::Value = serde_json::from_slice(&b).ok()?;
            owner["catalog_id"].as_str().map(str::to_string)
        }))
    }

    /// Every Delta table of the lake, as `(schema, name)`: the folders `<schema>/<name>/`
    /// holding a `_delta_log`.
    pub async fn tables(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        match &self.local {
            Some(root) => {
                let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
                    std::fs::read_dir(p)
                        .map(|rd| {
                            rd.flatten()
                                .filter(|e| e.path().is_dir())
                                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                for (schema, dir) in dirs(root) {
                    for (name, table) in dirs(&dir) {
                        if table.join("_delta_log").is_dir() {
                            out.push((schema.clone(), name));
                        }
                    }
                }
            }
            None => {
                let store = self.object_store()?;
                let root = ObjectPath::from(self.root.path().trim_matches('/'));
                let listed = |e: object_store::Error| {
                    Error::user(format!("cannot list the lake {}: {e}", self.root))
                };
                let schemas = store
                    .list_with_delimiter(Some(&root))
                    .await
                    .map_err(listed)?;
                for schema in schemas.common_prefixes {
                    let tables = store
                        .list_with_delimiter(Some(&schema))
                        .await
                        .map_err(listed)?;
                    for table in tables.common_prefixes {
                        let log = table.clone().join("_delta_log");
                        let has_log = store
                            .list_with_delimiter(Some(&log))
                            .await
                            .map_err(listed)?
                            .objects
                            .iter()
                            .any(|o| o.location.as_ref().ends_with(".json"));
                        if let (true, Some(s), Some(t)) =
                            (has_log, schema.filename(), table.filename())
                        {
                            out.push((decode(s), decode(t)));
                        }
                    }
                }
            }
        }
        out.retain(|(schema, name)| {
            check_name("schema", schema).is_ok() && check_name("table", name).is_ok()
        });
        out.sort();
        Ok(out)
    }

    /// The object store holding the lake's bucket (object-store lakes).
    pub fn object_store(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut bucket = self.root.clone();
        bucket.set_path("/");
        deltalake::logstore::store_for(&bucket, std::collections::HashMap::<String, String>::new())
            .map_err(|e| {
                Error::user(format!("cannot reach the lake {}: {e}", self.root)).with_hint(
                    "set AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (and AWS_ALLOW_HTTP=true for a plain-HTTP server)",
                )
            })
    }

    /// Where the table `schema.name` lives: `<lake>/<schema>/<name>/`. Names become folder
    /// names, so names that could leave the lake (`..`, `/`, ...) are refused here, before
    /// anything is read or written.
    pub fn table(&self, schema: &str, name: &str) -> Result<TableLocation> {
        check_name("schema", schema)?;
        check_name("table", name)?;
        let relative = format!("{}/{}/", encode(schema), encode(name));
        let url = self
            .root
            .join(&relative)
            .map_err(|e| Error::Internal(format!("table URL for {schema}.{name}: {e}")))?;
        Ok(TableLocation {
            display: format!("{schema}.{name}"),
            dir: self.local.as_ref().map(|r| r.join(schema).join(name)),
            url,
            relative,
        })
    }

    /// Whether a Delta table exists at a location.
    pub async fn table_exists(&self, table: &TableLocation) -> Result<bool> {
        if let Some(dir) = &table.dir {
            return Ok(dir.join("_delta_log").is_dir());
        }
        Ok(deltalake::DeltaTableBuilder::from_url(table.url.clone())?
            .build()?
            .verify_deltatable_existence()
            .await?)
    }

    /// Open the Delta table of `schema.name`, when it exists.
    pub async fn open_table(&self, schema: &str, name: &str) -> DfResult<Option<DeltaTable>> {
        let external = |e: Error| DataFusionError::External(Box::new(e));
        let table = self.table(schema, name).map_err(external)?;
        if !self.table_exists(&table).await.map_err(external)? {
            return Ok(None);
        }
        super::damage::open_checked(&table).await.map_err(external)
    }

    /// Remove a table's files (a table replaced by a view, a table whose creation failed).
    pub async fn remove_table(&self, table: &TableLocation) -> Result<()> {
        if let Some(dir) = &table.dir {
            return match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::user(format!("cannot remove {}: {e}", dir.display())))
                }
                _ => Ok(()),
            };
        }
        let store = self.object_store()?;
        let prefix = ObjectPath::from_url_path(table.url.path())
            .map_err(|e| Error::Internal(format!("object path of {}: {e}", table.url)))?;
        let paths = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        store
            .delete_stream(paths)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| Error::user(format!("cannot remove {}: {e}", table.url)))?;
        Ok(())
    }

    /// Where change sets too large for memory spill: inside a local lake (the same disk as the
    /// tables), else the system's temporary folder.
    pub fn spill_dir(&self) -> PathBuf {
        self.local
            .as_ref()
            .map(|r| r.join("_strata_tmp"))
            .unwrap_or_else(std::env::temp_dir)
    }

    /// Remove what killed writers spilled into a local lake (see [`Lake::spill_dir`]).
    pub fn clear_local_spills(&self) {
        if self.local.is_some() {
            let _ = std::fs::remove_dir_all(self.spill_dir());
        }
    }

    /// Schema folders of a local lake.
    pub fn local_schemas(&self) -> Vec<String> {
        self.local
            .as_ref()
            .map(|r| {
                subdirs(r)
                    .into_iter()
                    .filter(|s| !s.starts_with(['.', '_']))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Table folders of a schema of a local lake.
    pub fn local_tables(&self, schema: &str) -> Vec<String> {
        self.local
            .as_ref()
            .map(|r| {
                subdirs(&r.join(schema))
                    .into_iter()
                    .filter(|t| r.join(schema).join(t).join("_delta_log").is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A table's place in the lake, from names already checked.
#[derive(Debug, Clone)]
pub struct TableLocation {
    /// The table's root URL.
    pub url: Url,
    /// Its folder, on a local lake.
    pub dir: Option<PathBuf>,
    /// Its path relative to the lake's root (`schema/name/`, URL-encoded): what the catalog
    /// records, so a lake copied or moved with its catalog still finds its own tables.
    pub relative: String,
    /// `schema.name`, for messages.
    pub display: String,
}

/// Refuse a schema or table name that cannot be a folder of the lake: empty, `.`, `..`, or
/// holding a path separator, NUL or another control character. Every other character (spaces,
/// quotes, non-ASCII letters) is legal, and encoded where the lake is a URL.
/// The longest file name common file systems (ext4, XFS, APFS, NTFS) and S3 keys' segments
/// take, in bytes.
const MAX_NAME_BYTES: usize = 255;

fn check_name(kind: &str, name: &str) -> Result<()> {
    let bad = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name == "." || name == ".." {
        Some(format!(
            "`{name}` names a folder of the file system, not a new one"
        ))
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "the name is too long: {} bytes, and a folder name holds at most {MAX_NAME_BYTES}",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| matches!(c, '/' | '\\') || c.is_control())
            .map(|c| format!("it contains {}", describe_char(c)))
    };
    match bad {
        None => Ok(()),
        Some(why) => Err(Error::user(format!(
            "the {kind} name `{}` cannot be used in the lake: {why}",
            name.escape_debug()
        ))
        .with_hint(
            "schemas and tables are folders of the lake: set `schema`/`alias` (or the source's `schema`/`identifier`) to a name of at most 255 bytes, without `/`, `\\` or control characters, and other than `.` or `..`",
        )),
    }
}

fn describe_char(c: char) -> String {
    match c {
        '/' => "`/`".into(),
        '\\' => "`\\`".into(),
        '\0' => "a NUL character".into(),
        c => format!("the control character U+{:04X}", c as u32),
    }
}

/// The record of the metadata store writing a lake, relative to its root.
const OWNER: &str = "_strata/catalog.json";

/// Create `path` with `body` unless it exists; returns what it holds when it does.
fn claim_local(path: &Path, body: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Write;
    match std::fs::read(path) {
        Ok(found) => return Ok(Some(found)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => f.write_all(body).map(|()| None),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map(Some),
        Err(e) => Err(e),
    }
}

/// [`claim_local`] on an object store, with a conditional put.
async fn claim_object(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    body: Vec<u8>,
) -> object_store::Result<Option<Vec<u8>>> {
    match read_object(store, path).await {
        Ok(found) => return Ok(Some(found)),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    match store
        .put_opts(path, PutPayload::from(body), PutMode::Create.into())
        .await
    {
        Ok(_) => Ok(None),
        Err(object_store::Error::AlreadyExists { .. }) => read_object(store, path).await.map(Some),
        Err(e) => Err(e),
    }
}

async fn read_object(store: &dyn ObjectStore, path: &ObjectPath) -> object_store::Result<Vec<u8>> {
    Ok(store.get(path).await?.bytes().await?.to_vec())
}

fn lake_not_writable(root: &dyn std::fmt::Display, e: &dyn std::fmt::Display) -> Error {
    Error::user(format!("the lake {root} is not writable: {e}")).with_hint(
        "point `lake:` of the target in profiles.yml at a place you can write, or fix its permissions",
    )
}

fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// A path segment with `%XX` escapes decoded (object-store listings escape some characters).
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub(crate) async fn open_delta(url: Url) -> DfResult<Option<DeltaTable>> {
    match deltalake::open_table(url).await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
            Ok(None)
        }
        Err(e) => Err(DataFusionError::External(Box::new(e))),
    }
}

/// A DataFusion provider reading the loaded version of a Delta table.
pub async fn provider_of(table: &DeltaTable) -> DfResult<Arc<dyn TableProvider>> {
    let provider = table
        .table_provider()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    record_size(table, &provider);
    Ok(provider)
}

/// Note the bytes of the data files of the loaded version of `table`, which `provider` reads.
pub fn record_size(table: &DeltaTable, provider: &Arc<dyn TableProvider>) {
    if let Ok(state) = table.snapshot() {
        let bytes = state
            .log_data()
            .iter()
            .map(|f| f.size().max(0) as u64)
            .sum();
        crate::table_sizes::record(provider, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_lake_are_refused() {
        let lake = Lake::parse("/tmp/lake").expect("lake");
        for bad in ["..", ".", "", "a/b", "a\\b", "x\0y", "tab\there"] {
            let err = lake.table("main", bad).expect_err(bad).to_string();
            assert!(err.contains("cannot be used in the lake"), "{bad}: {err}");
            assert!(lake.table(bad, "t").is_err(), "schema {bad}");
        }
        let odd = lake.table("my schema", "Ünïcode \"q\" %").expect("legal");
        assert_eq!(
            odd.dir.as_deref(),
            Some(Path::new("/tmp/lake/my schema/Ünïcode \"q\" %"))
        );
        assert!(
            odd.url
                .as_str()
                .starts_with("file:///tmp/lake/my%20schema/")
        );
        assert_eq!(odd.url.path_segments().map(|s| s.count()), Some(5));
    }
}
