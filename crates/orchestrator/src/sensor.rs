//! Sensors: looking every `poke_interval` until a condition holds (files there, sources
//! fresh, a SQL condition true) or the sensor's time runs out.

use std::time::{Duration, Instant};

use crate::execute::{AttemptEnd, Launch, Status};
use crate::pipeline::{Action, Sensor};
use crate::process::{command, run_process};

/// Look every `interval` until the sensor's condition holds, or `limit` has passed.
pub(crate) async fn poke_until(
    sensor: &Sensor,
    interval: Duration,
    limit: Duration,
    launch: &Launch,
    env: &[(String, String)],
) -> AttemptEnd {
    let deadline = Instant::now() + limit;
    let mut pokes = 0u32;
    let mut last = String::new();
    loop {
        pokes += 1;
        match poke(sensor, launch, env).await {
            Ok(true) => {
                return AttemptEnd {
                    status: Status::Success,
                    seconds: 0.0,
                    exit_code: None,
                    message: format!("the condition held (look {pokes})"),
                    log: last,
                };
            }
            Ok(false) => {}
            Err(e) => last = e,
        }
        let now = Instant::now();
        if now + interval > deadline {
            return AttemptEnd {
                status: Status::TimedOut,
                seconds: 0.0,
                exit_code: None,
                message: format!(
                    "the condition did not hold within {} ({pokes} looks){}",
                    crate::pipeline::show_duration(limit),
                    match last.is_empty() {
                        true => String::new(),
                        false => format!("; last: {}", last.lines().last().unwrap_or("")),
                    }
                ),
                log: last,
            };
        }
        tokio::time::sleep(interval).await;
    }
}

/// Whether the sensor's condition holds now; an error says why it could not tell.
async fn poke(sensor: &Sensor, launch: &Launch, env: &[(String, String)]) -> Result<bool, String> {
    match sensor {
        Sensor::Files(pattern) => {
            let full = launch.project_dir.join(pattern);
            let full = full.to_string_lossy().into_owned();
            let mut matches = glob::glob(&full).map_err(|e| format!("`{pattern}`: {e}"))?;
            Ok(matches.any(|m| m.is_ok()))
        }
        other => {
            let mut cmd = command(
                &Action::Sensor(other.clone()),
                launch,
                launch.vars.as_deref(),
                None,
            );
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let end = run_process(cmd, Some(Duration::from_secs(600)), &|_| {}).await;
            match (other, end.status) {
                (Sensor::Freshness(_), Status::Success) => Ok(true),
                (Sensor::Freshness(_), _) => Err(end.message),
                (_, Status::Success) => Ok(sql_holds(&end.log)),
                _ => Err(end.message),
            }
        }
    }
}

/// Whether `strata show -o json` printed a first row whose `holds` is 1.
fn sql_holds(output: &str) -> bool {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .any(|json| {
            json.get("show")
                .and_then(serde_json::Value::as_array)
                .and_then(|rows| rows.first())
                .and_then(|row| row.get("holds"))
                .and_then(serde_json::Value::as_i64)
                == Some(1)
        })
}
