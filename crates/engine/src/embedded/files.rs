//! A version of a Delta table read as what it is underneath: a list of Parquet files. Its
//! scan is DataFusion's own Parquet scan, which every distributed engine can serialize and
//! ship to its workers; the Delta log is read once, where the query is planned.
//!
//! Only what Strata's writers produce is read this way: tables without deletion vectors or
//! column mapping. Anything else is refused with the table's name.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use object_store::ObjectStore;
use object_store::path::Path;

/// One data file of a table version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LakeFile {
    /// Its path in the object store (from the store's root).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Rows in it, when the log says.
    pub rows: Option<usize>,
    /// The values of the table's partition columns, as the log writes them.
    pub partition_values: Vec<Option<String>>,
}

/// A table version as a list of Parquet files.
#[derive(Debug, Clone)]
pub struct LakeFiles {
    /// The object store the files are in (`s3://bucket`, `file://`).
    pub store_url: String,
    /// The table's columns, in its order.
    pub schema: SchemaRef,
    /// The partition columns, in the order of [`LakeFile::partition_values`].
    pub partition_columns: Vec<String>,
    /// The files.
    pub files: Vec<LakeFile>,
    /// The store, to register where the scan runs in this process (absent once serialized:
    /// a remote process finds stores by their url).
    pub store: Option<Arc<dyn ObjectStore>>,
}

impl LakeFiles {
    /// The files of the loaded version of `table`.
    pub fn of(table: &DeltaTable, display: &str) -> crate::Result<Self> {
        let state = table.snapshot()?;
        let metadata = state.metadata();
        if metadata
            .configuration()
            .get("delta.columnMapping.mode")
            .is_some_and(|m| m != "none")
        {
            return Err(crate::Error::user(format!(
                "{display} uses Delta column mapping, which a cluster cannot read"
            )));
        }
        let partition_columns: Vec<String> = metadata.partition_columns().to_vec();
        // Text and binary columns are read as view types, as the Delta provider reads them
        // (DataFusion's `schema_force_view_types`), so a query has the same types either way.
        let schema = state.snapshot().arrow_schema();
        let schema = Arc::new(Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| match partition_columns.contains(f.name()) {
                    true => f.clone(),
                    false => view_types(f.clone()),
                })
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        let url = table.table_url();
        let store_url = format!("{}://{}", url.scheme(), url.authority());
        let root = url.path().trim_end_matches('/').to_string();
        let mut files = Vec::new();
        for file in state.log_data() {
            if file.deletion_vector_descriptor().is_some() {
                return Err(crate::Error::user(format!(
                    "{display} has deletion vectors, which a cluster cannot read yet"
                ))
                .with_hint("rewrite it: `strata run --full-refresh --select ...`"));
            }
            let relative = file.path();
            let path = match url::Url::parse(&relative) {
                Ok(absolute) => {
                    if format!("{}://{}", absolute.scheme(), absolute.authority()) != store_url {
                        return Err(crate::Error::user(format!(
                            "{display} reads a file in another store ({absolute}), which a cluster cannot read"
                        )));
                    }
                    absolute.path().to_string()
                }
                Err(_) => format!("{root}/{relative}"),
            };
            let mut values = file.partition_values_map();
            files.push(LakeFile {
                path: object_path(&path).to_string(),
                size: u64::try_from(file.size()).unwrap_or(0),
                rows: file.num_records(),
                partition_values: partition_columns
                    .iter()
                    .map(|c| values.remove(c).flatten())
                    .collect(),
            });
        }
        Ok(Self {
            store_url,
            schema,
            partition_columns,
            files,
            store: Some(table.log_store().root_object_store(None)),
        })
    }

    /// The columns stored in the files, in table order.
    fn file_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.schema
                .fields()
                .iter()
                .filter(|f| !self.partition_columns.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ))
    }

    fn partition_fields(&self) -> Result<Vec<FieldRef>> {
        self.partition_columns
            .iter()
            .map(|c| {
                self.schema
                    .field_with_name(c)
                    .map(|f| Arc::new(Field::clone(f)))
                    .map_err(|e| DataFusionError::Plan(format!("partition column {c}: {e}")))
            })
            .collect()
    }
}

/// An object store path from a decoded path (segments encoded as the store needs).
fn object_path(path: &str) -> Path {
    let trimmed = path.trim_start_matches('/');
    Path::parse(trimmed).unwrap_or_else(|_| Path::from(trimmed))
}

#[async_trait]
impl TableProvider for LakeFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Row groups are skipped by their statistics; the rows are still filtered above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let store_url = ObjectStoreUrl::parse(&self.store_url)?;
        if let Some(store) = &self.store
            && session.runtime_env().object_store(&store_url).is_err()
        {
            session
                .runtime_env()
                .register_object_store(store_url.as_ref(), store.clone());
        }
        let file_schema = self.file_schema();
        let partition_fields = self.partition_fields()?;
        let table_schema =
            datafusion::datasource::table_schema::TableSchema::builder(file_schema.clone())
                .with_table_partition_cols(partition_fields.clone())
                .build();
        // The scan's columns are the files' then the partition columns: map the table's order
        // onto them.
        let scan_order: Vec<usize> = self
            .schema
            .fields()
            .iter()
            .map(
                |f| match self.partition_columns.iter().position(|c| c == f.name()) {
                    Some(p) => file_schema.fields().len() + p,
                    None => file_schema.index_of(f.name()).unwrap_or(0),
                },
            )
            .collect();
        let indices: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| scan_order[i]).collect(),
            None => scan_order,
        };
        let mut source = ParquetSource::new(table_schema.clone());
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let scan_schema = DFSchema::try_from(table_schema.table_schema().as_ref().clone())?;
            if let Ok(physical) = session.create_physical_expr(predicate, &scan_schema) {
                source = source.with_predicate(physical);
            }
        }
        let mut files = Vec::with_capacity(self.files.len());
        let mut rows = Some(0usize);
        for f in &self.files {
            let values = f
                .partition_values
                .iter()
                .zip(&partition_fields)
                .map(|(v, field)| match v {
                    Some(text) => ScalarValue::try_from_string(text.clone(), field.data_type()),
                    None => ScalarValue::try_from(field.data_type()),
                })
                .collect::<Result<Vec<_>>>()?;
            rows = rows.zip(f.rows).map(|(a, b)| a + b);
            files.push(PartitionedFile::new(f.path.clone(), f.size).with_partition_values(values));
        }
        let partitions = session.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); partitions.min(files.len()).max(1)];
        // Largest first, each to the group with the fewest bytes.
        files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        let mut sizes = vec![0u64; groups.len()];
        for f in files {
            let (i, _) = sizes
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| **s)
                .unwrap_or((0, &0));
            sizes[i] += f.object_meta.size;
            groups[i].push(f);
        }
        let statistics = match rows {
            Some(n) => Statistics::new_unknown(table_schema.table_schema())
                .with_num_rows(Precision::Exact(n)),
            None => Statistics::new_unknown(table_schema.table_schema()),
        };
        let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_statistics(statistics)
            .with_projection_indices(Some(indices))?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// `field` with its text and binary types (also inside structs and lists) as view types.
fn view_types(field: FieldRef) -> FieldRef {
    let data_type = match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
        DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| view_types(f.clone())).collect())
        }
        DataType::List(inner) => DataType::List(view_types(inner.clone())),
        DataType::LargeList(inner) => DataType::LargeList(view_types(inner.clone())),
        _ => return field,
    };
    Arc::new(field.as_ref().clone().with_data_type(data_type))
}
