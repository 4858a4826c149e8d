//! Gold tables held in memory while serving. A table is read once per state of the metadata
//! store (a build or an ingestion elsewhere starts a new state), and scans then read its Arrow
//! arrays instead of decoding Parquet again. A filter on one column (`=`, `IN`, `<`, `>=`,
//! `BETWEEN`, and pairs of bounds) finds its rows through that column's sort order, built the
//! first time a filter uses it: a point query reads one row, not a page of each column.
//!
//! The cache holds at most its budget of bytes (`strata serve --cache-mb`); a table that does
//! not fit is read from Delta as before. Filters stay with DataFusion too (the index only
//! narrows the rows), so an answer never depends on whether a table was cached.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as Atomic};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, UInt32Array, make_comparator};
use datafusion::arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown, expr::InList,
};
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use strata_engine::TableWrapper;

type Key = (String, String);

/// The tables in memory, shared by every session of a server.
pub struct TableCache {
    budget: usize,
    used: Arc<AtomicUsize>,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

/// One table at one state of the metadata store: loaded on first read (once, whoever asks
/// first), or found not to fit (`None`).
struct Slot {
    generation: i64,
    resident: tokio::sync::OnceCell<Option<Arc<Resident>>>,
}

impl TableCache {
    /// A cache of at most `budget` bytes; 0 keeps nothing in memory.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(Self {
            budget,
            used: Arc::new(AtomicUsize::new(0)),
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Bytes held now (tables and their indexes).
    pub fn used(&self) -> usize {
        self.used.load(Atomic::Relaxed)
    }

    /// Wraps the gold tables of a warehouse opened at `generation` (the metadata store's
    /// state) so they read through this cache.
    pub fn wrapper(self: &Arc<Self>, generation: i64) -> TableWrapper {
        let cache = self.clone();
        Arc::new(move |schema, name, inner| {
            if cache.budget == 0
                || !crate::catalog::is_gold(schema)
                || inner.table_type() != TableType::Base
            {
                return inner;
            }
            Arc::new(CachedTable {
                inner,
                key: (schema.to_string(), name.to_string()),
                generation,
                cache: cache.clone(),
            })
        })
    }

    /// The slot of a table at `generation`: a newer state replaces an older one's.
    fn slot(&self, key: &Key, generation: i64) -> Option<Arc<Slot>> {
        let mut slots = self.slots.lock().ok()?;
        if let Some(slot) = slots.get(key)
            && slot.generation == generation
        {
            return Some(slot.clone());
        }
        let slot = Arc::new(Slot {
            generation,
            resident: tokio::sync::OnceCell::new(),
        });
        slots.insert(key.clone(), slot.clone());
        Some(slot)
    }

    /// Read a whole table into memory, unless it would not fit what is left of the budget.
    async fn load(&self, table: &CachedTable, state: &dyn Session) -> Option<Arc<Resident>> {
        let room = self.budget.saturating_sub(self.used());
        let estimate = table
            .inner
            .statistics()
            .and_then(|s| s.total_byte_size.get_value().copied());
        if estimate.is_some_and(|bytes| bytes > room) {
            return None;
        }
        let read = async {
            let plan = table.inner.scan(state, None, &[], None).await?;
            let stream = datafusion::physical_plan::execute_stream(plan, state.task_ctx())?;
            let mut batches = Vec::new();
            let mut bytes = 0usize;
            futures::pin_mut!(stream);
            while let Some(batch) = stream.try_next().await? {
                bytes += batch.get_array_memory_size();
                if bytes > room {
                    return Ok(None);
                }
                batches.push(batch);
            }
            let schema = table.inner.schema();
            let whole = concat_batches(&schema, &batches)?;
            // The provider's own schema, so plans made against it match the arrays.
            let whole = RecordBatch::try_new(schema, whole.columns().to_vec())?;
            datafusion::error::Result::<_>::Ok(Some(whole))
        };
        match read.await {
            Ok(Some(batch)) => {
                let bytes = batch.get_array_memory_size();
                if self.used.fetch_add(bytes, Atomic::Relaxed) + bytes > self.budget {
                    self.used.fetch_sub(bytes, Atomic::Relaxed);
                    return None;
                }
                tracing::info!(
                    table = %format!("{}.{}", table.key.0, table.key.1),
                    rows = batch.num_rows(),
                    bytes,
                    "serving cache: table loaded"
                );
                Some(Arc::new(Resident {
                    batch,
                    sorted: Mutex::new(HashMap::new()),
                    bytes: AtomicUsize::new(bytes),
                    used: self.used.clone(),
                }))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(table = %format!("{}.{}", table.key.0, table.key.1), error = %e, "serving cache: cannot load a table; reading it from Delta");
                None
            }
        }
    }
}

/// A table in memory, as one batch, with the sort orders filters have asked for.
struct Resident {
    batch: RecordBatch,
    sorted: Mutex<HashMap<usize, Arc<UInt32Array>>>,
    bytes: AtomicUsize,
    used: Arc<AtomicUsize>,
}

impl Drop for Resident {
    fn drop(&mut self) {
        self.used
            .fetch_sub(self.bytes.load(Atomic::Relaxed), Atomic::Relaxed);
    }
}

/// A gold table read through the cache.
#[derive(Debug)]
struct CachedTable {
    inner: Arc<dyn TableProvider>,
    key: Key,
    generation: i64,
    cache: Arc<TableCache>,
}

impl std::fmt::Debug for TableCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableCache")
            .field("budget", &self.budget)
            .field("used", &self.used())
            .finish()
    }
}

