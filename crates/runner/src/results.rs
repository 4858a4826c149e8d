//! What a run produced: each node's status and result, and the run's outcome.

use serde::Serialize;

/// What happened to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Built.
    Success,
    /// Failed to compile or build (or a test's query failed to run).
    Error,
    /// Not run because a parent failed (or the run stopped early).
    Skipped,
    /// A test found no failing rows.
    Pass,
    /// A test found failing rows (severity error).
    Fail,
    /// A test found failing rows (severity warn, or `warn_if` met).
    Warn,
}

impl NodeStatus {
    /// The word dbt writes in run results.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Success => "success",
            NodeStatus::Error => "error",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Pass => "pass",
            NodeStatus::Fail => "fail",
            NodeStatus::Warn => "warn",
        }
    }

    /// Whether the run should count this node as failed (its descendants are skipped).
    pub fn is_failure(self) -> bool {
        matches!(self, NodeStatus::Error | NodeStatus::Fail)
    }
}

/// The result of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// The node.
    pub unique_id: String,
    /// Its name.
    pub name: String,
    /// `model`, `seed` or `test`.
    pub resource_type: String,
    /// `schema.identifier`, as printed.
    pub relation_name: String,
    /// The full quoted relation.
    pub relation: String,
    /// `table`, `view`, ...
    pub materialized: String,
    /// What happened.
    pub status: NodeStatus,
    /// A short status (`SELECT 5`, `CREATE VIEW`) or the error.
    pub message: String,
    /// Seconds it took.
    pub seconds: f64,
    /// Rows written, for tables.
    pub rows_affected: Option<u64>,
    /// Failing rows, for tests.
    pub failures: Option<u64>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub completed_at: String,
    /// The compiled SQL, when it compiled.
    pub compiled_sql: Option<String>,
    /// For failures and skips: the model file, for the summary.
    pub file: String,
    /// For tests that found rows: the first few, as a JSON array of objects.
    #[serde(skip)]
    pub sample: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    /// The run's id.
    pub run_id: String,
    /// One entry per node, in completion order.
    pub results: Vec<NodeResult>,
    /// Seconds the run took.
    pub elapsed: f64,
    /// Whether an `on-run-start` or `on-run-end` hook failed.
    pub hooks_failed: bool,
    /// Whether the run was interrupted (SIGINT, SIGTERM): the nodes that were building are
    /// errors, their tables keep their previous version; the rest were skipped.
    pub cancelled: bool,
}

impl RunResults {
    /// Whether nothing failed (warnings do not count).
    pub fn success(&self) -> bool {
        !self.hooks_failed
            && !self.cancelled
            && self
                .results
                .iter()
                .all(|r| !r.status.is_failure() && r.status != NodeStatus::Skipped)
    }

    /// How many nodes ended with `status`.
    pub fn count(&self, status: NodeStatus) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }
}
