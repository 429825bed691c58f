"""Incidents: one per problem, repeats attach, one alert when opened and one when resolved.

The fast tests feed `sync_incidents` the event log rows dbt's hooks write (a real DuckDB file) and
drive `dataops incidents` in-process; the slow one runs real `dataops build`s on a copy of the
built platform, with an injected failing test and a model-freshness breach, and a real HTTP
webhook receiver.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import pytest

from dataops.cli import main
from dataops.core import events
from dataops.core.settings import REPO_ROOT
from dataops.observability import incidents
from tests.python.conftest import dataops, platform_env

ANOMALY_TEST = "test.dataops.source_volume_anomaly_platform_metric_history_.abc"
VALUES_TEST = "test.dataops.accepted_values_stg_shop__orders_status.def"


def _invocation(
    con: duckdb.DuckDBPyConnection, invocation: str, volume: str, values: str
) -> None:
    """The events one dbt build leaves: two test results and, when the monitor warned, its
    anomaly row."""
    for node_id, status, name, table, source in (
        (ANOMALY_TEST, volume, "volume_anomaly", "metric_history", "platform"),
        (VALUES_TEST, values, "accepted_values", "stg_shop__orders", None),
    ):
        events.record_event(
            con, "dbt.node_result", status=status, dbt_invocation_id=invocation, node_id=node_id,
            table_name=table, source_name=source,
            message="Got 3 results, configured to fail if != 0" if status != "pass" else None,
            details={"resource_type": "test", "name": name, "test_name": name},
        )
    if volume == "warn":
        events.record_event(
            con, "anomaly.detected", status="warn", dbt_invocation_id=invocation,
            node_id=ANOMALY_TEST, source_name="shop", table_name="order_items", batch_id="b7",
            message="shop.order_items: rows_added is 1166.0, expected 1879.5 +/- 120.2",
            details={
                "monitor": "volume_anomaly",
                "monitored_node_id": "source.dataops.shop.order_items",
                "metric_name": "rows_added",
                "column_name": None,
            },
        )


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(tmp_path / "warehouse_dev.duckdb")) as con:
        events.ensure_events(con)
        yield con


def test_one_incident_per_problem_repeats_attach_one_alert_each_way(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    sent: list[dict] = []
    send = lambda payload: sent.append(payload) or "sent (200)"  # noqa: E731
    _invocation(warehouse, "inv1", volume="warn", values="fail")
    opened = incidents.sync_incidents(warehouse, "inv1", send=send, report_url="file:///r.html")
    assert [a["event_type"] for a in opened] == ["incident.opened", "incident.opened"]
    by_kind = {a["kind"]: a for a in sent}
    assert set(by_kind) == {"anomaly", "test_failure"}
    anomaly = by_kind["anomaly"]
    assert anomaly["asset"] == "shop.order_items" and anomaly["monitor"] == "volume_anomaly"
    assert "rows_added is 1166.0" in anomaly["cause"] and anomaly["batch_id"] == "b7"
    assert anomaly["report_url"] == "file:///r.html"
    assert by_kind["test_failure"]["asset"] == "stg_shop__orders"
    assert "Got 3 results" in by_kind["test_failure"]["cause"]

    # The same problems on the next two builds: attached, no new incident, no new alert.
    for invocation in ("inv2", "inv3"):
        _invocation(warehouse, invocation, volume="warn", values="fail")
        assert incidents.sync_incidents(warehouse, invocation, send=send) == []
    rows = incidents.list_incidents(warehouse)
    assert [(r["status"], r["occurrences"]) for r in rows] == [("open", 3), ("open", 3)]
    assert len(sent) == 2

    # The volume monitor is quiet again, the test still fails: only the anomaly resolves.
    _invocation(warehouse, "inv4", volume="pass", values="fail")
    resolved = incidents.sync_incidents(warehouse, "inv4", send=send)
    assert [(a["event_type"], a["kind"]) for a in resolved] == [("incident.resolved", "anomaly")]
    # A build that did not run the failing test (another selection) resolves nothing.
    events.record_event(warehouse, "dbt.node_result", status="pass", dbt_invocation_id="inv5",
                        node_id="test.dataops.other", details={"resource_type": "test"})
    assert incidents.sync_incidents(warehouse, "inv5", send=send) == []
    _invocation(warehouse, "inv6", volume="pass", values="pass")
    resolved = incidents.sync_incidents(warehouse, "inv6", send=send)
    assert [(a["event_type"], a["kind"]) for a in resolved] == [
        ("incident.resolved", "test_failure")
    ]
    assert len(sent) == 4
    assert {r["status"] for r in incidents.list_incidents(warehouse)} == {"resolved"}
    recorded = warehouse.execute(
        "select event_type, count(*) from platform.events where event_type like 'incident.%' "
        "group by 1 order by 1"
    ).fetchall()
    assert recorded == [("incident.opened", 2), ("incident.resolved", 2)]

    # A new failure after resolution is a new incident (and a new alert).
    _invocation(warehouse, "inv7", volume="pass", values="fail")
    assert [a["event_type"] for a in incidents.sync_incidents(warehouse, "inv7", send=send)] == [
        "incident.opened"
    ]
    assert len(incidents.list_incidents(warehouse)) == 3


def test_dataops_incidents_lists_open_first_acks_and_resolves_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path))
    monkeypatch.delenv("DATAOPS_WAREHOUSE_DEV", raising=False)
    monkeypatch.delenv(incidents.ALERT_WEBHOOK_ENV, raising=False)
    with duckdb.connect(str(tmp_path / "warehouse_dev.duckdb")) as con:
        events.ensure_events(con)
        _invocation(con, "inv1", volume="warn", values="pass")
        incidents.sync_incidents(con, "inv1", send=lambda p: None)
        _invocation(con, "inv2", volume="pass", values="fail")
        incidents.sync_incidents(con, "inv2", send=lambda p: None)
        ids = {r["kind"]: r["incident_id"] for r in incidents.list_incidents(con)}
    assert main(["incidents"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("incident")
    assert listed[1].startswith(ids["test_failure"]) and " open " in listed[1]
    assert listed[2].startswith(ids["anomaly"]) and " resolved " in listed[2]

    assert main(["incidents", "ack", ids["test_failure"], "--note", "looking at the feed"]) == 0
    assert main(["incidents", "resolve", ids["test_failure"], "--note", "status fixed"]) == 0
    capsys.readouterr()
    assert main(["incidents", "--open"]) == 0
    assert capsys.readouterr().out.strip() == "No incidents."
    assert main(["incidents", "resolve", ids["test_failure"]]) == 1
    assert "already resolved" in capsys.readouterr().out
    assert main(["incidents", "ack", "INC-nope"]) == 1
    assert "no incident 'INC-nope'" in capsys.readouterr().out
    with duckdb.connect(str(tmp_path / "warehouse_dev.duckdb"), read_only=True) as con:
        listed = incidents.list_incidents(con)
        (row,) = [r for r in listed if r["incident_id"] == ids["test_failure"]]
        kinds = [k for (k,) in con.execute(
            "select event_type from platform.events where event_type like 'incident.%' "
            "order by occurred_at").fetchall()]
    assert row["note"] == "status fixed" and row["acknowledged_at"] is not None
    assert kinds.count("incident.acknowledged") == 1


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_builds_open_attach_and_resolve_incidents_with_one_webhook_alert_each(
    platform_copy: Path, webhook: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = webhook
    monkeypatch.setenv(incidents.ALERT_WEBHOOK_ENV, url)
    monkeypatch.setenv(incidents.DAGSTER_URL_ENV, "http://127.0.0.1:3000")
    warehouse = platform_copy / "warehouse_dev.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update raw_shop.orders set status = 'lost' where order_id = "
                    "(select min(order_id) from raw_shop.orders)")

    def build(hours: float) -> str:  # `dataops build` with the clock `hours` after the build
        env = platform_env(platform_copy)
        result = subprocess.run(
            [sys.executable, "-m", "dataops", "build"], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=900,
        )
        return result.stdout + result.stderr

    first = build(1)
    assert "Incident INC-" in first and "accepted_values" in first
    (opened,) = [p for p in received if p["event_type"] == "incident.opened"]
    assert (opened["kind"], opened["asset"]) == ("test_failure", "stg_shop__orders")
    # One `staging_rules` test per staging model; its failing rows name the rule that failed.
    assert "staging_rules" in opened["monitor"] and "fail" in opened["cause"]
    sample = json.dumps(opened["failing_rows_sample"])
    assert opened["failing_rows_sample"] and "lost" in sample and "accepted_values" in sample
    assert opened["report_url"].startswith("file://") and opened["text"]

    build(2)  # the same problem: attached, no alert
    assert len(received) == 1
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update raw_shop.orders set status = 'placed' where status = 'lost'")
    build(3)  # the test passes: resolved, one more alert
    (resolved,) = [p for p in received if p["event_type"] == "incident.resolved"]
    assert resolved["incident_id"] == opened["incident_id"] and resolved["occurrences"] == 2
    assert len(received) == 2
    listed = dataops(platform_copy, "incidents").stdout
    assert opened["incident_id"] in listed and " resolved " in listed


def test_the_build_summary_names_each_anomaly_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not `WARN 2 source_volume_anomaly_platform_metric_history_` and "2 warned": the summary
    line counts the anomalies and each follows with its monitor and message."""
    from collections import Counter

    from dataops.cli import _print_build
    from dataops.core.settings import load_settings
    from dataops.dbt.runner import DbtOutcome

    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path))
    monkeypatch.delenv("DATAOPS_WAREHOUSE_DEV", raising=False)
    monkeypatch.delenv(incidents.ALERT_WEBHOOK_ENV, raising=False)
    with duckdb.connect(str(tmp_path / "warehouse_dev.duckdb")) as con:
        events.ensure_events(con)
        _invocation(con, "inv1", volume="warn", values="pass")
        events.record_event(
            con, "anomaly.detected", status="warn", dbt_invocation_id="inv1",
            node_id=ANOMALY_TEST, source_name="payments", table_name="payments",
            message="payments.payments.amount_cents: mean is 1980.0, expected 1650.2 +/- 66.0",
            details={"monitor": "distribution_anomaly", "metric_name": "mean",
                     "column_name": "amount_cents"},
        )
    outcome = DbtOutcome(success=True, invocation_id="inv1",
                         counts=Counter({("model", "success"): 3, ("test", "warn"): 2}))
    _print_build(outcome, load_settings())
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert lines[:3] == [
        "dbt build: 3 models and 0 seeds built, 0 tests passed, 2 warned, 0 failed; 2 anomalies:",
        "ANOMALY WARN distribution_anomaly: payments.payments.amount_cents: mean is 1980.0, "
        "expected 1650.2 +/- 66.0",
        "ANOMALY WARN volume_anomaly: shop.order_items: rows_added is 1166.0, expected 1879.5 "
        "+/- 120.2",
    ]
