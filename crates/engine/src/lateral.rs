//! Select-list aliases used later in the same SELECT, as Snowflake, DuckDB and BigQuery allow:
//! `select 2 as points, 10 * points as revenue ... where revenue > 5`. DataFusion resolves
//! names against the FROM clause only, so when a query fails to plan because a name is
//! missing, and that name is an alias of an earlier item of the SELECT that uses it, the alias
//! is replaced by its expression there (later select items, WHERE, GROUP BY, HAVING) and the
//! query planned again. Names that are real columns never fail, so they are never replaced.

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Query, SelectItem, SetExpr, VisitMut, VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// How many aliases one query may have replaced before planning gives up.
pub const MAX_REWRITES: usize = 32;

/// When `error` says an unqualified name is missing and `sql` defines that name as a select
/// alias before using it, `sql` with the alias replaced by its expression.
pub fn retry_with_alias_inlined(sql: &str, error: &DataFusionError) -> Option<String> {
    let name = missing_name(error)?;
    inline_alias(sql, &name)
}

/// The unqualified column name a planning error says does not exist.
fn missing_name(error: &DataFusionError) -> Option<String> {
    use datafusion::common::SchemaError;
    match error.find_root() {
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { field, .. } if field.relation.is_none() => {
                Some(field.name.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// `sql` with the select alias `name` (as DataFusion normalizes names: unquoted ones in
/// lowercase) replaced by its expression where the same SELECT uses it after defining it.
pub fn inline_alias(sql: &str, name: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    let mut visitor = Inline {
        name: name.to_string(),
        changed: false,
    };
    let _ = statements.visit(&mut visitor);
    if !visitor.changed {
        return None;
    }
    Some(
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
    )
}

struct Inline {
    name: String,
    changed: bool,
}

/// Whether `ident` names `name` as DataFusion resolves it.
fn names(ident: &Ident, name: &str) -> bool {
    match ident.quote_style {
        Some(_) => ident.value == name,
        None => ident.value.to_lowercase() == name,
    }
}

impl Inline {
    fn set_expr(&mut self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let defined = select.projection.iter().position(|item| {
                    matches!(item, SelectItem::ExprWithAlias { alias, .. } if names(alias, &self.name))
                });
                let Some(at) = defined else {
                    return;
                };
                let SelectItem::ExprWithAlias { expr, .. } = &select.projection[at] else {
                    return;
                };
                let replacement = Expr::Nested(Box::new(expr.clone()));
                let name = self.name.clone();
                let mut replaced = false;
                let mut replace = |e: &mut Expr| {
                    let _ = visit_expressions_mut(e, |x: &mut Expr| {
                        if let Expr::Identifier(ident) = x
                            && names(ident, &name)
                        {
                            *x = replacement.clone();
                            replaced = true;
                        }
                        ControlFlow::<()>::Continue(())
                    });
                };
                for item in select.projection.iter_mut().skip(at + 1) {
                    match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                            replace(e)
                        }
                        _ => {}
                    }
                }
                if let Some(e) = select.selection.as_mut() {
                    replace(e);
                }
                if let datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(exprs, _) =
                    &mut select.group_by
                {
                    exprs.iter_mut().for_each(&mut replace);
                }
                if let Some(e) = select.having.as_mut() {
                    replace(e);
                }
                self.changed |= replaced;
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => {}
        }
    }
}

impl VisitorMut for Inline {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        self.set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::inline_alias;

    #[test]
    fn later_items_where_and_group_by_see_earlier_aliases() {
        let sql = "select 2 as points, 10 * points as revenue from t where points > 1";
        assert_eq!(
            inline_alias(sql, "points").as_deref(),
            Some("SELECT 2 AS points, 10 * (2) AS revenue FROM t WHERE (2) > 1")
        );
        // Only where the alias is defined, and not before it.
        assert_eq!(
            inline_alias("select points, 2 as points from t", "points"),
            None
        );
        assert_eq!(inline_alias("select a from t", "points"), None);
        // Inside a CTE.
        let sql = "with x as (select a + 1 as b, b * 2 as c from t) select c from x";
        assert_eq!(
            inline_alias(sql, "b").as_deref(),
            Some("WITH x AS (SELECT a + 1 AS b, (a + 1) * 2 AS c FROM t) SELECT c FROM x")
        );
    }
}
