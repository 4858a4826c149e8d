//! Quality checks in a run: anomaly tests (measured as their table model is written, or on
//! their own), and quarantine (the model's row checks and where failing rows go).

use strata_engine::{Materialization, MaterializeRequest, Warehouse};
use strata_project::data_tests::DataTest;

use crate::results::NodeStatus;
use crate::work::{Done, request_for};

/// The request writing a model's retried quarantined rows: the model's own configs (how it
/// merges), its checks, and no SQL yet. `None` when the model quarantines nothing.
pub fn quarantine_request(
    model: &strata_project::Model,
    run_id: &str,
) -> Option<(MaterializeRequest, strata_engine::Quarantine)> {
    let quarantine = quarantine_of(model)?;
    let materialization = Materialization::parse(model.materialized())?;
    let req = request_for(
        model,
        materialization,
        String::new(),
        run_id.to_string(),
        false,
    );
    Some((req, quarantine))
}

/// Where a model's failing rows go, and its row checks (`quarantine:`; checked at load).
pub(crate) fn quarantine_of(model: &strata_project::Model) -> Option<strata_engine::Quarantine> {
    let checks =
        strata_project::quarantine::checks(model.config.get(strata_project::quarantine::KEY)?)
            .ok()?;
    Some(strata_engine::Quarantine {
        relation: strata_project::quarantine::relation(&model.relation),
        checks: checks.into_iter().map(|c| (c.name, c.failing)).collect(),
    })
}

/// A quarantine check naming a column the model's query lacks stops the build, naming it.
pub(crate) async fn check_quarantine_columns(
    warehouse: &dyn Warehouse,
    model: &strata_project::Model,
    sql: &str,
) -> Result<(), String> {
    let Some(value) = model.config.get(strata_project::quarantine::KEY) else {
        return Ok(());
    };
    let checks = strata_project::quarantine::checks(value)?;
    if checks.iter().all(|c| c.column.is_none()) {
        return Ok(());
    }
    let schema = warehouse.describe(sql).await.map_err(|e| e.to_string())?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for c in &checks {
        if let Some(column) = &c.column
            && !names.iter().any(|n| n.eq_ignore_ascii_case(column))
        {
            return Err(format!(
                "quarantine check `{}` names column `{column}`, which the model's query does not return{}; nothing was written (the columns are: {})",
                c.name,
                strata_common::did_you_mean(column, names.iter().copied()),
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// The run's time (`now`, as snapshots get it) as a UTC instant.
pub(crate) fn run_time(now: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::NaiveDateTime::parse_from_str(now, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .unwrap_or_else(|_| chrono::Utc::now())
}

/// The anomaly tests of the models in a run, measured as their model is written.
#[derive(Default)]
pub(crate) struct Anomalies {
    /// By model: its anomaly tests in the run (test id, arguments, `where` filter).
    pub tests: std::collections::HashMap<
        String,
        Vec<(String, strata_project::anomaly::AnomalySpec, Option<String>)>,
    >,
    /// What a model's write measured, by test id, until the test takes it.
    pub measured: std::sync::Mutex<
        std::collections::HashMap<String, Vec<datafusion::arrow::record_batch::RecordBatch>>,
    >,
}

/// The observers measuring a table model's anomaly tests as it is written: each test's
/// metric query over the rows written (a test whose query cannot be drawn up measures on its
/// own when it runs, and says why).
pub(crate) async fn observers(
    warehouse: &dyn Warehouse,
    tests: &[(String, strata_project::anomaly::AnomalySpec, Option<String>)],
    sql: &str,
    now: &str,
) -> Vec<(String, String)> {
    let Ok(schema) = warehouse.describe(sql).await else {
        return Vec::new();
    };
    tests
        .iter()
        .filter_map(|(id, spec, filter)| {
            let rows = match filter {
                Some(w) => format!("select * from {} where {w}", strata_engine::OBSERVED_ROWS),
                None => format!("select * from {}", strata_engine::OBSERVED_ROWS),
            };
            strata_quality::anomaly::measure_query(spec, &schema, &rows, run_time(now))
                .ok()
                .map(|q| (id.clone(), q))
        })
        .collect()
}

/// Measure an anomaly test's metrics (or take what its model's write measured), keep them,
/// and judge them by `severity`. Too little history is a warning, not a failure.
pub(crate) async fn run_anomaly_test(
    warehouse: &dyn Warehouse,
    meta: Option<&strata_meta::MetaStore>,
    (test, run_id): (&DataTest, &str),
    spec: Result<strata_project::anomaly::AnomalySpec, String>,
    sql: String,
    now: chrono::DateTime<chrono::Utc>,
    measured: Option<Vec<datafusion::arrow::record_batch::RecordBatch>>,
) -> Done {
    // Arguments are checked when the project loads.
    let spec = match spec {
        Ok(s) => s,
        Err(e) => return Done::error(e, Some(sql)),
    };
    let subject = strata_quality::anomaly::Subject {
        test_id: &test.unique_id,
        node_id: test.attached_node.as_deref().unwrap_or(&test.unique_id),
        run_id,
    };
    let judgement =
        match strata_quality::anomaly::run(warehouse, meta, &subject, &spec, &sql, now, measured)
            .await
        {
            Ok(j) => j,
            Err(e) => return Done::error(e, Some(sql)),
        };
    let status = if judgement.anomalies > 0 {
        match test.severity() == "error" {
            true => NodeStatus::Fail,
            false => NodeStatus::Warn,
        }
    } else if judgement.short_history {
        NodeStatus::Warn
    } else {
        NodeStatus::Pass
    };
    Done {
        status,
        message: judgement.message,
        rows_affected: None,
        failures: Some(judgement.anomalies as u64),
        sql: Some(sql),
        sample: None,
    }
}
