//! The example projects, checked against independent calculations: the marts' numbers are
//! computed again here, in plain Rust, from the generator's raw files, and must agree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::pg_server;
use crate::project::TestProject;
use crate::serve::{get, serve};

/// A copy of a project under examples/, without what running it generates.
fn example(name: &str) -> TestProject {
    let p = TestProject::empty();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    copy_dir(&src, &src, p.path());
    p
}

fn copy_dir(base: &Path, dir: &Path, dest: &Path) {
    for entry in std::fs::read_dir(dir).expect("read example") {
        let path = entry.expect("entry").path();
        let rel = path.strip_prefix(base).expect("prefix");
        let name = rel.to_string_lossy();
        if [".strata", "target", "logs", "data/raw"].contains(&name.as_ref()) {
            continue;
        }
        if path.is_dir() {
            copy_dir(base, &path, dest);
        } else {
            let to = dest.join(rel);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&path, &to).expect("copy");
        }
    }
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The rows `strata show -o json` prints.
fn show(p: &TestProject, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["show", "--limit", "-1", "-o", "json"];
    all.extend_from_slice(args);
    let out = p.ok(&all);
    let v: Value = serde_json::from_str(&out).expect("show json");
    v["show"].as_array().expect("rows").clone()
}

fn count(p: &TestProject, sql: &str) -> i64 {
    show(
        p,
        &["--inline", &format!("select count(*) as n from {sql}")],
    )[0]["n"]
        .as_i64()
        .expect("a count")
}

/// One month of MRR, as seed 001 defines it, computed from the raw subscriptions.
#[derive(Debug, Default, Clone, PartialEq)]
struct MrrMonth {
    mrr: f64,
    new: f64,
    expansion: f64,
    reactivation: f64,
    contraction: f64,
    churned: f64,
    paying: i64,
    new_accounts: i64,
    reactivated_accounts: i64,
    churned_accounts: i64,
    /// Accounts that paid at an earlier month end and pay nothing at this one.
    lapsed: i64,
}

