//! Run selected models along the DAG: compile each just before it runs, build it on the
//! warehouse, in parallel up to `threads`, skipping the descendants of a failure.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::TryStreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use strata_meta::{MetaStore, NodeResultRecord, RunRecord};
use strata_project::compile::{Compiler, ModelHooks};
use strata_project::data_tests::DataTest;
use strata_project::{Node, Project, Relation};

use crate::microbatch::MicrobatchConfig;
use crate::{Batch, Materialization, MaterializeRequest, SeedRequest, StatementContext, Warehouse};

/// What happened to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Built.
    Success,
    /// Failed to compile or build (or a test's query failed to run).
    Error,
    /// Not run because a parent failed (or the run stopped early).
    Skipped,
    /// A test found no failing rows.
    Pass,
    /// A test found failing rows (severity error).
    Fail,
    /// A test found failing rows (severity warn, or `warn_if` met).
    Warn,
}

impl NodeStatus {
    /// The word dbt writes in run results.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Success => "success",
            NodeStatus::Error => "error",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Pass => "pass",
            NodeStatus::Fail => "fail",
            NodeStatus::Warn => "warn",
        }
    }

    /// Whether the run should count this node as failed (its descendants are skipped).
    pub fn is_failure(self) -> bool {
        matches!(self, NodeStatus::Error | NodeStatus::Fail)
    }
}

/// The result of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// The node.
    pub unique_id: String,
    /// Its name.
    pub name: String,
    /// `model`, `seed` or `test`.
    pub resource_type: String,
    /// `schema.identifier`, as printed.
    pub relation_name: String,
    /// The full quoted relation.
    pub relation: String,
    /// `table`, `view`, ...
    pub materialized: String,
    /// What happened.
    pub status: NodeStatus,
    /// A short status (`SELECT 5`, `CREATE VIEW`) or the error.
    pub message: String,
    /// Seconds it took.
    pub seconds: f64,
    /// Rows written, for tables.
    pub rows_affected: Option<u64>,
    /// Failing rows, for tests.
    pub failures: Option<u64>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub completed_at: String,
    /// The compiled SQL, when it compiled.
    pub compiled_sql: Option<String>,
    /// For failures and skips: the model file, for the summary.
    pub file: String,
}

/// Events a run reports as it goes.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The run starts with this many nodes.
    Started {
        /// Nodes to run.
        total: usize,
    },
    /// A node starts.
    NodeStarted {
        /// 1-based position in the run.
        index: usize,
        /// Nodes in the run.
        total: usize,
        /// Its unique id.
        unique_id: &'a str,
    },
    /// A batch of a microbatch model finished.
    Batch(BatchEvent<'a>),
    /// An `on-run-start` or `on-run-end` hook finished.
    Hook(HookEvent<'a>),
    /// A node finished (or was skipped).
    NodeFinished {
        /// 1-based position in the run.
        index: usize,
        /// Nodes in the run.
        total: usize,
        /// What happened.
        result: &'a NodeResult,
    },
}

/// One batch of a microbatch model finished (part of a node's work).
#[derive(Debug)]
pub struct BatchEvent<'a> {
    /// The model.
    pub unique_id: &'a str,
    /// Its relation, as printed.
    pub relation_name: &'a str,
    /// 1-based position among the model's batches.
    pub index: usize,
    /// Batches of the model in this run.
    pub total: usize,
    /// The batch's id (`20240101`).
    pub batch_id: &'a str,
    /// Whether it was written.
    pub ok: bool,
    /// Its status (`SELECT 12`) or error.
    pub message: &'a str,
    /// Seconds it took (retry included).
    pub seconds: f64,
}

/// A run hook finished.
#[derive(Debug)]
pub struct HookEvent<'a> {
    /// `on-run-start` or `on-run-end`.
    pub phase: &'a str,
    /// Its name (`shop-on-run-start-0`).
    pub name: &'a str,
    /// 1-based position among the phase's hooks.
    pub index: usize,
    /// Hooks of the phase.
    pub total: usize,
    /// Whether it ran without error.
    pub ok: bool,
    /// Its status (`INSERT 3`) or error.
    pub message: &'a str,
    /// Seconds it took.
    pub seconds: f64,
}

/// Receives [`RunEvent`]s (status lines, progress bars, JSON logs).
pub trait Reporter: Send + Sync {
    /// Handle one event.
    fn report(&self, event: RunEvent<'_>);
}

/// A reporter that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: RunEvent<'_>) {}
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    /// The run's id.
    pub run_id: String,
    /// One entry per node, in completion order.
    pub results: Vec<NodeResult>,
    /// Seconds the run took.
    pub elapsed: f64,
    /// Whether an `on-run-start` or `on-run-end` hook failed.
    pub hooks_failed: bool,
}

