//! Object stores a scheduler or executor finds by url: the local file system, and S3-compatible
//! buckets configured from the environment as the client's lake is (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`). A cluster
//! reads the lake where the client wrote it, so every process needs the same settings.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

/// Stores opened on first use.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    opened: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.opened.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.opened.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.opened.get_store(url) {
            return Ok(store);
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => {
                let bucket = url.host_str().ok_or_else(|| {
                    DataFusionError::Configuration(format!("{url} names no bucket"))
                })?;
                Arc::new(
                    AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(|e| {
                            DataFusionError::Configuration(format!(
                                "cannot open {url}: {e}; set AWS_ENDPOINT_URL, AWS_REGION and the keys as the client has them"
                            ))
                        })?,
                )
            }
            other => {
                return Err(DataFusionError::Configuration(format!(
                    "this process cannot read {other}:// urls ({url}); a cluster reads lakes in local folders or on S3"
                )));
            }
        };
        let base = Url::parse(&format!("{}://{}", url.scheme(), url.authority()))
            .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
        self.opened.register_store(&base, store.clone());
        Ok(store)
    }
}
