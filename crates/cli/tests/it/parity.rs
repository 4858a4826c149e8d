//! What a dbt user's commands, flags and project files do: analyses, clone, deps and the
//! flags dbt teams put in their jobs.

use crate::project::TestProject;

#[test]
fn analyses_are_compiled_never_run_and_cannot_be_referenced() {
    let p = TestProject::with_files(&[
        ("models/orders.sql", "select 1 as id, 'a' as kind"),
        (
            "analyses/kinds.sql",
            "select kind, count(*) as n from {{ ref('orders') }} group by 1",
        ),
    ]);
    let out = p.ok(&["run"]);
    assert!(out.contains("PASS=1 "), "{out}");
    assert!(!out.contains("kinds"), "{out}");
    let listed = p.ok(&["ls", "--resource-type", "analysis"]);
    assert_eq!(listed.trim(), "t.analysis.kinds");
    let sql = p.ok(&["compile", "-s", "kinds"]);
    assert!(sql.contains(r#"from "strata"."main"."orders""#), "{sql}");
    assert!(
        p.read("target/compiled/t/analyses/kinds.sql")
            .contains("group by 1")
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let node = &manifest["nodes"]["analysis.t.kinds"];
    assert_eq!(node["resource_type"], "analysis");
    assert_eq!(node["compiled"], true);
    assert_eq!(
        node["depends_on"]["nodes"],
        serde_json::json!(["model.t.orders"])
    );
    // A model cannot ref an analysis, as in dbt.
    p.write("models/uses.sql", "select * from {{ ref('kinds') }}");
    let err = p.fails(&["run"], 2);
    assert!(err.contains("ref('kinds') does not exist"), "{err}");
    assert!(err.contains("`kinds` is an analysis"), "{err}");
}

#[test]
fn favor_state_reads_the_state_run_even_where_this_target_has_built() {
    let p = TestProject::starter();
    p.prod_state();
    p.ok(&["run"]);
    let compiled = "target/compiled/shop/models/marts/customers.sql";
    // --defer alone: what this target built wins.
    p.ok(&["run", "-s", "customers", "--state", "prod-state", "--defer"]);
    assert!(
        !p.read(compiled).contains("strata_state"),
        "{}",
        p.read(compiled)
    );
    // --favor-state: the state run's relations, for everything outside the selection.
    p.ok(&[
        "run",
        "-s",
        "customers",
        "--state",
        "prod-state",
        "--defer",
        "--favor-state",
    ]);
    let sql = p.read(compiled);
    assert!(sql.contains(r#""strata_state"."gold"."orders""#), "{sql}");
    // It needs --defer, as in dbt.
    let err = p.fails(&["run", "-s", "customers", "--favor-state"], 2);
    assert!(err.contains("--defer"), "{err}");
}

#[test]
fn warn_error_options_choose_which_warnings_fail() {
    let p = TestProject::with_files(&[("models/m.sql", "select 1 as a")]);
    let out = p.ok_all(&["ls", "-s", "nothing_here"]);
    assert!(!out.contains("error"), "{out}");
    for options in [
        "{error: [NoNodesForSelectionCriteria]}",
        "{include: all}",
        r#"{"error": "all"}"#,
    ] {
        let err = p.fails(
            &["ls", "-s", "nothing_here", "--warn-error-options", options],
            1,
        );
        assert!(
            err.contains("1 warning treated as error"),
            "{options}: {err}"
        );
    }
    // Named as a warning, or silenced: not an error; silenced, not even shown.
    let out = p.ok_all(&[
        "ls",
        "-s",
        "nothing_here",
        "--warn-error-options",
        "{error: all, warn: [NoNodesForSelectionCriteria]}",
    ]);
    assert!(out.contains("matches no enabled node"), "{out}");
    let out = p.ok_all(&[
        "ls",
        "-s",
        "nothing_here",
        "--warn-error-options",
        "{error: all, silence: [NoNodesForSelectionCriteria]}",
    ]);
    assert!(!out.contains("matches no enabled node"), "{out}");
    // --warn-error makes every warning an error, as dbt.
    p.fails(&["ls", "-s", "nothing_here", "--warn-error"], 1);
    // A test that warns fails under LogTestResult, dbt's event for test results.
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    data_tests:\n      - accepted_values: {column_name: a, values: [2], config: {severity: warn}}\n",
    );
    p.ok_all(&["build"]);
    let out = p.fails(
        &["build", "--warn-error-options", "{error: [LogTestResult]}"],
        1,
    );
    assert!(out.contains("ERROR=1"), "{out}");
    let err = p.fails(&["ls", "--warn-error-options", "{bad: 1}"], 2);
    assert!(err.contains("unknown key `bad`"), "{err}");
}

#[test]
fn log_path_keeps_a_log_file_and_no_print_hides_print() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{% do print('hello from the template') %}select 1 as a",
    )]);
    let out = p.ok_all(&["run", "--log-path", "logs"]);
    assert!(out.contains("hello from the template"), "{out}");
    let log = p.read("logs/strata.log");
    assert!(log.contains("run --log-path logs"), "{log}");
    assert!(log.contains("PASS=1"), "{log}");
    assert!(log.contains("hello from the template"), "{log}");
    let out = p.ok_all(&["run", "--no-print"]);
    assert!(!out.contains("hello from the template"), "{out}");
    let out = p
        .strata(&["run"])
        .env("DBT_PRINT", "false")
        .output()
        .expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("hello from the template"), "{text}");
}

