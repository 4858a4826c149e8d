//! A Ballista cluster from the strata binary: a scheduler and two executors on loopback, the
//! lake on an S3-compatible server (moto). A project with seeds, views, tables, the three
//! incremental strategies, a snapshot and tests builds on `engine: ballista` exactly as on the
//! embedded warehouse, over two rounds of data; an executor killed while a model is computed
//! makes the model fail or run again elsewhere, and every table keeps a consistent version.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::project::{TestProject, free_port, wait_for_port};
use crate::s3::{create_bucket, s3_env, start_moto};
use crate::warehouse_postgres::{ORDERS_2, project, same_on};

/// Processes of the cluster, stopped when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `strata cluster ARGS`, with the object store's environment, started in `dir`; its
/// events (tasks started) go to `dir/NAME.log`.
fn start(dir: &std::path::Path, env: &[(&str, &str)], name: &str, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(dir)
        .env("STRATA_LOG", "ballista_executor=info")
        .envs(env.iter().copied())
        .arg("cluster")
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a cluster process")
}

/// Tasks executor `n` has started so far.
fn tasks_started(dir: &std::path::Path, n: usize) -> usize {
    std::fs::read_to_string(dir.join(format!("executor{n}.log")))
        .unwrap_or_default()
        .matches("Execute task")
        .count()
}

/// A scheduler and two executors; returns them and the scheduler's port.
fn cluster(dir: &std::path::Path, env: &[(&str, &str)]) -> (Processes, u16) {
    let scheduler = free_port();
    let mut processes = Processes(vec![start(
        dir,
        env,
        "scheduler",
        &[
            "scheduler",
            "--port",
            &scheduler.to_string(),
            "--executor-timeout",
            "4",
        ],
    )]);
    wait_for_port(scheduler);
    for n in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        let work = dir.join(format!("executor{n}"));
        std::fs::create_dir_all(&work).expect("work dir");
        processes.0.push(start(
            dir,
            env,
            &format!("executor{n}"),
            &[
                "executor",
                "--scheduler",
                &format!("df://127.0.0.1:{scheduler}"),
                "--port",
                &flight.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--concurrent-tasks",
                "2",
                "--heartbeat-interval",
                "1",
                "--work-dir",
                &work.to_string_lossy(),
            ],
        ));
        wait_for_port(flight);
    }
    (processes, scheduler)
}

fn profiles(scheduler: u16) -> String {
    format!(
        "t:
  target: dev
  outputs:
    dev: {{type: strata, schema: analytics, threads: 4}}
    cluster:
      type: strata
      schema: analytics
      threads: 4
      engine: ballista
      scheduler: df://127.0.0.1:{scheduler}
      lake: s3://cluster/lake
"
    )
}

