//! Column profiles of a table: per column its type, NULL share, distinct values (approximate),
//! least and greatest value, most common values and, for numbers, a histogram; and the data
//! tests such a profile suggests.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use serde::Serialize;
use strata_common::quote_ident as q;
use strata_engine::{Error, Result};

/// Buckets of a numeric column's histogram.
pub const BUCKETS: usize = 10;
/// Most common values kept per column (one more is read, to tell a short list of values).
pub const TOP: usize = 10;

/// One column's profile.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    pub nulls: u64,
    pub null_percent: f64,
    /// Distinct non-NULL values (approximate: HyperLogLog), when the type has them.
    pub distinct: Option<u64>,
    /// Every non-NULL value differs from the others (checked exactly).
    pub unique: bool,
    pub min: Option<String>,
    pub max: Option<String>,
    /// The most common values with their counts, most common first (at most [`TOP`]); all of
    /// them when `all_values`.
    pub top: Vec<(String, u64)>,
    /// `top` holds every distinct value.
    pub all_values: bool,
    /// Rows per equal-width bucket from `min` to `max` (numbers only).
    pub histogram: Vec<u64>,
    #[serde(skip)]
    numeric: bool,
    #[serde(skip)]
    text: bool,
    #[serde(skip)]
    temporal: bool,
}

/// A table's profile.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The table (`schema.name`).
    pub relation: String,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

async fn run(ctx: &SessionContext, sql: &str, what: &str) -> Result<Vec<RecordBatch>> {
    let failed = |e: datafusion::error::DataFusionError| {
        Error::user(format!(
            "{what}: {}",
            strata_engine::error::describe_datafusion_error(&e)
        ))
    };
    ctx.sql(sql)
        .await
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)
}

/// The value at `row` of `column` in the batches, as text (None when NULL).
fn cell(batches: &[RecordBatch], column: usize, row: usize) -> Option<String> {
    let mut row = row;
    for b in batches {
        if row < b.num_rows() {
            let array = b.column(column);
            if array.is_null(row) {
                return None;
            }
            return array_value_to_string(array, row).ok();
        }
        row -= b.num_rows();
    }
    None
}

fn number(batches: &[RecordBatch], column: usize, row: usize) -> u64 {
    cell(batches, column, row)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Profile `relation` (`schema.name`, as SQL names it) in `ctx`.
pub async fn profile(ctx: &SessionContext, relation: &str, shown: &str) -> Result<Profile> {
    let schema = ctx
        .sql(&format!("select * from {relation} limit 0"))
        .await
        .map_err(|e| {
            Error::user(format!(
                "{shown}: {}",
                strata_engine::error::describe_datafusion_error(&e)
            ))
            .with_hint("build it first (strata run, strata seed, strata ingest)")
        })?
        .schema()
        .as_arrow()
        .clone();
    let mut columns: Vec<ColumnProfile> = Vec::new();
    let mut aggregates = vec!["count(*)".to_string()];
    for f in schema.fields() {
        let c = q(f.name());
        let plain = !f.data_type().is_nested()
            && !matches!(
                f.data_type(),
                DataType::Binary | DataType::BinaryView | DataType::LargeBinary
            );
        aggregates.push(format!("count({c})"));
        if plain {
            aggregates.push(format!("approx_distinct(cast({c} as varchar))"));
            aggregates.push(format!("cast(min({c}) as varchar)"));
            aggregates.push(format!("cast(max({c}) as varchar)"));
        }
        columns.push(ColumnProfile {
            name: f.name().clone(),
            sql_type: strata_engine::types::sql_type(f.data_type()),
            nulls: 0,
            null_percent: 0.0,
            distinct: plain.then_some(0),
            unique: false,
            min: None,
            max: None,
            top: Vec::new(),
            all_values: false,
            histogram: Vec::new(),
            numeric: f.data_type().is_numeric(),
            text: matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ),
            temporal: matches!(
                f.data_type(),
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            ),
        });
    }
    let totals = run(
        ctx,
        &format!("select {} from {relation}", aggregates.join(", ")),
        shown,
    )
    .await?;
    let rows = number(&totals, 0, 0);
    let mut at = 1;
    for c in columns.iter_mut() {
        let present = number(&totals, at, 0);
        at += 1;
        c.nulls = rows - present.min(rows);
        c.null_percent = match rows {
            0 => 0.0,
            n => c.nulls as f64 * 100.0 / n as f64,
        };
        if c.distinct.is_some() {
            c.distinct = Some(number(&totals, at, 0));
            c.min = cell(&totals, at + 1, 0);
            c.max = cell(&totals, at + 2, 0);
            at += 3;
        }
        let Some(distinct) = c.distinct else {
            continue;
        };
        let name = q(&c.name);
        if present > 0 && distinct as f64 >= 0.9 * present as f64 {
            let exact = run(
                ctx,
                &format!("select count(distinct {name}) from {relation}"),
                shown,
            )
            .await?;
            c.unique = number(&exact, 0, 0) == present;
        }
        if present > 0 && !c.unique {
            let top = run(
                ctx,
                &format!(
                    "select cast({name} as varchar) as v, count(*) as n from {relation} where {name} is not null group by {name} order by n desc, v limit {}",
                    TOP + 1
                ),
                shown,
            )
            .await?;
            let found: usize = top.iter().map(RecordBatch::num_rows).sum();
            c.all_values = found <= TOP;
            c.top = (0..found.min(TOP))
                .map(|i| (cell(&top, 0, i).unwrap_or_default(), number(&top, 1, i)))
                .collect();
        }
        if c.numeric {
            let bounds = c
                .min
                .as_deref()
                .and_then(|v| v.parse::<f64>().ok())
                .zip(c.max.as_deref().and_then(|v| v.parse::<f64>().ok()));
            if let Some((lo, hi)) = bounds.filter(|(lo, hi)| hi > lo) {
                let buckets = run(
                    ctx,
                    &format!(
                        "select b, count(*) as n from (select least(cast(floor((cast({name} as double) - {lo}) / ({hi} - {lo}) * {BUCKETS}) as bigint), {last}) as b from {relation} where {name} is not null) group by b",
                        last = BUCKETS - 1
                    ),
                    shown,
                )
                .await?;
                let mut histogram = vec![0u64; BUCKETS];
                let found: usize = buckets.iter().map(RecordBatch::num_rows).sum();
                for i in 0..found {
                    let b = number(&buckets, 0, i) as usize;
                    if let Some(slot) = histogram.get_mut(b) {
                        *slot += number(&buckets, 1, i);
                    }
                }
                c.histogram = histogram;
            }
        }
    }
    Ok(Profile {
        relation: shown.to_string(),
        rows,
        columns,
    })
}

