#!/usr/bin/env bash
# Build a dbt project (tests/compat/shop by default) with dbt-duckdb and with Strata, twice,
# and compare every table and view the two built (column names, types and values, NULLs
# included) and how every model, seed, snapshot and test ended in each build.
#
#   tests/compat/run.sh                 # uses target/release/strata (or $STRATA_BIN)
#   tests/compat/run.sh path/to/project # another project with `duck` and `strata` targets
#   COMPAT_KEEP=1 tests/compat/run.sh   # keep the work folder (both copies, logs) to look at
#   COMPAT_PACKAGE=1 tests/compat/run.sh path/to/dbt_package
#       # a package's own test project (its integration_tests/ folder, whose packages.yml says
#       # `local: ../`), laid out as `dbt deps` leaves it; COMPAT_DBT_PACKAGES="dir ..." adds
#       # packages to its dbt_packages/, COMPAT_ROUNDS=1 builds once, COMPAT_OUTCOMES_ONLY=1
#       # compares outcomes only (for projects whose data is random or depends on the day),
#       # COMPAT_AT_LEAST=1 accepts Strata building or passing what dbt-duckdb does not,
#       # COMPAT_KNOWN_DIFFERENT=FILE lists relations known to differ (`schema.name reason`),
#       # COMPAT_UNSTABLE=FILE tests whose outcome depends on the project's random data.
#
# The second build runs after the project's second_run/ folder, when it has one, is copied
# over both copies (shop's brings a feed with updated, new and deleted orders and changed
# customers), with --vars '{build_round: 2}' (the first has 1), so incremental models and
# snapshots do real incremental work.
#
# dbt-core<1.12 and dbt-duckdb are installed into a venv of their own on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${COMPAT_VENV:-$HOME/.cache/strata/compat-venv}"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/strata}"
project=$(cd "${1:-$here/shop}" && pwd)
package=""
if [ -n "${COMPAT_PACKAGE:-}" ]; then
  package=$project
  project=$package/integration_tests
fi

if [ ! -x "$venv/bin/dbt" ]; then
  echo "== installing dbt-core<1.12 and dbt-duckdb into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'dbt-core<1.12' dbt-duckdb duckdb
fi
[ -x "$strata" ] || { echo "no strata binary at $strata: cargo build --release -p strata" >&2; exit 2; }

work=$(mktemp -d)
if [ -n "${COMPAT_KEEP:-}" ]; then
  echo "== working in $work (kept)"
else
  trap 'rm -rf "$work"' EXIT
fi
if [ -n "$package" ]; then
  # Each side gets the whole package, and works in its integration_tests/ folder.
  name=$(basename "$package")
  for side in duck strata; do
    mkdir -p "$work/$side-package"
    cp -r "$package" "$work/$side-package/$name"
    ln -s "$work/$side-package/$name/integration_tests" "$work/$side"
    mkdir -p "$work/$side/dbt_packages"
    for extra in ${COMPAT_DBT_PACKAGES:-}; do
      cp -r "$extra" "$work/$side/dbt_packages/"
    done
  done
  # dbt reads `local: ../` from dbt_packages/ (as `dbt deps` would install it); Strata reads
  # it in place.
  mkdir -p "$work/duck/dbt_packages/$name"
  for f in "$package"/* "$package"/.[!.]*; do
    [ -e "$f" ] && [ "$(basename "$f")" != integration_tests ] && cp -r "$f" "$work/duck/dbt_packages/$name/"
  done
  profile=$(sed -n 's/^profile: *//p' "$project/dbt_project.yml" | tr -d "'\"")
  for side in duck strata; do
    cat > "$work/$side/profiles.yml" <<PROFILE
$profile:
  target: strata
  outputs:
    duck:
      type: duckdb
      path: "{{ env_var('COMPAT_DUCKDB_PATH', 'compat.duckdb') }}"
      threads: 4
    strata:
      type: strata
      database: compat
      schema: main
      threads: 4
PROFILE
  done
else
  cp -r "$project" "$work/duck"
  cp -r "$project" "$work/strata"
fi
mkdir "$work/results"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
export COMPAT_DUCKDB_PATH="$work/duck/compat.duckdb"

seconds() { python3 -c 'import time; print(time.time())'; }
start=$(seconds)

# build TOOL LABEL [ARGS...]: one `build` of one copy; keeps its log and run_results.json.
build() {
  local tool=$1 label=$2 rc=0
  shift 2
  if [ "$tool" = duck ]; then
    (cd "$work/duck" && "$venv/bin/dbt" build --target duck --profiles-dir . "$@") \
      > "$work/$label-duck.log" 2>&1 || rc=$?
  else
    (cd "$work/strata" && "$strata" build --target strata "$@") \
      > "$work/$label-strata.log" 2>&1 || rc=$?
  fi
  if [ "$rc" != 0 ]; then
    echo "!! $tool build ($label) exited with $rc:"
    tail -30 "$work/$label-$tool.log"
  fi
  mkdir -p "$work/results/$label"
  echo "$rc" > "$work/results/$label/$tool.rc"
  cp "$work/$tool/target/run_results.json" "$work/results/$label/$tool.json" 2>/dev/null || true
  rm -f "$work/$tool/target/run_results.json"
}

if [ -z "$package" ] && { [ -f "$project/packages.yml" ] || [ -f "$project/dependencies.yml" ]; }; then
  echo "== dbt deps (dbt-duckdb; Strata reads local packages in place)"
  (cd "$work/duck" && "$venv/bin/dbt" deps --profiles-dir . > "$work/deps.log" 2>&1) \
    || { tail -30 "$work/deps.log"; exit 1; }
fi

rounds="first second"
[ "${COMPAT_ROUNDS:-2}" = 1 ] && rounds=first
for round in $rounds; do
  vars='{build_round: 1}'
  if [ "$round" = second ]; then
    vars='{build_round: 2}'
    if [ -d "$project/second_run" ]; then
      cp -r "$project/second_run/." "$work/duck/"
      cp -r "$project/second_run/." "$work/strata/"
    fi
  fi
  echo "== $round build"
  t0=$(seconds)
  build duck "$round" --vars "$vars"
  t1=$(seconds)
  build strata "$round" --vars "$vars"
  t2=$(seconds)
  echo "   dbt-duckdb: $(grep -a 'Done\.' "$work/$round-duck.log" | tail -1 | sed 's/.*Done\. //')"
  echo "   strata:     $(grep -a 'Done\.' "$work/$round-strata.log" | tail -1 | sed 's/.*Done\. //')"
  python3 -c "print(f'   dbt-duckdb build: {$t1 - $t0:.2f} s   strata build: {$t2 - $t1:.2f} s')"
done

echo "== comparing"
rc=0
"$venv/bin/python" "$here/compare.py" \
  --duckdb "$COMPAT_DUCKDB_PATH" --duck-project "$work/duck" \
  --strata "$strata" --strata-project "$work/strata" \
  $(for r in $rounds; do echo --results "$r" "$work/results/$r"; done) \
  ${COMPAT_OUTCOMES_ONLY:+--outcomes-only} ${COMPAT_AT_LEAST:+--at-least} \
  ${COMPAT_KNOWN_DIFFERENT:+--known-different "$COMPAT_KNOWN_DIFFERENT"} \
  ${COMPAT_UNSTABLE:+--unstable "$COMPAT_UNSTABLE"} \
  > "$work/compare.log" || rc=$?
end=$(seconds)
head -n -1 "$work/compare.log"
python3 -c "print(f'run.sh took {$end - $start:.1f} s')"
tail -1 "$work/compare.log"
exit "$rc"
