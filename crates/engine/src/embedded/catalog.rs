//! The catalog of the embedded warehouse: one DataFusion catalog per target database whose
//! schemas and tables come from the metadata store (views, Delta table locations), from the
//! lake's folder layout (`<lake>/<schema>/<table>`), and from sources declared with
//! `external_location` (CSV, JSON, Parquet or Delta files).
//!
//! Providers are opened lazily and cached for the life of the session. A view's provider holds
//! the plans of what it reads, so rebuilding a relation invalidates its entry and, through the
//! recorded references, every cached view that reads it.

use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// For a catalog attached under another name (`--defer`): view SQL names relations with
    /// the original database, which must read this catalog instead: (`"db".`, `"alias".`).
    pub rename: Option<(String, String)>,
    pub state: Mutex<Weak<RwLock<SessionState>>>,
    cache: Mutex<HashMap<Key, Arc<dyn TableProvider>>>,
    /// The loaded Delta tables behind cached providers: writes start from them instead of
    /// replaying the table's log again (this process is the target's only writer).
    tables: Mutex<HashMap<Key, deltalake::DeltaTable>>,
    /// For each relation, the cached views that read it.
    readers: Mutex<HashMap<Key, HashSet<Key>>>,
    /// Wraps each Delta table's provider as it opens (see [`TableWrapper`]).
    pub wrapper: std::sync::OnceLock<Wrapper>,
    /// Read Delta tables as their Parquet files (see [`super::LakeFiles`]), for a cluster.
    pub files_only: bool,
}

/// A [`TableWrapper`] in place.
pub(crate) struct Wrapper(pub TableWrapper);

impl std::fmt::Debug for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableWrapper")
    }
}

/// Given a Delta table's schema, name and provider as it opens, the provider to read it
/// through instead: how a server keeps tables in memory.
pub type TableWrapper =
    Arc<dyn Fn(&str, &str, Arc<dyn TableProvider>) -> Arc<dyn TableProvider> + Send + Sync>;

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
            rename: None,
            state: Mutex::new(Weak::new()),
            cache: Mutex::new(HashMap::new()),
            tables: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            wrapper: std::sync::OnceLock::new(),
            files_only: false,
        }
    }

    /// Forget a cached provider (after the relation was rebuilt or dropped), and every cached
    /// view that reads it, directly or through other views.
    pub fn invalidate(&self, schema: &str, name: &str) {
        let mut cache = self.cache.lock();
        let mut tables = self.tables.lock();
        let mut readers = self.readers.lock();
        let mut pending = vec![(schema.to_string(), name.to_string())];
        while let Some(key) = pending.pop() {
            cache.remove(&key);
            tables.remove(&key);
            if let Some(views) = readers.remove(&key) {
                pending.extend(views);
            }
        }
    }

    /// Remember which relations a view's SQL reads, so rebuilding them invalidates the view.
    pub fn record_reads(&self, state: &SessionState, schema: &str, name: &str, sql: &str) {
        let view = (schema.to_string(), name.to_string());
        let mut readers = self.readers.lock();
        for key in references(state, sql, &self.database) {
            readers.entry(key).or_default().insert(view.clone());
        }
    }

    /// Remember a provider just built.
    pub fn remember(&self, schema: &str, name: &str, provider: Arc<dyn TableProvider>) {
        self.cache
            .lock()
            .insert((schema.to_string(), name.to_string()), provider);
    }

    /// Remember a Delta table just written or opened, and read it through a new provider.
    pub async fn remember_table(
        &self,
        schema: &str,
        name: &str,
        table: deltalake::DeltaTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let provider = self.provider_of(schema, name, &table).await?;
        let key = (schema.to_string(), name.to_string());
        self.cache.lock().insert(key.clone(), provider.clone());
        self.tables.lock().insert(key, table);
        Ok(provider)
    }

    /// The provider reading a loaded Delta table.
    pub async fn provider_of(
        &self,
        schema: &str,
        name: &str,
        table: &deltalake::DeltaTable,
    ) -> Result<Arc<dyn TableProvider>> {
        if self.files_only {
            let files = super::LakeFiles::of(table, &format!("{schema}.{name}"))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let files: Arc<dyn TableProvider> = Arc::new(files);
            super::lake::record_size(table, &files);
            return Ok(files);
        }
        super::lake::provider_of(table).await
    }

    /// The loaded Delta table of a relation this process has read or written, if any.
    pub fn loaded_table(&self, schema: &str, name: &str) -> Option<deltalake::DeltaTable> {
        self.tables
            .lock()
            .get(&(schema.to_string(), name.to_string()))
            .cloned()
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
            let table = match record {
                Some(r) if r.kind == RelationKind::View => {
                    let mut sql = r.sql.unwrap_or_default();
                    if let Some((from, to)) = &self.rename {
                        sql = sql.replace(from.as_str(), to);
                    }
                    let state = self.session()?;
                    let mut text = crate::literals::wide_integers_as_decimals(&sql).into_owned();
                    let mut plan = state.create_logical_plan(&text).await;
                    for _ in 0..crate::lateral::MAX_REWRITES {
                        let Err(e) = &plan else { break };
                        let Some(rewritten) = crate::lateral::retry_with_alias_inlined(&text, e)
                        else {
                            break;
                        };
                        text = rewritten;
                        plan = state.create_logical_plan(&text).await;
                    }
                    let plan = plan.map_err(|e| {
                        DataFusionError::Plan(format!(
                            "view {schema}.{name} no longer plans: {e}; rebuild it with `strata run --select {name}`"
                        ))
                    })?;
                    self.record_reads(&state, schema, name, &sql);
                    let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(sql)));
                    self.cache.lock().insert(key, view.clone());
                    return Ok(Some(view));
                }
                // Tables are found by name in this target's lake, wherever it has moved.
                _ => self.lake.open_table(schema, name).await?,
            };
            match table {
                Some(t) => {
                    let provider = self.remember_table(schema, name, t).await?;
                    Some(match self.wrapper.get() {
                        Some(Wrapper(wrap)) => wrap(schema, name, provider),
                        None => provider,
                    })
                }
                None => None,
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

/// The relations of `database` that `sql` names, as (schema, table).
fn references(state: &SessionState, sql: &str, database: &str) -> Vec<Key> {
    let options = state.config().options();
    let dialect = options.sql_parser.dialect;
    let default_catalog = options.catalog.default_catalog.clone();
    let default_schema = options.catalog.default_schema.clone();
    let Ok(statement) = state.sql_to_statement(sql, &dialect) else {
        return Vec::new();
    };
    let Ok(refs) = state.resolve_table_references(&statement) else {
        return Vec::new();
    };
    refs.into_iter()
        .map(|r| r.resolve(&default_catalog, &default_schema))
        .filter(|r| r.catalog.as_ref() == database)
        .map(|r| (r.schema.to_string(), r.table.to_string()))
        .collect()
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
