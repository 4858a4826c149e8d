//! dbt's node selection grammar for `--select` and `--exclude`.
//!
//! Arguments are unions; inside one argument, spaces separate unions too and commas join
//! intersections. An atom is `[@][N+]method:value[+N]`; without a method the value is a node
//! name, an fqn prefix (`staging`, `shop.staging.stg_orders`) or a path (when it holds `/`).
//! Methods: `tag`, `path`, `file`, `fqn`, `package`, `source`, `resource_type`,
//! `test_type` (generic, singular), `test_name` and `config.<key>`. `*` and `?` are wildcards in names, tags and config values.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{Error, Result};
use crate::project::Project;

/// An earlier run's manifest, for `state:new` and `state:modified`.
#[derive(Debug, Clone)]
pub struct State {
    nodes: serde_json::Map<String, serde_json::Value>,
}

impl State {
    /// Read `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::user(format!(
                "--state {}: cannot read {}: {e}",
                dir.display(),
                path.display()
            ))
            .with_hint("point --state at the target/ folder of the run to compare with")
        })?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::user(format!("{} is not a manifest: {e}", path.display())))?;
        let nodes = manifest
            .get("nodes")
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(Self { nodes })
    }

    fn node(&self, id: &str) -> Option<&serde_json::Value> {
        self.nodes.get(id)
    }
}

/// What a node looks like to state comparison: its checksum, configuration and relation.
fn fingerprint(project: &Project, id: &str) -> Option<(String, serde_json::Value, String)> {
    let n = project.node(id)?;
    let checksum = match n {
        crate::node::Node::Model(m) => m.checksum.clone(),
        crate::node::Node::Seed(s) => s.checksum.clone(),
    };
    Some((checksum, n.config().to_json(), n.relation().to_string()))
}

fn state_match(project: &Project, state: &State, id: &str, value: &str) -> bool {
    let Some(old) = state.node(id) else {
        // Not in the earlier manifest: new (and so also modified).
        return matches!(
            value,
            "new" | "modified" | "modified.body" | "modified.configs" | "modified.relation"
        );
    };
    let Some((checksum, config, relation)) = fingerprint(project, id) else {
        return false;
    };
    let body = old["checksum"]["checksum"].as_str() != Some(checksum.as_str());
    // Compare only the keys this project sets, so defaults filled in by the manifest writer
    // do not count as changes.
    let configs = config
        .as_object()
        .is_some_and(|c| c.iter().any(|(k, v)| old["config"].get(k) != Some(v)));
    let moved = old["relation_name"].as_str().is_some_and(|r| r != relation);
    match value {
        "new" => false,
        "modified" => body || configs || moved,
        "modified.body" => body,
        "modified.configs" => configs,
        "modified.relation" => moved,
        _ => false,
    }
}

/// A parsed selection: a union of intersections of atoms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    unions: Vec<Vec<Atom>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom {
    at: bool,
    parents: Option<Option<usize>>,
    children: Option<Option<usize>>,
    method: Method,
    value: String,
    /// The selector as written.
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    Default,
    Tag,
    Path,
    File,
    Fqn,
    Package,
    Source,
    ResourceType,
    TestType,
    TestName,
    State,
    Exposure,
    Config(String),
}

