//! Loading a Strata (or dbt) project: the project file and profile, file discovery, Jinja
//! rendering, the DAG and node selection, and dbt's artifacts.
//!
//! The walk every command takes starts here: [`Project::load`] reads and parses everything
//! (rendering each model once to find its refs and config), [`select::Selector`] picks nodes,
//! and [`compile`] renders the selected nodes' SQL against resolved relations. The engine
//! crate executes the result.

pub mod anomaly;
pub mod artifacts;
pub mod compile;
mod compile_unit;
pub mod config;
pub mod data_tests;
pub mod deps;
pub mod error;
pub mod exposures;
pub mod graph;
pub mod hooks;
pub mod jinja;
pub mod node;
pub mod packages;
pub mod profile;
pub mod project;
pub mod properties;
pub mod quarantine;
pub mod select;
pub mod selectors;
pub mod unit_tests;
pub mod validate;

pub use config::{NodeConfig, ProjectConfig};
pub use error::{Error, Result};
pub use node::{Model, Node, RefCall, Relation, Seed, Source};
pub use profile::Target;
pub use project::{LoadOptions, Project};
