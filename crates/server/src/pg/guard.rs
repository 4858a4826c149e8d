//! What a statement may do over the wire: read, never write (SQLSTATE 25006, as a read-only
//! PostgreSQL transaction answers), and, for `bi_reader`, read the gold layer only (42501).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Declare, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

use crate::users::Role;

/// Schemas every role reads: the system catalogs clients query to find their way.
const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Table functions anyone may call: they read no relation.
const SAFE_TABLE_FUNCTIONS: [&str; 4] = ["generate_series", "range", "unnest", "pg_get_keywords"];

fn error(code: &str, message: String, hint: Option<&str>) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), code.into(), message);
    info.hint = hint.map(str::to_string);
    PgWireError::UserError(Box::new(info))
}

/// Refuse `statement` unless it only reads, and only what `role` may read. `default_schema`
/// is where unqualified names resolve; `system_table` says whether an unqualified name is one
/// of the system catalogs' tables.
pub fn check(
    statement: &Statement,
    role: Role,
    default_schema: &str,
    system_table: &dyn Fn(&str) -> bool,
) -> Result<(), PgWireError> {
    if let Some(what) = writes(statement) {
        return Err(error(
            "25006",
            format!("cannot execute {what} in a read-only transaction"),
            Some("this server only reads: change data with `strata run` or `strata ingest`"),
        ));
    }
    if role == Role::BiReader {
        gold_only(statement, default_schema, system_table)?;
    }
    Ok(())
}

/// The command a writing statement runs (`DROP TABLE`), or None when it only reads.
fn writes(statement: &Statement) -> Option<String> {
    let read = match statement {
        Statement::Query(query) => !query_writes(query),
        Statement::Explain {
            statement, analyze, ..
        } => !*analyze || writes(statement).is_none(),
        Statement::Declare { stmts } => stmts
            .iter()
            .all(|d: &Declare| d.for_query.as_ref().is_none_or(|q| !query_writes(q))),
        Statement::Prepare { statement, .. } => writes(statement).is_none(),
        Statement::ExplainTable { .. }
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. }
        | Statement::Execute { .. } => true,
        _ => false,
    };
    (!read).then(|| command(statement))
}

/// Whether a query changes data: `SELECT ... INTO`, or a data-modifying `WITH`.
fn query_writes(query: &Query) -> bool {
    fn body_writes(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(select) => select.into.is_some(),
            SetExpr::Query(q) => query_writes(q),
            SetExpr::SetOperation { left, right, .. } => body_writes(left) || body_writes(right),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                true
            }
            _ => false,
        }
    }
    body_writes(&query.body)
        || query
            .with
            .as_ref()
            .is_some_and(|with| with.cte_tables.iter().any(|cte| query_writes(&cte.query)))
}

/// The command's name as PostgreSQL says it: its leading keywords (`DROP TABLE`, `INSERT`).
fn command(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .take(2)
        .collect();
    let upper = |w: &str| w.to_ascii_uppercase();
    match words.as_slice() {
        [first, second]
            if matches!(
                upper(first).as_str(),
                "CREATE" | "DROP" | "ALTER" | "COMMENT" | "REFRESH"
            ) && !matches!(upper(second).as_str(), "OR" | "IF") =>
        {
            format!("{} {}", upper(first), upper(second))
        }
        [first, ..] => upper(first),
        [] => "this statement".into(),
    }
}

