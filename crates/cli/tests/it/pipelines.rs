//! Pipelines: `strata trigger` runs steps in dependency order with retries, timeouts and
//! sensors; `strata runs` shows what happened; mistakes in pipelines/*.yml are named before
//! anything runs.

use crate::project::TestProject;

/// The run's steps as (step, attempt, status), from `strata runs show ID -o json`.
fn attempts(p: &TestProject, run: &str) -> Vec<(String, i64, String)> {
    let out = p.ok(&["runs", "show", run, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect(&out);
    json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_string(),
                s["attempt"].as_i64().unwrap_or_default(),
                s["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn steps(list: &[(&str, i64, &str)]) -> Vec<(String, i64, String)> {
    list.iter()
        .map(|(s, a, st)| (s.to_string(), *a, st.to_string()))
        .collect()
}

/// A command that fails until it has been run `n` times (counting in a file).
fn fails_until(n: u32) -> String {
    format!(
        "k=$(cat tries 2>/dev/null || echo 0); k=$((k+1)); echo $k > tries; echo attempt $k; [ $k -ge {n} ]"
    )
}

#[test]
fn a_step_that_fails_twice_then_succeeds_is_one_run_of_three_attempts() {
    let p = TestProject::starter();
    p.write(
        "pipelines/daily.yml",
        &format!(
            "steps:\n  - {{name: flaky, command: \"{}\", retries: 2, backoff: {{initial: 50ms, max: 200ms}}}}\n  - {{name: transform, build: {{}}}}\n",
            fails_until(3)
        ),
    );
    let out = p.ok(&["trigger", "daily"]);
    assert!(out.contains("daily: run 1 success"), "{out}");
    assert!(
        out.contains("flaky failed") && out.contains("attempt 2 in"),
        "{out}"
    );
    assert_eq!(
        attempts(&p, "1"),
        steps(&[
            ("flaky", 1, "failed"),
            ("flaky", 2, "failed"),
            ("flaky", 3, "success"),
            ("transform", 1, "success"),
        ])
    );
    // The build step built the project.
    let rows = p.ok(&[
        "show",
        "--inline",
        "select count(*) as n from {{ ref('orders') }}",
    ]);
    assert!(rows.contains("60"), "{rows}");
    let list = p.ok(&["runs"]);
    assert!(list.contains("daily") && list.contains("success"), "{list}");
    let shown = p.ok(&["runs", "show", "1"]);
    assert!(
        shown.contains("attempt 1") && shown.contains("the end of its output"),
        "{shown}"
    );
}

#[test]
fn a_sensor_that_never_holds_times_out_and_what_follows_is_skipped() {
    let p = TestProject::starter();
    p.write(
        "pipelines/wait.yml",
        "steps:\n  - {name: files, sensor: {files: \"incoming/*.csv\"}, timeout: 1s, poke_interval: 200ms, retries: 3}\n  - {name: transform, build: {}}\n  - {name: later, command: \"touch later-ran\", after: [transform]}\n",
    );
    let out = p.fails(&["trigger", "wait"], 1);
    assert!(out.contains("files timed out"), "{out}");
    assert!(out.contains("run 1 failed"), "{out}");
    // A sensor's timeout is its whole wait: not retried.
    assert_eq!(
        attempts(&p, "1"),
        steps(&[
            ("files", 1, "timed_out"),
            ("transform", 0, "skipped"),
            ("later", 0, "skipped"),
        ])
    );
    assert!(!p.path().join("later-ran").exists());

    // Once a file is there, it holds.
    p.write("incoming/a.csv", "id\n1\n");
    let out = p.ok(&["trigger", "wait"]);
    assert!(out.contains("run 2 success"), "{out}");
    assert!(p.path().join("later-ran").exists());
}

#[test]
fn timeouts_stop_a_step_and_continue_lets_the_run_go_on() {
    let p = TestProject::starter();
    p.write(
        "pipelines/slow.yml",
        "steps:\n  - {name: slow, command: \"sleep 30\", timeout: 300ms, on_failure: continue}\n  - {name: next, command: \"echo next ran\"}\n  - {name: sql, sensor: {sql: \"(select count(*) from {{ source('raw', 'orders') }}) > 0\"}, poke_interval: 100ms, timeout: 30s}\n",
    );
    let started = std::time::Instant::now();
    let out = p.ok(&["trigger", "slow"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the sleep was stopped"
    );
    assert!(out.contains("slow timed out"), "{out}");
    assert!(out.contains("run 1 success"), "{out}");
    assert_eq!(
        attempts(&p, "1"),
        steps(&[
            ("slow", 1, "timed_out"),
            ("next", 1, "success"),
            ("sql", 1, "success"),
        ])
    );
}

#[test]
fn mistakes_in_pipelines_are_named_before_anything_runs() {
    let p = TestProject::starter();
    for (text, says) in [
        (
            "schedule: {cron: \"61 6 * * *\"}\nsteps:\n  - {name: a, command: \"touch ran\"}\n",
            "p.yml:1",
        ),
        (
            "schedule: {cron: \"0 6 * * *\", timezone: Europe/Berln}\nsteps:\n  - {name: a, command: \"touch ran\"}\n",
            "not a time zone",
        ),
        (
            "steps:\n  - {name: a, command: \"touch ran\"}\n  - {name: b, snapshop: {}}\n",
            "did you mean `snapshot`",
        ),
        (
            "steps:\n  - {name: a, command: \"touch ran\", after: [b]}\n  - {name: b, command: x}\n",
            "in a circle",
        ),
    ] {
        p.write("pipelines/p.yml", text);
        let err = p.fails(&["trigger", "p"], 2);
        assert!(err.contains(says), "{text}: {err}");
        assert!(err.contains("pipelines/p.yml:"), "{text}: {err}");
        let err = p.fails(&["pipelines"], 2);
        assert!(err.contains(says), "{text}: {err}");
        assert!(!p.path().join("ran").exists(), "nothing ran");
    }
    std::fs::remove_file(p.path().join("pipelines/p.yml")).expect("rm");
    let err = p.fails(&["trigger", "q"], 2);
    assert!(err.contains("no pipeline is named `q`"), "{err}");
    let err = p.fails(&["runs", "show", "7"], 2);
    assert!(err.contains("no pipeline run 7"), "{err}");
}
