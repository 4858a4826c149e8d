//! Bad input and faults, as a demanding user would try them: each case checks the exit code,
//! the key words of the message (what is wrong, where, how to fix it), that no panic text or
//! backtrace reaches the user, and that the warehouse — every table file and the catalog's
//! relations — is exactly as it was. New features add their cases here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::project::TestProject;

/// Every file of the target's lake (the catalog file aside) with its bytes, and the catalog's
/// relations: what a failed command must leave unchanged.
#[derive(Debug, PartialEq)]
struct Warehouse {
    files: BTreeMap<PathBuf, Vec<u8>>,
    relations: String,
}

fn warehouse(p: &TestProject) -> Warehouse {
    let lake = p.path().join(".strata/dev");
    let files = walkdir::WalkDir::new(&lake)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            !e.file_name()
                .to_string_lossy()
                .starts_with("metadata.sqlite")
        })
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read lake file");
            (
                e.path().strip_prefix(&lake).expect("in lake").to_path_buf(),
                bytes,
            )
        })
        .collect();
    let meta = strata_meta::MetaStore::open(&lake.join("metadata.sqlite")).expect("catalog");
    let relations = format!("{:?}", meta.relations("strata", None).expect("relations"));
    Warehouse { files, relations }
}

/// Run `strata ARGS` expecting exit code `code`, with backtraces requested: the output must
/// hold `words`, and no panic message or stack frame.
fn refused(p: &TestProject, args: &[&str], code: i32, words: &[&str]) -> String {
    let out = p
        .strata(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run strata");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "strata {args:?}:\n{text}");
    for w in words {
        assert!(
            text.contains(w),
            "strata {args:?}: expected `{w}` in:\n{text}"
        );
    }
    for leak in ["panicked", "stack backtrace", "   0: ", "RUST_BACKTRACE"] {
        assert!(
            !text.contains(leak),
            "strata {args:?}: `{leak}` leaked:\n{text}"
        );
    }
    text
}

const GROWING: &str = "{{ config(materialized='incremental') }}\n\
select value as id from generate_series(1, {{ var('upto', 3) }})\n\
{% if is_incremental() %}where value > (select coalesce(max(id), 0) from {{ this }}){% endif %}";

fn built() -> TestProject {
    let p = TestProject::with_files(&[("models/ids.sql", GROWING)]);
    p.ok(&["run"]);
    p
}

#[test]
fn clean_never_deletes_a_warehouse() {
    let p = built();
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main}\n    prod: {type: strata, schema: main, lake: store/prod}\n",
    );
    std::fs::create_dir_all(p.path().join("store/prod/main/ids/_delta_log")).expect("mkdir");
    std::fs::create_dir_all(p.path().join("target")).expect("mkdir");
    let before = warehouse(&p);
    let outside = tempfile::tempdir().expect("tempdir");
    let outside_rel = format!(
        "../{}",
        outside.path().file_name().expect("name").to_string_lossy()
    );
    let cases: [(&str, &[&str]); 4] = [
        (
            "[target, .strata]",
            &["refusing to delete `.strata`", "holds a lake"],
        ),
        ("[.strata/dev/main]", &["holds a lake"]),
        // Another target's lake is found too.
        ("[store]", &["refusing to delete `store`", "holds a lake"]),
        ("[\".\"]", &["inside the project"]),
    ];
    for (targets, words) in cases {
        p.write(
            "strata.yml",
            &format!("name: t\nprofile: t\nclean-targets: {targets}\n"),
        );
        refused(&p, &["clean"], 2, words);
        assert_eq!(warehouse(&p), before, "{targets}");
        assert!(
            p.path().join("target").is_dir(),
            "{targets}: nothing is deleted"
        );
    }
    std::fs::create_dir_all(outside.path()).expect("mkdir");
    p.write(
        "strata.yml",
        &format!("name: t\nprofile: t\nclean-targets: [\"{outside_rel}\"]\n"),
    );
    refused(&p, &["clean"], 2, &["inside the project"]);
    assert!(outside.path().is_dir());
    p.write(
        "strata.yml",
        "name: t\nprofile: t\nclean-targets: [target]\n",
    );
    p.ok(&["clean"]);
    assert!(!p.path().join("target").exists());
    assert_eq!(warehouse(&p), before);
}

