//! The catalog of the embedded warehouse: one DataFusion catalog per target database whose
//! schemas and tables come from the metadata store (views, Delta table locations), from the
//! lake's folder layout (`<lake>/<schema>/<table>`), and from sources declared with
//! `external_location` (CSV, JSON, Parquet or Delta files).
//!
//! Providers are opened lazily and cached for the life of the session; rebuilding a relation
//! invalidates its entry. Dependents are built after their parents, so a cached provider is
//! never older than a relation a query of the same run can see.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use parking_lot::{Mutex, RwLock};
use strata_meta::{MetaStore, RelationKind};

use super::external::{ExternalSource, open_external};
use super::lake::Lake;

type Key = (String, String);

/// What every schema of the catalog shares.
#[derive(Debug)]
pub(crate) struct CatalogShared {
    pub database: String,
    pub lake: Lake,
    pub meta: Arc<MetaStore>,
    pub sources: HashMap<Key, ExternalSource>,
    pub state: Mutex<Weak<RwLock<SessionState>>>,
    cache: Mutex<HashMap<Key, Arc<dyn TableProvider>>>,
}

impl CatalogShared {
    pub fn new(
        database: String,
        lake: Lake,
        meta: Arc<MetaStore>,
        sources: Vec<ExternalSource>,
    ) -> Self {
        Self {
            database,
            lake,
            meta,
            sources: sources
                .into_iter()
                .map(|s| ((s.schema.clone(), s.name.clone()), s))
                .collect(),
            state: Mutex::new(Weak::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forget a cached provider (after the relation was rebuilt or dropped).
    pub fn invalidate(&self, schema: &str, name: &str) {
        self.cache
            .lock()
            .remove(&(schema.to_string(), name.to_string()));
    }

    /// Remember a provider just built.
    pub fn remember(&self, schema: &str, name: &str, provider: Arc<dyn TableProvider>) {
        self.cache
            .lock()
            .insert((schema.to_string(), name.to_string()), provider);
    }

    fn session(&self) -> Result<SessionState> {
        let weak = self.state.lock().clone();
        let state = weak
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("session dropped".into()))?;
        let s = state.read().clone();
        Ok(s)
    }

    async fn open(&self, schema: &str, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let key = (schema.to_string(), name.to_string());
        if let Some(p) = self.cache.lock().get(&key) {
            return Ok(Some(p.clone()));
        }
        let provider: Option<Arc<dyn TableProvider>> = if let Some(src) = self.sources.get(&key) {
            let state = self.session()?;
            Some(open_external(src, &state).await?)
        } else {
            let record = self
                .meta
                .relation(&self.database, schema, name)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            match record {
                Some(r) if r.kind == RelationKind::View => {
                    let sql = r.sql.unwrap_or_default();
                    let state = self.session()?;
                    let plan = state.create_logical_plan(&sql).await.map_err(|e| {
                        DataFusionError::Plan(format!(
                            "view {schema}.{name} no longer plans: {e}; rebuild it with `strata run --select {name}`"
                        ))
                    })?;
                    Some(Arc::new(ViewTable::new(plan, Some(sql))))
                }
                Some(r) => match r.location {
                    Some(loc) => self.lake.open_table_at(&loc).await?,
                    None => None,
                },
                None => self.lake.open_table(schema, name).await?,
            }
        };
        if let Some(p) = &provider {
            self.cache.lock().insert(key, p.clone());
        }
        Ok(provider)
    }

    fn schema_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .meta
            .schemas(&self.database)
            .unwrap_or_default()
            .into_iter()
            .collect();
        names.extend(self.sources.keys().map(|(s, _)| s.clone()));
        names.extend(self.lake.local_schemas());
        names
    }

    fn table_names(&self, schema: &str) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .meta
            .relations(&self.database, Some(schema))
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.extend(
            self.sources
                .keys()
                .filter(|(s, _)| s == schema)
                .map(|(_, t)| t.clone()),
        );
        names.extend(self.lake.local_tables(schema));
        names.into_iter().collect()
    }
}

/// The catalog of one database of a target.
#[derive(Debug)]
pub(crate) struct LakeCatalog {
    pub shared: Arc<CatalogShared>,
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.shared.schema_names().into_iter().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // Schemas exist implicitly: a model may write to any schema.
        Some(Arc::new(LakeSchema {
            shared: self.shared.clone(),
            name: name.to_string(),
        }))
    }
}

/// One schema of a [`LakeCatalog`].
#[derive(Debug)]
pub(crate) struct LakeSchema {
    shared: Arc<CatalogShared>,
    name: String,
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.shared.table_names(&self.name)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.shared.open(&self.name, name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.shared
            .table_names(&self.name)
            .iter()
            .any(|t| t == name)
    }
}
