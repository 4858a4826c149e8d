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
    // The web UI's run history reads the same records.
    let s = crate::serve::serve(&p, &["--dev"]);
    let (code, _, page) = crate::serve::get(s.port, "/runs", None);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("href=\"/pipelines/runs/1\""), "{page}");
    let (code, _, page) = crate::serve::get(s.port, "/pipelines/runs/1", None);
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("flaky") && page.contains("attempt 1: the end of its output"),
        "{page}"
    );
    let (code, _, _) = crate::serve::get(s.port, "/pipelines/runs/99", None);
    assert_eq!(code, 404);
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

/// A `strata scheduler` in the project, its output in `name`.log.
fn scheduler(p: &TestProject, name: &str) -> std::process::Child {
    let log = std::fs::File::create(p.path().join(format!("{name}.log"))).expect("log");
    p.std_command(&["scheduler", "--tick", "200ms"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the scheduler")
}

fn wait_until(what: &str, limit_secs: u64, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit_secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn lines(p: &TestProject, file: &str) -> Vec<String> {
    std::fs::read_to_string(p.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_killed_scheduler_is_resumed_by_the_next_and_nothing_is_lost_or_run_twice() {
    let p = TestProject::starter();
    p.write(
        "pipelines/tick.yml",
        "schedule: {cron: \"*/2 * * * * *\", catchup: true}\nsteps:\n  - {name: a, command: \"echo a $STRATA_INTERVAL_START >> ticks\"}\n  - {name: b, command: \"echo b-started $STRATA_INTERVAL_START >> ticks; sleep 1.5; echo b $STRATA_INTERVAL_START >> ticks\"}\n",
    );
    let mut first = scheduler(&p, "first");
    // A second scheduler on the same target refuses, naming the first.
    wait_until("the first scheduler", 30, || {
        std::fs::read_to_string(p.path().join("first.log"))
            .is_ok_and(|l| l.contains("Scheduler on target"))
    });
    let err = p.fails(&["scheduler"], 2);
    assert!(
        err.contains("a scheduler already runs on target `dev`")
            && err.contains("strata scheduler` (pid"),
        "{err}"
    );
    // A run handed to the running scheduler.
    p.write(
        "pipelines/once.yml",
        "steps:\n  - {name: hello, command: \"echo hello >> detached\"}\n",
    );
    let out = p.ok(&["trigger", "once", "--detach"]);
    assert!(out.contains("queued for the running scheduler"), "{out}");
    wait_until("the detached run", 30, || !lines(&p, "detached").is_empty());
    // Killed while step b of a run is under way.
    wait_until("a run's step b", 30, || {
        lines(&p, "ticks")
            .iter()
            .any(|l| l.starts_with("b-started"))
    });
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    let killed_in = lines(&p, "ticks")
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("b-started ").map(str::to_string))
        .expect("the interval b was in");
    // Down for a while: intervals come due meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut second = scheduler(&p, "second");
    wait_until(
        "the interrupted run to be resumed and later ones to run",
        60,
        || {
            let ticks = lines(&p, "ticks");
            ticks.contains(&format!("b {killed_in}"))
                && ticks.iter().filter(|l| l.starts_with("b ")).count() >= 4
        },
    );
    second.kill().expect("stop");
    second.wait().expect("reap");
    let log = std::fs::read_to_string(p.path().join("second.log")).expect("log");
    assert!(log.contains("was interrupted; resuming it"), "{log}");

    let out = p.ok(&["runs", "tick", "-o", "json", "--limit", "100"]);
    let runs: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let mut intervals: Vec<(String, String, String)> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["interval_start"].as_str().unwrap_or_default().to_string(),
                r["interval_end"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    intervals.sort();
    // Every interval once, none missing between the first and the last.
    for w in intervals.windows(2) {
        assert_eq!(w[0].1, w[1].0, "intervals follow each other: {intervals:?}");
    }
    let ticks = lines(&p, "ticks");
    for (start, _, status) in &intervals {
        let a = ticks.iter().filter(|l| **l == format!("a {start}")).count();
        let b = ticks.iter().filter(|l| **l == format!("b {start}")).count();
        if status == "success" {
            assert_eq!((a, b), (1, 1), "{start}: each step once: {ticks:?}");
        } else {
            assert!(a <= 1 && b <= 1, "{start}: at most once: {ticks:?}");
        }
    }
    // The interrupted run: step a once, step b again as a second attempt.
    let run = runs
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["interval_start"].as_str() == Some(killed_in.as_str()))
        })
        .and_then(|r| r["id"].as_i64())
        .expect("the interrupted run");
    let steps = attempts(&p, &run.to_string());
    assert_eq!(
        steps,
        super::pipelines::steps(&[
            ("a", 1, "success"),
            ("b", 1, "interrupted"),
            ("b", 2, "success"),
        ])
    );
}

#[test]
fn a_run_whose_trigger_was_killed_is_marked_interrupted_and_its_step_stopped() {
    let p = TestProject::starter();
    p.write(
        "pipelines/slow.yml",
        "steps:\n  - {name: nap, command: \"sleep 60 & echo $! > nap.pid; wait\"}\n  - {name: after, command: \"true\", after: [nap]}\n",
    );
    let mut trigger = p
        .std_command(&["trigger", "slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the trigger");
    wait_until("the step to start", 30, || !lines(&p, "nap.pid").is_empty());
    let nap: i32 = lines(&p, "nap.pid")[0].parse().expect("a pid");
    trigger.kill().expect("SIGKILL");
    trigger.wait().expect("reaped");

    // The next command that reads the runs finds its process gone.
    assert_eq!(attempts(&p, "1"), steps(&[("nap", 1, "interrupted")]));
    let out = p.ok(&["runs", "show", "1", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(json["run"]["status"], "interrupted", "{json}");
    assert!(
        json["steps"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ended without finishing it")),
        "{json}"
    );
    // Nothing the step started is left running: not even the shell's own child.
    wait_until("the step's sleep to end", 10, || {
        !std::path::Path::new(&format!("/proc/{nap}")).exists()
            || std::fs::read_to_string(format!("/proc/{nap}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    // A new trigger of the pipeline runs as usual.
    p.write(
        "pipelines/slow.yml",
        "steps:\n  - {name: nap, command: \"true\"}\n",
    );
    p.ok_all(&["trigger", "slow"]);
    assert_eq!(attempts(&p, "2"), steps(&[("nap", 1, "success")]));
}

#[test]
fn a_backfill_runs_each_interval_with_its_bounds_and_again_only_what_failed() {
    let p = TestProject::starter();
    p.write(
        "models/marts/interval_seen.sql",
        "{{ config(materialized='table') }}\nselect '{{ var(\"interval_start\", \"none\") }}' as interval_start",
    );
    p.write(
        "pipelines/daily.yml",
        "schedule: {cron: \"0 6 * * *\", timezone: Europe/Berlin}\nsteps:\n  - {name: mark, command: \"echo $STRATA_INTERVAL_START >> done; [ $STRATA_INTERVAL_START != 2024-01-03T05:00:00+00:00 ] || [ -f fixed ]\"}\n  - {name: transform, build: {select: interval_seen}}\n",
    );
    let out = p.fails(
        &[
            "backfill",
            "daily",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-06",
            "--parallel",
            "2",
        ],
        1,
    );
    assert!(out.contains("backfilling 4 intervals"), "{out}");
    assert!(out.contains("3 succeeded, 1 did not"), "{out}");
    let done = lines(&p, "done");
    assert_eq!(done.len(), 4, "{done:?}");
    // 06:00 in Berlin is 05:00 UTC in winter.
    assert!(
        done.contains(&"2024-01-01T05:00:00+00:00".to_string()),
        "{done:?}"
    );

    std::fs::write(p.path().join("fixed"), "").expect("fix");
    let out = p.ok(&[
        "backfill",
        "daily",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-06",
    ]);
    assert!(out.contains("4 succeeded, 0 did not"), "{out}");
    let again = lines(&p, "done");
    assert_eq!(
        again.len(),
        5,
        "only the failed interval ran again: {again:?}"
    );
    assert_eq!(again[4], "2024-01-03T05:00:00+00:00");
    // Its build step saw the interval's bounds as vars.
    let seen = p.ok(&[
        "show",
        "--inline",
        "select interval_start from {{ ref('interval_seen') }}",
    ]);
    assert!(seen.contains("2024-01-03T05:00:00+00:00"), "{seen}");
    let runs = p.ok(&["runs", "daily"]);
    assert_eq!(runs.matches("backfill").count(), 4, "{runs}");
}

/// An HTTP server that answers 200 to each request and keeps each body.
fn webhook() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            // A request cut off (its sender killed mid-way) is not a message.
            let mut body = vec![0u8; length];
            if length == 0 || reader.read_exact(&mut body).is_err() {
                continue;
            }
            kept.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).to_string());
            let mut stream = reader.into_inner();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, bodies)
}

#[test]
fn a_failed_run_alerts_its_webhook_once_per_event() {
    let p = TestProject::starter();
    p.write(
        "pipelines/alerting.yml",
        "steps:\n  - {name: boom, command: \"echo it broke; exit 3\", retries: 1, backoff: {initial: 10ms}}\nalerts: {on: [failure, retries_exhausted], webhook: \"{{ env_var('STRATA_TEST_HOOK') }}/hook\"}\n",
    );
    let (port, bodies) = webhook();
    let hook = format!("http://127.0.0.1:{port}");
    let out = p.fails_with(
        &["trigger", "alerting"],
        &[("STRATA_TEST_HOOK", hook.as_str())],
        1,
    );
    assert!(out.contains("run 1 failed"), "{out}");
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let events: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect(b))
        .collect();
    let mut kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["failure", "retries_exhausted"]);
    for e in &events {
        assert_eq!(e["pipeline"], "alerting");
        assert_eq!(e["run_id"], 1);
        let text = e["text"].as_str().unwrap_or_default();
        assert!(text.contains("alerting") && text.contains("boom"), "{text}");
    }
    // Without the variable, the alert cannot be sent: said, and the run's outcome stands.
    let out = p.fails(&["trigger", "alerting"], 1);
    assert!(out.contains("run 2 failed"), "{out}");
    assert!(out.contains("STRATA_TEST_HOOK"), "{out}");
}

#[test]
fn a_pipeline_exports_as_an_airflow_dag_whose_tasks_run_single_steps() {
    let p = TestProject::starter();
    p.write(
        "pipelines/daily.yml",
        "schedule: {cron: \"0 6 * * *\", timezone: Europe/Berlin}\nsteps:\n  - {name: stage, build: {select: staging}}\n  - {name: marts, build: {select: marts}, retries: 2}\n  - {name: check, command: \"test -n \\\"$STRATA_INTERVAL_START\\\"\"}\n",
    );
    let out = p.ok(&["export", "airflow", "daily", "--out", "dags"]);
    assert!(out.contains("strata_daily.py"), "{out}");
    let dag = std::fs::read_to_string(p.path().join("dags/strata_daily.py")).expect("dag");
    for expected in [
        "dag_id=\"strata_daily\"",
        "schedule=CronDataIntervalTimetable(\"0 6 * * *\", timezone=\"Europe/Berlin\")",
        "start_date=pendulum.datetime(2000, 1, 1, tz=\"Europe/Berlin\")",
        "bash_command=strata(\"step\", \"daily\", \"marts\")",
        "retries=2",
        "stage >> marts",
        "marts >> check",
    ] {
        assert!(dag.contains(expected), "{expected}:\n{dag}");
    }
    p.ok(&[
        "export",
        "airflow",
        "daily",
        "--per-model",
        "--out",
        "dags-per-model",
    ]);
    let dag =
        std::fs::read_to_string(p.path().join("dags-per-model/strata_daily.py")).expect("dag");
    assert!(
        dag.contains("with TaskGroup(group_id=\"marts\") as marts:"),
        "{dag}"
    );
    assert!(
        dag.contains("bash_command=strata(\"build\", \"--select\", \"orders\")"),
        "{dag}"
    );
    assert!(dag.contains("marts__orders >> marts__customers"), "{dag}");

    // What each task runs: one attempt of one step, with the interval Airflow gives it.
    p.ok(&["step", "daily", "stage"]);
    let out = p.ok_with(
        &["step", "daily", "check"],
        &[
            ("STRATA_INTERVAL_START", "2024-06-01 04:00:00+00:00"),
            ("STRATA_INTERVAL_END", "2024-06-02T04:00:00+00:00"),
        ],
    );
    assert!(out.contains("check success"), "{out}");
    let out = p.fails(&["step", "daily", "check"], 1);
    assert!(out.contains("check failed"), "{out}");
    let err = p.fails(&["step", "daily", "chek"], 2);
    assert!(err.contains("did you mean `check`"), "{err}");
}

/// The messages a test SMTP server took: each one's recipients and text.
type Mail = std::sync::Arc<std::sync::Mutex<Vec<(Vec<String>, String)>>>;

/// An SMTP server that accepts every message and keeps each one's recipients and text.
fn mailbox() -> (u16, Mail) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = mail.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut out = stream.try_clone().expect("clone");
            let mut reader = BufReader::new(stream);
            let _ = out.write_all(b"220 mailbox ready\r\n");
            let (mut to, mut data, mut in_data) = (Vec::new(), String::new(), false);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        kept.lock().expect("lock").push((to.clone(), data.clone()));
                        let _ = out.write_all(b"250 queued\r\n");
                    } else {
                        data.push_str(&line);
                    }
                    continue;
                }
                let reply: &[u8] = match line.get(..4).unwrap_or("") {
                    "EHLO" => b"250-mailbox\r\n250 OK\r\n",
                    "RCPT" => {
                        to.push(line.trim_end()[9..].trim_matches(['<', '>']).to_string());
                        b"250 OK\r\n"
                    }
                    "DATA" => {
                        in_data = true;
                        b"354 go on\r\n"
                    }
                    "QUIT" => {
                        let _ = out.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => b"250 OK\r\n",
                };
                let _ = out.write_all(reply);
            }
        }
    });
    (port, mail)
}