#[test]
fn a_lake_that_is_the_project_is_refused_by_every_command() {
    let p = built();
    let before = warehouse(&p);
    for lake in ["\"\"", ".", "..", "models/.."] {
        p.write(
            "profiles.yml",
            &format!("t:\n  target: dev\n  outputs:\n    dev: {{type: strata, lake: {lake}}}\n"),
        );
        for command in [&["debug"][..], &["run"], &["ls"], &["clean"]] {
            refused(&p, command, 2, &["profiles.yml", "lake"]);
        }
    }
    assert!(p.path().join("models/ids.sql").is_file());
    assert_eq!(warehouse(&p), before);
}

/// The newest commit file of a table of the dev lake.
fn newest_commit(p: &TestProject, table: &str) -> PathBuf {
    let log = p
        .path()
        .join(".strata/dev/main")
        .join(table)
        .join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)
        .expect("log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    commits.pop().expect("a commit")
}

fn damaged_log_is_refused_then_rebuilt(damage: &[u8], words: &[&str]) {
    let p = built();
    p.ok(&["run", "--vars", "{upto: 5}"]);
    let commit = newest_commit(&p, "ids");
    std::fs::write(&commit, damage).expect("damage the commit");
    let before = warehouse(&p);
    let file = commit.display().to_string();
    let mut expected = vec!["main.ids", file.as_str(), "--full-refresh"];
    expected.extend_from_slice(words);
    refused(&p, &["run", "--vars", "{upto: 8}"], 1, &expected);
    assert_eq!(
        warehouse(&p),
        before,
        "nothing is committed on a damaged log"
    );
    refused(
        &p,
        &["show", "--inline", "select count(*) from main.ids"],
        2,
        &expected,
    );
    p.ok(&["run", "--vars", "{upto: 8}", "--full-refresh"]);
    assert_eq!(
        p.query("select count(*) as n, max(id) as top from ids"),
        vec!["n,top", "8,8"]
    );
    p.ok(&["run", "--vars", "{upto: 9}"]);
    assert_eq!(p.query("select count(*) as n from ids"), vec!["n", "9"]);
}

#[test]
fn an_empty_commit_file_is_reported_and_a_full_refresh_recovers() {
    damaged_log_is_refused_then_rebuilt(b"", &["is empty"]);
}

#[test]
fn a_commit_file_that_is_not_json_is_reported_and_a_full_refresh_recovers() {
    damaged_log_is_refused_then_rebuilt(b"{\"add\": {\"path\": \"part-", &["not valid JSON"]);
}

#[test]
fn endless_macro_recursion_is_an_error_not_a_crash() {
    for (file, text) in [
        (
            "macros/again.sql",
            "{% macro again(n) %}{{ again(n + 1) }}{% endmacro %}",
        ),
        (
            "macros/ping_pong.sql",
            "{% macro ping(n) %}{{ pong(n) }}{% endmacro %}{% macro pong(n) %}{{ ping(n) }}{% endmacro %}",
        ),
    ] {
        let p = built();
        let before = warehouse(&p);
        let call = if file.contains("again") {
            "again(1)"
        } else {
            "ping(1)"
        };
        p.write(file, text);
        p.write("models/loops.sql", &format!("select {{{{ {call} }}}} as x"));
        refused(
            &p,
            &["run"],
            2,
            &["models/loops.sql", "nested", "calls deep"],
        );
        assert_eq!(warehouse(&p), before);
    }
}

#[test]
fn malformed_selections_are_errors_never_everything() {
    let p = built();
    let before = warehouse(&p);
    for (flag, value, words) in [
        ("-s", "+a+b+", &["cannot appear inside a name"][..]),
        ("-s", "((ids", &["cannot appear inside a name"]),
        (
            "-s",
            "config.materialized",
            &["has no value", "config.materialized:VALUE"],
        ),
        ("-s", "", &["empty selector"]),
        ("--exclude", ",", &["empty part"]),
        ("-s", "ids,,ids", &["empty part"]),
    ] {
        for command in ["run", "ls"] {
            refused(&p, &[command, flag, value], 2, words);
        }
    }
    assert_eq!(warehouse(&p), before);
}

