//! The DAG runner: runs the selected nodes of a project on a [`strata_engine::Warehouse`] —
//! models (with their hooks), microbatch models batch by batch, seeds, snapshots and data
//! tests — in dependency order, in parallel up to `threads`, and records every node's result.
//!
//! It is the execute-and-record end of the walk every command takes (load → render → plan →
//! execute → record): the project crate loads, renders and selects; the runner compiles each
//! node just before it runs, asks the warehouse to build it, judges tests, and records the run
//! in the metadata store. The warehouse knows relations and SQL, never project files.
//!
//! Invariants:
//! - A node runs only after every node of the run it depends on succeeded; a failure skips its
//!   descendants (a failing test skips what is below the node it tests).
//! - `on-run-start` runs before any node and a failure there runs nothing; `on-run-end` runs
//!   last, whatever happened.
//! - Every node ends with a status, recorded in the metadata store as it finishes.

pub mod contract;
mod events;
pub mod microbatch;
mod quality;
mod results;
mod schedule;
mod work;

pub use events::{BatchEvent, HookEvent, Reporter, RunEvent, Silent};
pub use quality::quarantine_request;
pub use results::{NodeResult, NodeStatus, RunResults};
pub use schedule::Runner;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run could not go on (a node's failure is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metadata store failed while recording the run.
    #[error(transparent)]
    Meta(#[from] strata_meta::Error),
    /// The warehouse failed outside any node.
    #[error(transparent)]
    Warehouse(#[from] strata_engine::Error),
}
