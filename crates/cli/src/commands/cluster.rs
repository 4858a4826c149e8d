//! `strata cluster`: the processes of a Ballista cluster, from this binary.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use strata_cluster::{ExecutorOptions, SchedulerOptions};

use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run a Ballista scheduler: clients (targets with `engine: ballista` and
    /// `scheduler: df://HOST:PORT`) send it queries, and it splits them into tasks for its
    /// executors. Runs until stopped (Ctrl-C).
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor: it registers with the scheduler, reads the lake's files, runs
    /// tasks and serves their results. Give it the same object-store settings (AWS_*) as the
    /// clients. Runs until stopped.
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The address to listen on (0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// The port clients and executors connect to.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// The host name others reach this scheduler by.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is taken for dead: its tasks run
    /// again on the others (a job fails when none is left). Longer than the executors'
    /// `--heartbeat-interval`.
    #[arg(long, default_value_t = 30)]
    pub executor_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to join: df://HOST:PORT.
    #[arg(long, default_value = "df://localhost:50050")]
    pub scheduler: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// The host name others reach this executor by (default: the bind address).
    #[arg(long)]
    pub external_host: Option<String>,
    /// The port task results are fetched from (Arrow Flight).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// The port the scheduler hands tasks out on.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Where intermediate results (shuffles, spills) are kept (default: a temporary folder).
    #[arg(long)]
    pub work_dir: Option<String>,
    /// Seconds between the heartbeats that tell the scheduler this executor is alive.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_interval: u64,
}

pub async fn cluster(_global: &GlobalArgs, command: &ClusterCommand) -> Result<ExitCode> {
    match command {
        ClusterCommand::Scheduler(args) => {
            eprintln!(
                "Ballista scheduler listening on {}:{} (df://{}:{})",
                args.bind, args.port, args.external_host, args.port
            );
            strata_cluster::run_scheduler(SchedulerOptions {
                bind_host: args.bind.clone(),
                external_host: args.external_host.clone(),
                port: args.port,
                executor_timeout_seconds: args.executor_timeout.max(1),
            })
            .await?;
        }
        ClusterCommand::Executor(args) => {
            let Some((host, port)) = args
                .scheduler
                .strip_prefix("df://")
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            else {
                bail!(
                    "--scheduler {}: expected df://HOST:PORT, e.g. df://localhost:50050",
                    args.scheduler
                );
            };
            eprintln!(
                "Ballista executor on {}:{} joining {}",
                args.bind, args.port, args.scheduler
            );
            strata_cluster::run_executor(ExecutorOptions {
                scheduler_host: host,
                scheduler_port: port,
                bind_host: args.bind.clone(),
                external_host: args.external_host.clone(),
                port: args.port,
                grpc_port: args.grpc_port,
                concurrent_tasks: args.concurrent_tasks,
                work_dir: args.work_dir.clone(),
                heartbeat_interval_seconds: args.heartbeat_interval.max(1),
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
