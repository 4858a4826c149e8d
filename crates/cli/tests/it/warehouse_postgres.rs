//! PostgreSQL as the warehouse (`type: postgres`): one project built on a real PostgreSQL
//! server and on the embedded warehouse gives the same rows, relation by relation, over two
//! rounds of data (seeds, views, tables, the three incremental strategies, a snapshot, tests);
//! a failed build leaves the previous table; rebuilding a table keeps the views reading it;
//! division is true division; a password written in profiles.yml is refused.

use serde_json::Value;

use crate::pg_server::{self, PASSWORD};
use crate::project::TestProject;

const ENV: &[(&str, &str)] = &[("WAREHOUSE_PASSWORD", PASSWORD)];

fn profiles(port: u16, database: &str) -> String {
    format!(
        "t:
  target: dev
  outputs:
    dev: {{type: strata, schema: analytics, threads: 4}}
    pg:
      type: postgres
      host: 127.0.0.1
      port: {port}
      user: postgres
      password: \"{{{{ env_var('WAREHOUSE_PASSWORD') }}}}\"
      dbname: {database}
      schema: analytics
      threads: 4
      sslmode: disable
"
    )
}

const ORDERS_1: &str = "id,customer_id,amount,qty,updated_at
1,1,10.5,2,2024-03-01 10:00:00
2,1,20.25,3,2024-03-01 11:00:00
3,2,7.0,1,2024-03-02 09:00:00
";

/// Round 2: order 2 changed, order 4 is new.
pub(crate) const ORDERS_2: &str = "id,customer_id,amount,qty,updated_at
1,1,10.5,2,2024-03-01 10:00:00
2,1,99.75,5,2024-03-03 08:00:00
3,2,7.0,1,2024-03-02 09:00:00
4,2,1.25,4,2024-03-03 09:30:00
";

pub(crate) fn project(port: u16, database: &str) -> TestProject {
    TestProject::with_files(&[
        ("profiles.yml", &profiles(port, database)),
        (
            "seeds/customers.csv",
            "id,name,tier,joined_on\n1,Ada,gold,2024-01-02\n2,Bob,,2024-02-03\n",
        ),
        ("seeds/orders.csv", ORDERS_1),
        (
            "models/stg_orders.sql",
            "{{ config(materialized='view') }}
select id, customer_id, amount, qty, qty / 2 as half_qty, amount / qty as unit_price,
       cast(updated_at as timestamp) as updated_at
from {{ ref('orders') }}",
        ),
        (
            "models/customer_totals.sql",
            "{{ config(materialized='table', grants={'select': ['reporter']}) }}
select c.id as customer_id, c.name, count(*) as orders, sum(o.amount) as amount,
       sum(o.qty) / count(*) as avg_qty
from {{ ref('customers') }} c join {{ ref('stg_orders') }} o on o.customer_id = c.id
group by c.id, c.name",
        ),
        (
            "models/big_customers.sql",
            "{{ config(materialized='view', grants={'select': ['reporter']}) }}
select * from {{ ref('customer_totals') }} where amount > 20",
        ),
        (
            "models/orders_merged.sql",
            "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}
select id, customer_id, amount, updated_at from {{ ref('stg_orders') }}
{% if is_incremental() %}where updated_at > (select max(updated_at) from {{ this }}){% endif %}",
        ),
        (
            "models/orders_replaced.sql",
            "{{ config(materialized='incremental', unique_key='id') }}
select id, amount, qty from {{ ref('stg_orders') }}
{% if is_incremental() %}where updated_at > (select max(updated_at) - interval '1 day' from {{ ref('stg_orders') }}){% endif %}",
        ),
        (
            "models/orders_log.sql",
            "{{ config(materialized='incremental') }}
select id, amount, {{ var('round', 0) }} as round from {{ ref('stg_orders') }}
{% if is_incremental() %}where updated_at > (select max(updated_at) from {{ this }} t join {{ ref('stg_orders') }} s on s.id = t.id){% endif %}",
        ),
        (
            "snapshots/orders_history.sql",
            "{% snapshot orders_history %}
{{ config(target_schema='snapshots', unique_key='id', strategy='timestamp', updated_at='updated_at') }}
select id, customer_id, amount, updated_at from {{ ref('stg_orders') }}
{% endsnapshot %}",
        ),
        (
            "models/schema.yml",
            "version: 2
models:
  - name: stg_orders
    columns:
      - name: id
        tests: [unique, not_null]
  - name: customer_totals
    columns:
      - name: name
        tests:
          - accepted_values: {values: [Ada, Bob]}
",
        ),
    ])
}

