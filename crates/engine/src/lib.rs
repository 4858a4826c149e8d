//! Where models are built: the [`Warehouse`] trait and Strata's embedded warehouse, DataFusion
//! over Delta Lake tables in a local folder or on S3, with a SQLite catalog. The warehouse
//! knows relations and SQL, never project files or the DAG (that is `strata-runner`'s).
//!
//! Invariants:
//! - A table is replaced in one Delta commit. A failed or killed build leaves the previous
//!   version readable, and a failed build leaves no files behind.
//! - A view is recorded in the metadata store only after its SQL plans.
//! - Every relation a query names is resolved through the target's own catalog, so two targets
//!   never see each other's tables.

pub mod date_comparisons;
pub mod embedded;
pub mod error;
pub mod functions;
pub mod join_rules;
pub mod lateral;
pub mod literals;
pub mod reuse;
pub mod semantics;
pub mod snapshot_sql;
mod table_sizes;
pub mod types;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use strata_common::Relation;
pub use strata_common::words::{
    HardDeletes, IncrementalStrategy, OnSchemaChange, SnapshotStrategy,
};

pub use embedded::{
    Distributor, EmbeddedWarehouse, ExternalSource, LakeFile, LakeFiles, STAGED_CATALOG,
    TableWrapper, WarehouseOptions, session_builder,
};
pub use error::{Error, Result};

/// How a model is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Materialization {
    /// A table, rebuilt in full.
    Table,
    /// A view, stored as SQL.
    View,
    /// A table that new rows are added to (`append`) or merged into by key (`merge`,
    /// `delete+insert`), one commit per run; built in full the first time and with
    /// `--full-refresh`.
    Incremental,
    /// A snapshot: the history of a query's rows, one version per change (SCD type 2).
    Snapshot,
}

impl Materialization {
    /// Parse a `materialized` config value; `None` for ones the warehouse does not build
    /// itself (`ephemeral` is inlined by the compiler).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Self::Table),
            "view" => Some(Self::View),
            "incremental" => Some(Self::Incremental),
            "snapshot" => Some(Self::Snapshot),
            _ => None,
        }
    }
}

/// A request to build one relation.
#[derive(Debug, Clone)]
pub struct MaterializeRequest {
    /// The node building it.
    pub unique_id: String,
    /// Where.
    pub relation: Relation,
    /// How.
    pub materialization: Materialization,
    /// The compiled `SELECT`.
    pub sql: String,
    /// The run building it.
    pub run_id: String,
    /// Columns a table is partitioned by (`partition_by`), one folder per value.
    pub partition_by: Vec<String>,
    /// Incremental models: `append`, `merge` or `delete+insert`.
    pub incremental_strategy: Option<IncrementalStrategy>,
    /// Incremental models: the key rows are matched on (`unique_key`).
    pub unique_key: Vec<String>,
    /// Rebuild incremental models in full.
    pub full_refresh: bool,
    /// Incremental merges: only these columns are updated (`merge_update_columns`).
    pub merge_update_columns: Vec<String>,
    /// Incremental merges: these columns are not updated (`merge_exclude_columns`).
    pub merge_exclude_columns: Vec<String>,
    /// Incremental models: what to do when the query's columns differ from the table's
    /// (`ignore`, `fail`, `append_new_columns`, `sync_all_columns`).
    pub on_schema_change: OnSchemaChange,
    /// Incremental merges: extra conditions on the match (`incremental_predicates`), SQL over
    /// `DBT_INTERNAL_DEST` (the table) and `DBT_INTERNAL_SOURCE` (the new rows).
    pub incremental_predicates: Vec<String>,
    /// Microbatch models: the batch this write replaces.
    pub batch: Option<Batch>,
    /// Snapshots: how changes are detected and recorded.
    pub snapshot: Option<SnapshotSpec>,
    /// The data file size of the table in bytes (`target_file_size`; default: 8 MiB for
    /// incremental models and snapshots, Delta's 100 MiB for tables).
    pub target_file_size: Option<u64>,
    /// Rows failing these checks are set aside instead of written (`quarantine:`).
    pub quarantine: Option<Quarantine>,
    /// A Delta application transaction (app id, version) the commit carries, so whether this
    /// write happened is known from the table alone.
    pub txn: Option<(String, i64)>,
    /// Queries (id, SQL) over the rows a table model writes, named [`OBSERVED_ROWS`]: they
    /// run on the rows as they stream to the write, so measuring them costs no second read.
    /// A query that fails is left out of the outcome; the write goes on.
    pub observers: Vec<(String, String)>,
}

/// The name observers read the rows being written by.
pub const OBSERVED_ROWS: &str = "strata_observed_rows";

/// Row checks of a table or incremental model, and where failing rows go: appended to
/// `relation` with the checks they failed (`strata_failed_checks`), the run
/// (`strata_run_id`) and the time (`strata_quarantined_at`), committed just before the
/// model's own commit. Quarantined rows of a run whose model commit never happened are
/// removed before the model's next write.
#[derive(Debug, Clone)]
pub struct Quarantine {
    /// `<schema>_quarantine.<model>`.
    pub relation: Relation,
    /// Each check's name and SQL that is true exactly when a row fails it.
    pub checks: Vec<(String, String)>,
}

impl Quarantine {
    /// SQL true when a row fails any check.
    pub fn failing(&self) -> String {
        self.checks
            .iter()
            .map(|(_, sql)| format!("({sql})"))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// SQL naming the checks a row fails, comma-separated.
    pub fn failed_names(&self) -> String {
        let cases: Vec<String> = self
            .checks
            .iter()
            .map(|(name, sql)| {
                format!(
                    "case when ({sql}) then {} end",
                    strata_common::quote_literal(name)
                )
            })
            .collect();
        format!("concat_ws(', ', {})", cases.join(", "))
    }
}

/// One batch of a microbatch model: the rows whose `event_time` is in `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The model's event-time column.
    pub event_time: String,
    /// The first instant of the batch (`YYYY-MM-DD HH:MM:SS`).
    pub start: String,
    /// The first instant after it.
    pub end: String,
}

