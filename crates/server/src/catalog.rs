//! The data catalog and the lineage graph of the web UI: every source, seed, model and
//! snapshot with its relation, description, columns and tests (with their last status), and
//! how they feed each other and the dashboards, drawn as SVG.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use strata_meta::MetaStore;
use strata_project::Project;

/// One node of the catalog.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub name: String,
    /// model, seed, snapshot, source, dashboard.
    pub kind: String,
    /// `schema.name` (empty for dashboards).
    pub relation: String,
    pub schema: String,
    pub materialized: String,
    pub description: String,
    /// Documented columns: name and description.
    pub columns: Vec<(String, String)>,
    /// Its tests: name and last status.
    pub tests: Vec<(String, String)>,
    pub parents: Vec<String>,
}

/// Whether a schema is the gold layer (what `bi_reader` sees).
pub fn is_gold(schema: &str) -> bool {
    schema == "gold" || schema.ends_with("_gold")
}

/// Every source, seed, model and snapshot, and the dashboards (`dashboards`: name, title,
/// the models their charts read).
pub fn entries(
    project: &Project,
    meta: &MetaStore,
    dashboards: &[(String, String, Vec<String>)],
) -> Vec<Entry> {
    let mut tests: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for t in project.tests.values() {
        if let Some(node) = t.attached_node.as_deref() {
            let status = meta
                .test_outcomes(&t.unique_id, 1)
                .ok()
                .and_then(|o| o.into_iter().next())
                .map(|o| o.status)
                .unwrap_or_else(|| "not run".into());
            tests
                .entry(node)
                .or_default()
                .push((t.name.clone(), status));
        }
    }
    let columns = |c: &indexmap::IndexMap<String, strata_project::node::Column>| {
        c.values()
            .map(|c| (c.name.clone(), c.description.clone()))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for s in project.sources.values() {
        out.push(Entry {
            id: s.unique_id.clone(),
            name: format!("{}.{}", s.source_name, s.name),
            kind: "source".into(),
            relation: format!("{}.{}", s.relation.schema, s.relation.identifier),
            schema: s.relation.schema.clone(),
            materialized: "source".into(),
            description: s.description.clone(),
            columns: columns(&s.columns),
            tests: tests.remove(s.unique_id.as_str()).unwrap_or_default(),
            parents: Vec::new(),
        });
    }
    for n in project.nodes() {
        let (description, cols) = match n {
            strata_project::Node::Model(m) => (m.description.clone(), columns(&m.columns)),
            strata_project::Node::Seed(s) => (s.description.clone(), columns(&s.columns)),
        };
        let id = n.unique_id().to_string();
        out.push(Entry {
            name: n.name().to_string(),
            kind: n.resource_type().to_string(),
            relation: format!("{}.{}", n.relation().schema, n.relation().identifier),
            schema: n.relation().schema.clone(),
            materialized: n.materialized().to_string(),
            description,
            columns: cols,
            tests: tests.remove(id.as_str()).unwrap_or_default(),
            parents: project
                .graph
                .parents(&id)
                .into_iter()
                .map(str::to_string)
                .collect(),
            id,
        });
    }
    let by_name: HashMap<String, String> = project
        .nodes()
        .map(|n| (n.name().to_string(), n.unique_id().to_string()))
        .collect();
    for (name, title, models) in dashboards {
        out.push(Entry {
            id: format!("dashboard.{name}"),
            name: title.clone(),
            kind: "dashboard".into(),
            relation: String::new(),
            schema: String::new(),
            materialized: "dashboard".into(),
            description: String::new(),
            columns: Vec::new(),
            tests: Vec::new(),
            parents: models
                .iter()
                .filter_map(|m| by_name.get(m).cloned())
                .collect(),
        });
    }
    out
}

/// The models a piece of SQL refers to by `ref('…')`.
pub fn refs_in(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(i) = rest.find("ref(") {
        rest = &rest[i + 4..];
        let inner = rest.split(')').next().unwrap_or_default();
        if let Some(name) = inner
            .split(',')
            .next_back()
            .map(|a| a.trim().trim_matches(['\'', '"']).to_string())
            .filter(|n| !n.is_empty())
        {
            out.push(name);
        }
    }
    out
}

/// The catalog's list.
pub fn list(entries: &[Entry]) -> String {
    let mut html = String::from(
        "<table class=\"grid\"><thead><tr><th>Name</th><th>Kind</th><th>Relation</th><th>Description</th><th>Tests</th></tr></thead><tbody>",
    );
    for e in entries.iter().filter(|e| e.kind != "dashboard") {
        let failing = e
            .tests
            .iter()
            .filter(|(_, s)| matches!(s.as_str(), "fail" | "error"))
            .count();
        let _ = write!(
            html,
            "<tr><td><a href=\"/catalog/{}\">{}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}{}</td></tr>",
            esc(&e.id),
            esc(&e.name),
            esc(&e.materialized),
            esc(&e.relation),
            esc(&e.description),
            e.tests.len(),
            if failing > 0 {
                format!(" <span class=\"pill fail\">{failing} failing</span>")
            } else {
                String::new()
            }
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// One entry's page: its columns (with their types, when the relation exists), tests and
/// neighbours.
pub fn detail(entry: &Entry, types: &[(String, String)], entries: &[Entry]) -> String {
    let mut html = format!(
        "<p><code>{}</code> · {} · {}</p><p>{}</p>",
        esc(&entry.relation),
        esc(&entry.kind),
        esc(&entry.materialized),
        esc(&entry.description)
    );
    html.push_str("<h2>Columns</h2><table class=\"grid\"><thead><tr><th>Column</th><th>Type</th><th>Description</th></tr></thead><tbody>");
    let documented: BTreeMap<&str, &str> = entry
        .columns
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_str()))
        .collect();
    let mut shown: Vec<(String, String, String)> = types
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.clone(),
                documented
                    .get(n.as_str())
                    .copied()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    for (n, d) in &entry.columns {
        if !types.iter().any(|(t, _)| t == n) {
            shown.push((n.clone(), String::new(), d.clone()));
        }
    }
    for (n, t, d) in &shown {
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(n),
            esc(t),
            esc(d)
        );
    }
    html.push_str("</tbody></table>");
    if !entry.tests.is_empty() {
        html.push_str("<h2>Tests</h2><table class=\"grid\"><tbody>");
        for (name, status) in &entry.tests {
            let _ = write!(
                html,
                "<tr><td>{}</td><td><span class=\"pill {}\">{}</span></td></tr>",
                esc(name),
                status.replace(' ', "-"),
                esc(status)
            );
        }
        html.push_str("</tbody></table>");
    }
    let link = |id: &str| {
        let name = entries
            .iter()
            .find(|e| e.id == id)
            .map_or(id, |e| e.name.as_str());
        format!("<a href=\"/catalog/{}\">{}</a>", esc(id), esc(name))
    };
    let parents: Vec<String> = entry.parents.iter().map(|p| link(p)).collect();
    let children: Vec<String> = entries
        .iter()
        .filter(|e| e.parents.contains(&entry.id))
        .map(|e| match e.kind.as_str() {
            "dashboard" => format!(
                "<a href=\"/dashboards/{}\">{}</a>",
                esc(e.id.trim_start_matches("dashboard.")),
                esc(&e.name)
            ),
            _ => link(&e.id),
        })
        .collect();
    let _ = write!(
        html,
        "<h2>Lineage</h2><p>Reads: {}</p><p>Read by: {}</p>",
        if parents.is_empty() {
            "—".into()
        } else {
            parents.join(", ")
        },
        if children.is_empty() {
            "—".into()
        } else {
            children.join(", ")
        }
    );
    html
}

/// The lineage graph: a column per depth (sources and seeds first, dashboards last), an
/// arrow from each node to what reads it; each box links to its page.
pub fn lineage(entries: &[Entry]) -> String {
    const COL: f64 = 210.0;
    const ROW: f64 = 34.0;
    const BOX_W: f64 = 180.0;
    const BOX_H: f64 = 24.0;
    let index: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    // Depth: the longest path from a node without parents (the graph is acyclic).
    let mut depth = vec![0usize; entries.len()];
    for _ in 0..entries.len() {
        let mut changed = false;
        for (i, e) in entries.iter().enumerate() {
            let d = e
                .parents
                .iter()
                .filter_map(|p| index.get(p.as_str()))
                .map(|&p| depth[p] + 1)
                .max()
                .unwrap_or(0);
            if d > depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let columns = depth.iter().copied().max().unwrap_or(0) + 1;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, d) in depth.iter().enumerate() {
        rows[*d].push(i);
    }
    for r in &mut rows {
        r.sort_by(|a, b| entries[*a].name.cmp(&entries[*b].name));
    }
    let mut at = vec![(0.0, 0.0); entries.len()];
    for (c, r) in rows.iter().enumerate() {
        for (k, &i) in r.iter().enumerate() {
            at[i] = (16.0 + c as f64 * COL, 16.0 + k as f64 * ROW);
        }
    }
    let width = 32.0 + columns as f64 * COL;
    let height = 32.0 + rows.iter().map(Vec::len).max().unwrap_or(1) as f64 * ROW;
    let mut svg = format!(
        "<svg class=\"lineage\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"lineage\">"
    );
    for (i, e) in entries.iter().enumerate() {
        for p in &e.parents {
            let Some(&j) = index.get(p.as_str()) else {
                continue;
            };
            let (x1, y1) = (at[j].0 + BOX_W, at[j].1 + BOX_H / 2.0);
            let (x2, y2) = (at[i].0, at[i].1 + BOX_H / 2.0);
            let mid = (x1 + x2) / 2.0;
            let _ = write!(
                svg,
                "<path class=\"edge\" d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\"/>"
            );
        }
    }
    for (i, e) in entries.iter().enumerate() {
        let (x, y) = at[i];
        let href = match e.kind.as_str() {
            "dashboard" => format!("/dashboards/{}", e.id.trim_start_matches("dashboard.")),
            _ => format!("/catalog/{}", e.id),
        };
        let label: String = if e.name.chars().count() > 24 {
            e.name.chars().take(23).chain(['…']).collect()
        } else {
            e.name.clone()
        };
        let _ = write!(
            svg,
            "<a href=\"{}\"><rect class=\"node {}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\"><title>{} · {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text></a>",
            esc(&href),
            esc(&e.kind),
            esc(&e.name),
            esc(&e.kind),
            x + 8.0,
            y + 16.0,
            esc(&label)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn esc(s: &str) -> String {
    strata_quality::report::esc(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_found_in_sql() {
        assert_eq!(
            refs_in("select * from {{ ref('orders') }} join {{ ref(\"pkg\", 'customers') }}"),
            ["orders", "customers"]
        );
    }

    #[test]
    fn the_lineage_puts_readers_right_of_what_they_read() {
        let e = |id: &str, parents: &[&str]| Entry {
            id: id.into(),
            name: id.into(),
            kind: "model".into(),
            relation: String::new(),
            schema: String::new(),
            materialized: String::new(),
            description: String::new(),
            columns: vec![],
            tests: vec![],
            parents: parents.iter().map(|p| p.to_string()).collect(),
        };
        let svg = lineage(&[e("c", &["b"]), e("b", &["a"]), e("a", &[])]);
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
        assert!(
            svg.contains("x=\"16.0\" y=\"16.0\" width=\"180\""),
            "a first: {svg}"
        );
        assert!(svg.contains("x=\"436.0\""), "c in the third column: {svg}");
    }
}
