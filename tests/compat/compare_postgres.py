"""Compare what dbt-postgres and Strata built in PostgreSQL from the same project, and what
Strata built from it on its embedded warehouse.

usage: compare_postgres.py --dbt-dsn DSN --strata-dsn DSN --strata STRATA_BIN
                           --strata-project DIR --dbt-project DIR [--results LABEL DIR]...
                           [--known-different FILE]

1. dbt-postgres against Strata, both in PostgreSQL (two databases of one server): the same
   relations (schema and name), the same columns in the same order with the same PostgreSQL
   types (format_type), and the same rows as a multiset: exact values, NULL equal only to
   NULL. Relations listed in --known-different (`schema.name reason`) may differ: Strata
   divides truly (`7 / 2` is 3.5), PostgreSQL as dbt-postgres runs it truncates.
2. Strata in PostgreSQL against Strata's embedded warehouse: the same relations, column
   names and rows, numbers compared by value (a PostgreSQL `integer` holds what an Arrow
   Int64 holds; `numeric` from round() what a double does, within a relative 1e-9).
3. Each build's node outcomes (compare.py's rules): dbt-postgres and Strata-on-PostgreSQL
   must end every model, seed, snapshot and test the same way.

Snapshot columns filled from the clock of the run are compared by structure only, as in
compare.py. Exits 1 when anything differs; the last line says how much was identical.
"""
import argparse
import collections
import datetime
import decimal
import math
import json
import sys

import psycopg2

from compare import Strata, compare_results, quote, snapshot_structure_columns

SCHEMAS = "table_schema not in ('information_schema', 'pg_catalog', 'strata') " \
          "and table_schema not like 'pg_%'"


def pg_columns(con):
    cur = con.cursor()
    cur.execute(
        "select c.table_schema, c.table_name, c.column_name, "
        "format_type(a.atttypid, a.atttypmod) "
        "from information_schema.columns c "
        "join pg_attribute a on a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass "
        "and a.attname = c.column_name "
        f"where {SCHEMAS.replace('table_schema', 'c.table_schema')} "
        "order by c.table_schema, c.table_name, c.ordinal_position")
    out = collections.defaultdict(list)
    for schema, name, column, data_type in cur.fetchall():
        out[(schema, name)].append((column, data_type))
    return out


def pg_rows(con, key):
    cur = con.cursor()
    cur.execute(f"select * from {quote(key[0])}.{quote(key[1])}")
    return cur.fetchall()