/// Every row of `sql` on `target`, with numbers as text of 9 significant digits (an integer
/// column may be int4 on one warehouse and int64 on the other; a double's last digit may
/// differ).
fn rows(p: &TestProject, target: &str, sql: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let out = p.ok_with(
        &[
            "--target", target, "show", "--inline", sql, "--limit", "-1", "-o", "json",
        ],
        env,
    );
    let v: Value = serde_json::from_str(&out).expect("show json");
    v["show"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            let mut row = row.clone();
            if let Some(o) = row.as_object_mut() {
                for v in o.values_mut() {
                    if let Some(n) = v.as_f64() {
                        *v = Value::String(format!("{:.9e}", n));
                    } else if let Some(s) = v.as_str()
                        && let Ok(n) = s.parse::<f64>()
                    {
                        // Decimals are printed as text.
                        *v = Value::String(format!("{:.9e}", n));
                    }
                }
            }
            row
        })
        .collect()
}

/// The relations of the project, each read ordered, are the same on targets `a` and `b`.
pub(crate) fn same_on(p: &TestProject, a: &str, b: &str, env: &[(&str, &str)]) {
    for (relation, order) in [
        ("{{ ref('customers') }}", "id"),
        ("{{ ref('orders') }}", "id"),
        ("{{ ref('stg_orders') }}", "id"),
        ("{{ ref('customer_totals') }}", "customer_id"),
        ("{{ ref('big_customers') }}", "customer_id"),
        ("{{ ref('orders_merged') }}", "id"),
        ("{{ ref('orders_replaced') }}", "id"),
        ("{{ ref('orders_log') }}", "round, id"),
        ("{{ ref('orders_history') }}", "id, dbt_valid_from"),
    ] {
        let columns = match relation.contains("orders_history") {
            // The snapshot's own columns are compared except its id (a hash of the text of
            // a timestamp, which each warehouse writes its own way).
            true => {
                "id, customer_id, amount, updated_at, dbt_valid_from, dbt_valid_to, dbt_updated_at"
            }
            false => "*",
        };
        let sql = format!("select {columns} from {relation} order by {order}");
        let left = rows(p, a, &sql, env);
        let right = rows(p, b, &sql, env);
        assert!(!left.is_empty(), "{relation} is empty");
        assert_eq!(left, right, "{relation} differs between {a} and {b}");
    }
}