#[test]
fn bad_seed_files_name_the_file_line_and_problem() {
    let p = built();
    p.write("seeds/good.csv", "id\n1\n");
    p.ok(&["seed"]);
    let before = warehouse(&p);
    for (text, words) in [
        (
            "id,name\n1,\"open\n2,b\n3,c\n",
            &["seeds/bad.csv:2", "never closed"][..],
        ),
        ("id,id\n1,2\n", &["seeds/bad.csv:1", "`id` appears twice"]),
        ("id,\n1,2\n", &["seeds/bad.csv:1", "column 2", "no name"]),
        ("", &["seeds/bad.csv:1", "empty"]),
        ("id,name\n1,a,extra\n", &["seeds/bad.csv", "line 2"]),
    ] {
        p.write("seeds/bad.csv", text);
        let out = refused(&p, &["seed", "-s", "bad"], 1, words);
        assert!(!out.contains("Arrow error"), "{out}");
        assert_eq!(warehouse(&p), before, "{text:?}");
    }
    p.write("seeds/bad.csv", "id;name\n1;a\n");
    p.write(
        "strata.yml",
        "name: t\nprofile: t\nseeds:\n  t:\n    bad:\n      +delimiter: ';;'\n",
    );
    refused(
        &p,
        &["seed"],
        2,
        &["seeds/bad.csv", "`delimiter` must be one character"],
    );
    assert_eq!(warehouse(&p), before);
}

#[test]
fn configuration_is_validated_with_file_line_and_closest_key() {
    let p = built();
    let before = warehouse(&p);
    for (tree, words) in [
        (
            "  +materialized: [table]\n",
            &["strata.yml:4", "`materialized` must be a string"][..],
        ),
        (
            "  t:\n    +enabled: \"nah\"\n",
            &["strata.yml:5", "`enabled` must be true or false"],
        ),
        (
            "  +tags: 5\n",
            &["strata.yml:4", "`tags` must be a string or a list"],
        ),
    ] {
        p.write(
            "strata.yml",
            &format!("name: t\nprofile: t\nmodels:\n{tree}"),
        );
        refused(&p, &["run"], 2, words);
    }
    p.write("strata.yml", "name: t\nprofile: t\n");
    p.write(
        "models/ids.sql",
        &format!(
            "{{{{ config(materialized=5) }}}}\n{}",
            GROWING.replace("{{ config(materialized='incremental') }}\n", "")
        ),
    );
    refused(
        &p,
        &["run"],
        2,
        &["models/ids.sql:1", "`materialized` must be", "not 5"],
    );
    assert_eq!(warehouse(&p), before);
    p.write("models/ids.sql", GROWING);
    p.write(
        "strata.yml",
        "name: t\nprofile: t\nmodle-paths: [models]\nmodels:\n  t:\n    +materialised: table\n",
    );
    let out = refused(&p, &["ls"], 0, &[]);
    assert!(
        out.contains("strata.yml:3") && out.contains("did you mean `model-paths`"),
        "{out}"
    );
    assert!(
        out.contains("strata.yml:6") && out.contains("did you mean `materialized`"),
        "{out}"
    );
    p.write("dbt_project.yml", "name: t\nprofile: t\n");
    let out = refused(&p, &["ls"], 0, &[]);
    assert!(out.contains("using strata.yml"), "{out}");
}

/// A small tmpfs mounted at a fresh folder, unmounted on drop; `None` where this process may
/// not mount (not root, or a container without the capability).
struct Mount(tempfile::TempDir);

impl Mount {
    fn tmpfs(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "note: cannot mount a tmpfs here; the full-disk and read-only cases are not run"
            );
            return None;
        }
        Some(Self(dir))
    }

    fn read_only(&self) {
        let status = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.0.path())
            .status()
            .expect("remount");
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

fn with_lake(p: &TestProject, lake: &str) {
    p.write(
        "profiles.yml",
        &format!("t:\n  target: dev\n  outputs:\n    dev: {{type: strata, lake: \"{lake}\"}}\n"),
    );
}

