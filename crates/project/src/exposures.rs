//! Exposures (`exposures:` in properties files): the dashboards, reports and applications
//! that use the project's models. Strata builds nothing for them; it keeps them in the
//! manifest, as dbt does, and `--select +exposure:name` selects what one depends on.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value as Json;
use strata_common::Location;

use crate::config::yaml_to_json;
use crate::error::{Error, Result};

/// One exposure.
#[derive(Debug, Clone)]
pub struct Exposure {
    /// `exposure.<package>.<name>`.
    pub unique_id: String,
    pub name: String,
    pub package: String,
    /// The properties file declaring it.
    pub original_file_path: PathBuf,
    /// Every other property as written (`type`, `owner`, `url`, `maturity`, `label`, ...).
    pub properties: IndexMap<String, Json>,
    /// Unique ids of the models, seeds, snapshots and sources it depends on.
    pub depends_on: Vec<String>,
}

/// The exposures of one `exposures:` list; `lookup` gives the unique id of `ref('x')` or
/// `source('s', 't')`.
pub fn parse_exposures(
    list: &yaml_serde::Value,
    package: &str,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Exposure>> {
    let bad = |what: String| Error::at(Location::file(file), what);
    let yaml_serde::Value::Sequence(items) = list else {
        return Err(bad("`exposures:` must be a list".into()));
    };
    let mut out = Vec::new();
    for item in items {
        let Json::Object(props) = yaml_to_json(item) else {
            return Err(bad("an exposure must be a mapping with a `name`".into()));
        };
        let name = props
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("an exposure needs a `name`".into()))?
            .to_string();
        let mut depends_on = Vec::new();
        if let Some(Json::Array(deps)) = props.get("depends_on") {
            for d in deps {
                let text = d.as_str().unwrap_or_default();
                let id = lookup(text).ok_or_else(|| {
                    bad(format!(
                        "exposure `{name}` depends on `{text}`, which is not a model, seed, snapshot or source of the project"
                    ))
                    .with_hint("write each dependency as ref('model') or source('source', 'table')")
                })?;
                depends_on.push(id);
            }
        }
        out.push(Exposure {
            unique_id: format!("exposure.{package}.{name}"),
            name,
            package: package.to_string(),
            original_file_path: file.to_path_buf(),
            properties: props.into_iter().collect(),
            depends_on,
        });
    }
    Ok(out)
}

/// `ref('x')`, `ref('pkg', 'x')` or `source('s', 't')` as (kind, parts).
pub fn parse_call(text: &str) -> Option<(&'static str, Vec<String>)> {
    let t = text.trim();
    let (kind, inner) = if let Some(r) = t.strip_prefix("ref(") {
        ("ref", r.strip_suffix(')')?)
    } else {
        ("source", t.strip_prefix("source(")?.strip_suffix(')')?)
    };
    let parts: Vec<String> = inner
        .split(',')
        .map(|a| a.trim().trim_matches(['\'', '"']).to_string())
        .collect();
    Some((kind, parts))
}