impl RunResults {
    /// Whether nothing failed (warnings do not count).
    pub fn success(&self) -> bool {
        !self.hooks_failed
            && self
                .results
                .iter()
                .all(|r| !r.status.is_failure() && r.status != NodeStatus::Skipped)
    }

    /// How many nodes ended with `status`.
    pub fn count(&self, status: NodeStatus) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }
}

/// Runs models of a project on a warehouse.
pub struct Runner<'a> {
    project: &'a Project,
    warehouse: &'a dyn Warehouse,
    meta: Option<Arc<MetaStore>>,
    threads: usize,
    fail_fast: bool,
    command: String,
    args: String,
    defer: Option<strata_project::compile::Defer>,
    full_refresh: bool,
    event_time: (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>),
}

impl<'a> Runner<'a> {
    /// A runner for `project` on `warehouse`.
    pub fn new(project: &'a Project, warehouse: &'a dyn Warehouse) -> Self {
        Self {
            project,
            warehouse,
            meta: None,
            threads: project.target.threads,
            fail_fast: false,
            command: "run".into(),
            args: String::new(),
            defer: None,
            full_refresh: false,
            event_time: (None, None),
        }
    }

    /// Build microbatch models over this period only (`--event-time-start`,
    /// `--event-time-end`), without a full refresh.
    pub fn with_event_time(
        mut self,
        start: Option<chrono::NaiveDateTime>,
        end: Option<chrono::NaiveDateTime>,
    ) -> Self {
        self.event_time = (start, end);
        self
    }

    /// Rebuild incremental models in full (`--full-refresh`).
    pub fn with_full_refresh(mut self, yes: bool) -> Self {
        self.full_refresh = yes;
        self
    }

    /// Resolve refs to unbuilt, unselected models to an earlier run's relations (`--defer`).
    pub fn with_defer(mut self, defer: Option<strata_project::compile::Defer>) -> Self {
        self.defer = defer;
        self
    }