#[test]
fn storage_problems_get_their_own_messages() {
    let p = built();
    let file = p.path().join("lake-file");
    std::fs::write(&file, "not a folder").expect("write");
    with_lake(&p, &file.display().to_string());
    refused(
        &p,
        &["run"],
        2,
        &["a file is in the way where a folder belongs"],
    );
    let out = refused(&p, &["run"], 2, &[]);
    assert!(!out.contains("--lock-timeout"), "no lock hint: {out}");
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, metadata: models}\n",
    );
    refused(
        &p,
        &["run"],
        2,
        &["models", "a folder is in the way where a file belongs"],
    );
    refused(
        &p,
        &["show", "--inline", "select 1"],
        2,
        &["a folder is in the way"],
    );

    if let Some(disk) = Mount::tmpfs("1m") {
        with_lake(&p, &disk.0.path().join("lake").display().to_string());
        p.ok(&["run", "--vars", "{upto: 3}"]);
        p.write(
            "models/big.sql",
            "{{ config(materialized='table') }}select value as v, repeat('x', 200) || cast(value as varchar) as pad from generate_series(1, 200000)",
        );
        let out = refused(
            &p,
            &["run"],
            1,
            &["the disk holding the table main.big", "is full"],
        );
        assert!(!out.contains("--lock-timeout"), "{out}");
        assert!(
            !disk.0.path().join("lake/main/big").exists(),
            "nothing half-written"
        );
        p.remove("models/big.sql");
        disk.read_only();
        refused(
            &p,
            &["run"],
            2,
            &["read-only file system", "commands that only read"],
        );
        assert_eq!(p.query("select count(*) as n from ids"), vec!["n", "3"]);
        p.ok(&["history", "ids"]);
    }
}

#[test]
fn microbatch_builds_refuse_endless_batches_and_a_missing_event_time_once() {
    let p = built();
    let before = warehouse(&p);
    let model = |begin: &str, column: &str| {
        format!(
            "{{{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='day', batch_size='day', begin='{begin}') }}}}\nselect cast('2024-01-02' as timestamp) as {column}, 1 as n"
        )
    };
    p.write("models/daily.sql", &model("1900-01-01", "day"));
    let out = refused(
        &p,
        &["run", "-s", "daily"],
        1,
        &[
            "batches (1900-01-01 00:00:00 to",
            "more than --max-batches 1000",
            "--event-time-start",
        ],
    );
    assert!(!out.contains("batch 1 of"), "nothing ran: {out}");
    assert_eq!(warehouse(&p), before);

    p.write("models/daily.sql", &model("2024-01-01", "dya"));
    let out = refused(
        &p,
        &["run", "-s", "daily", "--max-batches", "100000"],
        1,
        &[
            "no column `day`, its event_time",
            "the columns are: dya, n",
            "no batch was run",
        ],
    );
    assert_eq!(
        out.matches("no column `day`").count(),
        1,
        "said once: {out}"
    );
    assert_eq!(warehouse(&p), before);

    p.write("models/daily.sql", &model("2024-01-01", "day"));
    p.ok(&[
        "run",
        "-s",
        "daily",
        "--event-time-start",
        "2024-01-02",
        "--event-time-end",
        "2024-01-03",
    ]);
    assert_eq!(p.query("select count(*) as n from daily"), vec!["n", "1"]);
}

#[test]
fn sql_errors_and_odd_files_read_plainly() {
    let p = built();
    let before = warehouse(&p);
    p.write(
        "models/typo.sql",
        "{{ config(materialized='table') }}\n\nselect 1 as x\n  frm nowhere\n",
    );
    let out = refused(
        &p,
        &["run", "-s", "typo"],
        1,
        &["models/typo.sql:4: SQL syntax error: Expected: end of statement, found: frm"],
    );
    assert!(!out.contains("ParserError"), "{out}");
    assert_eq!(warehouse(&p), before);
    p.remove("models/typo.sql");
    // A byte-order mark at the start of a file is not part of the SQL.
    p.write("models/marked.sql", "\u{feff}select 1 as x");
    p.ok(&["run", "-s", "marked"]);
    let before = warehouse(&p);
    let long = "x".repeat(300);
    p.write(
        "models/marked.sql",
        &format!("{{{{ config(alias='{long}') }}}}select 1 as x"),
    );
    refused(
        &p,
        &["run", "-s", "marked"],
        1,
        &["name is too long: 300 bytes", "at most 255"],
    );
    assert_eq!(
        warehouse(&p),
        before,
        "nothing of the long name was written"
    );
}

