//! The scheduler: nodes run along the DAG, compiled just before they run, in parallel up to
//! `threads`; a failure skips what depends on it. Run hooks bracket the run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::NaiveDateTime;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use strata_engine::{StatementContext, Warehouse};
use strata_meta::{MetaStore, NodeResultRecord, RunRecord};
use strata_project::compile::{CompiledModel, Compiler};
use strata_project::data_tests::DataTest;
use strata_project::jinja::BatchWindow;
use strata_project::{Node, Project};

use crate::Result;
use crate::events::{HookEvent, Reporter, RunEvent};
use crate::microbatch::MicrobatchConfig;
use crate::quality::Anomalies;
use crate::results::{NodeResult, NodeStatus, RunResults};
use crate::work::{Env, Work, full_refresh_allowed, is_microbatch, rfc3339, with_hooks};

/// Runs models of a project on a warehouse.
pub struct Runner<'a> {
    project: Arc<Project>,
    warehouse: &'a dyn Warehouse,
    meta: Option<Arc<MetaStore>>,
    threads: usize,
    fail_fast: bool,
    command: String,
    args: String,
    defer: Option<strata_project::compile::Defer>,
    full_refresh: bool,
    empty: bool,
    event_time: (Option<NaiveDateTime>, Option<NaiveDateTime>),
    max_batches: usize,
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

impl<'a> Runner<'a> {
    /// A runner for `project` on `warehouse`.
    pub fn new(project: Arc<Project>, warehouse: &'a dyn Warehouse) -> Self {
        Self {
            threads: project.target.threads,
            project,
            warehouse,
            meta: None,
            fail_fast: false,
            command: "run".into(),
            args: String::new(),
            defer: None,
            full_refresh: false,
            empty: false,
            event_time: (None, None),
            max_batches: crate::microbatch::DEFAULT_MAX_BATCHES,
            cancel: None,
        }
    }

    /// Stop when `cancel` turns true (the CLI's SIGINT and SIGTERM): nodes building are
    /// dropped mid-write (Delta commits are atomic, so their tables keep the previous version;
    /// the next write removes what they left), the others are skipped, and the run is
    /// recorded as `cancelled`.
    pub fn with_cancel(mut self, cancel: tokio::sync::watch::Receiver<bool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Refuse microbatch builds of more than `n` batches (`--max-batches`).
    pub fn with_max_batches(mut self, n: usize) -> Self {
        self.max_batches = n;
        self
    }

    /// Build microbatch models over this period only (`--event-time-start`,
    /// `--event-time-end`), without a full refresh.
    pub fn with_event_time(
        mut self,
        start: Option<NaiveDateTime>,
        end: Option<NaiveDateTime>,
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

    /// `--empty`: models read no rows from their refs and sources.
    pub fn with_empty(mut self, empty: bool) -> Self {
        self.empty = empty;
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
                None => project
                    .tests
                    .get(*id)
                    .is_some_and(|t| types.contains(&t.resource_type())),
            })
            .map(str::to_string)
            .collect()
    }