#[test]
fn a_failed_run_alerts_by_email_through_smtp() {
    let p = TestProject::starter();
    p.write(
        "pipelines/mailing.yml",
        "steps:\n  - {name: boom, command: \"exit 3\"}\nalerts: {on: [failure], email: [oncall@example.org, data@example.org]}\n",
    );
    let (port, mail) = mailbox();
    let url = format!("smtp://127.0.0.1:{port}");
    let out = p.fails_with(
        &["trigger", "mailing"],
        &[
            ("STRATA_SMTP_URL", url.as_str()),
            ("STRATA_SMTP_FROM", "strata@example.org"),
        ],
        1,
    );
    assert!(out.contains("run 1 failed"), "{out}");
    let mail = mail.lock().expect("lock").clone();
    assert_eq!(mail.len(), 1, "{mail:?}");
    let (to, text) = &mail[0];
    assert_eq!(
        to,
        &vec![
            "oncall@example.org".to_string(),
            "data@example.org".to_string()
        ]
    );
    assert!(
        text.contains("Subject: [strata] mailing: run 1 failed: boom did not succeed"),
        "{text}"
    );
    assert!(text.contains("strata runs show 1"), "{text}");
    // No server named: said, and the run's outcome stands.
    let out = p.fails(&["trigger", "mailing"], 1);
    assert!(
        out.contains("run 2 failed") && out.contains("STRATA_SMTP_URL is not set"),
        "{out}"
    );
}