impl Selector {
    /// Parse the values of one `--select` or `--exclude` option.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self> {
        let mut unions = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            if arg.trim().is_empty() {
                return Err(Error::user("an empty selector selects nothing").with_hint(
                    "name what to select (`-s my_model`, `-s tag:nightly`), or leave the option out to select everything",
                ));
            }
            for term in arg.split_whitespace() {
                let atoms = term
                    .split(',')
                    .map(|atom| match atom.is_empty() {
                        true => Err(Error::user(format!(
                            "selector `{term}` has an empty part between commas"
                        ))
                        .with_hint("commas join selectors that must all match: `tag:nightly,config.materialized:table`")),
                        false => parse_atom(atom),
                    })
                    .collect::<Result<Vec<_>>>()?;
                unions.push(atoms);
            }
        }
        Ok(Self { unions })
    }

    /// Whether nothing was given.
    pub fn is_empty(&self) -> bool {
        self.unions.is_empty()
    }

    /// The unique ids (models and sources) this selector picks in `project`.
    pub fn select(&self, project: &Project) -> BTreeSet<String> {
        self.select_with_state(project, None)
    }

    /// Whether any atom uses the `state:` method.
    pub fn uses_state(&self) -> bool {
        self.unions
            .iter()
            .flatten()
            .any(|a| a.method == Method::State)
    }

    /// A warning for each selector that matches no node, as dbt gives, with the closest names
    /// for a name.
    fn warn_unmatched(&self, project: &Project, state: Option<&State>) {
        for atom in self.unions.iter().flatten() {
            if atom.method == Method::State || !atom.select(project, state).is_empty() {
                continue;
            }
            if atom.method == Method::Exposure
                && project
                    .exposures
                    .values()
                    .any(|e| glob_match(&atom.value, &e.name))
            {
                continue;
            }
            let hint = match atom.method {
                Method::Default | Method::Fqn => {
                    let names = project
                        .models
                        .values()
                        .map(|m| m.name.as_str())
                        .chain(project.seeds.values().map(|s| s.name.as_str()))
                        .chain(project.tests.values().map(|t| t.name.as_str()));
                    strata_common::did_you_mean(&atom.value, names)
                }
                _ => String::new(),
            };
            // dbt's event name, for --warn-error-options.
            tracing::warn!(
                target: "strata::warn::NoNodesForSelectionCriteria",
                "the selector `{}` matches no enabled node{hint}",
                atom.text
            );
        }
    }

    /// Like [`Selector::select`], comparing with an earlier manifest for `state:` atoms.
    pub fn select_with_state(&self, project: &Project, state: Option<&State>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for inter in &self.unions {
            let mut acc: Option<BTreeSet<String>> = None;
            for atom in inter {
                let set = atom.select(project, state);
                acc = Some(match acc {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
            }
            out.extend(acc.unwrap_or_default());
        }
        out
    }
}

/// The nodes to act on: `select` (or every node) minus `exclude`.
pub fn resolve(
    project: &Project,
    select: &Selector,
    exclude: &Selector,
    state: Option<&State>,
) -> Result<BTreeSet<String>> {
    if (select.uses_state() || exclude.uses_state()) && state.is_none() {
        return Err(Error::user(
            "`state:` selection compares with an earlier run, but no --state was given",
        )
        .with_hint("pass --state DIR, the target/ folder (with manifest.json) of that run"));
    }
    let mut chosen: BTreeSet<String> = if select.is_empty() {
        project.graph.ids().map(str::to_string).collect()
    } else {
        select.warn_unmatched(project, state);
        select.select_with_state(project, state)
    };
    if !exclude.is_empty() {
        for id in exclude.select_with_state(project, state) {
            chosen.remove(&id);
        }
    }
    Ok(chosen)
}

fn parse_depth(digits: &str, atom: &str) -> Result<Option<usize>> {
    if digits.is_empty() {
        return Ok(None);
    }
    digits.parse::<usize>().map(Some).map_err(|_| {
        Error::user(format!(
            "invalid graph depth `{digits}` in selector `{atom}`"
        ))
    })
}

fn parse_atom(text: &str) -> Result<Atom> {
    let mut rest = text;
    let at = rest.starts_with('@');
    if at {
        rest = &rest[1..];
    }
    let mut parents = None;
    if let Some(plus) = rest.find('+') {
        let head = &rest[..plus];
        if head.chars().all(|c| c.is_ascii_digit()) {
            parents = Some(parse_depth(head, text)?);
            rest = &rest[plus + 1..];
        }
    }
    let mut children = None;
    if let Some(plus) = rest.rfind('+') {
        let tail = &rest[plus + 1..];
        if tail.chars().all(|c| c.is_ascii_digit()) {
            children = Some(parse_depth(tail, text)?);
            rest = &rest[..plus];
        }
    }
    if at && (parents.is_some() || children.is_some()) {
        return Err(Error::user(format!("selector `{text}` mixes `@` with `+`"))
            .with_hint("`@name` already selects descendants and all their ancestors"));
    }
    let (method, value) = match rest.split_once(':') {
        None => (Method::Default, rest),
        Some((m, v)) => {
            let method = match m {
                "tag" => Method::Tag,
                "path" => Method::Path,
                "file" => Method::File,
                "fqn" => Method::Fqn,
                "package" => Method::Package,
                "source" => Method::Source,
                "resource_type" => Method::ResourceType,
                "test_type" => Method::TestType,
                "test_name" => Method::TestName,
                "state" => Method::State,
                "exposure" => Method::Exposure,
                other => match other.strip_prefix("config.") {
                    Some(key) if !key.is_empty() => Method::Config(key.to_string()),
                    _ => {
                        return Err(Error::user(format!(
                            "unknown selector method `{other}` in `{text}`{}",
                            strata_common::did_you_mean(
                                other,
                                ["tag", "path", "file", "fqn", "package", "source", "resource_type", "config.materialized"]
                            )
                        ))
                        .with_hint("methods: tag, path, file, fqn, package, source, resource_type, config.<key>"));
                    }
                },
            };
            (method, v)
        }
    };
    if value.is_empty() {
        return Err(Error::user(format!("selector `{text}` has no value")));
    }
    if let Some(bad) = value.chars().find(|c| "+()@\"'|&;<>".contains(*c)) {
        return Err(Error::user(format!(
            "selector `{text}` is malformed: `{bad}` cannot appear inside a name"
        ))
        .with_hint("`+` goes only before or after a name (`+orders`, `orders+`, `2+orders+1`); spaces separate selectors, commas intersect them; there is no grouping"));
    }
    if method == Method::Default
        && let Some(key) = value.strip_prefix("config.")
    {
        return Err(
            Error::user(format!("selector `{text}` has no value")).with_hint(format!(
                "give the value after a colon: `config.{key}:VALUE`"
            )),
        );
    }
    Ok(Atom {
        at,
        parents,
        children,
        method,
        value: value.to_string(),
        text: text.to_string(),
    })
}

pub use strata_common::glob_match;

fn fqn_match(parts: &[&str], fqn: &[String]) -> bool {
    let matches_at = |offset: usize| {
        fqn.len() >= offset + parts.len()
            && parts
                .iter()
                .zip(&fqn[offset..])
                .all(|(p, f)| glob_match(p, f))
    };
    matches_at(0) || matches_at(1)
}

fn path_match(value: &str, file: &Path, model_paths: &[String]) -> bool {
    let value = value.trim_end_matches('/');
    let file_s = file.to_string_lossy().replace('\\', "/");
    let candidates = std::iter::once(file_s.clone()).chain(model_paths.iter().filter_map(|mp| {
        file_s
            .strip_prefix(&format!("{}/", mp.trim_end_matches('/')))
            .map(str::to_string)
    }));
    for c in candidates {
        if glob_match(value, &c) || c.starts_with(&format!("{value}/")) {
            return true;
        }
    }
    false
}

impl Atom {
    fn matches_node(&self, project: &Project, n: crate::node::Node<'_>) -> bool {
        let paths: Vec<String> = project
            .config
            .model_paths
            .iter()
            .chain(&project.config.seed_paths)
            .cloned()
            .collect();
        match &self.method {
            Method::Default => {
                if self.value.contains('/')
                    || self.value.ends_with(".sql")
                    || self.value.ends_with(".csv")
                {
                    path_match(&self.value, n.file(), &paths)
                } else {
                    glob_match(&self.value, n.name())
                        || fqn_match(&self.value.split('.').collect::<Vec<_>>(), n.fqn())
                }
            }
            Method::Fqn => fqn_match(&self.value.split('.').collect::<Vec<_>>(), n.fqn()),
            Method::Tag => n.config().tags().iter().any(|t| glob_match(&self.value, t)),
            Method::Path => path_match(&self.value, n.file(), &paths),
            Method::File => n
                .file()
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| {
                    glob_match(&self.value, f)
                        || f.rsplit_once('.')
                            .is_some_and(|(stem, _)| glob_match(&self.value, stem))
                }),
            Method::Package => glob_match(&self.value, n.package()),
            Method::ResourceType => self.value == n.resource_type(),
            Method::Source
            | Method::TestType
            | Method::TestName
            | Method::State
            | Method::Exposure => false,
            Method::Config(key) => {
                config_match(n.config().get(&key.replace('-', "_")), &self.value)
            }
        }
    }

    fn matches_test(&self, project: &Project, t: &crate::data_tests::DataTest) -> bool {
        match &self.method {
            Method::Default | Method::Fqn => {
                glob_match(&self.value, &t.name)
                    || fqn_match(&self.value.split('.').collect::<Vec<_>>(), &t.fqn)
            }
            Method::Tag => t.config.tags().iter().any(|x| glob_match(&self.value, x)),
            Method::Path => path_match(
                &self.value,
                &t.original_file_path,
                &project.config.test_paths,
            ),
            Method::File => t
                .original_file_path
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| glob_match(&self.value, f)),
            Method::Package => glob_match(&self.value, &t.package),
            Method::ResourceType => match t.kind {
                crate::data_tests::TestKind::Unit(_) => self.value == "unit_test",
                _ => self.value == "test",
            },
            // `data` is every data test (generic and singular), as in dbt 1.8.
            Method::TestType => match t.kind {
                crate::data_tests::TestKind::Generic { .. } => {
                    self.value == "generic" || self.value == "data"
                }
                crate::data_tests::TestKind::Singular { .. } => {
                    self.value == "singular" || self.value == "data"
                }
                crate::data_tests::TestKind::Unit(_) => self.value == "unit",
            },
            Method::TestName => match &t.kind {
                crate::data_tests::TestKind::Generic { test_name, .. } => {
                    glob_match(&self.value, test_name)
                }
                crate::data_tests::TestKind::Singular { .. }
                | crate::data_tests::TestKind::Unit(_) => false,
            },
            Method::Source | Method::State | Method::Exposure => false,
            Method::Config(key) => config_match(t.config.get(&key.replace('-', "_")), &self.value),
        }
    }

    fn matches_source(&self, project: &Project, s: &crate::node::Source) -> bool {
        match &self.method {
            Method::Source => {
                let mut parts = self.value.splitn(2, '.');
                let src = parts.next().unwrap_or_default();
                let tbl = parts.next();
                glob_match(src, &s.source_name) && tbl.is_none_or(|t| glob_match(t, &s.name))
            }
            Method::Tag => s.tags.iter().any(|t| glob_match(&self.value, t)),
            Method::Fqn => fqn_match(&self.value.split('.').collect::<Vec<_>>(), &s.fqn),
            Method::Package => glob_match(&self.value, &s.package),
            Method::ResourceType => self.value == "source",
            Method::Config(key) => config_match(s.config.get(&key.replace('-', "_")), &self.value),
            Method::Path => path_match(
                &self.value,
                &s.original_file_path,
                &project.config.model_paths,
            ),
            Method::Default
            | Method::File
            | Method::TestType
            | Method::TestName
            | Method::State
            | Method::Exposure => false,
        }
    }

    /// `+exposure:name`: what the exposure depends on, and their ancestors (an exposure is
    /// not built, so `exposure:name` alone selects nothing to run).
    fn select_exposure(&self, project: &Project) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(depth) = self.parents else {
            return out;
        };
        for e in project.exposures.values() {
            if !glob_match(&self.value, &e.name) {
                continue;
            }
            for id in &e.depends_on {
                out.insert(id.clone());
                if depth != Some(1) {
                    let further = depth.map(|d| d.saturating_sub(1));
                    out.extend(
                        project
                            .graph
                            .ancestors(id, further)
                            .into_iter()
                            .map(str::to_string),
                    );
                }
            }
        }
        out
    }

    fn select(&self, project: &Project, state: Option<&State>) -> BTreeSet<String> {
        if self.method == Method::Exposure {
            return self.select_exposure(project);
        }
        let mut seeds: Vec<&str> = project
            .nodes()
            .filter(|n| match (&self.method, state) {
                (Method::State, Some(st)) => state_match(project, st, n.unique_id(), &self.value),
                (Method::State, None) => false,
                _ => self.matches_node(project, *n),
            })
            .map(|n| n.unique_id())
            .collect();
        seeds.extend(
            project
                .tests
                .values()
                .filter(|t| self.matches_test(project, t))
                .map(|t| t.unique_id.as_str()),
        );
        seeds.extend(
            project
                .sources
                .values()
                .filter(|s| self.matches_source(project, s))
                .map(|s| s.unique_id.as_str()),
        );
        let g = &project.graph;
        let mut out: BTreeSet<String> = seeds.iter().map(|s| s.to_string()).collect();
        for id in &seeds {
            if self.at {
                let desc = g.descendants(id, None);
                for d in desc.iter().chain(std::iter::once(id)) {
                    out.insert(d.to_string());
                    out.extend(g.ancestors(d, None).into_iter().map(str::to_string));
                }
                continue;
            }
            if let Some(depth) = self.parents {
                out.extend(g.ancestors(id, depth).into_iter().map(str::to_string));
            }
            if let Some(depth) = self.children {
                out.extend(g.descendants(id, depth).into_iter().map(str::to_string));
            }
        }
        out
    }
}

