//! Anomaly tests (`volume_anomalies`, `freshness_anomalies`, `column_anomalies`): a project
//! whose data drifts over several builds flags exactly the drifting metrics.

use chrono::{Duration, Utc};

use crate::project::TestProject;

const PROPERTIES: &str = r#"version: 2
seeds:
  - name: orders
    data_tests:
      - volume_anomalies: {min_training_set_size: 5}
    columns:
      - name: amount
        data_tests:
          - column_anomalies: {column_anomalies: [average], min_training_set_size: 5}
  - name: customers
    data_tests:
      - elementary.volume_anomalies:
          arguments: {min_training_set_size: 5, anomaly_sensitivity: 3}
    columns:
      - name: email
        data_tests:
          - column_anomalies:
              column_anomalies: [null_percent]
              min_training_set_size: 5
  - name: events
    data_tests:
      - volume_anomalies:
          timestamp_column: at
          time_bucket: {period: day, count: 1}
          training_period: {period: day, count: 14}
      - freshness_anomalies: {timestamp_column: at}
    columns:
      - name: kind
        data_tests:
          - column_anomalies: {column_anomalies: [null_count], timestamp_column: at}
"#;

/// `n` orders whose amounts cycle 10, 20, 30, 40 (`n` a multiple of 4: the average is 25).
fn orders(n: usize) -> String {
    let mut s = String::from("id,amount\n");
    for i in 0..n {
        s.push_str(&format!("{i},{}\n", 10 * (1 + i % 4)));
    }
    s
}

/// `n` customers, `nulls` of them without an email.
fn customers(n: usize, nulls: usize) -> String {
    let mut s = String::from("id,email\n");
    for i in 0..n {
        if i < nulls {
            s.push_str(&format!("{i},\n"));
        } else {
            s.push_str(&format!("{i},c{i}@example.com\n"));
        }
    }
    s
}

/// Events of the 21 days before today, about 50 a day, the last of each late in the day;
/// `last_day` days ago is the newest day with events, and yesterday has `yesterday` events.
fn events(last_day: i64, yesterday: Option<usize>) -> String {
    let today = Utc::now().date_naive();
    let mut s = String::from("id,at,kind\n");
    let mut id = 0;
    for d in (last_day..=21).rev() {
        let day = today - Duration::days(d);
        let hours: Vec<u32> = match (d, yesterday) {
            (1, Some(n)) => (0..n as u32).map(|i| 23 - i * 4 % 24).collect(),
            _ => {
                let n = 48 + (d % 3) as u32 * 2;
                let last = 20 + (d % 4) as u32;
                (0..n).map(|i| i * last / (n - 1)).collect()
            }
        };
        for h in hours {
            id += 1;
            s.push_str(&format!("{id},{day} {h:02}:30:00,view\n"));
        }
    }
    s
}

