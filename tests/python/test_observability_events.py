"""The event log, metric history, retention and the static report, on real dbt builds and Chromium.

A failed test, a quarantined file and an anomaly each land in platform.events, joined by their ids,
and show in the report.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from dataops.core import events
from dataops.core.settings import REPO_ROOT
from tests.python.conftest import dataops, platform_env


def _dbt(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, "--project-dir", str(REPO_ROOT)],
        cwd=REPO_ROOT, env={**platform_env(home), **(env or {})},
        capture_output=True, text=True, timeout=900,
    )


def _query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_every_node_result_and_the_invocation_are_in_the_event_log(built_platform) -> None:
    home, _ = built_platform
    warehouse = home / "warehouse_dev.duckdb"
    results = json.loads((home / "target" / "run_results.json").read_text())
    invocation = results["metadata"]["invocation_id"]
    recorded = dict(_query(
        warehouse,
        "select node_id, status from platform.events "
        "where event_type = 'dbt.node_result' and dbt_invocation_id = ?", [invocation],
    ))
    expected = {r["unique_id"]: r["status"] for r in results["results"]
                if not r["unique_id"].startswith("operation.")}  # the hooks themselves
    assert recorded == expected
    kinds = _query(warehouse, "select event_type from platform.events where dbt_invocation_id = ? "
                   "and event_type like 'dbt.invocation%' order by 1", [invocation])
    assert kinds == [("dbt.invocation_ended",), ("dbt.invocation_started",)]
    details = _query(warehouse, "select details from platform.events where node_id = ? "
                     "and dbt_invocation_id = ? and event_type = 'dbt.node_result'",
                     ["model.dataops.fct_orders", invocation])
    detail = json.loads(details[0][0])
    assert detail["resource_type"] == "model" and detail["execution_time_s"] > 0


def test_monitored_sources_are_measured_from_their_declaration(built_platform) -> None:
    home, _ = built_platform
    measured = _query(
        home / "warehouse_dev.duckdb",
        "select distinct node_id from platform.metric_history where metric_name = 'rows_added'",
    )
    # the tables with a `monitors` block in models/staging/*/_*__sources.yml
    from dataops.sources.registry import load_registry

    declared = {f"source.dataops.{t.source}.{t.name}" for t in load_registry() if t.monitors}
    assert {row[0] for row in measured} == declared
    # a mart's `monitors` block (model YAML): measured whole after the build
    mart = _query(
        home / "warehouse_dev.duckdb",
        "select metric_name, count(*) from platform.metric_history "
        "where node_id = 'model.dataops.fct_daily_revenue' group by 1 order by 1",
    )
    assert [name for name, _ in mart] == ["mean", "min", "row_count"]


def test_dbt_creates_the_event_log_with_the_shape_python_writes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = _dbt(home, "seed")
    assert result.returncode == 0, result.stdout[-3000:]
    dbt_shape = _query(home / "warehouse_dev.duckdb", "describe platform.events")
    with duckdb.connect() as con:
        events.ensure_events(con)
        python_shape = con.execute("describe platform.events").fetchall()
    assert dbt_shape == python_shape


@pytest.mark.slow
def test_retention_bounds_the_history_tables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    warehouse = home / "warehouse_dev.duckdb"
    assert _dbt(home, "seed").returncode == 0
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(warehouse)) as con:
        for age in (10, 40, 400):
            con.execute(
                "insert into platform.metric_history (measured_at, dbt_invocation_id, node_id, "
                "table_kind, table_name, metric_name, metric_value) "
                "values (?, 'old', 'source.dataops.shop.orders', 'source', 'orders', "
                "'row_count', 1)",
                [now - timedelta(days=age)],
            )
            events.record_event(con, "test.old", occurred_at=now - timedelta(days=age),
                                message=f"{age} days old")
    retention = json.dumps({"dataops_retention": {"metric_history_days": 30, "events_days": 60}})
    assert _dbt(home, "seed", "--vars", retention).returncode == 0
    kept_metrics = _query(warehouse, "select count(*) from platform.metric_history "
                          "where dbt_invocation_id = 'old'")
    kept_events = _query(warehouse, "select message from platform.events "
                         "where event_type = 'test.old' order by 1")
    assert kept_metrics == [(1,)]
    assert kept_events == [("10 days old",), ("40 days old",)]

    bad = _dbt(home, "seed", "--vars", json.dumps({"dataops_retention": {"events_days": 0}}))
    assert bad.returncode != 0
    assert "vars.dataops_retention.events_days is '0'" in bad.stdout


@pytest.fixture(scope="module")
def incident(built_platform, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the built platform after a day with a failed test, a quarantined file and an
    anomaly (the build runs three days after the last load: freshness over the SLA)."""
    source_home, _ = built_platform
    home = tmp_path_factory.mktemp("incident") / "home"
    shutil.copytree(source_home, home, ignore=shutil.ignore_patterns("logs", "reports"))
    folder = home / "landing" / "payments" / "payments"
    order_id = _query(home / "warehouse_dev.duckdb",
                      "select min(order_id) from raw_payments.payments")[0][0]
    record = {"payment_id": 99_000_001, "order_id": int(order_id), "payment_method": "bitcoin",
              "status": "succeeded", "amount": 1000, "created_at": "2025-01-08T10:00:00Z"}
    (folder / "payments_2099-01-01.json").write_text(json.dumps(record) + "\n")
    (folder / "payments_2099-01-02.json").write_text('{"payment_id": 99000002, "order_id": \n')
    ingested = dataops(home, "ingest", check=False)
    assert "quarantined" in ingested.stdout + ingested.stderr, ingested.stdout
    as_of = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    env = platform_env(home)
    env["DATAOPS_AS_OF"] = as_of
    built = subprocess.run([sys.executable, "-m", "dataops.cli", "build"], cwd=REPO_ROOT,
                           env=env, capture_output=True, text=True, timeout=1800)
    assert built.returncode != 0, "the build must fail on the staging_rules test (accepted values)"
    reported = dataops(home, "report")
    return home, reported.stdout


