//! Facts are grouped by a dimension's key before the join that only adds the dimension's
//! columns.
//!
//! In
//!
//! ```sql
//! select c_custkey, c_name, c_address, n_name, sum(l_extendedprice * (1 - l_discount))
//! from customer, orders, lineitem, nation
//! where c_custkey = o_custkey and l_orderkey = o_orderkey and c_nationkey = n_nationkey
//!   and o_orderdate >= date '1993-10-01' and o_orderdate < date '1994-01-01'
//! group by c_custkey, c_name, c_address, n_name
//! ```
//!
//! every line of the quarter's orders meets its customer and nation, and the lines are then
//! grouped by the customer's columns: long strings, hashed and compared for every line. The
//! customers and nations are read whole (no filter); they only add columns to the groups. This
//! rule sums the lines of each `o_custkey` first (one integer key), and joins the sums with
//! `customer` and `nation`: the joins see one row per customer, not per line, and the final
//! grouping adds up each group's sums.
//!
//! The rows out are the same. The grouping is split in two (as DataFusion's own partial and
//! final aggregation is): `sum`, `count`, `min` and `max` of the facts' columns are computed per
//! key, then `sum`, `sum`, `min` and `max` of those per group. Every fact row of one key meets
//! the same dimension rows, so each group receives the same rows, added in another order. A key
//! without a match (or NULL) is dropped by the join after grouping, as its rows were before.
//!
//! It applies to a grouping whose input is inner joins with `=` keys, where
//! - every aggregate is `sum`, `count`, `min` or `max` (not `DISTINCT`, no `FILTER`, no
//!   `ORDER BY`) of the columns of some joined relations (the facts), and the relations that are
//!   not plain reads of a table (filtered, grouped, joined otherwise) are kept with the facts:
//!   they drop rows, so they are joined before grouping;
//! - the others (the dimensions) are unfiltered reads of tables that the facts reach through one
//!   column of theirs (the key), and the groups are made of the dimensions' columns and the key;
//! - the groups hold the key (or the dimension's column it is joined with: `c_custkey`), so
//!   there are as many groups as keys, and some hold text (or other values of varying width).
//!
//! Grouping every row by the key costs about 20 ns a row on one core; grouping by a few narrow
//! values (`select o_orderdate, sum(l_extendedprice) from lineitem, orders …`) or into a few
//! groups (`group by n_name`) costs less, so the rule would only add work there (TPC-H at scale
//! 1: twice the time, and 10–30% more), and leaves those alone. Grouping rows by a customer's
//! key, name, address and comment costs about a microsecond a row.
//!
//! When the facts reach the dimensions through several columns (TPC-H q09: a line's supplier and
//! its order), grouping by all of them would keep about a row per line, so the rule leaves the
//! query alone.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality, Result};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, Join, JoinConstraint, JoinType, LogicalPlan, Projection, cast,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::insert_after_filter_pushdown;

/// The prefix of the names of the sums (counts, minima, maxima) per key.
const PER_KEY: &str = "__strata_per_key";

/// The optimizer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct GroupBeforeDimensions;

impl GroupBeforeDimensions {
    /// Put the rule in DataFusion's list after filters are pushed down, so that it sees which
    /// relations are filtered. Insert it before the other join rules: it then runs after them
    /// and sees the relations they narrowed as filtered.
    pub fn insert(rules: &mut Vec<Arc<dyn OptimizerRule + Send + Sync>>) {
        insert_after_filter_pushdown(rules, Arc::new(GroupBeforeDimensions));
    }
}

impl OptimizerRule for GroupBeforeDimensions {
    fn name(&self) -> &str {
        "strata_group_before_dimensions"
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
            LogicalPlan::Aggregate(aggregate) => match regroup(&aggregate, config)? {
                Some(regrouped) => Ok(Transformed::yes(regrouped)),
                None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
            },
            other => Ok(Transformed::no(other)),
        }
    }
}

/// Inner joins taken apart: the joined relations, in the order they are read, and the pairs
/// of keys they are joined on (columns, or expressions of a column: `CAST(o_custkey AS
/// BIGINT)`).
#[derive(Default)]
struct Joined {
    relations: Vec<Arc<LogicalPlan>>,
    on: Vec<(Expr, Expr)>,
}

