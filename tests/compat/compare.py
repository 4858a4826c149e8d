"""Compare every relation dbt-duckdb built with the one Strata built for the same project.

usage: compare.py DUCKDB_FILE STRATA_BIN STRATA_PROJECT_DIR
Rows are compared as multisets after normalising numbers (6 decimals), dates and timestamps
(ISO text) and booleans. Exits 1 when any relation differs.
"""
import datetime
import decimal
import json
import subprocess
import sys

import duckdb


def norm(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, decimal.Decimal)):
        return round(float(v), 6)
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def strata_rows(strata, project, schema, name):
    sql = f'select * from "{schema}"."{name}"'
    out = subprocess.run(
        [strata, "--project-dir", project, "--target", "strata", "show", "--inline", sql, "--limit", "-1", "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = json.loads(out)
    return rows


def main():
    duck_file, strata, project = sys.argv[1:4]
    con = duckdb.connect(duck_file, read_only=True)
    relations = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema like 'main%' order by 1, 2"
    ).fetchall()
    failures = 0
    print(f"{'relation':<32} {'rows':>6}  result")
    for schema, name in relations:
        cur = con.execute(f'select * from "{schema}"."{name}"')
        cols = [d[0] for d in cur.description]
        duck = sorted((tuple(norm(v) for v in row) for row in cur.fetchall()), key=repr)
        rows = strata_rows(strata, project, schema, name)
        strata_cols = list(rows[0].keys()) if rows else cols
        mine = sorted((tuple(norm(r.get(c)) for c in cols) for r in rows), key=repr)
        if set(strata_cols) != set(cols):
            verdict = f"DIFFERENT COLUMNS: dbt {cols} strata {strata_cols}"
        elif duck != mine:
            diff = [r for r in duck if r not in mine][:3]
            verdict = f"DIFFERENT ROWS (e.g. dbt has {diff})"
        else:
            verdict = "same"
        if verdict != "same":
            failures += 1
        print(f"{schema + '.' + name:<32} {len(duck):>6}  {verdict}")
    print(f"{len(relations) - failures} passed, {failures} failed")
    sys.exit(1 if failures or not relations else 0)


if __name__ == "__main__":
    main()