def norm(value, loose):
    """A value as compared: numbers by value when `loose` (across warehouses)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if loose and isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    if loose and isinstance(value, str):
        # A date is written 2024-01-02; a timestamp has a time after it.
        parse = datetime.date.fromisoformat if len(value) == 10 else datetime.datetime.fromisoformat
        try:
            return norm(parse(value.replace("Z", "+00:00")), loose)
        except ValueError:
            pass
        try:
            return float(decimal.Decimal(value))
        except decimal.InvalidOperation:
            return value
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def same_value(a, b):
    if (a is None) != (b is None):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def compare_rows(left, right, structure, names, loose):
    """Problems between two row lists (as multisets), with `structure` columns compared by
    NULL-ness only."""
    keep = [i for i, n in enumerate(names) if n not in structure]

    def prepared(rows):
        out = []
        for row in rows:
            values = [norm(v, loose) for v in row]
            out.append(tuple(values[i] if i in keep else (values[i] is None) for i in range(len(names))))
        return sorted(out, key=lambda r: tuple((v is None, str(v) if not isinstance(v, float)
                                                else f"{v:.9g}") for v in r))

    a, b = prepared(left), prepared(right)
    if len(a) != len(b):
        return [f"{len(a)} rows against {len(b)}"]
    problems = []
    for x, y in zip(a, b):
        if not all(same_value(u, v) for u, v in zip(x, y)):
            problems.append(f"row differs:\n  {x}\n  {y}")
            if len(problems) >= 3:
                break
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dbt-dsn", required=True)
    parser.add_argument("--strata-dsn", required=True)
    parser.add_argument("--strata", required=True)
    parser.add_argument("--strata-project", required=True)
    parser.add_argument("--dbt-project", required=True)
    parser.add_argument("--results", nargs=2, action="append", default=[],
                        metavar=("LABEL", "DIR"))
    parser.add_argument("--known-different", metavar="FILE")
    args = parser.parse_args()

    dbt_con = psycopg2.connect(args.dbt_dsn)
    strata_con = psycopg2.connect(args.strata_dsn)
    embedded = Strata(args.strata, args.strata_project)
    manifest = json.load(open(f"{args.dbt_project}/target/manifest.json"))
    structure = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "snapshot":
            structure[(node["schema"], node.get("alias") or node["name"])] = \
                snapshot_structure_columns(node)
    known = {}
    if args.known_different:
        for line in open(args.known_different):
            line = line.strip()
            if line and not line.startswith("#"):
                relation, _, reason = line.partition(" ")
                known[relation] = reason.strip()

    dbt_cols, strata_cols = pg_columns(dbt_con), pg_columns(strata_con)
    relations = sorted(set(dbt_cols) | set(strata_cols))
    same = expected = same_embedded = 0
    print(f"{'relation':<40} {'rows':>5}  dbt-postgres / strata-postgres   strata-postgres / embedded")
    for key in relations:
        label = f"{key[0]}.{key[1]}"
        if key not in strata_cols or key not in dbt_cols:
            side = "DBT-POSTGRES" if key in dbt_cols else "STRATA"
            print(f"{label:<40} {'':>5}  ONLY IN {side}")
            continue
        names = [c for c, _ in dbt_cols[key]]
        problems = []
        if dbt_cols[key] != strata_cols[key]:
            problems.append(f"columns differ:\n  dbt-postgres: {dbt_cols[key]}\n"
                            f"  strata:       {strata_cols[key]}")
        strata_rows = pg_rows(strata_con, key)
        if not problems:
            problems = compare_rows(pg_rows(dbt_con, key), strata_rows,
                                    structure.get(key, set()), names, loose=False)
        if problems and label in known:
            expected += 1
            first = f"known difference: {known[label]}"
        elif problems:
            first = "DIFFERENT"
        else:
            same += 1
            first = "same" + ("  (listed as known: remove it)" if label in known else "")
        # Strata on PostgreSQL against Strata embedded.
        try:
            shown = embedded.query(f"select * from {quote(key[0])}.{quote(key[1])}")
            # `show -o json` leaves NULLs out of a row: the columns come from the catalog.
            columns = [r["column_name"] for r in sorted(embedded.query(
                "select column_name, ordinal_position from information_schema.columns "
                f"where table_schema = '{key[0]}' and table_name = '{key[1]}'"),
                key=lambda r: r["ordinal_position"])]
            embedded_rows = [[r.get(n) for n in names] for r in shown]
            if columns != names:
                second = [f"columns differ: {columns} against {names}"]
            else:
                second = compare_rows(strata_rows, embedded_rows, structure.get(key, set()),
                                      names, loose=True)
        except Exception as e:  # noqa: BLE001 - any failure is a difference, shown
            second = [str(e)]
        same_embedded += not second
        print(f"{label:<40} {len(strata_rows):>5}  {first:<32}  {'same' if not second else 'DIFFERENT'}")
        for p in problems if first == "DIFFERENT" else []:
            print("      " + p.replace("\n", "\n      "))
        for p in second:
            print("      embedded: " + p.replace("\n", "\n      "))
    same_tests = tests = same_nodes = nodes = 0
    for label, folder in args.results:
        st, t, sn, n = compare_results(label, folder, names=("dbt-postgres", "strata"))
        same_tests, tests, same_nodes, nodes = same_tests + st, tests + t, same_nodes + sn, nodes + n
    n = len(relations)
    ok = n > 0 and same + expected == n and same_embedded == n and same_tests == tests \
        and same_nodes == nodes
    print(f"\npostgres compat {'OK' if ok else 'FAILED'}: {same} of {n} relations identical to "
          f"dbt-postgres's" + (f" ({expected} known differences)" if expected else "") +
          f", {same_embedded} of {n} identical to the embedded warehouse's, "
          f"{same_tests} of {tests} test outcomes and {same_nodes} of {nodes} build exit codes "
          f"and model/seed/snapshot outcomes identical")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
