"""Checks one `airflow dags test` run of a Strata DAG in Airflow's SQLite metadata DB.

Usage: check.py AIRFLOW_DB DAG_ID MODE
  MODE pipeline:  tasks are the steps of pipelines/daily.yml (stage, marts, check)
  MODE per-model: one task per model of the starter project (`orders`, or `GROUP.orders`
                  inside a task group), plus the `check` step

Passes (exit 0) when the DAG has exactly one run and it succeeded, every task instance
succeeded, the expected tasks exist with the dependencies below (direct or transitive),
and each task rendered STRATA_INTERVAL_START before STRATA_INTERVAL_END.
Standard library only, so it runs under any Python.
"""

import json
import sqlite3
import sys
import zlib

# Dependencies of the starter project (`strata init`) and of pipelines/daily.yml.
PIPELINE_EDGES = [("stage", "marts"), ("marts", "check")]
MODEL_EDGES = [
    ("stg_orders", "orders"),
    ("stg_payments", "orders"),
    ("orders", "customers"),
    ("stg_customers", "customers"),
    ("orders", "check"),
    ("customers", "check"),
]


def main() -> int:
    db, dag_id, mode = sys.argv[1:4]
    con = sqlite3.connect(db)
    problems = []

    runs = con.execute(
        "select run_id, state from dag_run where dag_id = ?", (dag_id,)
    ).fetchall()
    if len(runs) != 1:
        print(f"FAIL: expected 1 run of {dag_id}, found {runs}")
        return 1
    run_id, run_state = runs[0]
    print(f"run {run_id}: {run_state}")
    if run_state != "success":
        problems.append(f"the DAG run is {run_state}")

    tis = con.execute(
        "select task_id, state, try_number from task_instance where dag_id = ? and run_id = ?",
        (dag_id, run_id),
    ).fetchall()
    for task_id, state, tries in sorted(tis):
        print(f"  {task_id:<28} {state} (try {tries})")
        if state != "success":
            problems.append(f"task {task_id} is {state}")
    if not tis:
        problems.append("the run has no task instances")

    # The DAG's structure, as Airflow serialized it.
    row = con.execute(
        "select data, data_compressed from serialized_dag where dag_id = ?"
        " order by last_updated desc limit 1",
        (dag_id,),
    ).fetchone()
    if row is None:
        problems.append("no serialized DAG")
        downstream = {}
    else:
        data = json.loads(row[0]) if row[0] else json.loads(zlib.decompress(row[1]))
        downstream = {
            t["__var"]["task_id"]: set(t["__var"].get("downstream_task_ids") or [])
            for t in data["dag"]["tasks"]
        }

    def task_for(name):
        found = [t for t in downstream if t == name or t.endswith("." + name)]
        if len(found) != 1:
            problems.append(f"expected one task for {name!r}, found {found or 'none'}")
            return None
        return found[0]

    def reaches(a, b):
        seen, todo = set(), [a]
        while todo:
            t = todo.pop()
            for d in downstream.get(t, ()):
                if d == b:
                    return True
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return False

    edges = PIPELINE_EDGES if mode == "pipeline" else MODEL_EDGES
    if mode == "pipeline":
        expected = {n for e in edges for n in e}
        if set(downstream) != expected:
            problems.append(f"tasks {sorted(downstream)}, expected {sorted(expected)}")
    for up, down in edges:
        a, b = task_for(up), task_for(down)
        if a and b and not reaches(a, b):
            problems.append(f"{b} does not depend on {a}")

    # Templated env values, as rendered for each task.
    for task_id, fields in con.execute(
        "select task_id, rendered_fields from rendered_task_instance_fields"
        " where dag_id = ? and run_id = ?",
        (dag_id, run_id),
    ):
        env = (json.loads(fields) or {}).get("env") or {}
        for var in ("STRATA_INTERVAL_START", "STRATA_INTERVAL_END"):
            value = str(env.get(var) or "")
            if not value.strip() or value == "None" or "{{" in value:
                problems.append(f"task {task_id}: {var} rendered as {value!r}")
        # Each run covers the interval since the schedule's time before (not an empty one).
        if str(env.get("STRATA_INTERVAL_START")) >= str(env.get("STRATA_INTERVAL_END")):
            problems.append(
                f"task {task_id}: the interval {env.get('STRATA_INTERVAL_START')}"
                f" .. {env.get('STRATA_INTERVAL_END')} is empty"
            )
        if task_id == "check" or task_id.endswith(".check"):
            print(
                f"  interval seen by check: {env.get('STRATA_INTERVAL_START')}"
                f" .. {env.get('STRATA_INTERVAL_END')}"
            )

    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
