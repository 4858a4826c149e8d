//! Shared pieces of Strata: relations and what templates may ask a warehouse, identifier and
//! literal quoting, wildcard matching, "did you mean" suggestions, and the source locations
//! that user-facing errors point to.
//!
//! Every crate keeps its own error enum; what they share is here so that messages read the
//! same everywhere: a location (`file:line`), what went wrong, and how to fix it.

mod relation;
pub mod words;

use std::fmt;
use std::path::{Path, PathBuf};

pub use relation::{Introspector, QueryResult, Relation, glob_match};

/// A place in a user's project that an error points to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file, relative to the project root when it lies inside it.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl Location {
    /// A location naming a whole file.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
        }
    }

    /// A location naming a line of a file.
    pub fn line(file: impl Into<PathBuf>, line: usize) -> Self {
        Self {
            file: file.into(),
            line: Some(line),
            column: None,
        }
    }

    /// The same location with a column.
    pub fn with_column(mut self, column: usize) -> Self {
        self.column = Some(column);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// The path of `path` relative to `root` when it lies inside it, else `path` itself.
pub fn relative_to(path: &Path, root: &Path) -> PathBuf {
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The candidate closest to `wanted`, when one is close enough to be a likely typo.
pub fn closest<'a, I>(wanted: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let wanted_lower = wanted.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&wanted_lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ` — did you mean `x`?` when a close candidate exists, else an empty string.
pub fn did_you_mean<'a, I>(wanted: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match closest(wanted, candidates) {
        Some(c) => format!(" — did you mean `{c}`?"),
        None => String::new(),
    }
}

/// Quote an SQL identifier with double quotes, doubling any quote inside it.
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for ch in ident.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quote an SQL string literal with single quotes, doubling any quote inside it.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            out.push('\'');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// A relation name as the engine resolves it: `"database"."schema"."identifier"`.
pub fn quote_relation(database: &str, schema: &str, identifier: &str) -> String {
    format!(
        "{}.{}.{}",
        quote_ident(database),
        quote_ident(schema),
        quote_ident(identifier)
    )
}

/// What a file-system error means for someone who cannot change the program: a full disk, a
/// read-only file system, missing permission, a file where a folder belongs or the reverse.
/// `None` for other errors. `what` names the place (`the lake /data/lake`).
pub fn storage_problem(error: &str, what: &str) -> Option<(String, String)> {
    let has = |needles: &[&str]| needles.iter().any(|n| error.contains(n));
    let (message, hint) = if has(&["No space left on device", "os error 28"]) {
        (
            format!("the disk holding {what} is full"),
            "free some space (`strata vacuum` removes files no version needs), then run again; nothing half-written was kept",
        )
    } else if has(&["Read-only file system", "os error 30", "readonly database"]) {
        (
            format!("{what} is on a read-only file system"),
            "commands that only read (show, history, ls, docs, compile) work there; write from a machine that mounts it writable",
        )
    } else if has(&["Permission denied", "os error 13"]) {
        (
            format!("no permission to write {what}"),
            "give this user write access to it, or point the target's `lake:` / `metadata:` at a folder it owns",
        )
    } else if has(&[
        "Not a directory",
        "os error 20",
        "File exists",
        "os error 17",
    ]) {
        (
            format!("{what}: a file is in the way where a folder belongs"),
            "the lake (and the folder holding the catalog) must be folders; move the file away or change the target's `lake:` / `metadata:`",
        )
    } else if has(&["Is a directory", "os error 21"]) {
        (
            format!("{what}: a folder is in the way where a file belongs"),
            "`metadata:` names the catalog file (e.g. .strata/dev/metadata.sqlite), not a folder",
        )
    } else {
        return None;
    };
    Some((message, hint.to_string()))
}

/// A message without the stack backtrace some libraries append to their errors (when
/// `RUST_BACKTRACE` is set): users get the message, never frames. Trailing blank lines go too.
pub fn without_backtrace(message: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in message.lines() {
        let t = line.trim_start();
        let frame = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if t == "stack backtrace:" || (frame && t.starts_with("0: ")) {
            break;
        }
        kept.push(line);
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    kept.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_problems_are_named() {
        let (m, _) = storage_problem(
            "write: No space left on device (os error 28)",
            "the lake /l",
        )
        .expect("full");
        assert_eq!(m, "the disk holding the lake /l is full");
        assert!(storage_problem("Read-only file system (os error 30)", "x").is_some());
        assert!(storage_problem("syntax error", "x").is_none());
    }

    #[test]
    fn backtraces_are_cut() {
        let e = "Json error: Truncated record\n   0: kernel::Error::with_backtrace\n   1: f\n             at src/x.rs:1\n";
        assert_eq!(without_backtrace(e), "Json error: Truncated record");
        assert_eq!(without_backtrace("a\n  hint: b"), "a\n  hint: b");
        assert_eq!(
            without_backtrace("row 10: bad value\nline 2: also"),
            "row 10: bad value\nline 2: also"
        );
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_relation("db", "s", "t"), r#""db"."s"."t""#);
    }

    #[test]
    fn suggestions_find_typos_only() {
        let names = ["customers", "orders", "payments"];
        assert_eq!(closest("custmers", names), Some("customers"));
        assert_eq!(closest("zzz", names), None);
        assert_eq!(
            did_you_mean("ordres", names),
            " — did you mean `orders`?".to_string()
        );
    }

    #[test]
    fn locations_print_like_compilers() {
        assert_eq!(
            Location::line("models/a.sql", 3).to_string(),
            "models/a.sql:3"
        );
        assert_eq!(
            Location::line("a.yml", 3).with_column(7).to_string(),
            "a.yml:3:7"
        );
        assert_eq!(Location::file("a.yml").to_string(), "a.yml");
    }
}
