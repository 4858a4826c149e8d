#!/usr/bin/env bash
# End-to-end test of `strata export airflow` under a real Apache Airflow 3.
#
#   tests/airflow/run.sh              # test the DAGs that `strata export airflow` writes
#   tests/airflow/run.sh --stand-in   # test hand-written DAGs of the same shape instead
#                                     # (checks the Airflow side without the export command)
#
# For each variant (one task per pipeline step, then `--per-model`):
#   1. a starter project (`strata init shop`) with pipelines/daily.yml (stage, marts, check);
#   2. `strata export airflow daily [--per-model] --out DIR/dags` -> dags/strata_daily.py;
#   3. a fresh AIRFLOW_HOME on SQLite (migrated once, copied per variant) whose dags_folder is
#      that dags/ folder, and `airflow dags test strata_daily 2024-06-01`;
#   4. checks: the command exits 0, the run and every task succeeded, the tasks and their
#      dependencies are as expected, the data interval reached each task's environment
#      (check.py reads Airflow's DB), and the project's `orders` table has rows.
#
# Environment:
#   STRATA_BIN           the strata binary under test (default: `strata` on PATH)
#   STRATA_AIRFLOW_VENV  Airflow's virtualenv (default ~/.cache/strata/airflow-venv; created
#                        with `pip install "$STRATA_AIRFLOW_SPEC"` when it cannot import airflow)
#   STRATA_AIRFLOW_SPEC  default "apache-airflow>=3.0,<4"
#   PYTHON               the Python that creates the venv (default python3; Airflow 3 needs 3.10+)
#   AIRFLOW_TEST_DATE    the logical date of the test run (default 2024-06-01)
#   AIRFLOW_TEST_TIMEOUT seconds allowed for each `airflow dags test` (default 600)
#   KEEP_WORK=1          keep the work folder even when everything passes
# The work folder is deleted on success and kept (with log tails printed) on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stand_in=0
case "${1:-}" in
  --stand-in) stand_in=1 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--stand-in]" >&2; exit 2 ;;
esac

venv="${STRATA_AIRFLOW_VENV:-$HOME/.cache/strata/airflow-venv}"
spec="${STRATA_AIRFLOW_SPEC:-apache-airflow>=3.0,<4}"
date="${AIRFLOW_TEST_DATE:-2024-06-01}"
test_timeout="${AIRFLOW_TEST_TIMEOUT:-600}"
dag_id=strata_daily

