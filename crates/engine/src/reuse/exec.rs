//! The `Shared` plan node and `SharedExec`, its execution: each copy of a repeated part of a
//! plan runs as its own `SharedExec`; the first copy to run (the keeper) keeps the batches of
//! its partitions, and a copy that starts once every partition is kept reads them all instead
//! of computing them again.
//!
//! A copy takes all its partitions from one plan: the keeper's, or its own. The partitions of
//! one plan are not independent: a hash join that hashes one whole input (`CollectLeft`) emits
//! that input's unmatched rows (a left or anti join) from whichever of its partitions ends
//! last, so partitions taken from two plans can lose those rows or give them twice.
//!
//! No copy ever waits for another: a copy that starts while some partition is not kept yet
//! computes all of its partitions itself, as it would without sharing. So a plan cannot
//! deadlock whatever order its operators read their inputs in, and sharing only ever saves
//! work. The kept batches count against the query's memory pool and are given up past
//! [`KEPT_BYTES`] (the later copies then compute their rows themselves).

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, Result, Statistics};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
    displayable,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::{Stream, StreamExt, TryStreamExt};
use parking_lot::Mutex;

/// The most bytes of batches one shared part keeps for its later copies.
const KEPT_BYTES: usize = 256 << 20;

/// Where a partition of the keeper's stands.
enum Slot {
    /// Not run yet.
    Idle,
    /// Being run by the keeper.
    Running,
    /// Run to the end: its batches, the reservation holding their memory, and how many
    /// copies may still read them.
    Done {
        batches: Arc<[RecordBatch]>,
        readers_left: usize,
        /// Their bytes, counted in the state's `kept`.
        bytes: usize,
        _memory: MemoryReservation,
    },
    /// Too large to keep, failed, stopped early, or read by every copy.
    Unshared,
}

/// What one copy does with each of its partitions, decided when it first runs one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// The first copy to run: computes its partitions and keeps their batches.
    Keeper,
    /// Started when every partition was kept: reads them all.
    Reader,
    /// Started while some partition was not kept: computes them all.
    Own,
}

/// The partitions and the copies' roles.
#[derive(Default)]
struct Partitions {
    slots: Vec<Slot>,
    roles: HashMap<usize, Role>,
    /// How many copies compute their own rows: they will not read the kept batches.
    declined: usize,
}

impl Partitions {
    /// The slot of `partition`, with slots for the first `count` partitions at least.
    fn slot(&mut self, partition: usize, count: usize) -> &mut Slot {
        let size = count.max(partition + 1);
        if self.slots.len() < size {
            self.slots.resize_with(size, || Slot::Idle);
        }
        &mut self.slots[partition]
    }
}

/// What the copies of one shared part have in common.
pub(crate) struct SharedState {
    /// How many copies of the part the plan holds.
    copies: AtomicUsize,
    /// How the first copy to run is planned: a copy planned otherwise (the physical optimizer
    /// may treat copies differently) computes its rows itself.
    plan: OnceLock<String>,
    partitions: Mutex<Partitions>,
    kept: AtomicUsize,
}

