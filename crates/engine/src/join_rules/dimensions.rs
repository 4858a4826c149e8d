//! A filtered dimension narrows the table its key comes from, before that table meets the
//! other tables.
//!
//! In
//!
//! ```sql
//! select … from supplier, lineitem, orders, customer, nation
//! where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey
//!   and s_nationkey = n_nationkey and n_name = 'FRANCE'
//! ```
//!
//! the tables are joined in the order they are written, so the lines of every supplier meet
//! their orders and customers before the join with `nation` keeps one nation's suppliers in
//! twenty-five. When one input of a join is a filtered read of a small table (a dimension) and
//! the other takes the join key, through inner joins, from a relation further down (here
//! `supplier`), this rule semi-joins that relation with the dimension's keys where it is read:
//! `supplier ⋉ (select n_nationkey from nation where n_name = 'FRANCE')`. The join with the
//! dimension stays (it adds the dimension's columns and keeps its rows' multiplicity); the
//! joins in between see only the rows that can reach it.
//!
//! The rows out are the same: the semi join drops the rows whose key has no match in the
//! dimension, and every row the inner joins in between make of such a row carries the key
//! unchanged, so the join with the dimension would have dropped it. The join must drop the
//! rows of that input that have no match (inner, semi, or the outer side's partner of an
//! outer join) and compare keys with `=` (never matching NULLs).
//!
//! The dimension is read twice, so only small tables qualify: up to [`SMALL_TABLE_BYTES`] of
//! data files, and no larger than the table being narrowed. A table this rule has narrowed
//! by a dimension's keys (`customer` by the nations of one region) is a dimension of any size
//! in turn, for a table larger than itself (`orders` by those customers): it keeps a small
//! part of its rows, as its own dimension did. Sizes come from [`crate::table_sizes`]; a table
//! of unknown size is left alone.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::{dropping_inputs, filtered_read, insert_after_filter_pushdown, is_keys, with_inputs};

/// The alias of a dimension's keys.
const KEYS: &str = "__strata_dimension_keys";

/// The largest dimension (bytes of its data files) read a second time for its keys: reading
/// and hashing it costs little next to the joins its keys narrow.
pub const SMALL_TABLE_BYTES: u64 = 16 << 20;

/// The optimizer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct DimensionKeysFirst;

impl DimensionKeysFirst {
    /// Put the rule in DataFusion's list after filters are pushed down, so that it sees which
    /// tables are filtered.
    pub fn insert(rules: &mut Vec<Arc<dyn OptimizerRule + Send + Sync>>) {
        insert_after_filter_pushdown(rules, Arc::new(DimensionKeysFirst));
    }
}

impl OptimizerRule for DimensionKeysFirst {
    fn name(&self) -> &str {
        "strata_dimension_keys_first"
    }

    /// From the top, so that a dimension narrowed by another (nations by their region) is
    /// narrowed before it narrows the tables below it in turn, in one pass.
    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
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
            LogicalPlan::Join(join) => match narrow(&join, config)? {
                Some(narrowed) => Ok(Transformed::yes(narrowed)),
                None => Ok(Transformed::no(LogicalPlan::Join(join))),
            },
            other => Ok(Transformed::no(other)),
        }
    }
}

/// The join with one input narrowed by the keys of the other (a dimension); `None` when it
/// stays as it is.
fn narrow(join: &Join, config: &dyn OptimizerConfig) -> Result<Option<LogicalPlan>> {
    let Some((left_drops, right_drops)) = dropping_inputs(join) else {
        return Ok(None);
    };
    let (mut left, mut right) = (None, None);
    for (l, r) in &join.on {
        let (Expr::Column(lc), Expr::Column(rc)) = (l, r) else {
            continue;
        };
        let facts = left.as_ref().unwrap_or(join.left.as_ref());
        if left_drops && let Some(narrowed) = narrowed(facts, lc, &join.right, rc, config)? {
            left = Some(narrowed);
            continue;
        }
        let facts = right.as_ref().unwrap_or(join.right.as_ref());
        if right_drops && let Some(narrowed) = narrowed(facts, rc, &join.left, lc, config)? {
            right = Some(narrowed);
        }
    }
    if left.is_none() && right.is_none() {
        return Ok(None);
    }
    let left = left.map_or_else(|| Arc::clone(&join.left), Arc::new);
    let right = right.map_or_else(|| Arc::clone(&join.right), Arc::new);
    Ok(Some(LogicalPlan::Join(with_inputs(join, left, right)?)))
}

