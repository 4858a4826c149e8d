//! Building tables, views and incremental models, each in one transaction.
//!
//! A table or view is created as `<name>__dbt_tmp`; the old relation is renamed
//! `<name>__dbt_backup`, the new one takes its name, the backup is dropped — all committed
//! together, so readers see the old relation or the new one, never neither. Views that
//! depended on the old relation are made again on the new one in the same transaction, so
//! rebuilding one model never drops another (dbt-postgres drops them with the backup).

use strata_common::Relation;
use strata_engine::{
    Error, IncrementalStrategy, MaterializeOutcome, MaterializeRequest, OnSchemaChange, Result,
};
use tokio_postgres::Transaction;

use super::{PostgresWarehouse, divide, suffixed};
use crate::{ident, literal};

/// What a built relation is, in SQL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Table,
    View,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::View => "view",
        }
    }
}

/// A relation's kind from `pg_class.relkind`.
fn existing_kind(relkind: char) -> &'static str {
    match relkind {
        'v' => "view",
        'm' => "materialized view",
        'f' => "foreign table",
        _ => "table",
    }
}

impl PostgresWarehouse {
    pub(super) async fn build_table(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        let rows = self.replace(req, Kind::Table).await?;
        let observed = self.observe(req).await;
        Ok(MaterializeOutcome {
            rows_affected: Some(rows),
            version: None,
            message: format!("SELECT {rows}"),
            quarantined: 0,
            observed,
        })
    }

    pub(super) async fn build_view(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        self.replace(req, Kind::View).await?;
        Ok(MaterializeOutcome {
            rows_affected: None,
            version: None,
            message: "CREATE VIEW".into(),
            quarantined: 0,
            observed: Vec::new(),
        })
    }

    /// Build `req` as a new relation of `kind` and swap it in; returns the rows written.
    async fn replace(&self, req: &MaterializeRequest, kind: Kind) -> Result<u64> {
        let relation = &req.relation;
        let node = &req.unique_id;
        self.ensure_schema(&relation.schema).await?;
        let mut conn = self.conn().await?;
        let tmp = Relation::new(
            &relation.database,
            &relation.schema,
            suffixed(&relation.identifier, "__dbt_tmp"),
        );
        let sql = divide::rewrite(req.sql.trim().trim_end_matches(';'));
        let tx = conn.transaction().await.map_err(|e| self.error(node, &e))?;
        let fail =
            |what: &str, e: tokio_postgres::Error| self.error(&format!("{node}: {what}"), &e);
        self.drop_if_exists(&tx, &tmp)
            .await
            .map_err(|e| fail("cannot prepare the build", e))?;
        let rows = tx
            .execute(
                &format!("create {} {} as (\n{sql}\n)", kind.sql(), self.name(&tmp)),
                &[],
            )
            .await
            .map_err(|e| fail("the model's SQL failed", e))?;
        self.swap_in(&tx, node, relation, &tmp).await?;
        tx.commit()
            .await
            .map_err(|e| fail("cannot commit the build", e))?;
        Ok(rows)
    }

