"""Time the TPC-H queries in DuckDB over the same Parquet files Strata reads.

usage: duckdb_run.py DATA_DIR QUERIES_DIR RUNS ANSWERS_DIR [QUERY]
Prints one JSON object: {"q01": median milliseconds, ...}, of every query or of QUERY (q01)
alone. Each query runs once to warm the file cache, writing its rows to ANSWERS_DIR/qNN.csv,
then RUNS times; its rows are fetched each time.
"""

import csv
import glob
import json
import os
import statistics
import sys
import time

import duckdb

TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def main():
    data, queries, runs, answers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    only = sys.argv[5] if len(sys.argv) > 5 else "q*"
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"create view {t} as select * from read_parquet('{data}/{t}/*.parquet')")
    out = {}
    for path in sorted(glob.glob(os.path.join(queries, only + ".sql"))):
        name = os.path.basename(path)[:-4]
        sql = open(path).read()
        cur = con.execute(sql)
        header = [d[0] for d in cur.description]
        with open(os.path.join(answers, name + ".csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(cur.fetchall())
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times) * 1000.0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