    /// Record the run and each node in a metadata store.
    pub fn with_meta(mut self, meta: Arc<MetaStore>) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Build at most `n` nodes at once.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Stop scheduling after the first failure.
    pub fn with_fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }

    /// The command and its arguments, as recorded.
    pub fn with_command(mut self, command: &str, args: &str) -> Self {
        self.command = command.to_string();
        self.args = args.to_string();
        self
    }

    /// The nodes of `selected` of the given resource types (`model`, `seed`) that the
    /// warehouse builds, in dependency order (ephemeral models are inlined, not built).
    pub fn runnable(project: &Project, selected: &BTreeSet<String>, types: &[&str]) -> Vec<String> {
        let order = project.graph.topological_order().unwrap_or_default();
        order
            .into_iter()
            .filter(|id| selected.contains(*id))
            .filter(|id| match project.node(id) {
                Some(n) => types.contains(&n.resource_type()) && n.materialized() != "ephemeral",
                None => types.contains(&"test") && project.tests.contains_key(*id),
            })
            .map(str::to_string)
            .collect()
    }

    /// Run the nodes in `nodes` (topologically ordered unique ids).
    pub async fn run(
        &self,
        nodes: &[String],
        reporter: &dyn Reporter,
    ) -> crate::Result<RunResults> {
        let started = Instant::now();
        let run_id = self.project.invocation_id.clone();
        if let Some(meta) = &self.meta {
            meta.start_run(&RunRecord {
                run_id: run_id.clone(),
                command: self.command.clone(),
                target: self.project.target.name.clone(),
                started_at: rfc3339(chrono::Utc::now()),
                finished_at: None,
                status: "running".into(),
                args: self.args.clone(),
            })?;
        }
        let total = nodes.len();
        let mut compiler = Compiler::new(self.project)
            .with_introspector(self.warehouse.introspector())
            .with_defer(self.defer.clone());
        let run_context = self.run_context(nodes, &[]);
        let start_failed = self
            .run_hooks(
                "on-run-start",
                &mut compiler,
                &run_id,
                &run_context,
                reporter,
            )
            .await;
        reporter.report(RunEvent::Started { total });

        let in_run: HashSet<&str> = nodes.iter().map(String::as_str).collect();
        let deps = self.dependencies(nodes, &in_run);
        let mut waiting: HashMap<&str, usize> = nodes
            .iter()
            .map(|n| (n.as_str(), deps[n.as_str()].len()))
            .collect();
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (node, parents) in &deps {
            for p in parents {
                dependents.entry(p).or_default().push(node);
            }
        }
        let position: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i + 1))
            .collect();
        // Ready nodes start in project order, so runs are repeatable.
        let mut ready: BTreeSet<(usize, &str)> = nodes
            .iter()
            .map(String::as_str)
            .filter(|n| waiting[n] == 0)
            .map(|n| (position[n], n))
            .collect();
        let mut done: HashSet<&str> = HashSet::new();
        let mut started_nodes: HashSet<&str> = HashSet::new();
        let mut results: Vec<NodeResult> = Vec::with_capacity(total);
        let audit_schema = format!("{}_dbt_test__audit", self.project.target.schema);
        // Snapshots record changes as of the run's start.
        let now = self
            .project
            .run_started_at
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string();
        let mut running = FuturesUnordered::new();
        // A failed on-run-start hook runs nothing (every node is reported skipped).
        let mut stop = start_failed;

        loop {
            while !stop && running.len() < self.threads {
                let Some((_, id)) = ready.pop_first() else {
                    break;
                };
                let index = position[id];
                reporter.report(RunEvent::NodeStarted {
                    index,
                    total,
                    unique_id: id,
                });
                // A node skipped while it waited is not started.
                if done.contains(id) {
                    continue;
                }
                let Some(subject) = Subject::of(self.project, id) else {
                    continue;
                };
                started_nodes.insert(id);
                let started_at = chrono::Utc::now();
                let clock = Instant::now();
                // Models and tests compile here, just before they run, so compile errors are
                // node errors.
                let hooks = match subject {
                    Subject::Node(Node::Model(_)) => Some(compiler.compile_hooks(id)),
                    _ => None,
                };
                let work = match subject {
                    Subject::Node(Node::Model(model)) if is_microbatch(model) => {
                        self.microbatch_work(model, &mut compiler)
                    }
                    Subject::Node(Node::Model(model)) => Work::Model(model, compiler.compile(id)),
                    Subject::Node(Node::Seed(seed)) => Work::Seed(seed),
                    Subject::Test(test) => Work::Test(test, compiler.compile_test(id)),
                };
                let warehouse = self.warehouse;
                let run_id = run_id.clone();
                let database = self.project.target.database.as_str();
                let full_refresh = self.full_refresh;
                let audit_schema = audit_schema.as_str();
                let now = now.as_str();
                running.push(async move {
                    let context = StatementContext {
                        unique_id: id.to_string(),
                        run_id: run_id.clone(),
                    };
                    let work = work.execute(
                        warehouse,
                        run_id,
                        Some((database, audit_schema)),
                        full_refresh,
                        now,
                        reporter,
                    );
                    let outcome = with_hooks(warehouse, hooks, &context, work).await;
                    (
                        id,
                        index,
                        started_at,
                        clock.elapsed().as_secs_f64(),
                        outcome,
                    )
                });
            }
            let Some((id, index, started_at, seconds, outcome)) = running.next().await else {
                break;
            };
            let Some(node) = Subject::of(self.project, id) else {
                continue;
            };
            let mut result = self.result_for(node, started_at, seconds);
            result.status = outcome.status;
            result.message = outcome.message;
            result.rows_affected = outcome.rows_affected;
            result.failures = outcome.failures;
            result.compiled_sql = outcome.sql;
            done.insert(id);
            let failed = result.status.is_failure();
            self.record(&run_id, &result)?;
            if result.status == NodeStatus::Success
                && let (Some(meta), Subject::Node(built)) = (&self.meta, node)
            {
                // Recorded for the serving roles; checked at load, so a bad value is not
                // possible here.
                let grants = built.config().grants().unwrap_or_default();
                let r = built.relation();
                // Written only when there is something to grant or to revoke.
                if !grants.is_empty()
                    || !meta
                        .grants(&r.database, &r.schema, &r.identifier)?
                        .is_empty()
                {
                    meta.set_grants(&r.database, &r.schema, &r.identifier, &grants, &run_id)?;
                }
            }
            reporter.report(RunEvent::NodeFinished {
                index,
                total,
                result: &result,
            });
            results.push(result);
            if failed {
                if self.fail_fast {
                    stop = true;
                }
                // A failing model or seed skips everything below it. A failing test skips the
                // models and seeds below the node it tests, and their tests; other tests of
                // that node still run (as in `dbt build`; `dbt test` skips nothing).
                let descendants: Vec<&str> = match self.project.tests.get(id) {
                    None => self.project.graph.descendants(id, None),
                    Some(test) => {
                        let origin = test.attached_node.as_deref().unwrap_or(id);
                        let below: HashSet<&str> = self
                            .project
                            .graph
                            .descendants(origin, None)
                            .into_iter()
                            .filter(|d| self.project.node(d).is_some() && in_run.contains(d))
                            .collect();
                        let mut list: Vec<&str> = below.iter().copied().collect();
                        list.extend(
                            self.project
                                .tests
                                .values()
                                .filter(|t| t.depends_on.iter().any(|x| below.contains(x.as_str())))
                                .map(|t| t.unique_id.as_str()),
                        );
                        list
                    }
                };
                for d in descendants {
                    if in_run.contains(d) && !started_nodes.contains(d) && done.insert(d) {
                        let Some(m) = Subject::of(self.project, d) else {
                            continue;
                        };
                        let mut r = self.result_for(m, chrono::Utc::now(), 0.0);
                        r.status = NodeStatus::Skipped;
                        r.message = format!(
                            "skipped: upstream {} `{}` failed",
                            node.resource_type(),
                            node.name()
                        );
                        self.record(&run_id, &r)?;
                        reporter.report(RunEvent::NodeFinished {
                            index: position[d],
                            total,
                            result: &r,
                        });
                        results.push(r);
                    }
                }
            } else if let Some(children) = dependents.get(id) {
                for c in children {
                    if let Some(w) = waiting.get_mut(c) {
                        *w -= 1;
                        if *w == 0 && !done.contains(c) {
                            ready.insert((position[*c], *c));
                        }
                    }
                }
            }
        }
        // With --fail-fast, nodes never started are reported as skipped.
        for id in nodes {
            if !done.contains(id.as_str()) {
                let Some(m) = Subject::of(self.project, id) else {
                    continue;
                };
                let mut r = self.result_for(m, chrono::Utc::now(), 0.0);
                r.status = NodeStatus::Skipped;
                r.message = if start_failed {
                    "skipped: an on-run-start hook failed".into()
                } else {
                    "skipped: the run stopped at the first failure (--fail-fast)".into()
                };
                self.record(&run_id, &r)?;
                reporter.report(RunEvent::NodeFinished {
                    index: position[id.as_str()],
                    total,
                    result: &r,
                });
                results.push(r);
            }
        }
        let run_context = self.run_context(nodes, &results);
        let end_failed = self
            .run_hooks("on-run-end", &mut compiler, &run_id, &run_context, reporter)
            .await;
        let results = RunResults {
            run_id: run_id.clone(),
            results,
            elapsed: started.elapsed().as_secs_f64(),
            hooks_failed: start_failed || end_failed,
        };
        if let Some(meta) = &self.meta {
            meta.finish_run(
                &run_id,
                if results.success() {
                    "success"
                } else {
                    "error"
                },
                &rfc3339(chrono::Utc::now()),
            )?;
        }
        Ok(results)
    }

    /// Run the project's `on-run-start` or `on-run-end` hooks (`phase`), in order, stopping at
    /// the first failure; returns whether one failed.
    async fn run_hooks(
        &self,
        phase: &str,
        compiler: &mut Compiler<'_>,
        run_id: &str,
        context: &serde_json::Value,
        reporter: &dyn Reporter,
    ) -> bool {
        let hooks = match phase {
            "on-run-start" => &self.project.on_run_start,
            _ => &self.project.on_run_end,
        };
        for (i, hook) in hooks.iter().enumerate() {
            let clock = Instant::now();
            let name = format!("{}-{phase}-{i}", self.project.name());
            let statement = StatementContext {
                unique_id: format!("operation.{}.{name}", self.project.name()),
                run_id: run_id.to_string(),
            };
            let outcome = match compiler.compile_run_hook(phase, i, &hook.sql, context) {
                Ok(sql) if sql.trim().is_empty() => Ok(vec!["OK".to_string()]),
                Ok(sql) => self
                    .warehouse
                    .execute(&sql, &statement)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let (ok, message) = match &outcome {
                Ok(statuses) => (true, statuses.join("; ")),
                Err(e) => (false, e.clone()),
            };
            reporter.report(RunEvent::Hook(HookEvent {
                phase,
                name: &name,
                index: i + 1,
                total: hooks.len(),
                ok,
                message: &message,
                seconds: clock.elapsed().as_secs_f64(),
            }));
            if !ok {
                return true;
            }
        }
        false
    }

    /// What run hooks see: `schemas` and `database_schemas` the run builds in, and the
    /// `results` so far (for `on-run-end`), shaped as dbt's.
    fn run_context(&self, nodes: &[String], results: &[NodeResult]) -> serde_json::Value {
        let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
        for id in nodes {
            if let Some(n) = self.project.node(id) {
                let r = n.relation();
                pairs.insert((r.database.clone(), r.schema.clone()));
            }
        }
        let schemas: BTreeSet<&String> = pairs.iter().map(|(_, s)| s).collect();
        let results: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "node": {"unique_id": r.unique_id, "name": r.name, "resource_type": r.resource_type},
                    "unique_id": r.unique_id,
                    "status": r.status,
                    "message": r.message,
                    "execution_time": r.seconds,
                    "failures": r.failures,
                    "adapter_response": {"rows_affected": r.rows_affected},
                })
            })
            .collect();
        serde_json::json!({
            "schemas": schemas,
            "database_schemas": pairs,
            "results": results,
        })
    }

    /// Plan and compile the batches of a microbatch model.
    fn microbatch_work<'m>(
        &self,
        model: &'m strata_project::Model,
        compiler: &mut Compiler<'_>,
    ) -> Work<'m> {
        let plan = MicrobatchConfig::of(model).and_then(|config| {
            let exists = self
                .warehouse
                .introspector()
                .and_then(|i| i.columns(&model.relation).ok().flatten())
                .is_some();
            let fresh = !exists || (self.full_refresh && full_refresh_allowed(model));
            let batches = config.batches(fresh, self.event_time, chrono::Utc::now().naive_utc())?;
            Ok((config, batches))
        });
        match plan {
            Err(message) => Work::Model(
                model,
                Err(strata_project::Error::at(
                    strata_common::Location::file(&model.original_file_path),
                    message,
                )),
            ),
            Ok((config, batches)) => {
                let compiled = batches
                    .into_iter()
                    .map(|b| {
                        let c = compiler.compile_batch(&model.unique_id, b.clone());
                        (b, c)
                    })
                    .collect();
                Work::Microbatch(model, config, compiled)
            }
        }
    }

    /// For each node, the nearest nodes of the run it depends on (through nodes not in it).
    fn dependencies<'n>(
        &self,
        nodes: &'n [String],
        in_run: &HashSet<&str>,
    ) -> HashMap<&'n str, Vec<String>> {
        let g = &self.project.graph;
        let mut out = HashMap::new();
        for n in nodes {
            let mut found = BTreeSet::new();
            let mut stack: Vec<&str> = g.parents(n);
            let mut seen: HashSet<&str> = HashSet::new();
            while let Some(p) = stack.pop() {
                if !seen.insert(p) {
                    continue;
                }
                if in_run.contains(p) {
                    found.insert(p.to_string());
                } else {
                    stack.extend(g.parents(p));
                }
            }
            // As in `dbt build`: a model waits for the tests of its parents, except tests that
            // themselves read this model or something downstream of it.
            if !self.project.tests.contains_key(n.as_str()) {
                let mut ancestors: Option<HashSet<&str>> = None;
                let parents: Vec<String> = found.iter().cloned().collect();
                for p in parents {
                    for t in self.project.tests.values() {
                        if t.attached_node.as_deref() != Some(p.as_str())
                            || !in_run.contains(t.unique_id.as_str())
                        {
                            continue;
                        }
                        let anc = ancestors
                            .get_or_insert_with(|| g.ancestors(n, None).into_iter().collect());
                        if t.depends_on.iter().all(|d| anc.contains(d.as_str())) {
                            found.insert(t.unique_id.clone());
                        }
                    }
                }
            }
            out.insert(n.as_str(), found.into_iter().collect());
        }
        out
    }

    fn result_for(
        &self,
        subject: Subject<'_>,
        started_at: chrono::DateTime<chrono::Utc>,
        seconds: f64,
    ) -> NodeResult {
        let (relation_name, relation, materialized) = match subject {
            Subject::Node(node) => {
                let r = node.relation();
                (
                    format!("{}.{}", r.schema, r.identifier),
                    r.to_string(),
                    node.materialized().to_string(),
                )
            }
            Subject::Test(t) => (t.name.clone(), String::new(), "test".to_string()),
        };
        NodeResult {
            unique_id: subject.unique_id().to_string(),
            name: subject.name().to_string(),
            resource_type: subject.resource_type().to_string(),
            relation_name,
            relation,
            materialized,
            status: NodeStatus::Skipped,
            message: String::new(),
            seconds,
            rows_affected: None,
            failures: None,
            started_at: rfc3339(started_at),
            completed_at: rfc3339(chrono::Utc::now()),
            compiled_sql: None,
            file: subject.file().to_string_lossy().into_owned(),
        }
    }

    fn record(&self, run_id: &str, r: &NodeResult) -> crate::Result<()> {
        if let Some(meta) = &self.meta {
            meta.record_node(&NodeResultRecord {
                run_id: run_id.to_string(),
                unique_id: r.unique_id.clone(),
                status: r.status.as_str().to_string(),
                started_at: r.started_at.clone(),
                seconds: r.seconds,
                relation: Some(r.relation.clone()),
                rows_affected: r.rows_affected.map(|n| n as i64),
                message: Some(r.message.clone()),
            })?;
        }
        Ok(())
    }
}

