//! Sources read straight from files, and the places a project and its profile may live.

use crate::project::TestProject;

#[test]
fn csv_json_ndjson_parquet_and_delta_sources() {
    // A Delta table and its Parquet files, made by Strata itself.
    let upstream = TestProject::with_files(&[(
        "models/events.sql",
        "{{ config(materialized='table') }}select * from (values (1, 'click'), (2, 'view'), (3, 'click')) as t(id, kind)",
    )]);
    upstream.ok(&["run"]);
    let delta_dir = upstream.path().join(".strata/dev/main/events");
    let p = TestProject::with_files(&[
        (
            "data/users.csv",
            "id,name,signed_up\n1,Ava,2024-01-02\n2,Ben,2024-02-03\n",
        ),
        (
            "data/plans.json",
            "[{\"plan\": \"free\", \"price\": 0}, {\"plan\": \"pro\", \"price\": 20}]",
        ),
        (
            "data/logins.ndjson",
            "{\"user_id\": 1, \"at\": \"2024-03-01\"}\n{\"user_id\": 1, \"at\": \"2024-03-02\"}\n{\"user_id\": 2, \"at\": \"2024-03-02\"}\n",
        ),
        (
            "models/sources.yml",
            &format!(
                "version: 2\nsources:\n  - name: app\n    tables:\n      - name: users\n        meta: {{external_location: data/users.csv}}\n      - name: plans\n        config: {{external_location: data/plans.json}}\n      - name: logins\n        external_location: data/logins.ndjson\n      - name: events_delta\n        meta: {{external_location: '{delta}'}}\n      - name: events_parquet\n        meta: {{external_location: '{delta}/*.parquet'}}\n",
                delta = delta_dir.display()
            ),
        ),
        (
            "models/summary.sql",
            "{{ config(materialized='table') }}\nselect\n  (select count(*) from {{ source('app', 'users') }} where signed_up < '2024-02-01') as early_users,\n  (select sum(price) from {{ source('app', 'plans') }}) as prices,\n  (select count(distinct user_id) from {{ source('app', 'logins') }}) as active,\n  (select count(*) from {{ source('app', 'events_delta') }} where kind = 'click') as delta_clicks,\n  (select count(*) from {{ source('app', 'events_parquet') }}) as parquet_rows",
        ),
    ]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select * from summary"),
        vec![
            "early_users,prices,active,delta_clicks,parquet_rows",
            "1,20,2,2,3"
        ]
    );
}

#[test]
fn a_dbt_project_file_and_profiles_found_as_dbt_finds_them() {
    let p = TestProject::empty();
    p.write(
        "dbt_project.yml",
        "name: legacy\nversion: '1.0'\nconfig-version: 2\nprofile: legacy\nmodels:\n  legacy:\n    +materialized: table\n",
    );
    p.write(
        "models/m.sql",
        "select {{ var('n', 1) }} as n, '{{ target.name }}' as t",
    );
    p.write(
        "elsewhere/profiles.yml",
        "legacy:\n  target: ci\n  outputs:\n    ci: {type: strata, schema: analytics, threads: 1}\n",
    );
    // Not in the project folder: found through DBT_PROFILES_DIR ...
    let out = p
        .strata(&["run"])
        .env("DBT_PROFILES_DIR", p.path().join("elsewhere"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("model analytics.m"));
    // ... and through --profiles-dir.
    let shown = p.ok(&[
        "--profiles-dir",
        "elsewhere",
        "show",
        "--inline",
        "select * from analytics.m",
        "-o",
        "csv",
    ]);
    assert_eq!(shown, "n,t\n1,ci\n");
    assert!(p.path().join(".strata/ci/analytics/m/_delta_log").is_dir());
}

#[test]
fn runs_and_node_results_are_kept_in_the_catalog() {
    let p = TestProject::starter();
    p.ok(&["run"]);
    p.ok(&["run", "-s", "orders"]);
    let meta = strata_meta::MetaStore::open(&p.path().join(".strata/dev/metadata.sqlite"))
        .expect("catalog");
    let runs = meta.runs(10).expect("runs");
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r.status == "success" && r.command == "run" && r.target == "dev")
    );
    let latest = meta.node_results(&runs[0].run_id).expect("nodes");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].unique_id, "model.shop.orders");
    assert_eq!(latest[0].rows_affected, Some(60));
    let relations = meta.relations("strata", Some("gold")).expect("relations");
    let names: Vec<&str> = relations.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["customers", "orders"]);
}

