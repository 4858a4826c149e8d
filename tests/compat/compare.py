"""Compare what dbt-duckdb and Strata built from the same project, and how their nodes ended.

usage: compare.py --duckdb FILE --duck-project DIR --strata STRATA_BIN --strata-project DIR
                  [--results LABEL DIR]...

where each DIR holds one build's duck.json and strata.json (target/run_results.json) and
duck.rc and strata.rc (the exit codes of `dbt build` and `strata build`).

Relations: both warehouses must hold the same relations (schema and name). For each one the
columns must have the same names in the same order and the same type family (see the table
below), and the rows must be the same multiset: row order does not matter, duplicates count,
and NULL is only equal to NULL (never to '' or 0). Doubles are equal within a relative 1e-9;
everything else exactly. Strata's relations are read with `strata show --inline ... -o json`
and their column types from Strata's information_schema.columns, which must agree with the
type of the values (arrow_typeof).

Snapshots record the time of the run that wrote a version, which differs between the two
builds by nature (SNAPSHOT_COLUMNS below says which columns are compared by structure only).

Run results: both builds must exit with the same code, and each node's status (success,
error, skipped, pass, warn, fail) and, for tests, the failure count must be the same in both
target/run_results.json files of a build.

Exits 1 when anything differs; the last line says how much was identical.
"""
import argparse
import collections
import datetime
import decimal
import json
import math
import re
import struct
import subprocess
import sys

import duckdb

