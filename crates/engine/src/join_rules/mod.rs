//! Optimizer rules about joins, and what they share.
//!
//! DataFusion joins the tables of a `FROM` clause in the order they are written and chooses
//! only which input of each join is hashed. These rules move or add filters so that fewer rows
//! reach the joins, each with the same rows out:
//! - [`semi_placement`]: `IN`/`EXISTS` subqueries filter the table they read, below inner joins;
//! - [`grouped`]: a grouped subquery computes only the groups its join can keep;
//! - [`dimensions`]: a filtered small table (a dimension) narrows the table its key comes
//!   from, below the joins in between;
//! - [`early_grouping`]: facts are grouped by a dimension's key before the joins that only add
//!   the dimensions' columns to the groups.

pub mod dimensions;
pub mod early_grouping;
pub mod grouped;
pub mod semi_placement;

use std::sync::Arc;

use datafusion::common::{Column, NullEquality, Result};
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, SubqueryAlias};
use datafusion::optimizer::OptimizerRule;

/// What the aliases of the keys these rules put in front of a relation start with.
pub(crate) const KEYS_PREFIX: &str = "__strata_";

/// Whether an alias names keys one of these rules made.
fn is_keys(alias: &SubqueryAlias) -> bool {
    alias.alias.table().starts_with(KEYS_PREFIX)
}

/// Put `rule` in DataFusion's list of optimizer rules right after filters are pushed down.
pub(crate) fn insert_after_filter_pushdown(
    rules: &mut Vec<Arc<dyn OptimizerRule + Send + Sync>>,
    rule: Arc<dyn OptimizerRule + Send + Sync>,
) {
    let at = rules
        .iter()
        .position(|r| r.name() == "push_down_filter")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(at, rule);
}

/// Which inputs of `join` lose their rows that have no match (left, right); `None` when its
/// keys compare NULLs as equal, so that a filter by the other input's keys could drop rows
/// the join keeps.
pub(crate) fn dropping_inputs(join: &Join) -> Option<(bool, bool)> {
    if join.null_equality != NullEquality::NullEqualsNothing {
        return None;
    }
    Some(match join.join_type {
        JoinType::Inner | JoinType::LeftSemi | JoinType::RightSemi => (true, true),
        JoinType::Left => (false, true),
        JoinType::Right => (true, false),
        _ => (false, false),
    })
}

/// `join` with other inputs (of the same columns).
pub(crate) fn with_inputs(
    join: &Join,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
) -> Result<Join> {
    Join::try_new(
        left,
        right,
        join.on.clone(),
        join.filter.clone(),
        join.join_type,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )
}

/// The relation below inner joins and projections that `key` comes from.
pub(crate) fn key_source<'a>(plan: &'a LogicalPlan, key: &Column) -> Option<&'a LogicalPlan> {
    match plan {
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            match (
                j.left.schema().has_column(key),
                j.right.schema().has_column(key),
            ) {
                (true, false) => key_source(&j.left, key),
                (false, true) => key_source(&j.right, key),
                _ => None,
            }
        }
        LogicalPlan::Projection(p)
            if p.expr
                .iter()
                .any(|e| matches!(e, Expr::Column(c) if c == key)) =>
        {
            if p.input.schema().has_column(key) {
                key_source(&p.input, key)
            } else {
                Some(plan)
            }
        }
        // Keys a rule put in front of a relation are not a source of their own.
        LogicalPlan::SubqueryAlias(a) if is_keys(a) => None,
        _ => plan.schema().has_column(key).then_some(plan),
    }
}

/// Whether a relation is a filtered read of a table (or a table's rows that a plain subquery,
/// or keys one of these rules made, name): few of its rows are kept, and reading it again is
/// cheap.
pub(crate) fn filtered_read(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => !scan.filters.is_empty(),
        LogicalPlan::Filter(f) => plain_read(&f.input),
        LogicalPlan::Projection(p) => filtered_read(&p.input),
        LogicalPlan::SubqueryAlias(a) => filtered_read(&a.input),
        LogicalPlan::Join(j) if j.join_type == JoinType::LeftSemi => {
            plain_read(&j.left)
                && (plain_read(&j.right)
                    || matches!(j.right.as_ref(), LogicalPlan::SubqueryAlias(a) if is_keys(a)))
        }
        _ => false,
    }
}

/// Whether a relation only reads a table: scans, filters, projections and aliases.
pub(crate) fn plain_read(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::Filter(f) => plain_read(&f.input),
        LogicalPlan::Projection(p) => plain_read(&p.input),
        LogicalPlan::SubqueryAlias(a) => plain_read(&a.input),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// What puts a rule in DataFusion's list.
    pub(crate) type Insert = fn(&mut Vec<Arc<dyn OptimizerRule + Send + Sync>>);

    /// A session with DataFusion's optimizer rules and, if given, one more.
    pub(crate) fn session(rule: Option<Insert>) -> SessionContext {
        let mut rules = datafusion::optimizer::Optimizer::new().rules;
        if let Some(insert) = rule {
            insert(&mut rules);
        }
        SessionContext::new_with_state(
            SessionStateBuilder::new()
                .with_default_features()
                .with_optimizer_rules(rules)
                .build(),
        )
    }

    /// Run statements (`create table …`) in a session.
    pub(crate) async fn execute(ctx: &SessionContext, statements: &[&str]) {
        for sql in statements {
            ctx.sql(sql)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
        }
    }

    /// The optimized plan of a query, indented.
    pub(crate) async fn optimized(ctx: &SessionContext, sql: &str) -> String {
        ctx.sql(sql)
            .await
            .expect("plan")
            .into_optimized_plan()
            .expect("optimize")
            .display_indent()
            .to_string()
    }

    /// The rows of each query, as tables of text.
    pub(crate) async fn answers(ctx: &SessionContext, queries: &[&str]) -> Vec<String> {
        let mut rows = Vec::new();
        for sql in queries {
            let batches = ctx
                .sql(sql)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            rows.push(
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .expect("format")
                    .to_string(),
            );
        }
        rows
    }
}
