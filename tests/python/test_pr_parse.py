"""The shared parse of PR builds (dataops/cicd/pr_parse.py, dataops/dbt/relocate.py): the
checkout parsed once with a fixed schema, moved to ``pr_<n>``, must be the manifest dbt itself
parses for ``pr_<n>``. Real dbt parses of this repository's project, each in its own process.
The PR builds that use it (git, prod deploy, DuckDB) are in test_pr_environments.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataops.cicd.environments import Layout
from dataops.cicd.pr_parse import (
    SHARED_SCHEMA,
    SharedParseError,
    load_built_manifest,
    shared_parse_dir,
)
from dataops.dbt.relocate import RelocationError, check_moved
from tests.python.conftest import platform_env

# Run in a fresh process: how a PR build parses, the shared way or in full (its fallback).
_PARSE = """
import json, sys
from pathlib import Path
from dataops.cicd.environments import load_layout
from dataops.cicd.pr import pr_parse_args
from dataops.cicd.pr_parse import parse_for_pr
from dataops.core.settings import load_settings
from dataops.dbt.runner import dbt_env, environ, invoke

how, number, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
layout = load_layout()
with environ(layout.dbt_environment(number)):
    settings = load_settings("ci")
    if how == "shared":
        parsed = parse_for_pr(layout, number, settings)
        manifest, text = parsed.manifest, parsed.manifest_text
    else:
        result = invoke(pr_parse_args(layout, number), dbt_env(settings))
        assert result.success, result.exception
        manifest = result.result
        text = (layout.pr_target_dir(number) / "manifest.json").read_text()
out.write_text(text)
graph = {uid: [n["schema"], n["relation_name"]] for uid, n in manifest.flat_graph["nodes"].items()}
out.with_suffix(".graph.json").write_text(json.dumps(graph))
"""
# What differs between two parses of the same files whatever the schema: when they ran.
RUN_METADATA = ("generated_at", "invocation_id", "invocation_started_at", "run_started_at")


def _parse(home: Path, how: str, number: int, out: Path) -> tuple[dict[str, Any], dict]:
    env = platform_env(home, target="ci")
    result = subprocess.run(
        [sys.executable, "-c", _PARSE, how, str(number), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), json.loads(out.with_suffix(".graph.json").read_text())


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _differences(left: Any, right: Any, path: str = "") -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        return [
            d
            for key in sorted(set(left) | set(right))
            for d in _differences(
                left.get(key, "<absent>"), right.get(key, "<absent>"), f"{path}.{key}"
            )
        ]
    if left != right:
        return [f"{path}: {str(left)[:80]!r} != {str(right)[:80]!r}"]
    return []


@pytest.mark.slow
def test_the_shared_parse_moved_to_a_pr_schema_is_the_manifest_dbt_parses_for_it(tmp_path):
    home = tmp_path / "home"
    moved, moved_graph = _parse(home, "shared", 7, tmp_path / "moved.json")
    real, real_graph = _parse(home, "full", 7, tmp_path / "real.json")
    for manifest in (moved, real):
        for key in RUN_METADATA:
            manifest["metadata"].pop(key)
    differences = _differences(_without_times(moved), _without_times(real))
    assert not differences, "\n".join(differences[:20])
    # the fields dbt uses, spelled out: the equality above covers them, this shows it did
    fct = real["nodes"]["model.dataops.fct_orders"]
    assert fct["schema"] == "pr_7" and fct["relation_name"] == '"warehouse_ci"."pr_7"."fct_orders"'
    assert moved["nodes"]["model.dataops.fct_orders"]["relation_name"] == fct["relation_name"]
    assert {n["schema"] for n in moved["nodes"].values()} == {"pr_7"}
    assert moved["child_map"] == real["child_map"] and len(moved["sources"]) == 10
    # the `graph` variable macros read (dbt's flat_graph) holds the moved nodes too
    assert moved_graph == real_graph
    assert {schema for schema, _ in moved_graph.values()} == {"pr_7"}
    # the parse it came from is kept for the next PR (dbt's partial parse), outside PR folders
    (parse_dir,) = [p for p in (home / "pr-parse").iterdir() if p.is_dir()]
    assert (parse_dir / "partial_parse.msgpack").is_file()


def _layout(home: Path) -> Layout:
    return Layout(home, home / "warehouse_ci.duckdb", home / "warehouse_prod.duckdb")


def test_one_shared_parse_folder_per_checkout_and_settings_whatever_the_pr(tmp_path):
    layout = _layout(tmp_path)
    env = {"DATAOPS_HOME": str(tmp_path), "DATAOPS_WAREHOUSE_CI": str(layout.ci_warehouse)}
    folder = shared_parse_dir(layout, env)
    assert folder.parent == tmp_path / "pr-parse"
    # the PR's number, schema and target folder are not part of it
    assert folder == shared_parse_dir(
        layout, {**env, "DATAOPS_CI_SCHEMA": "pr_9", "DBT_TARGET_PATH": "/x"}
    )
    # what profiles.yml / dbt_project.yml read, the project folder and the vars are
    assert folder != shared_parse_dir(layout, {**env, "DATAOPS_WAREHOUSE_CI": "/other.duckdb"})
    assert folder != shared_parse_dir(layout, {**env, "DATAOPS_LANDING": "/elsewhere"})
    assert folder != shared_parse_dir(layout, env, project_dir=tmp_path / "another-checkout")
    other_prod = Layout(tmp_path, layout.ci_warehouse, tmp_path / "prod2.duckdb")
    assert folder != shared_parse_dir(other_prod, env)


def test_a_moved_manifest_that_still_names_the_parsed_schema_is_refused():
    check_moved('{"nodes": {"schema": "pr_7"}}', SHARED_SCHEMA)
    with pytest.raises(RelocationError, match="still in the manifest") as caught:
        check_moved(
            '{"description": "Rows of ' + SHARED_SCHEMA.upper() + '.orders"}', SHARED_SCHEMA
        )
    assert "Rows of" in str(caught.value), "the message shows where"


# Two `dbt build`s in one process on one parsed manifest (a pruned PR build's two steps).
_BUILD_TWICE = """
import json, os, sys
from dataops.dbt.runner import invoke
project = sys.argv[1]
env = {**os.environ, "EPH_DB": os.path.join(project, "eph.duckdb")}
base = ["--project-dir", project, "--profiles-dir", project, "--log-level", "none"]
parsed = invoke(["parse", *base], env)
runs = []
for _ in range(2):
    result = invoke(["build", *base], env, manifest=parsed.result)
    runs.append([[str(r.status), r.message] for r in result.result.results])
