//! `strata ingest` from a real PostgreSQL server: tables and queries, every common type,
//! incremental loads by cursor, parallel reads by key range, exactly once across a kill, and
//! the errors of a wrong password or an unreachable server.

use crate::pg_server::{self, PASSWORD};
use crate::project::TestProject;

const ENV: &[(&str, &str)] = &[("SHOP_PASSWORD", PASSWORD)];

fn sources(url: &str, tables: &str) -> String {
    format!(
        "version: 2
sources:
  - name: shop
    ingest: {{type: postgres, url: \"{url}\", password: \"{{{{ env_var('SHOP_PASSWORD') }}}}\"}}
    tables:
{tables}"
    )
}

#[test]
fn tables_and_queries_land_with_their_types_and_orders_merge_incrementally() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("shop_types");
    db.sql(
        "create type mood as enum ('happy', 'sad');
         create table customers (
           id int primary key, name text, tier varchar(10), code char(3), active bool,
           small int2, big int8, score float4, ratio float8, balance numeric(12,2),
           raw_amount numeric, born date, wakes time, created timestamp,
           seen timestamptz, token uuid, doc json, attrs jsonb, tags text[], nums int4[],
           photo bytea, feeling mood, waited interval, addr inet);
         insert into customers values
          (1, 'Ada', 'gold', 'ABC', true, 7, 9000000000, 1.5, 2.25, 1234.56,
           12345678901234.123456789, '1990-05-17', '07:30:00', '2024-01-02 03:04:05.678901',
           '2024-01-02 03:04:05+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}',
           '{\"b\": [1, 2]}', '{x,NULL,\"y z\"}', '{1,2,3}', '\\x0102ff', 'happy',
           '1 day 02:00:00', '10.0.0.1'),
          (2, 'Bob', null, null, false, null, null, null, null, -0.5, null, null, null, null,
           null, null, null, null, '{}', null, null, null, null, null);
         create table orders (id int primary key, customer_id int, amount numeric(10,2),
                              status text, updated_at timestamptz);
         insert into orders values
          (1, 1, 50.00, 'placed', '2024-03-01 10:00:00+00'),
          (2, 1, 150.00, 'placed', '2024-03-01 11:00:00+00'),
          (3, 2, 300.00, 'placed', '2024-03-01 12:00:00+00');",
    );
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            &sources(
                &db.url(),
                "      - name: customers
      - name: orders
        ingest: {mode: incremental, cursor: updated_at, primary_key: [id], write: merge}
      - name: big_orders
        ingest: {query: \"select id, amount from orders where amount > 100\", write: replace}
",
            ),
        ),
        (
            "models/customer_totals.sql",
            "select c.name, sum(o.amount) as total
             from {{ source('shop', 'customers') }} c
             join {{ source('shop', 'orders') }} o on o.customer_id = c.id
             group by c.name",
        ),
    ]);
    let out = p.ok_with(&["ingest"], ENV);
    assert!(
        out.contains("OK ingest shop.customers into bronze.customers: 2 rows"),
        "{out}"
    );
    assert!(
        out.contains("OK ingest shop.orders into bronze.orders: 3 rows"),
        "{out}"
    );
    assert!(
        out.contains("OK ingest shop.big_orders into bronze.big_orders: 2 rows"),
        "{out}"
    );
    // Every type lands as its Arrow/Delta counterpart (time, interval, enum, inet as text).
    let types = p.query(
        "select column_name, data_type from information_schema.columns
         where table_schema = 'bronze' and table_name = 'customers' order by ordinal_position",
    );
    let expected = [
        "id,Int32",
        "name,Utf8View",
        "tier,Utf8View",
        "code,Utf8View",
        "active,Boolean",
        "small,Int16",
        "big,Int64",
        "score,Float32",
        "ratio,Float64",
        "balance,\"Decimal128(12, 2)\"",
        "raw_amount,\"Decimal128(38, 10)\"",
        "born,Date32",
        "wakes,Utf8View",
        "created,Timestamp(µs)",
        "seen,\"Timestamp(µs, \"\"UTC\"\")\"",
        "token,Utf8View",
        "doc,Utf8View",
        "attrs,Utf8View",
        "tags,\"List(Utf8View, field: 'element')\"",
        "nums,\"List(Int32, field: 'element')\"",
        "photo,BinaryView",
        "feeling,Utf8View",
        "waited,Utf8View",
        "addr,Utf8View",
    ];
    for e in expected {
        assert!(types.iter().any(|t| t == e), "{e} not in {types:#?}");
    }
    assert_eq!(
        p.query(
            "select name, tier, code, active, small, big, score, ratio, balance, raw_amount,
                    born, wakes, created, seen, token, doc, attrs, tags, nums,
                    photo, feeling, waited, addr
             from bronze.customers where id = 1"
        )[1],
        "Ada,gold,ABC,true,7,9000000000,1.5,2.25,1234.56,12345678901234.1234567890,1990-05-17,\
         07:30:00,2024-01-02T03:04:05.678901,2024-01-02T01:04:05Z,\
         a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,\"{\"\"a\"\": 1}\",\"{\"\"b\"\": [1, 2]}\",\
         \"[x, , y z]\",\"[1, 2, 3]\",0102ff,happy,1 day 02:00:00,10.0.0.1"
    );
    assert_eq!(
        p.query(
            "select name, balance, tags, cardinality(tags) as n from bronze.customers where id = 2"
        ),
        vec!["name,balance,tags,n", "Bob,-0.50,[],0"]
    );
    // The load columns name the server, never the password.
    let origin = p.query("select distinct _strata_source from bronze.orders");
    assert_eq!(
        origin[1],
        format!("postgres://127.0.0.1:{}/shop_types/orders", server.port)
    );

    // Changes after the cursor: only those rows are read, and merged by key.
    db.sql(
        "update orders set status = 'shipped', updated_at = '2024-03-02 09:00:00+00' where id = 1;
         insert into orders values (4, 2, 75.00, 'placed', '2024-03-02 10:00:00+00');",
    );
    let out = p.ok_with(&["ingest", "-s", "source:shop.orders"], ENV);
    assert!(out.contains("bronze.orders: 2 rows"), "{out}");
    assert_eq!(
        p.query("select id, status from bronze.orders order by id"),
        vec!["id,status", "1,shipped", "2,placed", "3,placed", "4,placed"]
    );
    // Nothing new: nothing read, nothing written.
    let out = p.ok_with(&["ingest", "-s", "source:shop.orders"], ENV);
    assert!(out.contains("up to date, nothing new"), "{out}");
    p.ok_with(&["run"], ENV);
    assert_eq!(
        p.query("select name, total from customer_totals order by name"),
        vec!["name,total", "Ada,200.00", "Bob,375.00"]
    );
    // A full refresh reads everything again (one row per key).
    let out = p.ok_with(
        &["ingest", "-s", "source:shop.orders", "--full-refresh"],
        ENV,
    );
    assert!(out.contains("4 rows"), "{out}");
}

