use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::exec::{SharedExec, SharedState};
use super::*;
use crate::join_rules::tests::execute;

/// A session that plans with [`ReusingPlanner`], or DataFusion's own planner.
fn session(reuse: bool) -> SessionContext {
    let mut builder = SessionStateBuilder::new().with_default_features();
    if reuse {
        builder = builder.with_query_planner(Arc::new(ReusingPlanner));
    }
    SessionContext::new_with_state(builder.build())
}

const TABLES: &[&str] = &[
    "create table lines (supp int, part int, price double, day int) as values \
     (1, 10, 10.0, 1), (1, 11, 5.0, 2), (2, 10, 20.0, 1), (3, 12, 7.0, 3), (2, 12, 1.0, 5), \
     (4, 11, 15.0, 2), (4, 10, 5.0, 4), (null, 10, 3.0, 1)",
    "create table supp (id int, name varchar, region varchar) as values \
     (1, 'a', 'north'), (2, 'b', 'south'), (3, 'c', 'north'), (4, 'd', 'north')",
];

/// A CTE read by a query and by its scalar subquery.
const CTE_TWICE: &str = "with revenue as (
        select supp, sum(price) as total from lines where day < 5 group by supp
    )
    select id, name, total from supp, revenue
    where id = supp and total = (select max(total) from revenue) order by id";

/// The same joins written in a query and in its `HAVING` subquery, keeping other columns.
const JOINS_TWICE: &str = "select part, sum(price) as value from lines, supp
    where supp = id and region = 'north' group by part
    having sum(price) > (select sum(price) * 0.3 from lines, supp
                         where supp = id and region = 'north')
    order by value desc";

/// The physical plan of `sql`, run; with its rows as text.
async fn run(ctx: &SessionContext, sql: &str) -> (Arc<dyn ExecutionPlan>, String) {
    let plan = ctx
        .sql(sql)
        .await
        .expect("plan")
        .create_physical_plan()
        .await
        .expect("physical plan");
    let batches = collect(plan.clone(), ctx.task_ctx()).await.expect("run");
    let rows = pretty_format_batches(&batches).expect("format").to_string();
    (plan, rows)
}

/// The `SharedExec` nodes of a plan: (how each displays, rows it read from another copy).
fn shared_nodes(plan: &Arc<dyn ExecutionPlan>) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut stack = vec![plan.clone()];
    while let Some(node) = stack.pop() {
        if node.is::<SharedExec>() {
            let line = displayable(node.as_ref()).one_line().to_string();
            let reused = node
                .metrics()
                .and_then(|m| m.sum_by_name("reused_rows"))
                .map_or(0, |v| v.as_usize());
            found.push((line.trim().to_string(), reused));
        }
        stack.extend(node.children().into_iter().cloned());
    }
    found.sort();
    found
}

/// Run `sql` with and without sharing: the same rows, and two copies of one shared part of
/// which one read `reused` rows from the other. Returns the rows.
async fn computed_once(sql: &str, reused: usize) -> String {
    let (reusing, plain) = (session(true), session(false));
    execute(&reusing, TABLES).await;
    execute(&plain, TABLES).await;
    let (plan, rows) = run(&reusing, sql).await;
    let (_, expected) = run(&plain, sql).await;
    assert_eq!(rows, expected);
    let shared = shared_nodes(&plan);
    assert_eq!(shared.len(), 2, "{shared:?}");
    assert!(shared.iter().all(|(line, _)| line == "SharedExec: id=0"));
    assert_eq!(
        shared.iter().map(|(_, n)| n).sum::<usize>(),
        reused,
        "{shared:?}"
    );
    rows
}

#[tokio::test]
async fn a_cte_read_twice_is_computed_once() {
    // One copy computed the groups (4 of them, and the NULL supplier's); the other read them.
    let rows = computed_once(CTE_TWICE, 5).await;
    assert!(rows.contains("| 4  | d    | 20.0  |"), "{rows}");
}

#[tokio::test]
async fn joins_written_twice_with_other_columns_are_computed_once() {
    // The north suppliers' five lines, read by the second copy.
    let rows = computed_once(JOINS_TWICE, 5).await;
    assert!(rows.contains("| 11   | 20.0  |"), "{rows}");
}

#[tokio::test]
async fn subqueries_decorrelated_twice_are_computed_once() {
    // Each `IN` becomes a semi join with keys the optimizer names apart.
    let sql = "select part, sum(price) as value from lines
        where supp in (select id from supp where region = 'north') group by part
        having sum(price) > (select sum(price) * 0.3 from lines
                             where supp in (select id from supp where region = 'north'))
        order by value desc";
    computed_once(sql, 5).await;
}