/// `facts` with the relation that `key` comes from semi-joined with the values of `dim_key` in
/// `dimension`; `None` when `dimension` is not a filtered read of a small table or the
/// relation is not below an inner join of `facts`.
fn narrowed(
    facts: &LogicalPlan,
    key: &Column,
    dimension: &LogicalPlan,
    dim_key: &Column,
    config: &dyn OptimizerConfig,
) -> Result<Option<LogicalPlan>> {
    if !filtered_read(dimension) {
        return Ok(None);
    }
    let Some(dim_bytes) = read_bytes(dimension) else {
        return Ok(None);
    };
    if dim_bytes > SMALL_TABLE_BYTES && !keyed(dimension) {
        return Ok(None);
    }
    let semi_join = |source: &LogicalPlan| -> Result<Option<LogicalPlan>> {
        if already_narrowed(source, key) || read_bytes(source).is_some_and(|b| b < dim_bytes) {
            return Ok(None);
        }
        let alias = config.alias_generator().next(KEYS);
        // Each key once: a narrowed table's key (`supplier.s_nationkey` of one region's
        // suppliers) repeats, and a hash join walks every equal key of its build side for
        // each row it probes.
        let keys = LogicalPlanBuilder::from(dimension.clone())
            .aggregate(vec![Expr::Column(dim_key.clone())], Vec::<Expr>::new())?
            .alias(alias.as_str())?
            .build()?;
        let plan = LogicalPlanBuilder::from(source.clone())
            .join(
                keys,
                JoinType::LeftSemi,
                (
                    vec![key.clone()],
                    vec![Column::new(Some(alias), dim_key.name.clone())],
                ),
                None,
            )?
            .build()?;
        Ok(Some(plan))
    };
    replace_source(facts, key, false, &semi_join)
}

type Replace<'a> = dyn Fn(&LogicalPlan) -> Result<Option<LogicalPlan>> + 'a;

/// `plan` with the relation that `key` comes from, through inner joins and projections that
/// pass it on, replaced by what `with` makes of it; `None` when there is no such relation, no
/// inner join lies between (`joined` tells whether one did above `plan`), or `with` gives none.
fn replace_source(
    plan: &LogicalPlan,
    key: &Column,
    joined: bool,
    with: &Replace,
) -> Result<Option<LogicalPlan>> {
    match plan {
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            let (in_left, in_right) = (
                j.left.schema().has_column(key),
                j.right.schema().has_column(key),
            );
            let (left, right) = match (in_left, in_right) {
                (true, false) => match replace_source(&j.left, key, true, with)? {
                    Some(left) => (Arc::new(left), Arc::clone(&j.right)),
                    None => return Ok(None),
                },
                (false, true) => match replace_source(&j.right, key, true, with)? {
                    Some(right) => (Arc::clone(&j.left), Arc::new(right)),
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
            Ok(Some(LogicalPlan::Join(with_inputs(j, left, right)?)))
        }
        LogicalPlan::Projection(p)
            if p.input.schema().has_column(key)
                && p.expr
                    .iter()
                    .any(|e| matches!(e, Expr::Column(c) if c == key)) =>
        {
            let Some(input) = replace_source(&p.input, key, joined, with)? else {
                return Ok(None);
            };
            Ok(Some(LogicalPlan::Projection(Projection::try_new(
                p.expr.clone(),
                Arc::new(input),
            )?)))
        }
        LogicalPlan::SubqueryAlias(a) if is_keys(a) => Ok(None),
        _ if joined && plan.schema().has_column(key) => with(plan),
        _ => Ok(None),
    }
}

/// Whether `source` is already semi-joined with a dimension's keys on `key`.
fn already_narrowed(source: &LogicalPlan, key: &Column) -> bool {
    let mut plan = source;
    while let LogicalPlan::Join(j) = plan
        && j.join_type == JoinType::LeftSemi
        && matches!(j.right.as_ref(), LogicalPlan::SubqueryAlias(a) if is_keys(a))
    {
        if j.on
            .iter()
            .any(|(l, _)| matches!(l, Expr::Column(c) if c == key))
        {
            return true;
        }
        plan = &j.left;
    }
    false
}

/// Whether a read of one table is narrowed by a dimension's keys.
fn keyed(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Filter(f) => keyed(&f.input),
        LogicalPlan::Projection(p) => keyed(&p.input),
        LogicalPlan::SubqueryAlias(a) => keyed(&a.input),
        LogicalPlan::Join(j) if j.join_type == JoinType::LeftSemi => {
            matches!(j.right.as_ref(), LogicalPlan::SubqueryAlias(a) if a.alias.table().starts_with(KEYS))
                || keyed(&j.left)
        }
        _ => false,
    }
}