impl Joined {
    /// Take `plan` apart; `false` when a join has a condition besides its keys. Projections
    /// of columns over joins are looked through (the rebuilt joins keep every column, and
    /// DataFusion prunes them again).
    fn add(&mut self, plan: &Arc<LogicalPlan>) -> bool {
        match below_column_projections(plan).as_ref() {
            LogicalPlan::Join(j)
                if j.join_type == JoinType::Inner
                    && j.filter.is_none()
                    && j.null_equality == NullEquality::NullEqualsNothing =>
            {
                self.on.extend(j.on.iter().cloned());
                self.add(&j.left) && self.add(&j.right)
            }
            _ => {
                self.relations.push(Arc::clone(plan));
                true
            }
        }
    }

    /// Which relation `column` belongs to; `None` when none (or several) has it.
    fn relation_of(&self, column: &Column) -> Option<usize> {
        let mut found = self
            .relations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.schema().has_column(column))
            .map(|(i, _)| i);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// The column a key reads, and which relation it belongs to; `None` when the key reads
    /// no column or several.
    fn key_column<'a>(&self, key: &'a Expr) -> Option<(&'a Column, usize)> {
        let mut columns = key.column_refs().into_iter();
        let (Some(column), None) = (columns.next(), columns.next()) else {
            return None;
        };
        if has_subquery(key) {
            return None;
        }
        Some((column, self.relation_of(column)?))
    }
}

/// `plan` without the projections of plain columns over a join at its top.
fn below_column_projections(plan: &Arc<LogicalPlan>) -> &Arc<LogicalPlan> {
    let mut at = plan;
    while let LogicalPlan::Projection(p) = at.as_ref() {
        if !p.expr.iter().all(|e| matches!(e, Expr::Column(_))) {
            break;
        }
        at = &p.input;
    }
    if matches!(at.as_ref(), LogicalPlan::Join(_)) {
        at
    } else {
        plan
    }
}

/// An aggregate split in two: computed per key, then per group over those.
struct Split {
    per_key: Expr,
    per_group: Expr,
    /// The aggregate's name and type in the original grouping.
    name: String,
    data_type: DataType,
}

/// The grouping with its facts grouped by the dimensions' key first; `None` when it stays.
fn regroup(aggregate: &Aggregate, config: &dyn OptimizerConfig) -> Result<Option<LogicalPlan>> {
    if !matches!(
        below_column_projections(&aggregate.input).as_ref(),
        LogicalPlan::Join(_)
    ) || aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Ok(None);
    }
    let mut joined = Joined::default();
    if !joined.add(&aggregate.input) {
        return Ok(None);
    }
    let Some(keyed) = joined
        .on
        .iter()
        .map(|(l, r)| Some((joined.key_column(l)?, joined.key_column(r)?)))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let ends: Vec<(usize, usize)> = keyed.iter().map(|((_, l), (_, r))| (*l, *r)).collect();

    // The facts: the relations the aggregates read, and those that are not plain reads.
    let mut facts = vec![false; joined.relations.len()];
    for e in &aggregate.aggr_expr {
        for column in e.column_refs() {
            let Some(i) = joined.relation_of(column) else {
                return Ok(None);
            };
            facts[i] = true;
        }
    }
    for (i, relation) in joined.relations.iter().enumerate() {
        if !unfiltered_read(relation) {
            facts[i] = true;
        }
    }
    if facts.iter().all(|f| *f) || !facts.iter().any(|f| *f) {
        return Ok(None);
    }
    // Already grouped (by this rule, or by the query).
    if facts.iter().filter(|f| **f).count() == 1
        && facts
            .iter()
            .zip(&joined.relations)
            .any(|(f, r)| *f && grouped(r))
    {
        return Ok(None);
    }

    // The one column of the facts the dimensions are joined on, and the dimensions' columns
    // it meets.
    let mut keys: HashSet<&Column> = HashSet::new();
    let mut partners: HashSet<&Column> = HashSet::new();
    for ((l, li), (r, ri)) in &keyed {
        match (facts[*li], facts[*ri]) {
            (true, false) => (keys.insert(*l), partners.insert(*r)),
            (false, true) => (keys.insert(*r), partners.insert(*l)),
            _ => (false, false),
        };
    }
    let mut keys = keys.into_iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Ok(None);
    };
    let key = key.clone();
    let mut per_key_groups = false;
    let mut wide_groups = false;
    for (e, field) in aggregate.group_expr.iter().zip(aggregate.schema.fields()) {
        for column in e.column_refs() {
            let Some(i) = joined.relation_of(column) else {
                return Ok(None);
            };
            if facts[i] && *column != key {
                return Ok(None);
            }
        }
        per_key_groups |= matches!(e, Expr::Column(c) if *c == key || partners.contains(c));
        wide_groups |= variable_width(field.data_type());
    }
    // Worth it when the groups are as many as the keys (they hold the key, or the column of a
    // dimension it meets) and some are text: grouping by the key first then replaces hashing
    // and comparing text for every row. Few groups, or narrow ones (a date, a number), cost
    // less per row than grouping by the key first.
    if !(per_key_groups && wide_groups) {
        return Ok(None);
    }

    let Some(splits) = split_aggregates(aggregate, config) else {
        return Ok(None);
    };

    // The facts joined, then grouped by the key.
    let is_fact = |i: usize| facts[i];
    let Some(fact_rows) = joined_in_order(&joined, &ends, None, &is_fact)? else {
        return Ok(None);
    };
    let per_key = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(fact_rows),
        vec![Expr::Column(key)],
        splits.iter().map(|s| s.per_key.clone()).collect(),
    )?);
    // The dimensions joined to the sums per key.
    let Some(rows) = joined_in_order(&joined, &ends, Some(per_key), &|i| !facts[i])? else {
        return Ok(None);
    };
    let grouped = Aggregate::try_new(
        Arc::new(rows),
        aggregate.group_expr.clone(),
        splits.iter().map(|s| s.per_group.clone()).collect(),
    )?;

    // The original columns: the groups' as they are, the aggregates renamed (and cast back
    // to the type the aggregate had, which a sum of sums may widen).
    let groups = aggregate.group_expr.len();
    let mut columns: Vec<Expr> = grouped
        .schema
        .columns()
        .into_iter()
        .take(groups)
        .map(Expr::Column)
        .collect();
    for (split, field) in splits
        .iter()
        .zip(grouped.schema.fields().iter().skip(groups))
    {
        let mut value = Expr::Column(Column::from_name(field.name()));
        if *field.data_type() != split.data_type {
            value = cast(value, split.data_type.clone());
        }
        columns.push(value.alias(split.name.clone()));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        columns,
        Arc::new(LogicalPlan::Aggregate(grouped)),
    )?)))
}

