#!/usr/bin/env bash
# End-to-end check of Apache Superset against `strata serve --pg`: a starter project is built
# and served with a bi_reader login; Superset (SQLite metadata, gunicorn) adds the database,
# lists its schemas and tables, makes a dataset of gold.orders and a chart of orders by status,
# and the chart's numbers must equal `strata show`'s; then a big number, a monthly time grain,
# a time range filter and a SQL Lab query in schema gold. One `ok` line per step (check.py).
#
#   tests/superset/run.sh                  # strata from PATH, or STRATA_BIN=path/to/strata
#   SUPERSET_KEEP=1 tests/superset/run.sh  # keep the work folder (logs, project) to look at
#
# Superset talks to Strata through check.py's wire tap, which logs each statement and each
# error (work/wire.log); on a failure the refused statements and the logs' tails are printed.
# Superset is installed into a venv of its own on first use (SUPERSET_VENV).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="${SUPERSET_VENV:-$HOME/.cache/strata/superset-venv}"
strata="${STRATA_BIN:-strata}"
command -v "$strata" >/dev/null || { echo "no strata binary ($strata): set STRATA_BIN" >&2; exit 2; }
strata=$(realpath "$(command -v "$strata")")

if [ ! -x "$venv/bin/superset" ] || ! "$venv/bin/python" -c 'import psycopg2, prison' 2>/dev/null; then
  echo "== installing Apache Superset into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet apache-superset rich 'flask-caching==2.3.1' cachetools psycopg2-binary
fi

work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    for log in strata.log superset.log wire.log tap.log; do
      echo "== tail of $work/$log"
      tail -n 40 "$work/$log" 2>/dev/null || true
    done
  fi
  if [ -n "${SUPERSET_KEEP:-}" ] || [ "$rc" -ne 0 ]; then
    echo "== work folder kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT NAME PID
  for _ in $(seq 1 300); do
    kill -0 "$3" 2>/dev/null || { echo "FAIL $2 exited" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.5
  done
  echo "FAIL $2 not listening on $1" >&2; exit 1
}

# The Strata project, its BI login and its server.
(cd "$work" && "$strata" init shop >/dev/null)
cd "$work/shop"
"$strata" -q build >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
password=superset-pw
printf '%s\n' "$password" | "$strata" -q users add superset --role bi_reader
"$strata" -q show -o json --limit -1 \
  --inline "select status, count(*) as n, count(*) filter (where order_date >= date '2024-03-01'
            and order_date < date '2024-06-01') as n_range from gold.orders group by status" \
  >"$work/expected.json"
http_port=$(free_port); pg_port=$(free_port); tap_port=$(free_port); superset_port=$(free_port)
STRATA_LOG=debug "$strata" serve --http "127.0.0.1:$http_port" --pg "127.0.0.1:$pg_port" \
  >"$work/strata.log" 2>&1 &
pids+=($!)
wait_port "$pg_port" "strata serve" "${pids[-1]}"
"$venv/bin/python" "$here/check.py" tap "$tap_port" "$pg_port" "$work/wire.log" >"$work/tap.log" 2>&1 &
pids+=($!)
wait_port "$tap_port" "wire tap" "${pids[-1]}"
echo "ok strata serve --pg 127.0.0.1:$pg_port"

# Superset on a SQLite metadata database.
cat >"$work/superset_config.py" <<CONFIG
SECRET_KEY = "strata-superset-check-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
SQLALCHEMY_DATABASE_URI = "sqlite:///$work/superset.db"
RATELIMIT_ENABLED = False
TALISMAN_ENABLED = False
CONFIG
export SUPERSET_CONFIG_PATH="$work/superset_config.py" SUPERSET_HOME="$work/superset-home"
export FLASK_APP=superset
{
  "$venv/bin/superset" db upgrade
  "$venv/bin/superset" fab create-admin --username admin --firstname A --lastname D \
    --email admin@example.com --password admin
  "$venv/bin/superset" init
} >"$work/superset-setup.log" 2>&1 || { tail -n 40 "$work/superset-setup.log"; exit 1; }
"$venv/bin/gunicorn" -w 1 --threads 4 --timeout 300 -b "127.0.0.1:$superset_port" \
  --no-control-socket \
  "superset.app:create_app()" >"$work/superset.log" 2>&1 &
pids+=($!)
wait_port "$superset_port" "superset" "${pids[-1]}"
echo "ok superset on 127.0.0.1:$superset_port"

"$venv/bin/python" "$here/check.py" api "http://127.0.0.1:$superset_port" \
  "postgresql+psycopg2://superset:$password@127.0.0.1:$tap_port/shop" \
  "$work/expected.json" "$work/wire.log"
