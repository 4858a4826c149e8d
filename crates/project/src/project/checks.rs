//! The checks after loading: every ref resolves and the graph has no cycle, relations are
//! unique, and configs are known.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use indexmap::IndexMap;
use strata_common::{Location, did_you_mean};

use crate::data_tests::DataTest;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::node::{Model, Node, RefCall, Relation, Seed, Source};

pub(super) fn build_graph(
    models: &IndexMap<String, Model>,
    seeds: &IndexMap<String, Seed>,
    sources: &IndexMap<String, Source>,
    disabled: &[String],
) -> Result<Graph> {
    let mut graph = Graph::new();
    let names: HashMap<&str, &str> = models
        .values()
        .filter(|m| m.refable())
        .map(|m| (m.name.as_str(), m.unique_id.as_str()))
        .chain(
            seeds
                .values()
                .map(|s| (s.name.as_str(), s.unique_id.as_str())),
        )
        .collect();
    let disabled: HashSet<&str> = disabled
        .iter()
        .filter_map(|d| d.rsplit('.').next())
        .collect();
    for s in sources.keys().chain(seeds.keys()) {
        graph.add_node(s);
    }
    for m in models.values() {
        graph.add_node(&m.unique_id);
    }
    for m in models.values() {
        for r in &m.refs {
            let parent = resolve_ref_id(&names, m, r).map_err(|msg| {
                let analysis = models
                    .values()
                    .any(|a| !a.refable() && a.name == r.name);
                let hint = if analysis {
                    format!(
                        "`{}` is an analysis: analyses are compiled, never built, so nothing can ref them; make it a model to use its rows",
                        r.name
                    )
                } else if disabled.contains(r.name.as_str()) {
                    format!(
                        "model `{}` is disabled (enabled: false); enable it or remove this ref",
                        r.name
                    )
                } else {
                    "check the model name; refs name a model file without `.sql`".to_string()
                };
                Error::at(Location::file(&m.original_file_path), msg)
                    .with_node(format!("model `{}`", m.name))
                    .with_hint(hint)
            })?;
            graph.add_edge(parent, &m.unique_id);
        }
        for (s, t) in &m.sources {
            let id = format!("source.{}.{s}.{t}", m.package);
            if !sources.contains_key(&id) {
                let known: Vec<String> = sources
                    .values()
                    .map(|x| format!("{}.{}", x.source_name, x.name))
                    .collect();
                return Err(Error::at(
                    Location::file(&m.original_file_path),
                    format!(
                        "source('{s}', '{t}') is not declared{}",
                        did_you_mean(&format!("{s}.{t}"), known.iter().map(String::as_str))
                    ),
                )
                .with_node(format!("model `{}`", m.name))
                .with_hint("declare it under `sources:` in a .yml file in a model folder"));
            }
            graph.add_edge(&id, &m.unique_id);
        }
    }
    if let Some(cycle) = graph.find_cycle() {
        // The cycle follows parent -> child edges; print it as "refs": each model refs the next.
        let mut names: Vec<String> = cycle
            .iter()
            .rev()
            .map(|id| id.rsplit('.').next().unwrap_or(id).to_string())
            .collect();
        if let Some(first) = names
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.as_str())
            .map(|(i, _)| i)
        {
            names.rotate_left(first);
        }
        let first = models
            .values()
            .find(|m| m.name == names[0])
            .map(|m| m.original_file_path.clone());
        let err = Error::user(format!(
            "models depend on each other in a cycle: {} -> {} (each refs the next)",
            names.join(" -> "),
            names[0]
        ))
        .with_hint("a model cannot (indirectly) ref itself; remove one of these refs");
        return Err(match first {
            Some(f) => err.with_location(Location::file(f)),
            None => err,
        });
    }
    Ok(graph)
}

fn resolve_ref_id<'a>(
    names: &HashMap<&str, &'a str>,
    _from: &Model,
    r: &RefCall,
) -> std::result::Result<&'a str, String> {
    let found = names.get(r.name.as_str()).copied();
    if let Some(pkg) = &r.package {
        return match found {
            Some(id) if id.split('.').nth(1) == Some(pkg.as_str()) => Ok(id),
            Some(id) => Err(format!(
                "ref('{pkg}', '{}'): `{}` is not in package `{pkg}` (it is {id})",
                r.name, r.name
            )),
            None => Err(format!(
                "ref('{pkg}', '{}') does not exist; is package `{pkg}` in packages.yml?",
                r.name
            )),
        };
    }
    found.ok_or_else(|| {
        format!(
            "ref('{}') does not exist{}",
            r.name,
            did_you_mean(&r.name, names.keys().copied())
        )
    })
}

/// Relations must be unique: two models writing the same table would clobber each other.
pub(super) fn check_unique_relations(
    models: &IndexMap<String, Model>,
    seeds: &IndexMap<String, Seed>,
) -> Result<()> {
    let mut relations: HashMap<&Relation, Node<'_>> = HashMap::new();
    for n in models
        .values()
        .map(Node::Model)
        .chain(seeds.values().map(Node::Seed))
    {
        if n.materialized() == "ephemeral" {
            continue;
        }
        if let Some(other) = relations.insert(n.relation(), n) {
            return Err(Error::at(
                Location::file(n.file()),
                format!(
                    "{} `{}` and {} `{}` both build {}",
                    other.resource_type(),
                    other.name(),
                    n.resource_type(),
                    n.name(),
                    n.relation()
                ),
            )
            .with_hint("give one of them another `alias` or `schema`"));
        }
    }

    Ok(())
}

