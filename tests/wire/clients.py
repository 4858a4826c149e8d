"""Real PostgreSQL clients against `strata serve --pg`: psycopg2, psycopg 3 and SQLAlchemy's
inspector. Usage: clients.py HOST PORT USER PASSWORD DATABASE [sqlalchemy]; with
`sqlalchemy`, only SQLAlchemy (1.4 or 2.x) through psycopg2. Prints one line per check; exits
non-zero on the first failure."""

import sys

host, port, user, password, database = sys.argv[1:6]
only_sqlalchemy = sys.argv[6:] == ["sqlalchemy"]


def check(name, got, expected):
    if got != expected:
        print(f"FAIL {name}: got {got!r}, expected {expected!r}")
        sys.exit(1)
    print(f"ok {name}")


def drivers():
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user=user, password=password, dbname=database)
    cur = conn.cursor()
    cur.execute("select count(*) from gold.orders where status = %s", ("completed",))
    completed = cur.fetchone()[0]
    cur.execute("select count(*) from gold.orders")
    total = cur.fetchone()[0]
    check("psycopg2 parameters narrow the rows", 0 < completed < total, True)
    try:
        cur.execute("drop table gold.orders")
        check("psycopg2 drop refused", "accepted", "refused")
    except psycopg2.Error as e:
        check("psycopg2 drop refused with 25006", e.pgcode, "25006")
    conn.rollback()
    conn.close()

    import psycopg

    with psycopg.connect(host=host, port=port, user=user, password=password, dbname=database) as conn:
        # psycopg 3 binds parameters on the server: a prepared statement, typed.
        row = conn.execute(
            "select count(*), max(order_id) from gold.orders where customer_id = %s", (14,)
        ).fetchone()
        check("psycopg3 server-side parameters", row[0] > 0, True)
        prepared = [
            conn.execute("select order_id from gold.orders where order_id = %s", (n,), prepare=True).fetchone()
            for n in (2, 4, 2)
        ]
        check("psycopg3 prepared statement reused", [r[0] for r in prepared], [2, 4, 2])



if not only_sqlalchemy:
    drivers()

import sqlalchemy as sa

engine = sa.create_engine(f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{database}")
insp = sa.inspect(engine)
check("sqlalchemy schemas include gold", "gold" in insp.get_schema_names(), True)
check("sqlalchemy tables", sorted(insp.get_table_names(schema="gold")), ["customers", "orders"])
check("sqlalchemy views", insp.get_view_names(schema="gold"), [])
columns = {c["name"]: str(c["type"]) for c in insp.get_columns("orders", schema="gold")}
check("sqlalchemy columns", (columns["order_id"], columns["order_date"], columns["status"]), ("BIGINT", "DATE", "TEXT"))
check("sqlalchemy primary key", insp.get_pk_constraint("orders", schema="gold")["constrained_columns"], [])
check("sqlalchemy has_table", insp.has_table("orders", schema="gold"), True)
check("sqlalchemy indexes", insp.get_indexes("orders", schema="gold"), [])
check("sqlalchemy foreign keys", insp.get_foreign_keys("orders", schema="gold"), [])
check("sqlalchemy unique constraints", insp.get_unique_constraints("orders", schema="gold"), [])
print("sqlalchemy", sa.__version__)
with engine.connect() as c:
    n = c.execute(sa.text("select count(*) from gold.orders where amount > :a"), {"a": 0}).scalar()
    check("sqlalchemy query", n > 0, True)
print("all clients passed")
