#!/usr/bin/env bash
# Build a dbt project (tests/compat/shop by default) with Strata twice over: on a Ballista
# cluster (a scheduler and two executors started from the strata binary, the lake on an
# S3-compatible server) and on the embedded warehouse, in two rounds (the second after the
# project's second_run/ folder is copied over, as run.sh does), then compare every relation
# and every node's outcome (compare_cluster.py).
#
#   tests/compat/cluster.sh                  # uses target/release/strata (or $STRATA_BIN)
#   tests/compat/cluster.sh path/to/project  # another project with a `strata` target
#   COMPAT_KEEP=1 tests/compat/cluster.sh    # keep the work folder and the processes' logs
#
# Needs moto_server on PATH (`pip install 'moto[server]'`, as .ci/run does) and the venv
# run.sh makes (dbt-duckdb, for compare.py's imports).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${COMPAT_VENV:-$HOME/.cache/strata/compat-venv}"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/strata}"
project=$(cd "${1:-$here/shop}" && pwd)
[ -x "$strata" ] || { echo "no strata binary at $strata: cargo build --release -p strata" >&2; exit 2; }
command -v moto_server > /dev/null || { echo "moto_server not found: pip install 'moto[server]'" >&2; exit 2; }
[ -x "$venv/bin/python" ] || { echo "no venv at $venv: run tests/compat/run.sh first" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  [ -n "${COMPAT_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
[ -n "${COMPAT_KEEP:-}" ] && echo "== working in $work (kept)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2> /dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1 after 30 s ($2):" >&2
  tail -20 "$work/$2.log" >&2
  exit 1
}

# The object store, and the environment every process reads it with.
s3=$(free_port)
moto_server -H 127.0.0.1 -p "$s3" > "$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$s3" moto
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3 AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=compat AWS_SECRET_ACCESS_KEY=compat
python3 -c "import urllib.request as u; u.urlopen(u.Request('$AWS_ENDPOINT_URL/compat', method='PUT'))"

# One scheduler and two executors, each with its own work folder.
scheduler=$(free_port)
"$strata" cluster scheduler --port "$scheduler" > "$work/scheduler.log" 2>&1 &
pids+=($!)
wait_port "$scheduler" scheduler
for n in 1 2; do
  flight=$(free_port)
  grpc=$(free_port)
  mkdir "$work/executor$n"
  "$strata" cluster executor --scheduler "df://127.0.0.1:$scheduler" --port "$flight" \
    --grpc-port "$grpc" --work-dir "$work/executor$n" > "$work/executor$n.log" 2>&1 &
  pids+=($!)
  wait_port "$flight" "executor$n"
done

cp -r "$project" "$work/project"
cat >> "$work/project/profiles.yml" <<PROFILE
    cluster:
      type: strata
      schema: main
      threads: 4
      engine: ballista
      scheduler: df://127.0.0.1:$scheduler
      lake: s3://compat/lake
PROFILE

# build TARGET LABEL ARGS...: one build; keeps its log, run_results.json and exit code, as
# compare_results reads them (duck.* for the embedded build, strata.* for the cluster's).
build() {
  local target=$1 label=$2 rc=0 name=duck
  shift 2
  [ "$target" = cluster ] && name=strata
  (cd "$work/project" && "$strata" build --target "$target" "$@") > "$work/$label-$target.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "!! $target build ($label) exited with $rc:"
    tail -20 "$work/$label-$target.log"
  fi
  mkdir -p "$work/results/$label"
  echo "$rc" > "$work/results/$label/$name.rc"
  cp "$work/project/target/run_results.json" "$work/results/$label/$name.json" 2> /dev/null || true
}

if [ -f "$project/packages.yml" ] || [ -f "$project/dependencies.yml" ]; then
  (cd "$work/project" && "$strata" deps > "$work/deps.log" 2>&1) || { tail -30 "$work/deps.log"; exit 1; }
fi
seconds() { python3 -c 'import time; print(time.time())'; }
for round in first second; do
  vars='{build_round: 1}'
  if [ "$round" = second ]; then
    vars='{build_round: 2}'
    [ -d "$project/second_run" ] && cp -r "$project/second_run/." "$work/project/"
  fi
  echo "== $round build"
  t0=$(seconds)
  build strata "$round" --vars "$vars"
  t1=$(seconds)
  build cluster "$round" --vars "$vars"
  t2=$(seconds)
  echo "   embedded: $(grep -a 'Done\.' "$work/$round-strata.log" | tail -1 | sed 's/.*Done\. //')"
  echo "   cluster:  $(grep -a 'Done\.' "$work/$round-cluster.log" | tail -1 | sed 's/.*Done\. //')"
  python3 -c "print(f'   embedded build: {$t1 - $t0:.2f} s   cluster build: {$t2 - $t1:.2f} s')"
done

echo "== comparing"
(cd "$work/project" && "$strata" compile --target strata > /dev/null)
rc=0
(cd "$here" && "$venv/bin/python" compare_cluster.py --strata "$strata" --project "$work/project" \
  --manifest "$work/project/target/manifest.json" \
  --results first "$work/results/first" --results second "$work/results/second") \
  > "$work/compare.log" || rc=$?
cat "$work/compare.log"
exit "$rc"
