//! `strata serve`: the web UI behind a login, roles, bad requests, and pages rendered in a
//! browser.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::project::{TestProject, free_port, wait_for_port};

/// A `strata serve` running until dropped.
pub(crate) struct Served {
    child: std::process::Child,
    /// The web UI's port.
    pub port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `strata serve --http <a free port> EXTRA...`, once the web UI listens.
pub(crate) fn serve(p: &TestProject, extra: &[&str]) -> Served {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--http", addr.as_str()];
    args.extend_from_slice(extra);
    let child = p
        .std_command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_port(port);
    Served { child, port }
}

/// Send a raw HTTP request; the status code, the head and the body.
fn send(port: u16, raw: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(raw).expect("send");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

pub(crate) fn get(port: u16, path: &str, cookie: Option<&str>) -> (u16, String, String) {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    send(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{cookie}\r\n").as_bytes(),
    )
}

fn login(port: u16, user: &str, password: &str) -> (u16, String, String) {
    let body = format!("user={user}&password={password}");
    send(
        port,
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn session_cookie(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

#[test]
fn the_web_ui_needs_a_login_and_each_role_sees_its_pages() {
    let p = TestProject::with_files(&[
        ("seeds/raw.csv", "id\n1\n2\n"),
        (
            "models/doubled.sql",
            "select id * 2 as v from {{ ref('raw') }}",
        ),
    ]);
    p.ok(&["build"]);
    // No user: no one could log in, so it does not start.
    let out = p.fails(&["serve", "--http", "127.0.0.1:0"], 2);
    assert!(out.contains("add a user first"), "{out}");
    p.add_user("ada", "admin", "analytical-engine");
    p.add_user("superset", "bi_reader", "bi-tool-secret");
    let s = serve(&p, &[]);

    let (code, head, _) = get(s.port, "/runs", None);
    assert_eq!(code, 303, "{head}");
    assert!(head.to_lowercase().contains("location: /login"), "{head}");
    let (code, _, body) = login(s.port, "ada", "wrong-password");
    assert_eq!(code, 401);
    assert!(body.contains("Wrong user name or password"), "{body}");
    let (code, _, _) = login(s.port, "nobody", "analytical-engine");
    assert_eq!(code, 401);

    let (code, head, _) = login(s.port, "ada", "analytical-engine");
    assert_eq!(code, 303, "{head}");
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let ada = session_cookie(&head);
    let (code, _, body) = get(s.port, "/runs", Some(&ada));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("strata build") && body.contains("success"),
        "{body}"
    );
    let run_link = body
        .split("href=\"/runs/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a run link")
        .to_string();
    let (code, _, body) = get(s.port, &format!("/runs/{run_link}"), Some(&ada));
    assert_eq!(code, 200);
    assert!(
        body.contains("model.t.doubled") && body.contains("<svg"),
        "{body}"
    );
    let (code, _, body) = get(s.port, "/quality", Some(&ada));
    assert_eq!(code, 200);
    assert!(body.contains("Data quality"), "{body}");

    // The SQL explorer answers read-only queries, with ref().
    let q = encode("select count(*) as n from {{ ref('doubled') }}");
    let (code, _, body) = get(s.port, &format!("/sql?q={q}"), Some(&ada));
    assert_eq!(code, 200);
    assert!(
        body.contains("1 row in") && body.contains("<td class=\"num\">2</td>"),
        "{body}"
    );
    let (code, _, body) = get(
        s.port,
        &format!("/sql?q={}", encode("drop table doubled")),
        Some(&ada),
    );
    assert_eq!(code, 200);
    assert!(body.contains("class=\"bad\""), "{body}");
    assert_eq!(
        p.query("select count(*) as n from doubled"),
        ["n", "2"],
        "nothing changed"
    );

    // The BI role does not see run history or quality.
    let (_, head, _) = login(s.port, "superset", "bi-tool-secret");
    let bi = session_cookie(&head);
    let (code, _, _) = get(s.port, "/runs", Some(&bi));
    assert_eq!(code, 403);
    let (code, _, _) = get(s.port, &format!("/sql?q={q}"), Some(&bi));
    assert_eq!(code, 403);
    // Its catalog holds the gold layer only (this project has none).
    let (code, _, body) = get(s.port, "/catalog", Some(&bi));
    assert_eq!(code, 200);
    assert!(!body.contains("doubled"), "{body}");
    let (_, _, body) = get(s.port, "/catalog", Some(&ada));
    assert!(body.contains("doubled"), "{body}");
    let (code, _, _) = get(s.port, "/lineage", Some(&bi));
    assert_eq!(code, 403);
    let (code, _, body) = get(s.port, "/", Some(&bi));
    assert_eq!(code, 200);
    assert!(
        body.contains("superset") && !body.contains("href=\"/quality\">Data"),
        "{body}"
    );

    // A made-up cookie is no session.
    let (code, _, _) = get(s.port, "/runs", Some("strata_session=0123"));
    assert_eq!(code, 303);

    // Bad requests are refused and the server goes on.
    let big = "a".repeat(100_000);
    let (code, _, _) = send(
        s.port,
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\nuser=ada&password={big}",
            big.len() + 18
        )
        .as_bytes(),
    );
    assert_eq!(code, 413);
    let (code, _, _) = send(s.port, b"\x16\x03\x01 not http at all\r\n\r\n");
    assert!(code == 400 || code == 0, "{code}");
    let (code, _, _) = send(
        s.port,
        b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nuser=ad",
    );
    assert!((400..500).contains(&code), "{code}");
    let (code, _, _) = get(s.port, "/nowhere", Some(&ada));
    assert_eq!(code, 404);
    let (code, _, _) = get(s.port, "/runs", Some(&ada));
    assert_eq!(code, 200, "still up");
    drop(s);

    // The refused login was logged.
    let mut s = serve(&p, &[]);
    login(s.port, "ada", "not-it");
    let _ = s.child.kill();
    let mut log = String::new();
    if let Some(mut err) = s.child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    assert!(log.contains("web login refused for user `ada`"), "{log}");
}

#[test]
fn dev_mode_is_loopback_only_and_its_pages_render_in_a_browser() {
    let p = TestProject::with_files(&[
        ("seeds/raw.csv", "id\n1\n2\n"),
        (
            "seeds/raw.yml",
            "version: 2\nseeds:\n  - name: raw\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n",
        ),
    ]);
    p.ok(&["build"]);
    let out = p.fails(&["serve", "--dev", "--http", "0.0.0.0:8099"], 2);
    assert!(out.contains("only on a loopback address"), "{out}");
    let s = serve(&p, &["--dev"]);
    let (code, _, body) = get(s.port, "/runs", None);
    assert_eq!(code, 200, "{body}");
    let run = body
        .split("href=\"/runs/")
        .nth(1)
        .and_then(|l| l.split('"').next())
        .expect("a run in the history")
        .to_string();
    let run_path = format!("/runs/{run}");
    for (path, name) in [
        ("/", "home"),
        ("/runs", "runs"),
        (run_path.as_str(), "run"),
        ("/quality", "quality"),
        ("/sql?q=select+1+as+one", "sql"),
    ] {
        let url = format!("http://127.0.0.1:{}{path}", s.port);
        if let Some((dom, log)) = crate::project::browser(&url) {
            assert!(
                dom.contains("Strata") || dom.contains("Data quality"),
                "{path}: {dom}"
            );
            let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
            assert!(console.is_empty(), "{path}: console messages: {console:?}");
        }
        crate::project::screenshot(&url, name);
    }
}

const SALES_METRICS: &str = "metrics:
  - name: revenue
    label: Revenue
    model: orders
    measure: sum(amount)
    time: {column: ordered_at, grains: [day, month]}
    dimensions: [status]
";

const SALES_DASHBOARD: &str = "title: Sales
description: Revenue by month and status
filters:
  - {name: period, type: date_range}
  - {name: status, type: select, dimension: status}
charts:
  - {title: Revenue, type: kpi, metric: revenue, by: month}
  - {title: Revenue by month, type: line, metric: revenue, by: month}
  - {title: Revenue by status, type: bar, metric: revenue, by: month, dimension: status, stacked: true}
  - {title: Share, type: area, metric: revenue, by: month, dimension: status}
  - {title: Biggest orders, type: table, sql: \"select id, amount from {{ ref('orders') }} order by amount desc limit 2\"}
";

#[test]
fn a_dashboard_draws_its_charts_with_filters_and_csv() {
    let p = TestProject::with_files(&[
        (
            "seeds/orders.csv",
            "id,status,amount,ordered_at\n1,placed,50,2026-01-05\n2,shipped,150,2026-01-20\n3,placed,20,2026-02-01\n4,shipped,100,2026-02-15\n",
        ),
        ("metrics/sales.yml", SALES_METRICS),
        ("dashboards/sales.yml", SALES_DASHBOARD),
    ]);
    p.ok(&["build"]);
    let s = serve(&p, &["--dev"]);
    let (code, _, list) = get(s.port, "/dashboards", None);
    assert_eq!(code, 200);
    assert!(
        list.contains("href=\"/dashboards/sales\"") && list.contains("Sales"),
        "{list}"
    );
    let (code, _, page) = get(s.port, "/dashboards/sales", None);
    assert_eq!(code, 200, "{page}");
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 3, "{page}");
    // The KPI: February's 120 against January's 200.
    assert!(page.contains(">120<") && page.contains("-40.0%"), "{page}");
    assert!(page.contains("<td class=\"num\">150</td>"), "{page}");
    assert!(
        page.contains("<option>placed</option>") && page.contains("<option>shipped</option>"),
        "{page}"
    );
    // A filter narrows every metric chart.
    let (_, _, placed) = get(
        s.port,
        "/dashboards/sales?status=placed&start=2026-01-01",
        None,
    );
    assert!(
        placed.contains(">20<") && placed.contains("-60.0%"),
        "{placed}"
    );
    assert!(
        placed.contains("<option selected>placed</option>"),
        "{placed}"
    );
    // Each chart's data as CSV, with the filters.
    let (code, head, csv) = get(s.port, "/dashboards/sales/charts/2?status=shipped", None);
    assert_eq!(code, 200);
    assert!(head.to_lowercase().contains("text/csv"), "{head}");
    assert_eq!(
        csv.trim(),
        "month,status,revenue\n2026-01-01,shipped,150\n2026-02-01,shipped,100"
    );
    let (code, _, _) = get(s.port, "/dashboards/nope", None);
    assert_eq!(code, 404);
    // New rows are served after the next build, without a restart.
    p.write(
        "seeds/orders.csv",
        "id,status,amount,ordered_at\n1,placed,50,2026-01-05\n2,shipped,150,2026-01-20\n3,placed,20,2026-02-01\n4,shipped,100,2026-02-15\n5,placed,80,2026-02-20\n",
    );
    p.ok(&["build"]);
    let (_, _, page) = get(s.port, "/dashboards/sales", None);
    assert!(page.contains(">200<") && page.contains("0.0%"), "{page}");

    let url = format!("http://127.0.0.1:{}/dashboards/sales", s.port);
    if let Some((dom, log)) = crate::project::browser(&url) {
        assert_eq!(dom.matches("class=\"chart\"").count(), 3, "{dom}");
        let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
        assert!(console.is_empty(), "console messages: {console:?}");
    }
}

#[test]
fn wrong_dashboards_are_named() {
    let p = TestProject::with_files(&[
        (
            "seeds/orders.csv",
            "id,status,amount,ordered_at\n1,placed,50,2026-01-05\n",
        ),
        ("metrics/sales.yml", SALES_METRICS),
        (
            "dashboards/sales.yml",
            "title: Sales\ncharts:\n  - {title: Revenue, type: pie, metric: revenue, by: month}\n",
        ),
    ]);
    p.ok(&["build"]);
    let s = serve(&p, &["--dev"]);
    let (code, _, body) = get(s.port, "/dashboards", None);
    assert_eq!(code, 500);
    assert!(
        body.contains("dashboards/sales.yml:3") && body.contains("`type: pie` is not a chart"),
        "{body}"
    );
    p.write(
        "dashboards/sales.yml",
        "title: Sales\ncharts:\n  - {title: Revenue, type: line, metric: revenu, by: month}\n",
    );
    let (_, _, body) = get(s.port, "/dashboards", None);
    assert!(body.contains("did you mean `revenue`"), "{body}");
    p.write(
        "dashboards/sales.yml",
        "title: Sales\ncharts:\n  - {title: Revenue, type: line, metric: revenue, by: year}\n",
    );
    let (_, _, body) = get(s.port, "/dashboards", None);
    assert!(body.contains("not by year"), "{body}");
}

#[test]
fn the_starter_project_ships_a_dashboard() {
    let p = TestProject::starter();
    p.ok(&["build"]);
    let revenue = p.ok(&[
        "metrics", "query", "revenue", "--by", "quarter", "-o", "csv",
    ]);
    assert!(revenue.starts_with("quarter,revenue\n2024-"), "{revenue}");
    let s = serve(&p, &["--dev"]);
    let (code, _, page) = get(s.port, "/dashboards/overview", None);
    assert_eq!(code, 200, "{page}");
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 2, "{page}");
    assert!(
        page.contains("Best customers") && page.contains("<td class=\"num\">"),
        "{page}"
    );
    assert!(!page.contains("class=\"bad\""), "a chart failed: {page}");

    // The catalog: each table with its columns, their types and descriptions, and lineage.
    let (code, _, list) = get(s.port, "/catalog", None);
    assert_eq!(code, 200);
    let id = list
        .split("href=\"/catalog/")
        .filter_map(|l| l.split('"').next())
        .find(|id| id.starts_with("model.") && id.ends_with(".customers"))
        .expect("the customers model in the catalog")
        .to_string();
    let (code, _, entry) = get(s.port, &format!("/catalog/{id}"), None);
    assert_eq!(code, 200);
    assert!(
        entry.contains("<td>customer_id</td><td><code>BIGINT</code></td><td>Primary key.</td>"),
        "{entry}"
    );
    assert!(
        entry.contains("href=\"/dashboards/overview\""),
        "read by the dashboard: {entry}"
    );
    let (code, _, graph) = get(s.port, "/lineage", None);
    assert_eq!(code, 200);
    assert!(
        graph.contains("class=\"edge\"") && graph.contains("node dashboard"),
        "{graph}"
    );
    // Each page type drawn by a browser: what it shows, no console messages, a screenshot.
    let entry_path = format!("/catalog/{id}");
    for (path, name, drawn) in [
        ("/dashboards/overview", "dashboard", "<svg class=\"chart\""),
        ("/catalog", "catalog", "href=\"/catalog/model."),
        (entry_path.as_str(), "catalog-entry", "customer_id"),
        ("/lineage", "lineage", "class=\"lineage\""),
    ] {
        let url = format!("http://127.0.0.1:{}{path}", s.port);
        if let Some((dom, log)) = crate::project::browser(&url) {
            assert!(dom.contains(drawn), "{path}: {dom}");
            assert!(!log.contains("CONSOLE"), "{path}: {log}");
        }
        crate::project::screenshot(&url, name);
    }
}

#[test]
fn the_bi_role_reads_the_gold_layer_only_even_in_dashboards() {
    let p = TestProject::with_files(&[
        ("seeds/raw.csv", "id\n1\n2\n"),
        (
            "models/kpis.sql",
            "{{ config(schema='gold') }}\nselect count(*) as n from {{ ref('raw') }}",
        ),
        (
            "dashboards/board.yml",
            "title: Board\ncharts:\n  - {title: Gold, type: table, sql: \"select n from {{ ref('kpis') }}\"}\n  - {title: Raw, type: table, sql: \"select id from {{ ref('raw') }}\"}\n",
        ),
    ]);
    p.ok(&["build"]);
    p.add_user("ada", "admin", "analytical-engine");
    p.add_user("superset", "bi_reader", "bi-tool-secret");
    let s = serve(&p, &[]);
    let (_, head, _) = login(s.port, "superset", "bi-tool-secret");
    let bi = session_cookie(&head);
    let (code, _, page) = get(s.port, "/dashboards/board", Some(&bi));
    assert_eq!(code, 200);
    assert!(
        page.contains("<td class=\"num\">2</td>"),
        "the gold chart: {page}"
    );
    assert!(
        page.contains("outside the gold layer: the bi_reader role sees gold only"),
        "{page}"
    );
    assert!(
        !page.contains("<td class=\"num\">1</td>"),
        "no raw rows: {page}"
    );
    let (code, _, _) = get(s.port, "/dashboards/board/charts/1", Some(&bi));
    assert_eq!(code, 500);
    let (_, head, _) = login(s.port, "ada", "analytical-engine");
    let ada = session_cookie(&head);
    let (_, _, page) = get(s.port, "/dashboards/board", Some(&ada));
    assert!(
        page.contains("<td class=\"num\">1</td>") && !page.contains("class=\"bad\""),
        "{page}"
    );
}
