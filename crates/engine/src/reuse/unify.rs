//! When two parts of a plan compute the same rows, and the one plan that gives both.
//!
//! Two copies of a CTE, or the same joins written twice (in a query and in its subquery), are
//! optimized each for its own reader: one keeps a column the other drops. [`unify`] sees past
//! that: it matches the two node by node, and where they differ only in the columns they keep,
//! returns one plan that keeps the columns of both.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::{
    Aggregate, Expr, Filter, Join, JoinType, LogicalPlan, Projection, SubqueryAlias,
    TableScanBuilder,
};

use crate::join_rules::with_inputs;

/// One plan whose rows are those of `a` and of `b`, with the columns of both (and their
/// names), or `None` when they differ in more than the columns they keep.
pub(crate) fn unify(a: &LogicalPlan, b: &LogicalPlan) -> Option<LogicalPlan> {
    use LogicalPlan as P;
    match (a, b) {
        (P::Projection(x), P::Projection(y)) => {
            let input = unify(&x.input, &y.input)?;
            let mut expr = x.expr.clone();
            for e in &y.expr {
                if !expr.contains(e) {
                    expr.push(e.clone());
                }
            }
            Projection::try_new(expr, Arc::new(input))
                .ok()
                .map(P::Projection)
        }
        (P::Projection(_), _) => unify(a, &all_columns(b)?),
        (_, P::Projection(_)) => unify(&all_columns(a)?, b),
        (P::TableScan(x), P::TableScan(y)) => {
            if x.table_name != y.table_name
                || !Arc::ptr_eq(&x.source, &y.source)
                || x.filters != y.filters
                || x.fetch != y.fetch
            {
                return None;
            }
            let projection = match (&x.projection, &y.projection) {
                (Some(p), Some(q)) => {
                    let mut both: Vec<usize> = p.iter().chain(q).copied().collect();
                    both.sort_unstable();
                    both.dedup();
                    Some(both)
                }
                _ => None,
            };
            TableScanBuilder::new(x.table_name.clone(), x.source.clone())
                .with_projection(projection)
                .with_filters(x.filters.clone())
                .with_fetch(x.fetch)
                .with_statistics_requests(
                    x.statistics_requests
                        .union(&y.statistics_requests)
                        .cloned()
                        .collect(),
                )
                .build()
                .ok()
                .map(P::TableScan)
        }
        (P::Filter(x), P::Filter(y)) if x.predicate == y.predicate => {
            let input = unify(&x.input, &y.input)?;
            Filter::try_new(x.predicate.clone(), Arc::new(input))
                .ok()
                .map(P::Filter)
        }
        (P::Join(x), P::Join(y))
            if x.join_type == y.join_type
                && x.join_constraint == y.join_constraint
                && x.null_equality == y.null_equality
                && x.null_aware == y.null_aware =>
        {
            let renamed = hidden_alias_renamed(x, y);
            let y = renamed.as_ref().unwrap_or(y);
            if x.on != y.on || x.filter != y.filter {
                return None;
            }
            let left = unify(&x.left, &y.left)?;
            let right = unify(&x.right, &y.right)?;
            with_inputs(x, Arc::new(left), Arc::new(right))
                .ok()
                .map(P::Join)
        }
        (P::SubqueryAlias(x), P::SubqueryAlias(y)) if x.alias == y.alias => {
            let input = unify(&x.input, &y.input)?;
            SubqueryAlias::try_new(Arc::new(input), x.alias.clone())
                .ok()
                .map(P::SubqueryAlias)
        }
        (P::Aggregate(x), P::Aggregate(y)) if x.group_expr == y.group_expr => {
            let input = unify(&x.input, &y.input)?;
            let mut aggr = x.aggr_expr.clone();
            for e in &y.aggr_expr {
                if !aggr.contains(e) {
                    aggr.push(e.clone());
                }
            }
            Aggregate::try_new(Arc::new(input), x.group_expr.clone(), aggr)
                .ok()
                .map(P::Aggregate)
        }
        // Anything else (sorts, limits, windows, unions, distinct rows) only when the same.
        _ => same(a, b).then(|| a.clone()),
    }
}

/// `y` with the generated alias of its input whose columns it does not pass on (the keys of a
/// semi or anti join, named `__correlated_sq_1`, `__strata_dimension_keys_2`, … by whichever
/// rule made them) renamed to that of `x`: the same keys, made twice, are named apart.
fn hidden_alias_renamed(x: &Join, y: &Join) -> Option<Join> {
    fn hidden(j: &Join) -> Option<&LogicalPlan> {
        match j.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => Some(&j.right),
            JoinType::RightSemi | JoinType::RightAnti => Some(&j.left),
            _ => None,
        }
    }
    let (LogicalPlan::SubqueryAlias(a), LogicalPlan::SubqueryAlias(b)) = (hidden(x)?, hidden(y)?)
    else {
        return None;
    };
    let generated = |alias: &TableReference| alias.table().starts_with("__");
    if a.alias == b.alias || !generated(&a.alias) || !generated(&b.alias) {
        return None;
    }
    let rename = |e: &Expr| -> Option<Expr> {
        e.clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) if c.relation.as_ref() == Some(&b.alias) => {
                        Transformed::yes(Expr::Column(Column::new(Some(a.alias.clone()), c.name)))
                    }
                    e => Transformed::no(e),
                })
            })
            .ok()
            .map(|t| t.data)
    };
    let on =
        y.on.iter()
            .map(|(l, r)| Some((rename(l)?, rename(r)?)))
            .collect::<Option<Vec<_>>>()?;
    let filter = match &y.filter {
        Some(f) => Some(rename(f)?),
        None => None,
    };
    let keys = Arc::new(LogicalPlan::SubqueryAlias(
        SubqueryAlias::try_new(b.input.clone(), a.alias.clone()).ok()?,
    ));
    let (left, right) = match y.join_type {
        JoinType::LeftSemi | JoinType::LeftAnti => (y.left.clone(), keys),
        _ => (keys, y.right.clone()),
    };
    Join::try_new(
        left,
        right,
        on,
        filter,
        y.join_type,
        y.join_constraint,
        y.null_equality,
        y.null_aware,
    )
    .ok()
}

/// Whether two plans are the same and read the same tables (a scan's equality leaves out its
/// table: two versions of one table have the same name).
pub(crate) fn same(a: &LogicalPlan, b: &LogicalPlan) -> bool {
    a == b && {
        let (x, y) = (sources(a), sources(b));
        x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| Arc::ptr_eq(p, q))
    }
}

/// The tables a plan reads, in order.
fn sources(plan: &LogicalPlan) -> Vec<Arc<dyn datafusion::logical_expr::TableSource>> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found.push(scan.source.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `plan` under a projection of all its columns.
fn all_columns(plan: &LogicalPlan) -> Option<LogicalPlan> {
    let expr = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| Expr::Column(Column::from((qualifier, field))))
        .collect();
    Projection::try_new(expr, Arc::new(plan.clone()))
        .ok()
        .map(LogicalPlan::Projection)
}
