//! PostgreSQL functions clients call while finding their way (SQLAlchemy's dialect, PgJDBC's
//! metadata, Superset), beyond what `datafusion-postgres` provides.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::Field;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs,
    ScalarUDFImpl, Signature, Subquery, Volatility, create_udf, lit,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

/// `version()` as PostgreSQL words it: clients parse the number after `PostgreSQL`.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {} on {}-linux, compiled by rustc, 64-bit",
        super::SERVER_VERSION,
        std::env::consts::ARCH
    )
}

/// The settings `current_setting` answers, as a fresh PostgreSQL 16 session shows them.
fn setting(name: &str) -> Option<String> {
    Some(
        match name.to_ascii_lowercase().as_str() {
            "server_version" => super::SERVER_VERSION,
            "server_version_num" => "160006",
            "search_path" => "\"$user\", public",
            "standard_conforming_strings" => "on",
            "default_transaction_read_only" | "transaction_read_only" => "on",
            "transaction_isolation" | "default_transaction_isolation" => "read committed",
            "client_encoding" | "server_encoding" => "UTF8",
            "datestyle" => "ISO, MDY",
            "intervalstyle" => "postgres",
            "timezone" => "UTC",
            "integer_datetimes" => "on",
            "max_identifier_length" => "63",
            "max_index_keys" => "32",
            "lc_collate" | "lc_ctype" => "C.UTF-8",
            "bytea_output" => "hex",
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
            "application_name" => "",
            "is_superuser" => "off",
            _ => return None,
        }
        .to_string(),
    )
}

fn strings(arg: &ColumnarValue, rows: usize) -> Result<Vec<Option<String>>> {
    let array = arg.to_array(rows)?;
    let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
    let strings = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("expected text".into()))?;
    Ok(strings.iter().map(|s| s.map(str::to_string)).collect())
}

fn rows(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// Rewrite every expression of a plan and its subqueries bottom-up with `f`, keeping each
/// expression's name (the plan's schema must not change).
fn rewrite_expressions(
    plan: LogicalPlan,
    f: impl Fn(Expr) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up_with_subqueries(|node| {
        let preserver = NamePreserver::new(&node);
        node.map_expressions(|expr| {
            let saved = preserver.save(&expr);
            expr.transform_up(&f)
                .map(|t| t.update_data(|e| saved.restore(e)))
        })
    })?;
    Ok(rewritten.data)
}

/// `LIKE ... ESCAPE 'c'` with another escape than the backslash (SQLAlchemy writes
/// `ESCAPE '/'`): DataFusion matches with the backslash only, so the pattern is rewritten to
/// it, as it is evaluated, by `pg_like_pattern(pattern, 'c')`.
#[derive(Debug)]
struct LikeEscape;

const LIKE_PATTERN: &str = "pg_like_pattern";

impl AnalyzerRule for LikeEscape {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, |e| match e {
            Expr::Like(like) if like.escape_char.is_some_and(|c| c != '\\') => {
                let escape = like.escape_char.map(String::from);
                let pattern = datafusion::prelude::Expr::ScalarFunction(
                    datafusion::logical_expr::expr::ScalarFunction::new_udf(
                        Arc::new(like_pattern_udf()),
                        vec![*like.pattern, lit(escape.unwrap_or_default())],
                    ),
                );
                Ok(Transformed::yes(Expr::Like(Like {
                    pattern: Box::new(pattern),
                    escape_char: None,
                    ..like
                })))
            }
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "strata_like_escape"
    }
}

/// A correlated scalar subquery that is not an aggregate (SQLAlchemy's column query reads a
/// column's default and identity this way): PostgreSQL takes its one row; DataFusion plans
/// only aggregates there, so its value is taken with `max`, the same for zero or one row.
#[derive(Debug)]
struct ScalarSubqueryValue;

fn aggregated(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => aggregated(&p.input),
        LogicalPlan::SubqueryAlias(a) => aggregated(&a.input),
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Filter(f) => matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)),
        other => other.max_rows().is_some_and(|n| n <= 1),
    }
}