/// What a run acts on: a model or seed, or a data test.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    Node(Node<'a>),
    Test(&'a DataTest),
}

impl<'a> Subject<'a> {
    fn of(project: &'a Project, id: &str) -> Option<Self> {
        project
            .node(id)
            .map(Subject::Node)
            .or_else(|| project.tests.get(id).map(Subject::Test))
    }

    fn unique_id(&self) -> &'a str {
        match self {
            Subject::Node(n) => n.unique_id(),
            Subject::Test(t) => &t.unique_id,
        }
    }

    fn name(&self) -> &'a str {
        match self {
            Subject::Node(n) => n.name(),
            Subject::Test(t) => &t.name,
        }
    }

    fn resource_type(&self) -> &'static str {
        match self {
            Subject::Node(n) => n.resource_type(),
            Subject::Test(_) => "test",
        }
    }

    fn file(&self) -> &'a std::path::Path {
        match self {
            Subject::Node(n) => n.file(),
            Subject::Test(t) => &t.original_file_path,
        }
    }
}

/// How one node ended.
struct Done {
    status: NodeStatus,
    message: String,
    rows_affected: Option<u64>,
    failures: Option<u64>,
    sql: Option<String>,
}

impl Done {
    fn error(message: String, sql: Option<String>) -> Self {
        Self {
            status: NodeStatus::Error,
            message,
            rows_affected: None,
            failures: None,
            sql,
        }
    }

