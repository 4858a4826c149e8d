//! `strata profile`: a table described column by column, and the data tests it suggests, which
//! pass on the data they were drawn from.

use crate::project::TestProject;

#[test]
fn a_profile_describes_each_column_and_its_suggested_tests_pass() {
    let p = TestProject::with_files(&[
        (
            "seeds/orders.csv",
            "id,status,amount,note\n1,placed,10.5,\n2,shipped,20,x\n3,placed,30,\n4,placed,40.25,y\n",
        ),
        (
            "models/big_orders.sql",
            "select id, amount from {{ ref('orders') }} where amount > 15",
        ),
    ]);
    p.ok(&["build"]);
    let out = p.ok(&["profile", "orders"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "main.orders: 4 rows", "{out}");
    let id = lines
        .iter()
        .find(|l| l.starts_with("id "))
        .expect("id line");
    assert!(
        id.contains("BIGINT") && id.contains("all (unique)"),
        "{out}"
    );
    let status = lines
        .iter()
        .find(|l| l.starts_with("status "))
        .expect("status");
    assert!(status.contains("placed (3), shipped (1)"), "{out}");
    let note = lines.iter().find(|l| l.starts_with("note ")).expect("note");
    assert!(note.contains("50.0"), "{out}");

    // The suggestions are a properties file that holds on the data it came from.
    let yaml = p.ok(&["profile", "orders", "--suggest"]);
    assert!(yaml.contains("seeds:\n  - name: orders\n    data_tests:\n      - volume_anomalies\n    columns:\n      - name: id\n        data_tests:\n          - not_null\n          - unique"), "{yaml}");
    assert!(
        yaml.contains("      - name: note\n        data_tests:\n          - unique\n          - column_anomalies:\n              column_anomalies: [null_percent]"),
        "{yaml}"
    );
    assert!(yaml.contains("values: ['placed', 'shipped']"), "{yaml}");
    assert!(
        yaml.contains("dbt_expectations.expect_column_values_to_be_between:\n              min_value: 10.5\n              max_value: 40.25"),
        "{yaml}"
    );
    // Without the dbt_expectations package here, the dbt tests alone.
    let mut kept = Vec::new();
    let mut skip = 0;
    for line in yaml.lines() {
        if line.contains("dbt_expectations.") {
            skip = 3;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        kept.push(line);
    }
    p.write("seeds/orders.yml", &kept.join("\n"));
    let out = p.ok(&["test", "-s", "orders"]);
    assert!(out.contains("PASS=7") && out.contains("ERROR=0"), "{out}");

    // Models too, and JSON for tools.
    let yaml = p.ok(&["profile", "big_orders", "--suggest"]);
    assert!(yaml.contains("models:\n  - name: big_orders"), "{yaml}");
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["profile", "big_orders", "--json"])).expect("json");
    assert_eq!(json["rows"], 3);
    assert_eq!(json["columns"][1]["name"], "amount");

    // A table not built yet says to build it.
    let fresh = TestProject::with_files(&[("seeds/orders.csv", "id\n1\n")]);
    let out = fresh.fails(&["profile", "orders"], 2);
    assert!(
        out.contains("main.orders") && out.contains("build it first"),
        "{out}"
    );

    let out = p.fails(&["profile", "order"], 2);
    assert!(
        out.contains("no model, seed, snapshot or source table named `order`"),
        "{out}"
    );
}

#[test]
fn the_quality_report_shows_each_check_its_history_metrics_and_failures() {
    let p = TestProject::with_files(&[
        (
            "seeds/raw.csv",
            "id,status,amount\n1,placed,10\n2,shipped,20\n3,placed,30\n",
        ),
        (
            "seeds/raw.yml",
            "version: 2\nseeds:\n  - name: raw\n    data_tests:\n      - volume_anomalies: {min_training_set_size: 2}\n    columns:\n      - name: id\n        data_tests: [unique]\n      - name: status\n        data_tests:\n          - accepted_values: {values: [placed, shipped], severity: warn}\n",
        ),
        (
            "models/orders.sql",
            "{{ config(materialized='table', quarantine=[{'expression': 'amount < 25'}]) }}\nselect * from {{ ref('raw') }}",
        ),
    ]);
    for _ in 0..3 {
        p.ok(&["build"]);
    }
    // A fourth build: a status no one expected, and a volume spike.
    p.write(
        "seeds/raw.csv",
        "id,status,amount\n1,placed,10\n2,shipped,20\n3,placed,30\n4,lost,1\n5,lost,2\n6,placed,3\n7,placed,4\n8,placed,5\n",
    );
    p.fails(&["build"], 1);
    let out_dir = p.path().join("report");
    let out = p.ok(&[
        "quality",
        "report",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("index.html"), "{out}");
    let html = std::fs::read_to_string(out_dir.join("index.html")).expect("report");
    for needle in [
        "volume_anomalies_raw_2",
        "accepted_values_raw_status__placed__shipped",
        "unique_raw_id",
        "anomaly test",
        "row_count",
        "per run",
        "<svg class=\"spark\"",
        "expected",
        // The rows the warning found.
        "<td>lost</td>",
        // Quarantined rows of the model, by check.
        "expression(amount &lt; 25)",
    ] {
        assert!(html.contains(needle), "{needle} missing from the report");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing is fetched"
    );
    assert!(!html.contains("<script"), "no script");

    // It opens in a browser with nothing logged to the console.
    let url = format!("file://{}", out_dir.join("index.html").display());
    if let Some((dom, log)) = crate::project::browser(&url) {
        assert!(dom.contains("Data quality"), "{dom}");
        assert!(dom.contains("volume_anomalies_raw_2"), "{dom}");
        let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
        assert!(console.is_empty(), "console messages: {console:?}");
    }
}