#[test]
fn resource_types_tell_data_tests_from_unit_tests_everywhere() {
    let p = TestProject::with_files(&[
        ("models/m.sql", "select 1 as id"),
        (
            "models/schema.yml",
            "version: 2
models:
  - name: m
    columns:
      - name: id
        data_tests: [not_null]
unit_tests:
  - name: one_row
    model: m
    given: []
    expect:
      rows:
        - {id: 1}
exposures:
  - name: board
    type: dashboard
    owner: {name: Ops}
    depends_on: [ref('m')]
",
        ),
    ]);
    p.ok(&["run"]);
    let out = p.ok(&["test", "--resource-type", "unit_test"]);
    assert!(out.contains("PASS=1 ") && out.contains("one_row"), "{out}");
    assert!(!out.contains("not_null_m_id"), "{out}");
    let out = p.ok(&["test", "--exclude-resource-type", "unit_test"]);
    assert!(
        out.contains("PASS=1 ") && out.contains("not_null_m_id"),
        "{out}"
    );
    let out = p.ok(&["build", "--resource-type", "model", "unit_test"]);
    assert!(
        out.contains("PASS=2 ") && !out.contains("not_null_m_id"),
        "{out}"
    );
    let listed = p.ok(&[
        "ls",
        "--resource-type",
        "unit_test",
        "exposure",
        "-o",
        "name",
    ]);
    assert_eq!(listed.trim(), "one_row\nboard");
    let listed = p.ok(&[
        "ls",
        "--exclude-resource-type",
        "test",
        "unit_test",
        "exposure",
    ]);
    assert_eq!(listed.trim(), "t.m");
    let listed = p.ok(&["ls", "-o", "name"]);
    assert!(listed.contains("board"), "{listed}");
}

