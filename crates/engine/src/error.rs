//! Errors of the warehouse.

use std::fmt;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mistake the user can fix (a bad location, an unsupported setting).
    #[error("{0}")]
    User(Hinted),
    /// A table's Delta log has a damaged commit file: nothing is written on top of it.
    #[error("{0}")]
    DamagedLog(Hinted),
    /// A query failed to plan or run: the user's SQL or data.
    #[error("{0}")]
    Sql(String),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] strata_meta::Error),
    /// Reading or writing a Delta table failed.
    #[error("Delta Lake: {}", strata_common::without_backtrace(&.0.to_string()))]
    Delta(#[from] deltalake::DeltaTableError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A message with an optional hint on how to fix it.
#[derive(Debug)]
pub struct Hinted {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl Error {
    /// A user error.
    pub fn user(message: impl Into<String>) -> Self {
        Error::User(Hinted {
            message: message.into(),
            hint: None,
        })
    }

    /// Add a hint to a user error.
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            Error::User(mut h) => {
                h.hint = Some(hint.into());
                Error::User(h)
            }
            other => other,
        }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Sql(describe_datafusion_error(&e))
    }
}

/// DataFusion's message without the layers of context prefixes.
pub fn describe_datafusion_error(e: &datafusion::error::DataFusionError) -> String {
    use datafusion::sql::sqlparser::parser::ParserError;
    if let datafusion::error::DataFusionError::SQL(parse, _) = e.find_root() {
        let (ParserError::ParserError(m) | ParserError::TokenizerError(m)) = parse.as_ref() else {
            return "SQL syntax error: the query nests too deeply".into();
        };
        // "Expected: X, found: Y at Line: 3, Column: 7" reads as one plain sentence.
        let m = m
            .replace(" at Line: ", " at line ")
            .replace(", Column: ", ", column ");
        return format!("SQL syntax error: {m}");
    }
    let text = strata_common::without_backtrace(&e.find_root().to_string());
    let text = text
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("SQL error: ")
        .trim_start_matches("Schema error: ")
        .trim_start_matches("Execution error: ")
        .trim_start_matches("This feature is not implemented: ")
        .trim_start_matches("External error: ")
        .trim_start_matches("Arrow error: ")
        .trim_start_matches("Csv error: ");
    text.to_string()
}
