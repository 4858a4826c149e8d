#!/usr/bin/env bash
# Validate the artifacts Strata writes (manifest.json, run_results.json, catalog.json,
# sources.json) for a project using every resource type (./project), after each command that
# writes them, against dbt's JSON schemas, dbt-core's own reader and dbt-artifacts-parser
# (validate.py says how).
#
#   tests/artifacts/check.sh             # uses target/release/strata (or $STRATA_BIN)
#
# dbt-core and dbt-artifacts-parser come from the compatibility venv (tests/compat/run.sh),
# installed on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${COMPAT_VENV:-$HOME/.cache/strata/compat-venv}"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/strata}"
[ -x "$strata" ] || { echo "no strata binary at $strata: cargo build --release -p strata" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import dbt.artifacts, dbt_artifacts_parser' 2>/dev/null; then
  echo "== installing dbt-core<1.12 and dbt-artifacts-parser into $venv"
  "$venv/bin/pip" install --quiet 'dbt-core<1.12' dbt-artifacts-parser
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/project" "$work/project"
cd "$work/project"
validate() { "$venv/bin/python" "$here/validate.py" "$@"; }
step() {
  echo "== strata $*"
  "$strata" "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log"; exit 1; }
  # Everything in this project is supported: nothing may be warned about as ignored.
  if grep -q "not supported" "$work/last.log"; then cat "$work/last.log"; exit 1; fi
}
keep() { cp target/run_results.json "$work/run_results.$1.json"; }

step parse
validate manifest target/manifest.json
step seed;     keep seed
step run;      keep run
step snapshot; keep snapshot
step test;     keep test
step build;    keep build
validate manifest target/manifest.json \
  run_results "$work/run_results.seed.json" run_results "$work/run_results.run.json" \
  run_results "$work/run_results.snapshot.json" run_results "$work/run_results.test.json" \
  run_results "$work/run_results.build.json"
# After a run the manifest carries the SQL each node ran, and tests their arguments as dbt's.
"$venv/bin/python" - <<'PY'
import json, sys
nodes = json.load(open("target/manifest.json"))["nodes"]
problems = []
for uid, n in nodes.items():
    ephemeral = n.get("config", {}).get("materialized") == "ephemeral"  # compiled into its users
    if n["resource_type"] in ("model", "snapshot", "test") and not ephemeral and not n.get("compiled_code"):
        problems.append(f"{uid}: no compiled_code after build")
    if n["resource_type"] == "test" and "test_metadata" in n:
        kwargs = n["test_metadata"]["kwargs"]
        if "model" not in kwargs or (n.get("column_name") and kwargs.get("column_name") != n["column_name"]):
            problems.append(f"{uid}: test_metadata.kwargs lacks model or column_name: {kwargs}")
kinds = {n["resource_type"] for n in nodes.values()}
for kind in ("model", "seed", "snapshot", "test", "analysis"):
    if kind not in kinds:
        problems.append(f"no {kind} node in the manifest")
print("compiled nodes and test kwargs:", "ok" if not problems else "\n  ".join(["problems:"] + problems))
sys.exit(1 if problems else 0)
PY
step compile
validate manifest target/manifest.json
step docs generate
validate manifest target/manifest.json catalog target/catalog.json
step source freshness
validate sources target/sources.json
echo "== artifacts valid"
