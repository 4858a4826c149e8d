//! Errors of project loading, rendering, analysis and selection.

use std::fmt;
use std::path::PathBuf;

use strata_common::Location;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while loading or compiling a project.
///
/// [`Error::User`] is a mistake in the user's project or command line: it names where, says
/// what, and says how to fix it. Everything else is an environment problem or a bug.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mistake in the project, profile or command line.
    #[error("{0}")]
    User(Box<UserError>),
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we tried to do: "read", "write", "create".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A bug in Strata.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A user's mistake, with where it is and how to fix it.
#[derive(Debug)]
pub struct UserError {
    /// Where the mistake is, when it is in a file.
    pub location: Option<Location>,
    /// The node (model, source, macro) it concerns, e.g. `model \`orders\``.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(node) = &self.node {
            write!(f, "{node}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl Error {
    /// A user error with a message only.
    pub fn user(message: impl Into<String>) -> Self {
        Error::User(Box::new(UserError {
            location: None,
            node: None,
            message: message.into(),
            hint: None,
        }))
    }

    /// A user error at a location.
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Error::user(message).with_location(location)
    }

    /// A Jinja error in `file`, at the line the template engine reports.
    pub fn jinja(file: impl Into<PathBuf>, err: &minijinja::Error) -> Self {
        let file = file.into();
        // An error raised inside a macro carries the macro file's name and line: name that
        // place, and keep the node's file without a line that belongs to another file.
        let elsewhere = err
            .name()
            .filter(|n| *n != file.to_string_lossy().replace('\\', "/"));
        match (elsewhere, err.line()) {
            (Some(name), Some(line)) => {
                let text = describe_error(err);
                let place = format!("{name}:{line}");
                let message = match text.contains(&place) {
                    true => text,
                    false => format!("{text} (in {place})"),
                };
                Error::at(Location::file(file), message)
            }
            _ => Error::at(
                Location {
                    file,
                    line: err.line(),
                    column: None,
                },
                describe_error(err),
            ),
        }
    }

    /// Attach a location (user errors only; others are returned unchanged).
    pub fn with_location(mut self, location: Location) -> Self {
        if let Error::User(u) = &mut self {
            u.location = Some(location);
        }
        self
    }

    /// Name the node the error concerns.
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        if let Error::User(u) = &mut self {
            u.node = Some(node.into());
        }
        self
    }

    /// Say how to fix it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        if let Error::User(u) = &mut self {
            u.hint = Some(hint.into());
        }
        self
    }

    /// An I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Read a file to a string, naming it in the error.
/// A project file's text; a byte-order mark that some editors put at the start is dropped.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    let mut text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// Turn a YAML parse error into a user error at its line.
pub(crate) fn yaml_error(file: PathBuf, err: &yaml_serde::Error) -> Error {
    let mut loc = Location::file(file);
    if let Some(l) = err.location() {
        loc.line = Some(l.line());
        loc.column = Some(l.column());
    }
    // The YAML parser appends " at line X column Y"; the location already says it.
    let text = err.to_string();
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    Error::at(loc, format!("invalid YAML: {text}"))
        .with_hint("check the indentation and the `key: value` syntax at that line")
}

/// A one-line description of a Jinja error, with its template and line when known.
pub fn describe_error(err: &minijinja::Error) -> String {
    let mut text = match err.kind() {
        minijinja::ErrorKind::SyntaxError => format!(
            "Jinja syntax error: {}",
            err.detail().unwrap_or("invalid syntax")
        ),
        minijinja::ErrorKind::UnknownFunction => format!(
            "unknown function or macro: {}",
            err.detail().unwrap_or("(unnamed)")
        ),
        _ => match err.detail() {
            Some(d) => d.to_string(),
            None => err.to_string(),
        },
    };
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(j) = inner.downcast_ref::<minijinja::Error>() {
            text.push_str(&format!(
                " (caused by: {}{})",
                j.detail().unwrap_or(""),
                match (j.name(), j.line()) {
                    (Some(n), Some(l)) => format!(" at {n}:{l}"),
                    _ => String::new(),
                }
            ));
        }
        source = inner.source();
    }
    text
}