    fn built(o: crate::MaterializeOutcome, sql: Option<String>) -> Self {
        Self {
            status: NodeStatus::Success,
            message: o.message,
            rows_affected: o.rows_affected,
            failures: None,
            sql,
        }
    }
}

/// One node's work, prepared on the scheduler and run concurrently.
enum Work<'a> {
    Model(
        &'a strata_project::Model,
        strata_project::Result<strata_project::compile::CompiledModel>,
    ),
    Seed(&'a strata_project::Seed),
    Test(&'a DataTest, strata_project::Result<String>),
    /// A microbatch model: its batches, each compiled for its period.
    Microbatch(
        &'a strata_project::Model,
        MicrobatchConfig,
        Vec<(
            strata_project::jinja::BatchWindow,
            strata_project::Result<strata_project::compile::CompiledModel>,
        )>,
    ),
}

impl Work<'_> {
    /// `audit` is the (database, schema) where `store_failures` keeps failing rows;
    /// `full_refresh` rebuilds incremental models in full; `now` is the run's time, for
    /// snapshots.
    async fn execute(
        self,
        warehouse: &dyn Warehouse,
        run_id: String,
        audit: Option<(&str, &str)>,
        full_refresh: bool,
        now: &str,
        reporter: &dyn Reporter,
    ) -> Done {
        match self {
            Work::Model(_, Err(e)) | Work::Test(_, Err(e)) => Done::error(e.to_string(), None),
            Work::Model(model, Ok(c)) => {
                let Some(materialization) = Materialization::parse(model.materialized()) else {
                    return Done::error(
                        format!(
                            "materialization `{}` is not supported; use table, view, incremental or ephemeral",
                            model.materialized()
                        ),
                        Some(c.sql),
                    );
                };
                let sql = match crate::contract::enforce(warehouse, model, &c.sql).await {
                    Ok(sql) => sql,
                    Err(message) => return Done::error(message, Some(c.sql)),
                };
                let mut req = request_for(model, materialization, sql, run_id, full_refresh);
                if materialization == Materialization::Snapshot {
                    req.snapshot = Some(snapshot_spec(model, now));
                }
                match warehouse.materialize(&req).await {
                    Ok(o) => Done::built(o, Some(c.sql)),
                    Err(e) => Done::error(e.to_string(), Some(c.sql)),
                }
            }
            Work::Microbatch(model, config, batches) => {
                let batches = Batches {
                    config: &config,
                    list: batches,
                    reporter,
                };
                run_batches(warehouse, model, batches, run_id, full_refresh).await
            }
            Work::Seed(seed) => {
                let req = SeedRequest {
                    unique_id: seed.unique_id.clone(),
                    relation: seed.relation.clone(),
                    path: seed.abs_path.clone(),
                    display_path: seed.original_file_path.to_string_lossy().into_owned(),
                    delimiter: seed.delimiter(),
                    column_types: seed.column_types().into_iter().collect(),
                    run_id,
                };
                match warehouse.load_seed(&req).await {
                    Ok(o) => Done::built(o, None),
                    Err(e) => Done::error(e.to_string(), None),
                }
            }
            Work::Test(test, Ok(sql)) => {
                let done = run_test(warehouse, test, &sql).await;
                let found_rows = done.status.is_failure() || done.status == NodeStatus::Warn;
                if found_rows && let Some((db, schema)) = audit.filter(|_| test.store_failures()) {
                    let relation = Relation::new(db, schema, test.name.clone());
                    if let Err(e) = store_failures(warehouse, test, &sql, relation, &run_id).await {
                        return Done::error(
                            format!("storing the failing rows failed: {e}"),
                            Some(sql),
                        );
                    }
                }
                done
            }
        }
    }
}