/// Each aggregate split in two; `None` when one cannot be.
fn split_aggregates(aggregate: &Aggregate, config: &dyn OptimizerConfig) -> Option<Vec<Split>> {
    let groups = aggregate.group_expr.len();
    let fields = aggregate.schema.fields();
    let mut splits = Vec::with_capacity(aggregate.aggr_expr.len());
    for (i, e) in aggregate.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(f) = e.clone().unalias() else {
            return None;
        };
        let p = &f.params;
        if p.distinct
            || p.filter.is_some()
            || !p.order_by.is_empty()
            || p.args.iter().any(has_subquery)
        {
            return None;
        }
        let per_group_function = match f.func.name() {
            "sum" | "count" => sum_udaf(),
            "min" | "max" => Arc::clone(&f.func),
            _ => return None,
        };
        let name = config.alias_generator().next(PER_KEY);
        let field = fields.get(groups + i)?;
        splits.push(Split {
            per_key: Expr::AggregateFunction(f).alias(name.clone()),
            per_group: Expr::AggregateFunction(AggregateFunction::new_udf(
                per_group_function,
                vec![Expr::Column(Column::from_name(name))],
                false,
                None,
                vec![],
                None,
            )),
            name: field.name().clone(),
            data_type: field.data_type().clone(),
        });
    }
    Some(splits)
}

/// Whether an expression holds a subquery (whose columns [`Expr::column_refs`] does not list).
fn has_subquery(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}

