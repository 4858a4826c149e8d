//! The embedded warehouse: DataFusion over Delta Lake, with a SQLite catalog.

mod catalog;
mod clone;
mod damage;
mod external;
mod files;
mod guard;
mod incremental;
mod ingest;
mod introspect;
mod lake;
mod observe;
mod quarantine;
mod seed;
mod snapshot;
mod stage;
mod statement;
mod time_travel;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{QueryPlanner, SQLOptions, SessionContext};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionConfig};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use strata_meta::{MetaStore, RelationKind, RelationRecord};

pub use clone::CloneSource;
pub use external::ExternalSource;
pub use files::{LakeFile, LakeFiles};
pub use ingest::{IngestMode, IngestWrite, RemoteFile, latest_per_key};
pub use lake::Lake;
pub use quarantine::{QUARANTINE_COLUMNS, Retried};

use crate::error::{Error, Result};
use crate::semantics::TrueDivision;
use crate::{Materialization, MaterializeOutcome, MaterializeRequest, SeedRequest, Warehouse};
pub use catalog::TableWrapper;
use catalog::{CatalogShared, LakeCatalog};
use guard::WriteGuard;
pub use introspect::rows_of;
pub use seed::seed_columns;

/// One version of a table, as `strata history` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableVersion {
    /// The Delta version.
    pub version: u64,
    /// When it was committed (RFC 3339).
    pub timestamp: Option<String>,
    /// `WRITE`, `RESTORE`, ...
    pub operation: String,
    /// Rows the commit added.
    pub rows_written: Option<u64>,
    /// The Strata run that wrote it.
    pub run_id: Option<String>,
}

/// How to open an embedded warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseOptions {
    /// The catalog name relations are qualified with.
    pub database: String,
    /// The schema unqualified names resolve in.
    pub default_schema: String,
    /// The lake root (absolute folder).
    pub lake: String,
    /// Sources read from files.
    pub sources: Vec<ExternalSource>,
    /// Partitions DataFusion uses per query (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// Where queries run, when not in this process (a cluster); writes stay here.
    pub distributor: Option<Arc<dyn Distributor>>,
}

/// The catalog of rows this process holds for a write (in memory or spilled to its disk):
/// plans reading it cannot run elsewhere.
pub const STAGED_CATALOG: &str = stage::CATALOG;

/// Runs queries elsewhere (a cluster). The warehouse plans each query, hands the analysed
/// plan over, and reads the rows back to write them itself, so every write is still one
/// Delta commit made here. Delta tables are then read as plain Parquet files ([`LakeFiles`]),
/// which any engine can ship to its workers.
pub trait Distributor: Send + Sync + std::fmt::Debug {
    /// A plan giving the rows of `plan`, computed elsewhere; or `plan` itself where it reads
    /// what only this process can (rows staged for a write, the catalog's own tables).
    fn distribute(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<datafusion::logical_expr::LogicalPlan>;

    /// Settings the warehouse's session needs for its queries to run there (they travel
    /// with each query).
    fn configure(&self, _config: &mut SessionConfig) {}
}

/// DataFusion over Delta Lake tables, with views and table locations in the metadata store.
/// Clones share the session, catalog and caches.
#[derive(Clone)]
pub struct EmbeddedWarehouse {
    ctx: SessionContext,
    shared: Arc<CatalogShared>,
    /// Set once the lake has been found writable and ours (checked before the first write).
    writable: tokio::sync::OnceCell<()>,
    distributor: Option<Arc<dyn Distributor>>,
}

impl std::fmt::Debug for EmbeddedWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedWarehouse")
            .field("database", &self.shared.database)
            .field("lake", &self.shared.lake.root().as_str())
            .finish()
    }
}

/// DataFusion's optimizer rules with Strata's own among them.
fn optimizer_rules() -> Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> {
    let mut rules = crate::date_comparisons::DateComparisons::with_default_rules();
    // Inserted right after DataFusion's filter pushdown, each before the one inserted before
    // it: the last one here runs first.
    crate::join_rules::early_grouping::GroupBeforeDimensions::insert(&mut rules);
    crate::join_rules::semi_placement::SemiJoinPlacement::insert(&mut rules);
    crate::join_rules::grouped::KeysBeforeGrouping::insert(&mut rules);
    crate::join_rules::dimensions::DimensionKeysFirst::insert(&mut rules);
    rules
}

