//! The client side: queries planned here, run on the cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::DistributedQueryExec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::{AsLogicalPlan, LogicalExtensionCodec};
use datafusion_proto::protobuf::LogicalPlanNode;
use strata_engine::{Distributor, Error, LakeFiles, Result, STAGED_CATALOG};

use crate::codec::LogicalCodec;

/// A Ballista scheduler that queries run on.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `df://host:port`, as the target names it.
    display: String,
    /// `http://host:port`, as Ballista's client connects.
    url: String,
    session_id: String,
    codec: Arc<dyn LogicalExtensionCodec>,
}

impl Cluster {
    /// The cluster of `scheduler` (`df://host:port`). Checks that something listens there,
    /// so a target whose scheduler is down fails at once, saying so.
    pub fn connect(scheduler: &str) -> Result<Self> {
        let address = scheduler.strip_prefix("df://").ok_or_else(|| {
            Error::user(format!(
                "the scheduler `{scheduler}` is not a df://host:port url"
            ))
        })?;
        let reachable = std::net::ToSocketAddrs::to_socket_addrs(address)
            .ok()
            .into_iter()
            .flatten()
            .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
        if !reachable {
            return Err(Error::user(format!(
                "no Ballista scheduler answers at {scheduler}"
            ))
            .with_hint(format!(
                "start one with `strata cluster scheduler --port {}` and executors with `strata cluster executor --scheduler {scheduler}`",
                address.rsplit_once(':').map_or("50050", |(_, p)| p)
            )));
        }
        Ok(Self {
            display: scheduler.to_string(),
            url: format!("http://{address}"),
            session_id: format!("strata-{}", uuid::Uuid::new_v4().simple()),
            codec: Arc::new(LogicalCodec::default()),
        })
    }

    /// The scheduler, as the target names it.
    pub fn scheduler(&self) -> &str {
        &self.display
    }
}

impl Distributor for Cluster {
    fn configure(&self, config: &mut SessionConfig) {
        cluster_settings(config);
    }

    fn distribute(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if !runs_there(&plan) {
            return Ok(plan);
        }
        // What cannot be sent runs here, said once in the log.
        if let Err(e) = LogicalPlanNode::try_from_logical_plan(&plan, self.codec.as_ref()) {
            tracing::info!("a query runs in this process, not on {}: {e}", self.display);
            return Ok(plan);
        }
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let remote = RemoteQuery {
            cluster: self.clone(),
            plan,
            schema,
        };
        Ok(
            LogicalPlanBuilder::scan("cluster", provider_as_source(Arc::new(remote)), None)?
                .build()?,
        )
    }
}

/// Whether every table `plan` reads is files executors read themselves: the lake's tables,
/// and external sources' files (which must then be at a path or URL every executor reaches).
/// Anything else (rows this process holds for a write, the catalog's own tables) is read
/// here, so such a query runs here.
fn runs_there(plan: &LogicalPlan) -> bool {
    let mut files_only = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let staged = scan.table_name.catalog() == Some(STAGED_CATALOG);
            let files = source_as_provider(&scan.source).is_ok_and(|p| {
                let any: &dyn std::any::Any = p.as_ref();
                any.is::<LakeFiles>() || any.is::<ListingTable>()
            });
            if staged || !files {
                files_only = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    files_only
}

/// The settings a query needs to run on Ballista 55, which does not yet follow some of
/// DataFusion 55's physical features:
/// - dynamic filters (a join's build side pruning its probe side's scan while it runs): the
///   scheduler re-plans joins between stages, which DataFusion refuses once a join's dynamic
///   filter exists, and the task's completion is then lost;
/// - uncorrelated scalar subqueries run as their own operator (`ScalarSubqueryExec`), whose
///   expressions executors cannot decode apart from it: they are planned as joins instead,
///   as DataFusion did before.
///
/// The settings travel with each query, so the client's session carries them as well as the
/// scheduler's.
pub(crate) fn cluster_settings(config: &mut SessionConfig) {
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.enable_topk_dynamic_filter_pushdown = false;
    optimizer.enable_aggregate_dynamic_filter_pushdown = false;
    optimizer.enable_physical_uncorrelated_scalar_subquery = false;
    // Joins hash both sides: a join that collects its build side into each task (DataFusion's
    // `CollectLeft`) finds the build rows no probe row matched per task, not per join, so
    // outer and anti joins could lose or repeat rows when tasks run on several executors.
    optimizer.hash_join_single_partition_threshold = 0;
    optimizer.hash_join_single_partition_threshold_rows = 0;
}

/// The rows of a query computed on the cluster: scanning it submits the query as one
/// Ballista job and streams its result.
#[derive(Debug)]
struct RemoteQuery {
    cluster: Cluster,
    plan: LogicalPlan,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for RemoteQuery {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let job: Arc<dyn ExecutionPlan> =
            Arc::new(DistributedQueryExec::<LogicalPlanNode>::with_extension(
                self.cluster.url.clone(),
                BallistaConfig::default(),
                self.plan.clone(),
                self.cluster.codec.clone(),
                self.cluster.session_id.clone(),
            ));
        let Some(columns) = projection else {
            return Ok(job);
        };
        let exprs = columns
            .iter()
            .map(|&i| {
                let field = self.schema.field(i);
                let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), i));
                (column, field.name().clone())
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, job)?))
    }
}