/// Run a model's `pre-hook`s, then its `work`, then (when it was built) its `post-hook`s. A
/// failing hook fails the model.
async fn with_hooks(
    warehouse: &dyn Warehouse,
    hooks: Option<strata_project::Result<ModelHooks>>,
    context: &StatementContext,
    work: impl std::future::Future<Output = Done>,
) -> Done {
    let hooks = match hooks {
        None => return work.await,
        Some(Err(e)) => return Done::error(e.to_string(), None),
        Some(Ok(h)) => h,
    };
    for (i, sql) in hooks.pre.iter().enumerate() {
        if let Err(e) = warehouse.execute(sql, context).await {
            return Done::error(format!("pre-hook {} failed: {e}", i + 1), Some(sql.clone()));
        }
    }
    let mut done = work.await;
    if done.status == NodeStatus::Success {
        for (i, sql) in hooks.post.iter().enumerate() {
            if let Err(e) = warehouse.execute(sql, context).await {
                done = Done::error(
                    format!("post-hook {} failed (the model was built): {e}", i + 1),
                    done.sql,
                );
                break;
            }
        }
    }
    done
}

/// Whether a model is incremental with the `microbatch` strategy.
fn is_microbatch(model: &strata_project::Model) -> bool {
    model.materialized() == "incremental"
        && model.config.get_str("incremental_strategy") == Some("microbatch")
}

