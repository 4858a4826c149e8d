//! How many bytes the tables a process has opened hold, for optimizer rules that must tell a
//! small table from a large one.
//!
//! DataFusion's logical plans carry no statistics, and the table providers Strata reads (Delta
//! tables, file listings) do not report any before they are scanned. Strata knows a table's
//! size when it opens it (a Delta table's log lists its files with their sizes; local files
//! have theirs), and notes it here, by provider, for as long as the provider lives.

use std::sync::{Arc, Mutex, Weak};

use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;

type Sizes = Vec<(Weak<dyn TableProvider>, u64)>;

static SIZES: Mutex<Sizes> = Mutex::new(Vec::new());

/// Note that `provider` reads `bytes` bytes of data files.
pub(crate) fn record(provider: &Arc<dyn TableProvider>, bytes: u64) {
    let Ok(mut sizes) = SIZES.lock() else { return };
    sizes.retain(|(p, _)| p.strong_count() > 0);
    sizes.push((Arc::downgrade(provider), bytes));
}

/// The bytes `provider` reads, when known: as noted, or held in memory.
pub(crate) fn bytes_of(provider: &Arc<dyn TableProvider>) -> Option<u64> {
    if let Some(memory) = provider.downcast_ref::<MemTable>() {
        let mut bytes = 0u64;
        for partition in &memory.batches {
            let batches = partition.try_read().ok()?;
            bytes += batches
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum::<u64>();
        }
        return Some(bytes);
    }
    let sizes = SIZES.lock().ok()?;
    sizes
        .iter()
        .find(|(p, _)| std::ptr::addr_eq(p.as_ptr(), Arc::as_ptr(provider)))
        .map(|(_, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_size_is_known_while_its_provider_lives() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        let table: Arc<dyn TableProvider> =
            Arc::new(datafusion::datasource::empty::EmptyTable::new(schema));
        assert_eq!(bytes_of(&table), None);
        record(&table, 4096);
        assert_eq!(bytes_of(&table), Some(4096));
        let other: Arc<dyn TableProvider> = Arc::new(
            datafusion::datasource::empty::EmptyTable::new(table.schema()),
        );
        assert_eq!(bytes_of(&other), None);
    }
}