/// MRR at each month end of 2024–2025, and its movements, from `subscriptions.json`: an
/// account's MRR at a month end is that of its paid periods running that day (started on or
/// before it, not yet ended); a movement compares it with the month end before.
fn reference_mrr(raw: &Path) -> BTreeMap<String, MrrMonth> {
    struct Paid {
        start: String,
        end: Option<String>,
        mrr: f64,
    }
    let mut accounts: BTreeMap<String, Vec<Paid>> = BTreeMap::new();
    for s in json_lines(&raw.join("subscriptions.json")) {
        if s["is_trial"].as_bool().expect("is_trial") {
            continue;
        }
        let amount = s["amount"].as_f64().expect("amount");
        let mrr = match s["billing_cycle"].as_str().expect("cycle") {
            "annual" => amount / 12.0,
            _ => amount,
        };
        accounts
            .entry(s["user_id"].as_str().expect("user").to_string())
            .or_default()
            .push(Paid {
                start: s["started_at"].as_str().expect("start")[..10].to_string(),
                end: s["ended_at"].as_str().map(|e| e[..10].to_string()),
                mrr,
            });
    }
    let month_ends: Vec<(String, String)> = (0..24)
        .map(|i| {
            let (y, m) = (2024 + i / 12, i % 12 + 1);
            let last = match m {
                2 if y % 4 == 0 => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            (format!("{y}-{m:02}-01"), format!("{y}-{m:02}-{last:02}"))
        })
        .collect();
    let mut months: BTreeMap<String, MrrMonth> = BTreeMap::new();
    for periods in accounts.values() {
        let first = periods
            .iter()
            .map(|p| p.start.clone())
            .min()
            .expect("a period");
        let (mut previous, mut paid_before) = (0.0, false);
        for (month, end) in month_ends.iter().filter(|(_, end)| *end >= first) {
            let mrr: f64 = periods
                .iter()
                .filter(|p| p.start <= *end && p.end.as_ref().is_none_or(|e| e > end))
                .map(|p| p.mrr)
                .sum();
            let m = months.entry(month.clone()).or_default();
            m.mrr += mrr;
            let change = mrr - previous;
            if mrr > 0.0 {
                m.paying += 1;
            }
            if previous == 0.0 && mrr > 0.0 && !paid_before {
                m.new += change;
                m.new_accounts += 1;
            } else if previous == 0.0 && mrr > 0.0 {
                m.reactivation += change;
                m.reactivated_accounts += 1;
            } else if previous > 0.0 && mrr == 0.0 {
                m.churned += change;
                m.churned_accounts += 1;
            } else if mrr > previous {
                m.expansion += change;
            } else if mrr < previous {
                m.contraction += change;
            }
            if paid_before && mrr == 0.0 {
                m.lapsed += 1;
            }
            paid_before |= mrr > 0.0;
            previous = mrr;
        }
    }
    months
}

/// mart_mrr agrees with the reference, month by month, to the cent.
fn assert_mart_mrr_matches(p: &TestProject, raw: &Path) {
    let expected = reference_mrr(raw);
    let rows = show(p, &["--select", "mart_mrr"]);
    assert_eq!(rows.len(), expected.len(), "months in mart_mrr");
    let money = |r: &Value, c: &str| r[c].as_f64().unwrap_or_else(|| panic!("{c} in {r}"));
    let int = |r: &Value, c: &str| r[c].as_i64().unwrap_or_else(|| panic!("{c} in {r}"));
    for r in &rows {
        let month = r["month"].as_str().expect("month");
        let e = expected
            .get(month)
            .unwrap_or_else(|| panic!("{month} is not a month of the data"));
        let got = MrrMonth {
            mrr: money(r, "mrr"),
            new: money(r, "new_mrr"),
            expansion: money(r, "expansion_mrr"),
            reactivation: money(r, "reactivation_mrr"),
            contraction: money(r, "contraction_mrr"),
            churned: money(r, "churned_mrr"),
            paying: int(r, "paying_accounts"),
            new_accounts: int(r, "new_accounts"),
            reactivated_accounts: int(r, "reactivated_accounts"),
            churned_accounts: int(r, "churned_accounts"),
            lapsed: e.lapsed,
        };
        for (what, a, b) in [
            ("mrr", got.mrr, e.mrr),
            ("new", got.new, e.new),
            ("expansion", got.expansion, e.expansion),
            ("reactivation", got.reactivation, e.reactivation),
            ("contraction", got.contraction, e.contraction),
            ("churned", got.churned, e.churned),
        ] {
            assert!(
                (a - b).abs() < 0.006,
                "{month} {what}: mart_mrr has {a}, the raw data gives {b}"
            );
        }
        assert_eq!(
            (
                got.paying,
                got.new_accounts,
                got.reactivated_accounts,
                got.churned_accounts
            ),
            (
                e.paying,
                e.new_accounts,
                e.reactivated_accounts,
                e.churned_accounts
            ),
            "{month}: paying, new, reactivated and churned accounts"
        );
    }
    // The data has every kind of movement.
    let total = |f: fn(&MrrMonth) -> f64| expected.values().map(f).sum::<f64>();
    assert!(total(|m| m.expansion) > 0.0 && total(|m| m.contraction) < 0.0);
    assert!(total(|m| m.reactivation) > 0.0 && total(|m| m.churned) < 0.0);
}

/// Events the fact must set aside: of accounts that do not exist, or without a type.
fn reference_bad_events(raw: &Path) -> (i64, i64) {
    let users: HashSet<String> = json_lines(&raw.join("user_profiles.json"))
        .iter()
        .map(|u| u["user_id"].as_str().expect("user").to_string())
        .collect();
    let (mut all, mut bad) = (0, 0);
    let mut files: Vec<_> = std::fs::read_dir(raw.join("user_events"))
        .expect("events")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        for e in json_lines(&f) {
            all += 1;
            let known = users.contains(e["user_id"].as_str().expect("user"));
            if !known || e["event_type"].is_null() {
                bad += 1;
            }
        }
    }
    (all, bad)
}

