//! Comparing a date column with a timestamp constant, without a cast per row.
//!
//! As in PostgreSQL, `date + interval` is a timestamp, so a filter such as
//! `l_shipdate < date '1994-01-01' + interval '1 year'` compares `cast(l_shipdate as
//! timestamp)` with a constant: every row's date is cast, and Parquet's statistics are read
//! through the cast too. Once constants are folded this rule compares the date itself with the
//! equivalent date, which gives the same rows:
//!
//! | `cast(d as timestamp) op t` | becomes |
//! |---|---|
//! | `< t` | `d < day(t)` when `t` is a midnight, else `d <= day(t)` |
//! | `<= t` | `d <= day(t)` |
//! | `> t` | `d > day(t)` |
//! | `>= t` | `d >= day(t)` when `t` is a midnight, else `d > day(t)` |
//! | `= t` | `d = day(t)` when `t` is a midnight (otherwise left as it is) |
//!
//! where `day(t)` is the date `t` falls on. Only timestamps without a time zone are rewritten.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct DateComparisons;

impl DateComparisons {
    /// DataFusion's optimizer rules with this one after the first simplification of
    /// expressions (which folds `date + interval` into a constant), before common
    /// subexpressions are taken out of filters.
    pub fn with_default_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
        let mut rules = datafusion::optimizer::Optimizer::new().rules;
        let at = rules
            .iter()
            .position(|r| r.name() == "simplify_expressions")
            .map_or(0, |i| i + 1);
        rules.insert(at, Arc::new(DateComparisons));
        rules
    }
}

impl OptimizerRule for DateComparisons {
    fn name(&self) -> &str {
        "strata_date_comparisons"
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
            LogicalPlan::Filter(mut filter) => {
                let schema = filter.input.schema().clone();
                let rewritten = filter
                    .predicate
                    .clone()
                    .transform_up(|e| rewrite(e, &schema))?;
                if rewritten.transformed {
                    filter.predicate = rewritten.data;
                    Ok(Transformed::yes(LogicalPlan::Filter(filter)))
                } else {
                    Ok(Transformed::no(LogicalPlan::Filter(filter)))
                }
            }
            LogicalPlan::TableScan(mut scan) => {
                // Filters pushed into a scan (a Parquet file's predicate) too.
                let schema = DFSchema::try_from_qualified_schema(
                    scan.table_name.clone(),
                    &scan.source.schema(),
                )?;
                let mut changed = false;
                let mut filters: Vec<Expr> = Vec::with_capacity(scan.filters.len());
                for f in std::mem::take(&mut scan.filters) {
                    let rewritten = f.transform_up(|e| rewrite(e, &schema))?;
                    changed |= rewritten.transformed;
                    // A filter pushed again after its rewrite is there once.
                    if filters.contains(&rewritten.data) {
                        changed = true;
                    } else {
                        filters.push(rewritten.data);
                    }
                }
                scan.filters = filters;
                Ok(if changed {
                    Transformed::yes(LogicalPlan::TableScan(scan))
                } else {
                    Transformed::no(LogicalPlan::TableScan(scan))
                })
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    // The cast on either side; the constant on the other.
    let (column, constant, op) = match (left.as_ref(), right.as_ref()) {
        (Expr::Cast(c), Expr::Literal(v, _)) => (c, v, *op),
        (Expr::Literal(v, _), Expr::Cast(c)) => match op.swap() {
            Some(swapped) => (c, v, swapped),
            None => return Ok(Transformed::no(e)),
        },
        _ => return Ok(Transformed::no(e)),
    };
    let Cast { expr, field } = column;
    if !matches!(field.data_type(), DataType::Timestamp(_, None))
        || expr.get_type(schema)? != DataType::Date32
    {
        return Ok(Transformed::no(e));
    }
    let Some((day, midnight)) = day_of(constant) else {
        return Ok(Transformed::no(e));
    };
    let (op, day) = match (op, midnight) {
        (Operator::Lt, true) => (Operator::Lt, day),
        (Operator::Lt, false) => (Operator::LtEq, day),
        (Operator::LtEq, _) => (Operator::LtEq, day),
        (Operator::Gt, _) => (Operator::Gt, day),
        (Operator::GtEq, true) => (Operator::GtEq, day),
        (Operator::GtEq, false) => (Operator::Gt, day),
        (Operator::Eq, true) => (Operator::Eq, day),
        _ => return Ok(Transformed::no(e)),
    };
    let Ok(day) = i32::try_from(day) else {
        return Ok(Transformed::no(e));
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        expr.clone(),
        op,
        Box::new(Expr::Literal(ScalarValue::Date32(Some(day)), None)),
    ))))
}

/// The day (since 1970-01-01) a timestamp constant without a time zone falls on, and
/// whether it is that day's midnight.
fn day_of(v: &ScalarValue) -> Option<(i64, bool)> {
    let (value, per_day) = match v {
        ScalarValue::TimestampSecond(Some(x), None) => (*x, 86_400i64),
        ScalarValue::TimestampMillisecond(Some(x), None) => (*x, 86_400_000),
        ScalarValue::TimestampMicrosecond(Some(x), None) => (*x, 86_400_000_000),
        ScalarValue::TimestampNanosecond(Some(x), None) => (*x, 86_400_000_000_000),
        _ => return None,
    };
    Some((value.div_euclid(per_day), value.rem_euclid(per_day) == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn the_date_is_compared_without_a_cast() {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_optimizer_rules(DateComparisons::with_default_rules())
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.sql("create table ships as values (date '1994-01-01')")
            .await
            .expect("create")
            .collect()
            .await
            .expect("create");
        let plan = ctx
            .sql("select * from ships where column1 < cast(date '1994-01-01' as timestamp) and column1 >= cast('1993-06-01 12:00:00' as timestamp)")
            .await
            .expect("plan")
            .into_optimized_plan()
            .expect("optimize");
        let text = plan.display_indent().to_string();
        assert!(!text.contains("CAST"), "{text}");
        assert!(
            text.contains(r#"ships.column1 < Date32("1994-01-01")"#)
                && text.contains(r#"ships.column1 > Date32("1993-06-01")"#),
            "{text}"
        );
    }

    #[test]
    fn days_and_midnights() {
        assert_eq!(
            day_of(&ScalarValue::TimestampMicrosecond(
                Some(86_400_000_000),
                None
            )),
            Some((1, true))
        );
        assert_eq!(
            day_of(&ScalarValue::TimestampSecond(Some(-1), None)),
            Some((-1, false))
        );
        assert_eq!(
            day_of(&ScalarValue::TimestampSecond(Some(5), Some("UTC".into()))),
            None
        );
    }
}