/// Which tests a `build` flagged (FAIL) and which warned.
fn flagged(out: &str) -> (Vec<String>, Vec<String>) {
    let pick = |word: &str| {
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| l.contains(&format!(" {word} ")) && l.contains(" of "))
            .filter_map(|l| {
                l.split(&format!(" {word} "))
                    .nth(1)?
                    .split_whitespace()
                    .nth(1)
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    };
    (pick("FAIL"), pick("WARN"))
}

#[test]
fn drifting_data_flags_exactly_the_drifting_metrics() {
    let p = TestProject::with_files(&[
        ("seeds/properties.yml", PROPERTIES),
        ("seeds/orders.csv", &orders(100)),
        ("seeds/customers.csv", &customers(200, 4)),
        ("seeds/events.csv", &events(1, None)),
    ]);
    // The first build has no history for whole-table metrics: a warning, not a failure.
    let out = p.ok(&["build"]);
    assert!(out.contains("not enough history: 0 of 5 runs"), "{out}");
    let (fail, warn) = flagged(&out);
    assert!(fail.is_empty(), "{out}");
    assert_eq!(warn.len(), 4, "{out}");
    // Stable builds: counts move, the percent of missing emails and the average do not.
    for (n, c) in [(104, 250), (96, 150), (100, 200), (108, 300), (92, 250)] {
        p.write("seeds/orders.csv", &orders(n));
        p.write("seeds/customers.csv", &customers(c, c / 50));
        p.ok(&["build"]);
    }
    let out = p.ok(&["build"]);
    let (fail, warn) = flagged(&out);
    assert!(fail.is_empty() && warn.is_empty(), "{out}");
    assert!(out.contains("PASS=10"), "{out}");

    // A volume drop of orders: only orders' volume.
    p.write("seeds/orders.csv", &orders(40));
    let out = p.fails(&["build"], 1);
    let (fail, _) = flagged(&out);
    assert_eq!(fail, ["volume_anomalies_orders_5"], "{out}");
    assert!(
        out.contains("row_count: 40, expected"),
        "the value and its range are shown: {out}"
    );

    // A null spike in customers' emails: only that metric.
    p.write("seeds/orders.csv", &orders(100));
    p.write("seeds/customers.csv", &customers(200, 60));
    let out = p.fails(&["build"], 1);
    let (fail, _) = flagged(&out);
    assert_eq!(
        fail,
        ["column_anomalies_customers_null_percent__email__5"],
        "{out}"
    );
    assert!(out.contains("null_percent of email: 30.00%"), "{out}");

    // Yesterday's events fell to 6: the daily volume, not the freshness.
    p.write("seeds/customers.csv", &customers(200, 4));
    p.write("seeds/events.csv", &events(1, Some(6)));
    let out = p.fails(&["build"], 1);
    let (fail, _) = flagged(&out);
    assert_eq!(
        fail,
        ["volume_anomalies_events_day__1__at__day__14"],
        "{out}"
    );
    let yesterday = (Utc::now().date_naive() - Duration::days(1)).to_string();
    assert!(
        out.contains(&format!("row_count for {yesterday}: 6")),
        "{out}"
    );

    // No events for three days: the data is stale (and its daily volume dropped).
    p.write("seeds/events.csv", &events(4, None));
    let out = p.fails(&["build"], 1);
    let (fail, _) = flagged(&out);
    assert_eq!(
        fail,
        [
            "freshness_anomalies_events_at",
            "volume_anomalies_events_day__1__at__day__14"
        ],
        "{out}"
    );
    assert!(out.contains("freshness for"), "{out}");
}

#[test]
fn wrong_anomaly_arguments_are_named_before_anything_is_written() {
    let p = TestProject::with_files(&[
        ("seeds/orders.csv", &orders(8)),
        (
            "seeds/properties.yml",
            "version: 2\nseeds:\n  - name: orders\n    data_tests:\n      - volume_anomalies:\n          sensitivty: 3\n",
        ),
    ]);
    let out = p.fails(&["build"], 2);
    assert!(
        out.contains("seeds/properties.yml:5")
            && out.contains("`sensitivty` is not an argument of anomaly tests")
            && out.contains("did you mean `sensitivity`"),
        "{out}"
    );
    assert!(!out.contains("OK loaded"), "nothing is built: {out}");

    p.write(
        "seeds/properties.yml",
        "version: 2\nseeds:\n  - name: orders\n    data_tests:\n      - freshness_anomalies\n",
    );
    let out = p.fails(&["build"], 2);
    assert!(
        out.contains("`freshness_anomalies` needs `timestamp_column`"),
        "{out}"
    );

    // A column the table does not have fails the test, naming it and the columns there are.
    p.write(
        "seeds/properties.yml",
        "version: 2\nseeds:\n  - name: orders\n    columns:\n      - name: amout\n        data_tests:\n          - column_anomalies\n      - name: amount\n        data_tests:\n          - column_anomalies: {column_anomalies: [min_length]}\n",
    );
    let out = p.fails(&["build"], 1);
    assert!(
        out.contains("no column `amout`") && out.contains("did you mean `amount`"),
        "{out}"
    );
    assert!(
        out.contains("`min_length` measures text columns, and `amount` is Int64"),
        "{out}"
    );
}

#[test]
fn metrics_measured_as_a_table_is_written_equal_those_queried_after() {
    // A table model's anomaly tests in the same build measure the rows as they are written;
    // `strata test` alone queries the table. Both must see the same values.
    let p = TestProject::with_files(&[
        ("seeds/events.csv", &events(1, None)),
        (
            "models/daily.sql",
            "{{ config(materialized='table', quarantine=[{'expression': \"kind <> 'bot'\"}]) }}\nselect id, cast(at as timestamp) as at, kind, id % 7 as score from {{ ref('events') }}",
        ),
        (
            "models/daily.yml",
            "version: 2\nmodels:\n  - name: daily\n    data_tests:\n      - volume_anomalies: {timestamp_column: at}\n      - freshness_anomalies: {timestamp_column: at}\n      - volume_anomalies: {min_training_set_size: 1}\n    columns:\n      - name: score\n        data_tests:\n          - column_anomalies:\n              column_anomalies: [average, zero_count, max]\n              timestamp_column: at\n              config: {where: \"id > 100\", severity: warn}\n",
        ),
    ]);
    p.ok(&["build"]);
    p.ok(&["build"]);
    let messages = |p: &TestProject| -> Vec<String> {
        let results: serde_json::Value =
            serde_json::from_str(&p.read("target/run_results.json")).expect("run results");
        let mut m: Vec<String> = results["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|r| {
                r["unique_id"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("test."))
            })
            .map(|r| {
                // Run by run, the whole table's history grows by one each run.
                let message = r["message"].as_str().unwrap_or_default();
                let message = match message.split_once(" training values)") {
                    Some((head, tail)) => format!(
                        "{}… training values){tail}",
                        head.rsplit_once('(').map_or(head, |(h, _)| h)
                    ),
                    None => message.to_string(),
                };
                format!("{} {} {message}", r["unique_id"], r["status"])
            })
            .collect();
        m.sort();
        m
    };
    let built = messages(&p);
    assert_eq!(built.len(), 4, "{built:?}");
    assert!(
        built.iter().any(|m| m.contains("PASS: row_count")),
        "{built:?}"
    );
    p.ok(&["test"]);
    assert_eq!(messages(&p), built);

    // `--empty` builds no rows: anomaly tests measure nothing and keep no value.
    let out = p.ok(&["build", "--empty"]);
    assert!(out.contains("PASS=6"), "{out}");
    let results = p.read("target/run_results.json");
    assert!(
        results.contains("not measured: --empty builds no rows"),
        "{results}"
    );
    // Had the empty table been measured, its 0 rows would widen the range of the next run.
    p.ok(&["build"]);
    let results = p.read("target/run_results.json");
    assert!(
        results.contains("row_count: 1050, expected 1050 to 1050"),
        "{results}"
    );
}
