//! `SET search_path`: a connection's unqualified table names are looked up in its schemas, in
//! order, as PostgreSQL does (SQL editors such as Superset's SQL Lab set it to the schema the
//! user picked). A name found in none of them keeps the warehouse's default schema.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Set, Statement, Value, Visit, Visitor,
    visit_relations_mut,
};
use datafusion_postgres::pgwire::api::ClientInfo;

/// Where a connection's search path is kept (as `SHOW search_path` reads it).
const KEY: &str = "search_path";

/// The schemas a `SET search_path …` names, if it is one (`TO`/`=`; identifiers or a quoted
/// list: `SET search_path = gold, "Marts"`, `SET search_path TO 'gold,public'`).
pub fn assignment(statement: &Statement) -> Option<Vec<String>> {
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement
    else {
        return None;
    };
    if variable.to_string().to_lowercase() != KEY {
        return None;
    }
    let mut schemas = Vec::new();
    for v in values {
        match v {
            Expr::Identifier(ident) => schemas.push(normalized(ident)),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                    schemas.extend(list(s));
                }
                _ => return None,
            },
            _ => return None,
        }
    }
    Some(schemas)
}

/// Keep a connection's search path.
pub fn remember(client: &mut (impl ClientInfo + ?Sized), schemas: &[String]) {
    client.metadata_mut().insert(KEY.into(), schemas.join(", "));
}

/// A connection's search path: set by `SET`, or by the startup options
/// (`PGOPTIONS='-c search_path=gold'`).
pub fn of(client: &(impl ClientInfo + ?Sized)) -> Vec<String> {
    let metadata = client.metadata();
    if let Some(path) = metadata.get(KEY) {
        return list(path);
    }
    let Some(options) = metadata.get("options") else {
        return Vec::new();
    };
    // `-c search_path=gold` or `-csearch_path=gold`, among other options.
    let words: Vec<&str> = options.split_whitespace().collect();
    let mut settings = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "-c" | "--" => {
                if let Some(w) = words.get(i + 1) {
                    settings.push(*w);
                }
                i += 2;
            }
            w => {
                if let Some(rest) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
                    settings.push(rest);
                }
                i += 1;
            }
        }
    }
    settings
        .iter()
        .rev()
        .find_map(|s| s.strip_prefix("search_path="))
        .map(list)
        .unwrap_or_default()
}

/// Schema names of a search path's text: comma-separated, quoted ones kept as written.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(quoted) => quoted.to_string(),
                None => s.to_lowercase(),
            },
        )
        .collect()
}

fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// Qualify each one-part table name with the first schema of `path` that has it
/// (`exists(schema, table)`); the names of the statement's CTEs stay as they are.
pub fn qualify(statement: &mut Statement, path: &[String], exists: &dyn Fn(&str, &str) -> bool) {
    if path.is_empty() {
        return;
    }
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(normalized(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = statement.visit(&mut ctes);
    let _ = visit_relations_mut(statement, |name: &mut ObjectName| {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
            let table = normalized(ident);
            if !ctes.0.contains(&table)
                && let Some(schema) = path.iter().find(|s| exists(s, &table))
            {
                name.0.insert(
                    0,
                    ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
                );
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("sql")
            .remove(0)
    }

    #[test]
    fn set_statements_name_their_schemas() {
        for (sql, expected) in [
            ("set search_path = gold", vec!["gold"]),
            (
                "SET search_path TO \"Gold\", public",
                vec!["Gold", "public"],
            ),
            ("set search_path = 'gold, \"Marts\"'", vec!["gold", "Marts"]),
            ("set session search_path to gold", vec!["gold"]),
        ] {
            assert_eq!(
                assignment(&parse(sql)),
                Some(expected.iter().map(|s| s.to_string()).collect()),
                "{sql}"
            );
        }
        assert_eq!(assignment(&parse("set datestyle = 'ISO'")), None);
    }

    #[test]
    fn unqualified_tables_take_the_first_schema_that_has_them() {
        let exists = |schema: &str, table: &str| {
            matches!(
                (schema, table),
                ("gold", "orders")
                    | ("gold", "customers")
                    | ("silver", "orders")
                    | ("silver", "events")
            )
        };
        let path = vec![
            "public".to_string(),
            "gold".to_string(),
            "silver".to_string(),
        ];
        let mut s = parse(
            "with recent as (select * from orders) select * from recent join customers using (id) join events using (id) join pg_class on true join main.x on true",
        );
        qualify(&mut s, &path, &exists);
        assert_eq!(
            s.to_string(),
            "WITH recent AS (SELECT * FROM \"gold\".orders) SELECT * FROM recent JOIN \"gold\".customers USING(id) JOIN \"silver\".events USING(id) JOIN pg_class ON true JOIN main.x ON true"
        );
        let mut untouched = parse("select * from orders");
        qualify(&mut untouched, &[], &exists);
        assert_eq!(untouched.to_string(), "SELECT * FROM orders");
    }
}
