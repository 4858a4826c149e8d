//! One module per command.

pub mod catalog;
pub mod clean;
pub mod clone;
pub mod cluster;
pub mod compile;
pub mod datagen;
pub mod debug;
pub mod demo;
pub mod deps;
pub mod docs;
pub mod docs_serve;
pub mod freshness;
pub mod history;
pub mod ingest;
pub mod init;
pub mod ls;
pub mod metrics;
pub mod pipelines;
pub mod profile;
pub mod quality;
pub mod quarantine;
pub mod run;
pub mod serve;
pub mod show;
pub mod sources;
pub mod users;