/// Start `strata run`, send `signal` once it writes a data file of `main.big`, and return its
/// exit code and output.
fn signal_while_writing(p: &TestProject, signal: &str) -> (Option<i32>, String) {
    let table = ".strata/dev/main/big";
    let before = p.files_under(table);
    let mut child = p
        .std_command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    p.wait_for_new_data_file(table, &before, &mut child);
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn run_statuses(p: &TestProject) -> Vec<String> {
    let meta = strata_meta::MetaStore::open(&p.path().join(".strata/dev/metadata.sqlite"))
        .expect("catalog");
    meta.runs(100)
        .expect("runs")
        .into_iter()
        .map(|r| r.status)
        .collect()
}

#[test]
fn interrupted_runs_say_so_in_one_line_and_are_recorded() {
    let small = "{{ config(materialized='table') }}select value as v from generate_series(1, 3)";
    let big = "{{ config(materialized='table') }}select value as v, repeat('x', 200) as pad from generate_series(1, 30000000)";
    let p = TestProject::with_files(&[("models/big.sql", small)]);
    p.ok(&["run"]);
    p.write("models/big.sql", big);
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let (status, out) = signal_while_writing(&p, signal);
        assert_eq!(status, Some(code), "{out}");
        assert!(
            out.contains(&format!(
                "interrupted by SIG{signal}: the run is recorded as cancelled; main.big left at version 0"
            )),
            "{out}"
        );
        for leak in ["panicked", "   0: "] {
            assert!(!out.contains(leak), "{out}");
        }
        assert_eq!(p.query("select sum(v) as s from big"), vec!["s", "6"]);
        assert_eq!(run_statuses(&p)[0], "cancelled");
    }
    // A run killed outright is marked `interrupted` by the next writer.
    let mut child = p
        .std_command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while run_statuses(&p).first().map(String::as_str) != Some("running") {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    p.write("models/big.sql", small);
    let out = p.ok(&["run"]);
    assert!(
        out.contains("1 earlier run of this target ended without finishing"),
        "{out}"
    );
    let statuses = run_statuses(&p);
    assert_eq!(statuses[0], "success");
    assert_eq!(statuses[1], "interrupted");
}

#[test]
fn a_damaged_catalog_is_named_and_rebuilt_from_the_lake() {
    let p = built();
    p.write("models/names.sql", "select 'a' as name");
    p.ok(&["run"]);
    let catalog = p.path().join(".strata/dev/metadata.sqlite");
    let lake_before = warehouse(&p).files;
    std::fs::write(&catalog, "this is not a database").expect("damage the catalog");
    for command in [&["run"][..], &["show", "--inline", "select 1"]] {
        refused(
            &p,
            command,
            2,
            &[
                "metadata.sqlite is damaged",
                "the tables in the lake are intact",
                "strata catalog rebuild --target dev",
            ],
        );
    }
    let out = p.ok(&["catalog", "rebuild"]);
    assert!(out.contains("from its lake: 1 table (main.ids)"), "{out}");
    assert!(out.contains("metadata.sqlite.damaged-"), "{out}");
    assert_eq!(warehouse(&p).files, lake_before, "the lake is untouched");
    assert_eq!(p.query("select count(*) as n from ids"), vec!["n", "3"]);
    // The incremental model goes on from its table; the view comes back with the run.
    p.ok(&["run", "--vars", "{upto: 5}"]);
    assert_eq!(
        p.query("select count(*) as n, count(distinct id) as d from ids"),
        vec!["n,d", "5,5"]
    );
    assert_eq!(p.query("select name from names"), vec!["name", "a"]);
    refused(
        &p,
        &["catalog", "rebuild"],
        2,
        &["opens and reads fine", "--force"],
    );
}

#[test]
fn an_error_raised_in_a_macro_names_the_macro_and_the_model() {
    let p = built();
    p.write(
        "macros/guard.sql",
        "{% macro guard(n) %}\n{% if n > 1 %}\n{{ exceptions.raise_compiler_error('n is too big: ' ~ n) }}\n{% endif %}\n{{ n }}\n{% endmacro %}\n",
    );
    p.write("models/guarded.sql", "\n\n\n\nselect {{ guard(5) }} as n");
    refused(
        &p,
        &["run"],
        2,
        &[
            "models/guarded.sql",
            "model `guarded`",
            "n is too big: 5 (in macros/guard.sql:3)",
        ],
    );
}

#[test]
fn numbers_follow_the_documented_rules() {
    let p = built();
    let before = warehouse(&p);
    refused(
        &p,
        &["show", "--inline", "select 1.0 / 0.0 as x"],
        2,
        &["division by zero"],
    );
    let out = p.ok(&[
        "show",
        "--inline",
        "select cast('NaN' as double) as n, cast('inf' as double) as i, -cast('inf' as double) as m, cast(null as double) as k, 2.5 as f",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.trim(),
        r#"{"node":"inline_query","columns":[{"name":"n","type":"DOUBLE"},{"name":"i","type":"DOUBLE"},{"name":"m","type":"DOUBLE"},{"name":"k","type":"DOUBLE"},{"name":"f","type":"DOUBLE"}],"show":[{"n":"NaN","i":"Infinity","m":"-Infinity","f":2.5}]}"#
    );
    // Integer literals beyond 64 bits keep every digit (DECIMAL), in JSON too.
    let out = p.ok(&[
        "show",
        "--inline",
        "select 123456789012345678901234567890 as big, cast(1 as decimal(10, 2)) as d",
        "--output",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert!(
        out.contains(r#""show":[{"big":123456789012345678901234567890,"d":1.00}]"#),
        "{out}"
    );
    assert_eq!(shown["columns"][1]["type"], "DECIMAL(10,2)");
    p.write(
        "models/wide.sql",
        "{{ config(materialized='table') }}select cast(1 as decimal(40, 2)) as d",
    );
    refused(
        &p,
        &["run", "-s", "wide"],
        1,
        &[
            "column `d` is DECIMAL(40,2)",
            "at most 38 digits",
            "decimal(38, s)",
        ],
    );
    assert_eq!(warehouse(&p), before);
}

#[test]
fn null_into_a_not_null_column_names_the_column_and_the_way_out() {
    // A table with a NOT NULL column, as earlier versions made from a first build's query.
    let p = TestProject::with_files(&[(
        "models/ids.sql",
        "{{ config(materialized='incremental') }}select cast(null as bigint) as id",
    )]);
    let log = p.path().join(".strata/dev/main/ids/_delta_log");
    std::fs::create_dir_all(&log).expect("mkdir");
    let schema = r#"{\"type\":\"struct\",\"fields\":[{\"name\":\"id\",\"type\":\"long\",\"nullable\":false,\"metadata\":{}}]}"#;
    std::fs::write(
        log.join("00000000000000000000.json"),
        format!(
            "{{\"protocol\":{{\"minReaderVersion\":1,\"minWriterVersion\":2}}}}\n{{\"metaData\":{{\"id\":\"4f1c1f4e-0000-4000-8000-000000000001\",\"format\":{{\"provider\":\"parquet\",\"options\":{{}}}},\"schemaString\":\"{schema}\",\"partitionColumns\":[],\"configuration\":{{}},\"createdTime\":1700000000000}}}}\n{{\"commitInfo\":{{\"timestamp\":1700000000000,\"operation\":\"CREATE TABLE\"}}}}\n"
        ),
    )
    .expect("write the log");
    let before = walkdir::WalkDir::new(&log).into_iter().count();
    refused(
        &p,
        &["run"],
        1,
        &[
            "main.ids: 1 rows put NULL into a NOT NULL column (`id`)",
            "--full-refresh",
            "coalesce(id",
        ],
    );
    assert_eq!(
        walkdir::WalkDir::new(&log).into_iter().count(),
        before,
        "nothing committed"
    );
    p.ok(&["run", "--full-refresh"]);
    assert_eq!(p.query("select count(*) as n from ids"), vec!["n", "1"]);
    p.ok(&["run"]);
    assert_eq!(p.query("select count(*) as n from ids"), vec!["n", "2"]);
}

#[test]
fn empty_microbatch_batches_commit_nothing_unless_rows_go() {
    let p = TestProject::with_files(&[(
        "models/daily.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='day', batch_size='day', begin='2024-01-01') }}\n\
         select * from (select cast('{{ var('day', '2024-01-05') }}' as timestamp) as day, 1 as n) as t\n\
         where day >= '{{ model.batch.event_time_start }}' and day < '{{ model.batch.event_time_end }}'",
    )]);
    let log = p.path().join(".strata/dev/main/daily/_delta_log");
    let commits = || {
        std::fs::read_dir(&log)
            .expect("log")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    };
    let period = [
        "--event-time-start",
        "2024-01-01",
        "--event-time-end",
        "2024-01-31",
    ];
    let out = p.ok(&[&["run"][..], &period].concat());
    assert_eq!(out.matches("nothing to write").count(), 28, "{out}");
    // The first batch creates the table; only the batch with rows writes after it.
    assert_eq!(commits(), 2);
    p.ok(&[&["run"][..], &period].concat());
    assert_eq!(commits(), 3, "a re-run writes only the batch with rows");
    // A batch whose rows are gone still removes them.
    p.ok(&[&["run", "--vars", "{day: '2024-02-01'}"][..], &period].concat());
    assert_eq!(commits(), 4);
    assert_eq!(p.query("select count(*) as n from daily"), vec!["n", "0"]);
}
