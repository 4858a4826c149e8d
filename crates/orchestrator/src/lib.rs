//! Orchestration: pipelines of steps (ingest, build, test, snapshot, sensors, shell commands)
//! with dependencies, retries, backoff and timeouts, defined in `pipelines/*.yml`
//! ([`pipeline`]) and run with every attempt recorded in the metadata store ([`execute`]).
//!
//! The walk of every run: load the pipelines (checked before anything runs) → plan (the
//! steps whose dependencies are done) → execute each step as a process of its own → record
//! each attempt and the run's end.

pub mod airflow;
pub mod alerts;
pub mod backfill;
pub mod cron;
pub mod execute;
pub mod pipeline;
mod process;
pub mod scheduler;
mod sensor;
pub mod smtp;

pub use execute::{Interval, Launch, Observer, RunSummary, Runner, Status, Trigger};
pub use pipeline::{Pipeline, Step};