#[async_trait]
impl TableProvider for CachedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Every filter is offered to `scan` and applied again above it.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let resident = match self.cache.slot(&self.key, self.generation) {
            Some(slot) => slot
                .resident
                .get_or_init(|| self.cache.load(self, state))
                .await
                .clone(),
            None => None,
        };
        match resident {
            Some(r) => r.scan(state, projection, filters),
            None => self.inner.scan(state, projection, filters, limit).await,
        }
    }
}

/// Rows a filter asks for, on one column.
#[derive(Default)]
struct Probe {
    /// `=` and `IN`: any of these values.
    any_of: Option<Vec<ScalarValue>>,
    /// The tightest lower and upper bounds, each with whether it is inclusive.
    low: Option<(ScalarValue, bool)>,
    high: Option<(ScalarValue, bool)>,
}

/// Column types whose order equals SQL's equality and order (not floats: -0 and NaN).
fn indexable(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
}

/// A range covering more than this share of a table is scanned whole.
const RANGE_SHARE: usize = 4;

impl Resident {
    fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.batch.schema();
        let rows = self.rows(filters)?;
        let batch = match &rows {
            Some(rows) => take_record_batch(&self.batch, &UInt32Array::from(rows.clone()))?,
            None => self.batch.clone(),
        };
        let batch_size = state.config().batch_size().max(1);
        let partitions = match rows {
            Some(_) => 1,
            None => state.config().target_partitions().max(1),
        };
        // Contiguous runs of batch-sized slices, one run per partition.
        let per_partition = batch.num_rows().div_ceil(partitions).max(1);
        let mut data: Vec<Vec<RecordBatch>> = Vec::with_capacity(partitions);
        let mut start = 0;
        while start < batch.num_rows() {
            let end = (start + per_partition).min(batch.num_rows());
            let mut slices = Vec::new();
            let mut at = start;
            while at < end {
                let len = batch_size.min(end - at);
                slices.push(batch.slice(at, len));
                at += len;
            }
            data.push(slices);
            start = end;
        }
        if data.is_empty() {
            data.push(Vec::new());
        }
        let exec = MemorySourceConfig::try_new_exec(&data, schema, projection.cloned())?;
        Ok(exec)
    }

    /// The rows (ascending) the most selective indexable filter allows, or `None` to read all.
    fn rows(&self, filters: &[Expr]) -> Result<Option<Vec<u32>>> {
        let schema = self.batch.schema();
        let mut probes: HashMap<usize, Probe> = HashMap::new();
        for f in filters {
            let Some((column, probe)) = probe_of(f, &|name| {
                let i = schema.index_of(name).ok()?;
                let t = schema.field(i).data_type();
                indexable(t).then(|| (i, t.clone()))
            }) else {
                continue;
            };
            let into = probes.entry(column).or_default();
            merge(into, probe);
        }
        // An equality first (fewest rows), else a range.
        let chosen = probes
            .iter()
            .find(|(_, p)| p.any_of.is_some())
            .or_else(|| probes.iter().next());
        let Some((&column, probe)) = chosen else {
            return Ok(None);
        };
        let values = self.batch.column(column).clone();
        let order = self.sorted(column)?;
        let order = &order.values()[values.null_count()..];
        let bound = |v: &ScalarValue, upper: bool| -> Result<usize> {
            let probe = v.to_array()?;
            let cmp = make_comparator(values.as_ref(), probe.as_ref(), SortOptions::default())?;
            Ok(order.partition_point(|&row| match upper {
                false => cmp(row as usize, 0).is_lt(),
                true => cmp(row as usize, 0).is_le(),
            }))
        };
        let mut rows: Vec<u32> = Vec::new();
        if let Some(any_of) = &probe.any_of {
            for v in any_of {
                rows.extend_from_slice(&order[bound(v, false)?..bound(v, true)?]);
            }
        } else {
            let start = match &probe.low {
                Some((v, inclusive)) => bound(v, !inclusive)?,
                None => 0,
            };
            let end = match &probe.high {
                Some((v, inclusive)) => bound(v, *inclusive)?,
                None => order.len(),
            };
            if end > start {
                if (end - start) * RANGE_SHARE > self.batch.num_rows() {
                    return Ok(None);
                }
                rows.extend_from_slice(&order[start..end]);
            }
        }
        rows.sort_unstable();
        rows.dedup();
        Ok(Some(rows))
    }

    /// A column's rows in its order, nulls first: built once, kept with the table.
    fn sorted(&self, column: usize) -> Result<Arc<UInt32Array>> {
        let mut sorted = self
            .sorted
            .lock()
            .map_err(|_| datafusion::error::DataFusionError::Internal("cache lock".into()))?;
        if let Some(order) = sorted.get(&column) {
            return Ok(order.clone());
        }
        let values: &ArrayRef = self.batch.column(column);
        let order = Arc::new(sort_to_indices(
            values,
            Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
            None,
        )?);
        let bytes = order.get_array_memory_size();
        self.bytes.fetch_add(bytes, Atomic::Relaxed);
        self.used.fetch_add(bytes, Atomic::Relaxed);
        sorted.insert(column, order.clone());
        Ok(order)
    }
}

