//! The `saas` scenario: the SaaS example project (examples/saas) end to end at several
//! scales — `strata datagen saas`, `strata ingest`, `strata build` of seeds and models, and
//! `strata test` — each step timed once, with the rows it handled per second and its peak
//! resident memory (GNU time). The target: scale 100 within 5 minutes and 4 GiB.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{Row, time_with_memory};

pub fn saas(strata: &Path, scales: &[f64]) -> Result<Vec<Row>> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/saas");
    let mut rows = Vec::new();
    for &scale in scales {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        copy_project(&example, &example, dir)?;
        let size = format!("x{scale}");
        let mut total = Duration::ZERO;
        let mut peak = 0;

        eprintln!("saas x{scale}: generating");
        let scale_arg = scale.to_string();
        let (t, mib, _) =
            time_with_memory(strata, dir, &["datagen", "saas", "--scale", &scale_arg])?;
        let (raw_rows, raw_bytes) = raw_size(&dir.join("data/raw"))?;
        rows.push(step("generate", &size, t, mib, raw_rows, "raw rows"));
        rows.last_mut().expect("a row").note +=
            &format!(", {:.0} MiB of JSON", raw_bytes as f64 / 1048576.0);
        total += t;
        peak = peak.max(mib);

        eprintln!("saas x{scale}: ingesting");
        let (t, mib, _) = time_with_memory(strata, dir, &["ingest"])?;
        rows.push(step("ingest", &size, t, mib, raw_rows, "rows"));
        total += t;
        peak = peak.max(mib);

        eprintln!("saas x{scale}: building");
        let (t, mib, out) =
            time_with_memory(strata, dir, &["build", "--exclude-resource-type", "test"])?;
        let written = rows_written(&out);
        rows.push(step("build", &size, t, mib, written, "rows written"));
        total += t;
        peak = peak.max(mib);

        eprintln!("saas x{scale}: testing");
        let (t, mib, out) = time_with_memory(strata, dir, &["test"])?;
        let tests = out.matches(" PASS ").count() + out.matches(" WARN ").count();
        rows.push(Row {
            scenario: "saas test".into(),
            size: size.clone(),
            median: t,
            min: t,
            note: format!("{tests} tests, peak {mib} MiB"),
        });
        total += t;
        peak = peak.max(mib);

        rows.push(Row {
            scenario: "saas total".into(),
            size,
            median: total,
            min: total,
            note: format!(
                "peak {peak} MiB{}",
                if scale >= 100.0 {
                    " (target: < 5 min, < 4096 MiB)"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(rows)
}

fn step(what: &str, size: &str, t: Duration, mib: u64, rows: u64, unit: &str) -> Row {
    Row {
        scenario: format!("saas {what}"),
        size: size.to_string(),
        median: t,
        min: t,
        note: format!(
            "{rows} {unit}, {:.2} M rows/s, peak {mib} MiB",
            rows as f64 / t.as_secs_f64() / 1e6
        ),
    }
}

/// Lines and bytes of the generated files.
fn raw_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut lines, mut bytes) = (0, 0);
    for entry in walk(dir)? {
        let data = std::fs::read(&entry).with_context(|| entry.display().to_string())?;
        lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += data.len() as u64;
    }
    Ok((lines, bytes))
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// The rows a build's status lines say it wrote (`[SELECT 1234 …]`, `INSERT 12`).
fn rows_written(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| {
            let (_, tail) = l.rsplit_once('[')?;
            let mut words = tail.split_whitespace();
            match words.next()? {
                "SELECT" | "INSERT" | "MERGE" => {
                    words.next()?.trim_end_matches(",").parse::<u64>().ok()
                }
                _ => None,
            }
        })
        .sum()
}

fn copy_project(base: &Path, dir: &Path, dest: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = path.strip_prefix(base)?;
        let name = rel.to_string_lossy();
        if [".strata", "target", "logs", "data/raw"].contains(&name.as_ref()) {
            continue;
        }
        if path.is_dir() {
            copy_project(base, &path, dest)?;
        } else {
            let to = dest.join(rel);
            std::fs::create_dir_all(to.parent().context("a parent")?)?;
            std::fs::copy(&path, &to)?;
        }
    }
    Ok(())
}