#[test]
fn the_demo_builds_the_saas_example_and_its_numbers_are_right() {
    let p = TestProject::empty();
    let out = p.ok(&["demo", "."]);
    for expected in [
        "[1/4] Wrote the SaaS example project",
        "Wrote 1000 accounts",
        "[3/4] Loading bronze",
        "ERROR=0",
        "[4/4] The headline numbers",
        "2025-12  $",
        "Churn in 2025-12:",
        "strata serve",
    ] {
        assert!(out.contains(expected), "no `{expected}` in:\n{out}");
    }
    // The table shows the last six months, with MRR as mart_mrr has it.
    let december = show(
        &p,
        &[
            "--inline",
            "select mrr from {{ ref('mart_mrr') }} where month = date '2025-12-01'",
        ],
    );
    let mrr = december[0]["mrr"].as_f64().expect("mrr");
    let whole = format!("{}", mrr.trunc() as i64);
    let grouped = format!(
        "{},{}",
        &whole[..whole.len() - 3],
        &whole[whole.len() - 3..]
    );
    assert!(out.contains(&format!("2025-12  ${grouped}.")), "{out}");
    assert_eq!(out.matches("\n  2025-").count(), 6, "{out}");

    let raw = p.path().join("data/raw");
    assert_mart_mrr_matches(&p, &raw);

    let facts = count(&p, "{{ ref('fact_user_events') }}");
    let (all, bad) = reference_bad_events(&raw);
    assert!(bad > 0);
    assert_eq!(facts, all - bad, "events in the fact");
    assert_eq!(count(&p, "gold_quarantine.fact_user_events"), bad);

    // Again, in the same folder: the same data, nothing loaded twice.
    let again = p.ok(&["demo", "."]);
    assert!(
        again.contains("Using the SaaS example project already in"),
        "{again}"
    );
    assert!(again.contains("ERROR=0"), "{again}");
    assert_eq!(count(&p, "{{ source('app', 'user_events') }}"), all);
    assert_eq!(count(&p, "{{ ref('fact_user_events') }}"), facts);
    assert_mart_mrr_matches(&p, &raw);

    // A folder holding something else is refused.
    let other = TestProject::starter();
    let refused = other.fails(&["demo", "."], 2);
    assert!(refused.contains("other than the demo"), "{refused}");
}

