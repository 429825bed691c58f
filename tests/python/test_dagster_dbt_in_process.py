"""dbt steps run in-process on a manifest the run worker preloaded (dataops/dbt/preloaded.py,
orchestration/resources.py): the same materialisations and checks as a dbt subprocess, the
warehouse released after the step, and a subprocess whenever the preloaded parse would not be
what a new dbt process parses.

The daemon tests (test_dagster_daemon.py) run landed files through the warm worker, where this
path is taken.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetSelection, DagsterInstance

import dataops.dbt.preloaded as preloaded_module
from dataops.dbt.preloaded import PreloadedProject, option, project_fingerprint
from orchestration.assets.translator import raw_asset_key
from tests.python.dagster_harness import clone_home


def _project(tmp_path: Path) -> PreloadedProject:
    (tmp_path / "dbt_project.yml").write_text("name: x\nmodel-paths: [dbt_models]\n")
    for name in ("dbt_models/staging/stg_shop__orders.sql", "macros/m.sql"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "profiles").mkdir()
    return PreloadedProject(
        tmp_path.resolve(),
        (tmp_path / "profiles").resolve(),
        "dev",
        None,
        project_fingerprint(tmp_path.resolve()),
    )


def test_the_preloaded_manifest_serves_only_what_a_new_dbt_process_would_parse_alike(tmp_path):
    project = _project(tmp_path)
    env = {"DBT_PROFILES_DIR": str(tmp_path / "profiles")}
    build = ["build", "--target", "dev", "--select", "fqn:*"]
    assert project.serves(build, env, tmp_path)
    assert option(["build", "--target=ci"], "--target") == "ci"
    refused = {
        "another target": (["build", "--target", "ci"], env, tmp_path),
        "vars (rendered at parse time too)": ([*build, "--vars", '{"a": 1}'], env, tmp_path),
        "a generated selectors.yml": ([*build, "--selector", "dagster_run_1"], env, tmp_path),
        "another project (dagster-dbt's copy)": (build, env, tmp_path / "dbt_models"),
        "other profiles": (build, {"DBT_PROFILES_DIR": str(tmp_path)}, tmp_path),
    }
    for why, (args, environment, project_dir) in refused.items():
        assert not project.serves(args, environment, project_dir), why
    # The model-paths of dbt_project.yml are watched: a model changed since the parse.
    (tmp_path / "dbt_models" / "staging" / "stg_shop__orders.sql").write_text("changed")
    assert not project.serves(build, env, tmp_path), "a changed model went unnoticed"


def _step_results(defs, keys) -> tuple[dict[str, object], dict[str, bool], str]:
    job = defs.resolve_job_def("daily_full_build").get_subset(asset_selection=keys)
    instance = DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, result.all_events
    materialised = {
        e.asset_key.to_user_string(): e.materialization.metadata.get("dagster/row_count")
        for e in result.get_asset_materialization_events()
    }
    checks = {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }
    logs = "\n".join(
        entry.user_message for entry in instance.all_logs(result.run_id) if entry.user_message
    )
    return materialised, checks, logs


@pytest.mark.slow
def test_a_dbt_step_on_the_preloaded_manifest_records_what_a_dbt_process_records(
    dagster_platform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = clone_home(dagster_platform, tmp_path / "home")
    monkeypatch.setenv("DATAOPS_HOME", str(home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(home / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(home / "logs"))
    monkeypatch.setattr(preloaded_module, "_PRELOADED", {})  # this test's preload only
    from orchestration.definitions import build_definitions

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    raw = raw_asset_key("web", "sessions")
    keys = AssetSelection.assets(raw).downstream().resolve(graph) - {raw}

    by_process = _step_results(defs, keys)
    assert "in-process" not in by_process[2]
    defs.resources["dbt"].preload()
    in_process = _step_results(defs, keys)
    assert "in-process on the preloaded manifest" in in_process[2], in_process[2]

    # The same assets, with the same row counts read from the warehouse once dbt has let go of it.
    assert in_process[0] == by_process[0]
    assert set(in_process[0]) == {k.to_user_string() for k in keys}
    assert all(count is not None for count in in_process[0].values()), in_process[0]
    assert in_process[1] == by_process[1]
    assert in_process[1] and all(in_process[1].values()), in_process[1]
    # The warehouse is free once the step ended: a new process opens it for writing at once.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
            str(home / "warehouse_dev.duckdb"),
        ],
        check=True,
        env=dict(os.environ),
        timeout=120,
    )
