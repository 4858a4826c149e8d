"""Validate dbt artifacts written by Strata, the way the dbt ecosystem reads them.

Usage: validate.py ARTIFACT_KIND FILE [ARTIFACT_KIND FILE ...]
(kinds: manifest, run_results, catalog, sources)

Each file is checked three ways, with dbt's own definitions (from the dbt-core installed beside
this interpreter) and the parser tools use:
  1. against the JSON schema dbt publishes for it (generated from dbt-core's artifact classes,
     the source of schemas.getdbt.com), every error listed with its path;
  2. by dbt-core itself, reading it as `--state` does;
  3. by dbt-artifacts-parser (PyPI), which Elementary, DataHub and others build on.
Exits 1 when any check fails.
"""
import collections
import json
import sys

import jsonschema
from dbt.artifacts.schemas.catalog import CatalogArtifact
from dbt.artifacts.schemas.freshness import FreshnessExecutionResultArtifact
from dbt.artifacts.schemas.manifest import WritableManifest
from dbt.artifacts.schemas.run import RunResultsArtifact
from dbt_artifacts_parser import parser

KINDS = {
    "manifest": (WritableManifest, parser.parse_manifest, "v12"),
    "run_results": (RunResultsArtifact, parser.parse_run_results, "v6"),
    "catalog": (CatalogArtifact, parser.parse_catalog, "v1"),
    "sources": (FreshnessExecutionResultArtifact, parser.parse_sources, "v3"),
}


def leaves(error):
    """The innermost errors of a schema error: for a union (anyOf), those of the branch
    meant for the instance (its resource_type), else of the branch that failed least."""
    if not error.context:
        yield error
        return
    branches = collections.defaultdict(list)
    for sub in error.context:
        branches[sub.schema_path[0]].append(sub)
    kind = error.instance.get("resource_type") if isinstance(error.instance, dict) else None
    chosen = None
    if kind:
        options = error.schema.get("anyOf") or error.schema.get("oneOf") or []
        for i, subs in branches.items():
            option = options[i] if isinstance(i, int) and i < len(options) else {}
            const = option.get("properties", {}).get("resource_type", {}).get("const")
            if const == kind and (chosen is None or len(subs) < len(chosen)):
                chosen = subs
    for sub in chosen or min(branches.values(), key=len):
        yield from leaves(sub)


def check(kind, path):
    cls, parse, version = KINDS[kind]
    with open(path) as f:
        doc = json.load(f)
    problems = []
    schema = cls.json_schema()
    declared = doc.get("metadata", {}).get("dbt_schema_version", "")
    if declared != schema["$id"]:
        problems.append(f"dbt_schema_version is {declared!r}, expected {schema['$id']!r}")
    validator = jsonschema.validators.validator_for(schema)(schema)
    for error in validator.iter_errors(doc):
        for leaf in leaves(error):
            where = "/".join(str(p) for p in leaf.absolute_path)
            problems.append(f"schema: {where}: {leaf.message[:300]}")
    try:
        cls.read_and_check_versions(path)
    except Exception as e:
        problems.append(f"dbt-core: {str(e)[:500]}")
    try:
        parse(doc)
    except Exception as e:
        problems.append(f"dbt-artifacts-parser: {str(e)[:1500]}")
    status = "ok" if not problems else f"{len(problems)} problem(s)"
    print(f"{kind} {version} {path}: {status}")
    for p in problems:
        print(f"  {p}")
    return not problems


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        sys.exit(__doc__)
    pairs = list(zip(argv[::2], argv[1::2]))
    results = [check(kind, path) for kind, path in pairs]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