/// Whether `--full-refresh` may rebuild a model (`full_refresh: false` protects it).
fn full_refresh_allowed(model: &strata_project::Model) -> bool {
    model
        .config
        .get("full_refresh")
        .and_then(serde_json::Value::as_bool)
        != Some(false)
}

/// The request building a model from its compiled SQL.
fn request_for(
    model: &strata_project::Model,
    materialization: Materialization,
    sql: String,
    run_id: String,
    full_refresh: bool,
) -> MaterializeRequest {
    let c = &model.config;
    MaterializeRequest {
        partition_by: partition_columns(c.get("partition_by")),
        incremental_strategy: c.get_str("incremental_strategy").map(str::to_string),
        unique_key: partition_columns(c.get("unique_key")),
        full_refresh: full_refresh && full_refresh_allowed(model),
        merge_update_columns: partition_columns(c.get("merge_update_columns")),
        merge_exclude_columns: partition_columns(c.get("merge_exclude_columns")),
        on_schema_change: c.get_str("on_schema_change").map(str::to_string),
        incremental_predicates: partition_columns(c.get("incremental_predicates")),
        target_file_size: c
            .get("target_file_size")
            .and_then(serde_json::Value::as_u64),
        ..MaterializeRequest::new(
            model.unique_id.clone(),
            model.relation.clone(),
            materialization,
            sql,
            run_id,
        )
    }
}

/// The batches of a microbatch model, and where to report them.
struct Batches<'a> {
    config: &'a MicrobatchConfig,
    list: Vec<(
        strata_project::jinja::BatchWindow,
        strata_project::Result<strata_project::compile::CompiledModel>,
    )>,
    reporter: &'a dyn Reporter,
}

/// Build a microbatch model batch by batch, oldest first, each in its own commit. A failed
/// batch is retried once on its own; the others are written either way, and the message
/// names the periods still to re-run.
async fn run_batches(
    warehouse: &dyn Warehouse,
    model: &strata_project::Model,
    batches: Batches<'_>,
    run_id: String,
    full_refresh: bool,
) -> Done {
    let Batches {
        config,
        list: batches,
        reporter,
    } = batches;
    let total = batches.len();
    let relation_name = format!("{}.{}", model.relation.schema, model.relation.identifier);
    let mut rows = 0u64;
    let mut failed: Vec<(strata_project::jinja::BatchWindow, String)> = Vec::new();
    let mut first_sql = None;
    for (i, (window, compiled)) in batches.into_iter().enumerate() {
        let clock = Instant::now();
        let report = |ok: bool, message: &str| {
            reporter.report(RunEvent::Batch(BatchEvent {
                unique_id: &model.unique_id,
                relation_name: &relation_name,
                index: i + 1,
                total,
                batch_id: &window.id,
                ok,
                message,
                seconds: clock.elapsed().as_secs_f64(),
            }))
        };
        let compiled = match compiled {
            Ok(c) => c,
            Err(e) => {
                report(false, "ERROR");
                failed.push((window, e.to_string()));
                continue;
            }
        };
        first_sql.get_or_insert_with(|| compiled.sql.clone());
        let mut req = request_for(
            model,
            Materialization::Incremental,
            compiled.sql.clone(),
            run_id.clone(),
            // Only the first batch of a full refresh replaces the table.
            full_refresh && i == 0,
        );
        req.batch = Some(Batch {
            event_time: config.event_time.clone(),
            start: window.start.clone(),
            end: window.end.clone(),
        });
        let mut outcome = warehouse.materialize(&req).await;
        if outcome.is_err() {
            outcome = warehouse.materialize(&req).await;
        }
        match outcome {
            Ok(o) => {
                report(true, &o.message);
                rows += o.rows_affected.unwrap_or(0);
            }
            Err(e) => {
                report(false, "ERROR");
                failed.push((window, e.to_string()));
            }
        }
    }
    if failed.is_empty() {
        return Done {
            status: NodeStatus::Success,
            message: format!(
                "{total} batch{} {rows} rows",
                if total == 1 { "," } else { "es," }
            ),
            rows_affected: Some(rows),
            failures: None,
            sql: first_sql,
        };
    }
    let (first, last) = (&failed[0].0, &failed[failed.len() - 1].0);
    let details: Vec<String> = failed
        .iter()
        .map(|(w, e)| format!("batch {} ({} to {}): {e}", w.id, w.start, w.end))
        .collect();
    Done::error(
        format!(
            "{} of {total} batches failed, after a retry each; the other batches were written.\n{}\nRe-run the failed period with: --event-time-start '{}' --event-time-end '{}'",
            failed.len(),
            details.join("\n"),
            first.start,
            last.end
        ),
        first_sql,
    )
}