#[test]
fn this_target_and_macros_render_in_models() {
    let p = TestProject::with_files(&[
        (
            "macros/util.sql",
            "{% macro label(x) %}{{ return(x | upper) }}{% endmacro %}\n{% macro twice(col) %}{{ col }} * 2{% endmacro %}",
        ),
        (
            "models/m.sql",
            "{%- set cols = ['a', 'b'] -%}\nselect\n{%- for c in cols %}\n  {{ twice('1') }} as {{ c }},\n{%- endfor %}\n  '{{ label(this.identifier) }}' as me,\n  '{{ this.schema }}' as s,\n  '{{ target.name }}' as t",
        ),
    ]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select * from m"),
        vec!["a,b,me,s,t", "2,2,M,main,dev"]
    );
}

#[test]
fn source_freshness_judges_the_newest_row_and_writes_sources_json() {
    let recent = (chrono::Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let week_old = (chrono::Utc::now() - chrono::Duration::days(7))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let p = TestProject::with_files(&[
        (
            "data/fresh.csv",
            &format!("id,loaded_at\n1,2001-01-01 00:00:00\n2,{recent}\n"),
        ),
        ("data/aging.csv", &format!("id,loaded_at\n1,{week_old}\n")),
        ("data/old.csv", "id,loaded_at\n1,2000-01-01 00:00:00\n"),
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: raw\n    loaded_at_field: loaded_at\n    freshness: {warn_after: {count: 1, period: day}, error_after: {count: 30, period: day}}\n    tables:\n      - {name: fresh, external_location: data/fresh.csv}\n      - {name: aging, external_location: data/aging.csv}\n      - {name: old, external_location: data/old.csv}\n      - {name: unchecked, external_location: data/old.csv, freshness: null}\n",
        ),
    ]);
    let out = p.fails(&["source", "freshness"], 1);
    assert!(out.contains("PASS freshness of raw.fresh"), "{out}");
    assert!(out.contains("WARN freshness of raw.aging"), "{out}");
    assert!(out.contains("ERROR STALE freshness of raw.old"), "{out}");
    assert!(!out.contains("raw.unchecked"), "{out}");
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/sources.json")).expect("sources.json");
    let status = |id: &str| {
        results["results"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["unique_id"] == id))
            .map(|x| x["status"].clone())
    };
    assert_eq!(
        status("source.t.raw.fresh"),
        Some(serde_json::json!("pass"))
    );
    assert_eq!(
        status("source.t.raw.aging"),
        Some(serde_json::json!("warn"))
    );
    assert_eq!(status("source.t.raw.old"), Some(serde_json::json!("error")));
    // Selected alone, a warning does not fail the command.
    p.ok(&["source", "freshness", "-s", "source:raw.aging"]);
}

#[test]
fn a_freshness_limit_that_cannot_be_read_is_named() {
    let p = TestProject::with_files(&[
        ("data/e.csv", "id,loaded_at\n1,2024-01-01 00:00:00\n"),
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: raw\n    loaded_at_field: loaded_at\n    freshness: {warn_after: {count: 1, period: week}}\n    tables:\n      - {name: e, external_location: data/e.csv}\n",
        ),
    ]);
    let out = p.fails(&["source", "freshness"], 1);
    assert!(
        out.contains("ERROR freshness of raw.e: `warn_after` must be {count: <whole number>, period: minute|hour|day}"),
        "{out}"
    );
}
