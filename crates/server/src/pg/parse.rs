//! Reading the SQL clients send. A client's own query is parsed as PostgreSQL SQL and planned
//! as written. Only queries over the system catalogs (`pg_catalog`, `information_schema`) go
//! through `datafusion-postgres`'s compatibility parser, whose rewrites (known client queries
//! replaced, correlated subqueries in a select list dropped to NULL) are meant for those
//! catalogs and must never change what a query over the warehouse returns.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Statement, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Parses what clients send.
pub struct SqlReader {
    compat: PostgresCompatibilityParser,
    /// The compatibility rules that only respell (`pg_catalog.version()`, `OPERATOR(...)`),
    /// applied to every query.
    respell: Vec<Box<dyn SqlStatementRewriteRule>>,
    system_tables: HashSet<String>,
}

impl SqlReader {
    pub fn new(system_tables: HashSet<String>) -> Self {
        Self {
            compat: PostgresCompatibilityParser::new(),
            respell: vec![
                Box::new(rules::StripCallableQualifier),
                Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
                Box::new(rules::RewritePgCatalogOperator),
                Box::new(rules::StripCollate),
                Box::new(rules::FixVersionColumnName),
            ],
            system_tables,
        }
    }

    /// The statements of `sql`, rewritten where PostgreSQL means something DataFusion writes
    /// differently.
    pub fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        let plain = Parser::parse_sql(&PostgreSqlDialect {}, sql);
        let mut statements = match plain {
            Ok(statements) if !statements.iter().any(|s| self.reads_system_catalogs(s)) => {
                statements
                    .into_iter()
                    .map(|s| self.respell.iter().fold(s, |s, rule| rule.rewrite(s)))
                    .collect()
            }
            _ => self.compat.parse(sql).map_err(|e| {
                PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "42601".into(),
                    e.to_string(),
                )))
            })?,
        };
        for statement in &mut statements {
            let _ = statement.visit(&mut SetReturningFunctions);
        }
        Ok(statements)
    }

    fn reads_system_catalogs(&self, statement: &Statement) -> bool {
        struct Finder<'a> {
            system_tables: &'a HashSet<String>,
        }
        impl Visitor for Finder<'_> {
            type Break = ();
            fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
                if let TableFactor::Table { name, .. } = factor {
                    let parts: Vec<String> = name
                        .0
                        .iter()
                        .map(|p| p.to_string().trim_matches('"').to_lowercase())
                        .collect();
                    let system = match parts.as_slice() {
                        [table] => self.system_tables.contains(table),
                        [.., schema, _] => SYSTEM_SCHEMAS.contains(&schema.as_str()),
                        [] => false,
                    };
                    if system {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                // `'t'::regclass` and the like name catalog objects too.
                if let Expr::Cast { data_type, .. } = expr {
                    let ty = data_type.to_string().to_lowercase();
                    if ty.starts_with("reg") || ty == "oid" {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut finder = Finder {
            system_tables: &self.system_tables,
        };
        statement.visit(&mut finder).is_break()
    }
}

/// Set-returning functions and field access, spelled as DataFusion plans them:
/// `generate_subscripts(a, 1)` is `unnest(generate_series(1, cardinality(a)))` and
/// `_pg_expandarray(a)` is `unnest` of its `(x, n)` list (DataFusion expands `unnest` in a
/// select list, beside another `unnest` row by row, as PostgreSQL does); `(expr).field` is
/// `get_field(expr, 'field')`.
struct SetReturningFunctions;

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(datafusion::sql::sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

impl VisitorMut for SetReturningFunctions {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `(expr).field`: DataFusion reads fields of a named column only (`t.col.field`).
        if let Expr::CompoundFieldAccess { root, access_chain } = expr {
            if access_chain
                .iter()
                .all(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_))))
            {
                let mut value = match root.as_ref() {
                    Expr::Nested(inner) => (**inner).clone(),
                    other => other.clone(),
                };
                for access in access_chain.iter() {
                    if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                        value = call(
                            "get_field",
                            vec![
                                value,
                                Expr::value(Value::SingleQuotedString(field.value.clone())),
                            ],
                        );
                    }
                }
                *expr = value;
            }
            return ControlFlow::Continue(());
        }
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let name = function
            .name
            .0
            .last()
            .map(|p| p.to_string().to_lowercase())
            .unwrap_or_default();
        let FunctionArguments::List(list) = &function.args else {
            return ControlFlow::Continue(());
        };
        if name == "_pg_expandarray" {
            let args = list
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            *expr = call("unnest", vec![call(super::compat::EXPAND_ARRAY, args)]);
            return ControlFlow::Continue(());
        }
        if name != "generate_subscripts" {
            return ControlFlow::Continue(());
        }
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) = list.args.first() else {
            return ControlFlow::Continue(());
        };
        let one = Expr::value(Value::Number("1".into(), false));
        *expr = call(
            "unnest",
            vec![call(
                "generate_series",
                vec![one, call("cardinality", vec![array.clone()])],
            )],
        );
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> SqlReader {
        SqlReader::new(["pg_class".to_string()].into_iter().collect())
    }

    #[test]
    fn warehouse_queries_keep_their_correlated_subqueries() {
        let sql = "SELECT o.id, (SELECT max(p.amount) FROM gold.payments p WHERE p.order_id = o.id) FROM gold.orders o";
        let statements = reader().parse(sql).expect("parses");
        assert!(statements[0].to_string().contains("SELECT max(p.amount)"));
    }

    #[test]
    fn catalog_queries_are_recognised() {
        let r = reader();
        for sql in [
            "SELECT * FROM pg_catalog.pg_namespace",
            "SELECT relname FROM pg_class",
            "SELECT * FROM information_schema.tables",
            "SELECT 'gold.orders'::regclass",
        ] {
            let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
            assert!(r.reads_system_catalogs(&statements[0]), "{sql}");
        }
        let statements =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT * FROM gold.orders").expect("parses");
        assert!(!r.reads_system_catalogs(&statements[0]));
    }

    #[test]
    fn field_access_and_expandarray_are_spelled_for_datafusion() {
        let statements = reader()
            .parse("SELECT (information_schema._pg_expandarray(i.indkey)).n, (r.keys).x FROM t")
            .expect("parses");
        assert_eq!(
            statements[0].to_string(),
            "SELECT get_field(unnest(pg_expandarray_list(i.indkey)), 'n'), get_field(r.keys, 'x') FROM t"
        );
    }

    #[test]
    fn generate_subscripts_becomes_an_unnest() {
        let statements = reader()
            .parse("SELECT unnest(k) AS a, generate_subscripts(k, 1) AS o FROM t")
            .expect("parses");
        assert_eq!(
            statements[0].to_string(),
            "SELECT unnest(k) AS a, unnest(generate_series(1, cardinality(k))) AS o FROM t"
        );
    }
}