/// A DataFusion session with Strata's SQL semantics: its analyzer and optimizer rules and its
/// operators (add [`crate::functions::all`] to it). Every process that plans or runs a
/// Strata query builds its session with this: the warehouse, and a cluster's scheduler and
/// executors.
pub fn session_builder(config: SessionConfig) -> SessionStateBuilder {
    let mut builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_analyzer_rules(TrueDivision::with_default_rules())
        .with_optimizer_rules(optimizer_rules());
    if let Some(planners) = builder.expr_planners() {
        planners.insert(0, Arc::new(crate::semantics::WarehouseOperators));
    }
    builder
}

/// Below this size (or row count) a hash join's build side is collected once and shared by
/// every partition of the probe side, which is then read where it is, not shuffled by key.
/// DataFusion's defaults (1 MiB, 128k rows) suit many cores; on the few cores of one machine
/// the shuffle of a large probe side costs more than building a table of a few million rows
/// on one thread (TPC-H at scale 1 on 2 cores: 6% less time in all, q05 and q07 up to 25%).
const COLLECTED_JOIN_SIDE_BYTES: usize = 32 << 20;
const COLLECTED_JOIN_SIDE_ROWS: usize = 2_000_000;

/// Strata's defaults for DataFusion's settings that were not set by a `DATAFUSION_*`
/// variable.
fn collect_small_join_sides(config: &mut SessionConfig) {
    let optimizer = &mut config.options_mut().optimizer;
    if std::env::var_os("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD").is_none() {
        optimizer.hash_join_single_partition_threshold = COLLECTED_JOIN_SIDE_BYTES;
    }
    if std::env::var_os("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD_ROWS").is_none()
    {
        optimizer.hash_join_single_partition_threshold_rows = COLLECTED_JOIN_SIDE_ROWS;
    }
}

