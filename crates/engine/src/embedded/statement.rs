//! Statements of hooks: queries, and the writes users put in hooks on tables — `insert into`,
//! `delete from`, `update`, `merge into` — each one Delta commit through the write guard.
//!
//! `delete` and `update` run on delta-rs (which rewrites only the files holding matching
//! rows) unless they use a subquery, which delta-rs cannot evaluate: then the table is
//! rewritten from a query over its current version, still in one commit.

use std::future::IntoFuture;
use std::sync::Arc;

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, Expr, FromTable, MergeAction, MergeClauseKind, MergeInsertKind,
    ObjectName, TableFactor, visit_expressions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use strata_common::quote_ident as q;
use strata_meta::RelationKind;

use super::{EmbeddedWarehouse, WriteTarget};
use crate::error::{Error, Result};
use crate::types::cast_type;
use crate::{StatementContext, Warehouse};

impl EmbeddedWarehouse {
    /// Run the statements of `sql` in order; returns one status per statement.
    pub(super) async fn run_statements(
        &self,
        sql: &str,
        ctx: &StatementContext,
    ) -> Result<Vec<String>> {
        let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
            .map_err(|e| Error::Sql(format!("cannot parse the statement: {e}")))?;
        let mut done = Vec::new();
        for statement in statements {
            let DfStatement::Statement(statement) = statement else {
                return Err(unsupported(&statement.to_string()));
            };
            let status = match *statement {
                ast::Statement::Query(query) => self.run_query(&query.to_string()).await?,
                ast::Statement::Insert(insert) => self.insert(insert, ctx).await?,
                ast::Statement::Delete(delete) => self.delete(delete, ctx).await?,
                ast::Statement::Update(update) => self.update(update, ctx).await?,
                ast::Statement::Merge(merge) => self.merge_statement(merge, ctx).await?,
                other => return Err(unsupported(&other.to_string())),
            };
            done.push(status);
        }
        Ok(done)
    }

