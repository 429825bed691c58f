"""The Elementary path: pinned package, monitors from the same declarations, tracking off, and an
end-to-end run (`setup`, `dbt build`, `edr report`) run only where a dbt package hub answers."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from dataops.core.settings import REPO_ROOT
from dataops.observability import elementary
from dataops.sources.registry import load_registry
from tests.python.conftest import dataops, settings_for
from tests.python.dbt_project_copy import copy_project


def test_package_is_pinned_to_the_installed_edr_version() -> None:
    pinned = yaml.safe_load(elementary.packages_yml(elementary.package_version()))
    assert pinned == {
        "packages": [
            {"package": "elementary-data/elementary", "version": version("elementary-data")}
        ]
    }
    assert version("elementary-data") == "0.26.1"


def test_committed_project_needs_no_dbt_deps() -> None:
    tracked = subprocess.run(["git", "ls-files", "packages.yml", "models/elementary_monitors"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert tracked == ""
    ignored = subprocess.run(["git", "check-ignore", "packages.yml",
                              "models/elementary_monitors/mon_shop__orders.sql"],
                             cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == ["packages.yml", "models/elementary_monitors/mon_shop__orders.sql"]


def test_edr_usage_tracking_is_off_in_the_repo_config() -> None:
    from elementary.config.config import Config

    config = Config(config_dir=str(elementary.EDR_CONFIG_DIR))
    assert config.anonymous_tracking_enabled is False


def test_elementary_monitors_come_from_the_monitors_declarations() -> None:
    files = elementary.monitor_files()
    models = yaml.safe_load(files["_elementary_monitors__models.yml"])["models"]
    monitored = [t for t in load_registry() if t.monitors]
    assert {m["name"] for m in models} == {f"mon_{t.source}__{t.name}" for t in monitored}
    payments = next(m for m in models if m["name"] == "mon_payments__payments")
    tests = [next(iter(t)) if isinstance(t, dict) else t for t in payments["data_tests"]]
    assert tests == ["elementary.volume_anomalies", "elementary.freshness_anomalies",
                     "elementary.schema_changes_from_baseline"]
    amount = next(c for c in payments["columns"] if c["name"] == "amount")  # staged amount_cents
    assert amount["data_tests"][0]["elementary.column_anomalies"]["column_anomalies"] == [
        "null_percent", "average"]
    assert "source('payments', 'payments')" in files["mon_payments__payments.sql"]


def test_setup_without_a_reachable_hub_says_what_to_do(tmp_path: Path) -> None:
    result = dataops(tmp_path, "elementary", "setup", "--hub-url", "http://127.0.0.1:9/",
                     check=False)
    assert result.returncode == 2
    assert "DBT_PACKAGE_HUB_URL" in result.stderr and "not reachable" in result.stderr
    assert not (REPO_ROOT / "packages.yml").exists()


@pytest.mark.slow
def test_elementary_setup_build_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_landing: Path
) -> None:
    hub = elementary.hub_url()
    reason = elementary.hub_reachable(hub)
    if reason:
        pytest.skip(f"no dbt package hub reachable (set DBT_PACKAGE_HUB_URL to a mirror): {reason}")
    project = copy_project(tmp_path / "project")
    settings = settings_for(tmp_path / "home", monkeypatch)
    monkeypatch.setenv("DATAOPS_LANDING", str(sample_landing))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    from dataops.ingestion.loader import ingest

    ingest(settings.warehouse_path, sample_landing, load_registry(project))
    assert elementary.setup(settings, project_dir=project) == 0
    assert elementary._dbt(settings, project, "build") in (0, 1)  # anomalies may warn
    output = tmp_path / "elementary.html"
    assert elementary.report(settings, output, project_dir=project) == 0
    assert output.stat().st_size > 10_000 and "<html" in output.read_text()[:2000].lower()