#[test]
fn clone_makes_the_state_runs_relations_exist_here_without_copying() {
    use std::os::unix::fs::MetadataExt;
    let p = TestProject::starter();
    let err = p.fails(&["clone"], 2);
    assert!(err.contains("clone needs --state DIR"), "{err}");
    p.prod_state();
    let out = p.ok(&["clone", "--state", "prod-state"]);
    assert!(
        out.contains("OK clone gold.customers: CLONE of gold.customers"),
        "{out}"
    );
    assert!(
        out.contains("OK clone silver.stg_orders: CREATE VIEW"),
        "{out}"
    );
    // The snapshot was never built in prod: said, not an error.
    assert!(out.contains("SKIP clone"), "{out}");
    assert_eq!(
        p.query("select count(*) as n from gold.customers"),
        vec!["n", "20"]
    );
    // Zero-copy: each data file is the prod file itself (a second link to it).
    let files = p.files_under(".strata/dev/gold/customers");
    let parquet: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!parquet.is_empty());
    for f in &parquet {
        assert_eq!(
            std::fs::metadata(f).expect("stat").nlink(),
            2,
            "{}",
            f.display()
        );
    }
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).expect("run results");
    assert_eq!(results["args"]["which"], "clone");
    // What exists is kept unless --full-refresh.
    let out = p.ok(&["clone", "--state", "prod-state", "-s", "customers"]);
    assert!(out.contains("No-op: the relation exists"), "{out}");
    let out = p.ok(&[
        "clone",
        "--state",
        "prod-state",
        "-s",
        "customers",
        "--full-refresh",
    ]);
    assert!(out.contains("CLONE of gold.customers"), "{out}");
    // The clone is this target's own table: rebuilding it leaves prod's as it was.
    p.write(
        "models/marts/customers.sql",
        "select customer_id from {{ ref('stg_customers') }} where customer_id <= 5",
    );
    p.ok(&["run", "-s", "customers"]);
    assert_eq!(
        p.query("select count(*) as n from gold.customers"),
        vec!["n", "5"]
    );
    let prod = p.ok(&[
        "--target",
        "prod",
        "show",
        "--inline",
        "select count(*) as n from gold.customers",
        "-o",
        "csv",
    ]);
    assert_eq!(prod.trim(), "n\n20");
}

/// The DOM headless Chromium renders for `url` (see [`crate::project::browser`]).
fn browser_dom(url: &str) -> Option<String> {
    crate::project::browser(url).map(|(dom, _)| dom)
}

