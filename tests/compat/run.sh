#!/usr/bin/env bash
# Build tests/compat/shop with dbt-duckdb and with Strata, time both from nothing to all tests
# passed, and compare every table and view the two built.
#
#   tests/compat/run.sh            # uses target/release/strata (or $STRATA_BIN)
#
# dbt-core<1.12 and dbt-duckdb are installed into a venv of their own on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${COMPAT_VENV:-$HOME/.cache/strata/compat-venv}"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/strata}"

if [ ! -x "$venv/bin/dbt" ]; then
  echo "== installing dbt-core<1.12 and dbt-duckdb into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'dbt-core<1.12' dbt-duckdb duckdb
fi
[ -x "$strata" ] || { echo "no strata binary at $strata: cargo build --release -p strata" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/shop" "$work/duck"
cp -r "$here/shop" "$work/strata"

seconds() { python3 -c 'import time; print(time.time())'; }

echo "== dbt build (dbt-duckdb)"
t0=$(seconds)
(cd "$work/duck" && DBT_SEND_ANONYMOUS_USAGE_STATS=false "$venv/bin/dbt" build --target duck --profiles-dir . > "$work/dbt.log" 2>&1) \
  || { tail -30 "$work/dbt.log"; exit 1; }
t1=$(seconds)
echo "== strata build"
(cd "$work/strata" && "$strata" build --target strata > "$work/strata.log" 2>&1) \
  || { tail -30 "$work/strata.log"; exit 1; }
t2=$(seconds)
tail -1 "$work/dbt.log"
tail -1 "$work/strata.log"
python3 -c "print(f'dbt-duckdb build: {$t1 - $t0:.2f} s   strata build: {$t2 - $t1:.2f} s')"

echo "== comparing every relation"
"$venv/bin/python" "$here/compare.py" "$work/duck/compat.duckdb" "$strata" "$work/strata"
