//! Semi and anti joins (`IN`, `EXISTS`, `NOT IN`, `NOT EXISTS` subqueries) moved below the
//! inner joins that cannot narrow their input.
//!
//! A subquery in `WHERE` becomes a semi (or anti) join on top of the `FROM` clause's joins, so
//! in
//!
//! ```sql
//! select … from customer, orders, lineitem
//! where o_orderkey in (select l_orderkey from lineitem group by 1 having sum(l_quantity) > 300)
//!   and c_custkey = o_custkey and o_orderkey = l_orderkey
//! ```
//!
//! every order is joined with its customer and its lines before the few that qualify are
//! kept. Whether a row passes a semi join depends only on the columns its condition reads, so
//! when they all come from one input of an inner join the semi join may filter that input
//! instead, with the same rows out: `(A ⋈ B) ⋉ S = A ⋈ (B ⋉ S)`, and likewise for anti joins.
//!
//! It is worth it when the inner join does not narrow `B`: then the semi join reads no more
//! rows below than above, and every row it drops is one the inner join no longer builds or
//! probes. When the other input is filtered (a dimension restricted to one nation, say), the
//! inner join may drop most rows, and the semi join stays where it reads fewer. So a semi
//! join moves down only past inner joins whose other input reads whole tables: scans
//! without filters or limits, and inner joins of them.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::{insert_after_filter_pushdown, with_inputs};

/// The optimizer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct SemiJoinPlacement;

impl SemiJoinPlacement {
    /// Put the rule in DataFusion's list after filters are pushed down (which makes inner joins
    /// of the `FROM` clause's cross joins), so that it sees the joins and their filters.
    pub fn insert(rules: &mut Vec<Arc<dyn OptimizerRule + Send + Sync>>) {
        insert_after_filter_pushdown(rules, Arc::new(SemiJoinPlacement));
    }
}