#[test]
fn a_large_table_is_read_in_parallel_by_key_range_exactly_once_across_kills() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("shop_big");
    db.sql(
        "create table events (id bigint primary key, kind text, amount numeric(12,2),
                              at timestamptz);
         insert into events
           select i, 'k' || (i % 7), (i % 1000) / 100.0,
                  timestamptz '2024-01-01' + i * interval '1 second'
           from generate_series(1, 400000) as i;
         analyze events;",
    );
    let p = TestProject::with_files(&[(
        "models/sources.yml",
        &sources(
            &db.url(),
            "      - name: events
        ingest: {mode: incremental, cursor: at, primary_key: id, write: append, parallel: 3}
",
        ),
    )]);
    // Killed at any moment of the load, then run again: every row exactly once.
    for delay_ms in [100, 400, 900] {
        let mut child = p
            .std_command(&["ingest"])
            .envs(ENV.iter().copied())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    p.ok_with(&["ingest"], ENV);
    let checksum = "count(*) as n, count(distinct id) as d, sum(id) as s, sum(amount) as a";
    let same = || {
        let source = db
            .sql(&format!("select {checksum} from events"))
            .replace('|', ",");
        assert_eq!(
            p.query(&format!("select {checksum} from bronze.events"))[1],
            source
        );
    };
    same();
    // New rows after the cursor, killed while loading, then loaded once.
    db.sql(
        "insert into events
           select i, 'new', 1, timestamptz '2024-06-01' + i * interval '1 second'
           from generate_series(400001, 400500) as i;",
    );
    let mut child = p
        .std_command(&["ingest"])
        .envs(ENV.iter().copied())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let _ = child.kill();
    let _ = child.wait();
    p.ok_with(&["ingest"], ENV);
    same();
    assert_eq!(db.sql("select count(*) from events"), "400500");
    let out = p.ok_with(&["ingest"], ENV);
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn a_wrong_password_or_an_unreachable_server_is_named_and_the_password_never_shown() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("shop_auth");
    db.sql("create table customers (id int); insert into customers values (1);");
    let p = TestProject::with_files(&[(
        "models/sources.yml",
        &sources(&db.url(), "      - name: customers\n"),
    )]);
    p.ok_with(&["ingest"], ENV);
    let wrong = "Wr0ng-Secret-42";
    let out = p.fails_with(&["ingest"], &[("SHOP_PASSWORD", wrong)], 1);
    assert!(
        out.contains("cannot connect to PostgreSQL at 127.0.0.1:")
            && out.contains("password authentication failed for user \"postgres\""),
        "{out}"
    );
    assert!(!out.contains(wrong) && !out.contains(PASSWORD), "{out}");
    // Bronze is unchanged.
    assert_eq!(
        p.query("select count(*) as n from bronze.customers"),
        vec!["n", "1"]
    );

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    p.write(
        "models/sources.yml",
        &sources(
            &format!("postgresql://postgres@127.0.0.1:{closed}/shop_auth"),
            "      - name: customers\n",
        ),
    );
    let out = p.fails_with(&["ingest"], ENV, 1);
    assert!(
        out.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{closed}/shop_auth"
        )),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "{out}");

    // A password written in the file is refused before anything connects.
    p.write(
        "models/sources.yml",
        "version: 2
sources:
  - name: shop
    ingest: {type: postgres, url: \"postgresql://postgres:hunter2@127.0.0.1/x\"}
    tables:
      - name: customers
",
    );
    let out = p.fails_with(&["ingest"], ENV, 2);
    assert!(
        out.contains("the `url` holds a password written in the file"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");

    // A table that is not there, and a cursor that is not a cursor.
    p.write(
        "models/sources.yml",
        &sources(
            &db.url(),
            "      - name: nowhere
      - name: customers
        ingest: {mode: incremental, cursor: id, table: customers}
      - name: named
        ingest: {mode: incremental, cursor: missing, table: customers}
",
        ),
    );
    let out = p.fails_with(&["ingest"], ENV, 1);
    assert!(
        out.contains("cannot read table `nowhere`")
            && out.contains("relation \"nowhere\" does not exist"),
        "{out}"
    );
    assert!(
        out.contains("the cursor column `missing` is not in table `customers` (columns: id)"),
        "{out}"
    );
    // The table whose settings are right loads.
    assert!(out.contains("OK ingest shop.customers"), "{out}");

    // A lookback that is not an interval, a split column that is not an integer, a root
    // certificate file that is not there: each named, that table only, nothing written.
    db.sql("create table named (id int, label text); insert into named values (1, 'a');");
    let before = p.query("select count(*) as n from bronze.customers");
    p.write(
        "models/sources.yml",
        &sources(
            &format!(
                "{}?sslmode=verify-full&sslrootcert=/nowhere/root.crt",
                db.url()
            ),
            "      - name: customers
",
        ),
    );
    let out = p.fails_with(&["ingest"], ENV, 1);
    assert!(
        out.contains("cannot read sslrootcert /nowhere/root.crt"),
        "{out}"
    );
    p.write(
        "models/sources.yml",
        &sources(
            &db.url(),
            "      - name: customers
        ingest: {mode: incremental, cursor: id, lookback: \"a while\"}
      - name: named
        ingest: {split_by: label, parallel: 2}
",
        ),
    );
    let out = p.fails_with(&["ingest"], ENV, 1);
    assert!(
        out.contains("invalid input syntax for type bigint: \"a while\""),
        "{out}"
    );
    assert!(
        out.contains("`label` is text; a table is split for parallel reading on an integer column"),
        "{out}"
    );
    assert_eq!(
        p.query("select count(*) as n from bronze.customers"),
        before
    );
}

#[test]
fn tls_is_used_as_sslmode_asks_and_verify_full_checks_the_certificate() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("shop_tls");
    db.sql("create table customers (id int); insert into customers values (1), (2);");
    // The role `tls_only` may only log in over TLS.
    let url = |mode: &str| {
        format!(
            "postgresql://tls_only@127.0.0.1:{}/shop_tls?sslmode={mode}",
            server.port
        )
    };
    let p = TestProject::with_files(&[(
        "models/sources.yml",
        &sources(&url("require"), "      - name: customers\n"),
    )]);
    // require: encrypted, the certificate not checked (as libpq does).
    p.ok_with(&["ingest"], ENV);
    assert_eq!(
        p.query("select count(*) as n from bronze.customers"),
        vec!["n", "2"]
    );
    // disable: no TLS, which the server refuses this role.
    p.write(
        "models/sources.yml",
        &sources(&url("disable"), "      - name: customers\n"),
    );
    let out = p.fails_with(&["ingest"], ENV, 1);
    assert!(out.contains("no encryption"), "{out}");
    // verify-full: a certificate of an unknown authority is not trusted...
    p.write(
        "models/sources.yml",
        &sources(&url("verify-full"), "      - name: customers\n"),
    );
    let out = p.fails_with(&["ingest"], ENV, 1);
    assert!(out.contains("certificate"), "{out}");
    // ...unless sslrootcert names the authority.
    let trusted = format!(
        "{}&sslrootcert={}",
        url("verify-full"),
        server.certificate().display()
    );
    p.write(
        "models/sources.yml",
        &sources(&trusted, "      - name: customers\n"),
    );
    let out = p.ok_with(&["ingest"], ENV);
    assert!(out.contains("2 rows"), "{out}");
}