    /// In `tx`: the old relation (if any) is renamed to `backup`, `tmp` takes its name, the
    /// backup is dropped, and the views that read the old relation are made again.
    pub(super) async fn swap_in(
        &self,
        tx: &Transaction<'_>,
        node: &str,
        relation: &Relation,
        tmp: &Relation,
    ) -> Result<()> {
        let backup = &suffixed(&relation.identifier, "__dbt_backup");
        let fail =
            |what: &str, e: tokio_postgres::Error| self.error(&format!("{node}: {what}"), &e);
        let existing = self.kind_of(tx.client(), relation).await?;
        let dependents = match existing {
            Some(_) => self.dependent_views(tx, relation).await?,
            None => Vec::new(),
        };
        let mut steps = Vec::new();
        if let Some(k) = existing {
            let backup_rel = Relation::new(&relation.database, &relation.schema, backup);
            self.drop_if_exists(tx, &backup_rel)
                .await
                .map_err(|e| fail("cannot drop an old backup", e))?;
            steps.push(format!(
                "alter {} {} rename to {}",
                existing_kind(k),
                self.name(relation),
                ident(backup)
            ));
        }
        let tmp_kind = match self.kind_of(tx.client(), tmp).await? {
            Some('v') => "view",
            _ => "table",
        };
        steps.push(format!(
            "alter {tmp_kind} {} rename to {}",
            self.name(tmp),
            ident(&relation.identifier)
        ));
        if let Some(k) = existing {
            let backup_rel = Relation::new(&relation.database, &relation.schema, backup);
            steps.push(format!(
                "drop {} {} cascade",
                existing_kind(k),
                self.name(&backup_rel)
            ));
        }
        tx.batch_execute(&steps.join(";\n"))
            .await
            .map_err(|e| fail("cannot swap the new relation in", e))?;
        for (name, definition, grants) in dependents {
            // A view that no longer fits the new relation (a column it reads is gone) is left
            // dropped, as dbt-postgres leaves every dependent view; its own model makes it
            // again.
            tx.batch_execute("savepoint strata_view")
                .await
                .map_err(|e| fail("cannot remake dependent views", e))?;
            // Made again with the privileges it had.
            match tx
                .batch_execute(&format!("create view {name} as {definition}; {grants}"))
                .await
            {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(
                        "{node}: the view {name} read the old {relation} and no longer fits the new one ({}); it is made again when its own model runs",
                        crate::describe(&e)
                    );
                    tx.batch_execute("rollback to savepoint strata_view")
                        .await
                        .map_err(|e| fail("cannot remake dependent views", e))?;
                }
            }
        }
        Ok(())
    }

    /// Drop `relation` (a table or a view) if it exists, with what depends on it.
    pub(super) async fn drop_if_exists(
        &self,
        tx: &Transaction<'_>,
        relation: &Relation,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let row = tx
            .query_opt(
                "select c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = $1 and c.relname = $2",
                &[&relation.schema, &relation.identifier],
            )
            .await?;
        if let Some(kind) = row.and_then(|r| r.get::<_, String>(0).chars().next()) {
            tx.batch_execute(&format!(
                "drop {} {} cascade",
                existing_kind(kind),
                self.name(relation)
            ))
            .await?;
        }
        Ok(())
    }

    /// The views reading `relation`, directly or through other views, each before those
    /// reading it: (quoted name, definition, the statements granting what others may do).
    async fn dependent_views(
        &self,
        tx: &Transaction<'_>,
        relation: &Relation,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = tx
            .query(
                "with recursive deps(oid, depth) as ( \
                   select distinct r.ev_class, 1 from pg_depend d \
                   join pg_rewrite r on r.oid = d.objid \
                   where d.refobjid = to_regclass($1) and r.ev_class <> d.refobjid \
                   union all \
                   select distinct r.ev_class, deps.depth + 1 from deps \
                   join pg_depend d on d.refobjid = deps.oid \
                   join pg_rewrite r on r.oid = d.objid \
                   where r.ev_class <> d.refobjid and deps.depth < 50) \
                 select format('%I.%I', n.nspname, c.relname), pg_get_viewdef(c.oid), max(depth), \
                   coalesce((select string_agg(format('grant %s on %I.%I to %I', g.privilege_type, \
                     n.nspname, c.relname, g.grantee), '; ') \
                     from information_schema.role_table_grants g \
                     where g.table_schema = n.nspname and g.table_name = c.relname \
                     and g.grantee <> current_user), '') \
                 from deps join pg_class c on c.oid = deps.oid \
                 join pg_namespace n on n.oid = c.relnamespace \
                 where c.relkind = 'v' \
                 group by n.nspname, c.relname, c.oid order by 3",
                &[&self.name(relation)],
            )
            .await
            .map_err(|e| self.error(&format!("cannot find the views reading {relation}"), &e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(3)))
            .collect())
    }

    /// Run the request's observers on the table just built.
    async fn observe(
        &self,
        req: &MaterializeRequest,
    ) -> Vec<(String, Vec<datafusion::arrow::record_batch::RecordBatch>)> {
        use futures::TryStreamExt;
        let mut out = Vec::new();
        for (id, sql) in &req.observers {
            let sql = format!(
                "with {} as (select * from {}) {sql}",
                strata_engine::OBSERVED_ROWS,
                self.name(&req.relation)
            );
            let batches = match self.stream(&sql, None).await {
                Ok(s) => s.try_collect::<Vec<_>>().await,
                Err(e) => {
                    tracing::debug!("observer {id} of {}: {e}", req.unique_id);
                    continue;
                }
            };
            match batches {
                Ok(b) => out.push((id.clone(), b)),
                Err(e) => tracing::debug!("observer {id} of {}: {e}", req.unique_id),
            }
        }
        out
    }

    /// Incremental models: built in full the first time (and with `--full-refresh`), then
    /// their new rows staged in a temporary table and written by the strategy, in one
    /// transaction.
    pub(super) async fn build_incremental(
        &self,
        req: &MaterializeRequest,
    ) -> Result<MaterializeOutcome> {
        let node = &req.unique_id;
        let existing = {
            let conn = self.conn().await?;
            self.kind_of(&conn, &req.relation).await?
        };
        if req.full_refresh || !matches!(existing, Some('r' | 'p')) {
            return self.build_table(req).await;
        }
        let strategy = match (req.incremental_strategy, req.batch.is_some()) {
            (_, true) => None,
            (Some(s), false) => Some(s),
            // dbt-postgres: delete+insert with a unique key, else append.
            (None, false) if req.unique_key.is_empty() => Some(IncrementalStrategy::Append),
            (None, false) => Some(IncrementalStrategy::DeleteInsert),
        };
        if matches!(
            strategy,
            Some(IncrementalStrategy::Merge | IncrementalStrategy::DeleteInsert)
        ) && req.unique_key.is_empty()
        {
            return Err(Error::user(format!(
                "{node}: the `{}` strategy needs a `unique_key`",
                strategy.map(|s| s.as_str()).unwrap_or_default()
            ))
            .with_hint(
                "set unique_key in the model's config, or use incremental_strategy: append",
            ));
        }
        let mut conn = self.conn().await?;
        let fail =
            |what: &str, e: tokio_postgres::Error| self.error(&format!("{node}: {what}"), &e);
        let staged = suffixed(&req.relation.identifier, "__dbt_tmp");
        let sql = divide::rewrite(req.sql.trim().trim_end_matches(';'));
        let tx = conn.transaction().await.map_err(|e| self.error(node, &e))?;
        tx.batch_execute(&format!(
            "drop table if exists pg_temp.{t}; create temp table {t} on commit drop as (\n{sql}\n)",
            t = ident(&staged)
        ))
        .await
        .map_err(|e| fail("the model's SQL failed", e))?;
        let source = self.temp_columns(&tx, &staged).await?;
        let target = self
            .columns_of(tx.client(), &req.relation.schema, &req.relation.identifier)
            .await?;
        let columns = self.schema_change(&tx, req, &source, &target).await?;
        let target_name = self.name(&req.relation);
        let cols = columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "insert into {target_name} ({cols}) select {cols} from {}",
            ident(&staged)
        );
        let predicates: Vec<String> = req
            .incremental_predicates
            .iter()
            .map(|p| format!("({p})"))
            .collect();
        let mut statements = Vec::new();
        match (strategy, &req.batch) {
            (_, Some(batch)) => {
                let col = ident(&batch.event_time);
                statements.push(format!(
                    "delete from {target_name} where {col} >= {}::timestamp and {col} < {}::timestamp",
                    literal(&batch.start),
                    literal(&batch.end)
                ));
                statements.push(insert);
            }
            (Some(IncrementalStrategy::Append | IncrementalStrategy::Microbatch) | None, None) => {
                statements.push(insert)
            }
            (Some(IncrementalStrategy::DeleteInsert), None) => {
                let keys: Vec<String> = req
                    .unique_key
                    .iter()
                    .map(|k| {
                        format!(
                            "DBT_INTERNAL_DEST.{k} = DBT_INTERNAL_SOURCE.{k}",
                            k = ident(k)
                        )
                    })
                    .collect();
                let mut conditions = keys;
                conditions.extend(predicates.iter().cloned());
                statements.push(format!(
                    "delete from {target_name} as DBT_INTERNAL_DEST using {} as DBT_INTERNAL_SOURCE where {}",
                    ident(&staged),
                    conditions.join(" and ")
                ));
                statements.push(insert);
            }
            (Some(IncrementalStrategy::Merge), None) => {
                let mut on: Vec<String> = req
                    .unique_key
                    .iter()
                    .map(|k| {
                        format!(
                            "DBT_INTERNAL_DEST.{k} = DBT_INTERNAL_SOURCE.{k}",
                            k = ident(k)
                        )
                    })
                    .collect();
                on.extend(predicates.iter().cloned());
                let update: Vec<String> = columns
                    .iter()
                    .filter(|c| {
                        (req.merge_update_columns.is_empty()
                            || req.merge_update_columns.contains(c))
                            && !req.merge_exclude_columns.contains(c)
                    })
                    .map(|c| format!("{q} = DBT_INTERNAL_SOURCE.{q}", q = ident(c)))
                    .collect();
                let values = columns
                    .iter()
                    .map(|c| format!("DBT_INTERNAL_SOURCE.{}", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ");
                statements.push(format!(
                    "merge into {target_name} as DBT_INTERNAL_DEST using {} as DBT_INTERNAL_SOURCE on ({})\n{}when not matched then insert ({cols}) values ({values})",
                    ident(&staged),
                    on.join(" and "),
                    if update.is_empty() {
                        String::new()
                    } else {
                        format!("when matched then update set {}\n", update.join(", "))
                    }
                ));
            }
        }
        let mut rows = 0;
        for statement in &statements {
            rows += tx
                .execute(statement.as_str(), &[])
                .await
                .map_err(|e| fail("writing the new rows failed", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| fail("cannot commit the build", e))?;
        Ok(MaterializeOutcome {
            rows_affected: Some(rows),
            version: None,
            message: format!("INSERT {rows}"),
            quarantined: 0,
            observed: Vec::new(),
        })
    }

    /// Apply `on_schema_change` to the table; returns the columns to write (the table's
    /// columns the new rows have).
    async fn schema_change(
        &self,
        tx: &Transaction<'_>,
        req: &MaterializeRequest,
        source: &[(String, String)],
        target: &[(String, String)],
    ) -> Result<Vec<String>> {
        let node = &req.unique_id;
        let in_target = |c: &str| target.iter().any(|(n, _)| n == c);
        let in_source = |c: &str| source.iter().any(|(n, _)| n == c);
        let added: Vec<&(String, String)> = source.iter().filter(|(n, _)| !in_target(n)).collect();
        let removed: Vec<&(String, String)> =
            target.iter().filter(|(n, _)| !in_source(n)).collect();
        let changed = !added.is_empty() || !removed.is_empty();
        let table = self.name(&req.relation);
        let mut alters = Vec::new();
        match req.on_schema_change {
            OnSchemaChange::Ignore => {}
            OnSchemaChange::Fail if changed => {
                let names = |cols: &[&(String, String)]| {
                    cols.iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(Error::user(format!(
                    "{node}: the query's columns differ from the table's (new: {}; gone: {}) and on_schema_change is `fail`",
                    names(&added),
                    names(&removed)
                ))
                .with_hint("run with --full-refresh to rebuild the table, or set on_schema_change: append_new_columns / sync_all_columns"));
            }
            OnSchemaChange::Fail => {}
            OnSchemaChange::AppendNewColumns => {
                for (n, t) in &added {
                    alters.push(format!("alter table {table} add column {} {t}", ident(n)));
                }
            }
            OnSchemaChange::SyncAllColumns => {
                for (n, t) in &added {
                    alters.push(format!("alter table {table} add column {} {t}", ident(n)));
                }
                for (n, _) in &removed {
                    alters.push(format!("alter table {table} drop column {}", ident(n)));
                }
                for (n, t) in source {
                    if let Some((_, old)) = target.iter().find(|(o, _)| o == n)
                        && old != t
                    {
                        alters.push(format!(
                            "alter table {table} alter column {q} type {t} using {q}::{t}",
                            q = ident(n)
                        ));
                    }
                }
            }
        }
        if !alters.is_empty() {
            tx.batch_execute(&alters.join(";\n")).await.map_err(|e| {
                self.error(&format!("{node}: cannot change the table's columns"), &e)
            })?;
        }
        let keep_new = matches!(
            req.on_schema_change,
            OnSchemaChange::AppendNewColumns | OnSchemaChange::SyncAllColumns
        );
        Ok(source
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| in_target(n) || keep_new)
            .collect())
    }

    /// The columns of a temporary table of this session.
    pub(super) async fn temp_columns(
        &self,
        tx: &Transaction<'_>,
        name: &str,
    ) -> Result<Vec<(String, String)>> {
        let schema: String = tx
            .query_one(
                "select nspname::text from pg_namespace where oid = pg_my_temp_schema()",
                &[],
            )
            .await
            .map_err(|e| self.error("cannot find the staged rows", &e))?
            .get(0);
        self.columns_of(tx.client(), &schema, name).await
    }

    /// Add a query's rows to a table, creating it, adding the columns it lacks.
    pub(super) async fn append_rows(&self, req: &MaterializeRequest) -> Result<MaterializeOutcome> {
        self.ensure_schema(&req.relation.schema).await?;
        let mut conn = self.conn().await?;
        let node = &req.unique_id;
        let fail =
            |what: &str, e: tokio_postgres::Error| self.error(&format!("{node}: {what}"), &e);
        let sql = divide::rewrite(req.sql.trim().trim_end_matches(';'));
        let table = self.name(&req.relation);
        let tx = conn.transaction().await.map_err(|e| self.error(node, &e))?;
        let rows = match self.kind_of(tx.client(), &req.relation).await? {
            None => tx
                .execute(&format!("create table {table} as (\n{sql}\n)"), &[])
                .await
                .map_err(|e| fail("the query failed", e))?,
            Some(_) => {
                let staged = "strata_append";
                tx.batch_execute(&format!(
                    "create temp table {staged} on commit drop as (\n{sql}\n)"
                ))
                .await
                .map_err(|e| fail("the query failed", e))?;
                let source = self.temp_columns(&tx, staged).await?;
                let target = self
                    .columns_of(tx.client(), &req.relation.schema, &req.relation.identifier)
                    .await?;
                for (n, t) in &source {
                    if !target.iter().any(|(o, _)| o == n) {
                        tx.batch_execute(&format!(
                            "alter table {table} add column {} {t}",
                            ident(n)
                        ))
                        .await
                        .map_err(|e| fail("cannot add a column", e))?;
                    }
                }
                let cols = source
                    .iter()
                    .map(|(n, _)| ident(n))
                    .collect::<Vec<_>>()
                    .join(", ");
                tx.execute(
                    &format!("insert into {table} ({cols}) select {cols} from {staged}"),
                    &[],
                )
                .await
                .map_err(|e| fail("cannot add the rows", e))?
            }
        };
        tx.commit().await.map_err(|e| fail("cannot commit", e))?;
        Ok(MaterializeOutcome {
            rows_affected: Some(rows),
            version: None,
            message: format!("INSERT {rows}"),
            quarantined: 0,
            observed: Vec::new(),
        })
    }
}
