//! Pipeline runs and their steps' attempts, recorded as they happen: a run (which pipeline,
//! why, the data interval it covers, who runs it, how it ended) and each attempt of each step
//! (its status, times, exit code, message and the end of its output).

use serde::Serialize;

use crate::db::{Row, vals};
use crate::{MetaStore, Result};

/// A run as it starts.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub pipeline: &'a str,
    /// `manual`, `schedule`, `backfill`.
    pub trigger: &'a str,
    pub interval_start: Option<String>,
    pub interval_end: Option<String>,
    pub started_at: String,
    /// The process running it (`pid 123 on host`).
    pub owner: &'a str,
}

/// A pipeline run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineRunRecord {
    pub id: i64,
    pub pipeline: String,
    pub trigger: String,
    pub interval_start: Option<String>,
    pub interval_end: Option<String>,
    /// `running`, `success`, `failed`, `interrupted`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub owner: String,
}

/// One attempt of one step (attempt 0: a step that never ran).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAttemptRecord {
    pub run_id: i64,
    pub step: String,
    pub attempt: i64,
    /// `running`, `success`, `failed`, `timed_out`, `skipped`, `interrupted`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub log: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct StepEnd<'a> {
    pub status: &'a str,
    pub finished_at: String,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub log: Option<String>,
}

fn run_record(r: &Row) -> Result<PipelineRunRecord> {
    Ok(PipelineRunRecord {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        trigger: r.get(2)?,
        interval_start: r.get(3)?,
        interval_end: r.get(4)?,
        status: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        owner: r.get(8)?,
    })
}

const RUN_COLUMNS: &str =
    "id, pipeline, trigger, interval_start, interval_end, status, started_at, finished_at, owner";

impl MetaStore {
    /// Record a run as started; its id.
    pub fn start_pipeline_run(&self, run: &NewRun<'_>) -> Result<i64> {
        self.conn()?
            .query_one(
                "INSERT INTO pipeline_runs (pipeline, trigger, interval_start, interval_end, status, started_at, owner)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6) RETURNING id",
                vals![
                    run.pipeline,
                    run.trigger,
                    run.interval_start,
                    run.interval_end,
                    run.started_at,
                    run.owner
                ],
            )?
            .get(0)
    }

    /// Queue a run for a scheduler to start (`strata trigger --detach`); its id.
    pub fn queue_pipeline_run(&self, pipeline: &str, trigger: &str, now: &str) -> Result<i64> {
        self.conn()?
            .query_one(
                "INSERT INTO pipeline_runs (pipeline, trigger, status, started_at, owner)
                 VALUES (?1, ?2, 'queued', ?3, 'queued') RETURNING id",
                vals![pipeline, trigger, now],
            )?
            .get(0)
    }

