//! The lake: a folder (or object-store prefix) holding one Delta table per relation, at
//! `<root>/<schema>/<table>/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

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
            let url = Url::parse(location)
                .map_err(|e| Error::user(format!("lake `{location}` is not a valid URL: {e}")))?;
            return Err(Error::user(format!(
                "lake `{url}`: object stores ({}://) are not supported by this build yet",
                url.scheme()
            ))
            .with_hint("use a local folder for `lake:` in profiles.yml"));
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

    /// The local folder, for local lakes.
    pub fn local_root(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// Create the root folder, failing clearly when it cannot be written.
    pub fn ensure_writable(&self) -> Result<()> {
        if let Some(root) = &self.local {
            std::fs::create_dir_all(root).map_err(|e| lake_not_writable(root, &e))?;
            let probe = root.join(".strata-write-probe");
            std::fs::write(&probe, b"").map_err(|e| lake_not_writable(root, &e))?;
            let _ = std::fs::remove_file(&probe);
        }
        Ok(())
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
    pub async fn open_table(
        &self,
        schema: &str,
        name: &str,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(dir) = self.table_dir(schema, name)
            && !dir.join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        let url = self
            .table_url(schema, name)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        open_provider(url).await
    }

    /// Open a Delta table at a recorded location.
    pub async fn open_table_at(&self, location: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let url = Url::parse(location)
            .map_err(|e| DataFusionError::Plan(format!("bad table location {location}: {e}")))?;
        open_provider(url).await
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

fn lake_not_writable(root: &Path, e: &std::io::Error) -> Error {
    Error::user(format!("the lake {} is not writable: {e}", root.display())).with_hint(
        "point `lake:` of the target in profiles.yml at a folder you can write, or fix its permissions",
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

async fn open_provider(url: Url) -> DfResult<Option<Arc<dyn TableProvider>>> {
    match deltalake::open_table(url).await {
        Ok(table) => Ok(Some(provider_of(&table).await?)),
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
