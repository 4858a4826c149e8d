//! A query's Ballista job, cancelled on the cluster when its rows are given up while it runs:
//! a run interrupted (Ctrl-C, SIGTERM), a `show` interrupted, a `strata serve` query past its
//! statement timeout. Ballista's own operator leaves such a job running to its end, holding
//! the executors' task slots.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::Stream;

/// How long dropping an unfinished job's rows waits for the scheduler to take the cancel.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Ballista's `DistributedQueryExec`, whose job is cancelled when its rows are dropped
/// unfinished. A leaf: the job it wraps is not a child optimizers may rewrite.
#[derive(Debug)]
pub(crate) struct ClusterJobExec {
    job: Arc<DistributedQueryExec<LogicalPlanNode>>,
    /// `http://host:port` of the scheduler.
    scheduler: String,
}

impl ClusterJobExec {
    pub(crate) fn new(job: DistributedQueryExec<LogicalPlanNode>, scheduler: String) -> Self {
        Self {
            job: Arc::new(job),
            scheduler,
        }
    }
}

impl DisplayAs for ClusterJobExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.job.fmt_as(t, f)
    }
}

impl ExecutionPlan for ClusterJobExec {
    fn name(&self) -> &str {
        "ClusterJobExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.job.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.job.metrics()
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let rows = self.job.execute(partition, context)?;
        Ok(Box::pin(JobRows {
            rows,
            job: self.job.clone(),
            scheduler: self.scheduler.clone(),
            over: false,
        }))
    }
}

/// The rows of a job; dropped while the job runs, they cancel it.
struct JobRows {
    rows: SendableRecordBatchStream,
    job: Arc<DistributedQueryExec<LogicalPlanNode>>,
    scheduler: String,
    /// The job is over: Ballista sends a job's rows only once it has succeeded, so from the
    /// first batch (or the end, or an error) on there is nothing left to cancel.
    over: bool,
}

impl Stream for JobRows {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.rows.as_mut().poll_next(cx);
        if next.is_ready() {
            self.over = true;
        }
        next
    }
}

impl RecordBatchStream for JobRows {
    fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }
}

impl Drop for JobRows {
    fn drop(&mut self) {
        if self.over {
            return;
        }
        // No id yet: the scheduler has not accepted the job, and drops it with the client's
        // connection.
        let Some(job_id) = self.job.job_id() else {
            return;
        };
        let job_id = String::from(job_id);
        let scheduler = self.scheduler.clone();
        // The drop may happen on a thread of the caller's runtime, which must not wait on
        // itself: the cancel goes from a thread of its own, and the drop waits for it (a round
        // trip on the scheduler's connection), so it has reached the scheduler when a process
        // ends right after.
        let sent = std::thread::Builder::new()
            .name("cluster-cancel".into())
            .spawn(move || cancel(&scheduler, &job_id));
        if let Ok(thread) = sent {
            let _ = thread.join();
        }
    }
}

/// Ask the scheduler to cancel `job_id`; a failure is logged, not returned (the rows were
/// already given up).
fn cancel(scheduler: &str, job_id: &str) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot cancel cluster job {job_id}: {e}");
            return;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::time::timeout(CANCEL_TIMEOUT, async {
            let mut client = SchedulerGrpcClient::connect(scheduler.to_string())
                .await
                .map_err(|e| e.to_string())?;
            client
                .cancel_job(CancelJobParams {
                    job_id: job_id.to_string(),
                })
                .await
                .map_err(|e| e.to_string())
        })
        .await
    });
    match outcome {
        Ok(Ok(answer)) if answer.get_ref().cancelled => {
            tracing::info!("cancelled cluster job {job_id}: its rows were not read to the end");
        }
        // It had ended already.
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("cannot cancel cluster job {job_id}: {e}"),
        Err(_) => tracing::warn!(
            "cannot cancel cluster job {job_id}: the scheduler did not answer within {} s",
            CANCEL_TIMEOUT.as_secs()
        ),
    }
}