#[test]
fn a_project_builds_on_a_ballista_cluster_as_on_the_embedded_warehouse() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "cluster");
    let owned = s3_env(moto.port);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let work = tempfile::tempdir().expect("tempdir");
    let (mut processes, scheduler) = cluster(work.path(), &env);

    let p = project(0, "unused");
    p.write("profiles.yml", &profiles(scheduler));
    for target in ["dev", "cluster"] {
        let out = p.ok_with(&["--target", target, "build", "--vars", "{round: 1}"], &env);
        assert!(out.contains("ERROR=0"), "{target}: {out}");
    }
    same_on(&p, "dev", "cluster", &env);
    // Every table is a Delta table the client committed.
    let out = p.ok_with(&["--target", "cluster", "history", "customer_totals"], &env);
    assert!(out.contains("WRITE"), "{out}");
    let out = p.ok_with(&["--target", "cluster", "debug"], &env);
    assert!(
        out.contains(&format!(
            "engine:        ballista (df://127.0.0.1:{scheduler})"
        )) && out.contains("query engine:  OK"),
        "{out}"
    );

    // Round 2: a changed and a new order; merge, delete+insert, append and the snapshot.
    p.write("seeds/orders.csv", ORDERS_2);
    for target in ["dev", "cluster"] {
        let out = p.ok_with(&["--target", target, "build", "--vars", "{round: 2}"], &env);
        assert!(out.contains("ERROR=0"), "{target}: {out}");
    }
    same_on(&p, "dev", "cluster", &env);

    // A failing query names the model and leaves the table as it was.
    let before = p.ok_with(&["--target", "cluster", "history", "customer_totals"], &env);
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect cast('x' as int) as customer_id",
    );
    let out = p.fails_with(
        &["--target", "cluster", "run", "-s", "customer_totals"],
        &env,
        1,
    );
    assert!(
        out.contains("customer_totals") && out.contains("Cast error"),
        "{out}"
    );
    assert_eq!(
        p.ok_with(&["--target", "cluster", "history", "customer_totals"], &env),
        before
    );

    // An executor dies while a model is computed on the cluster: Ballista runs its tasks
    // again on the other executor, or the model fails; either way every table is at a
    // version a build committed whole.
    p.write(
        "seeds/nums.csv",
        &std::iter::once("id".to_string())
            .chain((1..=400).map(|i| i.to_string()))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    p.write(
        "models/slow.sql",
        "{{ config(materialized='table') }}
select count(distinct a.id + b.id * 401 + c.id * 160801) as n
from {{ ref('nums') }} a cross join {{ ref('nums') }} b cross join {{ ref('nums') }} c
where a.id <= {{ var('limit', 2) }}",
    );
    p.ok_with(
        &["--target", "cluster", "build", "-s", "nums", "slow"],
        &env,
    );
    let idle = [0, 1].map(|n| tasks_started(work.path(), n));
    let history = p.ok_with(&["--target", "cluster", "history", "slow"], &env);
    let mut child = p
        .std_command(&[
            "--target",
            "cluster",
            "run",
            "-s",
            "slow",
            "--vars",
            "{limit: 200}",
        ])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata run");
    // Kill the executor that runs the query's first task, while it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy = loop {
        if let Some(n) = (0..2).find(|&n| tasks_started(work.path(), n) > idle[n]) {
            break n;
        }
        assert!(Instant::now() < deadline, "no task reached an executor");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut executor = processes.0.remove(1 + busy);
    executor.kill().expect("kill the executor");
    executor.wait().expect("reap");
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the run did not end after an executor was killed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = p.ok_with(&["--target", "cluster", "history", "slow"], &env);
    if out.status.success() {
        // Run again elsewhere: one new version, with the right count.
        assert_eq!(
            after.lines().count(),
            history.lines().count() + 1,
            "{after}"
        );
        assert_eq!(
            p.ok_with(
                &[
                    "--target",
                    "cluster",
                    "show",
                    "--inline",
                    "select n from {{ ref('slow') }}",
                    "-o",
                    "csv"
                ],
                &env
            )
            .trim(),
            "n\n32000000",
            "{text}"
        );
    } else {
        assert!(text.contains("slow"), "{text}");
        assert_eq!(after, history, "{text}");
    }
    // The remaining executor still serves queries.
    let out = p.ok_with(
        &[
            "--target",
            "cluster",
            "show",
            "--inline",
            "select count(*) as n from {{ ref('orders') }}",
            "-o",
            "csv",
        ],
        &env,
    );
    assert_eq!(out.trim(), "n\n4");
}

#[test]
fn cluster_targets_say_what_is_wrong() {
    let p = TestProject::starter();
    let target = |extra: &str| {
        format!(
            "shop:\n  target: c\n  outputs:\n    c: {{type: strata, schema: main, threads: 1{extra}}}\n"
        )
    };
    // No scheduler, or not a df:// url: the profile names the target and the fix.
    for extra in [
        ", engine: ballista",
        ", engine: ballista, scheduler: 'http://localhost:50050'",
    ] {
        p.write("profiles.yml", &target(extra));
        let out = p.fails(&["run"], 2);
        assert!(
            out.contains("profiles.yml")
                && out.contains("`engine: ballista` needs `scheduler: df://host:port`")
                && out.contains("strata cluster scheduler"),
            "{out}"
        );
    }
    p.write("profiles.yml", &target(", engine: spark"));
    let out = p.fails(&["run"], 2);
    assert!(out.contains("unknown engine `spark`"), "{out}");
    // A scheduler that does not answer: said at once, with how to start one.
    let port = free_port();
    p.write(
        "profiles.yml",
        &target(&format!(
            ", engine: ballista, scheduler: 'df://127.0.0.1:{port}'"
        )),
    );
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains(&format!(
            "no Ballista scheduler answers at df://127.0.0.1:{port}"
        )) && out.contains(&format!("strata cluster scheduler --port {port}")),
        "{out}"
    );
}
