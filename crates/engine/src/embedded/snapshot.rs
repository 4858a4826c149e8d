//! Snapshots (slowly changing dimensions, type 2): a table keeping every version of each
//! record of a query, with the columns dbt writes: `dbt_scd_id`, `dbt_updated_at`,
//! `dbt_valid_from`, `dbt_valid_to` (and `dbt_is_deleted` with `hard_deletes: new_record`).
//!
//! The first run writes the query's rows as current versions. Each later run is one MERGE
//! commit: current versions whose record changed (or, by `hard_deletes`, vanished) are closed
//! by setting `dbt_valid_to`, and new versions are inserted.

use datafusion::arrow::datatypes::Schema;
use strata_common::{quote_ident as q, quote_literal};

use super::EmbeddedWarehouse;
use super::incremental::{DEST, SOURCE, insert_columns};
use crate::error::{Error, Result};
use crate::types::cast_type;
use crate::{
    HardDeletes, MaterializeOutcome, MaterializeRequest, SnapshotSpec, SnapshotStrategy, Warehouse,
};

/// The columns a snapshot adds to the query's.
const META: [&str; 5] = [
    "dbt_scd_id",
    "dbt_updated_at",
    "dbt_valid_from",
    "dbt_valid_to",
    "dbt_is_deleted",
];

/// SQL fragments shared by the first and later runs.
struct Parts<'a> {
    spec: &'a SnapshotSpec,
    now: String,
    valid_to_current: String,
}

impl<'a> Parts<'a> {
    fn new(spec: &'a SnapshotSpec) -> Self {
        Self {
            spec,
            now: format!("cast({} as timestamp(6))", quote_literal(&spec.now)),
            valid_to_current: match &spec.valid_to_current {
                Some(expr) => format!("cast(({expr}) as timestamp(6))"),
                None => "cast(null as timestamp(6))".into(),
            },
        }
    }

    /// When a source row (`alias`) last changed: its `updated_at`, or the run's time.
    fn updated(&self, alias: &str) -> String {
        match (self.spec.strategy, &self.spec.updated_at) {
            (SnapshotStrategy::Timestamp, Some(col)) => {
                format!("cast({alias}.{} as timestamp(6))", q(col))
            }
            _ => self.now.clone(),
        }
    }

    /// `dbt_scd_id`: a hash of the key and the version's time.
    fn scd_id(&self, alias: &str, at: &str) -> String {
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
    fn is_current(&self, alias: &str) -> String {
        match &self.spec.valid_to_current {
            Some(_) => format!(
                "({alias}.dbt_valid_to is null or {alias}.dbt_valid_to = {})",
                self.valid_to_current
            ),
            None => format!("{alias}.dbt_valid_to is null"),
        }
    }

    fn keys_equal(&self, left: &str, right: &str) -> String {
        self.spec
            .unique_key
            .iter()
            .map(|k| format!("{left}.{} = {right}.{}", q(k), q(k)))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn new_record(&self) -> bool {
        self.spec.hard_deletes == HardDeletes::NewRecord
    }
}

impl EmbeddedWarehouse {
    /// Build or update a snapshot.
    pub(super) async fn build_snapshot(
        &self,
        req: &MaterializeRequest,
    ) -> Result<MaterializeOutcome> {
        let Some(spec) = &req.snapshot else {
            return Err(Error::Internal("a snapshot came without its config".into()));
        };
        let source = self.describe(&req.sql).await?;
        validate(req, spec, &source)?;
        let parts = Parts::new(spec);
        let (schema, name) = (&req.relation.schema, &req.relation.identifier);
        if !self
            .shared
            .lake
            .table_exists(&self.shared.lake.table(schema, name)?)
            .await?
        {
            let upd = parts.updated("s");
            let mut first = req.clone();
            first.sql = format!(
                "select s.*, {scd} as dbt_scd_id, {upd} as dbt_updated_at, {upd} as dbt_valid_from, {vtc} as dbt_valid_to{deleted}\nfrom (\n{sql}\n) as s",
                scd = parts.scd_id("s", &upd),
                vtc = parts.valid_to_current,
                deleted = if parts.new_record() {
                    ", 'False' as dbt_is_deleted"
                } else {
                    ""
                },
                sql = req.sql,
            );
            return self.build_table(&first).await;
        }
        let target = self
            .describe(&format!("select * from {}", req.relation))
            .await?;
        // What to close and what to insert come from one evaluation of the query.
        let staged = self.stage_sql(&req.sql).await?;
        let sql = changes_sql(req, &parts, &source, &target, &staged.sql_name());
        let df = self.plan(&sql).await?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| c != "__strata_action")
            .collect();
        let predicate = format!(
            "{DEST}.dbt_scd_id = {SOURCE}.dbt_scd_id and {SOURCE}.__strata_action = 'close' and {}",
            parts.is_current(DEST)
        );
        let (version, metrics) = self
            .merge_into(
                &super::WriteTarget::of(req),
                df,
                (SOURCE, DEST),
                predicate,
                true,
                |b| {
                    b.when_matched_update(|u| {
                        u.update("dbt_valid_to", format!("{SOURCE}.dbt_valid_to"))
                    })?
                    .when_not_matched_insert(|i| {
                        let i = i.predicate(format!("{SOURCE}.__strata_action = 'insert'"));
                        insert_columns(i, &columns)
                    })
                },
            )
            .await?;
        let (inserted, closed) = (
            metrics.num_target_rows_inserted as u64,
            metrics.num_target_rows_updated as u64,
        );
        Ok(MaterializeOutcome {
            rows_affected: Some(inserted + closed),
            version,
            message: format!("INSERT {inserted}, UPDATE {closed}"),
            observed: Vec::new(),
            quarantined: 0,
        })
    }
}

/// Check the config against the query's columns before anything is written.
fn validate(req: &MaterializeRequest, spec: &SnapshotSpec, source: &Schema) -> Result<()> {
    let has = |c: &str| source.field_with_name(c).is_ok();
    let columns = || {
        source
            .fields()
            .iter()
            .map(|f| f.name().as_str())
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
fn changes_sql(
    req: &MaterializeRequest,
    parts: &Parts<'_>,
    source: &Schema,
    target: &Schema,
    staged: &str,
) -> String {
    let spec = parts.spec;
    // The merged rows have the table's columns, then any new columns of the query.
    let mut out: Vec<(String, String)> = target
        .fields()
        .iter()
        .map(|f| (f.name().clone(), cast_type(f.data_type())))
        .collect();
    for f in source.fields() {
        if target.field_with_name(f.name()).is_err() {
            out.push((f.name().clone(), cast_type(f.data_type())));
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
        cols.push(format!("'{action}' as __strata_action"));
        cols.join(", ")
    };
    let in_source = |c: &str| source.field_with_name(c).is_ok();
    let in_snapshot = |c: &str| target.field_with_name(c).is_ok();
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
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
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
