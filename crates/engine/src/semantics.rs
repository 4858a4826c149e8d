//! SQL semantics users expect from a warehouse, on top of DataFusion's dialect.
//!
//! - `int / int` is true division (as in Snowflake, BigQuery, DuckDB and Spark): both operands
//!   are cast to `DOUBLE` and divided by [`strata_divide`], which, like Snowflake and
//!   PostgreSQL, fails on a zero divisor instead of producing infinity. DataFusion alone
//!   truncates (`7 / 2 = 3`). Float division goes through the same function, so a zero
//!   divisor is an error for every numeric type.
//!
//! The rule runs before DataFusion's own type coercion and keeps output column names as
//! written, so `select a / b` is still called `a / b`.
//!
//! - Dates and timestamps follow PostgreSQL: `date + interval` is a timestamp, and a text
//!   literal beside a date or timestamp (`'2018-01-01' + interval '1 day'`, and in
//!   [`crate::functions`] `coalesce(d, '2099-12-31')`) is read as one.
//!
//! - Tables take nullable columns, as a warehouse's `create table as select` makes them
//!   ([`nullable_columns`]): a column that had no NULL when the table was built (a literal, a
//!   key) must still accept one from a later incremental run or a hook's insert.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::common::exec_err;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::resolve_grouping_function::ResolveGroupingFunction;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;

/// Rewrites integer division into floating-point division.
#[derive(Debug, Default)]
pub struct TrueDivision;

impl TrueDivision {
    /// The analyzer rules of a Strata session, in order: true division, then DataFusion's.
    pub fn with_default_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
        vec![
            Arc::new(TrueDivision),
            Arc::new(ResolveGroupingFunction::new()),
            Arc::new(TypeCoercion::new()),
        ]
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

fn rewrite_node(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let mut schema: DFSchema = merge_schema(&plan.inputs());
    if let LogicalPlan::TableScan(ts) = &plan {
        let source =
            DFSchema::try_from_qualified_schema(ts.table_name.clone(), &ts.source.schema())?;
        schema.merge(&source);
    }
    let preserver = NamePreserver::new(&plan);
    let transformed = plan.map_expressions(|expr| {
        let saved = preserver.save(&expr);
        expr.transform_up(|e| {
            divide(e, &schema)?
                .transform_data(|e| compare_timestamps(e, &schema))?
                .transform_data(|e| text_to_timestamp(e, &schema))?
                .transform_data(|e| zoned_to_local(e, &schema))
        })
        .map(|t| t.update_data(|e| saved.restore(e)))
    })?;
    if transformed.transformed {
        transformed.map_data(|p| p.recompute_schema())
    } else {
        Ok(transformed)
    }
}

fn divide(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Divide,
        right,
    }) = &e
    else {
        return Ok(Transformed::no(e));
    };
    let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    // Integers divide as doubles; so do floats (and a float with a decimal), so that a zero
    // divisor is an error for every numeric type, never infinity or NaN. Decimal by decimal
    // stays decimal (DataFusion refuses a zero divisor there).
    let float =
        |t: &DataType| matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64);
    let number = |t: &DataType| is_integer(t) || float(t) || matches!(t, DataType::Decimal128(..));
    let rewrite = (is_integer(&lt) && is_integer(&rt))
        || (number(&lt) && number(&rt) && (float(&lt) || float(&rt)));
    if !rewrite {
        return Ok(Transformed::no(e));
    }
    let cast = |x: &Expr| Expr::Cast(Cast::new(Box::new(x.clone()), DataType::Float64));
    Ok(Transformed::yes(DIVIDE.call(vec![cast(left), cast(right)])))
}

/// A timestamp compared with text or a date: the other side is cast to the timestamp's own
/// type. DataFusion would cast both to nanoseconds, which cannot hold dates past 2262, so
/// `dbt_valid_to = '9999-12-31'` on a microsecond column would fail.
fn compare_timestamps(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    if !matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    ) {
        return Ok(Transformed::no(e));
    }
    let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    let loose = |t: &DataType| {
        matches!(
            t,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Date32
        )
    };
    let cast = |x: &Expr, t: &DataType| Expr::Cast(Cast::new(Box::new(x.clone()), t.clone()));
    let (left, right) = match (&lt, &rt) {
        (DataType::Timestamp(..), other) if loose(other) => {
            (left.as_ref().clone(), cast(right, &lt))
        }
        (other, DataType::Timestamp(..)) if loose(other) => {
            (cast(left, &rt), right.as_ref().clone())
        }
        _ => return Ok(Transformed::no(e)),
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        Box::new(left),
        *op,
        Box::new(right),
    ))))
}

/// A cast of text to a timestamp accepts what PostgreSQL does (see
/// [`crate::functions::text_to_timestamp`]).
fn text_to_timestamp(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr, field }) = &e else {
        return Ok(Transformed::no(e));
    };
    let data_type = field.data_type();
    if !matches!(data_type, DataType::Timestamp(..)) {
        return Ok(Transformed::no(e));
    }
    match expr.get_type(schema) {
        Ok(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => Ok(Transformed::yes(
            crate::functions::text_to_timestamp(data_type.clone())
                .call(vec![expr.as_ref().clone()]),
        )),
        _ => Ok(Transformed::no(e)),
    }
}