/// `bi_reader` names relations in the gold layer or the system catalogs only, and calls no
/// table function that reads relations by name (`table_at_version`).
fn gold_only(
    statement: &Statement,
    default_schema: &str,
    system_table: &dyn Fn(&str) -> bool,
) -> Result<(), PgWireError> {
    struct Relations {
        ctes: Vec<String>,
        found: Vec<ObjectName>,
        functions: Vec<String>,
    }
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.ctes.extend(
                    with.cte_tables
                        .iter()
                        .map(|c| c.alias.name.value.to_lowercase()),
                );
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            match factor {
                TableFactor::Table {
                    name,
                    args: Some(_),
                    ..
                } => self.functions.push(name.to_string()),
                TableFactor::Function { name, .. } => self.functions.push(name.to_string()),
                TableFactor::Table { name, .. } => self.found.push(name.clone()),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Relations {
        ctes: Vec::new(),
        found: Vec::new(),
        functions: Vec::new(),
    };
    let _ = statement.visit(&mut visitor);
    if let Some(function) = visitor.functions.iter().find(|f| {
        let name = f.rsplit('.').next().unwrap_or(f).trim_matches('"');
        !SAFE_TABLE_FUNCTIONS.contains(&name.to_lowercase().as_str())
    }) {
        return Err(error(
            "42501",
            format!("permission denied for function {function}"),
            Some("the bi_reader role reads the gold layer's tables and views only"),
        ));
    }
    for name in &visitor.found {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().trim_matches('"').to_string())
            .collect();
        let schema = match parts.as_slice() {
            [table] => {
                if visitor.ctes.contains(&table.to_lowercase()) || system_table(table) {
                    continue;
                }
                default_schema.to_string()
            }
            [.., schema, _] => schema.clone(),
            [] => continue,
        };
        if !crate::catalog::is_gold(&schema) && !SYSTEM_SCHEMAS.contains(&schema.as_str()) {
            return Err(error(
                "42501",
                format!("permission denied for schema {schema}"),
                Some("the bi_reader role reads the gold layer only (schema `gold` or `*_gold`)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn run(sql: &str, role: Role) -> Result<(), (String, String)> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        check(&statements[0], role, "main", &|t| t.starts_with("pg_")).map_err(|e| match e {
            PgWireError::UserError(info) => (info.code.clone(), info.message.clone()),
            other => ("?".into(), other.to_string()),
        })
    }

    #[test]
    fn writes_are_refused_with_25006_naming_the_command() {
        for (sql, what) in [
            ("DROP TABLE gold.orders", "DROP TABLE"),
            ("CREATE TABLE t (a int)", "CREATE TABLE"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE"),
            ("INSERT INTO gold.orders VALUES (1)", "INSERT"),
            ("UPDATE gold.orders SET a = 1", "UPDATE"),
            ("DELETE FROM gold.orders", "DELETE"),
            ("TRUNCATE gold.orders", "TRUNCATE"),
            ("SELECT * INTO t2 FROM gold.orders", "SELECT"),
            (
                "WITH d AS (DELETE FROM gold.orders RETURNING *) SELECT * FROM d",
                "WITH",
            ),
            ("EXPLAIN ANALYZE DELETE FROM gold.orders", "EXPLAIN"),
        ] {
            let (code, message) = run(sql, Role::Admin).expect_err(sql);
            assert_eq!(code, "25006", "{sql}");
            assert_eq!(
                message,
                format!("cannot execute {what} in a read-only transaction"),
                "{sql}"
            );
        }
    }

    #[test]
    fn reads_and_session_statements_pass() {
        for sql in [
            "SELECT 1",
            "SELECT * FROM silver.orders",
            "EXPLAIN SELECT 1",
            "SET search_path = public",
            "SHOW search_path",
            "BEGIN",
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "ROLLBACK TO SAVEPOINT a",
            "COMMIT",
        ] {
            assert_eq!(run(sql, Role::Admin), Ok(()), "{sql}");
        }
    }

    #[test]
    fn bi_reader_reads_gold_and_the_system_catalogs_only() {
        for sql in [
            "SELECT * FROM gold.orders",
            "SELECT * FROM shop_gold.orders o JOIN gold.customers c ON o.c = c.id",
            "SELECT * FROM pg_catalog.pg_class",
            "SELECT * FROM pg_class",
            "SELECT * FROM information_schema.tables",
            "WITH x AS (SELECT * FROM gold.orders) SELECT * FROM x",
            "SELECT * FROM generate_series(1, 3)",
        ] {
            assert_eq!(run(sql, Role::BiReader), Ok(()), "{sql}");
        }
        for (sql, message) in [
            (
                "SELECT * FROM silver.orders",
                "permission denied for schema silver",
            ),
            (
                "SELECT * FROM gold.a WHERE id IN (SELECT id FROM bronze.b)",
                "permission denied for schema bronze",
            ),
            ("SELECT * FROM orders", "permission denied for schema main"),
            (
                "SELECT * FROM \"db\".\"silver\".\"orders\"",
                "permission denied for schema silver",
            ),
            (
                "SELECT * FROM table_at_version('silver.orders', 1)",
                "permission denied for function table_at_version",
            ),
        ] {
            let (code, got) = run(sql, Role::BiReader).expect_err(sql);
            assert_eq!((code.as_str(), got.as_str()), ("42501", message), "{sql}");
        }
    }
}
