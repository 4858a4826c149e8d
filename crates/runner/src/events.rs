//! What a run reports as it goes, to status lines, progress bars and JSON logs.

use crate::results::NodeResult;

/// Events a run reports as it goes.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The run starts with this many nodes.
    Started {
        /// Nodes to run.
        total: usize,
    },
    /// A node starts.
    NodeStarted {
        /// 1-based position in the run.
        index: usize,
        /// Nodes in the run.
        total: usize,
        /// Its unique id.
        unique_id: &'a str,
    },
    /// A batch of a microbatch model finished.
    Batch(BatchEvent<'a>),
    /// An `on-run-start` or `on-run-end` hook finished.
    Hook(HookEvent<'a>),
    /// A node finished (or was skipped).
    NodeFinished {
        /// 1-based position in the run.
        index: usize,
        /// Nodes in the run.
        total: usize,
        /// What happened.
        result: &'a NodeResult,
    },
}

/// One batch of a microbatch model finished (part of a node's work).
#[derive(Debug)]
pub struct BatchEvent<'a> {
    /// The model.
    pub unique_id: &'a str,
    /// Its relation, as printed.
    pub relation_name: &'a str,
    /// 1-based position among the model's batches.
    pub index: usize,
    /// Batches of the model in this run.
    pub total: usize,
    /// The batch's id (`20240101`).
    pub batch_id: &'a str,
    /// Whether it was written.
    pub ok: bool,
    /// Its status (`SELECT 12`) or error.
    pub message: &'a str,
    /// Seconds it took (retry included).
    pub seconds: f64,
}

/// A run hook finished.
#[derive(Debug)]
pub struct HookEvent<'a> {
    /// `on-run-start` or `on-run-end`.
    pub phase: &'a str,
    /// Its name (`shop-on-run-start-0`).
    pub name: &'a str,
    /// 1-based position among the phase's hooks.
    pub index: usize,
    /// Hooks of the phase.
    pub total: usize,
    /// Whether it ran without error.
    pub ok: bool,
    /// Its status (`INSERT 3`) or error.
    pub message: &'a str,
    /// Seconds it took.
    pub seconds: f64,
}

/// Receives [`RunEvent`]s (status lines, progress bars, JSON logs).
pub trait Reporter: Send + Sync {
    /// Handle one event.
    fn report(&self, event: RunEvent<'_>);
}

/// A reporter that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: RunEvent<'_>) {}
}