/// A timestamp with a time zone cast to one without is its wall-clock time in that zone, as
/// PostgreSQL's `ts AT TIME ZONE 'UTC' AT TIME ZONE 'America/Los_Angeles'` gives the time in
/// Los Angeles (Arrow's cast would keep the UTC time).
fn zoned_to_local(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr, field }) = &e else {
        return Ok(Transformed::no(e));
    };
    if !matches!(field.data_type(), DataType::Timestamp(_, None)) {
        return Ok(Transformed::no(e));
    }
    match expr.get_type(schema) {
        Ok(DataType::Timestamp(_, Some(tz))) if !matches!(tz.as_ref(), "UTC" | "+00:00" | "Z") => {
            let local = datafusion::functions::datetime::expr_fn::to_local_time(vec![
                expr.as_ref().clone(),
            ]);
            Ok(Transformed::yes(Expr::Cast(Cast {
                expr: Box::new(local),
                field: field.clone(),
            })))
        }
        _ => Ok(Transformed::no(e)),
    }
}

/// Operators planned as warehouses do, where DataFusion would keep another type or refuse:
///
/// - `date + interval` (or text + interval) is a timestamp, as in PostgreSQL and DuckDB:
///   `cast('2018-01-01' as date) + interval '1 hour'` keeps its hour, and an untyped literal
///   (`'2018-01-01' + interval '1 day'`) is read as a timestamp.
/// - A boolean compared with a number counts as 1 or 0, as in DuckDB
///   (`regexp_matches(x, 'a') > 0`).
#[derive(Debug)]
pub struct WarehouseOperators;

impl ExprPlanner for WarehouseOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator;
        let op = match expr.op {
            BinaryOperator::Plus => Operator::Plus,
            BinaryOperator::Minus => Operator::Minus,
            BinaryOperator::Eq => Operator::Eq,
            BinaryOperator::NotEq => Operator::NotEq,
            BinaryOperator::Lt => Operator::Lt,
            BinaryOperator::LtEq => Operator::LtEq,
            BinaryOperator::Gt => Operator::Gt,
            BinaryOperator::GtEq => Operator::GtEq,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let (Ok(lt), Ok(rt)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr));
        };
        if !matches!(op, Operator::Plus | Operator::Minus) {
            let int = |x: Expr| Expr::Cast(Cast::new(Box::new(x), DataType::Int64));
            let (left, right) = match (&lt, &rt) {
                (DataType::Boolean, n) if n.is_numeric() => (int(expr.left), expr.right),
                (n, DataType::Boolean) if n.is_numeric() => (expr.left, int(expr.right)),
                _ => return Ok(PlannerResult::Original(expr)),
            };
            return Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(left),
                op,
                Box::new(right),
            ))));
        }
        let interval = |t: &DataType| matches!(t, DataType::Interval(_));
        let datelike = |x: &Expr, t: &DataType| {
            matches!(t, DataType::Date32 | DataType::Date64)
                || (matches!(x, Expr::Literal(..))
                    && matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8))
        };
        let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None);
        let cast = |x: Expr| Expr::Cast(Cast::new(Box::new(x), ts.clone()));
        let (left, right) = if datelike(&expr.left, &lt) && interval(&rt) {
            (cast(expr.left), expr.right)
        } else if interval(&lt) && datelike(&expr.right, &rt) && op == Operator::Plus {
            (expr.left, cast(expr.right))
        } else {
            return Ok(PlannerResult::Original(expr));
        };
        Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(left),
            op,
            Box::new(right),
        ))))
    }
}

static DIVIDE: LazyLock<ScalarUDF> = LazyLock::new(|| ScalarUDF::from(StrataDivide::new()));

/// The function integer division is rewritten to.
pub fn strata_divide() -> ScalarUDF {
    DIVIDE.clone()
}

/// `strata_divide(a, b)`: `a / b` in `DOUBLE`, an error when `b` is zero.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StrataDivide {
    signature: Signature,
}

impl StrataDivide {
    fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for StrataDivide {
    fn name(&self) -> &str {
        "strata_divide"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (num, den) = (&arrays[0], &arrays[1]);
        let den_values = den.as_primitive::<Float64Type>();
        let num_values = num.as_primitive::<Float64Type>();
        for i in 0..den_values.len() {
            if den_values.is_valid(i) && num_values.is_valid(i) && den_values.value(i) == 0.0 {
                return exec_err!("division by zero");
            }
        }
        let out = datafusion::arrow::compute::kernels::numeric::div(num, den)?;
        Ok(ColumnarValue::Array(out))
    }
}

static NULLABLE: LazyLock<ScalarUDF> = LazyLock::new(|| ScalarUDF::from(StrataNullable::new()));

/// The function [`nullable_columns`] wraps columns in.
pub fn strata_nullable() -> ScalarUDF {
    NULLABLE.clone()
}

/// The columns of `plan`, each declared nullable (values unchanged): what a table written
/// from it stores, so later writes may bring NULLs.
pub fn nullable_columns(plan: LogicalPlan) -> Result<LogicalPlan> {
    let schema = Arc::clone(plan.schema());
    if schema.fields().iter().all(|f| f.is_nullable()) {
        return Ok(plan);
    }
    let columns: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(datafusion::common::Column::new(
                qualifier.cloned(),
                field.name(),
            ));
            if field.is_nullable() {
                column
            } else {
                NULLABLE
                    .call(vec![column])
                    .alias_qualified(qualifier.cloned(), field.name())
            }
        })
        .collect();
    datafusion::logical_expr::LogicalPlanBuilder::from(plan)
        .project(columns)?
        .build()
}

/// `strata_nullable(x)`: `x`, declared nullable.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StrataNullable {
    signature: Signature,
}

impl StrataNullable {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StrataNullable {
    fn name(&self) -> &str {
        "strata_nullable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        Ok(Arc::new(
            args.arg_fields[0].as_ref().clone().with_nullable(true),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args[0].clone())
    }
}

impl AnalyzerRule for TrueDivision {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan.transform_up_with_subqueries(rewrite_node)?.data)
    }

    fn name(&self) -> &str {
        "strata_true_division"
    }
}
