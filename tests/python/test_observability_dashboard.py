"""The health dashboard (`dataops report`) over a constructed history: 40 daily loads of
shop.orders (a weekday pattern, then a 40% volume drop on the last day), a test failing on the last
four runs and one that failed once and passed again, the incidents those opened, the load ledger.

The current state is deduplicated (one failing test is one failure, one incident), the chart
draws the band the monitor recorded for each measurement, the incident's lineage reaches the file
that caused it, and the page renders in headless Chromium: health tiles, plotly charts with time
axes, the band and the markers, and a test list whose search filters it, with nothing fetched from
the network.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from dataops.core import events
from dataops.ingestion.ledger import ensure_ledger
from dataops.observability import report
from dataops.observability.incidents import ensure_incidents

START = datetime(2025, 1, 1, 6, 0)
DAYS = 40
AS_OF = START + timedelta(days=DAYS - 1, hours=1)
SOURCE = "source.dataops.shop.orders"
STAGING = "model.dataops.stg_shop__orders"
MART = "model.dataops.fct_orders"
VALUES_TEST = "test.dataops.accepted_values_stg_shop__orders_status.abc"
KEY_TEST = "test.dataops.primary_key_fct_orders_order_id.def"
FLAKY_TEST = "test.dataops.not_null_fct_orders_customer_id.ghi"
VOLUME_TEST = "test.dataops.source_volume_anomaly_platform_metric_history_.jkl"
METRIC_HISTORY_DDL = """
create table platform.metric_history (
    measured_at timestamp not null, dbt_invocation_id varchar not null, node_id varchar not null,
    table_kind varchar not null, source_name varchar, table_name varchar not null,
    column_name varchar, metric_name varchar not null, metric_value double, batch_id varchar,
    file_hash varchar, expected_value double, lower_bound double, upper_bound double,
    judged_by varchar
)"""
JUDGED_FROM = 7  # the monitor judges once 7 earlier measurements exist (its min_history)


def _manifest() -> dict:
    def test(name: str, attached: str, kind: str | None) -> dict:
        return {"resource_type": "test", "name": name, "attached_node": attached,
                "column_name": None, "depends_on": {"nodes": [attached]},
                "test_metadata": {"name": kind, "kwargs": {}} if kind else None}

    return {
        "sources": {
            SOURCE: {"resource_type": "source", "source_name": "shop", "name": "orders",
                     "freshness": {"warn_after": {"count": 26, "period": "hour"},
                                   "error_after": {"count": 50, "period": "hour"}},
                     "meta": {"owner": "shop-team"}},
            "source.dataops.platform.metric_history": {
                "resource_type": "source", "source_name": "platform", "name": "metric_history"},
        },
        "nodes": {
            STAGING: {"resource_type": "model", "name": "stg_shop__orders", "config": {}},
            MART: {"resource_type": "model", "name": "fct_orders",
                   "config": {"meta": {"owner": "finance"}}},
            VALUES_TEST: test("accepted_values_stg_shop__orders_status", STAGING,
                              "accepted_values"),
            KEY_TEST: test("primary_key_fct_orders_order_id", MART, "primary_key"),
            FLAKY_TEST: test("not_null_fct_orders_customer_id", MART, "not_null"),
            VOLUME_TEST: test("source_volume_anomaly_platform_metric_history_",
                              "source.dataops.platform.metric_history", "volume_anomaly"),
        },
        "unit_tests": {"unit_test.dataops.fct_orders.test_totals": {
            "name": "test_totals", "model": "fct_orders"}},
        "parent_map": {STAGING: [SOURCE], MART: [STAGING], SOURCE: []},
        "child_map": {SOURCE: [STAGING], STAGING: [MART]},
    }


def _volume(day: int) -> float:
    weekend = (START + timedelta(days=day)).weekday() >= 5
    return (1300 if weekend else 1000) + random.Random(day).randint(-20, 20)


def _band(day: int) -> tuple[float | None, float | None, float | None]:
    """The band the volume monitor recorded for a day's measurement (none before it judged)."""
    if day < JUDGED_FROM:
        return None, None, None
    expected = 1300.0 if (START + timedelta(days=day)).weekday() >= 5 else 1000.0
    return expected, expected - 80 - day, expected + 80 + day


