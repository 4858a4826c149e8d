//! The SQL of a snapshot's changes, shared by the warehouses: which records are new or
//! changed (or, by `hard_deletes`, gone), the versions to insert and the current versions to
//! close, with dbt's columns (`dbt_scd_id`, `dbt_updated_at`, `dbt_valid_from`,
//! `dbt_valid_to`, and `dbt_is_deleted` with `hard_deletes: new_record`).
//!
//! Columns come as (name, SQL type to cast to) in the warehouse's own type names.

use strata_common::{quote_ident as q, quote_literal};

use crate::error::{Error, Result};
use crate::{HardDeletes, MaterializeRequest, SnapshotSpec, SnapshotStrategy};

/// The column telling each change row of [`changes_sql`] what to do: `insert` or `close`.
pub const ACTION: &str = "__strata_action";

pub const META: [&str; 5] = [
    "dbt_scd_id",
    "dbt_updated_at",
    "dbt_valid_from",
    "dbt_valid_to",
    "dbt_is_deleted",
];

/// SQL fragments shared by the first and later runs.
pub struct Parts<'a> {
    pub spec: &'a SnapshotSpec,
    pub now: String,
    pub valid_to_current: String,
    /// The SQL type of the snapshot's time columns.
    pub timestamp: &'static str,
}

impl<'a> Parts<'a> {
    /// The fragments with time columns of type `timestamp` (`timestamp(6)`: microseconds).
    pub fn new(spec: &'a SnapshotSpec, timestamp: &'static str) -> Self {
        Self {
            spec,
            now: format!("cast({} as {timestamp})", quote_literal(&spec.now)),
            valid_to_current: match &spec.valid_to_current {
                Some(expr) => format!("cast(({expr}) as {timestamp})"),
                None => format!("cast(null as {timestamp})"),
            },
            timestamp,
        }
    }

    /// When a source row (`alias`) last changed: its `updated_at`, or the run's time.
    pub fn updated(&self, alias: &str) -> String {
        match (self.spec.strategy, &self.spec.updated_at) {
            (SnapshotStrategy::Timestamp, Some(col)) => {
                format!("cast({alias}.{} as {})", q(col), self.timestamp)
            }
            _ => self.now.clone(),
        }
    }

    /// `dbt_scd_id`: a hash of the key and the version's time.
    pub fn scd_id(&self, alias: &str, at: &str) -> String {
        let mut parts: Vec<String> = self
            .spec
            .unique_key
            .iter()
            .map(|k| format!("coalesce(cast({alias}.{} as varchar), '')", q(k)))
            .collect();
        parts.push(format!("coalesce(cast({at} as varchar), '')"));
        format!("md5({})", parts.join(" || '|' || "))
    }

    /// Whether a snapshot row (`alias`) is a current version.
    pub fn is_current(&self, alias: &str) -> String {
        match &self.spec.valid_to_current {
            Some(_) => format!(
                "({alias}.dbt_valid_to is null or {alias}.dbt_valid_to = {})",
                self.valid_to_current
            ),
            None => format!("{alias}.dbt_valid_to is null"),
        }
    }