@pytest.mark.slow
def test_failed_test_quarantined_file_and_anomaly_are_events_joined_by_ids(incident) -> None:
    home, _ = incident
    warehouse = home / "warehouse_dev.duckdb"
    failed = _query(warehouse, """
        select failed.node_id, started.event_id
        from platform.events as failed
        inner join platform.events as started
            on started.dbt_invocation_id = failed.dbt_invocation_id
            and started.event_type = 'dbt.invocation_started'
        where failed.event_type = 'dbt.node_result' and failed.status = 'fail'
    """)
    assert any("staging_rules_stg_payments__payments" in node for node, _ in failed)

    quarantined = _query(warehouse, """
        select events.file_name
        from platform.events as events
        inner join platform.load_ledger as ledger
            on ledger.file_hash = events.file_hash and ledger.status = 'quarantined'
        where events.event_type = 'file.quarantined'
    """)
    assert quarantined == [("payments_2099-01-02.json",)]

    anomalies = _query(warehouse, """
        select anomaly.table_name, anomaly.batch_id = loaded.batch_id
        from platform.events as anomaly
        inner join platform.events as result
            on result.event_type = 'dbt.node_result'
            and result.node_id = anomaly.node_id
            and result.dbt_invocation_id = anomaly.dbt_invocation_id
        left join platform.events as loaded
            on loaded.event_type = 'file.loaded' and loaded.file_name = 'payments_2099-01-01.json'
        where anomaly.event_type = 'anomaly.detected'
            and anomaly.node_id like 'test.dataops.freshness_anomaly.%'
            and anomaly.source_name = 'payments'
    """)
    assert anomalies == [("payments", True)]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("Chromium is not installed: run `make system-deps` (system-packages.txt)")


@pytest.mark.slow
def test_report_renders_in_chromium_with_charts_incidents_and_lineage(incident, tmp_path) -> None:
    home, output = incident
    report = home / "reports" / "observability.html"
    assert (home / "reports" / "dbt-docs.html").stat().st_size > 100_000  # dbt docs, static
    text = report.read_text()
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", text)  # offline
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*command, "--dump-dom", report.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'data-rendered="true"' in dom
    points = [int(n) for n in re.findall(r'data-points="(\d+)"', dom)]
    drawn = dom.count('class="chart js-plotly-plot"')
    assert drawn >= 8 and min(points) >= 1  # volume + freshness per monitored table, drawn
    assert "payments_2099-01-02.json" in dom  # the quarantined file
    assert "staging_rules_stg_payments__payments" in dom  # the failed test
    assert "freshness_anomaly" in dom and "over the error_after SLA" in dom  # the anomaly
    assert 'data-incident="INC-' in dom and 'class="lineage-node' in dom
    assert 'data-lineage-of="payments.payments"' in dom
    screenshot = tmp_path / "report.png"
    subprocess.run([*command, f"--screenshot={screenshot}", "--window-size=1400,2400",
                    report.as_uri()], capture_output=True, timeout=120)
    assert screenshot.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("{net_revenue: [median]}", "unknown metric 'median'; expected one of null_rate"),
        ("{revenue_date: [mean]}",
         "metric 'mean' needs a numeric column, but its data_type is 'date'"),
        ("{nope: [null_rate]}", "'nope' is not a staged column"),
        ("{net_revenue: [mean]}\n          event_time: revenue_date",
         "event_time is 'revenue_date': expected a staged timestamp column (declared: none)"),
    ],
)
def test_a_wrong_monitors_block_fails_naming_file_table_and_value(
    tmp_path: Path, columns: str, message: str
) -> None:
    from tests.python.dbt_project_copy import copy_project

    project = copy_project(tmp_path / "project")
    models = project / "models" / "marts" / "finance" / "_finance__models.yml"
    text = models.read_text()
    declared = r"columns: \{net_revenue: \[mean, min\]\}"
    models.write_text(re.sub(declared, f"columns: {columns}", text))
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "seed", "--project-dir", str(project)],
        cwd=project, env=platform_env(home), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode != 0
    assert "models/marts/finance/_finance__models.yml: model 'fct_daily_revenue'" in result.stdout
    assert message in result.stdout
