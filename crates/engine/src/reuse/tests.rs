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

/// A left join whose build side is hashed whole, read by two copies that run at once (a unit
/// test's comparison of a model's rows with the expected ones): the unmatched row (supplier 4)
/// comes out of each copy exactly once, however the copies' partitions interleave.
#[tokio::test]
async fn copies_running_at_once_give_every_row_once() {
    let (reusing, plain) = (session(true), session(false));
    execute(&reusing, TABLES).await;
    execute(&plain, TABLES).await;
    let sql = "with t as (select supp.id, s.n from supp left join
               (select supp as id, count(*) as n from lines group by supp) s on s.id = supp.id + 1),
          e as (select id, n from t where id < 0)
     select 'missing' as d, * from (select * from e except all select * from t) a
     union all
     select 'extra', * from (select * from t except all select * from e) b order by 1, 2";
    let (plan, expected) = run(&plain, sql).await;
    assert!(expected.contains("| extra | 4  |"), "{expected}");
    let (plan_shared, _) = run(&reusing, sql).await;
    assert!(!shared_nodes(&plan_shared).is_empty(), "{plan:?}");
    for _ in 0..30 {
        let (_, rows) = run(&reusing, sql).await;
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

/// Copies of one part over the same batches: 300 rows in each of `partitions` partitions.
fn copies(copies: usize, partitions: usize) -> Vec<Arc<dyn ExecutionPlan>> {
    let (schema, batches) = numbers();
    let state = SharedState::new();
    state.set_copies(copies);
    (0..copies)
        .map(|_| {
            let input = MemorySourceConfig::try_new_exec(
                &vec![batches.clone(); partitions],
                schema.clone(),
                None,
            )
            .expect("memory exec");
            Arc::new(SharedExec::new(0, input, Some(state.clone()))) as Arc<dyn ExecutionPlan>
        })
        .collect()
}

/// The rows of one partition of a plan.
async fn partition_rows(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> usize {
    let mut stream = plan
        .execute(partition, Arc::new(TaskContext::default()))
        .expect("execute");
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.expect("rows").num_rows();
    }
    rows
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
async fn a_copy_dropped_early_leaves_the_others_computing() {
    let plans = copies(2, 1);
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
    // Nothing kept: the second copy computes its rows.
    assert_eq!(count_rows(&plans[1], ctx.clone()).await, 300);
    assert_eq!(reused(&plans[1]), 0);
    assert_eq!(count_rows(&plans[0], ctx).await, 300);
    assert_eq!(reused(&plans[0]), 0);
}

/// Partitions of one plan are not independent (a `CollectLeft` left join emits its unmatched
/// rows from the partition that ends last): a copy takes all of them from one plan.
#[tokio::test]
async fn a_copy_reads_every_partition_kept_or_computes_them_all() {
    let plans = copies(3, 2);
    // The keeper has run one partition of two.
    assert_eq!(partition_rows(&plans[0], 0).await, 300);
    // A copy starting now finds the other partition not kept: it computes both, even the
    // one that is kept.
    assert_eq!(partition_rows(&plans[1], 0).await, 300);
    assert_eq!(partition_rows(&plans[1], 1).await, 300);
    assert_eq!(reused(&plans[1]), 0);
    // Once both are kept, a copy starting then reads both.
    assert_eq!(partition_rows(&plans[0], 1).await, 300);
    assert_eq!(partition_rows(&plans[2], 1).await, 300);
    assert_eq!(partition_rows(&plans[2], 0).await, 300);
    assert_eq!(reused(&plans[2]), 600);
}

#[tokio::test]
async fn batches_beyond_the_memory_pool_are_not_kept() {
    let plans = copies(2, 1);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(GreedyMemoryPool::new(1024)))
        .build_arc()
        .expect("runtime");
    let ctx = Arc::new(TaskContext::default().with_runtime(runtime));
    assert_eq!(count_rows(&plans[0], ctx.clone()).await, 300);
    assert_eq!(count_rows(&plans[1], ctx).await, 300);
    assert_eq!(reused(&plans[1]), 0);
}
