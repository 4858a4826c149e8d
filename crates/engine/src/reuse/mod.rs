//! A part of a query that appears more than once is computed once.
//!
//! A CTE read twice (`revenue` in a query and in its `max()` subquery), or the same joins
//! written in a query and in its `HAVING` subquery, are planned by DataFusion as separate
//! copies, each computed from the tables. Just before a query is planned for execution, the
//! [`ReusingPlanner`] finds such copies (joins or aggregations that compute the same rows; see
//! [`unify`] for copies that keep different columns) and marks them as one shared part: the
//! first copy to run keeps its batches and the others read them (see [`exec`]).
//!
//! Left alone: parts with volatile functions (`random()`), correlated columns, recursive
//! queries, or other extension nodes; and every query sent to a cluster (its executors plan
//! the query themselves).

pub mod exec;
mod unify;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use deltalake::delta_datafusion::planner::DeltaExtensionPlanner;

use exec::{Shared, SharedPlanner, SharedState};
use unify::same;
pub(crate) use unify::unify;

/// How many shared parts one query gets at most.
const MOST_SHARED: usize = 8;

/// The warehouse's query planner: DataFusion's, with Delta Lake's plan nodes, after marking
/// the parts of a query that appear more than once as shared.
#[derive(Debug, Default)]
pub struct ReusingPlanner;

#[async_trait]
impl QueryPlanner for ReusingPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = share_repeated(logical_plan.clone())?;
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![
            DeltaExtensionPlanner::new(),
            Arc::new(SharedPlanner),
        ]);
        planner.create_physical_plan(&plan, session).await
    }
}

/// `plan` with each part that appears more than once (the largest first) put under
/// [`Shared`] nodes, one state per part.
pub(crate) fn share_repeated(mut plan: LogicalPlan) -> Result<LogicalPlan> {
    if has_recursion(&plan) {
        return Ok(plan);
    }
    for id in 0..MOST_SHARED {
        let Some((members, unified)) = repeated_part(&plan) else {
            break;
        };
        let state = SharedState::new();
        let shared = LogicalPlan::Extension(Extension {
            node: Arc::new(Shared {
                id,
                input: unified,
                state: state.clone(),
            }),
        });
        let mut copies = 0;
        plan = plan
            .transform_down_with_subqueries(|node| {
                if let LogicalPlan::Extension(_) = node {
                    return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
                }
                if !members.iter().any(|m| same(&node, m)) {
                    return Ok(Transformed::no(node));
                }
                copies += 1;
                // The copy's own columns, by their own names, out of the shared part's.
                let columns = node
                    .schema()
                    .iter()
                    .map(|(q, f)| Expr::Column((q, f).into()))
                    .collect::<Vec<_>>();
                let copy = if node.schema() == shared.schema() {
                    shared.clone()
                } else {
                    LogicalPlan::Projection(datafusion::logical_expr::Projection::try_new(
                        columns,
                        Arc::new(shared.clone()),
                    )?)
                };
                Ok(Transformed::new(copy, true, TreeNodeRecursion::Jump))
            })?
            .data;
        state.set_copies(copies);
    }
    Ok(plan)
}

/// A part of the plan worth computing once.
struct Candidate {
    plan: LogicalPlan,
    /// Its place in a walk of the whole plan, and how many nodes it holds: two candidates
    /// overlap when one holds the other.
    at: usize,
    size: usize,
}

impl Candidate {
    fn overlaps(&self, other: &Candidate) -> bool {
        self.at < other.at + other.size && other.at < self.at + self.size
    }
}

/// The largest part of `plan` found at least twice (not one within another), and the plan
/// that computes all of its copies.
fn repeated_part(plan: &LogicalPlan) -> Option<(Vec<LogicalPlan>, LogicalPlan)> {
    let mut candidates = Vec::new();
    walk(plan, &mut 0, &mut candidates);
    candidates.sort_by_key(|c| std::cmp::Reverse(c.size));
    for (i, first) in candidates.iter().enumerate() {
        let mut group = vec![first];
        let mut unified = first.plan.clone();
        for other in &candidates[i + 1..] {
            if group.iter().any(|g| g.overlaps(other)) {
                continue;
            }
            if let Some(u) = unify(&unified, &other.plan) {
                unified = u;
                group.push(other);
            }
        }
        if group.len() > 1 {
            let members = group.iter().map(|c| c.plan.clone()).collect();
            return Some((members, unified));
        }
    }
    None
}

/// What a walk learns of a part of the plan.
struct Seen {
    /// Nothing in it stops it from being shared.
    shareable: bool,
    /// It joins or aggregates: computing it again costs more than reading kept batches.
    worth: bool,
}

/// Number the nodes of `plan` (with its subqueries) in a walk from the top, and note the
/// parts worth sharing.
fn walk(plan: &LogicalPlan, next: &mut usize, found: &mut Vec<Candidate>) -> Seen {
    let at = *next;
    *next += 1;
    if let LogicalPlan::Extension(_) = plan {
        // Not looked into: a shared part's input is in each of its copies.
        return Seen {
            shareable: false,
            worth: false,
        };
    }
    let mut seen = Seen {
        shareable: match plan {
            LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_) => false,
            _ => plan.expressions().iter().all(|e| {
                !e.is_volatile()
                    && !e
                        .exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
                        .unwrap_or(true)
            }),
        },
        worth: matches!(plan, LogicalPlan::Join(_) | LogicalPlan::Aggregate(_)),
    };
    let mut inner = |part: &LogicalPlan, seen: &mut Seen| {
        let part = walk(part, next, found);
        seen.shareable &= part.shareable;
        seen.worth |= part.worth;
    };
    let _ = plan.apply_subqueries(|sub| {
        inner(sub, &mut seen);
        Ok(TreeNodeRecursion::Continue)
    });
    for input in plan.inputs() {
        inner(input, &mut seen);
    }
    // A subquery's own node stays: the plan holds it in an expression.
    if seen.shareable && seen.worth && !matches!(plan, LogicalPlan::Subquery(_)) {
        found.push(Candidate {
            plan: plan.clone(),
            at,
            size: *next - at,
        });
    }
    seen
}

/// Whether a plan holds a recursive query: its steps run again, so nothing in it is kept.
fn has_recursion(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found |= matches!(node, LogicalPlan::RecursiveQuery(_));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

#[cfg(test)]
mod tests;
