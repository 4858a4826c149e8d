//! Groups that a join will drop are not computed.
//!
//! A correlated subquery with an aggregate becomes a join with a grouped query, so
//!
//! ```sql
//! select sum(l_extendedprice) from lineitem, part
//! where p_partkey = l_partkey and p_brand = 'Brand#23'
//!   and l_quantity < (select 0.2 * avg(l_quantity) from lineitem where l_partkey = p_partkey)
//! ```
//!
//! averages the lines of every part, though the join keeps the groups of one brand's parts
//! only. When the other input of the join takes its key from a filtered read of a table
//! (through inner joins), this rule filters the grouped query's input by the keys of that
//! read first (a semi join), so only the groups the join can keep are computed. Groups are
//! whole: a group's rows share the key, so the groups left are exactly as before. The
//! filtered table is read twice, which is cheap next to grouping rows that are then dropped.
//! Keys from an unfiltered table would drop nothing, and keys from a grouping or a join would
//! be computed twice, so the rule leaves those joins alone.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{
    Aggregate, Expr, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, SubqueryAlias,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::{
    dropping_inputs, filtered_read, insert_after_filter_pushdown, is_keys, key_source, with_inputs,
};

/// The alias of the keys a grouped query's input is filtered by.
const KEYS: &str = "__strata_group_keys";

/// The optimizer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct KeysBeforeGrouping;

impl KeysBeforeGrouping {
    /// Put the rule in DataFusion's list after filters are pushed down, so that it sees which
    /// relations are filtered.
    pub fn insert(rules: &mut Vec<Arc<dyn OptimizerRule + Send + Sync>>) {
        insert_after_filter_pushdown(rules, Arc::new(KeysBeforeGrouping));
    }
}

impl OptimizerRule for KeysBeforeGrouping {
    fn name(&self) -> &str {
        "strata_keys_before_grouping"
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
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(join) => match reduce(&join, config)? {
                Some(reduced) => Ok(Transformed::yes(reduced)),
                None => Ok(Transformed::no(LogicalPlan::Join(join))),
            },
            other => Ok(Transformed::no(other)),
        }
    }
}

/// The join with one input's groups filtered by the other's keys; `None` when it stays.
fn reduce(join: &Join, config: &dyn OptimizerConfig) -> Result<Option<LogicalPlan>> {
    let Some((left_drops, right_drops)) = dropping_inputs(join) else {
        return Ok(None);
    };
    for (l, r) in &join.on {
        let (Expr::Column(lc), Expr::Column(rc)) = (l, r) else {
            continue;
        };
        if right_drops && let Some(right) = filtered(&join.right, rc, &join.left, lc, config)? {
            return rebuilt(join, Arc::clone(&join.left), Arc::new(right));
        }
        if left_drops && let Some(left) = filtered(&join.left, lc, &join.right, rc, config)? {
            return rebuilt(join, Arc::new(left), Arc::clone(&join.right));
        }
    }
    Ok(None)
}

fn rebuilt(
    join: &Join,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
) -> Result<Option<LogicalPlan>> {
    Ok(Some(LogicalPlan::Join(with_inputs(join, left, right)?)))
}

/// `grouped` (a grouped query, under aliases and projections) computing only the groups whose
/// `key` is among the values of `other_key` in `other`; `None` when `grouped` is not grouped
/// by `key` or `other` takes `other_key` from no filtered relation.
fn filtered(
    grouped: &LogicalPlan,
    key: &Column,
    other: &LogicalPlan,
    other_key: &Column,
    config: &dyn OptimizerConfig,
) -> Result<Option<LogicalPlan>> {
    let Some(source) = key_source(other, other_key) else {
        return Ok(None);
    };
    if !filtered_read(source) {
        return Ok(None);
    }
    with_keys(grouped, key, &|| {
        let alias = config.alias_generator().next(KEYS);
        // Each key once (a hash join walks every equal key of its build side per row).
        let keys = LogicalPlanBuilder::from(source.clone())
            .aggregate(vec![Expr::Column(other_key.clone())], Vec::<Expr>::new())?
            .alias(alias.as_str())?
            .build()?;
        Ok((keys, Column::new(Some(alias), other_key.name.clone())))
    })
}

type Keys<'a> = dyn Fn() -> Result<(LogicalPlan, Column)> + 'a;