#[test]
fn the_saas_example_runs_its_pipeline_and_dashboards_on_other_data() {
    let p = example("saas");
    let out = p.ok(&["datagen", "saas", "--scale", "0.4", "--seed", "7"]);
    assert!(out.contains("Wrote 400 accounts"), "{out}");
    let raw = p.path().join("data/raw");

    // pipelines/daily.yml: wait for the files, ingest, seed, transform, test.
    let run = p.ok_all(&["trigger", "daily"]);
    assert!(run.contains("succeeded"), "{run}");
    let steps = p.ok(&["runs", "show", "1", "-o", "json"]);
    let steps: Value = serde_json::from_str(&steps).expect("runs json");
    let names: Vec<&str> = steps["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("step"))
        .collect();
    assert_eq!(
        names,
        ["wait_for_exports", "ingest", "seed", "transform", "test"]
    );
    assert!(
        steps["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["status"] == "success"),
        "{steps}"
    );
    assert_mart_mrr_matches(&p, &raw);

    // Churn by cohort, summed over the cohorts, counts the accounts that paid and stopped.
    let lapsed: BTreeMap<String, i64> = show(
        &p,
        &[
            "--inline",
            "select cast(month as varchar) as month, sum(churned_accounts) as churned \
             from {{ ref('mart_churn') }} group by month",
        ],
    )
    .iter()
    .map(|r| {
        (
            r["month"].as_str().expect("month").to_string(),
            r["churned"].as_i64().expect("churned"),
        )
    })
    .collect();
    let expected: BTreeMap<String, i64> = reference_mrr(&raw)
        .into_iter()
        .map(|(month, m)| (month, m.lapsed))
        .collect();
    assert_eq!(lapsed, expected);
    assert!(expected.values().any(|n| *n > 0));

    assert_dashboards_draw(
        &p,
        &[
            ("mrr", 4, &["MRR movements", "Churn by signup cohort"]),
            ("product", 2, &["Events by device"]),
        ],
    );
}

/// Each dashboard (name, charts drawn as SVG, texts on the page) renders with no chart failed.
fn assert_dashboards_draw(p: &TestProject, dashboards: &[(&str, usize, &[&str])]) {
    let s = serve(p, &["--dev"]);
    for (name, drawn, texts) in dashboards {
        let (code, _, page) = get(s.port, &format!("/dashboards/{name}"), None);
        assert_eq!(code, 200, "{page}");
        assert!(!page.contains("class=\"bad\""), "a chart failed: {page}");
        assert_eq!(
            page.matches("<svg class=\"chart\"").count(),
            *drawn,
            "{page}"
        );
        for t in *texts {
            assert!(page.contains(t), "no {t}: {page}");
        }
    }
}

/// A CSV file of the retail generator: its rows as fields (its values hold no commas).
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// What the retail data set holds after days 0..=last, computed from the generator's files:
/// net revenue and orders per order date (cancelled orders and lines without a quantity
/// left out), lines with and without a quantity, and the customer versions a snapshot after
/// each day records.
struct RetailReference {
    by_day: BTreeMap<String, (f64, i64)>,
    lines: i64,
    lines_without_quantity: i64,
    customer_versions: i64,
    customers: i64,
}

fn reference_retail(raw: &Path, last: u32) -> RetailReference {
    let mut orders: HashMap<String, Vec<String>> = HashMap::new();
    let mut items: Vec<Vec<String>> = Vec::new();
    let mut customers: HashSet<String> = HashSet::new();
    let mut customer_versions = 0;
    for day in 0..=last {
        let dir = raw.join(format!("day_{day:03}"));
        for o in csv_rows(&dir.join("orders.csv")) {
            orders.insert(o[0].clone(), o);
        }
        items.extend(csv_rows(&dir.join("order_items.csv")));
        for c in csv_rows(&dir.join("customers.csv")) {
            customers.insert(c[0].clone());
            customer_versions += 1;
        }
    }
    let (mut lines, mut lines_without_quantity) = (0, 0);
    let mut by_day: BTreeMap<String, (f64, HashSet<String>)> = BTreeMap::new();
    for i in &items {
        let quantity: i64 = i[4].parse().expect("quantity");
        if quantity == 0 {
            lines_without_quantity += 1;
            continue;
        }
        lines += 1;
        let order = &orders[&i[1]];
        if order[4] == "cancelled" {
            continue;
        }
        let net = quantity as f64 * i[5].parse::<f64>().expect("price")
            - i[6].parse::<f64>().expect("discount");
        let day = by_day.entry(order[5][..10].to_string()).or_default();
        day.0 += net;
        day.1.insert(order[0].clone());
    }
    RetailReference {
        by_day: by_day
            .into_iter()
            .map(|(d, (net, ids))| (d, (net, ids.len() as i64)))
            .collect(),
        lines,
        lines_without_quantity,
        customer_versions,
        customers: customers.len() as i64,
    }
}

#[test]
fn the_retail_example_loads_from_postgres_day_after_day() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("retail_example");
    let url = db.url().replacen(
        "postgres@",
        &format!("postgres:{}@", pg_server::PASSWORD),
        1,
    );
    let env = [("RETAIL_DATABASE_URL", url.as_str())];
    let p = example("retail");
    let tests = p.ok(&["ls", "--resource-type", "test"]);
    assert!(
        tests.lines().count() >= 100,
        "{} data tests",
        tests.lines().count()
    );

    let out = p.ok(&["datagen", "retail", "--to", &url]);
    assert!(
        out.contains("Wrote day 0 (2025-06-30) into shop: 1000 customers"),
        "{out}"
    );
    let again = p.fails(&["datagen", "retail", "--to", &url], 2);
    assert!(again.contains("--day 1"), "{again}");
    p.ok(&["datagen", "retail", "--out", "reference"]);
    let raw = p.path().join("reference");

    let build = p.ok_with(&["build", "--ingest"], &env);
    assert!(build.contains("ERROR=0"), "{build}");
    let check = |day: u32| {
        let r = reference_retail(&raw, day);
        let rows = show(
            &p,
            &[
                "--inline",
                "select cast(order_date as varchar) as day, sum(net_revenue) as net, \
                 sum(orders) as orders from {{ ref('mart_daily_sales') }} group by order_date",
            ],
        );
        let got: BTreeMap<String, (f64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["day"].as_str().expect("day").to_string(),
                    (
                        r["net"].as_f64().expect("net"),
                        r["orders"].as_i64().expect("orders"),
                    ),
                )
            })
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            r.by_day.keys().collect::<Vec<_>>(),
            "day {day}: order dates"
        );
        for (d, (net, orders)) in &r.by_day {
            let (gnet, gorders) = got[d];
            assert!(
                (gnet - net).abs() < 0.02,
                "day {day}, {d}: net {gnet}, expected {net}"
            );
            assert_eq!(gorders, *orders, "day {day}, {d}: orders");
        }
        for (relation, expected, what) in [
            ("{{ ref('fact_orders') }}", r.lines, "lines"),
            // Each line once: an incremental run that reads an order again (its status
            // moved) sets its bad lines aside again.
            (
                "(select distinct order_item_id from gold_quarantine.fact_orders)",
                r.lines_without_quantity,
                "quarantined lines",
            ),
            (
                "{{ ref('dim_customers') }}",
                r.customer_versions,
                "SCD2 rows",
            ),
            (
                "{{ ref('dim_customers') }} where is_current",
                r.customers,
                "current customers",
            ),
        ] {
            assert_eq!(count(&p, relation), expected, "day {day}: {what}");
        }
        r
    };
    let first = check(0);
    assert!(first.lines_without_quantity > 0);

    let mut versions = first.customer_versions;
    for day in 1..=3 {
        let d = day.to_string();
        let out = p.ok(&["datagen", "retail", "--to", &url, "--day", &d]);
        assert!(
            out.contains(&format!("Wrote the changes of day {day}")),
            "{out}"
        );
        p.ok(&["datagen", "retail", "--out", "reference", "--day", &d]);
        let build = p.ok_with(&["build", "--ingest"], &env);
        assert!(build.contains("ERROR=0"), "day {day}: {build}");
        let r = check(day);
        assert!(
            r.customer_versions > versions,
            "day {day}: no segment changed"
        );
        versions = r.customer_versions;
    }

    // The daily pipeline: nothing new to load, every step succeeds.
    let run = p.ok_all_with(&["trigger", "daily"], &env);
    assert!(run.contains("succeeded"), "{run}");

    assert_dashboards_draw(
        &p,
        &[
            ("sales", 3, &["Best selling products", "<td"]),
            (
                "inventory",
                2,
                &["Stores with the most products out of stock", "<td"],
            ),
        ],
    );
}

#[test]
fn bad_datagen_requests_and_engine_settings_are_refused_with_their_reason() {
    let p = TestProject::starter();
    for (args, says) in [
        (
            &["datagen", "saas", "--scale", "0"][..],
            "--scale 0 is out of range",
        ),
        (
            &[
                "datagen",
                "retail",
                "--to",
                "postgresql://u@127.0.0.1:1/x",
                "--schema",
                "a;b",
            ][..],
            "--schema `a;b` must be a plain name",
        ),
        (
            &["datagen", "retail", "--to", "not a url"][..],
            "not a PostgreSQL url",
        ),
        (
            &["datagen", "saas", "--out", "/proc/strata-nope"][..],
            "cannot write /proc/strata-nope",
        ),
    ] {
        let out = p.fails(args, 2);
        assert!(out.contains(says), "{args:?}: {out}");
    }
    assert!(!p.path().join("data/raw").exists());
    let out = p.fails_with(
        &["show", "--inline", "select 1"],
        &[("DATAFUSION_EXECUTION_BATCH_SIZE", "abc")],
        2,
    );
    assert!(
        out.contains("a DATAFUSION_* environment variable is wrong"),
        "{out}"
    );
}