#[test]
fn a_project_builds_in_postgres_as_on_the_embedded_warehouse() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("warehouse_same");
    db.sql("do $$ begin if not exists (select from pg_roles where rolname = 'reporter') then create role reporter; end if; end $$");
    let p = project(server.port, &db.name);

    for target in ["dev", "pg"] {
        let out = p.ok_with(&["--target", target, "build", "--vars", "{round: 1}"], ENV);
        assert!(out.contains("ERROR=0"), "{target}: {out}");
    }
    // Models are real relations of the database, in the target's schemas.
    assert_eq!(
        db.sql(
            "select table_schema || '.' || table_name || ' ' || table_type from information_schema.tables \
             where table_schema in ('analytics', 'snapshots') order by 1"
        ),
        "analytics.big_customers VIEW
analytics.customer_totals BASE TABLE
analytics.customers BASE TABLE
analytics.orders BASE TABLE
analytics.orders_log BASE TABLE
analytics.orders_merged BASE TABLE
analytics.orders_replaced BASE TABLE
analytics.stg_orders VIEW
snapshots.orders_history BASE TABLE"
    );
    // Seeds get dbt-postgres's types.
    assert_eq!(
        db.sql(
            "select string_agg(column_name || ' ' || data_type, ', ' order by ordinal_position) \
             from information_schema.columns where table_name = 'customers'"
        ),
        "id integer, name text, tier text, joined_on date"
    );
    // True division: 3 / 2 is 1.5 in PostgreSQL too.
    assert_eq!(
        db.sql("select half_qty from analytics.stg_orders where id = 2"),
        "1.5"
    );
    same_on(&p, "dev", "pg", ENV);

    // Round 2: a changed and a new order.
    p.write("seeds/orders.csv", ORDERS_2);
    for target in ["dev", "pg"] {
        let out = p.ok_with(&["--target", target, "build", "--vars", "{round: 2}"], ENV);
        assert!(out.contains("ERROR=0"), "{target}: {out}");
    }
    assert_eq!(
        db.sql(
            "select string_agg(id || ':' || amount, ' ' order by id) from analytics.orders_merged"
        ),
        "1:10.5 2:99.75 3:7 4:1.25"
    );
    assert_eq!(
        db.sql(
            "select count(*) || ' versions, ' || count(dbt_valid_to) || ' closed' from snapshots.orders_history"
        ),
        "5 versions, 1 closed"
    );
    same_on(&p, "dev", "pg", ENV);

    // `grants` are PostgreSQL's privileges: the role reads what it was granted only.
    let can_read = |relation: &str| {
        db.sql(&format!(
            "select has_table_privilege('reporter', 'analytics.{relation}', 'select')"
        ))
    };
    assert_eq!(can_read("customer_totals"), "t");
    assert_eq!(can_read("big_customers"), "t");
    assert_eq!(can_read("orders_merged"), "f");

    // Rebuilding a table keeps the views reading it, and their privileges.
    p.ok_with(&["--target", "pg", "run", "-s", "customer_totals"], ENV);
    assert_eq!(
        db.sql("select string_agg(name, ' ') from analytics.big_customers"),
        "Ada"
    );
    assert_eq!(can_read("customer_totals"), "t");
    assert_eq!(can_read("big_customers"), "t");

    // A failed build names the model and leaves the table as it was.
    let before = db.sql("select string_agg(customer_id || ':' || amount, ' ' order by 1) from analytics.customer_totals");
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect 1 / 0 as customer_id",
    );
    let out = p.fails_with(&["--target", "pg", "run", "-s", "customer_totals"], ENV, 1);
    assert!(
        out.contains("customer_totals") && out.contains("division by zero"),
        "{out}"
    );
    assert_eq!(
        db.sql("select string_agg(customer_id || ':' || amount, ' ' order by 1) from analytics.customer_totals"),
        before
    );
    assert!(
        !db.sql("select count(*) from pg_class where relname like 'customer_totals__dbt%'")
            .starts_with('1'),
        "a temporary relation was left behind"
    );
}

#[test]
fn postgres_targets_keep_passwords_out_of_files_and_say_what_is_wrong() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("warehouse_errors");
    let p = project(server.port, &db.name);
    // A password written in the file is refused before anything connects.
    p.write(
        "profiles.yml",
        &profiles(server.port, &db.name)
            .replace("\"{{ env_var('WAREHOUSE_PASSWORD') }}\"", "hunter2"),
    );
    let out = p.fails_with(&["--target", "pg", "run"], ENV, 2);
    assert!(
        out.contains("`password` is written in the file") && out.contains("env_var"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");

    // A wrong password: the server's refusal, and where to fix it.
    p.write("profiles.yml", &profiles(server.port, &db.name));
    let out = p.fails_with(
        &["--target", "pg", "run"],
        &[("WAREHOUSE_PASSWORD", "wrong")],
        2,
    );
    assert!(
        out.contains("cannot connect to PostgreSQL")
            && out.contains("password authentication failed"),
        "{out}"
    );
    assert!(!out.contains("wrong"), "{out}");

    // Commands that work on Delta tables say so on a postgres target.
    let out = p.fails_with(&["--target", "pg", "history", "customers"], ENV, 2);
    assert!(
        out.contains("builds in PostgreSQL") && out.contains("embedded warehouse"),
        "{out}"
    );

    // `strata debug` checks the connection.
    let out = p.ok_with(&["--target", "pg", "debug"], ENV);
    assert!(out.contains("connection:    OK"), "{out}");
}