/// `GET path` over HTTP/1.1: the status line and the body.
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[test]
fn docs_generate_writes_the_site_and_docs_serve_serves_it() {
    let p = TestProject::starter();
    let err = p.fails(&["docs", "serve"], 2);
    assert!(err.contains("run `strata docs generate` first"), "{err}");
    p.ok(&["run"]);
    let out = p.ok(&["docs", "generate", "--static"]);
    assert!(out.contains("index.html and static_index.html"), "{out}");
    let page = p.read("target/index.html");
    assert!(page.contains("manifest.json") && page.contains("catalog.json"));
    // The static page carries both files, with nothing that could end its script early.
    let single = p.read("target/static_index.html");
    assert!(single.contains("window.STRATA_DOCS = {"));
    assert_eq!(single.matches("</script>").count(), 2);
    assert!(single.contains("model.shop.customers"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let mut server = p
        .std_command(&["docs", "serve", "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "docs serve did not listen on {port}");
    let (status, body) = http_get(port, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("<title>Project docs</title>"), "{body}");
    let (status, body) = http_get(port, "/manifest.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let manifest: serde_json::Value = serde_json::from_str(&body).expect("manifest");
    assert_eq!(manifest["metadata"]["project_name"], "shop");
    let (status, _) = http_get(port, "/catalog.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // A real browser renders a model's page from the served files, and the static page
    // from disk.
    if let Some(dom) = browser_dom(&format!("http://127.0.0.1:{port}/#!/model.shop.customers")) {
        assert!(
            dom.contains(r#"<span class="kind">model</span>customers</h2>"#),
            "{dom}"
        );
        assert!(
            dom.contains("<code>lifetime_value</code></td><td>DOUBLE</td>"),
            "{dom}"
        );
        assert!(
            dom.contains(r##"<a href="#!/model.shop.orders">orders</a>"##),
            "{dom}"
        );
    }
    let file_url = format!(
        "file://{}#!/model.shop.orders",
        p.path().join("target/static_index.html").display()
    );
    if let Some(dom) = browser_dom(&file_url) {
        assert!(
            dom.contains(r#"<span class="kind">model</span>orders</h2>"#),
            "{dom}"
        );
    }
    assert_eq!(
        http_get(port, "/../profiles.yml").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(http_get(port, "/nothing.json").0, "HTTP/1.1 404 Not Found");
    // Ctrl-C stops it cleanly.
    let pid = server.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let status = server.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_dbt_environment_variables_set_their_flags() {
    let p = TestProject::starter();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = p.strata(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().expect("run strata");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&[("DBT_THREADS", "1")], &["run"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("with 1 thread"), "{out}");
    let (_, out, _) = run(&[("DBT_QUIET", "true")], &["run"]);
    assert!(!out.contains("Running"), "{out}");
    let (_, out, _) = run(&[("DBT_LOG_FORMAT", "json")], &["run", "-s", "stg_orders"]);
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON line");
    }
    let (_, _, err) = run(&[("DBT_DEBUG", "1")], &["ls"]);
    assert!(err.contains("DEBUG"), "{err}");
    let (code, _, _) = run(&[("DBT_WARN_ERROR", "true")], &["ls", "-s", "nothing_here"]);
    assert_eq!(code, Some(1));
    // Tests follow their nodes unless DBT_INDIRECT_SELECTION says otherwise.
    p.write(
        "models/staging/tested.yml",
        "version: 2\nmodels:\n  - name: stg_customers\n    columns:\n      - name: customer_id\n        data_tests: [not_null]\n",
    );
    let (_, out, _) = run(&[], &["test", "-s", "stg_customers"]);
    assert!(out.contains("PASS"), "{out}");
    let (_, out, _) = run(
        &[("DBT_INDIRECT_SELECTION", "empty")],
        &["test", "-s", "stg_customers"],
    );
    assert!(out.contains("Nothing to do"), "{out}");
    // DBT_STATE and DBT_DEFER: read the prod run's tables for what dev has not built.
    p.prod_state();
    p.write(
        "models/marts/counts.sql",
        "select count(*) as n from {{ ref('orders') }}",
    );
    let (code, _, err) = run(
        &[
            ("DBT_STATE", "prod-state"),
            ("DBT_DEFER", "true"),
            ("DBT_FAVOR_STATE", "true"),
        ],
        &["run", "-s", "counts"],
    );
    assert_eq!(code, Some(0), "{err}");
    let sql = p.read("target/compiled/shop/models/marts/counts.sql");
    assert!(sql.contains("strata_state"), "{sql}");
    // DBT_FAIL_FAST stops at the first failure.
    p.write("models/marts/broken.sql", "select * from nowhere");
    let (code, out, _) = run(&[("DBT_FAIL_FAST", "true")], &["run"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("SKIP") || out.contains("skipped"), "{out}");
}

#[test]
fn bad_flags_and_package_entries_are_named() {
    let p = TestProject::with_files(&[("models/m.sql", "select 1 as a")]);
    // A log folder that cannot be made.
    p.write("not_a_folder", "x");
    let err = p.fails(&["ls", "--log-path", "not_a_folder/logs"], 2);
    assert!(
        err.contains("--log-path: cannot create not_a_folder/logs"),
        "{err}"
    );
    // packages.yml entries deps cannot read.
    for (entry, expected) in [
        (
            "  - {hub: x}\n",
            "a package entry needs `local:`, `git:` or `package:`",
        ),
        (
            "  - {package: dbt_utils, version: 1.0.0}\n",
            "hub packages are named `org/name`",
        ),
        (
            "  - {package: acme/x}\n",
            "package `acme/x` needs a `version`",
        ),
        ("  - {local: nowhere}\n", "is not a dbt package"),
    ] {
        p.write("packages.yml", &format!("packages:\n{entry}"));
        let err = p.fails(&["deps"], 2);
        assert!(err.contains(expected), "{entry}: {err}");
        assert!(!p.path().join("dbt_packages").exists(), "{entry}");
    }
}

#[test]
fn a_busy_port_and_a_missing_state_are_named() {
    let p = TestProject::starter();
    p.ok(&["docs", "generate"]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = busy.local_addr().expect("addr").port().to_string();
    let err = p.fails(&["docs", "serve", "--port", &port], 2);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    let err = p.fails(&["clone", "--state", "no-such-folder"], 2);
    assert!(
        err.contains("cannot read no-such-folder/manifest.json"),
        "{err}"
    );
    p.write("not-strata/manifest.json", "{\"metadata\": {}}");
    let err = p.fails(&["clone", "--state", "not-strata"], 2);
    assert!(err.contains("was not written by Strata"), "{err}");
    // Nothing was cloned.
    assert!(!p.path().join(".strata/dev/gold").exists());
}
