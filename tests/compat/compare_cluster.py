"""Compare what Strata built from one project on a Ballista cluster and on its embedded
warehouse.

usage: compare_cluster.py --strata STRATA_BIN --project DIR --manifest FILE
                          [--results LABEL DIR]...

Both targets of the project (`strata`, the embedded warehouse on a local folder, and
`cluster`, `engine: ballista` on object storage) must hold the same relations (schema and
name) with the same columns in the same order and the same Arrow types, and the same rows as
a multiset, value for value: the cluster runs the same plans with the same functions, so
nothing may differ, not even a double's last digit. Snapshot columns filled from the clock of
the run are compared by NULL-ness only (compare.py's rule). Each DIR holds one build's
duck.json and strata.json (the embedded and the cluster build's run_results.json) and their
exit codes: every node must end the same way on both.

Exits 1 when anything differs; the last line says how much was identical.
"""
import argparse
import json
import sys

from compare import Strata, compare_results, quote, snapshot_structure_columns
from compare_postgres import compare_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strata", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--results", nargs=2, action="append", default=[],
                        metavar=("LABEL", "DIR"))
    args = parser.parse_args()

    embedded = Strata(args.strata, args.project, "strata")
    cluster = Strata(args.strata, args.project, "cluster")
    structure = {}
    for node in json.load(open(args.manifest))["nodes"].values():
        if node["resource_type"] == "snapshot":
            structure[(node["schema"], node.get("alias") or node["name"])] = \
                snapshot_structure_columns(node)

    embedded_cols, cluster_cols = embedded.columns(), cluster.columns()
    relations = sorted(set(embedded_cols) | set(cluster_cols))
    same = 0
    print(f"{'relation':<40} {'rows':>5}  result")
    for key in relations:
        label = f"{key[0]}.{key[1]}"
        if key not in embedded_cols or key not in cluster_cols:
            side = "EMBEDDED" if key in embedded_cols else "CLUSTER"
            print(f"{label:<40} {'':>5}  ONLY IN {side}")
            continue
        names = [c for c, _ in embedded_cols[key]]
        sql = f"select * from {quote(key[0])}.{quote(key[1])}"
        problems = []
        if embedded_cols[key] != cluster_cols[key]:
            problems.append(f"columns differ:\n  embedded: {embedded_cols[key]}\n"
                            f"  cluster:  {cluster_cols[key]}")
            rows = 0
        else:
            try:
                # `show -o json` leaves NULLs out of a row: the columns come from the catalog.
                left = [[r.get(n) for n in names] for r in embedded.query(sql)]
                right = [[r.get(n) for n in names] for r in cluster.query(sql)]
                rows = len(left)
                problems = compare_rows(left, right, structure.get(key, set()), names,
                                        loose=False)
            except Exception as e:  # noqa: BLE001 - any failure is a difference, shown
                problems, rows = [str(e)], 0
        same += not problems
        print(f"{label:<40} {rows:>5}  {'DIFFERENT' if problems else 'same'}")
        for p in problems:
            print("      " + p.replace("\n", "\n      "))

    same_tests = tests = same_nodes = nodes = 0
    for label, folder in args.results:
        st, t, sn, n = compare_results(label, folder, names=("embedded", "cluster"))
        same_tests, tests, same_nodes, nodes = same_tests + st, tests + t, same_nodes + sn, nodes + n
    n = len(relations)
    ok = n > 0 and same == n and same_tests == tests and same_nodes == nodes
    print(f"\ncluster compat {'OK' if ok else 'FAILED'}: {same} of {n} relations identical to "
          f"the embedded warehouse's, {same_tests} of {tests} test outcomes and {same_nodes} of "
          f"{nodes} build exit codes and model/seed/snapshot outcomes identical")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
