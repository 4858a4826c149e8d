//! Constant leaves as in-memory scans, so every task of a stage runs the same plan shape.
//!
//! Ballista's scheduler gives each task of a stage the stage's plan restricted to the task's
//! partitions. A union of constant rows (`select 1 union all select 2 union all …`, as unit
//! tests and seeds-like models write them) has one `PlaceholderRowExec` per branch; a task
//! that does not own a branch gets an empty in-memory scan in its place. The scheduler then
//! merges each task's operator metrics with the stage's, node by node, and refuses a task
//! whose plan has a different number of measured operators — the task's completion is lost
//! and the job never ends. Planning those leaves as in-memory scans from the start
//! (`DataSourceExec` over the same rows) keeps every task's plan the same shape.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;

/// Replaces `PlaceholderRowExec` (one row) and `EmptyExec` (no rows) with in-memory scans of
/// the same rows and partitions.
#[derive(Debug, Default)]
pub struct MemoryLeaves;

impl PhysicalOptimizerRule for MemoryLeaves {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let rows = if node.is::<PlaceholderRowExec>() {
                1
            } else if node.is::<EmptyExec>() {
                0
            } else {
                return Ok(Transformed::no(node));
            };
            let schema = node.schema();
            let partitions = node.properties().partitioning.partition_count();
            let columns = schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), rows))
                .collect();
            // A placeholder row of a non-nullable column cannot be written as data: keep it.
            let Ok(batch) = RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            ) else {
                return Ok(Transformed::no(node));
            };
            let batches = match rows {
                0 => vec![vec![]; partitions],
                _ => vec![vec![batch]; partitions],
            };
            let source = MemorySourceConfig::try_new(&batches, schema, None)?;
            Ok(Transformed::yes(DataSourceExec::from_data_source(source)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_memory_leaves"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn constant_unions_become_memory_scans_with_the_same_rows() -> Result<()> {
        let ctx = SessionContext::new();
        let sql = "select a, sum(b) as b from (select 1 as a, 2 as b union all select 1, 3 \
                   union all select 2, 3 union all select 3, 4 where false) t group by a order by a";
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        let rewritten = MemoryLeaves.optimize(plan.clone(), ctx.state().config_options())?;
        let shown = datafusion::physical_plan::displayable(rewritten.as_ref())
            .indent(false)
            .to_string();
        assert!(!shown.contains("PlaceholderRowExec"), "{shown}");
        assert!(!shown.contains("EmptyExec"), "{shown}");
        let text = |b: &[RecordBatch]| -> Result<String> {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(b)?.to_string())
        };
        let before = text(&datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?)?;
        let after = text(&datafusion::physical_plan::collect(rewritten, ctx.task_ctx()).await?)?;
        assert_eq!(before, after);
        assert!(after.contains("| 1 | 5 |"), "{after}");
        Ok(())
    }
}
