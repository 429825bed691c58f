"""The Elementary path: pinned package, monitors from the same declarations, tracking off, and an
end-to-end run (`setup`, `dbt build`, `edr report`) run only where a dbt package hub answers."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from datetime import date, timedelta
from importlib.metadata import version
from pathlib import Path

import duckdb
import pytest
import yaml

from dataops.core.settings import REPO_ROOT
from dataops.observability import elementary
from dataops.sources.registry import load_registry
from tests.python.conftest import dataops, settings_for
from tests.python.dbt_project_copy import copy_project


def test_package_is_pinned_to_the_edr_version_of_the_lock_file() -> None:
    """packages.yml pins Elementary's dbt package to the edr CLI installed from
    requirements.lock, the version edr's own internal dbt project also pins."""
    locked = re.search(r"^elementary-data==(\S+)$",
                       (REPO_ROOT / "requirements.lock").read_text(), re.MULTILINE).group(1)
    assert version("elementary-data") == locked
    pinned = yaml.safe_load(elementary.packages_yml(elementary.package_version()))
    assert pinned == {"packages": [{"package": "elementary-data/elementary", "version": locked}]}
    import elementary as edr

    internal = Path(edr.__file__).parent / "monitor" / "dbt_project" / "packages.yml"
    edr_pins = {p["package"]: p["version"]
                for p in yaml.safe_load(internal.read_text())["packages"] if "package" in p}
    assert edr_pins["elementary-data/elementary"] == locked


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
    # A view over the staging model: staged names and types, not the raw text columns.
    assert files["mon_payments__payments.sql"].endswith(
        "select * from {{ ref('stg_payments__payments') }}\n")
    payments = next(m for m in models if m["name"] == "mon_payments__payments")
    tests = {next(iter(t)) if isinstance(t, dict) else t: t for t in payments["data_tests"]}
    assert list(tests) == ["elementary.volume_anomalies", "elementary.freshness_anomalies",
                           "elementary.schema_changes_from_baseline"]
    # Volume and freshness bucketed by the declared event time, not the load time.
    for name in ("elementary.volume_anomalies", "elementary.freshness_anomalies"):
        assert tests[name][name] == {"arguments": {"timestamp_column": "created_at"},
                                     "config": {"severity": "warn"}}
    # The baseline is every staged column (derived ones too) in DuckDB's own type names.
    types = {c["name"]: c["data_type"] for c in payments["columns"]}
    assert types == {"payment_id": "BIGINT", "order_id": "BIGINT", "payment_method": "VARCHAR",
                     "payment_status": "VARCHAR", "amount_cents": "BIGINT",
                     "created_at": "TIMESTAMP", "amount": "DECIMAL(18,2)"}
    amount = next(c for c in payments["columns"] if c["name"] == "amount_cents")
    assert amount["data_tests"][0]["elementary.column_anomalies"]["arguments"] == {
        "column_anomalies": ["null_percent", "average"], "timestamp_column": "created_at"}
    # No event time declared (order lines carry no timestamp): a table-level volume monitor
    # (rows per run) and no freshness monitor, rather than the load time.
    items = next(m for m in models if m["name"] == "mon_shop__order_items")
    assert items["data_tests"][:1] == [
        {"elementary.volume_anomalies": {"config": {"severity": "warn"}}}]
    assert "elementary.freshness_anomalies" not in str(items["data_tests"])


def test_setup_without_a_reachable_hub_says_what_to_do(tmp_path: Path) -> None:
    result = dataops(tmp_path, "elementary", "setup", "--hub-url", "http://127.0.0.1:9/",
                     check=False)
    assert result.returncode == 2
    assert "DBT_PACKAGE_HUB_URL" in result.stderr and "not reachable" in result.stderr
    assert not (REPO_ROOT / "packages.yml").exists()


def test_report_before_setup_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "home", monkeypatch)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))  # no manifest there
    assert elementary.report(settings, tmp_path / "elementary.html") == 2
    assert "run `dataops elementary setup` and a build" in capsys.readouterr().err
    assert not (tmp_path / "elementary.html").exists()


def report_data(html: Path) -> dict:
    """The data an `edr report` HTML file embeds (base64 JSON in `window.elementaryData`)."""
    found = re.search(r"window\.elementaryData = JSON\.parse\(atob\('([A-Za-z0-9+/=]+)'\)\)",
                      html.read_text(encoding="utf-8"))
    assert found, f"{html} embeds no window.elementaryData: not an edr report"
    return json.loads(base64.b64decode(found.group(1)))


@pytest.mark.slow
def test_elementary_setup_build_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = elementary.hub_url()
    reason = elementary.hub_reachable(hub)
    if reason:
        pytest.skip(f"no dbt package hub reachable (set DBT_PACKAGE_HUB_URL to a mirror): {reason}")
    from dataops.ingestion.loader import ingest
    from dataops.sample_data.generator import generate

    project = copy_project(tmp_path / "project")
    settings = settings_for(tmp_path / "home", monkeypatch)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    # Elementary's monitors look back from today (14 days of training): a recent sample, as
    # `make elementary` generates.
    landing = tmp_path / "landing"
    generate(landing, order_items=3_000, days=14, start=date.today() - timedelta(days=14))
    ingest(settings.warehouse_path, landing, load_registry(project))

    assert elementary.setup(settings, project_dir=project) == 0
    assert elementary._dbt(settings, project, "build") == 0  # schema_changes_from_baseline errors
    # Elementary's tables are in their own schema, and edr is pointed at it.
    assert elementary.elementary_schema(settings) == "elementary"
    output = tmp_path / "elementary.html"
    assert elementary.report(settings, output, project_dir=project) == 0

    data = report_data(output)
    # Still the project's manifest: edr's own dbt runs keep their artefacts elsewhere.
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    project_tests = {uid for uid, node in manifest["nodes"].items()
                     if node["resource_type"] == "test" and node["package_name"] == "dataops"}
    assert set(data["tests"]) == project_tests  # every data test of the project, monitors too
    monitors = {uid for uid in project_tests if ".elementary_" in uid}
    assert len([m for m in monitors if "schema_changes_from_baseline" in m]) == 4
    results = [r["metadata"] for rows in data["test_results"].values() for r in rows]
    assert {r["test_unique_id"] for r in results} == project_tests
    failed = [(r["test_unique_id"], r["latest_run_status"]) for r in results
              if r["latest_run_status"] not in ("pass", "warn")]
    assert failed == []
    totals = data["test_results_totals"].values()
    assert sum(t["failures"] + t["errors"] for t in totals) == 0

    # Volume is bucketed by the declared event time (ordered_at): one bucket per day of orders,
    # not one load time for every row.
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        buckets = con.execute(
            "select count(distinct bucket_start), min(metric_value), sum(metric_value) "
            "from elementary.data_monitoring_metrics "
            "where full_table_name ilike '%mon_shop__orders' and metric_name = 'row_count'"
        ).fetchone()
        orders = con.execute("select count(*) from staging.stg_shop__orders").fetchone()[0]
    assert buckets[0] >= 13 and buckets[1] > 0 and buckets[2] == orders