#[tokio::test]
async fn parts_that_differ_or_are_volatile_are_left_alone() {
    let ctx = session(true);
    execute(&ctx, TABLES).await;
    for sql in [
        // Other filters.
        "select part, sum(price) from lines where day < 3 group by part
         having sum(price) > (select avg(price) from lines where day < 4)",
        // A volatile function: each copy draws its own numbers.
        "with r as (select supp, sum(price * random()) as x from lines group by supp)
         select count(*) from r a, r b where a.x = b.x",
        // Different tables of the same shape.
        "select count(*) from (select supp, count(*) from lines group by supp) a,
                              (select id, count(*) from supp group by id) b",
    ] {
        let (plan, _) = run(&ctx, sql).await;
        assert_eq!(shared_nodes(&plan), vec![], "{sql}");
    }
}

#[tokio::test]
async fn same_rows_with_and_without_sharing() {
    let (reusing, plain) = (session(true), session(false));
    execute(&reusing, TABLES).await;
    execute(&plain, TABLES).await;
    for sql in [
        // A CTE joined with itself.
        "with t as (select supp, count(*) as n, sum(price) as p from lines group by supp)
         select a.supp, a.n, b.p from t a join t b on a.supp = b.supp order by a.supp",
        // Read by a union and by an outer join.
        "with t as (select part, max(price) as m from lines, supp where supp = id group by part)
         select part, m from t union all
         select t.part, s.m from t left join t s on t.part = s.part + 1 order by 1, 2",
        // A limit reads only part of one copy.
        "with t as (select supp, sum(price) as p from lines group by supp)
         select * from (select * from t order by p limit 1) x, (select count(*) as c from t) y",
        // A recursive query is left as it is.
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3)
         select count(*) from r a, r b",
    ] {
        let (_, rows) = run(&reusing, sql).await;
        let (_, expected) = run(&plain, sql).await;
        assert_eq!(rows, expected, "{sql}");
    }
}

fn numbers() -> (Arc<Schema>, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batches = (0..3)
        .map(|i| {
            let column = Int64Array::from_iter_values((0..100).map(|n| n + 100 * i));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).expect("batch")
        })
        .collect();
    (schema, batches)
}

/// Two copies of one part over the same batches.
fn copies(copies: usize) -> Vec<Arc<dyn ExecutionPlan>> {
    let (schema, batches) = numbers();
    let state = SharedState::new();
    state.set_copies(copies);
    (0..copies)
        .map(|_| {
            let input = MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&batches),
                schema.clone(),
                None,
            )
            .expect("memory exec");
            Arc::new(SharedExec::new(0, input, Some(state.clone()))) as Arc<dyn ExecutionPlan>
        })
        .collect()
}

async fn count_rows(plan: &Arc<dyn ExecutionPlan>, ctx: Arc<TaskContext>) -> usize {
    collect(plan.clone(), ctx)
        .await
        .expect("run")
        .iter()
        .map(RecordBatch::num_rows)
        .sum()
}

fn reused(plan: &Arc<dyn ExecutionPlan>) -> usize {
    shared_nodes(plan)[0].1
}

#[tokio::test]
async fn a_copy_dropped_early_leaves_the_partition_to_the_next() {
    let plans = copies(2);
    let ctx = Arc::new(TaskContext::default());
    let mut first = plans[0].execute(0, ctx.clone()).expect("execute");
    assert_eq!(
        first
            .next()
            .await
            .expect("a batch")
            .expect("rows")
            .num_rows(),
        100
    );
    drop(first);
    // The second copy runs the partition itself (and keeps it): all rows, none reused.
    assert_eq!(count_rows(&plans[1], ctx.clone()).await, 300);
    assert_eq!(reused(&plans[1]), 0);
    // The first copy, run again, reads what the second kept.
    assert_eq!(count_rows(&plans[0], ctx.clone()).await, 300);
    assert_eq!(reused(&plans[0]), 300);
    // Every copy has read it: the batches are let go, and a further run computes them.
    assert_eq!(count_rows(&plans[1], ctx).await, 300);
    assert_eq!(reused(&plans[1]), 0);
}

#[tokio::test]
async fn batches_beyond_the_memory_pool_are_not_kept() {
    let plans = copies(2);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(GreedyMemoryPool::new(1024)))
        .build_arc()
        .expect("runtime");
    let ctx = Arc::new(TaskContext::default().with_runtime(runtime));
    assert_eq!(count_rows(&plans[0], ctx.clone()).await, 300);
    assert_eq!(count_rows(&plans[1], ctx).await, 300);
    assert_eq!(reused(&plans[1]), 0);
}