    /// Run the nodes in `nodes` (topologically ordered unique ids).
    pub async fn run(&self, nodes: &[String], reporter: &dyn Reporter) -> Result<RunResults> {
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
        let compiler = Arc::new(Mutex::new(
            Compiler::new(self.project.clone())
                .with_introspector(self.warehouse.introspector())
                .with_defer(self.defer.clone())
                .with_empty(self.empty),
        ));
        let run_context = self.run_context(nodes, &[]);
        let start_failed = self
            .run_hooks("on-run-start", &compiler, &run_id, &run_context, reporter)
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
        let anomalies = self.anomalies_in(nodes);
        let mut running = FuturesUnordered::new();
        // A failed on-run-start hook runs nothing (every node is reported skipped).
        let mut stop = start_failed;
        let mut cancel = self.cancel.clone();
        let mut cancelled = false;

        loop {
            let requested = cancel.as_ref().is_some_and(|rx| *rx.borrow());
            while !stop && !requested && running.len() < self.threads {
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
                let Some(subject) = Subject::of(&self.project, id) else {
                    continue;
                };
                started_nodes.insert(id);
                let started_at = chrono::Utc::now();
                let clock = Instant::now();
                let warehouse = self.warehouse;
                let run_id = run_id.clone();
                let database = self.project.target.database.as_str();
                let full_refresh = self.full_refresh;
                let event_time = self.event_time;
                let max_batches = self.max_batches;
                let audit_schema = audit_schema.as_str();
                let now = now.as_str();
                let compiler = &compiler;
                let meta = self.meta.as_deref();
                let anomalies = &anomalies;
                running.push(async move {
                    // Models and tests compile here, just before they run, so compile errors
                    // are node errors. Compiling (and a template's `run_query`) runs on a
                    // blocking thread: the nodes already building go on meanwhile.
                    let (hooks, work) = match subject {
                        Subject::Node(Node::Model(model)) => {
                            let owned = id.to_string();
                            let introspector = warehouse.introspector();
                            let microbatch = is_microbatch(model);
                            let (hooks, work) = off_loop(compiler, move |c| {
                                let hooks = c.compile_hooks(&owned);
                                let work = match microbatch {
                                    true => Compiled::Batches(plan_batches(
                                        c,
                                        &owned,
                                        introspector,
                                        full_refresh,
                                        (event_time, max_batches),
                                    )),
                                    false => Compiled::Model(c.compile(&owned)),
                                };
                                (hooks, work)
                            })
                            .await
                            .unwrap_or_else(|e| {
                                (Err(internal(&e)), Compiled::Model(Err(internal(&e))))
                            });
                            let work = match work {
                                Compiled::Model(c) => Work::Model(model, c),
                                Compiled::Batches(Ok((config, batches))) => {
                                    Work::Microbatch(model, config, batches)
                                }
                                Compiled::Batches(Err(e)) => Work::Model(model, Err(e)),
                            };
                            (Some(hooks), work)
                        }
                        Subject::Node(Node::Seed(seed)) => (None, Work::Seed(seed)),
                        Subject::Test(test) => {
                            let owned = id.to_string();
                            let sql = off_loop(compiler, move |c| c.compile_test(&owned))
                                .await
                                .unwrap_or_else(|e| Err(internal(&e)));
                            (None, Work::Test(test, sql))
                        }
                    };
                    let context = StatementContext {
                        unique_id: id.to_string(),
                        run_id: run_id.clone(),
                    };
                    let env = Env {
                        warehouse,
                        meta,
                        audit: Some((database, audit_schema)),
                        full_refresh,
                        now,
                        reporter,
                        anomalies,
                        empty: self.empty,
                    };
                    let work = work.execute(&env, run_id);
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
            let interrupted = async {
                match cancel.as_mut() {
                    Some(rx) => {
                        let _ = rx.wait_for(|c| *c).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let next = tokio::select! {
                biased;
                () = interrupted => {
                    cancelled = true;
                    break;
                }
                next = running.next() => next,
            };
            let Some((id, index, started_at, seconds, outcome)) = next else {
                break;
            };
            let Some(node) = Subject::of(&self.project, id) else {
                continue;
            };
            let mut result = self.result_for(node, started_at, seconds);
            result.status = outcome.status;
            result.message = outcome.message;
            result.rows_affected = outcome.rows_affected;
            result.failures = outcome.failures;
            result.compiled_sql = outcome.sql;
            result.sample = outcome.sample;
            done.insert(id);
            if result.status == NodeStatus::Success
                && let Subject::Node(built) = node
            {
                // The warehouse's own privileges (PostgreSQL's GRANT), after every build: a
                // rebuilt table is a new object. A grant that fails fails the node.
                let grants = built.config().grants().unwrap_or_default();
                if !grants.is_empty()
                    && let Err(e) = self.warehouse.apply_grants(built.relation(), &grants).await
                {
                    result.status = NodeStatus::Error;
                    result.message = e.to_string();
                }
            }
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
                        let Some(m) = Subject::of(&self.project, d) else {
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
        // Nodes building when the run was interrupted are dropped: their writes never commit.
        drop(running);
        // Nodes that did not finish: interrupted while building, or never started.
        for id in nodes {
            if done.contains(id.as_str()) {
                continue;
            }
            let Some(m) = Subject::of(&self.project, id) else {
                continue;
            };
            let mut r = self.result_for(m, chrono::Utc::now(), 0.0);
            (r.status, r.message) = if cancelled && started_nodes.contains(id.as_str()) {
                (
                    NodeStatus::Error,
                    "interrupted while building; nothing of this build was committed".into(),
                )
            } else if cancelled {
                (
                    NodeStatus::Skipped,
                    "skipped: the run was interrupted".into(),
                )
            } else if start_failed {
                (
                    NodeStatus::Skipped,
                    "skipped: an on-run-start hook failed".into(),
                )
            } else {
                (
                    NodeStatus::Skipped,
                    "skipped: the run stopped at the first failure (--fail-fast)".into(),
                )
            };
            self.record(&run_id, &r)?;
            reporter.report(RunEvent::NodeFinished {
                index: position[id.as_str()],
                total,
                result: &r,
            });
            results.push(r);
        }
        let run_context = self.run_context(nodes, &results);
        // An interrupted run stops at once: no on-run-end hooks.
        let end_failed = !cancelled
            && self
                .run_hooks("on-run-end", &compiler, &run_id, &run_context, reporter)
                .await;
        let results = RunResults {
            run_id: run_id.clone(),
            results,
            elapsed: started.elapsed().as_secs_f64(),
            hooks_failed: start_failed || end_failed,
            cancelled,
        };
        if let Some(meta) = &self.meta {
            meta.finish_run(
                &run_id,
                if cancelled {
                    "cancelled"
                } else if results.success() {
                    "success"
                } else {
                    "error"
                },
                &rfc3339(chrono::Utc::now()),
            )?;
        }
        Ok(results)
    }

    /// The anomaly tests of the run whose table model is built in the same run: they are
    /// measured as the model is written.
    fn anomalies_in(&self, nodes: &[String]) -> Anomalies {
        let in_run: HashSet<&str> = nodes.iter().map(String::as_str).collect();
        let mut out = Anomalies::default();
        for id in nodes {
            let Some(test) = self.project.tests.get(id) else {
                continue;
            };
            let (Some(Ok(spec)), Some(model)) = (
                strata_project::anomaly::spec_of(test),
                test.attached_node
                    .as_deref()
                    .filter(|m| in_run.contains(m))
                    .and_then(|m| self.project.models.get(m)),
            ) else {
                continue;
            };
            if model.materialized() != "table" {
                continue;
            }
            out.tests.entry(model.unique_id.clone()).or_default().push((
                test.unique_id.clone(),
                spec,
                test.where_clause().map(str::to_string),
            ));
        }
        out
    }

    /// Run the project's `on-run-start` or `on-run-end` hooks (`phase`), in order, stopping at
    /// the first failure; returns whether one failed.
    async fn run_hooks(
        &self,
        phase: &str,
        compiler: &Arc<Mutex<Compiler>>,
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
            let (sql, phase_owned, context_owned) =
                (hook.sql.clone(), phase.to_string(), context.clone());
            let compiled = off_loop(compiler, move |c| {
                c.compile_run_hook(&phase_owned, i, &sql, &context_owned)
            })
            .await
            .unwrap_or_else(|e| Err(internal(&e)));
            let outcome = match compiled {
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
            sample: None,
        }
    }

    fn record(&self, run_id: &str, r: &NodeResult) -> Result<()> {
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
                failures: r.failures.map(|n| n as i64),
                sample: r.sample.clone(),
            })?;
        }
        Ok(())
    }
}

/// A model compiled off the run loop: its SQL, or its batches' for a microbatch model.
enum Compiled {
    Model(strata_project::Result<CompiledModel>),
    Batches(strata_project::Result<(MicrobatchConfig, Vec<(BatchWindow, CompileResult)>)>),
}

type CompileResult = strata_project::Result<CompiledModel>;

/// Run `f` with the compiler on a blocking thread, so the run loop goes on polling the nodes
/// already building while templates render and their queries (`run_query`) run. One compile
/// at a time: the compiler caches what it renders. A panic while compiling is a node error.
async fn off_loop<T: Send + 'static>(
    compiler: &Arc<Mutex<Compiler>>,
    f: impl FnOnce(&mut Compiler) -> T + Send + 'static,
) -> std::result::Result<T, String> {
    let compiler = compiler.clone();
    tokio::task::spawn_blocking(move || {
        // A panic in an earlier compile leaves the cache as it was: keep using it.
        let mut guard = compiler.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    })
    .await
    .map_err(|e| match e.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "compiling panicked".into()),
        Err(e) => e.to_string(),
    })
}

fn internal(message: &str) -> strata_project::Error {
    strata_project::Error::Internal(format!("compiling failed: {message}"))
}

/// Plan the batches of a microbatch model and compile each for its period.
fn plan_batches(
    compiler: &mut Compiler,
    unique_id: &str,
    introspector: Option<Arc<dyn strata_common::Introspector>>,
    full_refresh: bool,
    (event_time, max_batches): ((Option<NaiveDateTime>, Option<NaiveDateTime>), usize),
) -> strata_project::Result<(MicrobatchConfig, Vec<(BatchWindow, CompileResult)>)> {
    let project = compiler.project().clone();
    let model = project
        .models
        .get(unique_id)
        .ok_or_else(|| internal(&format!("unknown model {unique_id}")))?;
    let config = MicrobatchConfig::of(model).map_err(|message| {
        strata_project::Error::at(
            strata_common::Location::file(&model.original_file_path),
            message,
        )
    })?;
    let exists = introspector
        .and_then(|i| i.columns(&model.relation).ok().flatten())
        .is_some();
    let fresh = !exists || (full_refresh && full_refresh_allowed(model));
    let batches = config
        .batches(fresh, event_time, chrono::Utc::now().naive_utc())
        .map_err(|message| {
            strata_project::Error::at(
                strata_common::Location::file(&model.original_file_path),
                message,
            )
        })?;
    if batches.len() > max_batches {
        let (first, last) = (&batches[0], &batches[batches.len() - 1]);
        return Err(strata_project::Error::at(
            strata_common::Location::file(&model.original_file_path),
            format!(
                "this build would run {} batches ({} to {}), more than --max-batches {max_batches}",
                batches.len(),
                first.start,
                last.end
            ),
        )
        .with_hint(
            "set a later `begin`, build a period with --event-time-start/--event-time-end, or allow it with --max-batches N",
        ));
    }
    let compiled = batches
        .into_iter()
        .map(|b| {
            let c = compiler.compile_batch(unique_id, b.clone());
            (b, c)
        })
        .collect();
    Ok((config, compiled))
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