def _build_history(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        events.ensure_events(con)
        ensure_incidents(con)
        ensure_ledger(con)
        con.execute(METRIC_HISTORY_DDL)
        for day in range(DAYS):
            at = START + timedelta(days=day)
            invocation, batch = f"inv{day:02d}", f"batch{day:02d}"
            rows = _volume(day) * (0.6 if day == DAYS - 1 else 1)
            con.execute(
                "insert into platform.load_ledger (file_hash, source_name, table_name, file_name, "
                "file_path, file_size, status, rows_loaded, batch_id, started_at, finished_at) "
                "values (?, 'shop', 'orders', ?, ?, 1000, 'loaded', ?, ?, ?, ?)",
                [f"hash{day:02d}", f"orders_{at:%Y-%m-%d}.csv", f"shop/orders/{day}.csv",
                 int(rows), batch, at - timedelta(minutes=5), at - timedelta(minutes=4)])
            expected, low, high = _band(day)
            for metric, value, band in (("rows_added", rows, (expected, low, high)),
                                        ("freshness_lag_hours", 0.1, (None, None, None))):
                con.execute(
                    "insert into platform.metric_history values "
                    "(?, ?, ?, 'source', 'shop', 'orders', null, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [at, invocation, SOURCE, metric, value, batch, f"hash{day:02d}", *band,
                     VOLUME_TEST if band[0] is not None else None])
            con.execute(
                "insert into platform.metric_history values (?, ?, ?, 'source', 'shop', 'orders', "
                "'status', 'null_rate', ?, ?, null, null, null, null, null)",
                [at, invocation, SOURCE, 0.01 * (day % 3), batch])
            for node, resource, status, subject in (
                (STAGING, "model", "success", "stg_shop__orders"),
                (MART, "model", "success", "fct_orders"),
                (VALUES_TEST, "test", "fail" if day >= DAYS - 4 else "pass",
                 "stg_shop__orders"),
                (KEY_TEST, "test", "pass", "fct_orders"),
                (FLAKY_TEST, "test", "fail" if day == 20 else "pass", "fct_orders"),
                (VOLUME_TEST, "test", "warn" if day == DAYS - 1 else "pass", "metric_history"),
            ):
                events.record_event(
                    con, "dbt.node_result", occurred_at=at, status=status, node_id=node,
                    table_name=subject, dbt_invocation_id=invocation,
                    source_name="platform" if subject == "metric_history" else None,
                    message="Got 3 results, configured to fail if != 0" if status == "fail"
                    else None, details={"resource_type": resource})
            events.record_event(con, "dbt.invocation_ended", occurred_at=at, status="success",
                                dbt_invocation_id=invocation, message="dbt build: 6 nodes")
        drop_at = START + timedelta(days=DAYS - 1)
        events.record_event(
            con, "anomaly.detected", occurred_at=drop_at, status="warn", source_name="shop",
            table_name="orders", batch_id=f"batch{DAYS - 1}", file_hash=f"hash{DAYS - 1}",
            node_id=VOLUME_TEST, dbt_invocation_id=f"inv{DAYS - 1}",
            message="shop.orders: rows_added is 600.0, expected 1000.0 +/- 200.0",
            details={"monitor": "volume_anomaly", "monitored_node_id": SOURCE,
                     "metric_name": "rows_added", "metric_value": _volume(DAYS - 1) * 0.6,
                     "expected": 1000.0, "tolerance": 200.0,
                     "measured_at": drop_at.isoformat(sep=" ")})
        for incident in (
            ("INC-volume", "anomaly", "open", "shop.orders", "volume_anomaly", VOLUME_TEST,
             "shop.orders: rows_added is 600.0, expected 1000.0 +/- 200.0", DAYS - 1, None, 1,
             f"batch{DAYS - 1}", f"hash{DAYS - 1}"),
            ("INC-values", "test_failure", "open", "stg_shop__orders",
             "accepted_values_stg_shop__orders_status", VALUES_TEST,
             "accepted_values_stg_shop__orders_status fail: Got 3 results", DAYS - 4, None, 4,
             None, None),
            ("INC-flaky", "test_failure", "resolved", "fct_orders",
             "not_null_fct_orders_customer_id", FLAKY_TEST,
             "not_null_fct_orders_customer_id fail: Got 1 result", 20, 21, 1, None, None),
        ):
            (incident_id, kind, status, asset, monitor, test, cause, first, resolved, seen,
             batch, file_hash) = incident
            con.execute(
                "insert into platform.incidents (incident_id, incident_key, kind, status, asset, "
                "monitor, test_node_id, cause, opened_at, last_seen_at, resolved_at, occurrences, "
                "first_invocation_id, last_invocation_id, batch_id, file_hash) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [incident_id, incident_id, kind, status, asset, monitor, test, cause,
                 START + timedelta(days=first, minutes=2), AS_OF,
                 START + timedelta(days=resolved, minutes=2) if resolved else None, seen,
                 f"inv{first:02d}", f"inv{DAYS - 1}", batch, file_hash])


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("dashboard")
    warehouse, manifest = folder / "warehouse.duckdb", folder / "manifest.json"
    _build_history(warehouse)
    manifest.write_text(json.dumps(_manifest()))
    return warehouse, manifest


