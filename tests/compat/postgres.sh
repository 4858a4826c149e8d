#!/usr/bin/env bash
# Build a dbt project (tests/compat/shop by default) in PostgreSQL with dbt-postgres and with
# Strata (`type: postgres`), and with Strata on its embedded warehouse, twice (the second
# time after the project's second_run/ folder is copied over, as run.sh does), then compare
# every relation and every node's outcome (compare_postgres.py), and time the first build of
# each tool from nothing.
#
#   tests/compat/postgres.sh                  # uses target/release/strata (or $STRATA_BIN)
#   tests/compat/postgres.sh path/to/project  # another project with a `strata` target
#   COMPAT_KEEP=1 tests/compat/postgres.sh    # keep the work folder and the server's data
#
# A throwaway PostgreSQL cluster (Debian's postgresql-15 or newer, as .ci/run installs) is
# started on a free loopback port with password logins, and removed at the end. dbt-postgres
# is installed beside dbt-duckdb in run.sh's venv on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${COMPAT_VENV:-$HOME/.cache/strata/compat-venv}"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/strata}"
project=$(cd "${1:-$here/shop}" && pwd)
[ -x "$strata" ] || { echo "no strata binary at $strata: cargo build --release -p strata" >&2; exit 2; }

if [ ! -x "$venv/bin/dbt" ]; then
  echo "== installing dbt-core<1.12, dbt-duckdb and dbt-postgres into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'dbt-core<1.12' dbt-duckdb duckdb dbt-postgres
elif ! "$venv/bin/python" -c 'import dbt.adapters.postgres' 2>/dev/null; then
  echo "== installing dbt-postgres into $venv"
  "$venv/bin/pip" install --quiet 'dbt-core<1.12' dbt-postgres
fi

pg_bin=${STRATA_POSTGRES_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql-15" >&2; exit 2; }

work=$(mktemp -d)
chmod 755 "$work"
owner=()
if [ "$(id -u)" = 0 ]; then
  # The server refuses to run as root.
  owner=(runuser -u postgres --)
  chown postgres "$work"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export COMPAT_PG_PASSWORD="compat-$RANDOM-pw"
pwfile="$work/pw"
echo "$COMPAT_PG_PASSWORD" > "$pwfile"
[ "${#owner[@]}" -gt 0 ] && chown postgres "$pwfile"
"${owner[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres --pwfile="$pwfile" \
  --auth=scram-sha-256 > "$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; exit 1; }
"${owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c fsync=off" start > /dev/null
cleanup() {
  "${owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop > /dev/null 2>&1 || true
  [ -n "${COMPAT_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
[ -n "${COMPAT_KEEP:-}" ] && echo "== working in $work (kept)"
export PGPASSWORD=$COMPAT_PG_PASSWORD
for db in compat_dbt compat_strata; do
  "$pg_bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "create database $db"
done

for side in dbt strata; do
  cp -r "$project" "$work/$side"
  database=compat_$side
  cat >> "$work/$side/profiles.yml" <<PROFILE
    pg:
      type: postgres
      host: 127.0.0.1
      port: $port
      user: postgres
      password: "{{ env_var('COMPAT_PG_PASSWORD') }}"
      dbname: $database
      schema: main
      threads: 4
      sslmode: disable
PROFILE
done
mkdir "$work/results"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false

seconds() { python3 -c 'import time; print(time.time())'; }

# build TOOL LABEL ARGS...: one build; keeps its log, run_results.json and exit code.
build() {
  local tool=$1 label=$2 rc=0
  shift 2
  case $tool in
    dbt) (cd "$work/dbt" && "$venv/bin/dbt" build --target pg --profiles-dir . "$@") ;;
    strata) (cd "$work/strata" && "$strata" build --target pg "$@") ;;
    embedded) (cd "$work/strata" && "$strata" build --target strata "$@") ;;
  esac > "$work/$label-$tool.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "!! $tool build ($label) exited with $rc:"
    tail -20 "$work/$label-$tool.log"
  fi
  mkdir -p "$work/results/$label"
  local name=$tool
  [ "$tool" = dbt ] && name=duck
  echo "$rc" > "$work/results/$label/$name.rc"
  cp "$work/${tool/embedded/strata}/target/run_results.json" "$work/results/$label/$name.json" 2>/dev/null || true
}

if [ -f "$project/packages.yml" ] || [ -f "$project/dependencies.yml" ]; then
  (cd "$work/dbt" && "$venv/bin/dbt" deps --profiles-dir . > "$work/deps.log" 2>&1) \
    || { tail -30 "$work/deps.log"; exit 1; }
fi

for round in first second; do
  vars='{build_round: 1}'
  if [ "$round" = second ]; then
    vars='{build_round: 2}'
    if [ -d "$project/second_run" ]; then
      cp -r "$project/second_run/." "$work/dbt/"
      cp -r "$project/second_run/." "$work/strata/"
    fi
  fi
  echo "== $round build"
  t0=$(seconds)
  build dbt "$round" --vars "$vars"
  t1=$(seconds)
  build strata "$round" --vars "$vars"
  t2=$(seconds)
  # The embedded build's outcomes are run.sh's to compare; its tables are compared below.
  build embedded "$round" --vars "$vars"
  echo "   dbt-postgres: $(grep -a 'Done\.' "$work/$round-dbt.log" | tail -1 | sed 's/.*Done\. //')"
  echo "   strata:       $(grep -a 'Done\.' "$work/$round-strata.log" | tail -1 | sed 's/.*Done\. //')"
  python3 -c "print(f'   dbt-postgres build: {$t1 - $t0:.2f} s   strata build: {$t2 - $t1:.2f} s   ({($t1 - $t0) / ($t2 - $t1):.1f}x)')"
done

echo "== comparing"
rc=0
(cd "$here" && "$venv/bin/python" compare_postgres.py \
  --dbt-dsn "host=127.0.0.1 port=$port user=postgres dbname=compat_dbt" \
  --strata-dsn "host=127.0.0.1 port=$port user=postgres dbname=compat_strata" \
  --strata "$strata" --strata-project "$work/strata" --dbt-project "$work/dbt" \
  --results first "$work/results/first" --results second "$work/results/second" \
  --known-different "$here/postgres.known") > "$work/compare.log" || rc=$?
cat "$work/compare.log"
exit "$rc"
