//! True division on PostgreSQL, so a project gives the same numbers on both warehouses.
//!
//! PostgreSQL truncates `integer / integer` (`7 / 2 = 3`); Strata's SQL divides truly
//! (`3.5`), as Snowflake, BigQuery and DuckDB do. Before a statement runs, every `a / b` in
//! it becomes `strata.strata_divide(a, b)`, whose overloads are `(float8, float8)`,
//! `(numeric, numeric)` and `(interval, float8)`: PostgreSQL picks `float8` for two integers
//! (its preferred numeric type), `numeric` when either side is one, so decimals stay exact
//! and a zero divisor is still an error.
//!
//! SQL the parser cannot read runs as written (with a debug message): PostgreSQL then
//! reports its own error, or runs the statement with its own division.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` with each division made true division; unchanged when it has none.
pub fn rewrite(sql: &str) -> String {
    if !sql.contains('/') {
        return sql.to_string();
    }
    let mut statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("division left to PostgreSQL: the SQL did not parse ({e})");
            return sql.to_string();
        }
    };
    let mut divisions = 0;
    let _ = visit_expressions_mut(&mut statements, |expr| {
        if let Expr::BinaryOp {
            op: BinaryOperator::Divide,
            ..
        } = expr
        {
            let Expr::BinaryOp { left, right, .. } = std::mem::replace(
                expr,
                Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
            ) else {
                return ControlFlow::<()>::Continue(());
            };
            *expr = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("strata"), Ident::new("strata_divide")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(*left)),
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(*right)),
                    ],
                    clauses: vec![],
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
            divisions += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    if divisions == 0 {
        return sql.to_string();
    }
    statements
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(";\n")
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn divisions_become_true_division() {
        assert_eq!(
            rewrite("select a / b as r, (x + 1) / 2 / y from t"),
            "SELECT strata.strata_divide(a, b) AS r, strata.strata_divide(strata.strata_divide((x + 1), 2), y) FROM t"
        );
    }

    #[test]
    fn sql_without_division_is_untouched() {
        let sql = "select a::date, 'x/y' as s -- a/b\nfrom t";
        assert_eq!(rewrite("select a::date from t"), "select a::date from t");
        // A slash in a string or a comment is not a division.
        assert_eq!(rewrite(sql), sql);
    }

    #[test]
    fn sql_that_does_not_parse_runs_as_written() {
        assert_eq!(rewrite("select a / (b from t"), "select a / (b from t");
    }
}
