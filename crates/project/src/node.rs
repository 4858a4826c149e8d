//! The nodes of a project: models and sources, and the relations they live in.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;

use crate::config::NodeConfig;

pub use strata_common::Relation;

/// A column documented in a properties file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its description (rendered).
    pub description: String,
    /// Its declared type, when given.
    pub data_type: Option<String>,
    /// Free-form metadata.
    pub meta: serde_json::Value,
    /// Tags.
    pub tags: Vec<String>,
}

/// A `ref(...)` call: an optional package and a model name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RefCall {
    /// The package, when given as `ref('pkg', 'name')`.
    pub package: Option<String>,
    /// The model name.
    pub name: String,
}

/// What a SQL node is: a model, or a snapshot (`{% snapshot %}` blocks and YAML snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqlKind {
    /// A model.
    #[default]
    Model,
    /// A snapshot: the history of a query's rows.
    Snapshot,
    /// An analysis: a query under `analysis-paths`, compiled (by `compile`) and never run;
    /// nothing can `ref` it.
    Analysis,
}

impl SqlKind {
    /// `model` or `snapshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            SqlKind::Model => "model",
            SqlKind::Snapshot => "snapshot",
            SqlKind::Analysis => "analysis",
        }
    }
}

/// A SQL model (or snapshot).
#[derive(Debug, Clone)]
pub struct Model {
    /// Model or snapshot.
    pub kind: SqlKind,
    /// The name its SQL is registered under in the Jinja environment: the file, or
    /// `file#name` for a snapshot defined in YAML or sharing its file with others.
    pub template: PathBuf,
    /// `model.<package>.<name>` (`snapshot.<package>.<name>`).
    pub unique_id: String,
    /// The model name (the file stem).
    pub name: String,
    /// The package (project) it belongs to.
    pub package: String,
    /// The file, relative to the project root.
    pub original_file_path: PathBuf,
    /// The file, relative to its model folder.
    pub path: PathBuf,
    /// Fully qualified name: package, folders, name.
    pub fqn: Vec<String>,
    /// The SQL as written, with Jinja.
    pub raw_sql: String,
    /// The resolved configuration.
    pub config: NodeConfig,
    /// Description from properties files.
    pub description: String,
    /// Columns from properties files.
    pub columns: IndexMap<String, Column>,
    /// The properties file that documents it, when any.
    pub patch_path: Option<PathBuf>,
    /// `ref` calls, in order of appearance, without duplicates.
    pub refs: Vec<RefCall>,
    /// `source` calls as (source, table), without duplicates.
    pub sources: Vec<(String, String)>,
    /// Macros it calls.
    pub macros: Vec<String>,
    /// Where it is materialized.
    pub relation: Relation,
    /// SHA-256 of the raw SQL, for state comparison.
    pub checksum: String,
}

impl Model {
    /// The materialization (`table`, `view`, `ephemeral`, ...).
    pub fn materialized(&self) -> &str {
        self.config.materialized()
    }

    /// Whether `ref()` can name it (models and snapshots; not analyses).
    pub fn refable(&self) -> bool {
        self.kind != SqlKind::Analysis
    }

    /// Where its compiled SQL goes under `target/compiled/` (and `target/run/`), as dbt
    /// lays it out: `PACKAGE/FILE`, or for a node defined in a properties file (a YAML
    /// snapshot) `PACKAGE/FILE.yml/NAME.sql`.
    pub fn compiled_file(&self) -> std::path::PathBuf {
        let path = std::path::Path::new(&self.package).join(&self.original_file_path);
        match self.original_file_path.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => path.join(format!("{}.sql", self.name)),
            _ => path,
        }
    }
}