# One family per kind of value, so a column compares equal only with a column of the same
# kind. DuckDB spells a type as `information_schema.columns.data_type` does (INTEGER,
# DECIMAL(10,2), TIMESTAMP WITH TIME ZONE); Strata as Arrow does (Int64, Decimal128(10, 2),
# Timestamp(Microsecond, None)).
#
#   family        DuckDB                                   Strata (Arrow)
#   integer       TINYINT SMALLINT INTEGER BIGINT HUGEINT  Int8..Int64, UInt8..UInt64
#                 and their unsigned forms
#   double        DOUBLE FLOAT REAL                        Float16 Float32 Float64
#   decimal(p,s)  DECIMAL(p,s) / NUMERIC(p,s)              Decimal128(p, s) Decimal256(p, s)
#   varchar       VARCHAR TEXT STRING                      Utf8 LargeUtf8 Utf8View
#   boolean       BOOLEAN                                  Boolean
#   date          DATE                                     Date32 Date64
#   timestamp     TIMESTAMP TIMESTAMP_S/_MS/_NS DATETIME   Timestamp(unit, None)
#   timestamptz   TIMESTAMP WITH TIME ZONE                 Timestamp(unit, Some(tz))
#
# Integer widths are one family (dbt-duckdb loads seed integers as INTEGER and sums them to
# HUGEINT; Strata uses Int64 throughout), and so are float widths. Decimals keep precision
# and scale: DECIMAL(10,2) differs from DECIMAL(12,2) and from DOUBLE. Any other type is its
# own family, named as written, so it matches nothing from the other side.
DUCK_TYPES = {
    "integer": {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "INT", "INT2", "INT4", "INT8"},
    "double": {"DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"},
    "varchar": {"VARCHAR", "TEXT", "STRING"},
    "boolean": {"BOOLEAN", "BOOL"},
    "date": {"DATE"},
    "timestamp": {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME"},
    "timestamptz": {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"},
}
ARROW_TYPES = {
    "integer": {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"},
    "double": {"Float16", "Float32", "Float64"},
    "varchar": {"Utf8", "LargeUtf8", "Utf8View"},
    "boolean": {"Boolean"},
    "date": {"Date32", "Date64"},
}


def duck_family(data_type):
    t = data_type.strip().upper()
    m = re.fullmatch(r"(?:DECIMAL|NUMERIC)\((\d+),\s*(\d+)\)", t)
    if m:
        return f"decimal({m[1]},{m[2]})"
    for family, names in DUCK_TYPES.items():
        if t in names:
            return family
    return f"duckdb:{data_type}"


def arrow_family(data_type):
    t = data_type.strip()
    m = re.fullmatch(r"Decimal(?:128|256)\((\d+),\s*(\d+)\)", t)
    if m:
        return f"decimal({m[1]},{m[2]})"
    # Arrow prints Timestamp(Microsecond, None) or, in newer versions, Timestamp(µs);
    # a time zone follows the unit when there is one.
    m = re.fullmatch(r"Timestamp\(\s*([^,)]+)\s*(?:,\s*(.*))?\)", t)
    if m:
        tz = (m[2] or "None").strip()
        return "timestamp" if tz == "None" else "timestamptz"
    for family, names in ARROW_TYPES.items():
        if t in names:
            return family
    return f"arrow:{data_type}"


# Columns a snapshot fills from the clock of the run (compared by structure only):
#   dbt_scd_id      an md5 over the key and dbt_updated_at, which is the run's time under the
#                   check strategy; under the timestamp strategy it hashes each warehouse's
#                   own text of a timestamp ('2024-07-01 09:00:00' in DuckDB, with a 'T' in
#                   Strata: tests/compat/known_differences). Each side must have it non-NULL
#                   and unique; the values are not compared.
#   dbt_updated_at, dbt_valid_from
#                   the run's time under the check strategy (and for the versions that
#                   hard_deletes: new_record adds): only NULL or not is compared.
#   dbt_valid_to    the next run's time under the check strategy, and the run's time when
#                   hard_deletes closes a deleted record: only NULL (current) or not.
# Under the timestamp strategy, dbt_updated_at, dbt_valid_from and dbt_valid_to come from the
# data's updated_at column and are compared exactly.
SNAPSHOT_COLUMNS = "dbt_scd_id dbt_updated_at dbt_valid_from dbt_valid_to".split()


def snapshot_structure_columns(node):
    """The columns of a snapshot node (from dbt's manifest) compared by NULL-ness only."""
    config = node.get("config", {})
    columns = {"dbt_scd_id"}
    hard_deletes = config.get("hard_deletes") or (
        "invalidate" if config.get("invalidate_hard_deletes") else "ignore")
    if config.get("strategy") == "check":
        columns |= {"dbt_updated_at", "dbt_valid_from", "dbt_valid_to"}
    if hard_deletes in ("invalidate", "new_record"):
        columns.add("dbt_valid_to")
    if hard_deletes == "new_record":
        columns |= {"dbt_updated_at", "dbt_valid_from"}
    return columns


class Mismatch(Exception):
    pass


def canonical(value, family, column):
    """One side's value as a comparable Python value of its column's family; None for NULL."""
    if value is None:
        return None
    try:
        if family == "integer":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError
            return int(value)
        if family == "double":
            if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
                raise ValueError
            return float(value)
        if family.startswith("decimal("):
            if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
                raise ValueError
            return decimal.Decimal(str(value))
        if family == "varchar":
            if not isinstance(value, str):
                raise ValueError
            return value
        if family == "boolean":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if family == "date":
            if isinstance(value, datetime.datetime):
                raise ValueError
            if isinstance(value, datetime.date):
                return value
            return datetime.date.fromisoformat(value)
        if family in ("timestamp", "timestamptz"):
            if isinstance(value, str):
                value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if not isinstance(value, datetime.datetime):
                raise ValueError
            if value.tzinfo is not None:
                value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return value
    except (ValueError, TypeError, decimal.InvalidOperation):
        pass
    else:
        return value
    raise Mismatch(f"column {column}: value {value!r} ({type(value).__name__}) is not {family}")


def sort_key(row, families):
    key = []
    for v, f in zip(row, families):
        if v is None:
            key.append((0, ""))
        elif f == "double":
            key.append((1, float(f"{v:.9g}")))
        else:
            key.append((1, v))
    return tuple(key)


def same_row(a, b, families):
    for x, y, f in zip(a, b, families):
        if (x is None) != (y is None):
            return False
        if x is None:
            continue
        if f == "double":
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


def show_row(row):
    return "(" + ", ".join("NULL" if v is None else repr(v) if isinstance(v, str) else str(v)
                           for v in row) + ")"


class Strata:
    def __init__(self, binary, project, target="strata"):
        self.binary = binary
        self.project = project
        self.target = target

    def query(self, sql):
        done = subprocess.run(
            [self.binary, "--project-dir", self.project, "--target", self.target, "--quiet",
             "show", "--inline", sql, "--limit", "-1", "-o", "json"],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise Mismatch(f"strata show failed: {done.stderr.strip() or done.stdout.strip()}")
        text = done.stdout.strip()
        # `show -o json` prints {"node", "columns", "show": [rows]}.
        start = text.find("{")
        # Numbers with a fraction are read as Decimal, exactly as printed (decimal columns
        # keep their digits; doubles are turned into floats by canonical()).
        shown = json.loads(text[start:], parse_float=decimal.Decimal) if start >= 0 else {}
        return shown.get("show", [])

    def columns(self):
        """(schema, name) -> [(column, Arrow type)] of every relation, in column order."""
        out = collections.defaultdict(list)
        for row in sorted(
            self.query(
                "select table_schema, table_name, column_name, data_type, ordinal_position "
                "from information_schema.columns where table_schema <> 'information_schema'"
            ),
            key=lambda r: (r["table_schema"], r["table_name"], r["ordinal_position"]),
        ):
            out[(row["table_schema"], row["table_name"])].append(
                (row["column_name"], row["data_type"]))
        return out


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def compare_relations(args):
    con = duckdb.connect(args.duckdb, read_only=True)
    strata = Strata(args.strata, args.strata_project)
    manifest = json.load(open(f"{args.duck_project}/target/manifest.json"))
    structure = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "snapshot":
            key = (node["schema"], node.get("alias") or node["name"])
            structure[key] = snapshot_structure_columns(node)

    duck_columns = collections.defaultdict(list)
    for schema, name, column, data_type in con.execute(
        "select table_schema, table_name, column_name, data_type from information_schema.columns "
        "where table_catalog = current_database() "
        "and table_schema not in ('information_schema', 'pg_catalog') "
        "order by table_schema, table_name, ordinal_position"
    ).fetchall():
        duck_columns[(schema, name)].append((column, data_type))
    strata_columns = strata.columns()

    known = {}
    if args.known_different:
        for line in open(args.known_different):
            line = line.strip()
            if line and not line.startswith("#"):
                relation, _, reason = line.partition(" ")
                known[relation] = reason.strip()
    relations = sorted(set(duck_columns) | set(strata_columns))
    if args.at_least:
        # Strata may build what dbt-duckdb could not.
        relations = [r for r in relations if r in duck_columns]
    same = expected = 0
    print(f"{'relation':<40} {'rows':>5}  result")
    for key in relations:
        schema, name = key
        label = f"{schema}.{name}"
        if key not in strata_columns:
            print(f"{label:<40} {'':>5}  ONLY IN DBT-DUCKDB")
            continue
        if key not in duck_columns:
            print(f"{label:<40} {'':>5}  ONLY IN STRATA")
            continue
        problems, n_rows = compare_relation(con, strata, key, duck_columns[key],
                                            strata_columns[key], structure.get(key, set()))
        if problems and label in known:
            expected += 1
            print(f"{label:<40} {n_rows:>5}  known difference: {known[label]}")
        elif problems:
            print(f"{label:<40} {n_rows:>5}  DIFFERENT")
            for p in problems:
                print("      " + p.replace("\n", "\n      "))
        else:
            same += 1
            note = "  (listed as a known difference: remove it from the list)" if label in known else ""
            print(f"{label:<40} {n_rows:>5}  same{note}")
    return same, expected, len(relations)


def compare_relation(con, strata, key, duck_cols, strata_cols, structure_only):
    schema, name = key
    names = [c for c, _ in duck_cols]
    duck_fams = [duck_family(t) for _, t in duck_cols]
    strata_fams = [arrow_family(t) for _, t in strata_cols]
    problems = []
    if names != [c for c, _ in strata_cols]:
        problems.append(f"columns differ:\n  dbt-duckdb: {names}\n  strata:     "
                        f"{[c for c, _ in strata_cols]}")
    else:
        for (c, dt), (_, st), df, sf in zip(duck_cols, strata_cols, duck_fams, strata_fams):
            if df != sf:
                problems.append(f"column {c}: type {df} ({dt}) in dbt-duckdb, {sf} ({st}) in strata")
    sql = f"select * from {quote(schema)}.{quote(name)}"
    duck_raw = con.execute(sql).fetchall()
    if problems:
        return problems, len(duck_raw)
    # What Strata's catalog says of a column must also be what its values are.
    typeof = ", ".join(f"arrow_typeof({quote(c)}) as {quote(c)}" for c in names)
    try:
        actual = strata.query(f"select {typeof} from {quote(schema)}.{quote(name)} limit 1")
    except Mismatch as e:
        return [str(e)], len(duck_raw)
    for row in actual:
        for (c, st), sf, df in zip(strata_cols, strata_fams, duck_fams):
            af = arrow_family(row[c])
            if af != sf:
                problems.append(f"column {c}: strata's information_schema says {st} but its "
                                f"values are {row[c]} (dbt-duckdb: {df})")
    if problems:
        return problems, len(duck_raw)
    try:
        strata_raw = strata.query(sql)
        for row in strata_raw:
            extra = set(row) - set(names)
            if extra:
                raise Mismatch(f"strata returned unknown columns {sorted(extra)}")
        duck_rows = [tuple(canonical(v, f, c) for v, f, c in zip(r, duck_fams, names))
                     for r in duck_raw]
        strata_rows = [tuple(canonical(r.get(c), f, c) for c, f in zip(names, duck_fams))
                       for r in strata_raw]
        # Single-precision columns hold a float32: each side may print it with its own
        # number of digits, so both are compared as the float32 they stand for.
        single = [dt.upper() in ("REAL", "FLOAT", "FLOAT4") for _, dt in duck_cols]
        if any(single):
            def as_f32(row):
                return tuple(struct.unpack("f", struct.pack("f", v))[0]
                             if is_single and v is not None else v
                             for v, is_single in zip(row, single))
            duck_rows = [as_f32(r) for r in duck_rows]
            strata_rows = [as_f32(r) for r in strata_rows]
    except Mismatch as e:
        return [str(e)], len(duck_raw)

    # Columns compared by structure: each side must have dbt_scd_id unique and non-NULL;
    # the others are reduced to NULL or not.
    fams = list(duck_fams)
    for i, c in enumerate(names):
        if c not in structure_only:
            continue
        for side, rows in (("dbt-duckdb", duck_rows), ("strata", strata_rows)):
            values = [r[i] for r in rows]
            if c == "dbt_scd_id" and (None in values or len(set(values)) != len(values)):
                problems.append(f"{side}: {c} is NULL or repeated")
        fams[i] = "structure"
        duck_rows = [r[:i] + (None if r[i] is None else "<set>",) + r[i + 1:] for r in duck_rows]
        strata_rows = [r[:i] + (None if r[i] is None else "<set>",) + r[i + 1:]
                       for r in strata_rows]

    duck_rows.sort(key=lambda r: sort_key(r, fams))
    strata_rows.sort(key=lambda r: sort_key(r, fams))
    if len(duck_rows) == len(strata_rows) and all(
            same_row(a, b, fams) for a, b in zip(duck_rows, strata_rows)):
        return problems, len(duck_rows)

    def counted(rows, families=fams):
        return collections.Counter(tuple(
            (float(f"{v:.9g}") if f == "double" and v is not None else v)
            for v, f in zip(r, families)) for r in rows)

    only_duck = counted(duck_rows) - counted(strata_rows)
    only_strata = counted(strata_rows) - counted(duck_rows)
    columns_differing = [
        c for i, c in enumerate(names)
        if counted([(r[i],) for r in duck_rows], [fams[i]])
        != counted([(r[i],) for r in strata_rows], [fams[i]])]
    lines = [f"rows differ: {len(duck_rows)} in dbt-duckdb, {len(strata_rows)} in strata",
             "  columns whose values differ: " + (", ".join(columns_differing) or "none "
                                                  "(the rows combine them differently)"),
             "  columns: (" + ", ".join(names) + ")"]
    for side, rows in (("dbt-duckdb only", only_duck), ("strata only    ", only_strata)):
        shown = sorted(rows.elements(), key=lambda r: sort_key(r, fams))
        for row in shown[:8]:
            lines.append(f"  {side}: {show_row(row)}")
        if len(shown) > 8:
            lines.append(f"  {side}: ... {len(shown) - 8} more")
    problems.append("\n".join(lines))
    return problems, len(duck_rows)


def compare_results(label, folder, at_least=False, unstable=(), names=("dbt-duckdb", "strata")):
    def outcomes(path):
        try:
            data = json.load(open(path))
        except FileNotFoundError:
            return {}
        return {r["unique_id"]: r for r in data["results"]}

    def exit_code(path):
        return open(path).read().strip()

    duck, mine = outcomes(f"{folder}/duck.json"), outcomes(f"{folder}/strata.json")
    codes = exit_code(f"{folder}/duck.rc"), exit_code(f"{folder}/strata.rc")
    same_tests = tests = same_nodes = 0
    nodes = 1
    same_nodes = int(codes[0] == codes[1] or (at_least and int(codes[1]) <= int(codes[0])))
    if not same_nodes:
        # A build's exit code follows its failing tests: when the only nodes that failed on
        # either side judge random data (unstable), the codes may differ by chance.
        failed = {
            key
            for side in (duck, mine)
            for key, r in side.items()
            if r["status"] in ("fail", "error")
        }
        if failed and all(any(u in key for u in unstable) for key in failed):
            same_nodes = 1
    width = max([len(k) for k in set(duck) | set(mine)] + [20])
    print(f"\n== node outcomes, {label} build")
    print(f"{'node':<{width}} {names[0]:>11} {names[1]:>11}")
    mark = "" if same_nodes else "   <-- DIFFERENT"
    print(f"{'exit code of build':<{width}} {codes[0]:>11} {codes[1]:>11}{mark}")
    for key in sorted(set(duck) | set(mine)):
        d, s = duck.get(key), mine.get(key)

        def outcome(r):
            if r is None:
                return "-"
            if key.startswith("test."):
                return f"{r['status']}({r.get('failures')})"
            return r["status"]

        is_test = key.startswith("test.")
        ok = d is not None and s is not None and outcome(d) == outcome(s)
        if at_least and not ok and s is not None and s["status"] in ("success", "pass"):
            # Strata does better: it builds or passes what dbt-duckdb could not.
            ok = d is None or d["status"] in ("error", "fail", "skipped", "warn")
        if not ok and d is not None and s is not None and any(u in key for u in unstable):
            # A test of random data: either tool may pass, warn or fail on any run.
            ok = True
        if is_test:
            tests += 1
            same_tests += ok
        else:
            nodes += 1
            same_nodes += ok
        mark = "" if ok else "   <-- DIFFERENT"
        print(f"{key:<{width}} {outcome(d):>11} {outcome(s):>11}{mark}")
    return same_tests, tests, same_nodes, nodes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duckdb", required=True)
    parser.add_argument("--duck-project", required=True)
    parser.add_argument("--strata", required=True)
    parser.add_argument("--strata-project", required=True)
    parser.add_argument("--results", nargs=2, action="append", default=[],
                        metavar=("LABEL", "DIR"))
    parser.add_argument("--outcomes-only", action="store_true",
                        help="compare how nodes ended, not the relations' contents")
    parser.add_argument("--known-different", metavar="FILE",
                        help="relations expected to differ, one per line: `schema.name reason`")
    parser.add_argument("--unstable", metavar="FILE",
                        help="tests whose outcome depends on random data, one name part per line")
    parser.add_argument("--at-least", action="store_true",
                        help="Strata may succeed where dbt-duckdb errors or fails")
    args = parser.parse_args()

    known = 0
    if args.outcomes_only:
        same_rel = n_rel = 1
    else:
        print("== relations")
        same_rel, known, n_rel = compare_relations(args)
    same_tests = tests = same_nodes = nodes = 0
    for label, folder in args.results:
        unstable = []
        if args.unstable:
            unstable = [line.strip() for line in open(args.unstable)
                        if line.strip() and not line.startswith("#")]
        st, t, sn, n = compare_results(label, folder, args.at_least, unstable)
        same_tests, tests, same_nodes, nodes = same_tests + st, tests + t, same_nodes + sn, nodes + n
    ok = n_rel > 0 and same_rel + known == n_rel and same_tests == tests and same_nodes == nodes
    relations = "relations not compared" if args.outcomes_only else \
        f"{same_rel} of {n_rel} relations identical" + (f" ({known} known differences)" if known else "")
    print(f"\ncompat {'OK' if ok else 'FAILED'}: {relations}, "
          f"{same_tests} of {tests} test outcomes {'as good' if args.at_least else 'identical'}, "
          f"{same_nodes} of {nodes} build exit codes and model/seed/snapshot outcomes "
          f"{'as good' if args.at_least else 'identical'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
