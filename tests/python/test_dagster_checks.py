"""Freshness checks run `dbt source freshness` against the SLA declared in the sources YAML and
report dbt's verdict per raw table (real dbt, real DuckDB, an ephemeral Dagster instance)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from orchestration.checks.freshness import CHECK_NAME
from orchestration.definitions import build_definitions
from tests.python.dagster_harness import clone_home

pytestmark = pytest.mark.slow


def test_freshness_checks_pass_fresh_tables_and_fail_stale_ones_with_the_declared_severity(
    dagster_platform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = clone_home(dagster_platform, tmp_path / "home")
    monkeypatch.setenv("DATAOPS_HOME", str(home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(home / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(home / "logs"))
    with duckdb.connect(str(home / "warehouse_dev.duckdb")) as con:
        # web declares error_after 50 hours (models/staging/web/_web__sources.yml): 9 days old
        # is past it.
        con.execute("update raw_web.sessions set _loaded_at = _loaded_at - interval 9 days")

    defs = build_definitions()
    keys = {k for k in defs.resolve_asset_graph().asset_check_keys if k.name == CHECK_NAME}
    job = defs.resolve_job_def("daily_full_build").get_subset(
        asset_selection=set(), asset_check_selection=keys
    )
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {k.asset_key.to_user_string() for k in keys}
    stale = evaluations.pop("raw/web/sessions")
    assert not stale.passed
    assert stale.severity == AssetCheckSeverity.ERROR
    assert stale.metadata["dbt_status"].value == "error"
    assert all(e.passed for e in evaluations.values()), {
        k: e.metadata for k, e in evaluations.items() if not e.passed
    }