/// The relations `wanted` picks, joined on their keys in the order they are read, each one
/// joined when it has a key in common with those before it; after `start` when given. `None`
/// when some relation has no key in common with the others.
fn joined_in_order(
    joined: &Joined,
    ends: &[(usize, usize)],
    start: Option<LogicalPlan>,
    wanted: &dyn Fn(usize) -> bool,
) -> Result<Option<LogicalPlan>> {
    let mut left: Vec<usize> = (0..joined.relations.len()).filter(|i| wanted(*i)).collect();
    let mut inside: HashSet<usize> = (0..joined.relations.len())
        .filter(|i| start.is_some() && !wanted(*i))
        .collect();
    let mut plan = start;
    while !left.is_empty() {
        let next = left.iter().position(|i| {
            plan.is_none()
                || ends
                    .iter()
                    .any(|(l, r)| (l == i && inside.contains(r)) || (r == i && inside.contains(l)))
        });
        let Some(at) = next else {
            return Ok(None);
        };
        let i = left.remove(at);
        let relation = Arc::clone(&joined.relations[i]);
        plan = Some(match plan {
            None => relation.as_ref().clone(),
            Some(plan) => {
                let on = joined
                    .on
                    .iter()
                    .zip(ends)
                    .filter_map(|((lc, rc), (l, r))| {
                        if *l == i && inside.contains(r) {
                            Some((rc.clone(), lc.clone()))
                        } else if *r == i && inside.contains(l) {
                            Some((lc.clone(), rc.clone()))
                        } else {
                            None
                        }
                    })
                    .collect();
                LogicalPlan::Join(Join::try_new(
                    Arc::new(plan),
                    relation,
                    on,
                    None,
                    JoinType::Inner,
                    JoinConstraint::On,
                    NullEquality::NullEqualsNothing,
                    false,
                )?)
            }
        });
        inside.insert(i);
    }
    Ok(plan)
}

/// Whether values of a type have each their own length (text, bytes, lists): costly to carry
/// through a join and to hash and compare in a grouping.
fn variable_width(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => variable_width(values),
        other => {
            !other.is_primitive()
                && !matches!(
                    other,
                    DataType::Boolean | DataType::Null | DataType::FixedSizeBinary(_)
                )
        }
    }
}

/// Whether a relation is a grouping, under projections and aliases.
fn grouped(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Projection(p) => grouped(&p.input),
        LogicalPlan::SubqueryAlias(a) => grouped(&a.input),
        _ => false,
    }
}

