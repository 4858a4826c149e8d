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
        if matches!(name.as_str(), "to_date" | "to_timestamp" | "to_char") {
            // PostgreSQL's patterns ('YYYY-MM-DD'), as DataFusion's chrono formats.
            if let FunctionArguments::List(list) = &mut function.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
                    list.args.get_mut(1)
                && let Value::SingleQuotedString(pattern) = &mut v.value
                && !pattern.contains('%')
            {
                *pattern = chrono_format(pattern);
            }
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

/// A PostgreSQL date/time pattern (`YYYY-MM-DD HH24:MI:SS.US`) as a chrono format
/// (`%Y-%m-%d %H:%M:%S.%6f`): the common fields; `FM` is dropped, double-quoted text and
/// anything else is kept as written.
fn chrono_format(pattern: &str) -> String {
    const FIELDS: [(&str, &str); 27] = [
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("MONTH", "%B"),
        ("Month", "%B"),
        ("month", "%B"),
        ("DDD", "%j"),
        ("MON", "%b"),
        ("Mon", "%b"),
        ("mon", "%b"),
        ("DAY", "%A"),
        ("Day", "%A"),
        ("day", "%A"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("Dy", "%a"),
        ("DY", "%a"),
        ("TZ", "%Z"),
        ("OF", "%:z"),
    ];
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    'scan: while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("FM") {
            rest = r;
            continue;
        }
        if c == '"' {
            let text = &rest[1..];
            let end = text.find('"').unwrap_or(text.len());
            out.push_str(&text[..end].replace('%', "%%"));
            rest = text.get(end + 1..).unwrap_or("");
            continue;
        }
        for (field, format) in FIELDS {
            if let Some(r) = rest.strip_prefix(field) {
                out.push_str(format);
                rest = r;
                continue 'scan;
            }
        }
        match c {
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
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
    fn postgres_date_patterns_become_chrono_formats() {
        assert_eq!(chrono_format("YYYY-MM-DD"), "%Y-%m-%d");
        assert_eq!(
            chrono_format("YYYY-MM-DD HH24:MI:SS.US"),
            "%Y-%m-%d %H:%M:%S.%6f"
        );
        assert_eq!(
            chrono_format("FMDD Mon YYYY \"at\" HH12 AM"),
            "%d %b %Y at %I %p"
        );
        assert_eq!(chrono_format("100% DDD"), "100%% %j");
        let s = reader()
            .parse("select to_date('2024-03-01', 'YYYY-MM-DD'), to_char(d, '%Y'), to_timestamp(x)")
            .expect("parse");
        assert_eq!(
            s[0].to_string(),
            "SELECT to_date('2024-03-01', '%Y-%m-%d'), to_char(d, '%Y'), to_timestamp(x)"
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