    /// Record how a run ended; when it succeeded, queue a run of each of `followers` (the
    /// pipelines scheduled after it) in the same transaction, so none is lost.
    pub fn finish_pipeline_run(
        &self,
        id: i64,
        status: &str,
        finished_at: &str,
        followers: &[String],
    ) -> Result<()> {
        self.conn()?.transaction(|tx| {
            tx.execute(
                "UPDATE pipeline_runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
                vals![id, status, finished_at],
            )?;
            if status == "success" {
                for f in followers {
                    tx.execute(
                        "INSERT INTO pipeline_runs (pipeline, trigger, status, started_at, owner)
                         VALUES (?1, 'after', 'queued', ?2, ?3)",
                        vals![f, finished_at, format!("after run {id}")],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Queue the runs of a pipeline's scheduled (or backfilled) intervals not queued before,
    /// and move its schedule's cursor to `cursor`, in one transaction: an interval is never
    /// lost between the two, nor queued twice. The ids of the runs queued.
    pub fn queue_intervals(
        &self,
        pipeline: &str,
        trigger: &str,
        intervals: &[(String, String)],
        cursor: Option<&str>,
        now: &str,
    ) -> Result<Vec<i64>> {
        self.conn()?.transaction(|tx| {
            let mut ids = Vec::new();
            for (start, end) in intervals {
                // An interval queued before (the unique index) is not queued again.
                if let Some(row) = tx.query_opt(
                    "INSERT INTO pipeline_runs (pipeline, trigger, interval_start, interval_end, status, started_at, owner)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, 'queued') ON CONFLICT DO NOTHING RETURNING id",
                    vals![pipeline, trigger, start, end, now],
                )? {
                    ids.push(row.get(0)?);
                }
            }
            if let Some(cursor) = cursor {
                tx.execute(
                    "INSERT INTO pipeline_schedules (pipeline, cursor) VALUES (?1, ?2)
                     ON CONFLICT (pipeline) DO UPDATE SET cursor = excluded.cursor",
                    vals![pipeline, cursor],
                )?;
            }
            Ok(ids)
        })
    }

    /// Where a pipeline's schedule has got to (the end of the last interval queued).
    pub fn schedule_cursor(&self, pipeline: &str) -> Result<Option<String>> {
        self.conn()?
            .query_opt(
                "SELECT cursor FROM pipeline_schedules WHERE pipeline = ?1",
                vals![pipeline],
            )?
            .map(|r| r.get(0))
            .transpose()
    }

    /// Take a queued (or interrupted) run to run it; false when someone else took it.
    pub fn claim_pipeline_run(&self, id: i64, owner: &str) -> Result<bool> {
        let n = self.conn()?.execute(
            "UPDATE pipeline_runs SET status = 'running', owner = ?2
             WHERE id = ?1 AND status IN ('queued', 'interrupted')",
            vals![id, owner],
        )?;
        Ok(n == 1)
    }

    /// Runs in one of `statuses`, oldest first.
    pub fn pipeline_runs_with_status(&self, statuses: &[&str]) -> Result<Vec<PipelineRunRecord>> {
        let marks: Vec<String> = (1..=statuses.len()).map(|i| format!("?{i}")).collect();
        let params: Vec<crate::db::Val> =
            statuses.iter().map(|s| crate::db::ToVal::val(*s)).collect();
        self.conn()?
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE status IN ({}) ORDER BY id",
                    marks.join(", ")
                ),
                &params,
            )?
            .iter()
            .map(run_record)
            .collect()
    }

    /// Mark the runs a scheduler owned (`owner` starts with `owner_prefix`) and that were
    /// still running as interrupted, with their running attempts; the process ids of those
    /// attempts (which may have outlived their scheduler).
    pub fn interrupt_pipeline_runs(&self, owner_prefix: &str, now: &str) -> Result<Vec<i64>> {
        let pattern = format!("{}%", owner_prefix.replace('%', ""));
        self.conn()?.transaction(|tx| {
            let pids = tx
                .query(
                    "SELECT s.pid FROM pipeline_steps s JOIN pipeline_runs r ON r.id = s.run_id
                     WHERE r.status = 'running' AND r.owner LIKE ?1 AND s.status = 'running' AND s.pid IS NOT NULL",
                    vals![pattern],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<Vec<i64>>>()?;
            tx.execute(
                "UPDATE pipeline_steps SET status = 'interrupted', finished_at = ?2,
                     message = 'the scheduler running it stopped'
                 WHERE status = 'running' AND run_id IN
                     (SELECT id FROM pipeline_runs WHERE status = 'running' AND owner LIKE ?1)",
                vals![pattern, now],
            )?;
            tx.execute(
                "UPDATE pipeline_runs SET status = 'interrupted' WHERE status = 'running' AND owner LIKE ?1",
                vals![pattern],
            )?;
            Ok(pids)
        })
    }

    /// Mark one run that is still running as interrupted, with its running attempts (their
    /// message: `why`); the process ids of those attempts.
    pub fn interrupt_pipeline_run(&self, id: i64, now: &str, why: &str) -> Result<Vec<i64>> {
        self.conn()?.transaction(|tx| {
            let pids = tx
                .query(
                    "SELECT pid FROM pipeline_steps
                     WHERE run_id = ?1 AND status = 'running' AND pid IS NOT NULL",
                    vals![id],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<Vec<i64>>>()?;
            tx.execute(
                "UPDATE pipeline_steps SET status = 'interrupted', finished_at = ?2, message = ?3
                 WHERE run_id = ?1 AND status = 'running'",
                vals![id, now, why],
            )?;
            tx.execute(
                "UPDATE pipeline_runs SET status = 'interrupted', finished_at = ?2
                 WHERE id = ?1 AND status = 'running'",
                vals![id, now],
            )?;
            Ok(pids)
        })
    }

    /// Queue a run again that did not succeed (failed, interrupted, or left running by a
    /// process that ended), its unfinished attempts marked interrupted.
    pub fn requeue_pipeline_run(&self, id: i64) -> Result<()> {
        self.conn()?.transaction(|tx| {
            tx.execute(
                "UPDATE pipeline_steps SET status = 'interrupted', message = 'the process running it ended'
                 WHERE run_id = ?1 AND status = 'running'",
                vals![id],
            )?;
            tx.execute(
                "UPDATE pipeline_runs SET status = 'queued', finished_at = NULL
                 WHERE id = ?1 AND status <> 'success'",
                vals![id],
            )?;
            Ok(())
        })
    }

    /// Record an alert about a run; false when that alert was recorded before.
    pub fn record_pipeline_alert(&self, run_id: i64, event: &str, at: &str) -> Result<bool> {
        let n = self.conn()?.execute(
            "INSERT INTO pipeline_alerts (run_id, event, sent_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            vals![run_id, event, at],
        )?;
        Ok(n == 1)
    }

    /// Remember the process an attempt runs in.
    pub fn set_step_pid(&self, run_id: i64, step: &str, attempt: u32, pid: u32) -> Result<()> {
        self.conn()?.execute(
            "UPDATE pipeline_steps SET pid = ?4 WHERE run_id = ?1 AND step = ?2 AND attempt = ?3",
            vals![run_id, step, attempt, pid],
        )?;
        Ok(())
    }

    /// Record an attempt as started.
    pub fn start_step_attempt(
        &self,
        run_id: i64,
        step: &str,
        attempt: u32,
        started_at: &str,
    ) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO pipeline_steps (run_id, step, attempt, status, started_at)
             VALUES (?1, ?2, ?3, 'running', ?4)
             ON CONFLICT (run_id, step, attempt) DO UPDATE SET status = 'running',
               started_at = excluded.started_at, finished_at = NULL, exit_code = NULL,
               message = NULL, log = NULL, pid = NULL",
            vals![run_id, step, attempt, started_at],
        )?;
        Ok(())
    }

    /// Record how an attempt ended.
    pub fn finish_step_attempt(
        &self,
        run_id: i64,
        step: &str,
        attempt: u32,
        end: &StepEnd<'_>,
    ) -> Result<()> {
        self.conn()?.execute(
            "UPDATE pipeline_steps SET status = ?4, finished_at = ?5, exit_code = ?6, message = ?7, log = ?8
             WHERE run_id = ?1 AND step = ?2 AND attempt = ?3",
            vals![
                run_id,
                step,
                attempt,
                end.status,
                end.finished_at,
                end.exit_code,
                end.message,
                end.log
            ],
        )?;
        Ok(())
    }

    /// Record a step that never ran, and why.
    pub fn record_step_skipped(&self, run_id: i64, step: &str, at: &str, why: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO pipeline_steps (run_id, step, attempt, status, started_at, finished_at, message)
             VALUES (?1, ?2, 0, 'skipped', ?3, ?3, ?4)
             ON CONFLICT (run_id, step, attempt) DO UPDATE SET status = 'skipped',
               started_at = excluded.started_at, finished_at = excluded.finished_at,
               exit_code = NULL, message = excluded.message, log = NULL, pid = NULL",
            vals![run_id, step, at, why],
        )?;
        Ok(())
    }

    /// The latest runs, newest first, of one pipeline or of all.
    pub fn pipeline_runs(
        &self,
        pipeline: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PipelineRunRecord>> {
        self.conn()?
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM pipeline_runs
                     WHERE ?1 IS NULL OR pipeline = ?1 ORDER BY id DESC LIMIT ?2"
                ),
                vals![pipeline, limit],
            )?
            .iter()
            .map(run_record)
            .collect()
    }

    /// One run and each attempt of each of its steps, in the order they were recorded.
    pub fn pipeline_run(
        &self,
        id: i64,
    ) -> Result<Option<(PipelineRunRecord, Vec<StepAttemptRecord>)>> {
        let mut conn = self.conn()?;
        let run = conn.query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE id = ?1"),
            vals![id],
        )?;
        let Some(run) = run else {
            return Ok(None);
        };
        let steps = conn
            .query(
                "SELECT run_id, step, attempt, status, started_at, finished_at, exit_code, message, log
                 FROM pipeline_steps WHERE run_id = ?1 ORDER BY rowid",
                vals![id],
            )?
            .iter()
            .map(|r| {
                Ok(StepAttemptRecord {
                    run_id: r.get(0)?,
                    step: r.get(1)?,
                    attempt: r.get(2)?,
                    status: r.get(3)?,
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                    exit_code: r.get(6)?,
                    message: r.get(7)?,
                    log: r.get(8)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((run_record(&run)?, steps)))
    }
}