/// A table declared under `sources:` in a properties file.
#[derive(Debug, Clone)]
pub struct Source {
    /// `source.<package>.<source>.<table>`.
    pub unique_id: String,
    /// The source's name.
    pub source_name: String,
    /// The table's name.
    pub name: String,
    /// The package it belongs to.
    pub package: String,
    /// The properties file declaring it.
    pub original_file_path: PathBuf,
    /// Source and table descriptions.
    pub source_description: String,
    /// The table's description.
    pub description: String,
    /// Columns.
    pub columns: IndexMap<String, Column>,
    /// Where it is read from.
    pub relation: Relation,
    /// Files it is read from, when declared with `external_location`: a path relative to the
    /// project or a URL, with `{name}` replaced.
    pub external_location: Option<String>,
    /// File format when it cannot be told from the extension (`csv`, `json`, `parquet`, `delta`).
    pub format: Option<String>,
    /// How `strata ingest` loads it: the source's `ingest:` mapping (the connection) with the
    /// table's over it (what and how), unrendered (its `env_var()`s are read when it runs).
    pub ingest: Option<serde_json::Value>,
    /// Merged `meta` of source and table.
    pub meta: serde_json::Value,
    /// Merged configuration.
    pub config: NodeConfig,
    /// Fully qualified name.
    pub fqn: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// `loader`, free text.
    pub loader: String,
}

/// A CSV file loaded as a table (`strata seed`).
#[derive(Debug, Clone)]
pub struct Seed {
    /// `seed.<package>.<name>`.
    pub unique_id: String,
    /// The seed name (the file stem).
    pub name: String,
    /// The package it belongs to.
    pub package: String,
    /// The CSV file, relative to the project root.
    pub original_file_path: PathBuf,
    /// The CSV file, absolute.
    pub abs_path: PathBuf,
    /// The file, relative to its seed folder.
    pub path: PathBuf,
    /// Fully qualified name: package, folders, name.
    pub fqn: Vec<String>,
    /// The resolved configuration (`column_types`, `delimiter`, `quote_columns`, ...).
    pub config: NodeConfig,
    /// Description from properties files.
    pub description: String,
    /// Columns from properties files.
    pub columns: IndexMap<String, Column>,
    /// The properties file that documents it, when any.
    pub patch_path: Option<PathBuf>,
    /// Where it is loaded.
    pub relation: Relation,
    /// SHA-256 of the file for files up to 1 MiB, else `path:<file>` (as dbt does).
    pub checksum: String,
}

impl Seed {
    /// The field delimiter (`delimiter` config, default `,`).
    pub fn delimiter(&self) -> u8 {
        self.config
            .get_str("delimiter")
            .and_then(|d| d.as_bytes().first().copied())
            .unwrap_or(b',')
    }

    /// Column type overrides (`column_types`), column name to SQL type.
    pub fn column_types(&self) -> IndexMap<String, String> {
        match self.config.get("column_types") {
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|t| (k.clone(), t.to_string())))
                .collect(),
            _ => IndexMap::new(),
        }
    }
}

/// A node that builds a relation: a model or a seed.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// A SQL model.
    Model(&'a Model),
    /// A CSV seed.
    Seed(&'a Seed),
}

impl<'a> Node<'a> {
    /// Its unique id.
    pub fn unique_id(&self) -> &'a str {
        match self {
            Node::Model(m) => &m.unique_id,
            Node::Seed(s) => &s.unique_id,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'a str {
        match self {
            Node::Model(m) => &m.name,
            Node::Seed(s) => &s.name,
        }
    }

    /// `model`, `snapshot` or `seed`.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Node::Model(m) => m.kind.as_str(),
            Node::Seed(_) => "seed",
        }
    }

    /// Where it is built.
    pub fn relation(&self) -> &'a Relation {
        match self {
            Node::Model(m) => &m.relation,
            Node::Seed(s) => &s.relation,
        }
    }

    /// Its file, relative to the project root.
    pub fn file(&self) -> &'a std::path::Path {
        match self {
            Node::Model(m) => &m.original_file_path,
            Node::Seed(s) => &s.original_file_path,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &'a NodeConfig {
        match self {
            Node::Model(m) => &m.config,
            Node::Seed(s) => &s.config,
        }
    }

    /// Its fully qualified name.
    pub fn fqn(&self) -> &'a [String] {
        match self {
            Node::Model(m) => &m.fqn,
            Node::Seed(s) => &s.fqn,
        }
    }

    /// Its package.
    pub fn package(&self) -> &'a str {
        match self {
            Node::Model(m) => &m.package,
            Node::Seed(s) => &s.package,
        }
    }

    /// How it is materialized: the model's `materialized`, or `seed`.
    pub fn materialized(&self) -> &'a str {
        match self {
            Node::Model(m) => m.materialized(),
            Node::Seed(_) => "seed",
        }
    }
}