/// `plan` with the input of its grouping filtered by the keys `keys` makes.
fn with_keys(plan: &LogicalPlan, key: &Column, keys: &Keys) -> Result<Option<LogicalPlan>> {
    let Ok(at) = plan.schema().index_of_column(key) else {
        return Ok(None);
    };
    match plan {
        // Keys a rule made are grouped to have each key once, not to be narrowed in turn:
        // that would read and group another table once more.
        LogicalPlan::SubqueryAlias(a) if is_keys(a) => Ok(None),
        LogicalPlan::SubqueryAlias(a) => {
            let inner = Column::from(a.input.schema().qualified_field(at));
            let Some(input) = with_keys(&a.input, &inner, keys)? else {
                return Ok(None);
            };
            Ok(Some(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                Arc::new(input),
                a.alias.clone(),
            )?)))
        }
        LogicalPlan::Projection(p) => {
            let inner = match &p.expr[at] {
                Expr::Column(c) => c.clone(),
                Expr::Alias(alias) => match alias.expr.as_ref() {
                    Expr::Column(c) => c.clone(),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            let Some(input) = with_keys(&p.input, &inner, keys)? else {
                return Ok(None);
            };
            Ok(Some(LogicalPlan::Projection(Projection::try_new(
                p.expr.clone(),
                Arc::new(input),
            )?)))
        }
        LogicalPlan::Aggregate(agg) => {
            if agg
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
            {
                return Ok(None);
            }
            let Some(Expr::Column(grouped_by)) = agg.group_expr.get(at) else {
                return Ok(None);
            };
            if already_filtered(&agg.input) {
                return Ok(None);
            }
            let (keys, keys_column) = keys()?;
            let input = LogicalPlanBuilder::from(Arc::clone(&agg.input))
                .join(
                    keys,
                    JoinType::LeftSemi,
                    (vec![grouped_by.clone()], vec![keys_column]),
                    None,
                )?
                .build()?;
            Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(
                Arc::new(input),
                agg.group_expr.clone(),
                agg.aggr_expr.clone(),
            )?)))
        }
        _ => Ok(None),
    }
}

/// Whether a grouping's input is already filtered by keys this rule put there.
fn already_filtered(input: &LogicalPlan) -> bool {
    input
        .exists(|p| {
            Ok(matches!(p, LogicalPlan::SubqueryAlias(a) if a.alias.table().starts_with(KEYS)))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_rules::tests::{answers, execute, optimized, session};
    use datafusion::prelude::SessionContext;

    fn context(with_rule: bool) -> SessionContext {
        session(with_rule.then_some(KeysBeforeGrouping::insert as _))
    }

    async fn tables(ctx: &SessionContext) {
        execute(
            ctx,
            &[
                "create table parts (p_key int, p_brand text) as values (1, 'a'), (2, 'b'), (3, 'a'), (4, null)",
                "create table lines (l_part int, l_quantity int, l_price int) as values \
                 (1, 1, 10), (1, 9, 20), (2, 5, 30), (3, 2, 40), (3, 4, 50), (3, 30, 60), (null, 1, 70), (4, 3, 80)",
            ],
        )
        .await;
    }

    const CORRELATED: &str = "select sum(l_price) from lines, parts \
        where p_key = l_part and p_brand = 'a' \
        and l_quantity < (select 0.5 * avg(l_quantity) from lines where l_part = p_key)";

    #[tokio::test]
    async fn only_the_groups_the_join_keeps_are_computed() {
        let ctx = context(true);
        tables(&ctx).await;
        let plan = optimized(&ctx, CORRELATED).await;
        let aggregate = plan
            .lines()
            .position(|l| l.contains("Aggregate: groupBy=[[lines.l_part]]"))
            .unwrap_or_else(|| panic!("{plan}"));
        // Right below the grouping, once.
        assert!(
            plan.lines()
                .nth(aggregate + 1)
                .is_some_and(|l| l.contains("LeftSemi Join") && l.contains(KEYS)),
            "{plan}"
        );
        assert_eq!(
            plan.matches(&format!("SubqueryAlias: {KEYS}")).count(),
            1,
            "{plan}"
        );
    }

    #[tokio::test]
    async fn unfiltered_or_computed_keys_leave_the_join_alone() {
        let ctx = context(true);
        tables(&ctx).await;
        for sql in [
            // Every part: nothing to drop.
            "select sum(l_price) from lines, parts where p_key = l_part \
             and l_quantity < (select 0.5 * avg(l_quantity) from lines where l_part = p_key)",
            // Keys of another grouping: it would be computed twice.
            "select a.l_part from (select l_part, sum(l_price) as s from lines group by l_part) a \
             join (select l_part, max(l_quantity) as m from lines where l_price > 20 group by l_part) b \
             on a.l_part = b.l_part",
        ] {
            let plan = optimized(&ctx, sql).await;
            assert!(!plan.contains(KEYS), "{plan}");
        }
    }

    #[tokio::test]
    async fn the_rows_are_the_same() {
        let mut results = Vec::new();
        for with_rule in [true, false] {
            let ctx = context(with_rule);
            tables(&ctx).await;
            results.push(
                answers(
                    &ctx,
                    &[
                        CORRELATED,
                        "select p_key, total from parts left join \
                         (select l_part, sum(l_quantity) as total from lines group by l_part) t \
                         on t.l_part = p_key where p_brand = 'a' order by 1",
                        "select p_key, total from parts join \
                         (select l_part, l_price > 25 as dear, sum(l_quantity) as total from lines group by l_part, l_price > 25) t \
                         on t.l_part = p_key where p_brand = 'a' order by 1, 2",
                        // TPC-H q20's shape: a correlated grouping inside an `IN` subquery.
                        "select p_key, p_brand from parts where p_key in \
                         (select l_part from lines where l_price > 15 and l_quantity > \
                         (select 0.3 * sum(l_quantity) from lines l2 where l2.l_part = lines.l_part)) \
                         and p_brand = 'a' order by 1",
                    ],
                )
                .await,
            );
        }
        assert_eq!(results[0], results[1]);
    }
}
