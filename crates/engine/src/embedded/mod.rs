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
mod maintenance;
mod observe;
mod quarantine;
mod seed;
mod snapshot;
mod stage;
mod statement;
mod time_travel;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{QueryPlanner, SQLOptions, SessionContext};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionConfig};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use deltalake::protocol::SaveMode;
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
pub use introspect::rows_of;
pub use maintenance::TableVersion;
pub use seed::seed_columns;
use write::WriteTarget;

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