impl SharedState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            copies: AtomicUsize::new(0),
            plan: OnceLock::new(),
            partitions: Mutex::new(Partitions::default()),
            kept: AtomicUsize::new(0),
        })
    }

    pub(crate) fn set_copies(&self, copies: usize) {
        self.copies.store(copies, Ordering::Relaxed);
    }

    fn with_slot<T>(&self, partition: usize, f: impl FnOnce(&mut Slot) -> T) -> T {
        f(self.partitions.lock().slot(partition, 0))
    }

    /// What `copy` (of `count` partitions) does with `partition`.
    fn then(&self, copy: usize, count: usize, partition: usize) -> Then {
        let mut guard = self.partitions.lock();
        let p = &mut *guard;
        p.slot(partition, count);
        let mut freed = 0;
        let role = match p.roles.get(&copy) {
            Some(role) => *role,
            None => {
                let role = if self.copies.load(Ordering::Relaxed) <= 1 {
                    Role::Own
                } else if !p.roles.values().any(|r| *r == Role::Keeper) {
                    Role::Keeper
                } else if p.slots[..count]
                    .iter()
                    .all(|s| matches!(s, Slot::Done { .. }))
                {
                    Role::Reader
                } else {
                    Role::Own
                };
                if role == Role::Own {
                    p.declined += 1;
                    for slot in &mut p.slots {
                        freed += read_once(slot);
                    }
                }
                p.roles.insert(copy, role);
                role
            }
        };
        let slot = &mut p.slots[partition];
        let then = match (role, &*slot) {
            (Role::Keeper, Slot::Idle) => {
                *slot = Slot::Running;
                Then::Keep
            }
            (Role::Reader, Slot::Done { batches, .. }) => {
                let batches = batches.clone();
                freed += read_once(slot);
                Then::Reuse(batches)
            }
            _ => Then::Compute,
        };
        self.kept.fetch_sub(freed, Ordering::Relaxed);
        then
    }

    /// The keeper has run `partition` to its end: its batches wait for the copies that will
    /// read them (counted under the same lock as the copies that decline).
    fn finish(
        &self,
        partition: usize,
        batches: Vec<RecordBatch>,
        bytes: usize,
        memory: MemoryReservation,
    ) {
        let mut p = self.partitions.lock();
        let readers = self
            .copies
            .load(Ordering::Relaxed)
            .saturating_sub(1 + p.declined);
        *p.slot(partition, 0) = match readers {
            0 => {
                self.kept.fetch_sub(bytes, Ordering::Relaxed);
                Slot::Unshared
            }
            _ => Slot::Done {
                batches: batches.into(),
                readers_left: readers,
                bytes,
                _memory: memory,
            },
        };
    }

    /// Count `bytes` more kept, if that stays within [`KEPT_BYTES`].
    fn keep(&self, bytes: usize) -> bool {
        self.kept
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |kept| {
                (kept + bytes <= KEPT_BYTES).then_some(kept + bytes)
            })
            .is_ok()
    }
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("copies", &self.copies.load(Ordering::Relaxed))
            .finish()
    }
}

/// A part of a logical plan that appears more than once, computed once.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) id: usize,
    pub(crate) input: LogicalPlan,
    pub(crate) state: Arc<SharedState>,
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.input == other.input
    }
}

impl Eq for Shared {}

impl Hash for Shared {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for Shared {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.id.partial_cmp(&other.id)
    }
}

impl UserDefinedLogicalNodeCore for Shared {
    fn name(&self) -> &str {
        "Shared"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Shared: id={}", self.id)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        Ok(Self {
            id: self.id,
            input: inputs.swap_remove(0),
            state: self.state.clone(),
        })
    }
}

/// Plans [`Shared`] nodes as [`SharedExec`].
#[derive(Debug)]
pub(crate) struct SharedPlanner;

#[async_trait]
impl ExtensionPlanner for SharedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(shared) = node.as_any().downcast_ref::<Shared>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SharedExec::new(
            shared.id,
            input.clone(),
            Some(shared.state.clone()),
        ))))
    }
}

/// Numbers each [`SharedExec`] made, to tell the copies of one part apart.
static COPIES_MADE: AtomicUsize = AtomicUsize::new(0);

/// One copy of a shared part: its own plan, and the state every copy shares.
#[derive(Debug)]
pub struct SharedExec {
    id: usize,
    /// Which copy this is.
    copy: usize,
    input: Arc<dyn ExecutionPlan>,
    /// `None` once the plan was reset to run again: it then computes its rows itself.
    state: Option<Arc<SharedState>>,
    /// How this copy is planned, noted when it first runs.
    plan: OnceLock<String>,
    metrics: ExecutionPlanMetricsSet,
}

impl SharedExec {
    pub(crate) fn new(
        id: usize,
        input: Arc<dyn ExecutionPlan>,
        state: Option<Arc<SharedState>>,
    ) -> Self {
        Self {
            id,
            copy: COPIES_MADE.fetch_add(1, Ordering::Relaxed),
            input,
            state,
            plan: OnceLock::new(),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The state of the copies planned as this one, if sharing applies.
    fn sharing(&self) -> Option<&Arc<SharedState>> {
        let state = self.state.as_ref()?;
        let plan = self
            .plan
            .get_or_init(|| displayable(self.input.as_ref()).indent(true).to_string());
        (state.plan.get_or_init(|| plan.clone()) == plan).then_some(state)
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "SharedExec: id={}", self.id)
            }
            DisplayFormatType::TreeRender => write!(f, "id={}", self.id),
        }
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &'static str {
        "SharedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            self.id,
            children.swap_remove(0),
            self.state.clone(),
        )))
    }

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        // Run again (as a recursive query's step is), the kept batches would be stale.
        Ok(Arc::new(Self::new(self.id, self.input.clone(), None)))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(Statistics::new_unknown(&self.schema()))))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(state) = self.sharing().cloned() else {
            return self.input.execute(partition, context);
        };
        let input = self.input.clone();
        let schema = self.schema();
        let reused = MetricBuilder::new(&self.metrics).counter("reused_rows", partition);
        // What to do is decided when the rows are first asked for, not now: by then the
        // copies read earlier may have finished.
        let copy = self.copy;
        let opened =
            futures::stream::once(
                async move { open(state, copy, partition, input, context, reused) },
            );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            opened.try_flatten(),
        )))
    }
}

