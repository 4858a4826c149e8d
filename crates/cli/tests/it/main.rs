//! End-to-end tests of the `strata` binary: one test binary for all of them, to keep link
//! time down. Each test works in its own temporary project.

mod anomalies;
mod bad_input;
mod cluster;
mod data_tests;
mod errors;
mod examples;
mod execution;
mod hooks;
mod ingest;
mod jinja;
mod metrics;
mod packages;
mod parity;
mod pg_server;
mod pg_wire;
mod pipelines;
mod postgres;
mod project;
mod quality;
mod quarantine;
mod s3;
mod safety;
mod seeds;
mod selection;
mod serve;
mod shared_metadata;
mod sources;
mod unit_tests;
mod users;
mod warehouse_postgres;
mod workflow;