/// Whether a relation reads a whole table: a scan without filters or limit, under
/// projections and aliases.
fn unfiltered_read(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => scan.filters.is_empty() && scan.fetch.is_none(),
        LogicalPlan::Projection(p) => unfiltered_read(&p.input),
        LogicalPlan::SubqueryAlias(a) => unfiltered_read(&a.input),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_rules::tests::{answers, execute, optimized, session};
    use datafusion::prelude::SessionContext;

    fn context(with_rule: bool) -> SessionContext {
        session(with_rule.then_some(GroupBeforeDimensions::insert as _))
    }

    /// Customers in nations, their orders and the orders' lines; NULL keys, a customer key
    /// twice, orders of no customer and lines of no order.
    async fn tables(ctx: &SessionContext) {
        execute(
            ctx,
            &[
                "create table nation (n_key int, n_name text) as values \
                 (0, 'fr'), (1, 'de'), (2, 'it'), (null, 'xx')",
                "create table customer as select value as c_key, \
                 'customer ' || value as c_name, \
                 case when value % 13 = 0 then null else value % 3 end as c_nation \
                 from generate_series(0, 59) union all select 7, 'customer 7 again', 1",
                "create table orders as select value as o_key, \
                 case when value % 17 = 0 then null else value % 70 end as o_cust, \
                 value % 12 as o_month from generate_series(1, 400)",
                "create table lines as select value % 420 as l_order, \
                 cast(value % 97 as decimal(12, 2)) / 4 as l_price, \
                 value % 5 as l_quantity, \
                 case when value % 4 = 0 then 'R' else 'N' end as l_flag \
                 from generate_series(1, 3000)",
            ],
        )
        .await;
    }

    /// TPC-H q10's shape: the lines of some orders, grouped by their customers' columns.
    const REVENUE_BY_CUSTOMER: &str = "select c_key, c_name, n_name, sum(l_price * 2) as revenue \
        from customer, orders, lines, nation \
        where c_key = o_cust and l_order = o_key and c_nation = n_key \
        and o_month < 3 and l_flag = 'R' \
        group by c_key, c_name, n_name order by revenue desc, c_key, c_name";

    #[tokio::test]
    async fn facts_are_grouped_by_the_key_before_the_dimensions() {
        let ctx = context(true);
        tables(&ctx).await;
        let plan = optimized(&ctx, REVENUE_BY_CUSTOMER).await;
        let depth = |needle: &str| {
            plan.lines()
                .find(|l| l.contains(needle))
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or_else(|| panic!("no `{needle}` in\n{plan}"))
        };
        // The lines of each customer summed, below the joins with customers and nations.
        let per_key = depth("Aggregate: groupBy=[[orders.o_cust]]");
        assert!(
            per_key > depth("Inner Join: orders.o_cust = customer.c_key"),
            "{plan}"
        );
        assert!(
            per_key < depth("Inner Join: orders.o_key = lines.l_order"),
            "{plan}"
        );
        assert!(
            per_key > depth("Aggregate: groupBy=[[customer.c_key"),
            "{plan}"
        );
    }

    #[tokio::test]
    async fn other_shapes_are_left_alone() {
        let ctx = context(true);
        tables(&ctx).await;
        for sql in [
            // The dimension is filtered: it drops rows, so it is joined first.
            "select c_name, sum(l_price) from customer, orders, lines \
             where c_key = o_cust and l_order = o_key and o_month < 6 and c_name like '%1%' \
             group by c_name",
            // The facts reach the dimensions through two columns.
            "select n_name, c_name, sum(l_price) from customer, orders, lines, nation \
             where c_key = o_cust and l_order = o_key and l_quantity = n_key \
             group by n_name, c_name",
            // Grouped by a column of the facts.
            "select c_name, l_flag, sum(l_price) from customer, orders, lines \
             where c_key = o_cust and l_order = o_key and o_month < 6 group by c_name, l_flag",
            // An average, a distinct count.
            "select c_name, avg(l_price) from customer, orders, lines \
             where c_key = o_cust and l_order = o_key group by c_name",
            "select c_name, count(distinct l_price) from customer, orders, lines \
             where c_key = o_cust and l_order = o_key group by c_name",
            // Grouped by the dimension's text but not its key: few groups, maybe.
            "select n_name, sum(l_price) from lines, orders, customer, nation \
             where l_order = o_key and o_cust = c_key and c_nation = n_key group by n_name",
            // Grouped by narrow values only, or not grouped.
            "select o_month, sum(l_price) from lines, orders where l_order = o_key \
             group by o_month",
            "select sum(l_price), count(*) from lines, orders, customer \
             where l_order = o_key and o_cust = c_key",
            // An outer join keeps the facts without a dimension.
            "select c_name, sum(o_month) from orders left join customer on c_key = o_cust \
             group by c_name",
        ] {
            let plan = optimized(&ctx, sql).await;
            assert!(!plan.contains(PER_KEY), "{sql}\n{plan}");
        }
    }

    #[tokio::test]
    async fn the_rows_are_the_same() {
        let queries = [
            REVENUE_BY_CUSTOMER,
            // Counts, minima and maxima; the dimension's key in the groups.
            "select c_name, c_key, count(*), count(l_price), min(l_price), max(l_quantity), \
             sum(l_quantity) from orders join lines on l_order = o_key \
             join customer on c_key = o_cust where o_month < 11 \
             group by c_name, c_key order by c_key, c_name",
            // The facts' key in the groups, and an expression.
            "select o_cust, upper(n_name) as nation, sum(l_quantity) from lines, orders, customer, nation \
             where l_order = o_key and o_cust = c_key and c_nation = n_key and o_month <> 5 \
             group by o_cust, upper(n_name) order by 1, 2",
            // A condition on the groups' sums.
            "select c_key, n_name, sum(l_price) from lines, orders, customer, nation \
             where l_order = o_key and o_cust = c_key and c_nation = n_key and o_month > 2 \
             group by c_key, n_name having sum(l_price) > 100 order by 1, 2",
            // Dimensions joined to each other and to the facts in any order: the lines per
            // order, with their orders' customers and nations.
            "select o_key, c_name, n_name, sum(l_price) from nation, lines, customer, orders \
             where c_nation = n_key and o_cust = c_key and l_order = o_key and l_flag = 'N' \
             group by o_key, c_name, n_name order by 1, 2, 3",
        ];
        let mut results = Vec::new();
        for with_rule in [true, false] {
            let ctx = context(with_rule);
            tables(&ctx).await;
            if with_rule {
                for sql in queries {
                    let plan = optimized(&ctx, sql).await;
                    assert!(plan.contains(PER_KEY), "{sql}\n{plan}");
                }
            }
            results.push(answers(&ctx, &queries).await);
        }
        assert_eq!(results[0], results[1]);
    }
}