#[test]
fn a_scheduled_run_not_done_by_its_sla_is_alerted_once() {
    let p = TestProject::starter();
    let (port, bodies) = webhook();
    p.write(
        "pipelines/late.yml",
        &format!(
            "schedule: {{cron: \"*/2 * * * * *\"}}\nsteps:\n  - {{name: slow, command: \"sleep 4\"}}\nalerts: {{on: [sla_miss], sla: 1s, webhook: \"http://127.0.0.1:{port}/hook\"}}\n"
        ),
    );
    let mut s = scheduler(&p, "sched");
    wait_until("an sla_miss alert", 60, || {
        !bodies.lock().expect("lock").is_empty()
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    s.kill().expect("stop");
    s.wait().expect("reap");
    let bodies = bodies.lock().expect("lock").clone();
    let mut runs = Vec::new();
    for b in &bodies {
        let e: serde_json::Value = serde_json::from_str(b).expect(b);
        assert_eq!(e["event"], "sla_miss", "{b}");
        assert!(
            e["text"].as_str().unwrap_or_default().contains("is late"),
            "{b}"
        );
        runs.push(e["run_id"].as_i64().unwrap_or_default());
    }
    let before = runs.len();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), before, "one alert per late run: {bodies:?}");
}

#[test]
fn bad_backfill_and_export_requests_are_refused_before_anything_runs() {
    let p = TestProject::starter();
    p.write(
        "pipelines/daily.yml",
        "schedule: {cron: \"0 6 * * *\"}\nsteps:\n  - {name: mark, command: \"touch ran\"}\n",
    );
    p.write(
        "pipelines/manual.yml",
        "steps:\n  - {name: mark, command: \"touch ran\"}\n",
    );
    for (args, says) in [
        (
            vec![
                "backfill",
                "daily",
                "--start",
                "soon",
                "--end",
                "2024-01-02",
            ],
            "--start `soon` is not a time",
        ),
        (
            vec![
                "backfill",
                "daily",
                "--start",
                "2024-01-05",
                "--end",
                "2024-01-01",
            ],
            "--start must be before --end",
        ),
        (
            vec![
                "backfill",
                "daily",
                "--start",
                "2024-01-01 07:00",
                "--end",
                "2024-01-01 08:00",
            ],
            "names no whole interval",
        ),
        (
            vec![
                "backfill",
                "manual",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-05",
            ],
            "has no cron schedule to cut intervals by",
        ),
        (
            vec!["export", "airflow", "nightly"],
            "no pipeline is named `nightly`",
        ),
        (vec!["scheduler", "--tick", "0s"], "is not a duration"),
    ] {
        let err = p.fails(&args, 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!p.path().join("ran").exists(), "nothing ran");
    let runs = p.ok(&["runs"]);
    assert!(runs.contains("No pipeline runs yet"), "{runs}");
}