    async fn run_query(&self, sql: &str) -> Result<String> {
        let mut stream = self.query(sql, None).await?;
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            rows += batch?.num_rows();
        }
        Ok(format!("SELECT {rows}"))
    }

    /// The table a statement changes: a table of this target, built by Strata.
    async fn table_named(&self, name: &ObjectName) -> Result<strata_common::Relation> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| {
                p.as_ident()
                    .map(|i| match i.quote_style {
                        Some(_) => i.value.clone(),
                        // Unquoted names fold to lower case, as in queries.
                        None => i.value.to_lowercase(),
                    })
                    .ok_or_else(|| Error::user(format!("`{name}` is not a table name")))
            })
            .collect::<Result<_>>()?;
        let state = self.ctx.state();
        let defaults = &state.config_options().catalog;
        let (database, schema, table) = match parts.as_slice() {
            [t] => (
                self.shared.database.clone(),
                defaults.default_schema.clone(),
                t.clone(),
            ),
            [s, t] => (self.shared.database.clone(), s.clone(), t.clone()),
            [d, s, t] => (d.clone(), s.clone(), t.clone()),
            _ => return Err(Error::user(format!("`{name}` is not a table name"))),
        };
        if database != self.shared.database {
            return Err(Error::user(format!(
                "`{name}` is in database `{database}`; statements change tables of this target (`{}`) only",
                self.shared.database
            )));
        }
        let record = self.shared.meta.relation(&database, &schema, &table)?;
        let location = self.shared.lake.table(&schema, &table)?;
        if record
            .as_ref()
            .is_some_and(|r| r.kind == RelationKind::View)
            || !self.shared.lake.table_exists(&location).await?
        {
            return Err(Error::user(format!(
                "`{name}` is not a table of this target; statements can change tables (models materialized as table, incremental or snapshot, and seeds)"
            )));
        }
        Ok(strata_common::Relation::new(database, schema, table))
    }

    /// `insert into t [(columns)] <query>`: the query's columns by position, into the named
    /// columns (or all of them, in order); the others are NULL. One append commit.
    async fn insert(&self, insert: ast::Insert, ctx: &StatementContext) -> Result<String> {
        let ast::TableObject::TableName(name) = &insert.table else {
            return Err(unsupported("insert into a table function"));
        };
        let relation = self.table_named(name).await?;
        let Some(source) = &insert.source else {
            return Err(unsupported("insert without a query or values"));
        };
        let table = self.describe(&format!("select * from {relation}")).await?;
        let incoming = self.describe(&source.to_string()).await?;
        let into: Vec<String> = if insert.columns.is_empty() {
            table.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            insert
                .columns
                .iter()
                .map(last_part)
                .collect::<Result<_>>()?
        };
        if into.len() != incoming.fields().len() {
            return Err(Error::user(format!(
                "insert into {relation} gives {} values for {} columns ({})",
                incoming.fields().len(),
                into.len(),
                into.join(", ")
            )));
        }
        if let Some(c) = into.iter().find(|c| table.field_with_name(c).is_err()) {
            return Err(Error::user(format!(
                "insert into {relation}: the table has no column `{c}`{}",
                strata_common::did_you_mean(c, table.fields().iter().map(|f| f.name().as_str()))
            )));
        }
        let positional: Vec<String> = (1..=into.len()).map(|i| format!("c{i}")).collect();
        let columns: Vec<String> = table
            .fields()
            .iter()
            .map(|f| {
                let value = match into.iter().position(|c| c == f.name()) {
                    Some(i) => q(&positional[i]),
                    None => "null".to_string(),
                };
                format!(
                    "cast({value} as {}) as {}",
                    cast_type(f.data_type()),
                    q(f.name())
                )
            })
            .collect();
        let sql = format!(
            "select {} from ({source}) as incoming({})",
            columns.join(", "),
            positional
                .iter()
                .map(|c| q(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let df = self.plan(&sql).await?;
        let target = statement_target(ctx, &relation);
        let done = self
            .write_with_mode(&target, df.logical_plan().clone(), SaveMode::Append)
            .await?;
        Ok(format!("INSERT {}", done.rows_affected.unwrap_or(0)))
    }

    /// `delete from t [where p]`.
    async fn delete(&self, delete: ast::Delete, ctx: &StatementContext) -> Result<String> {
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        if delete.using.is_some() || from.len() != 1 || !from[0].joins.is_empty() {
            return Err(unsupported("delete with `using` or joins"));
        }
        let name = plain_table(&from[0].relation)?;
        let relation = self.table_named(name).await?;
        let target = statement_target(ctx, &relation);
        let predicate = delete.selection.as_ref();
        if predicate.is_some_and(has_subquery) {
            let keep = format!(
                "select * from {relation} where ({}) is not true",
                predicate.map(ToString::to_string).unwrap_or_default()
            );
            let before = self.count_where(&relation, None).await?;
            self.rewrite_table(&target, &keep).await?;
            let after = self.count_where(&relation, None).await?;
            return Ok(format!("DELETE {}", before.saturating_sub(after)));
        }
        let state = Arc::new(self.ctx.state());
        let predicate = predicate.map(ToString::to_string);
        let changed = self
            .change_table(&target, |table, commit| {
                let mut builder = table
                    .delete()
                    .with_session_state(state)
                    .with_commit_properties(commit);
                if let Some(p) = predicate {
                    builder = builder.with_predicate(p);
                }
                builder.into_future()
            })
            .await?;
        Ok(match changed.done.and_then(|m| m.num_deleted_rows) {
            Some(n) => format!("DELETE {n}"),
            None => "DELETE".to_string(),
        })
    }

    /// `update t set c = e, ... [where p]`.
    async fn update(&self, update: ast::Update, ctx: &StatementContext) -> Result<String> {
        if update.from.is_some() || !update.table.joins.is_empty() {
            return Err(unsupported("update with `from` or joins"));
        }
        let name = plain_table(&update.table.relation)?;
        let relation = self.table_named(name).await?;
        let target = statement_target(ctx, &relation);
        let mut sets: Vec<(String, Expr)> = Vec::new();
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(column) = &a.target else {
                return Err(unsupported("update of a tuple of columns"));
            };
            sets.push((last_part(column)?, a.value.clone()));
        }
        let predicate = update.selection.as_ref();
        if predicate.is_some_and(has_subquery) || sets.iter().any(|(_, e)| has_subquery(e)) {
            let table = self.describe(&format!("select * from {relation}")).await?;
            let when = predicate
                .map(|p| format!("({p}) is true"))
                .unwrap_or_else(|| "true".into());
            let columns: Vec<String> = table
                .fields()
                .iter()
                .map(|f| match sets.iter().find(|(c, _)| c == f.name()) {
                    Some((_, e)) => format!(
                        "cast(case when {when} then {e} else {c} end as {}) as {c}",
                        cast_type(f.data_type()),
                        c = q(f.name())
                    ),
                    None => q(f.name()),
                })
                .collect();
            let changed = self
                .count_where(&relation, predicate.map(ToString::to_string))
                .await?;
            self.rewrite_table(
                &target,
                &format!("select {} from {relation}", columns.join(", ")),
            )
            .await?;
            return Ok(format!("UPDATE {changed}"));
        }
        let state = Arc::new(self.ctx.state());
        let predicate = predicate.map(ToString::to_string);
        let changed = self
            .change_table(&target, |table, commit| {
                let mut builder = table
                    .update()
                    .with_session_state(state)
                    .with_commit_properties(commit);
                if let Some(p) = predicate {
                    builder = builder.with_predicate(p);
                }
                for (c, e) in sets {
                    builder = builder.with_update(c, e.to_string());
                }
                builder.into_future()
            })
            .await?;
        Ok(format!(
            "UPDATE {}",
            changed.done.map(|m| m.num_updated_rows).unwrap_or(0)
        ))
    }

    /// `merge into t [as a] using s [as b] on ... when [not] matched [and ...] then ...`.
    async fn merge_statement(&self, merge: ast::Merge, ctx: &StatementContext) -> Result<String> {
        let (name, target_alias) = match &merge.table {
            TableFactor::Table { name, alias, .. } => (name, alias_or_name(alias, name)?),
            _ => return Err(unsupported("merge into something other than a table")),
        };
        let relation = self.table_named(name).await?;
        let (source_sql, source_alias) = match &merge.source {
            TableFactor::Table { name, alias, .. } => {
                (format!("select * from {name}"), alias_or_name(alias, name)?)
            }
            TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } => (subquery.to_string(), alias.name.value.clone()),
            _ => {
                return Err(unsupported(
                    "merge using something other than a table or an aliased subquery",
                ));
            }
        };
        if source_alias == target_alias {
            return Err(Error::user(format!(
                "merge into {relation}: the table and the source are both called `{source_alias}`; give one an alias"
            )));
        }
        let source = self.plan(&source_sql).await?;
        let target = statement_target(ctx, &relation);
        let table_columns: Vec<String> = self
            .describe(&format!("select * from {relation}"))
            .await?
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let clauses = merge.clauses.clone();
        let (_, metrics) = self
            .merge_into(
                &target,
                source,
                (&source_alias, &target_alias),
                merge.on.to_string(),
                false,
                |mut b| {
                    for clause in clauses {
                        let predicate = clause.predicate.as_ref().map(ToString::to_string);
                        b = match (clause.clause_kind, clause.action) {
                            (MergeClauseKind::Matched, MergeAction::Update(u)) => {
                                b.when_matched_update(|up| update_clause(up, predicate, &u))?
                            }
                            (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                                b.when_matched_delete(|d| delete_clause(d, predicate))?
                            }
                            (
                                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                                MergeAction::Insert(insert),
                            ) => {
                                let columns: Vec<String> = if insert.columns.is_empty() {
                                    table_columns.clone()
                                } else {
                                    insert
                                        .columns
                                        .iter()
                                        .filter_map(|c| last_part(c).ok())
                                        .collect()
                                };
                                let values: Vec<String> = match &insert.kind {
                                    MergeInsertKind::Values(v) => v
                                        .rows
                                        .first()
                                        .map(|r| r.iter().map(ToString::to_string).collect())
                                        .unwrap_or_default(),
                                    _ => Vec::new(),
                                };
                                if values.len() != columns.len() {
                                    return Err(deltalake::DeltaTableError::Generic(format!(
                                        "merge insert gives {} values for {} columns",
                                        values.len(),
                                        columns.len()
                                    )));
                                }
                                b.when_not_matched_insert(|mut i| {
                                    if let Some(p) = predicate {
                                        i = i.predicate(p);
                                    }
                                    for (c, v) in columns.iter().zip(values) {
                                        i = i.set(q(c), v);
                                    }
                                    i
                                })?
                            }
                            (MergeClauseKind::NotMatchedBySource, MergeAction::Update(u)) => b
                                .when_not_matched_by_source_update(|up| {
                                    update_clause(up, predicate, &u)
                                })?,
                            (MergeClauseKind::NotMatchedBySource, MergeAction::Delete { .. }) => b
                                .when_not_matched_by_source_delete(|d| {
                                    delete_clause(d, predicate)
                                })?,
                            (kind, action) => {
                                return Err(deltalake::DeltaTableError::Generic(format!(
                                    "`when {kind} then {action}` is not supported in a merge"
                                )));
                            }
                        };
                    }
                    Ok(b)
                },
            )
            .await?;
        let rows = metrics.num_target_rows_inserted
            + metrics.num_target_rows_updated
            + metrics.num_target_rows_deleted;
        Ok(format!("MERGE {rows}"))
    }

    /// Replace a table with a query over its current version, in one commit; its layout
    /// (partition columns) stays.
    async fn rewrite_table(&self, target: &WriteTarget<'_>, sql: &str) -> Result<()> {
        let table = self.delta_table(target.relation).await?;
        let partition_by: Vec<String> = table.snapshot()?.metadata().partition_columns().to_vec();
        let target = WriteTarget {
            partition_by: &partition_by,
            ..*target
        };
        let df = self.plan(sql).await?;
        self.write_with_mode(&target, df.logical_plan().clone(), SaveMode::Overwrite)
            .await
            .map(|_| ())
    }

    async fn count_where(
        &self,
        relation: &strata_common::Relation,
        predicate: Option<String>,
    ) -> Result<u64> {
        let filter = predicate
            .map(|p| format!(" where ({p}) is true"))
            .unwrap_or_default();
        let batches: Vec<_> = self
            .plan(&format!("select count(*) as n from {relation}{filter}"))
            .await?
            .collect()
            .await?;
        Ok(batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0) as u64)
    }
}