log() { printf '== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

strata="$(command -v "${STRATA_BIN:-strata}" || true)"
[ -n "$strata" ] && [ -x "$strata" ] || die "no strata binary: set STRATA_BIN (tried '${STRATA_BIN:-strata}')"
strata="$(cd "$(dirname "$strata")" && pwd)/$(basename "$strata")"
export STRATA_BIN="$strata"   # the generated DAG reads it at parse time

if [ "$stand_in" = 0 ] && ! "$strata" export airflow --help >/dev/null 2>&1; then
  die "$strata has no \`export airflow\` command (build it, or run with --stand-in)"
fi

# --- Work folder, logs and cleanup --------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/strata-airflow.XXXXXX")"
child=""
logs=()
passed=0
failed=0
cleanup() {
  local rc=$?
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -- "-$child" 2>/dev/null || kill "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    # The log of the last command run, the one that failed.
    for f in "${logs[@]: -1}"; do
      [ -s "$f" ] || continue
      if [ "$(basename "$f")" = dags-test.log ]; then
        # Airflow's log is long: show the task boundaries and what the commands printed.
        printf '\n---- tasks and their output, from %s ----\n' "$f"
        grep -E '\[DAG TEST\] (starting|end)|Running command|subprocess\.py:106|Command exited|DagRun Finished' "$f" \
          | sed -E 's/ +\[(airflow|task)[^]]*\] loc=[^ ]+.*$//' | tail -n 40 | cut -c1-300 || true
        printf -- '---- last lines ----\n'
        tail -n 6 "$f" | cut -c1-300
      else
        printf '\n---- last lines of %s ----\n' "$f"
        tail -n 40 "$f" | cut -c1-400
      fi
    done
    printf '\nFAIL (exit %s): work folder kept at %s\n' "$rc" "$work"
    echo "$passed passed, $((failed + 1)) failed"
  elif [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "work folder kept at $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run LOG CMD...: runs CMD in its own process group (so cleanup can stop all of it), output to LOG.
run() {
  local out="$1"; shift
  logs+=("$out")
  setsid "$@" >"$out" 2>&1 </dev/null &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# --- Airflow ------------------------------------------------------------------------------
if "$venv/bin/python" -c 'import airflow' >/dev/null 2>&1; then
  log "Airflow venv: $venv"
else
  log "installing $spec into $venv"
  t=$(now)
  "${PYTHON:-python3}" -m venv "$venv"
  run "$work/pip.log" "$venv/bin/pip" install --disable-pip-version-check -q "$spec" \
    || die "pip install $spec failed"
  log "installed in $(since "$t")s"
fi
export PATH="$venv/bin:$PATH"   # `airflow standalone` and friends spawn `airflow` by name
airflow_version="$("$venv/bin/python" -c 'import airflow; print(airflow.__version__)' 2>/dev/null)"
log "Airflow $airflow_version, strata: $strata"

# Settings for every airflow command (no airflow.cfg edits needed).
airflow_env() {
  export AIRFLOW_HOME="$1"
  export AIRFLOW__CORE__DAGS_FOLDER="$2"
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$1/airflow.db"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
}

# One migrated metadata DB, copied for each variant: `airflow db migrate` runs once.
mkdir -p "$work/base/dags"
airflow_env "$work/base" "$work/base/dags"
t=$(now)
run "$work/base/migrate.log" airflow db migrate || die "airflow db migrate failed"
log "airflow db migrate: $(since "$t")s"

# --- One variant ---------------------------------------------------------------------------
# variant NAME MODE EXPORT_FLAGS...
variant() {
  local name="$1" mode="$2"; shift 2
  local dir="$work/$name"
  local project="$dir/shop" dags="$dir/dags" home="$dir/airflow"
  logs=()
  mkdir -p "$dir" "$dags" "$home"
  log "[$name] starter project"
  (cd "$dir" && "$strata" init shop >"$dir/init.log" 2>&1) || die "strata init failed"
  mkdir -p "$project/pipelines"
  cat >"$project/pipelines/daily.yml" <<'YAML'
schedule: {cron: "0 6 * * *", timezone: Europe/Berlin}
steps:
  - {name: stage, build: {select: "staging"}}
  - {name: marts, build: {select: "marts"}}
  - {name: check, command: "test -n \"$STRATA_INTERVAL_START\""}
YAML
  # The selectors must pick the layers they name.
  local listed
  listed=$("$strata" --project-dir "$project" ls --select staging 2>&1) || true
  grep -q 'stg_orders$' <<<"$listed" || die "\`strata ls --select staging\` does not list stg_orders: $listed"
  listed=$("$strata" --project-dir "$project" ls --select marts 2>&1) || true
  grep -q '\.orders$' <<<"$listed" || die "\`strata ls --select marts\` does not list orders: $listed"

  if [ "$stand_in" = 1 ]; then
    write_stand_in "$mode" "$project" >"$dags/$dag_id.py"
  else
    run "$dir/export.log" "$strata" --project-dir "$project" export airflow daily "$@" --out "$dags" \
      || die "[$name] strata export airflow daily $* failed"
  fi
  [ -s "$dags/$dag_id.py" ] || die "[$name] no $dags/$dag_id.py (files: $(ls "$dags"))"

  cp "$work/base/airflow.db" "$home/airflow.db"
  airflow_env "$home" "$dags"
  log "[$name] airflow dags test $dag_id $date"
  local t rc=0 secs
  t=$(now)
  run "$dir/dags-test.log" timeout --kill-after=10 "$test_timeout" airflow dags test "$dag_id" "$date" || rc=$?
  secs=$(since "$t")
  timings+=("airflow dags test ($name, $(grep -c '\[DAG TEST\] end task' "$dir/dags-test.log" || true) tasks): ${secs}s")
  [ "$rc" = 0 ] || die "[$name] airflow dags test exited $rc after ${secs}s"
  log "[$name] dags test passed in ${secs}s"

  logs+=("$dir/check.log")
  if ! "$venv/bin/python" "$here/check.py" "$home/airflow.db" "$dag_id" "$mode" >"$dir/check.log" 2>&1; then
    die "[$name] the run's task states or the DAG's structure are wrong"
  fi
  sed 's/^/   /' "$dir/check.log"

  local rows
  rows=$("$strata" --project-dir "$project" show --inline "select count(*) as n from {{ ref('orders') }}" -o json 2>"$dir/show.log" \
    | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["show"][0]["n"])') \
    || { logs+=("$dir/show.log"); die "[$name] strata show found no orders table"; }
  [ "$rows" -gt 0 ] || die "[$name] orders has no rows"
  log "[$name] orders has $rows rows: ok"
  passed=$((passed + 1))
}

# A hand-written DAG in the shape `strata export airflow` generates, for --stand-in.
write_stand_in() {
  local mode="$1" project="$2" flag=""
  [ "$mode" = pipeline ] || flag=" --per-model"
  cat <<PY
# Stand-in for \`strata export airflow daily$flag\` (tests/airflow/run.sh --stand-in).
import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

STRATA = os.environ.get("STRATA_BIN", "$strata")
PROJECT = "$project"
INTERVAL = {"STRATA_INTERVAL_START": "{{ data_interval_start }}", "STRATA_INTERVAL_END": "{{ data_interval_end }}"}


def task(task_id, command):
    return BashOperator(
        task_id=task_id,
        bash_command=command,
        retries=2, retry_delay=timedelta(seconds=10), retry_exponential_backoff=True, max_retry_delay=timedelta(seconds=300),
        execution_timeout=timedelta(seconds=3600),
        env=INTERVAL, append_env=True,
    )


with DAG(
    dag_id="$dag_id",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    max_active_runs=1,
    tags=["strata"],
) as dag:
PY
  if [ "$mode" = pipeline ]; then
    cat <<'PY'
    stage = task("stage", f"{STRATA} --project-dir {PROJECT} build --select staging")
    marts = task("marts", f"{STRATA} --project-dir {PROJECT} build --select marts")
    check = task("check", 'test -n "$STRATA_INTERVAL_START"')
    stage >> marts >> check
PY
  else
    cat <<'PY'
    models = {m: task(m, f"{STRATA} --project-dir {PROJECT} build --select {m}")
              for m in ["stg_customers", "stg_orders", "stg_payments", "orders", "customers"]}
    check = task("check", 'test -n "$STRATA_INTERVAL_START"')
    models["stg_orders"] >> models["orders"]
    models["stg_payments"] >> models["orders"]
    [models["orders"], models["stg_customers"]] >> models["customers"]
    models["customers"] >> check
PY
  fi
}

timings=()
variant steps pipeline
variant per-model per-model --per-model

echo
log "timings"
for t in "${timings[@]}"; do echo "   $t"; done
echo "$passed passed, $failed failed"