/// Only queries: models and `show` must not create, drop or change anything by themselves.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl EmbeddedWarehouse {
    /// Open the warehouse of a target.
    pub fn open(options: WarehouseOptions, meta: Arc<MetaStore>) -> Result<Self> {
        let lake = Lake::parse(&options.lake)?;
        // DataFusion's own settings may be tuned from the environment
        // (DATAFUSION_EXECUTION_BATCH_SIZE=16384, …), as in datafusion-cli.
        let base = SessionConfig::from_env().map_err(|e| {
            Error::user(format!("a DATAFUSION_* environment variable is wrong: {e}"))
        })?;
        let mut config = base
            .with_default_catalog_and_schema(&options.database, &options.default_schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        if let Some(n) = options.target_partitions {
            config = config.with_target_partitions(n.max(1));
        }
        collect_small_join_sides(&mut config);
        if let Some(d) = &options.distributor {
            d.configure(&mut config);
        }
        // A cluster's executors plan what they run: only a query run here shares its
        // repeated parts.
        let planner: Arc<dyn QueryPlanner + Send + Sync> = match options.distributor {
            Some(_) => DeltaPlanner::new(),
            None => Arc::new(crate::reuse::ReusingPlanner),
        };
        let state = session_builder(config).with_query_planner(planner).build();
        let ctx = SessionContext::new_with_state(state);
        stage::register(&ctx)?;
        crate::functions::register(&ctx);
        let mut shared = CatalogShared::new(options.database.clone(), lake, meta, options.sources);
        shared.files_only = options.distributor.is_some();
        let shared = Arc::new(shared);
        *shared.state.lock() = ctx.state_weak_ref();
        ctx.register_catalog(
            &options.database,
            Arc::new(LakeCatalog {
                shared: shared.clone(),
            }),
        );
        ctx.register_udtf(
            "table_at_version",
            Arc::new(time_travel::TableAtVersion {
                shared: shared.clone(),
                default_schema: options.default_schema.clone(),
            }),
        );
        Ok(Self {
            ctx,
            shared,
            writable: tokio::sync::OnceCell::new(),
            distributor: options.distributor,
        })
    }

    /// Make another target's relations readable under the catalog name `alias` (for
    /// `--defer`): its lake and metadata store, read-only.
    pub fn attach(
        &self,
        alias: &str,
        database: &str,
        lake: &str,
        meta: Arc<MetaStore>,
        sources: Vec<ExternalSource>,
    ) -> Result<()> {
        let mut shared =
            CatalogShared::new(database.to_string(), Lake::parse(lake)?, meta, sources);
        shared.rename = Some((
            format!("{}.", strata_common::quote_ident(database)),
            format!("{}.", strata_common::quote_ident(alias)),
        ));
        let shared = Arc::new(shared);
        *shared.state.lock() = self.ctx.state_weak_ref();
        self.ctx
            .register_catalog(alias, Arc::new(LakeCatalog { shared }));
        Ok(())
    }

    /// The Delta table a relation is stored in (tables only).
    async fn delta_table(&self, relation: &strata_common::Relation) -> Result<DeltaTable> {
        let (schema, name) = (&relation.schema, &relation.identifier);
        let record = self
            .shared
            .meta
            .relation(&self.shared.database, schema, name)?;
        if record
            .as_ref()
            .is_some_and(|r| r.kind == RelationKind::View)
        {
            return Err(
                Error::user(format!("{relation} is a view; only tables have versions")).with_hint(
                    "make the model a table (`materialized: table`) to keep its history",
                ),
            );
        }
        let table = self.shared.lake.table(schema, name)?;
        if !self.shared.lake.table_exists(&table).await? {
            return Err(
                Error::user(format!("{relation} has not been built in this target"))
                    .with_hint("build it first with `strata run --select <model>`"),
            );
        }
        damage::open_checked(&table)
            .await?
            .ok_or_else(|| Error::Internal(format!("{} has no Delta log", table.display)))
    }

    /// The relations a query names (schema, name): views count as themselves, not as what
    /// they read; CTEs are not relations. A query that does not plan is an error.
    pub async fn relations_read(&self, sql: &str) -> Result<Vec<(String, String)>> {
        // Plan it first: a query that cannot run is refused as it is.
        self.plan(sql).await?;
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        let default_schema = state.config_options().catalog.default_schema.clone();
        let mut out: Vec<(String, String)> = Vec::new();
        for r in state.resolve_table_references(&statement)? {
            let entry = (
                r.schema().unwrap_or(&default_schema).to_string(),
                r.table().to_string(),
            );
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// The versions of a table, newest first: time, operation, rows written, run.
    pub async fn history(&self, relation: &strata_common::Relation) -> Result<Vec<TableVersion>> {
        let table = self.delta_table(relation).await?;
        let latest = table.version().unwrap_or(0);
        let infos: Vec<deltalake::kernel::CommitInfo> = table.history(None).try_collect().await?;
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(i, info)| TableVersion {
                version: latest.saturating_sub(i as u64),
                timestamp: info
                    .timestamp
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                operation: info.operation.clone().unwrap_or_default(),
                rows_written: info
                    .info
                    .get("operationMetrics")
                    .and_then(|m| m.get("num_added_rows"))
                    .and_then(|v| v.as_u64()),
                run_id: info
                    .info
                    .get("strata.run_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            })
            .collect())
    }

    /// Make `version` the current content of a table again, as a new version (Delta RESTORE).
    /// Returns the new version.
    pub async fn rollback(&self, relation: &strata_common::Relation, version: u64) -> Result<u64> {
        self.ready_to_write().await?;
        let table = self.delta_table(relation).await?;
        let latest = table.version().unwrap_or(0);
        if version > latest {
            return Err(Error::user(format!(
                "{relation} has versions 0 to {latest}; there is no version {version}"
            ))
            .with_hint("see them with `strata history <model>`"));
        }
        let (table, _metrics) = table.restore().with_version_to_restore(version).await?;
        self.shared
            .invalidate(&relation.schema, &relation.identifier);
        Ok(table.version().unwrap_or(0))
    }

    /// Compact a table's small files into larger ones (and z-order them by `zorder` columns),
    /// in one commit. Returns (files added, files removed).
    pub async fn optimize(
        &self,
        relation: &strata_common::Relation,
        zorder: Vec<String>,
    ) -> Result<(u64, u64)> {
        self.ready_to_write().await?;
        let table = self.delta_table(relation).await?;
        let builder = table.optimize();
        let builder = if zorder.is_empty() {
            builder
        } else {
            builder.with_type(deltalake::operations::optimize::OptimizeType::ZOrder(
                zorder,
            ))
        };
        let (_, metrics) = builder.await?;
        self.shared
            .invalidate(&relation.schema, &relation.identifier);
        Ok((metrics.num_files_added, metrics.num_files_removed))
    }

    /// Delete files no version newer than the retention period needs. Shorter periods than
    /// the table's `delta.deletedFileRetentionDuration` (7 days by default) are refused, so
    /// readers of recent versions never lose files. Returns the files deleted (or that would
    /// be, with `dry_run`).
    pub async fn vacuum(
        &self,
        relation: &strata_common::Relation,
        retain_hours: Option<i64>,
        dry_run: bool,
    ) -> Result<Vec<String>> {
        self.ready_to_write().await?;
        let table = self.delta_table(relation).await?;
        let mut builder = table
            .vacuum()
            .with_dry_run(dry_run)
            .with_enforce_retention_duration(true);
        if let Some(h) = retain_hours {
            builder = builder.with_retention_period(chrono::Duration::hours(h));
        }
        let (_, metrics) = builder.await.map_err(|e| {
            if e.to_string().contains("Invalid retention period") {
                Error::user(format!("{relation}: {e}")).with_hint(
                    "a shorter retention could delete files that readers of recent versions still use; \
                     keep at least the table's retention (168 hours by default)",
                )
            } else {
                Error::Delta(e)
            }
        })?;
        Ok(metrics.files_deleted)
    }

    /// Read every Delta table through `wrapper` from now on (a server's cache); only the first
    /// wrapper set counts. Set it before the first query: providers opened earlier stay.
    pub fn wrap_tables(&self, wrapper: TableWrapper) {
        let _ = self.shared.wrapper.set(catalog::Wrapper(wrapper));
    }

    /// The DataFusion session, for callers that need more than [`Warehouse`] offers.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The metadata store.
    pub fn meta(&self) -> &Arc<MetaStore> {
        &self.shared.meta
    }

    async fn plan(&self, sql: &str) -> Result<DataFrame> {
        let mut sql = crate::literals::wide_integers_as_decimals(sql).into_owned();
        let mut planned = self.ctx.sql_with_options(&sql, read_only()).await;
        // Select-list aliases used later in the same SELECT (see `lateral`).
        for _ in 0..crate::lateral::MAX_REWRITES {
            let Err(e) = &planned else { break };
            let Some(rewritten) = crate::lateral::retry_with_alias_inlined(&sql, e) else {
                break;
            };
            sql = rewritten;
            planned = self.ctx.sql_with_options(&sql, read_only()).await;
        }
        planned
            .map_err(|e| {
                let text = crate::error::describe_datafusion_error(&e);
                if ["DML not supported", "DDL not supported", "Statement not supported"]
                    .iter()
                    .any(|p| text.starts_with(p))
                {
                    Error::user(format!("only queries can run here ({text})")).with_hint(
                        "a model, a test and `show` are one SELECT; to change a table, use a hook: post_hook=\"delete from {{ this }} where ...\"",
                    )
                } else {
                    Error::from(e)
                }
            })
    }

    /// Analyse a plan in Strata's session (its SQL semantics, DataFusion's type coercion)
    /// without optimising it: the writer optimises what it is given, and optimising twice
    /// can break plans (common subexpressions lose their casts).
    fn analyzed(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        let state = self.ctx.state();
        Ok(state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})?)
    }

    /// The plan to execute for `plan` (analysed): itself, or where a [`Distributor`] is set,
    /// its rows computed there. The plan it is handed is optimized (subqueries decorrelated
    /// into joins, which a plan can be sent as).
    fn distributed(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        match &self.distributor {
            Some(d) => d.distribute(self.ctx.state().optimize(&plan)?),
            None => Ok(plan),
        }
    }

    /// Before the first write of this process: the lake is writable, and written by this
    /// target's metadata store only (see [`Lake::claim`]).
    async fn ready_to_write(&self) -> Result<()> {
        self.writable
            .get_or_try_init(|| async {
                self.shared.lake.ensure_writable().await?;
                // Change sets a killed writer spilled are of no use to anyone now (this
                // process holds the target's lock).
                self.shared.lake.clear_local_spills();
                let meta = &self.shared.meta;
                self.shared
                    .lake
                    .claim(&meta.catalog_id()?, &meta.path().display().to_string())
                    .await
            })
            .await?;
        Ok(())
    }

    /// Run a query once and keep its rows for the write that follows (see [`stage`]).
    async fn stage(&self, plan: datafusion::logical_expr::LogicalPlan) -> Result<stage::Staged> {
        stage::stage(
            &self.ctx,
            self.distributed(self.analyzed(plan)?)?,
            stage::MEMORY_ROWS,
            &self.shared.lake.spill_dir(),
        )
        .await
    }

    /// Run a model's query once and keep its rows (see [`stage`]).
    async fn stage_sql(&self, sql: &str) -> Result<stage::Staged> {
        let df = self.plan(sql).await?;
        self.stage(df.logical_plan().clone()).await
    }

    /// Record a relation just built in the catalog.
    /// Tables are recorded with their place relative to the lake; views with their SQL.
    fn record(
        &self,
        target: &WriteTarget<'_>,
        kind: RelationKind,
        location: &lake::TableLocation,
        sql: Option<String>,
    ) -> Result<()> {
        self.shared.meta.upsert_relation(&RelationRecord {
            database: self.shared.database.clone(),
            schema: target.relation.schema.clone(),
            name: target.relation.identifier.clone(),
            kind,
            location: (kind == RelationKind::Table).then(|| location.relative.clone()),
            sql,
            unique_id: Some(target.unique_id.to_string()),
            run_id: Some(target.run_id.to_string()),
            updated_at: now(),
        })?;
        Ok(())
    }

    async fn build_view(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        let df = self.plan(&req.sql).await?;
        let (schema, name) = (&req.relation.schema, &req.relation.identifier);
        let location = self.shared.lake.table(schema, name)?;
        self.ready_to_write().await?;
        let previous = self
            .shared
            .meta
            .relation(&self.shared.database, schema, name)?;
        self.record(
            &WriteTarget::of(req),
            RelationKind::View,
            &location,
            Some(req.sql.clone()),
        )?;
        self.shared.invalidate(schema, name);
        self.shared
            .record_reads(&self.ctx.state(), schema, name, &req.sql);
        self.shared.remember(
            schema,
            name,
            Arc::new(ViewTable::new(
                df.logical_plan().clone(),
                Some(req.sql.clone()),
            )),
        );
        // A table that this view replaces is dropped, as a warehouse would.
        let was_table = previous
            .as_ref()
            .is_some_and(|p| p.kind == RelationKind::Table)
            || self.shared.lake.table_exists(&location).await?;
        if was_table {
            self.shared.lake.remove_table(&location).await?;
        }
        Ok(MaterializeOutcome {
            rows_affected: None,
            version: None,
            message: "CREATE VIEW".into(),
            observed: Vec::new(),
            quarantined: 0,
        })
    }

    async fn build_table(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        if !req.observers.is_empty() {
            return Box::pin(self.build_observed(req)).await;
        }
        let df = self.plan(&req.sql).await?;
        self.write_table(&WriteTarget::of(req), df.logical_plan().clone())
            .await
    }

    /// Replace a table with the result of a plan, in one commit.
    async fn write_table(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<MaterializeOutcome> {
        self.write_with_mode(target, plan, SaveMode::Overwrite)
            .await
    }

    /// Replace the rows of a table matching `predicate` with the result of a plan, in one
    /// commit (the plan's rows must all match it).
    async fn write_replacing(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
        predicate: String,
    ) -> Result<MaterializeOutcome> {
        self.write_plan(target, plan, SaveMode::Overwrite, Some(predicate))
            .await
    }

    /// Write a plan to a table in one commit: replace it (`Overwrite`, schema replaced) or add
    /// to it (`Append`, new columns merged in).
    async fn write_with_mode(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
        mode: SaveMode,
    ) -> Result<MaterializeOutcome> {
        self.write_plan(target, plan, mode, None).await
    }

    async fn write_plan(
        &self,
        target: &WriteTarget<'_>,
        plan: datafusion::logical_expr::LogicalPlan,
        mode: SaveMode,
        replace_where: Option<String>,
    ) -> Result<MaterializeOutcome> {
        let (schema, name) = (&target.relation.schema, &target.relation.identifier);
        let location = self.shared.lake.table(schema, name)?;
        // Analyse in Strata's own DataFusion session, so its SQL semantics apply to what is
        // written exactly as they apply to queries; the table's columns accept NULLs.
        let plan = crate::semantics::nullable_columns(self.distributed(self.analyzed(plan)?)?)?;
        if let Some(f) = plan.schema().fields().iter().find(|f| {
            matches!(f.data_type(), DataType::Decimal256(..))
                || matches!(f.data_type(), DataType::Decimal128(p, _) if *p > 38)
        }) {
            return Err(Error::user(format!(
                "{}: column `{}` is {}, but Delta Lake stores decimals of at most 38 digits",
                location.display,
                f.name(),
                crate::types::sql_type(f.data_type())
            ))
            .with_hint("cast it to decimal(38, s) or to double in the query"));
        }
        if plan.schema().fields().is_empty() {
            return Err(Error::user(format!(
                "{}: the query returns no columns; a table needs at least one",
                location.display
            )));
        }
        self.ready_to_write().await?;
        let mut exists = self.shared.lake.table_exists(&location).await?;
        let loaded = match self.shared.loaded_table(schema, name) {
            Some(t) => Some(t),
            None if exists => match damage::open_checked(&location).await {
                // A full refresh replaces a table whose log is damaged: nothing of it can be
                // read, and the rebuild brings every row back from the inputs.
                Err(Error::DamagedLog(why))
                    if target.replace_damaged && replace_where.is_none() =>
                {
                    tracing::warn!("replacing {}: {}", location.display, why.message);
                    self.shared.lake.remove_table(&location).await?;
                    self.shared.invalidate(schema, name);
                    exists = false;
                    None
                }
                other => other?,
            },
            None => None,
        };
        let table = if let Some(t) = loaded.filter(|_| exists) {
            t
        } else {
            // A new table: the first write creates it, in the same commit as its data.
            deltalake::DeltaTableBuilder::from_url(location.url.clone())?.build()?
        };
        let guard = begin_write(&table, &location, exists).await?;
        let write_id = uuid::Uuid::new_v4().to_string();
        let mut builder = table
            .write(Vec::<RecordBatch>::new())
            .with_input_plan(plan)
            .with_save_mode(mode)
            .with_session_state(Arc::new(self.ctx.state()))
            .with_commit_properties(commit_properties(target, &write_id));
        if let Some(size) = target.file_size {
            builder = builder.with_configuration([
                ("delta.targetFileSize".to_string(), Some(size.to_string())),
                // Merged tables take many small commits: a checkpoint every 10 keeps opening
                // them (replaying the log) cheap.
                (
                    "delta.checkpointInterval".to_string(),
                    Some(MERGED_TABLE_CHECKPOINT_INTERVAL.to_string()),
                ),
            ]);
        }
        // A period replaced also checks rows against the period: a failed check is then not
        // (only) about NULLs.
        let only_null_checks = replace_where.is_none();
        builder = match replace_where {
            // Part of the table is replaced: its layout and columns stay.
            Some(p) if exists => builder.with_replace_where(p),
            // A new table is created with its layout, its rows checked against the predicate.
            Some(p) => builder
                .with_replace_where(p)
                .with_partition_columns(target.partition_by.iter().cloned()),
            // Rows added to a table keep its layout.
            None if exists && mode == SaveMode::Append => {
                builder.with_schema_mode(SchemaMode::Merge)
            }
            None => builder
                .with_partition_columns(target.partition_by.iter().cloned())
                .with_schema_mode(if mode == SaveMode::Append {
                    SchemaMode::Merge
                } else {
                    SchemaMode::Overwrite
                }),
        };
        let written = builder.await.map(|t| (t, ()));
        let settled = settle(guard, &location, &write_id, written, only_null_checks).await?;
        let version = settled.table.version();
        let rows = last_commit_rows(&settled.table).await;
        self.record(target, RelationKind::Table, &location, None)?;
        self.shared.invalidate(schema, name);
        self.shared
            .remember_table(schema, name, settled.table)
            .await?;
        let mut message = match rows {
            Some(n) => format!("SELECT {n}"),
            None => "OK".into(),
        };
        if let Some(w) = settled.warning {
            message = format!("{message} ({w})");
        }
        Ok(MaterializeOutcome {
            rows_affected: rows,
            version,
            message,
            observed: Vec::new(),
            quarantined: 0,
        })
    }
}

impl EmbeddedWarehouse {
    /// Change an existing table with a delta-rs operation (merge, delete, update) given the
    /// table and the commit's metadata, in one commit through the write guard; the catalog
    /// records the write.
    async fn change_table<T, F, Fut>(&self, target: &WriteTarget<'_>, op: F) -> Result<Settled<T>>
    where
        F: FnOnce(DeltaTable, CommitProperties) -> Fut,
        Fut: std::future::Future<Output = deltalake::DeltaResult<(DeltaTable, T)>>,
    {
        self.ready_to_write().await?;
        let (schema, name) = (&target.relation.schema, &target.relation.identifier);
        let location = self.shared.lake.table(schema, name)?;
        let table = match self.shared.loaded_table(schema, name) {
            Some(t) => t,
            None => damage::open_checked(&location)
                .await?
                .ok_or_else(|| Error::Internal(format!("{} has no Delta log", location.display)))?,
        };
        let guard = begin_write(&table, &location, true).await?;
        let write_id = uuid::Uuid::new_v4().to_string();
        let result = op(table, commit_properties(target, &write_id)).await;
        let settled = settle(guard, &location, &write_id, result, true).await?;
        self.record(target, RelationKind::Table, &location, None)?;
        self.shared.invalidate(schema, name);
        self.shared
            .remember_table(schema, name, settled.table.clone())
            .await?;
        Ok(settled)
    }
}

/// What a table write needs to know about its node.
#[derive(Clone, Copy)]
struct WriteTarget<'a> {
    unique_id: &'a str,
    run_id: &'a str,
    relation: &'a strata_common::Relation,
    partition_by: &'a [String],
    /// `delta.targetFileSize` of a table the write creates, in bytes.
    file_size: Option<u64>,
    /// `--full-refresh`: a table with a damaged log is replaced (its history with it).
    replace_damaged: bool,
    /// A Delta application transaction (`txn`: app id, version) the commit carries, so what
    /// it loaded is known exactly when the commit is in the table (ingestion).
    txn: Option<(&'a str, i64)>,
}

/// Data file size of tables that merges rewrite (incremental models, snapshots): a merge
/// rewrites every file holding a changed row, so smaller files mean less to rewrite.
/// Delta's default (100 MiB) suits tables that are only ever replaced.
const MERGED_TABLE_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// Commits between checkpoints of merged tables (Delta's default is 100).
const MERGED_TABLE_CHECKPOINT_INTERVAL: u64 = 10;

impl<'a> WriteTarget<'a> {
    fn of(req: &'a MaterializeRequest) -> Self {
        let merged = matches!(
            req.materialization,
            Materialization::Incremental | Materialization::Snapshot
        );
        Self {
            unique_id: &req.unique_id,
            run_id: &req.run_id,
            relation: &req.relation,
            partition_by: &req.partition_by,
            file_size: req
                .target_file_size
                .or(merged.then_some(MERGED_TABLE_FILE_SIZE)),
            replace_damaged: req.full_refresh,
            txn: req.txn.as_ref().map(|(app, v)| (app.as_str(), *v)),
        }
    }
}

/// Start guarding a write to a table (`exists`: it has a committed version, `table`): files
/// of an earlier killed write are removed first.
async fn begin_write(
    table: &DeltaTable,
    location: &lake::TableLocation,
    exists: bool,
) -> Result<WriteGuard> {
    WriteGuard::begin(table, location.dir.clone(), exists)
        .await
        .map_err(|e| {
            Error::user(format!("cannot write {}: {e}", location.url))
                .with_hint("check that the lake is writable")
        })
}

/// A guarded write that committed.
struct Settled<T> {
    /// The table at the write's version.
    pub table: DeltaTable,
    /// What the operation reported (absent when it failed after committing).
    pub done: Option<T>,
    /// Why the write reported an error though it committed.
    pub warning: Option<String>,
}

/// End a guarded write. On error the table's log is read again: delta-rs can fail after the
/// commit (a checkpoint, log cleanup), and then the write did happen — its files stay and it
/// is reported as done, with a warning. Otherwise what the write left behind is removed.
/// With `only_null_checks` (no period check), a failed row check names the table's NOT NULL
/// columns.
async fn settle<T>(
    guard: WriteGuard,
    location: &lake::TableLocation,
    write_id: &str,
    result: deltalake::DeltaResult<(DeltaTable, T)>,
    only_null_checks: bool,
) -> Result<Settled<T>> {
    let error = match result {
        Ok((table, done)) => {
            guard.finish().await;
            return Ok(Settled {
                table,
                done: Some(done),
                warning: None,
            });
        }
        Err(e) => e,
    };
    let mut not_null: Vec<String> = Vec::new();
    match lake::open_delta(location.url.clone()).await {
        Ok(now) => {
            guard.fail(Ok(now.as_ref())).await;
            if let Some(t) = &now
                && let Ok(snapshot) = t.snapshot()
            {
                not_null = snapshot
                    .schema()
                    .fields()
                    .filter(|f| !f.is_nullable())
                    .map(|f| f.name().to_string())
                    .collect();
            }
            if let Some(table) = now
                && written_by(&table, write_id).await
            {
                return Ok(Settled {
                    table,
                    done: None,
                    warning: Some(format!(
                        "committed; a step after the commit failed: {error}"
                    )),
                });
            }
        }
        Err(_) => guard.fail(Err(())).await,
    }
    let error = delta_write_error(error);
    let text = error.to_string();
    if only_null_checks && text.contains("Invalid data found") && !not_null.is_empty() {
        let rows = text
            .split_once("Invalid data found: ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or("some");
        return Err(Error::user(format!(
            "{}: {rows} rows put NULL into a NOT NULL column ({}); the table took NOT NULL from the query of its first build",
            location.display,
            not_null.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        ))
        .with_hint(format!(
            "rebuild it with `--full-refresh` (tables are now created with nullable columns), or give the column a value in the query (coalesce({}, ...) or a cast)",
            not_null[0]
        )));
    }
    let place = match &location.dir {
        Some(dir) => format!("the table {} ({})", location.display, dir.display()),
        None => format!("the table {}", location.display),
    };
    match strata_common::storage_problem(&error.to_string(), &place) {
        Some((message, hint)) => Err(Error::user(message).with_hint(hint)),
        None => Err(error),
    }
}

/// Whether the table's latest commit is the write `write_id`.
async fn written_by(table: &DeltaTable, write_id: &str) -> bool {
    let mut history = table.history(Some(1));
    matches!(
        history.try_next().await,
        Ok(Some(info)) if info.info.get(WRITE_ID).and_then(|v| v.as_str()) == Some(write_id)
    )
}

/// Commit metadata key identifying one write.
const WRITE_ID: &str = "strata.write_id";

/// Commit metadata naming the run and node that wrote a version, and the write itself.
fn commit_properties(target: &WriteTarget<'_>, write_id: &str) -> CommitProperties {
    let properties = match target.txn {
        Some((app_id, version)) => CommitProperties::default()
            .with_application_transaction(deltalake::kernel::Transaction::new(app_id, version)),
        None => CommitProperties::default(),
    };
    properties.with_metadata([
        (
            "strata.run_id".to_string(),
            serde_json::json!(target.run_id),
        ),
        (
            "strata.node".to_string(),
            serde_json::json!(target.unique_id),
        ),
        (WRITE_ID.to_string(), serde_json::json!(write_id)),
    ])
}

fn delta_write_error(e: deltalake::DeltaTableError) -> Error {
    match e {
        deltalake::DeltaTableError::Arrow { source } => Error::Sql(source.to_string()),
        other => {
            let text = other.to_string();
            // Query failures surface through the writer; show them as SQL errors.
            if text.contains("DataFusion")
                || text.contains("Arrow error")
                || text.contains("Execution error")
            {
                Error::Sql(text)
            } else {
                Error::Delta(other)
            }
        }
    }
}

async fn last_commit_rows(table: &DeltaTable) -> Option<u64> {
    let mut history = table.history(Some(1));
    let info = history.try_next().await.ok().flatten()?;
    info.info
        .get("operationMetrics")
        .and_then(|m| m.get("num_added_rows"))
        .and_then(|v| v.as_u64())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[async_trait]
impl Warehouse for EmbeddedWarehouse {
    async fn materialize(&self, request: &MaterializeRequest) -> Result<MaterializeOutcome> {
        if let Some(q) = &request.quarantine {
            return self.build_quarantined(request, q).await;
        }
        match request.materialization {
            Materialization::Table => self.build_table(request).await,
            Materialization::View => self.build_view(request).await,
            Materialization::Incremental => self.build_incremental(request).await,
            Materialization::Snapshot => self.build_snapshot(request).await,
        }
    }

    async fn load_seed(&self, req: &SeedRequest) -> Result<MaterializeOutcome> {
        let target = WriteTarget {
            unique_id: &req.unique_id,
            run_id: &req.run_id,
            relation: &req.relation,
            partition_by: &[],
            file_size: None,
            replace_damaged: req.full_refresh,
            txn: None,
        };
        let plan = seed::plan(&self.ctx, req).await?;
        self.write_table(&target, plan).await.map_err(|e| match e {
            Error::Sql(msg) => Error::Sql(format!("{}: {msg}", req.display_path)),
            other => other,
        })
    }

    async fn append(&self, request: &MaterializeRequest) -> Result<MaterializeOutcome> {
        let df = self.plan(&request.sql).await?;
        self.write_with_mode(
            &WriteTarget::of(request),
            df.logical_plan().clone(),
            SaveMode::Append,
        )
        .await
    }

    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<SendableRecordBatchStream> {
        let mut df = self.plan(sql).await?;
        if let Some(n) = limit {
            df = df.limit(0, Some(n))?;
        }
        if self.distributor.is_some() {
            let plan = self.distributed(self.analyzed(df.logical_plan().clone())?)?;
            df = DataFrame::new(self.ctx.state(), plan);
        }
        Ok(df.execute_stream().await?)
    }

    async fn execute(&self, sql: &str, context: &crate::StatementContext) -> Result<Vec<String>> {
        self.run_statements(sql, context).await
    }

    fn introspector(&self) -> Option<Arc<dyn strata_common::Introspector>> {
        Some(Arc::new(introspect::SqlIntrospector::new(self.clone())))
    }

    async fn describe(&self, sql: &str) -> Result<SchemaRef> {
        let df = self.plan(sql).await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }
}