/// Tighten `into` with `probe` (filters on one column are ANDed).
fn merge(into: &mut Probe, probe: Probe) {
    if let Some(values) = probe.any_of {
        into.any_of = Some(match into.any_of.take() {
            Some(old) => old.into_iter().filter(|v| values.contains(v)).collect(),
            None => values,
        });
    }
    if let Some((v, inclusive)) = probe.low {
        let tighter = match &into.low {
            Some((old, _)) => v.partial_cmp(old).is_some_and(|o| o.is_gt()),
            None => true,
        };
        if tighter {
            into.low = Some((v, inclusive));
        }
    }
    if let Some((v, inclusive)) = probe.high {
        let tighter = match &into.high {
            Some((old, _)) => v.partial_cmp(old).is_some_and(|o| o.is_lt()),
            None => true,
        };
        if tighter {
            into.high = Some((v, inclusive));
        }
    }
}

/// The column (by `index_of`: its position and type, if indexable) and rows a filter asks
/// for, when it is a column compared with non-null literals of the column's own type.
fn probe_of(
    filter: &Expr,
    index_of: &dyn Fn(&str) -> Option<(usize, DataType)>,
) -> Option<(usize, Probe)> {
    let column = |e: &Expr| match e {
        Expr::Column(c) => index_of(&c.name),
        _ => None,
    };
    let literal = |e: &Expr, t: &DataType| match e {
        Expr::Literal(v, _) if !v.is_null() && v.data_type() == *t => Some(v.clone()),
        _ => None,
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (c, v, op) = match column(left) {
                Some((c, t)) => (c, literal(right, &t)?, *op),
                None => {
                    let (c, t) = column(right)?;
                    (c, literal(left, &t)?, op.swap()?)
                }
            };
            let mut probe = Probe::default();
            match op {
                Operator::Eq => probe.any_of = Some(vec![v]),
                Operator::Gt => probe.low = Some((v, false)),
                Operator::GtEq => probe.low = Some((v, true)),
                Operator::Lt => probe.high = Some((v, false)),
                Operator::LtEq => probe.high = Some((v, true)),
                _ => return None,
            }
            Some((c, probe))
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let (c, t) = column(expr)?;
            let values: Option<Vec<ScalarValue>> = list.iter().map(|v| literal(v, &t)).collect();
            Some((
                c,
                Probe {
                    any_of: Some(values?),
                    ..Probe::default()
                },
            ))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let (c, t) = column(expr)?;
            Some((
                c,
                Probe {
                    low: Some((literal(low, &t)?, true)),
                    high: Some((literal(high, &t)?, true)),
                    ..Probe::default()
                },
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// 10,000 rows over three batches: ids 0..10000 shuffled, a string with nulls.
    fn table() -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("kind", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]));
        let batches = (0..3)
            .map(|b| {
                let ids: Vec<i64> = (0..10_000i64)
                    .filter(|i| i % 3 == b)
                    .map(|i| (i * 7919) % 10_000)
                    .collect();
                let kinds: Vec<Option<String>> = ids
                    .iter()
                    .map(|i| (i % 11 != 0).then(|| format!("k{}", i % 5)))
                    .collect();
                let scores: Vec<Option<f64>> = ids.iter().map(|i| Some(*i as f64 / 3.0)).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(kinds)),
                        Arc::new(datafusion::arrow::array::Float64Array::from(scores)),
                    ],
                )
                .expect("batch")
            })
            .collect();
        Arc::new(MemTable::try_new(schema, vec![batches]).expect("table"))
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.expect(sql).collect().await.expect(sql);
        pretty_format_batches(&batches).expect("format").to_string()
    }

    const QUERIES: &[&str] = &[
        "select * from t where id = 4321",
        "select * from t where id = -1",
        "select id from t where 4321 = id",
        "select id, kind from t where id in (7, 70, 7000, 7, 123456) order by id",
        "select count(*), sum(id) from t where id between 100 and 250",
        "select count(*), sum(id) from t where id > 100 and id <= 250 and id < 200",
        "select count(*), sum(id) from t where id >= 9990",
        "select count(*), sum(id) from t where id < 5 or id > 9995",
        "select count(*), sum(id) from t where kind = 'k3'",
        "select count(*), sum(id) from t where kind in ('k1', 'k2') and id < 500",
        "select count(*), sum(id) from t where kind = 'k1' and kind = 'k2'",
        "select count(*), sum(id) from t where kind is null",
        "select count(*), sum(id) from t where kind > 'k3'",
        "select count(*) from t where score = 1.0",
        "select count(*) from t where id = 5 and score > 100",
        "select kind, count(*), sum(id) from t group by kind order by kind",
        "select * from t order by id limit 3",
    ];

    #[tokio::test]
    async fn cached_tables_answer_as_the_tables_do() {
        let cache = TableCache::new(64 << 20);
        let ctx = SessionContext::new();
        let direct = SessionContext::new();
        ctx.register_table("t", cache.wrapper(1)("gold", "t", table()))
            .expect("register");
        direct.register_table("t", table()).expect("register");
        for sql in QUERIES {
            assert_eq!(rows(&ctx, sql).await, rows(&direct, sql).await, "{sql}");
        }
        assert!(
            cache.used() > 10_000 * 8,
            "the table is held: {}",
            cache.used()
        );

        // An equality reads the one row it names through the index, not the whole table.
        let plan = rows(&ctx, "explain analyze select * from t where id = 4321").await;
        assert!(plan.contains("partition_sizes=[1]"), "{plan}");
        assert!(plan.contains("output_rows=1"), "{plan}");
    }

    #[tokio::test]
    async fn only_gold_tables_that_fit_are_held_and_a_new_state_reloads() {
        let small = TableCache::new(1_000);
        let ctx = SessionContext::new();
        ctx.register_table("t", small.wrapper(1)("gold", "t", table()))
            .expect("register");
        assert!(
            rows(&ctx, "select count(*) from t where id = 4")
                .await
                .contains("| 1 ")
        );
        assert_eq!(small.used(), 0, "too big for the budget: read directly");

        let cache = TableCache::new(64 << 20);
        let silver = cache.wrapper(1)("silver", "t", table());
        assert!(!silver.is::<CachedTable>());

        let ctx = SessionContext::new();
        ctx.register_table("t", cache.wrapper(1)("analytics_gold", "t", table()))
            .expect("register");
        rows(&ctx, "select count(*) from t").await;
        let held = cache.used();
        assert!(held > 0);
        // The next state of the metadata store reads the table again, once.
        let ctx = SessionContext::new();
        ctx.register_table("t", cache.wrapper(2)("analytics_gold", "t", table()))
            .expect("register");
        rows(&ctx, "select count(*) from t").await;
        rows(&ctx, "select count(*) from t where id = 1").await;
        assert!(
            cache.used() >= held && cache.used() < 3 * held,
            "{}",
            cache.used()
        );
    }
}
