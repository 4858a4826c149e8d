//! A cluster's processes, started from Strata's binary: Ballista's scheduler and executor
//! with Strata's session (SQL semantics, functions), codecs and object stores.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use strata_engine::{Error, Result};

use crate::codec::{LogicalCodec, PhysicalCodec};
use crate::stores::StoreRegistry;

/// Where a scheduler listens.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The address to bind (`0.0.0.0` for every interface).
    pub bind_host: String,
    /// The host executors and clients reach it by.
    pub external_host: String,
    /// The gRPC port clients and executors connect to.
    pub port: u16,
    /// Seconds without a heartbeat after which an executor is dead and its tasks run again
    /// elsewhere.
    pub executor_timeout_seconds: u64,
}

/// How an executor joins a cluster.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// The address to bind.
    pub bind_host: String,
    /// The host other executors and clients fetch results from.
    pub external_host: Option<String>,
    /// The Arrow Flight port results are fetched from.
    pub port: u16,
    /// The gRPC port the scheduler gives tasks on.
    pub grpc_port: u16,
    /// Tasks run at once (0: one per core).
    pub concurrent_tasks: usize,
    /// Where intermediate results are kept (default: a temporary folder).
    pub work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_interval_seconds: u64,
}

fn runtime(temp_dir: Option<&str>) -> datafusion::common::Result<Arc<RuntimeEnv>> {
    let mut builder =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(StoreRegistry::default()));
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(Arc::new(builder.build()?))
}

/// Strata's session as a cluster process plans with it.
fn session_state(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let mut builder = strata_engine::session_builder(config).with_runtime_env(runtime(None)?);
    if let Some(rules) = builder.optimizer_rules() {
        *rules = ballista_core::optimizer::with_ballista_optimizer_rules(rules);
    }
    builder = builder.with_physical_optimizer_rule(Arc::new(crate::leaves::MemoryLeaves));
    let mut state = builder.build();
    for f in strata_engine::functions::all(|name| state.scalar_functions().get(name).cloned()) {
        datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(f))?;
    }
    Ok(state)
}

fn functions() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    let ours = strata_engine::functions::all(|name| registry.scalar_functions.get(name).cloned());
    for f in ours {
        registry
            .scalar_functions
            .insert(f.name().to_string(), Arc::new(f));
    }
    registry
}

/// The session settings of every process of a cluster. Ballista's adaptive planner (on by
/// default in 55) is turned off: it stalls on plans mixing `union all` and `except all`
/// (unit tests' comparisons), where the static planner runs them.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista().with_ballista_adaptive_query_planner(false);
    crate::client::cluster_settings(&mut config);
    config
}

fn ballista_error(what: &str) -> impl Fn(ballista_core::error::BallistaError) -> Error + '_ {
    move |e| Error::user(format!("{what}: {e}"))
}

/// Run a scheduler until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<()> {
    let address: SocketAddr = format!("{}:{}", options.bind_host, options.port)
        .parse()
        .map_err(|e| Error::user(format!("cannot listen on {}: {e}", options.bind_host)))?;
    let mut config = SchedulerConfig {
        bind_host: options.bind_host.clone(),
        bind_port: options.port,
        external_host: options.external_host.clone(),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        executor_timeout_seconds: options.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: options.executor_timeout_seconds.div_ceil(4),
        no_executors_grace_period_seconds: options.executor_timeout_seconds,
        ..SchedulerConfig::default()
    };
    config = config
        .with_override_config_producer(Arc::new(session_config))
        .with_override_session_builder(Arc::new(session_state));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_error("cannot start the scheduler"))?;
    start_server(cluster, address, Arc::new(config))
        .await
        .map_err(ballista_error("the scheduler stopped"))
}

/// Run an executor until the process is stopped (or its scheduler is gone for good).
pub async fn run_executor(options: ExecutorOptions) -> Result<()> {
    let work_dir = options.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: options.external_host.clone(),
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        executor_heartbeat_interval_seconds: options.heartbeat_interval_seconds,
        vcores: options.concurrent_tasks,
        work_dir: work_dir.clone(),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(functions())),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| {
            runtime(work_dir.as_deref())
        })),
        override_config_producer: Some(Arc::new(session_config)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(ballista_error("the executor stopped"))
}
