//! The catalog a wire session sees: the warehouse's, with PostgreSQL's `pg_catalog` beside
//! it; for `bi_reader`, only the gold layer's schemas are listed (in `pg_catalog`,
//! `information_schema`, `\dn`), and the guard refuses the rest by name.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::array::{ArrayRef, ListBuilder, PrimitiveBuilder, StringArray};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int16Type, Int32Type, Schema, SchemaRef,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::catalog::TableProvider;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider,
};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    Column as PhysicalColumn, Literal as PhysicalLiteral,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;

use crate::users::Role;

/// The names of `pg_catalog`'s tables (found unqualified, as PostgreSQL's search path does).
pub fn system_tables() -> HashSet<String> {
    PG_CATALOG_TABLES.iter().map(|t| t.to_string()).collect()
}

/// Put the served catalog in place of the warehouse's catalog `database`, with `pg_catalog`.
pub fn install(ctx: &SessionContext, database: &str, role: Role) -> Result<(), String> {
    let inner = ctx
        .catalog(database)
        .ok_or_else(|| format!("the warehouse has no catalog {database}"))?;
    // The served catalog is the only one: the engine's own (staged rows) stay out of sight.
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(
        database.to_string(),
        Arc::new(ServedCatalog {
            inner,
            gold_only: role == Role::BiReader,
            added: RwLock::new(HashMap::new()),
        }),
    );
    {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        *state.write() = SessionStateBuilder::new_from_existing(existing)
            .with_catalog_list(catalogs)
            .build();
    }
    setup_pg_catalog(ctx, database, EmptyContextProvider)
        .map_err(|e| format!("cannot set up pg_catalog: {e}"))?;
    Ok(())
}

#[derive(Debug)]
struct ServedCatalog {
    inner: Arc<dyn CatalogProvider>,
    gold_only: bool,
    /// Schemas registered for the wire (`pg_catalog`).
    added: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl CatalogProvider for ServedCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .schema_names()
            .into_iter()
            .filter(|s| !self.gold_only || crate::catalog::is_gold(s))
            .collect();
        if let Ok(added) = self.added.read() {
            names.extend(added.keys().cloned());
        }
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self.added.read().ok()?.get(name) {
            return Some(schema.clone());
        }
        // Views in gold may read other layers: resolving them needs every schema, so access
        // is checked on the names a statement uses (see `guard`), not here.
        self.inner.schema(name)
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        let mut added = self.added.write().map_err(|_| {
            datafusion::error::DataFusionError::Internal("catalog lock poisoned".into())
        })?;
        let schema: Arc<dyn SchemaProvider> = if name == "pg_catalog" {
            Arc::new(PgCatalog {
                inner: schema,
                rebuilt: Mutex::new(HashMap::new()),
            })
        } else {
            schema
        };
        Ok(added.insert(name.to_string(), schema))
    }
}

/// `pg_catalog` with the vectors of `pg_index` and `pg_constraint` (`indkey`, `conkey`, ...)
/// as arrays, as PostgreSQL returns them (SQLAlchemy `unnest`s them, PgJDBC expands them),
/// not as text; and `pg_class` with the columns PostgreSQL 16 has.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    /// The static tables rebuilt with arrays (`pg_index`, `pg_constraint`), once.
    rebuilt: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

