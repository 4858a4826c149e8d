//! Relations (where a node lives in a warehouse) and what templates may ask a warehouse while
//! compiling: shared by the project crate, which renders, and the engine, which answers.

use std::fmt;

use serde::Serialize;

/// Where a node lives in the warehouse: `database.schema.identifier`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Relation {
    /// The catalog.
    pub database: String,
    /// The schema.
    pub schema: String,
    /// The table or view name.
    pub identifier: String,
}

impl Relation {
    /// A relation from its three parts.
    pub fn new(
        database: impl Into<String>,
        schema: impl Into<String>,
        identifier: impl Into<String>,
    ) -> Self {
        Self {
            database: database.into(),
            schema: schema.into(),
            identifier: identifier.into(),
        }
    }
}

impl fmt::Display for Relation {
    /// The quoted three-part name the engine resolves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::quote_relation(
            &self.database,
            &self.schema,
            &self.identifier,
        ))
    }
}

/// The result of a query run from a template (`run_query`, `statement`).
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Column names and SQL types.
    pub columns: Vec<(String, String)>,
    /// Rows, as JSON values in column order.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Runs queries and looks at relations for templates, while compiling against a warehouse.
pub trait Introspector: Send + Sync + fmt::Debug {
    /// Run a query and return its rows.
    fn run_query(&self, sql: &str) -> Result<QueryResult, String>;
    /// The columns (name, SQL type) of a relation, or `None` when it does not exist.
    fn columns(&self, relation: &Relation) -> Result<Option<Vec<(String, String)>>, String>;
}

/// Shell-style wildcard match (`*`, `?`, `[abc]`); text without wildcards matches itself only.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == text;
    }
    match glob::Pattern::new(pattern) {
        Ok(p) => p.matches(text),
        // Not a valid pattern (an unclosed `[`): it can only name itself.
        Err(_) => pattern == text,
    }
}
