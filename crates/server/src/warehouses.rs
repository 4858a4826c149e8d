//! The warehouses the servers read through. Each is opened for one state of the metadata
//! store and reopened when it changes (a build or an ingestion committed), so new table
//! versions show without a restart; all of them read gold tables through one [`TableCache`].

use std::sync::{Arc, Mutex};

use strata_engine::EmbeddedWarehouse;
use strata_meta::MetaStore;

use crate::cache::TableCache;

/// Opens the target's warehouse.
pub type Opener = Arc<dyn Fn() -> Result<EmbeddedWarehouse, String> + Send + Sync>;

/// Opens warehouses for the servers, and keeps the one the web UI shares.
pub struct Warehouses {
    opener: Opener,
    meta: Arc<MetaStore>,
    cache: Arc<TableCache>,
    shared: Mutex<Option<(i64, EmbeddedWarehouse)>>,
}

impl Warehouses {
    /// `cache_bytes`: how much of the gold layer to hold in memory (0: none).
    pub fn new(opener: Opener, meta: Arc<MetaStore>, cache_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            opener,
            meta,
            cache: TableCache::new(cache_bytes),
            shared: Mutex::new(None),
        })
    }

    /// The metadata store's state now: it changes when another process commits to it.
    pub fn generation(&self) -> Result<i64, String> {
        self.meta
            .data_version()
            .map_err(|e| format!("cannot read the metadata store: {e}"))
    }

    /// A warehouse of its own, for the state `generation` (a wire session changes its
    /// session's catalog, so it cannot share one).
    pub fn open(&self, generation: i64) -> Result<EmbeddedWarehouse, String> {
        let warehouse = (self.opener)()?;
        warehouse.wrap_tables(self.cache.wrapper(generation));
        Ok(warehouse)
    }

    /// The shared warehouse for the current state, reopened when the state changed.
    pub fn current(&self) -> Result<EmbeddedWarehouse, String> {
        let generation = self.generation()?;
        let mut shared = self
            .shared
            .lock()
            .map_err(|_| "a warehouse failed to open".to_string())?;
        if let Some((g, warehouse)) = shared.as_ref()
            && *g == generation
        {
            return Ok(warehouse.clone());
        }
        let warehouse = self.open(generation)?;
        *shared = Some((generation, warehouse.clone()));
        Ok(warehouse)
    }

    /// The metadata store.
    pub fn meta(&self) -> &Arc<MetaStore> {
        &self.meta
    }
}