/// What a copy does with a partition.
enum Then {
    Reuse(Arc<[RecordBatch]>),
    Keep,
    Compute,
}

/// One copy fewer to read a kept partition; its batches go after the last (their bytes are
/// returned, to be counted off).
fn read_once(slot: &mut Slot) -> usize {
    let Slot::Done {
        readers_left,
        bytes,
        ..
    } = slot
    else {
        return 0;
    };
    *readers_left = readers_left.saturating_sub(1);
    if *readers_left > 0 {
        return 0;
    }
    let bytes = *bytes;
    *slot = Slot::Unshared;
    bytes
}

/// The rows of `partition` for one copy: kept ones, or computed (and kept by the keeper).
fn open(
    state: Arc<SharedState>,
    copy: usize,
    partition: usize,
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    reused: Count,
) -> Result<SendableRecordBatchStream> {
    let count = input.properties().output_partitioning().partition_count();
    let then = state.then(copy, count, partition);
    match then {
        Then::Reuse(batches) => {
            let schema = input.schema();
            let rows = batches.iter().map(RecordBatch::num_rows).sum();
            reused.add(rows);
            let batches: Vec<_> = batches.iter().cloned().map(Ok).collect();
            Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::iter(batches),
            )))
        }
        Then::Compute => input.execute(partition, context),
        Then::Keep => {
            let memory = MemoryConsumer::new(format!("SharedExec[{partition}]"))
                .register(context.memory_pool());
            let inner = match input.execute(partition, context) {
                Ok(inner) => inner,
                Err(e) => {
                    state.with_slot(partition, |slot| *slot = Slot::Unshared);
                    return Err(e);
                }
            };
            Ok(Box::pin(Keeping {
                inner,
                state,
                partition,
                kept: Some(Vec::new()),
                bytes: 0,
                memory: Some(memory),
                finished: false,
            }))
        }
    }
}

/// The rows of the first copy to run a partition, kept as they pass.
struct Keeping {
    inner: SendableRecordBatchStream,
    state: Arc<SharedState>,
    partition: usize,
    /// `None` once given up.
    kept: Option<Vec<RecordBatch>>,
    /// The bytes of `kept`, counted in the state's total.
    bytes: usize,
    memory: Option<MemoryReservation>,
    finished: bool,
}

impl Keeping {
    /// Stop keeping; the partition's slot becomes `then`.
    fn give_up(&mut self, then: Slot) {
        self.kept = None;
        self.memory = None;
        self.state.kept.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        self.state.with_slot(self.partition, |slot| *slot = then);
    }
}

impl Stream for Keeping {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                if let Some(kept) = this.kept.as_mut() {
                    let bytes = batch.get_array_memory_size();
                    let counted = this.state.keep(bytes);
                    let reserved = counted
                        && this
                            .memory
                            .as_mut()
                            .is_some_and(|m| m.try_grow(bytes).is_ok());
                    if reserved {
                        kept.push(batch.clone());
                        this.bytes += bytes;
                    } else {
                        if counted {
                            this.state.kept.fetch_sub(bytes, Ordering::Relaxed);
                        }
                        this.give_up(Slot::Unshared);
                    }
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.give_up(Slot::Unshared);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finished = true;
                if let (Some(kept), Some(memory)) = (this.kept.take(), this.memory.take()) {
                    let bytes = std::mem::take(&mut this.bytes);
                    this.state.finish(this.partition, kept, bytes, memory);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl RecordBatchStream for Keeping {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        // Dropped before its end (a limit above it had enough): the other copies compute
        // their own rows.
        if !self.finished && self.kept.is_some() {
            self.give_up(Slot::Unshared);
        }
    }
}