/// The bytes of the table a read of one table reads (scans, filters, projections, aliases and
/// semi joins of such reads, by their left input); `None` when unknown.
fn read_bytes(plan: &LogicalPlan) -> Option<u64> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            crate::table_sizes::bytes_of(&source_as_provider(&scan.source).ok()?)
        }
        LogicalPlan::Filter(f) => read_bytes(&f.input),
        LogicalPlan::Projection(p) => read_bytes(&p.input),
        LogicalPlan::SubqueryAlias(a) => read_bytes(&a.input),
        LogicalPlan::Join(j) if j.join_type == JoinType::LeftSemi => read_bytes(&j.left),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_rules::tests::{answers, execute, optimized, session};
    use datafusion::prelude::SessionContext;

    fn context(with_rule: bool) -> SessionContext {
        session(with_rule.then_some(DimensionKeysFirst::insert as _))
    }

    /// Suppliers in 3 nations, their lines and orders; NULL keys in each.
    async fn tables(ctx: &SessionContext) {
        execute(
            ctx,
            &[
                "create table nation (n_key int, n_name text) as values \
                 (0, 'fr'), (1, 'de'), (2, 'it'), (null, 'xx')",
                "create table supplier as select cast(value as int) as s_key, \
                 case when value % 7 = 0 then null else cast(value % 3 as int) end as s_nation \
                 from generate_series(1, 300)",
                "create table orders as select cast(value as int) as o_key, \
                 cast(value % 50 as int) as o_cust from generate_series(1, 400)",
                "create table customer as select cast(value as int) as c_key, \
                 cast(value % 3 as int) as c_nation from generate_series(0, 49)",
                "create table lines as select cast(value % 400 as int) as l_order, \
                 case when value % 11 = 0 then null else cast(value % 300 as int) end as l_supp, \
                 cast(value as int) as l_price from generate_series(1, 3000)",
            ],
        )
        .await;
    }

    const SUPPLIERS_OF_FRANCE: &str = "select n_name, sum(l_price), count(*) \
        from supplier, lines, orders, nation \
        where s_key = l_supp and o_key = l_order and s_nation = n_key and n_name = 'fr' \
        group by n_name";

    const CUSTOMERS_OF_FRANCE: &str = "select sum(l_price), count(*) \
        from lines, orders, customer, nation \
        where o_key = l_order and c_key = o_cust and c_nation = n_key and n_name = 'fr'";

    #[tokio::test]
    async fn a_filtered_dimension_narrows_the_table_its_key_comes_from() {
        let ctx = context(true);
        tables(&ctx).await;
        let plan = optimized(&ctx, SUPPLIERS_OF_FRANCE).await;
        let depth = |needle: &str| {
            plan.lines()
                .find(|l| l.contains(needle))
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or_else(|| panic!("no `{needle}` in\n{plan}"))
        };
        // Right on the suppliers, below their join with the lines.
        let semi = depth(&format!("LeftSemi Join: supplier.s_nation = {KEYS}"));
        assert!(
            semi > depth("Inner Join: supplier.s_key = lines.l_supp"),
            "{plan}"
        );
        assert_eq!(
            plan.matches(&format!("SubqueryAlias: {KEYS}")).count(),
            1,
            "{plan}"
        );
    }

    #[tokio::test]
    async fn a_narrowed_table_narrows_a_larger_one_in_turn() {
        let ctx = context(true);
        tables(&ctx).await;
        let plan = optimized(&ctx, CUSTOMERS_OF_FRANCE).await;
        // The customers of one nation, and the orders of those customers.
        for narrowed in ["customer.c_nation", "orders.o_cust"] {
            assert!(
                plan.contains(&format!("LeftSemi Join: {narrowed} = {KEYS}")),
                "{narrowed}\n{plan}"
            );
        }
        // Each key once: a narrowed table's keys may repeat.
        let lines: Vec<&str> = plan.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(&format!("SubqueryAlias: {KEYS}")) {
                assert!(
                    lines
                        .get(i + 1)
                        .is_some_and(|l| l.contains("Aggregate: groupBy=")),
                    "{plan}"
                );
            }
        }
    }

    #[tokio::test]
    async fn large_unfiltered_or_adjacent_dimensions_are_left_alone() {
        let ctx = context(true);
        tables(&ctx).await;
        for sql in [
            // The dimension is not filtered: nothing to drop.
            "select sum(l_price) from supplier, lines, nation \
             where s_key = l_supp and s_nation = n_key",
            // Joined with the table its key comes from: the join itself narrows it.
            "select sum(s_key) from supplier, nation where s_nation = n_key and n_name = 'fr'",
            // The filtered table is larger than the one its keys would narrow.
            "select count(*) from nation, supplier, lines \
             where s_nation = n_key and s_key = l_supp and l_price > 2900",
        ] {
            let plan = optimized(&ctx, sql).await;
            assert!(!plan.contains(KEYS), "{sql}\n{plan}");
        }
    }

    /// TPC-H q07's shape: one table twice, both copies dimensions.
    const TWO_NATIONS: &str = "select n1.n_name, n2.n_name, sum(l_price) \
        from supplier, lines, orders, customer, nation n1, nation n2 \
        where s_key = l_supp and o_key = l_order and c_key = o_cust \
        and s_nation = n1.n_key and c_nation = n2.n_key \
        and ((n1.n_name = 'fr' and n2.n_name = 'de') or (n1.n_name = 'de' and n2.n_name = 'fr')) \
        and l_price > 100 group by 1, 2 order by 1, 2";

    #[tokio::test]
    async fn the_keys_are_not_narrowed_in_turn() {
        fn both(rules: &mut Vec<Arc<dyn OptimizerRule + Send + Sync>>) {
            DimensionKeysFirst::insert(rules);
            crate::join_rules::grouped::KeysBeforeGrouping::insert(rules);
        }
        let ctx = session(Some(both));
        tables(&ctx).await;
        let plan = optimized(&ctx, TWO_NATIONS).await;
        assert!(plan.contains(KEYS), "{plan}");
        // The keys are grouped to have each once, not a grouped query whose groups a filtered
        // table's keys should narrow: that would read and group that table once more.
        assert!(!plan.contains("__strata_group_keys"), "{plan}");
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
                        SUPPLIERS_OF_FRANCE,
                        CUSTOMERS_OF_FRANCE,
                        // Two dimensions narrowing the same table on two keys.
                        "select n.n_name, count(*), sum(l_price) from lines, supplier, orders, nation n, nation m \
                         where s_key = l_supp and o_key = l_order and s_nation = n.n_key \
                         and o_cust % 3 = m.n_key and n.n_name in ('fr', 'de') and m.n_name = 'it' \
                         group by 1 order by 1",
                        // An outer join keeps the rows without a match: no narrowing.
                        "select count(*), count(n_name) from lines join supplier on s_key = l_supp \
                         left join nation on s_nation = n_key and n_name = 'de'",
                        TWO_NATIONS,
                        // A semi join (IN) with a dimension's keys.
                        "select count(*) from lines join supplier on s_key = l_supp \
                         where s_nation in (select n_key from nation where n_name <> 'it')",
                    ],
                )
                .await,
            );
        }
        assert_eq!(results[0], results[1]);
    }
}