    pub fn keys_equal(&self, left: &str, right: &str) -> String {
        self.spec
            .unique_key
            .iter()
            .map(|k| format!("{left}.{} = {right}.{}", q(k), q(k)))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    pub fn new_record(&self) -> bool {
        self.spec.hard_deletes == HardDeletes::NewRecord
    }
}

/// Check the config against the query's columns before anything is written.
pub fn validate(
    req: &MaterializeRequest,
    spec: &SnapshotSpec,
    source: &[(String, String)],
) -> Result<()> {
    let has = |c: &str| source.iter().any(|(n, _)| n == c);
    let columns = || {
        source
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let node = &req.unique_id;
    if spec.unique_key.is_empty() {
        return Err(Error::user(format!("snapshot {node} has no `unique_key`"))
            .with_hint("set unique_key: 'id' (or a list of columns) in its config"));
    }
    for k in &spec.unique_key {
        if !has(k) {
            return Err(Error::user(format!(
                "unique_key `{k}` of snapshot {node} is not a column of its query (columns: {})",
                columns()
            )));
        }
    }
    match spec.strategy {
        SnapshotStrategy::Timestamp => match &spec.updated_at {
            Some(c) if has(c) => {}
            Some(c) => {
                return Err(Error::user(format!(
                    "updated_at `{c}` of snapshot {node} is not a column of its query (columns: {})",
                    columns()
                )));
            }
            None => {
                return Err(Error::user(format!(
                    "snapshot {node} uses strategy `timestamp` but has no `updated_at`"
                ))
                .with_hint(
                    "set updated_at: <column> to the column telling when a row last changed, or use strategy: check",
                ));
            }
        },
        SnapshotStrategy::Check => {
            for c in &spec.check_cols {
                if !has(c) {
                    return Err(Error::user(format!(
                        "check_cols `{c}` of snapshot {node} is not a column of its query (columns: {})",
                        columns()
                    )));
                }
            }
        }
    }
    if let Some(c) = META.iter().find(|c| has(c)) {
        return Err(Error::user(format!(
            "the query of snapshot {node} returns a column named `{c}`, which snapshots add themselves"
        ))
        .with_hint("rename or drop that column in the snapshot's query"));
    }
    Ok(())
}

/// The rows to merge: new versions to insert (`__strata_action = 'insert'`) and current
/// versions to close (`'close'`, matched by `dbt_scd_id`, carrying the new `dbt_valid_to`).
pub fn changes_sql(
    req: &MaterializeRequest,
    parts: &Parts<'_>,
    source: &[(String, String)],
    target: &[(String, String)],
    staged: &str,
) -> String {
    let spec = parts.spec;
    // The merged rows have the table's columns, then any new columns of the query.
    let in_source = |c: &str| source.iter().any(|(n, _)| n == c);
    let in_snapshot = |c: &str| target.iter().any(|(n, _)| n == c);
    let mut out: Vec<(String, String)> = target.to_vec();
    for (name, ty) in source {
        if !in_snapshot(name) {
            out.push((name.clone(), ty.clone()));
        }
    }
    if parts.new_record() && !out.iter().any(|(c, _)| c == "dbt_is_deleted") {
        out.push(("dbt_is_deleted".into(), "varchar".into()));
    }
    // One row of the merge, given an expression for some columns; the rest come from
    // `data` (a source or snapshot row alias) when it has them, else NULL.
    let row = |data: &str, has: &dyn Fn(&str) -> bool, set: &[(&str, String)], action: &str| {
        let mut cols: Vec<String> = out
            .iter()
            .map(|(c, ty)| {
                let value = match set.iter().find(|(name, _)| name == c) {
                    Some((_, v)) => v.clone(),
                    None if has(c) => format!("{data}.{}", q(c)),
                    None => "null".into(),
                };
                format!("cast({value} as {ty}) as {}", q(c))
            })
            .collect();
        cols.push(format!("'{action}' as {ACTION}"));
        cols.join(", ")
    };
    let upd = parts.updated("src");
    let vtc = &parts.valid_to_current;
    let deleted_flag = |v: &str| -> Vec<(&'static str, String)> {
        if parts.new_record() {
            vec![("dbt_is_deleted", format!("'{v}'"))]
        } else {
            Vec::new()
        }
    };
    let is_marker = if parts.new_record() && in_snapshot("dbt_is_deleted") {
        "coalesce(cur.dbt_is_deleted = 'True', false)".to_string()
    } else {
        "false".to_string()
    };
    let changed = match spec.strategy {
        SnapshotStrategy::Timestamp => format!("{upd} > cur.dbt_valid_from"),
        _ => {
            let cols: Vec<String> = if spec.check_cols.is_empty() {
                source
                    .iter()
                    .map(|(n, _)| n.clone())
                    .filter(|c| in_snapshot(c))
                    .collect()
            } else {
                spec.check_cols.clone()
            };
            let differs: Vec<String> = cols
                .iter()
                .map(|c| format!("(src.{} is distinct from cur.{})", q(c), q(c)))
                .collect();
            if differs.is_empty() {
                "false".into()
            } else {
                format!("({})", differs.join(" or "))
            }
        }
    };
    let current = format!(
        "select * from {} as cur where {}",
        req.relation,
        parts.is_current("cur")
    );
    let source_sql = format!("select * from {staged}");
    let keys_equal = parts.keys_equal("src", "cur");
    let mut insert_set = vec![
        ("dbt_scd_id", parts.scd_id("src", &upd)),
        ("dbt_updated_at", upd.clone()),
        ("dbt_valid_from", upd.clone()),
        ("dbt_valid_to", vtc.clone()),
    ];
    insert_set.extend(deleted_flag("False"));
    // New records, and new versions of changed (or re-appearing deleted) ones.
    let mut branches = vec![format!(
        "select {} from (\n{source_sql}\n) as src left join ({current}) as cur on {keys_equal}\n\
         where cur.dbt_scd_id is null or {changed} or {is_marker}",
        row("src", &in_source, &insert_set, "insert")
    )];
    // Their current versions are closed when the new one starts.
    branches.push(format!(
        "select {} from (\n{source_sql}\n) as src join ({current}) as cur on {keys_equal}\n\
         where {changed} or {is_marker}",
        row(
            "cur",
            &in_snapshot,
            &[("dbt_valid_to", upd.clone())],
            "close"
        )
    ));
    if spec.hard_deletes != HardDeletes::Ignore {
        let gone = format!(
            "from ({current}) as cur where not {is_marker} and not exists (select 1 from (\n{source_sql}\n) as src where {keys_equal})"
        );
        // Records gone from the source: their current version ends now...
        branches.push(format!(
            "select {} {gone}",
            row(
                "cur",
                &in_snapshot,
                &[("dbt_valid_to", parts.now.clone())],
                "close"
            )
        ));
        // ...and with `new_record`, a version marks them deleted.
        if parts.new_record() {
            let mut marker = vec![
                ("dbt_scd_id", parts.scd_id("cur", &parts.now)),
                ("dbt_updated_at", parts.now.clone()),
                ("dbt_valid_from", parts.now.clone()),
                ("dbt_valid_to", vtc.clone()),
            ];
            marker.extend(deleted_flag("True"));
            branches.push(format!(
                "select {} {gone}",
                row("cur", &in_snapshot, &marker, "insert")
            ));
        }
    }
    branches.join("\nunion all\n")
}