def test_the_current_state_is_what_is_true_now_deduplicated(history) -> None:
    warehouse, manifest = history
    data = report.collect(warehouse, manifest, as_of=AS_OF)
    assets = {asset.key: asset for asset in data.assets}
    staging, mart, orders = assets["stg_shop__orders"], assets["fct_orders"], assets["shop.orders"]
    # the accepted_values test failed on 4 runs: one failing test, one open incident
    assert staging.status == "fail"
    assert staging.tests.text == "0/1 passing, 1 failing"
    # the not_null test failed once, 19 runs ago, and passed since: healthy now
    assert mart.status == "ok" and mart.tests.text == "2/2 passing"  # the unit test never ran
    assert mart.owner == "finance" and orders.owner == "shop-team"
    assert orders.status == "fail" and orders.volume.status == "fail"
    assert "rows_added is 600.0" in orders.volume.text
    assert orders.freshness.status == "ok" and orders.freshness.text.startswith("loaded 1.1 h ago")
    assert orders.schema.status == "ok" and orders.monitored
    assert [a.key for a in data.assets][:2] == ["shop.orders", "stg_shop__orders"]  # worst first
    # every declared test, data and unit, with its last results (at most 10, newest first)
    tests = {t["node_id"]: t for t in data.tests}
    assert set(tests) == {VALUES_TEST, KEY_TEST, FLAKY_TEST, VOLUME_TEST,
                          "unit_test.dataops.fct_orders.test_totals"}
    assert tests["unit_test.dataops.fct_orders.test_totals"]["status"] == "not run"
    assert [s for _, s in tests[VALUES_TEST]["history"]] == ["fail"] * 4 + ["pass"] * 6
    assert [i["incident_id"] for i in data.incidents] == ["INC-volume", "INC-values", "INC-flaky"]


def test_an_incident_lineage_reaches_the_file_that_caused_it(history) -> None:
    warehouse, manifest = history
    data = report.collect(warehouse, manifest, as_of=AS_OF)
    volume = data.lineages["INC-volume"]
    names = [[node["name"] for node in column] for column in volume["columns"]]
    assert names == [[f"orders_{START + timedelta(days=DAYS - 1):%Y-%m-%d}.csv"], ["shop.orders"]]
    assert volume["columns"][0][0]["culprit"] and volume["columns"][0][0]["batch_id"] == "batch39"
    # a failing test on a model: back through staging to the last batch loaded before it opened
    values = data.lineages["INC-values"]
    names = [[node["name"] for node in column] for column in values["columns"]]
    assert names == [[f"orders_{START + timedelta(days=DAYS - 4):%Y-%m-%d}.csv"], ["shop.orders"],
                     ["stg_shop__orders"]]
    assert not values["columns"][0][0]["culprit"]


def test_the_chart_draws_the_band_the_monitor_recorded(history) -> None:
    warehouse, manifest = history
    data = report.collect(warehouse, manifest, as_of=AS_OF)
    (figure,) = [f["figure"] for f in data.figures if f["title"] == "shop.orders: rows delivered "
                 "per load"]
    traces = {trace["name"]: trace for trace in figure["data"]}
    judged = [START + timedelta(days=day) for day in range(JUDGED_FROM, DAYS)]
    drawn = {name: dict(zip(traces[name]["x"], traces[name]["y"], strict=True))
             for name in ("band upper", "expected band", "expected")}
    # one band point per judged measurement, exactly as recorded; none before the monitor judged
    assert sorted(drawn["expected"]) == [f"{at:%Y-%m-%d %H:%M:%S}" for at in judged]
    for day, at in enumerate(judged, start=JUDGED_FROM):
        key = f"{at:%Y-%m-%d %H:%M:%S}"
        assert (drawn["expected"][key], drawn["expected band"][key],
                drawn["band upper"][key]) == _band(day)
    # the anomaly's marker lies outside the band drawn at its measurement
    (marker,) = [(x, y) for x, y in zip(traces["anomaly"]["x"], traces["anomaly"]["y"],
                                        strict=True)]
    assert marker[0] == f"{judged[-1]:%Y-%m-%d %H:%M:%S}"
    assert not drawn["expected band"][marker[0]] <= marker[1] <= drawn["band upper"][marker[0]]
    # a metric no monitor judged has no band
    (lag,) = [f["figure"] for f in data.figures if "newest load" in f["title"]]
    assert "expected band" not in {trace.get("name") for trace in lag["data"]}