/// The conditions of a subquery's filter that read the outer row only (`WHERE outer.flag
/// AND inner.id = outer.id` gives `outer.flag`), written as the outer query writes them.
fn outer_conditions(plan: &LogicalPlan) -> Vec<Expr> {
    let outer_only = |e: &Expr| {
        let mut outer = false;
        let mut inner = false;
        let _ = e.apply(|x| {
            match x {
                Expr::OuterReferenceColumn(..) => outer = true,
                Expr::Column(_)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_) => inner = true,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        outer && !inner
    };
    match plan {
        LogicalPlan::Filter(filter) => split_conjunction(&filter.predicate)
            .into_iter()
            .filter(|e| outer_only(e))
            .filter_map(|e| {
                e.clone()
                    .transform(|x| match x {
                        Expr::OuterReferenceColumn(_, column) => {
                            Ok(Transformed::yes(Expr::Column(column)))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                    .ok()
                    .map(|t| t.data)
            })
            .collect(),
        LogicalPlan::Projection(p) => outer_conditions(&p.input),
        LogicalPlan::SubqueryAlias(a) => outer_conditions(&a.input),
        LogicalPlan::Aggregate(a) if a.group_expr.is_empty() => outer_conditions(&a.input),
        _ => Vec::new(),
    }
}

/// `CASE WHEN c THEN (SELECT ... WHERE c AND ...) END` is the subquery itself (SQLAlchemy
/// repeats the condition inside): without the `CASE`, DataFusion can decorrelate it.
fn redundant_case(e: &Expr) -> Option<Expr> {
    let Expr::Case(case) = e else { return None };
    if case.expr.is_some() || case.when_then_expr.len() != 1 {
        return None;
    }
    if let Some(otherwise) = &case.else_expr
        && !matches!(otherwise.as_ref(), Expr::Literal(v, _) if v.is_null())
    {
        return None;
    }
    let (when, then) = &case.when_then_expr[0];
    // Type coercion may have cast the subquery to the CASE's type.
    let sq = match then.as_ref() {
        Expr::ScalarSubquery(sq) => sq,
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::ScalarSubquery(sq) => sq,
            _ => return None,
        },
        _ => return None,
    };
    let inside = outer_conditions(&sq.subquery);
    split_conjunction(when)
        .into_iter()
        .all(|c| inside.contains(c))
        .then(|| then.as_ref().clone())
}

/// Whether a plan reads only empty in-memory tables, through filters, projections and inner
/// joins: it has no row, so a scalar subquery over it is NULL (the system catalogs'
/// defaults, sequences and the like are empty here).
fn reads_nothing(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => datafusion::datasource::source_as_provider(&scan.source)
            .is_ok_and(|provider| {
                provider
                    .downcast_ref::<datafusion::datasource::MemTable>()
                    .is_some_and(|t| {
                        t.batches.iter().all(|partition| {
                            partition
                                .try_read()
                                .is_ok_and(|batches| batches.iter().all(|b| b.num_rows() == 0))
                        })
                    })
            }),
        LogicalPlan::Join(join) if join.join_type == datafusion::logical_expr::JoinType::Inner => {
            reads_nothing(&join.left) || reads_nothing(&join.right)
        }
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            plan.inputs().iter().all(|p| reads_nothing(p))
        }
        _ => false,
    }
}

impl AnalyzerRule for ScalarSubqueryValue {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, |e| match e {
            Expr::ScalarSubquery(sq)
                if sq.subquery.schema().fields().len() == 1
                    && !aggregated(&sq.subquery)
                    && reads_nothing(&sq.subquery) =>
            {
                let field = sq.subquery.schema().field(0);
                let null = ScalarValue::try_from(field.data_type())?;
                Ok(Transformed::yes(Expr::Literal(null, None)))
            }
            Expr::ScalarSubquery(sq)
                if !sq.outer_ref_columns.is_empty()
                    && sq.subquery.schema().fields().len() == 1
                    && !aggregated(&sq.subquery) =>
            {
                let inner = sq.subquery.as_ref().clone();
                let (qualifier, field) = inner.schema().qualified_field(0);
                let name = field.name().clone();
                let column = Expr::Column(datafusion::common::Column::from((qualifier, field)));
                let value = LogicalPlanBuilder::from(inner)
                    .aggregate(Vec::<Expr>::new(), vec![max(column).alias(name)])?
                    .build()?;
                Ok(Transformed::yes(Expr::ScalarSubquery(Subquery {
                    subquery: Arc::new(value),
                    ..sq
                })))
            }
            case @ Expr::Case(_) => Ok(match redundant_case(&case) {
                Some(subquery) => Transformed::yes(subquery),
                None => Transformed::no(case),
            }),
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "strata_scalar_subquery_value"
    }
}

/// A LIKE pattern escaped with `escape`, re-escaped with the backslash.
fn backslash_pattern(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(next) = chars.next() {
                if matches!(next, '%' | '_' | '\\') {
                    out.push('\\');
                }
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

fn like_pattern_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        LIKE_PATTERN,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows(args);
            let patterns = strings(&args[0], n)?;
            let escapes = strings(&args[1], n)?;
            let out: StringArray = patterns
                .iter()
                .zip(&escapes)
                .map(|(p, e)| {
                    let escape = e.as_deref().and_then(|e| e.chars().next());
                    p.as_deref().map(|p| match escape {
                        Some(c) => backslash_pattern(p, c),
                        None => p.to_string(),
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `json_build_object(key, value, ...)`: an object of the pairs, as JSON text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if value.is_null() {
        return Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(v)) => (*v).into(),
        ScalarValue::Int16(Some(v)) => (*v).into(),
        ScalarValue::Int32(Some(v)) => (*v).into(),
        ScalarValue::Int64(Some(v)) => (*v).into(),
        ScalarValue::UInt8(Some(v)) => (*v).into(),
        ScalarValue::UInt16(Some(v)) => (*v).into(),
        ScalarValue::UInt32(Some(v)) => (*v).into(),
        ScalarValue::UInt64(Some(v)) => (*v).into(),
        ScalarValue::Float32(Some(v)) => (*v).into(),
        ScalarValue::Float64(Some(v)) => (*v).into(),
        other => Value::String(other.to_string()),
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Execution(
                "json_build_object takes keys and values in pairs".into(),
            ));
        }
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                let key = match key {
                    ScalarValue::Utf8(Some(k)) | ScalarValue::LargeUtf8(Some(k)) => k,
                    other => other.to_string(),
                };
                object.insert(key, json_value(&value));
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// `_pg_expandarray(a)` as one value: the list of `(x, n)`, each element with its 1-based
/// position (the parser wraps it in `unnest`, which makes it PostgreSQL's rows).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

pub const EXPAND_ARRAY: &str = "pg_expandarray_list";

fn expanded_type(item: &DataType) -> DataType {
    DataType::new_list(
        DataType::Struct(
            vec![
                Field::new("x", item.clone(), true),
                Field::new("n", DataType::Int32, false),
            ]
            .into(),
        ),
        true,
    )
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        EXPAND_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args.first() {
            Some(DataType::List(item)) => Ok(expanded_type(item.data_type())),
            Some(DataType::Null) => Ok(expanded_type(&DataType::Int16)),
            other => Err(DataFusionError::Plan(format!(
                "_pg_expandarray takes an array, not {other:?}"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let array = args.args[0].to_array(n)?;
        let Some(list) = array.as_any().downcast_ref::<ListArray>() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(
                &self.return_type(&[array.data_type().clone()])?,
            )?));
        };
        let offsets = list.value_offsets();
        let first = offsets.first().copied().unwrap_or(0) as usize;
        let last = offsets.last().copied().unwrap_or(0) as usize;
        let values = list.values().slice(first, last - first);
        let mut positions = Vec::with_capacity(last - first);
        for w in offsets.windows(2) {
            positions.extend(1..=(w[1] - w[0]));
        }
        let item = values.data_type().clone();
        let DataType::List(field) = expanded_type(&item) else {
            return Err(DataFusionError::Internal("expanded type".into()));
        };
        let DataType::Struct(fields) = field.data_type().clone() else {
            return Err(DataFusionError::Internal("expanded type".into()));
        };
        let structs = StructArray::try_new(
            fields,
            vec![values, Arc::new(Int32Array::from(positions))],
            None,
        )?;
        let rebased: Vec<i32> = offsets.iter().map(|o| o - first as i32).collect();
        let out = ListArray::try_new(
            field,
            OffsetBuffer::new(rebased.into()),
            Arc::new(structs),
            list.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `flag = 'f'`: PostgreSQL reads a quoted literal compared with a boolean as a boolean
/// (`'t'`, `'f'`, `'true'`, `'no'`, ...); DataFusion will not compare text with booleans. Runs
/// before type coercion.
#[derive(Debug)]
struct TextAsBoolean;

fn boolean_text(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

impl AnalyzerRule for TextAsBoolean {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let rewritten = plan.transform_up_with_subqueries(|node| {
            let mut schema = datafusion::common::DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            if let LogicalPlan::TableScan(scan) = &node {
                schema.merge(&datafusion::common::DFSchema::try_from_qualified_schema(
                    scan.table_name.clone(),
                    &scan.source.schema(),
                )?);
            }
            let is_boolean = |e: &Expr| e.get_type(&schema).is_ok_and(|t| t == DataType::Boolean);
            let as_boolean = |e: &Expr| match e {
                Expr::Literal(ScalarValue::Utf8(Some(t)), _) => boolean_text(t),
                _ => None,
            };
            node.map_expressions(|expr| {
                expr.transform_up(|e| match e {
                    Expr::BinaryExpr(mut b)
                        if matches!(
                            b.op,
                            datafusion::logical_expr::Operator::Eq
                                | datafusion::logical_expr::Operator::NotEq
                        ) =>
                    {
                        let mut changed = false;
                        if let Some(v) = as_boolean(&b.right).filter(|_| is_boolean(&b.left)) {
                            b.right = Box::new(lit(v));
                            changed = true;
                        } else if let Some(v) = as_boolean(&b.left).filter(|_| is_boolean(&b.right))
                        {
                            b.left = Box::new(lit(v));
                            changed = true;
                        }
                        Ok(Transformed::new_transformed(Expr::BinaryExpr(b), changed))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })?;
        Ok(rewritten.data)
    }

    fn name(&self) -> &str {
        "strata_text_as_boolean"
    }
}

/// Register the functions on a wire session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        ExpandArray {
            signature: Signature::any(1, Volatility::Immutable),
        },
    ));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Stable),
        },
    ));
    ctx.register_udf(like_pattern_udf());
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(TextAsBoolean)];
        rules.extend(state.analyzer().rules.iter().cloned());
        *state = datafusion::execution::SessionStateBuilder::new_from_existing(state.clone())
            .with_analyzer_rules(rules)
            .build();
    }
    ctx.add_analyzer_rule(Arc::new(LikeEscape));
    ctx.add_analyzer_rule(Arc::new(ScalarSubqueryValue));
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version_text(),
            ))))
        }),
    ));
    for arity in [1usize, 2] {
        ctx.register_udf(create_udf(
            "current_setting",
            if arity == 1 {
                vec![DataType::Utf8]
            } else {
                vec![DataType::Utf8, DataType::Boolean]
            },
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args: &[ColumnarValue]| {
                let n = rows(args);
                let names = strings(&args[0], n)?;
                let missing_ok = match args.get(1) {
                    Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(b)))) => *b,
                    _ => false,
                };
                let mut out = Vec::with_capacity(n);
                for name in names {
                    match name.as_deref().map(|n| (n, setting(n))) {
                        None => out.push(None),
                        Some((_, Some(value))) => out.push(Some(value)),
                        Some((_, None)) if missing_ok => out.push(None),
                        Some((name, None)) => {
                            return Err(DataFusionError::Execution(format!(
                                "unrecognized configuration parameter \"{name}\""
                            )));
                        }
                    }
                }
                let array: ArrayRef = Arc::new(StringArray::from(out));
                Ok(ColumnarValue::Array(array))
            }),
        ));
    }
    // Every object is visible: each kind lives in one schema, pg_catalog (tables are
    // `pg_table_is_visible`, from the catalog layer).
    for kind in [
        "type",
        "collation",
        "conversion",
        "function",
        "operator",
        "opclass",
        "opfamily",
        "statistics_obj",
        "ts_config",
        "ts_dict",
        "ts_parser",
        "ts_template",
    ] {
        ctx.register_udf(create_udf(
            &format!("pg_{kind}_is_visible"),
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let n = rows(args);
                let array = args[0].to_array(n)?;
                let visible: BooleanArray = (0..n).map(|i| Some(!array.is_null(i))).collect();
                Ok(ColumnarValue::Array(Arc::new(visible)))
            }),
        ));
    }
    // There are no indexes on expressions to describe.
    for args in [
        vec![DataType::Int64],
        vec![DataType::Int64, DataType::Int64, DataType::Boolean],
    ] {
        ctx.register_udf(create_udf(
            "pg_get_indexdef",
            args,
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
        ));
    }
    // No column is fed by a sequence: tables are written by builds, not by inserts.
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_re_escaped_with_the_backslash() {
        assert_eq!(backslash_pattern("pg/_%", '/'), "pg\\_%");
        assert_eq!(backslash_pattern("a//b", '/'), "a/b");
        assert_eq!(backslash_pattern("a\\b%", '/'), "a\\\\b%");
    }

    #[test]
    fn version_reads_as_postgresql_16() {
        let v = version_text();
        assert!(v.starts_with("PostgreSQL 16.6 (Strata "), "{v}");
    }

    #[test]
    fn settings_have_postgresql_defaults_and_unknown_ones_are_none() {
        assert_eq!(setting("server_version_num").as_deref(), Some("160006"));
        assert_eq!(setting("Search_Path").as_deref(), Some("\"$user\", public"));
        assert_eq!(setting("no_such_setting"), None);
    }
}
