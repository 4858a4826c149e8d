//! Properties YAML files (`models/**/*.yml`): model descriptions, columns and configs, and
//! `sources:`.

use indexmap::IndexMap;
use serde::Deserialize;

/// One properties file.
#[derive(Debug, Deserialize, Default)]
pub struct PropertiesFile {
    /// `version: 2`, accepted and ignored.
    #[serde(default)]
    pub version: Option<yaml_serde::Value>,
    /// Model entries.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// Source entries.
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
    /// Seed entries (same shape as model entries).
    #[serde(default)]
    pub seeds: Vec<ModelEntry>,
    /// Snapshot entries: a `relation:` defines a snapshot, otherwise the entry describes a
    /// `{% snapshot %}` block of the same name.
    #[serde(default)]
    pub snapshots: Vec<ModelEntry>,
    /// Other sections (seeds, snapshots, macros, exposures, ...), read by later stages.
    #[serde(flatten)]
    pub other: IndexMap<String, yaml_serde::Value>,
}

/// A `models:` (or `seeds:`) entry.
#[derive(Debug, Deserialize, Clone)]
pub struct ModelEntry {
    /// The model it describes.
    pub name: String,
    /// Its description; may use `{{ doc('...') }}`.
    #[serde(default)]
    pub description: Option<String>,
    /// Its configuration.
    #[serde(default)]
    pub config: IndexMap<String, yaml_serde::Value>,
    /// Its columns.
    #[serde(default)]
    pub columns: Vec<ColumnEntry>,
    /// Everything else (tests, docs, meta, ...).
    #[serde(flatten)]
    pub other: IndexMap<String, yaml_serde::Value>,
}

/// A column entry.
#[derive(Debug, Deserialize, Clone)]
pub struct ColumnEntry {
    /// The column's name.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Its declared type.
    #[serde(default)]
    pub data_type: Option<String>,
    /// Free metadata.
    #[serde(default)]
    pub meta: Option<yaml_serde::Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Everything else (tests, constraints, quote, ...).
    #[serde(flatten)]
    pub other: IndexMap<String, yaml_serde::Value>,
}

/// A `sources:` entry.
#[derive(Debug, Deserialize, Clone)]
pub struct SourceEntry {
    /// The source's name, as used in `source('name', ...)`.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// The schema its tables live in (default: the source name).
    #[serde(default)]
    pub schema: Option<String>,
    /// The database (catalog) its tables live in.
    #[serde(default)]
    pub database: Option<String>,
    /// Free text naming what loads it.
    #[serde(default)]
    pub loader: Option<String>,
    /// Free metadata; `external_location` is read from here.
    #[serde(default)]
    pub meta: Option<yaml_serde::Value>,
    /// Configuration; `external_location` is read from here too.
    #[serde(default)]
    pub config: IndexMap<String, yaml_serde::Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its tables.
    #[serde(default)]
    pub tables: Vec<SourceTableEntry>,
    /// Everything else (freshness, quoting, ...).
    #[serde(flatten)]
    pub other: IndexMap<String, yaml_serde::Value>,
}

/// A table of a source.
#[derive(Debug, Deserialize, Clone)]
pub struct SourceTableEntry {
    /// The name used in `source(..., 'name')`.
    pub name: String,
    /// The table's real name, when different.
    #[serde(default)]
    pub identifier: Option<String>,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Free metadata.
    #[serde(default)]
    pub meta: Option<yaml_serde::Value>,
    /// Configuration.
    #[serde(default)]
    pub config: IndexMap<String, yaml_serde::Value>,
    /// Its columns.
    #[serde(default)]
    pub columns: Vec<ColumnEntry>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `external_location` given directly on the table.
    #[serde(default)]
    pub external_location: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub other: IndexMap<String, yaml_serde::Value>,
}