/// The commit metadata of a statement: the node (or hook) and run it belongs to.
fn statement_target<'a>(
    ctx: &'a StatementContext,
    relation: &'a strata_common::Relation,
) -> WriteTarget<'a> {
    WriteTarget {
        unique_id: &ctx.unique_id,
        run_id: &ctx.run_id,
        relation,
        partition_by: &[],
        file_size: None,
        replace_damaged: false,
        txn: None,
    }
}

fn unsupported(what: &str) -> Error {
    let short: String = what.chars().take(60).collect();
    Error::user(format!("`{short}` cannot run here")).with_hint(
        "hooks run queries and insert into / delete from / update / merge into tables of this target; \
         grants go in the `grants:` config",
    )
}

/// The last part of a dotted name (`t.c` → `c`).
fn last_part(name: &ObjectName) -> Result<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .ok_or_else(|| Error::user(format!("`{name}` is not a column name")))
}

/// A plain table in a `delete` or `update`, without an alias (delta-rs predicates name
/// columns without a table prefix).
fn plain_table(factor: &TableFactor) -> Result<&ObjectName> {
    match factor {
        TableFactor::Table {
            name, alias: None, ..
        } => Ok(name),
        TableFactor::Table { .. } => Err(Error::user(
            "an alias on the table of a delete or update is not supported; name its columns without a prefix",
        )),
        _ => Err(unsupported(
            "a delete or update of something other than a table",
        )),
    }
}