fn config_match(value: Option<&serde_json::Value>, wanted: &str) -> bool {
    match value {
        Some(serde_json::Value::String(s)) => glob_match(wanted, s),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str().is_some_and(|s| glob_match(wanted, s))),
        Some(serde_json::Value::Bool(b)) => wanted.eq_ignore_ascii_case(&b.to_string()),
        Some(serde_json::Value::Number(n)) => wanted == n.to_string(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_operators() {
        let s = Selector::parse(&[
            "2+orders+ @customers",
            "tag:nightly,config.materialized:table",
        ])
        .expect("parse");
        assert_eq!(s.unions.len(), 3);
        let a = &s.unions[0][0];
        assert_eq!(a.parents, Some(Some(2)));
        assert_eq!(a.children, Some(None));
        assert_eq!(a.value, "orders");
        assert!(s.unions[1][0].at);
        assert_eq!(s.unions[2].len(), 2);
        assert_eq!(s.unions[2][1].method, Method::Config("materialized".into()));
    }

    #[test]
    fn rejects_unknown_methods_with_a_suggestion() {
        let e = Selector::parse(&["tags:x"]).expect_err("unknown");
        assert!(e.to_string().contains("did you mean `tag`"), "{e}");
    }

    #[test]
    fn malformed_selections_are_errors() {
        for (bad, words) in [
            ("+a+b+", "cannot appear inside a name"),
            ("((a", "cannot appear inside a name"),
            ("a)", "cannot appear inside a name"),
            ("config.materialized", "has no value"),
            ("config.materialized:", "has no value"),
            ("", "empty selector"),
            ("  ", "empty selector"),
            (",", "empty part"),
            ("a,,b", "empty part"),
            ("a,", "empty part"),
        ] {
            let e = Selector::parse(&[bad]).expect_err(bad).to_string();
            assert!(e.contains(words), "{bad}: {e}");
        }
        assert!(Selector::parse(&["path:models/a-b.sql", "tag:x*"]).is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob_match("stg_*", "stg_orders"));
        assert!(glob_match("*orders", "stg_orders"));
        assert!(!glob_match("stg_?", "stg_ab"));
        assert!(glob_match("a*b*c", "aXbYc"));
    }
}
