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
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
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

    /// Whether a Delta table exists at `url`.
    pub async fn table_exists(&self, schema: &str, name: &str) -> Result<bool> {
        if let Some(dir) = self.table_dir(schema, name) {
            return Ok(dir.join("_delta_log").is_dir());
        }
        let url = self.table_url(schema, name)?;
        Ok(deltalake::DeltaTableBuilder::from_url(url)?
            .build()?
            .verify_deltatable_existence()
            .await?)
    }

    /// The folder of a table (local lakes).
    pub fn table_dir(&self, schema: &str, name: &str) -> Option<PathBuf> {
        self.local.as_ref().map(|r| r.join(schema).join(name))
    }

    /// The URL of a table.
    pub fn table_url(&self, schema: &str, name: &str) -> Result<Url> {
        self.root
            .join(&format!("{}/{}/", encode(schema), encode(name)))
            .map_err(|e| Error::Internal(format!("table URL for {schema}.{name}: {e}")))
    }

    /// Open the Delta table of `schema.name`, when it exists.
    pub async fn open_table(&self, schema: &str, name: &str) -> DfResult<Option<DeltaTable>> {
        let exists = self
            .table_exists(schema, name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if !exists {
            return Ok(None);
        }
        let url = self
            .table_url(schema, name)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        open_delta(url).await
    }

    /// Open a Delta table at a recorded location.
    pub async fn open_table_at(&self, location: &str) -> DfResult<Option<DeltaTable>> {
        let url = Url::parse(location)
            .map_err(|e| DataFusionError::Plan(format!("bad table location {location}: {e}")))?;
        open_delta(url).await
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

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn open_delta(url: Url) -> DfResult<Option<DeltaTable>> {
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
    table
        .table_provider()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))
}