/// How a snapshot finds changed rows and records their history (dbt's snapshot configs).
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    /// The columns identifying a record (`unique_key`).
    pub unique_key: Vec<String>,
    /// `timestamp` or `check`.
    pub strategy: SnapshotStrategy,
    /// `timestamp`: the column telling when a record last changed.
    pub updated_at: Option<String>,
    /// `check`: the columns compared, or empty for all of them (`check_cols: all`).
    pub check_cols: Vec<String>,
    /// Records gone from the source: `ignore`, `invalidate` or `new_record`.
    pub hard_deletes: HardDeletes,
    /// What `dbt_valid_to` holds for current rows, as SQL (NULL when unset).
    pub valid_to_current: Option<String>,
    /// When this snapshot run happened (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC).
    pub now: String,
}

impl MaterializeRequest {
    /// A request with no partitioning and no incremental options.
    pub fn new(
        unique_id: impl Into<String>,
        relation: Relation,
        materialization: Materialization,
        sql: impl Into<String>,
        run_id: impl Into<String>,
    ) -> Self {
        Self {
            unique_id: unique_id.into(),
            relation,
            materialization,
            sql: sql.into(),
            run_id: run_id.into(),
            partition_by: Vec::new(),
            incremental_strategy: None,
            unique_key: Vec::new(),
            full_refresh: false,
            merge_update_columns: Vec::new(),
            merge_exclude_columns: Vec::new(),
            on_schema_change: OnSchemaChange::Ignore,
            incremental_predicates: Vec::new(),
            batch: None,
            snapshot: None,
            target_file_size: None,
            quarantine: None,
            txn: None,
            observers: Vec::new(),
        }
    }
}

/// A request to load a CSV file as a table (a seed).
#[derive(Debug, Clone)]
pub struct SeedRequest {
    /// The seed's unique id.
    pub unique_id: String,
    /// Where to load it.
    pub relation: Relation,
    /// The CSV file.
    pub path: std::path::PathBuf,
    /// The file as the user knows it (`seeds/countries.csv`), for messages.
    pub display_path: String,
    /// The field delimiter.
    pub delimiter: u8,
    /// SQL types for columns that should not be inferred, by column name.
    pub column_types: Vec<(String, String)>,
    /// The run loading it.
    pub run_id: String,
    /// `--full-refresh`: a table whose Delta log is damaged is replaced instead of refused.
    pub full_refresh: bool,
}

/// Whom a statement's writes are recorded for (the commit's metadata).
#[derive(Debug, Clone)]
pub struct StatementContext {
    /// The node (or run hook) running it.
    pub unique_id: String,
    /// The run.
    pub run_id: String,
}

/// What building a relation did.
#[derive(Debug, Clone)]
pub struct MaterializeOutcome {
    /// Rows written, for tables.
    pub rows_affected: Option<u64>,
    /// The Delta version written, for tables.
    pub version: Option<u64>,
    /// A short status, such as `CREATE VIEW` or `SELECT 42`.
    pub message: String,
    /// Rows set aside by the request's `quarantine`.
    pub quarantined: u64,
    /// What each of the request's `observers` returned, by id (those that ran).
    pub observed: Vec<(String, Vec<datafusion::arrow::record_batch::RecordBatch>)>,
}

/// A warehouse that can build relations and answer queries.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Build (or rebuild) one relation from a query.
    async fn materialize(&self, request: &MaterializeRequest) -> Result<MaterializeOutcome>;

    /// Add the rows of a query to a table (creating it), in one commit; columns the table
    /// lacks are added. Used to keep the history of test failures.
    async fn append(&self, request: &MaterializeRequest) -> Result<MaterializeOutcome>;

    /// Load a CSV file as a table, inferring column types as dbt does, in one commit.
    async fn load_seed(&self, request: &SeedRequest) -> Result<MaterializeOutcome>;

    /// Run a read-only query, streaming its result (at most `limit` rows when given).
    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<SendableRecordBatchStream>;

    /// Plan a read-only query and return its output schema without running it.
    async fn describe(&self, sql: &str) -> Result<SchemaRef>;

    /// Run SQL statements (a hook's): queries, and `insert into`, `delete from`, `update`,
    /// `merge into` on tables of this target, each one commit. Returns one status per
    /// statement (`INSERT 3`).
    async fn execute(&self, sql: &str, context: &StatementContext) -> Result<Vec<String>>;

    /// Make `grants` ((privilege, grantee) pairs, from the `grants` config) the privileges
    /// on a relation just built, revoking others, as dbt does. The embedded warehouse keeps
    /// them in the metadata store for the serving roles, so this does nothing there.
    async fn apply_grants(&self, _relation: &Relation, _grants: &[(String, String)]) -> Result<()> {
        Ok(())
    }

    /// A relation's columns as (name, SQL type in the warehouse's own words), in order; `None`
    /// when it does not exist. For catalogs (`docs generate`).
    async fn columns(&self, relation: &Relation) -> Result<Option<Vec<(String, String)>>> {
        match self.describe(&format!("select * from {relation}")).await {
            Ok(schema) => Ok(Some(
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), types::sql_type(f.data_type())))
                    .collect(),
            )),
            Err(_) => Ok(None),
        }
    }

    /// A handle templates use to run queries while compiling (`run_query`, `statement`).
    fn introspector(&self) -> Option<std::sync::Arc<dyn strata_common::Introspector>> {
        None
    }
}