fn alias_or_name(alias: &Option<ast::TableAlias>, name: &ObjectName) -> Result<String> {
    match alias {
        Some(a) => Ok(a.name.value.clone()),
        None => last_part(name),
    }
}

/// A merge's `then update set ...` clause, with its `and ...` condition.
fn update_clause(
    mut update: deltalake::operations::merge::UpdateBuilder,
    predicate: Option<String>,
    set: &ast::MergeUpdateExpr,
) -> deltalake::operations::merge::UpdateBuilder {
    if let Some(p) = predicate {
        update = update.predicate(p);
    }
    for (c, e) in assignments(&set.assignments) {
        update = update.update(q(&c), e);
    }
    update
}

/// A merge's `then delete` clause, with its `and ...` condition.
fn delete_clause(
    delete: deltalake::operations::merge::DeleteBuilder,
    predicate: Option<String>,
) -> deltalake::operations::merge::DeleteBuilder {
    match predicate {
        Some(p) => delete.predicate(p),
        None => delete,
    }
}

fn assignments(list: &[ast::Assignment]) -> Vec<(String, String)> {
    list.iter()
        .filter_map(|a| match &a.target {
            AssignmentTarget::ColumnName(c) => last_part(c).ok().map(|c| (c, a.value.to_string())),
            AssignmentTarget::Tuple(_) => None,
        })
        .collect()
}

/// Whether an expression holds a subquery (`in (select ...)`, `exists (...)`, `(select ...)`).
fn has_subquery(expr: &Expr) -> bool {
    let found = visit_expressions(expr, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
        ) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    found.is_break()
}