impl OptimizerRule for SemiJoinPlacement {
    fn name(&self) -> &str {
        "strata_semi_join_placement"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(join)
                if matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti) =>
            {
                match push_down(&join)? {
                    Some(moved) => Ok(Transformed::yes(moved)),
                    None => Ok(Transformed::no(LogicalPlan::Join(join))),
                }
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// The semi join `semi` moved below its left input's inner join (or projection), as far as it
/// goes; `None` when it stays.
fn push_down(semi: &Join) -> Result<Option<LogicalPlan>> {
    match semi.left.as_ref() {
        LogicalPlan::Join(inner) if inner.join_type == JoinType::Inner => {
            let Some(reads) = left_columns(semi) else {
                return Ok(None);
            };
            let on_left = reads.iter().all(|c| inner.left.schema().has_column(c));
            let on_right = reads.iter().all(|c| inner.right.schema().has_column(c));
            let (into_left, other) = match (on_left, on_right) {
                (true, false) => (true, &inner.right),
                (false, true) => (false, &inner.left),
                // Columns of both inputs, or none (a condition on the subquery alone).
                _ => return Ok(None),
            };
            if narrows(other) {
                return Ok(None);
            }
            let input = if into_left { &inner.left } else { &inner.right };
            let moved = with_left(semi, Arc::clone(input))?;
            let moved = match push_down(&moved)? {
                Some(further) => further,
                None => LogicalPlan::Join(moved),
            };
            let (left, right) = if into_left {
                (Arc::new(moved), Arc::clone(&inner.right))
            } else {
                (Arc::clone(&inner.left), Arc::new(moved))
            };
            Ok(Some(LogicalPlan::Join(with_inputs(inner, left, right)?)))
        }
        // A projection that passes the condition's columns through unchanged.
        LogicalPlan::Projection(projection) => {
            let Some(reads) = left_columns(semi) else {
                return Ok(None);
            };
            let passed = reads.iter().all(|c| {
                projection
                    .expr
                    .iter()
                    .any(|e| matches!(e, Expr::Column(p) if p == c))
            });
            let input = projection.input.schema();
            if !passed || !reads.iter().all(|c| input.has_column(c)) {
                return Ok(None);
            }
            let moved = with_left(semi, Arc::clone(&projection.input))?;
            let Some(below) = push_down(&moved)? else {
                return Ok(None);
            };
            Ok(Some(LogicalPlan::Projection(Projection::try_new(
                projection.expr.clone(),
                Arc::new(below),
            )?)))
        }
        _ => Ok(None),
    }
}

/// The columns of the semi join's left input its condition reads; `None` when a column could
/// belong to either input.
fn left_columns(semi: &Join) -> Option<Vec<datafusion::common::Column>> {
    let (left, right) = (semi.left.schema(), semi.right.schema());
    let mut reads = Vec::new();
    let exprs = semi
        .on
        .iter()
        .flat_map(|(l, r)| [l, r])
        .chain(semi.filter.as_ref());
    for e in exprs {
        for c in e.column_refs() {
            match (left.has_column(c), right.has_column(c)) {
                (true, false) => {
                    if !reads.contains(c) {
                        reads.push(c.clone());
                    }
                }
                (false, true) => {}
                _ => return None,
            }
        }
    }
    Some(reads)
}

/// `semi` with another left input (of the same columns).
fn with_left(semi: &Join, left: Arc<LogicalPlan>) -> Result<Join> {
    with_inputs(semi, left, Arc::clone(&semi.right))
}

/// Whether a plan may give fewer rows than the tables it reads: anything but scans without
/// filters or limits, projections and aliases of them, and inner joins of them.
fn narrows(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => !scan.filters.is_empty() || scan.fetch.is_some(),
        LogicalPlan::Projection(p) => narrows(&p.input),
        LogicalPlan::SubqueryAlias(a) => narrows(&a.input),
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            narrows(&j.left) || narrows(&j.right)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_rules::tests::{answers, execute, optimized, session};

    async fn plan(sql: &str) -> String {
        let ctx = session(Some(SemiJoinPlacement::insert));
        execute(
            &ctx,
            &[
                "create table customers (c_key int, c_name text, c_nation int)",
                "create table orders (o_key int, o_customer int, o_total int)",
                "create table lines (l_order int, l_quantity int)",
            ],
        )
        .await;
        optimized(&ctx, sql).await
    }

    /// The line of the plan (its depth and text) that holds `needle`.
    fn find<'a>(plan: &'a str, needle: &str) -> (usize, &'a str) {
        plan.lines()
            .find(|l| l.contains(needle))
            .map(|l| (l.len() - l.trim_start().len(), l.trim()))
            .unwrap_or_else(|| panic!("no `{needle}` in\n{plan}"))
    }

    #[tokio::test]
    async fn a_semi_join_filters_the_input_it_reads() {
        let text = plan(
            "select c_name, o_key, sum(l_quantity) from customers, orders, lines \
             where o_key in (select l_order from lines group by l_order having sum(l_quantity) > 3) \
             and c_key = o_customer and o_key = l_order group by c_name, o_key",
        )
        .await;
        let (semi, _) = find(&text, "LeftSemi Join");
        let (customers, _) = find(&text, "Inner Join: customers.c_key = orders.o_customer");
        let (lines, _) = find(&text, "Inner Join: orders.o_key = lines.l_order");
        // Below both inner joins: right on the orders.
        assert!(semi > customers && customers > lines, "{text}");
    }

    #[tokio::test]
    async fn it_stays_above_a_join_with_a_filtered_input() {
        let text = plan(
            "select c_name, o_key from customers, orders \
             where not exists (select 1 from lines where l_order = o_key) \
             and c_key = o_customer and c_nation = 7",
        )
        .await;
        let (anti, _) = find(&text, "LeftAnti Join");
        let (inner, _) = find(&text, "Inner Join");
        assert!(anti < inner, "{text}");
    }

    #[tokio::test]
    async fn a_condition_on_both_inputs_keeps_it_in_place() {
        let text = plan(
            "select c_name, o_key from customers, orders \
             where exists (select 1 from lines where l_order = o_key and l_quantity > c_nation) \
             and c_key = o_customer",
        )
        .await;
        let (semi, _) = find(&text, "LeftSemi Join");
        let (inner, _) = find(&text, "Inner Join");
        assert!(semi < inner, "{text}");
    }

    #[tokio::test]
    async fn the_rows_are_the_same() {
        let mut results = Vec::new();
        for rule in [Some(SemiJoinPlacement::insert as _), None] {
            let ctx = session(rule);
            execute(
                &ctx,
                &[
                    "create table customers as values (1, 'ann', 7), (2, 'bob', 8), (3, 'cy', 7)",
                    "create table orders as values (10, 1, 5), (11, 1, 6), (12, 2, 7), (13, 3, null), (14, 9, 1)",
                    "create table lines as values (10, 2), (10, 3), (11, 1), (12, 9), (null, 4), (13, 5)",
                ],
            )
            .await;
            results.push(
                answers(
                    &ctx,
                    &[
                        "select c.column2, o.column1 from customers c, orders o, lines l \
                         where o.column1 in (select column1 from lines group by column1 having sum(column2) > 4) \
                         and c.column1 = o.column2 and o.column1 = l.column1 order by 1, 2",
                        "select c.column2, o.column1 from customers c, orders o \
                         where o.column1 not in (select column1 from lines where column2 < 5) \
                         and c.column1 = o.column2 order by 1, 2",
                        "select c.column2, o.column1 from customers c, orders o \
                         where not exists (select 1 from lines l where l.column1 = o.column1 and l.column2 > 2) \
                         and c.column1 = o.column2 order by 1, 2",
                    ],
                )
                .await,
            );
        }
        assert_eq!(results[0], results[1]);
    }
}