/// Check what can be checked of the nodes' configurations at load: words from a fixed list
/// (`materialized`, `incremental_strategy`, ...), hooks that must be SQL, grants; keys Strata
/// does not act on are named once per file, as a warning.
pub(super) fn check_configs(
    models: &IndexMap<String, Model>,
    seeds: &IndexMap<String, Seed>,
    tests: &IndexMap<String, DataTest>,
    warned_in_project_file: &std::collections::BTreeSet<String>,
    custom: &[crate::jinja::CustomMaterialization],
) -> Result<()> {
    use strata_common::words::{
        HardDeletes, IncrementalStrategy, Materialized, OnSchemaChange, SnapshotStrategy,
    };
    for m in models.values() {
        let c = &m.config;
        // A materialization a package defines with `{% materialization %}`: named plainly.
        if Materialized::parse(c.materialized()).is_err()
            && let Some(def) = custom.iter().find(|d| d.name == c.materialized())
        {
            return Err(Error::at(
                Location::file(&m.original_file_path),
                format!(
                    "materialized `{}` is a custom materialization ({}:{}), and Strata does not run custom materializations",
                    def.name,
                    def.file.display(),
                    def.line
                ),
            )
            .with_node(format!("{} `{}`", m.kind.as_str(), m.name))
            .with_hint("use one of Strata's: table, view, incremental, ephemeral (or a snapshot), and a post-hook for what the custom one added"));
        }
        let checked = (|| -> std::result::Result<(), String> {
            c.word(Materialized::KEY, Materialized::parse)?;
            c.word(IncrementalStrategy::KEY, IncrementalStrategy::parse)?;
            c.word(OnSchemaChange::KEY, OnSchemaChange::parse)?;
            if let Some(q) = c.get(crate::quarantine::KEY) {
                if !matches!(c.materialized(), "table" | "incremental") {
                    return Err(format!(
                        "`quarantine` sets rows aside while a table is written: it works for table and incremental models, not {}",
                        c.materialized()
                    ));
                }
                crate::quarantine::checks(q).map_err(|e| format!("`quarantine`: {e}"))?;
            }
            if c.materialized() == "snapshot" {
                c.word(SnapshotStrategy::KEY, SnapshotStrategy::parse)?;
                c.word(HardDeletes::KEY, HardDeletes::parse)?;
            }
            Ok(())
        })();
        let checked = checked.and_then(|()| {
            c.values()
                .iter()
                .try_for_each(|(key, value)| crate::validate::check_value(key, value))
        });
        checked.map_err(|msg| {
            // Name the line of the `config()` argument when the value was set there.
            let key = msg.split('`').nth(1).unwrap_or_default();
            let location = match crate::validate::config_call_line(&m.raw_sql, key) {
                Some(line) => Location::line(&m.original_file_path, line),
                None => Location::file(&m.original_file_path),
            };
            Error::at(location, msg).with_node(format!("{} `{}`", m.kind.as_str(), m.name))
        })?;
    }
    for seed in seeds.values() {
        if let Some(d) = seed.config.get("delimiter") {
            let one_byte = d.as_str().is_some_and(|d| d.len() == 1);
            if !one_byte {
                return Err(Error::at(
                    Location::file(&seed.original_file_path),
                    format!("`delimiter` must be one character, not {d}"),
                )
                .with_node(format!("seed `{}`", seed.name))
                .with_hint("use a single character such as `;`, `|` or `\\t`"));
            }
        }
    }
    let mut warned: std::collections::HashSet<(String, PathBuf)> = Default::default();
    let nodes = models
        .values()
        .map(|m| {
            (
                &m.config,
                &m.original_file_path,
                format!("model `{}`", m.name),
                // Value types of models were checked above, with the config() line.
                true,
            )
        })
        .chain(seeds.values().map(|s| {
            (
                &s.config,
                &s.original_file_path,
                format!("seed `{}`", s.name),
                false,
            )
        }))
        .chain(tests.values().map(|t| {
            (
                &t.config,
                &t.original_file_path,
                format!("test `{}`", t.name),
                false,
            )
        }));
    for (config, file, node, values_checked) in nodes {
        for key in ["pre_hook", "post_hook"] {
            config.hooks(key).map_err(|msg| {
                Error::at(Location::file(file), msg)
                    .with_node(node.clone())
                    .with_hint("write hooks as SQL strings, e.g. post_hook: \"delete from {{ this }} where amount < 0\"")
            })?;
        }
        config
            .grants()
            .map_err(|msg| Error::at(Location::file(file), msg).with_node(node.clone()))?;
        for (key, value) in config.values().iter().filter(|_| !values_checked) {
            crate::validate::check_value(key, value)
                .map_err(|msg| Error::at(Location::file(file), msg).with_node(node.clone()))?;
        }
        for key in config.values().keys() {
            if !crate::config::KNOWN_CONFIGS.contains(&key.as_str())
                && !warned_in_project_file.contains(key)
                && warned.insert((key.clone(), file.clone()))
            {
                tracing::warn!(
                    "{}: config `{key}` ({node}) is not a config Strata knows and is ignored{}",
                    file.display(),
                    strata_common::did_you_mean(key, crate::config::KNOWN_CONFIGS.iter().copied())
                );
            }
        }
    }
    Ok(())
}
