//! Distributed execution on Apache DataFusion Ballista.
//!
//! A target with `engine: ballista` plans each query in the client, as the embedded warehouse
//! does, and runs it on a Ballista cluster: the client sends the analysed logical plan to the
//! scheduler ([`Cluster`]), the executors read the lake's Parquet files and compute, and the
//! rows stream back. The client then writes them with delta-rs in one commit, so a table is
//! replaced, merged or snapshotted exactly as on one machine, and a failed query changes
//! nothing.
//!
//! A cluster is `strata` on every machine: [`run_scheduler`] and [`run_executor`] start
//! Ballista's processes with Strata's session (its SQL semantics and functions), the codecs
//! for its plans ([`codec`]) and object stores found from the environment ([`stores`]).

pub mod client;
pub mod codec;
mod leaves;
pub mod process;
pub mod stores;

pub use client::Cluster;
pub use process::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};