/// A snapshot's configs: `unique_key`, `strategy`, `updated_at`, `check_cols`,
/// `hard_deletes` (or the older `invalidate_hard_deletes`), `dbt_valid_to_current`.
fn snapshot_spec(model: &strata_project::Model, now: &str) -> crate::SnapshotSpec {
    let c = &model.config;
    let check_cols = match c.get("check_cols") {
        Some(serde_json::Value::String(s)) if s == "all" => Vec::new(),
        other => partition_columns(other),
    };
    let hard_deletes = match c.get_str("hard_deletes") {
        Some(h) => h.to_string(),
        None if c
            .get("invalidate_hard_deletes")
            .and_then(serde_json::Value::as_bool)
            == Some(true) =>
        {
            "invalidate".to_string()
        }
        None => "ignore".to_string(),
    };
    crate::SnapshotSpec {
        unique_key: partition_columns(c.get("unique_key")),
        strategy: c.get_str("strategy").unwrap_or("timestamp").to_string(),
        updated_at: c.get_str("updated_at").map(str::to_string),
        check_cols,
        hard_deletes,
        valid_to_current: c.get_str("dbt_valid_to_current").map(str::to_string),
        now: now.to_string(),
    }
}

/// `partition_by` as column names: a name, a list of names, or dbt-BigQuery's
/// `{field: name, ...}`.
fn partition_columns(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::Object(o)) => o
            .get("field")
            .and_then(|f| f.as_str())
            .map(|f| vec![f.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Append a test's failing rows, stamped with the run, to its audit table: the history of
/// failures is kept, not replaced each run.
async fn store_failures(
    warehouse: &dyn Warehouse,
    test: &DataTest,
    sql: &str,
    relation: Relation,
    run_id: &str,
) -> crate::Result<()> {
    let limited = match test.limit() {
        Some(n) => format!("select * from (\n{sql}\n) as dbt_limited limit {n}"),
        None => sql.to_string(),
    };
    let request = MaterializeRequest::new(
        test.unique_id.clone(),
        relation,
        Materialization::Table,
        format!(
            "select {} as strata_run_id, now() as strata_stored_at, failing.* from (\n{limited}\n) as failing",
            strata_common::quote_literal(run_id)
        ),
        run_id,
    );
    warehouse.append(&request).await.map(|_| ())
}

/// Count a test's failing rows and judge them by `severity`, `warn_if` and `error_if`.
async fn run_test(warehouse: &dyn Warehouse, test: &DataTest, sql: &str) -> Done {
    let limited = match test.limit() {
        Some(n) => format!("select * from (\n{sql}\n) as dbt_limited limit {n}"),
        None => sql.to_string(),
    };
    let query = format!(
        "select count(*) as failures, count(*) {} as should_warn, count(*) {} as should_error \
         from (\n{limited}\n) as dbt_internal_test",
        test.warn_if(),
        test.error_if()
    );
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> =
        match warehouse.query(&query, None).await {
            Ok(stream) => match stream.try_collect().await {
                Ok(b) => b,
                Err(e) => {
                    return Done::error(
                        crate::error::describe_datafusion_error(&e),
                        Some(sql.to_string()),
                    );
                }
            },
            Err(e) => return Done::error(e.to_string(), Some(sql.to_string())),
        };
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Done::error(
            "the test query returned no count".into(),
            Some(sql.to_string()),
        );
    };
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    let failures = batch
        .column(0)
        .as_primitive_opt::<Int64Type>()
        .map(|a| a.value(0))
        .unwrap_or(0);
    let flag = |i: usize| {
        batch
            .column(i)
            .as_boolean_opt()
            .is_some_and(|a| a.is_valid(0) && a.value(0))
    };
    let (should_warn, should_error) = (flag(1), flag(2));
    let status = if test.severity() == "error" && should_error {
        NodeStatus::Fail
    } else if should_warn {
        NodeStatus::Warn
    } else {
        NodeStatus::Pass
    };
    let message = match status {
        NodeStatus::Pass => "PASS".to_string(),
        _ => format!(
            "Got {failures} result{}, configured to {} if {}",
            if failures == 1 { "" } else { "s" },
            if status == NodeStatus::Fail {
                "fail"
            } else {
                "warn"
            },
            if status == NodeStatus::Fail {
                test.error_if()
            } else {
                test.warn_if()
            }
        ),
    };
    Done {
        status,
        message,
        rows_affected: None,
        failures: Some(failures.max(0) as u64),
        sql: Some(sql.to_string()),
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