@pytest.mark.slow
def test_the_dashboard_renders_in_chromium_tiles_charts_and_test_search(history, tmp_path) -> None:
    from tests.python.browser import chromium_page
    from tests.python.dagster_harness import wait_for

    warehouse, manifest = history
    output = tmp_path / "observability.html"
    output.write_text(report.render(report.collect(warehouse, manifest, as_of=AS_OF)))
    with chromium_page(tmp_path) as page:
        page.open(output.as_uri(), "document.body.dataset.rendered === 'true'",
                  "the dashboard's script to run")
        assert {url for url in page.requests} == {output.as_uri()}  # nothing from the network
        tiles = page.evaluate("""Object.fromEntries([...document.querySelectorAll('[data-tile]')]
            .map(t => [t.dataset.tile, t.querySelector('.value').textContent]))""")
        assert tiles["open-incidents"] == "2"
        assert tiles["assets-failing"] == "2"  # shop.orders (volume), stg_shop__orders (test)
        assert tiles["tests-passing"] == "2/4"  # the volume monitor warned
        assert tiles["monitored"] == "1/4"
        charts_drawn = page.evaluate("""[...document.querySelectorAll('.chart.js-plotly-plot')]
            .map(c => ({id: c.id, names: c.data.map(t => t.name), xtype: c._fullLayout.xaxis.type,
                        ticks: [...c.querySelectorAll('.xtick text')].map(t => t.textContent),
                        grid: c.querySelectorAll('.xgrid, .ygrid').length}))""")
        assert len(charts_drawn) == 2  # volume and freshness of shop.orders; column charts wait
        volume = next(c for c in charts_drawn if "expected band" in c["names"])
        assert {"expected band", "rows_added", "anomaly", "incident opened"} <= set(volume["names"])
        assert all(c["xtype"] == "date" and c["grid"] > 0 for c in charts_drawn)
        assert any(":" in tick for c in charts_drawn for tick in c["ticks"])  # times, not dates
        # the column metrics chart is drawn when its section opens
        page.evaluate("document.querySelector('details.column-charts').open = true")
        wait_for("the column chart", lambda: page.evaluate(
            "document.querySelectorAll('.chart.js-plotly-plot').length === 3"), timeout=60)

        def search(text: str, status: str = "") -> tuple[list[str], str]:
            shown, count = page.evaluate(f"""(() => {{
                const box = document.getElementById('test-search');
                box.value = {json.dumps(text)};
                box.dispatchEvent(new Event('input'));
                const select = document.getElementById('test-status');
                select.value = {json.dumps(status)};
                select.dispatchEvent(new Event('change'));
                return [[...document.querySelectorAll('#test-table .test-row')]
                          .filter(r => !r.hidden).map(r => r.cells[0].textContent),
                        document.getElementById('test-count').textContent];
            }})()""")
            return shown, count

        assert search("") == ([
            "accepted_values_stg_shop__orders_status", "not_null_fct_orders_customer_id",
            "primary_key_fct_orders_order_id", "source_volume_anomaly_platform_metric_history_",
            "test_totals"], "5 of 5 tests")
        assert search("fct_orders")[0] == ["not_null_fct_orders_customer_id",
                                           "primary_key_fct_orders_order_id", "test_totals"]
        assert search("FCT_orders not_null")[1] == "1 of 5 tests"
        assert search("", "fail")[0] == ["accepted_values_stg_shop__orders_status"]
        assert search("nothing matches this")[1] == "0 of 5 tests"
        # an asset's history is one click away; an incident shows its lineage
        page.evaluate("document.querySelector('details[data-asset=\"stg_shop__orders\"] summary')"
                      ".click()")
        history_text = page.evaluate(
            "document.querySelector('details[data-asset=\"stg_shop__orders\"]').innerText")
        assert "INC-values" in history_text and "Got 3 results" in history_text
        lineage_nodes = page.evaluate(
            "[...document.querySelectorAll('[data-incident=\"INC-volume\"] .lineage-node')]"
            ".map(n => [n.className, n.querySelector('b').textContent])")
        assert lineage_nodes[0] == ["lineage-node file culprit", "orders_2025-02-09.csv"]
        screenshot = page.screenshot(tmp_path / "dashboard.png")
    assert screenshot.stat().st_size > 20_000
    print(f"dashboard screenshot: {screenshot}")