print(json.dumps(runs))
"""


def _ephemeral_project(folder: Path) -> Path:
    """A tiny dbt project on DuckDB: an ephemeral model and a table reading it."""
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text('name: eph\nversion: "1.0"\nprofile: eph\n')
    (folder / "profiles.yml").write_text(
        "eph:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('EPH_DB') }}\"\n      schema: main\n"
    )
    (folder / "models" / "numbers.sql").write_text(
        "{{ config(materialized='ephemeral') }}\nselect 1 as id\n"
    )
    (folder / "models" / "next_numbers.sql").write_text(
        "{{ config(materialized='table') }}\nselect id + 1 as next_id from {{ ref('numbers') }}\n"
    )
    return folder


def _run_on(project: Path, script: str) -> Any:
    """Run ``script`` on the project in a fresh process; what it printed last, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(project)],
        env=platform_env(project / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_a_parsed_manifest_serves_two_builds_as_if_each_had_parsed(tmp_path):
    # dbt compiles the nodes of the manifest it runs on in place and marks the CTEs of
    # ephemeral models as injected: a second run on the same object compiled the model without
    # them ("__dbt__cte__numbers does not exist")
    first, second = _run_on(_ephemeral_project(tmp_path), _BUILD_TWICE)
    assert first == second == [["success", "OK"]], (first, second)


# A later command on a build (`pr report`) loads the manifest the build wrote, then runs dbt on it.
_LOAD_AND_LIST = """
import json, os, sys
from pathlib import Path
from dataops.cicd.pr_parse import load_built_manifest
from dataops.dbt.runner import invoke
project = sys.argv[1]
env = {**os.environ, "EPH_DB": os.path.join(project, "eph.duckdb")}
base = ["--project-dir", project, "--profiles-dir", project, "--log-level", "none"]
assert invoke(["parse", *base, "--target-path", project + "/target"], env).success
manifest = load_built_manifest(Path(project) / "target" / "manifest.json")
listed = invoke(["ls", *base, "--output", "name"], env, manifest=manifest)
print(json.dumps(sorted(listed.result)))
"""


def test_the_manifest_a_build_wrote_serves_later_dbt_commands_or_is_refused(tmp_path):
    project = _ephemeral_project(tmp_path / "project")
    assert _run_on(project, _LOAD_AND_LIST) == ["next_numbers", "numbers"]
    # what dbt cannot load is refused with the file's name (the caller then parses)
    written = project / "target" / "manifest.json"
    manifest = json.loads(written.read_text())
    manifest["metadata"]["dbt_schema_version"] = "https://schemas.getdbt.com/dbt/manifest/v99.json"
    newer = tmp_path / "newer" / "manifest.json"
    newer.parent.mkdir()
    newer.write_text(json.dumps(manifest))
    truncated = tmp_path / "truncated" / "manifest.json"
    truncated.parent.mkdir()
    truncated.write_text(written.read_text()[:1000])
    for path in (newer, truncated, tmp_path / "missing" / "manifest.json"):
        with pytest.raises(SharedParseError, match=str(path)):
            load_built_manifest(path)
