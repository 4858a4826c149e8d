//! `orchestrate`: what `strata trigger` adds around the steps it runs.
//! - Two dependent steps, each a shell command writing the clock in nanoseconds as it starts
//!   and as it ends: the gap from the first's end to the second's start is the scheduling
//!   overhead (recording the attempt, reaping the process, planning, starting the next;
//!   target < 50 ms; Airflow's is seconds).
//! - 1,000 steps in a chain, each `true`: the run's wall time less 1,000 times what starting
//!   and reaping that process costs alone (`sh -c true`, measured here) is the overhead of
//!   the pipeline (target < 5 s).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Row, base_project, measure, time_strata, write};

fn clock_ns(dir: &Path, file: &str) -> Result<u128> {
    let text = std::fs::read_to_string(dir.join(file)).with_context(|| file.to_string())?;
    text.trim()
        .parse()
        .with_context(|| format!("{file}: {text}"))
}

pub fn orchestrate(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    base_project(dir, 2)?;
    write(
        dir,
        "pipelines/pair.yml",
        "steps:\n  - {name: first, command: \"date +%s%N > first.end\"}\n  - {name: second, command: \"date +%s%N > second.start\"}\n",
    )?;
    let mut steps = String::from("steps:\n");
    for i in 0..1000 {
        steps.push_str(&format!("  - {{name: s{i}, command: \"true\"}}\n"));
    }
    write(dir, "pipelines/thousand.yml", &steps)?;

    // The gap between two dependent steps.
    let mut gaps = Vec::new();
    time_strata(strata, dir, &["trigger", "pair"])?;
    for _ in 0..runs.max(5) {
        time_strata(strata, dir, &["-q", "trigger", "pair"])?;
        let (end, start) = (clock_ns(dir, "first.end")?, clock_ns(dir, "second.start")?);
        if start < end {
            bail!("the second step started before the first ended");
        }
        gaps.push(Duration::from_nanos((start - end) as u64));
    }
    gaps.sort();
    let mut rows = vec![Row {
        scenario: "orchestrate: step to step".into(),
        size: "2".into(),
        median: gaps[gaps.len() / 2],
        min: gaps[0],
        note: "first step's end to the next one's start (target < 50 ms)".into(),
    }];

    // What one step's process costs by itself: `sh -c true`, started and reaped.
    let started = Instant::now();
    for _ in 0..200 {
        Command::new("sh").args(["-c", "true"]).status()?;
    }
    let process = started.elapsed() / 200;
    let (median, min) = measure(runs.min(3), || {
        time_strata(strata, dir, &["-q", "trigger", "thousand"])
    })?;
    let overhead = median.saturating_sub(process * 1000);
    rows.push(Row {
        scenario: "orchestrate: 1,000 steps".into(),
        size: "1000".into(),
        median,
        min,
        note: format!(
            "whole run; less 1,000 × {:.2} ms to start `sh -c true`: {:.2} s of overhead (target < 5 s)",
            process.as_secs_f64() * 1e3,
            overhead.as_secs_f64()
        ),
    });
    Ok(rows)
}