/// A histogram as a line of block characters, one per bucket.
pub fn sparkline(histogram: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = histogram.iter().copied().max().unwrap_or(0);
    histogram
        .iter()
        .map(|&n| match (n, top) {
            (0, _) | (_, 0) => ' ',
            (n, top) => BARS[((n as f64 / top as f64) * 7.0).round() as usize],
        })
        .collect()
}

/// The table-level tests `profile` suggests (YAML `data_tests:`, indented to sit under a model
/// or a source table): anomaly tests of its volume and, when it has a date or timestamp
/// column, of its daily volume and freshness by that column.
pub fn suggested_table_tests(profile: &Profile, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}data_tests:\n{pad}  - volume_anomalies\n");
    if let Some(c) = profile
        .columns
        .iter()
        .find(|c| c.temporal && c.nulls < profile.rows)
    {
        for test in ["volume_anomalies", "freshness_anomalies"] {
            out.push_str(&format!(
                "{pad}  - {test}:\n{pad}      timestamp_column: {}\n",
                c.name
            ));
        }
    }
    out
}

/// The data tests `profile` suggests, as the `columns:` entries of a properties file (YAML,
/// indented to sit under a model or a source table).
pub fn suggested_columns(profile: &Profile, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}columns:\n");
    for c in &profile.columns {
        let mut tests: Vec<String> = Vec::new();
        if c.nulls == 0 && profile.rows > 0 {
            tests.push("not_null".into());
        }
        if c.unique && profile.rows > 1 {
            tests.push("unique".into());
        }
        if c.text && c.all_values && !c.top.is_empty() && !c.unique {
            let values: Vec<String> = c
                .top
                .iter()
                .map(|(v, _)| format!("'{}'", v.replace('\'', "''")))
                .collect();
            tests.push(format!(
                "accepted_values:\n{pad}          values: [{}]",
                values.join(", ")
            ));
        }
        if c.numeric
            && let (Some(lo), Some(hi)) = (&c.min, &c.max)
        {
            tests.push(format!(
                "dbt_expectations.expect_column_values_to_be_between:\n{pad}          min_value: {lo}\n{pad}          max_value: {hi}"
            ));
        }
        // Drift the fixed checks cannot see: a share of NULLs that moves, an average that
        // shifts.
        let mut watched = Vec::new();
        if c.nulls > 0 && !c.temporal {
            watched.push("null_percent");
        }
        if c.numeric && !c.unique {
            watched.push("average");
        }
        if !watched.is_empty() {
            tests.push(format!(
                "column_anomalies:\n{pad}          column_anomalies: [{}]",
                watched.join(", ")
            ));
        }
        out.push_str(&format!("{pad}  - name: {}\n", c.name));
        if tests.is_empty() {
            continue;
        }
        out.push_str(&format!("{pad}    data_tests:\n"));
        for t in tests {
            out.push_str(&format!("{pad}      - {t}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_profile_counts_nulls_values_and_buckets() {
        let ctx = SessionContext::new();
        ctx.sql(
            "create view t as select * from (values (1, 'a', null), (2, 'b', 1.5), (3, 'a', 2.5), (10, 'a', 3.5)) as v(id, kind, x)",
        )
        .await
        .expect("view")
        .collect()
        .await
        .expect("view");
        let p = profile(&ctx, "t", "t").await.expect("profile");
        assert_eq!(p.rows, 4);
        let id = &p.columns[0];
        assert!(id.unique && id.nulls == 0);
        assert_eq!(
            (id.min.as_deref(), id.max.as_deref()),
            (Some("1"), Some("10"))
        );
        assert_eq!(id.histogram.iter().sum::<u64>(), 4);
        assert_eq!(id.histogram[0], 1);
        assert_eq!(id.histogram[9], 1);
        let kind = &p.columns[1];
        assert!(!kind.unique && kind.all_values);
        assert_eq!(kind.top, vec![("a".to_string(), 3), ("b".to_string(), 1)]);
        let x = &p.columns[2];
        assert_eq!(x.nulls, 1);
        assert!((x.null_percent - 25.0).abs() < 1e-9);
        let yaml = suggested_columns(&p, 4);
        assert!(
            yaml.contains(
                "- name: id\n        data_tests:\n          - not_null\n          - unique"
            ),
            "{yaml}"
        );
        assert!(yaml.contains("values: ['a', 'b']"), "{yaml}");
        assert_eq!(sparkline(&[0, 1, 2, 4]), " ▃▅█");
    }
}
