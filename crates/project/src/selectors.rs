//! `selectors.yml`: named selections, as dbt's `--selector NAME` reads them.
//!
//! ```yaml
//! selectors:
//!   - name: nightly
//!     definition:
//!       union:
//!         - method: tag
//!           value: nightly
//!           children: true
//!         - intersection:
//!             - "path:models/marts"
//!             - exclude: ["tag:slow"]
//! ```
//!
//! A definition is a selector string, a `{method, value}` mapping (with `parents`, `children`,
//! `parents_depth`, `children_depth`), or a `union` / `intersection` of definitions, any of
//! which may be an `exclude` list subtracted from the rest.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use strata_common::Location;

use crate::config::yaml_to_json;
use crate::error::{Error, Result, read_to_string, yaml_error};
use crate::project::Project;
use crate::select::{Selector, State};

/// The unique ids selector `name` of the project's `selectors.yml` picks.
pub fn select_named(
    project: &Project,
    name: &str,
    state: Option<&State>,
) -> Result<BTreeSet<String>> {
    let path = project.root.join("selectors.yml");
    if !path.is_file() {
        return Err(Error::user(format!(
            "--selector {name}: the project has no selectors.yml"
        ))
        .with_hint("define named selections in selectors.yml at the project's root, as in dbt"));
    }
    let text = read_to_string(&path)?;
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&text).map_err(|e| yaml_error("selectors.yml".into(), &e))?;
    let Json::Object(doc) = yaml_to_json(&doc) else {
        return Err(Error::at(
            Location::file("selectors.yml"),
            "expected `selectors:` with a list",
        ));
    };
    let list = doc
        .get("selectors")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = list
        .iter()
        .filter_map(|s| s.get("name").and_then(Json::as_str).map(str::to_string))
        .collect();
    let found = list
        .iter()
        .find(|s| s.get("name").and_then(Json::as_str) == Some(name))
        .ok_or_else(|| {
            Error::user(format!(
                "selectors.yml has no selector `{name}`{}",
                strata_common::did_you_mean(name, names.iter().map(String::as_str))
            ))
        })?;
    let definition = found.get("definition").ok_or_else(|| {
        Error::at(
            Location::file("selectors.yml"),
            format!("selector `{name}` has no `definition`"),
        )
    })?;
    eval(project, definition, state)
}

fn bad(what: String) -> Error {
    Error::at(Location::file("selectors.yml"), what).with_hint(
        "a definition is a selector string, {method: ..., value: ...}, or {union: [...]} / {intersection: [...]} (each may hold {exclude: [...]})",
    )
}

fn eval(project: &Project, def: &Json, state: Option<&State>) -> Result<BTreeSet<String>> {
    match def {
        Json::String(s) => Ok(Selector::parse(&[s.as_str()])?.select_with_state(project, state)),
        Json::Object(m) => {
            if let Some(Json::Array(items)) = m.get("union") {
                return combine(project, items, state, false);
            }
            if let Some(Json::Array(items)) = m.get("intersection") {
                return combine(project, items, state, true);
            }
            let method = m
                .get("method")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(format!("cannot read the definition {def}")))?;
            let value = match m.get("value") {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Err(bad(format!("the `{method}` definition has no `value`"))),
            };
            let depth = |k: &str| m.get(k).and_then(Json::as_u64).map(|d| d.to_string());
            let on = |k: &str| m.get(k).and_then(Json::as_bool).unwrap_or(false);
            let parents = match (on("parents"), depth("parents_depth")) {
                (_, Some(d)) => format!("{d}+"),
                (true, None) => "+".into(),
                _ => String::new(),
            };
            let children = match (on("children"), depth("children_depth")) {
                (_, Some(d)) => format!("+{d}"),
                (true, None) => "+".into(),
                _ => String::new(),
            };
            let at = if on("childrens_parents") { "@" } else { "" };
            let text = match method {
                "fqn" => format!("{at}{parents}{value}{children}"),
                _ => format!("{at}{parents}{method}:{value}{children}"),
            };
            Ok(Selector::parse(&[text.as_str()])?.select_with_state(project, state))
        }
        other => Err(bad(format!("cannot read the definition {other}"))),
    }
}

/// A union or intersection of `items`, minus those given as `{exclude: [...]}`.
fn combine(
    project: &Project,
    items: &[Json],
    state: Option<&State>,
    intersect: bool,
) -> Result<BTreeSet<String>> {
    let mut acc: Option<BTreeSet<String>> = None;
    let mut excluded = BTreeSet::new();
    for item in items {
        if let Some(Json::Array(ex)) = item.get("exclude") {
            for e in ex {
                excluded.extend(eval(project, e, state)?);
            }
            continue;
        }
        let set = eval(project, item, state)?;
        acc = Some(match acc {
            None => set,
            Some(prev) if intersect => prev.intersection(&set).cloned().collect(),
            Some(prev) => prev.union(&set).cloned().collect(),
        });
    }
    let mut out = acc.unwrap_or_default();
    out.retain(|id| !excluded.contains(id));
    Ok(out)
}