/// `"1 2"` → `[1, 2]`.
fn int_vector<T>(text: &StringArray) -> ArrayRef
where
    T: ArrowPrimitiveType,
    T::Native: std::str::FromStr,
{
    let mut builder = ListBuilder::new(PrimitiveBuilder::<T>::new());
    for value in text.iter() {
        match value {
            Some(v) => {
                for n in v
                    .split_whitespace()
                    .filter_map(|n| n.parse::<T::Native>().ok())
                {
                    builder.values().append_value(n);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

/// The vector columns of the catalog tables that have them: (table, column, holds oids).
const VECTORS: [(&str, &str, bool); 10] = [
    ("pg_index", "indkey", false),
    ("pg_index", "indoption", false),
    ("pg_index", "indcollation", true),
    ("pg_index", "indclass", true),
    ("pg_constraint", "conkey", false),
    ("pg_constraint", "confkey", false),
    ("pg_constraint", "conpfeqop", true),
    ("pg_constraint", "conppeqop", true),
    ("pg_constraint", "conffeqop", true),
    ("pg_constraint", "conexclop", true),
];

/// A catalog table with its vectors as arrays.
fn with_arrays(table_name: &str, inner: &Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    let Some(table) = inner.downcast_ref::<MemTable>() else {
        return Ok(inner.clone());
    };
    let mut batches = Vec::new();
    for partition in &table.batches {
        let Ok(partition) = partition.try_read() else {
            return Ok(inner.clone());
        };
        batches.extend(partition.iter().cloned());
    }
    let vectors: Vec<(&str, bool)> = VECTORS
        .iter()
        .filter(|(t, _, _)| *t == table_name)
        .map(|(_, c, oid)| (*c, *oid))
        .collect();
    let schema = inner.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match vectors.iter().find(|(n, _)| n == f.name()) {
            Some((_, oid)) => {
                let item = if *oid {
                    DataType::Int32
                } else {
                    DataType::Int16
                };
                Field::new(f.name(), DataType::new_list(item, true), true)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let new_schema = Arc::new(Schema::new(fields));
    let converted = batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let column = batch.column(i);
                    match (
                        vectors.iter().find(|(n, _)| n == f.name()),
                        column.as_any().downcast_ref::<StringArray>(),
                    ) {
                        (Some((_, true)), Some(text)) => int_vector::<Int32Type>(text),
                        (Some((_, false)), Some(text)) => int_vector::<Int16Type>(text),
                        _ => column.clone(),
                    }
                })
                .collect();
            RecordBatch::try_new(new_schema.clone(), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(new_schema, vec![converted])?))
}

/// A system table with the columns PostgreSQL 16 has and the catalog layer lacks, as NULLs
/// (`pg_class.reloptions`, read by SQLAlchemy's index reflection).
#[derive(Debug)]
struct WithColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

impl WithColumns {
    fn wrap(inner: Arc<dyn TableProvider>, extra: &[(&str, DataType)]) -> Arc<dyn TableProvider> {
        let base = inner.schema();
        let missing: Vec<Field> = extra
            .iter()
            .filter(|(name, _)| base.field_with_name(name).is_err())
            .map(|(name, ty)| Field::new(*name, ty.clone(), true))
            .collect();
        if missing.is_empty() {
            return inner;
        }
        let fields: Vec<Field> = base
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .chain(missing)
            .collect();
        Arc::new(Self {
            inner,
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

#[async_trait::async_trait]
impl TableProvider for WithColumns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = self.inner.scan(state, None, &[], limit).await?;
        let known = self.inner.schema().fields().len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let exprs = wanted
            .into_iter()
            .map(|i| {
                let field = self.schema.field(i);
                let expr: Arc<dyn PhysicalExpr> = if i < known {
                    Arc::new(PhysicalColumn::new(field.name(), i))
                } else {
                    Arc::new(PhysicalLiteral::new(ScalarValue::try_from(
                        field.data_type(),
                    )?))
                };
                Ok((expr, field.name().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if VECTORS.iter().any(|(t, _, _)| *t == lower) {
            if let Some(table) = self
                .rebuilt
                .lock()
                .ok()
                .and_then(|r| r.get(&lower).cloned())
            {
                return Ok(Some(table));
            }
            let Some(inner) = self.inner.table(name).await? else {
                return Ok(None);
            };
            let table = with_arrays(&lower, &inner)?;
            if let Ok(mut rebuilt) = self.rebuilt.lock() {
                rebuilt.insert(lower, table.clone());
            }
            return Ok(Some(table));
        }
        let table = self.inner.table(name).await?;
        if name.eq_ignore_ascii_case("pg_class") {
            let text_array = DataType::new_list(DataType::Utf8, true);
            return Ok(table.map(|t| {
                WithColumns::wrap(
                    t,
                    &[
                        ("reltoastrelid", DataType::Int32),
                        ("relrewrite", DataType::Int32),
                        ("relacl", text_array.clone()),
                        ("reloptions", text_array),
                    ],
                )
            }));
        }
        Ok(table)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}
