"""The anomaly monitors on 30 generated normal days and five injected anomalies, day by day.

Proves the method (median/MAD over a trailing window that excludes the day judged): no alarm
on any normal day, and each injected anomaly detected on the day it happens, as an
`anomaly.detected` event in platform.events that joins the failing test's node result.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from dataops.sample_data.generator import generate
from tests.python.observability_replay import Replay, edit_csv, edit_jsonl

START = date(2025, 1, 1)
NORMAL_DAYS = 30


def _file(landing: Path, key: str, day: int) -> Path:
    (path,) = (landing / key).glob(f"*_{(START + timedelta(days=day)).isoformat()}.*")
    return path


def rows_missing(day: int):  # 40% of the day's order lines never arrive
    return lambda landing: edit_csv(
        _file(landing, "shop/order_items", day),
        "select * from file where hash(order_item_id) % 10 >= 4",
    )


def nulls(day: int):  # a column suddenly 30% null
    return lambda landing: edit_jsonl(
        _file(landing, "payments/payments", day),
        "select * replace (case when hash(payment_id) % 10 < 3 then null else payment_method end "
        "as payment_method) from file",
    )


def amounts_x100(day: int):
    return lambda landing: edit_jsonl(
        _file(landing, "payments/payments", day),
        "select * replace (amount * 100 as amount) from file",
    )


def dropped_column(day: int):
    return lambda landing: edit_csv(
        _file(landing, "shop/orders", day), "select * exclude (status) from file"
    )


INJECTED = {  # day -> (what, injection or late table, the anomaly that must be found)
    30: ("40% of rows missing", rows_missing(30), None,
         ("volume_anomaly", "shop.order_items", None, "rows_added")),
    31: ("a column 30% null", nulls(31), None,
         ("null_rate_anomaly", "payments.payments", "payment_method", "null_rate")),
    32: ("amounts x100", amounts_x100(32), None,
         ("distribution_anomaly", "payments.payments", "amount_cents", "mean")),
    # Ingestion quarantines a file without a declared column (missing_column), so no orders
    # arrive that day: the freshness monitor catches it (schema_change would, were the rows loaded).
    33: ("a dropped column", dropped_column(33), None,
         ("freshness_anomaly", "shop.orders", None, "freshness_lag_hours")),
    34: ("a source 2 days late", None, "web/sessions",
         ("freshness_anomaly", "web.sessions", None, "freshness_lag_hours")),
}


@pytest.mark.slow
def test_no_false_alarm_on_normal_days_and_every_injected_anomaly_caught_on_its_day(
    tmp_path: Path,
) -> None:
    generated = tmp_path / "generated"
    generate(generated, order_items=20_000, days=NORMAL_DAYS + len(INJECTED), start=START)
    replay = Replay(generated=generated, home=tmp_path / "home", start=START)

    false_alarms = {}
    for day in range(NORMAL_DAYS):
        result = replay.day(day)
        assert result.success, result.log[-3000:]
        if found := replay.anomalies(day):
            false_alarms[day] = found
    assert false_alarms == {}, f"alarms on normal days: {false_alarms}"
    with duckdb.connect(str(replay.warehouse), read_only=True) as con:
        measured_days, alarms = con.execute(
            "select (select count(distinct measured_at) from platform.metric_history), "
            "(select count(*) from platform.events where event_type = 'anomaly.detected')"
        ).fetchone()
    assert (measured_days, alarms) == (NORMAL_DAYS + 1, 0)  # day 0: staging run, then test run

    missed = {}
    for day, (what, injection, late, expected) in INJECTED.items():
        result = replay.day(day, injection, late={late} if late else set())
        found = replay.anomalies(day)
        if expected not in found:
            missed[what] = {"expected": expected, "found": found, "dbt": result.log[-2000:]}
        if day == 33:
            assert replay.quarantined == ["orders_2025-02-03.csv"]
    assert missed == {}, f"injected anomalies not detected on their day: {missed}"

    # Each anomaly event joins the failing monitor's node result of the same dbt invocation.
    with duckdb.connect(str(replay.warehouse), read_only=True) as con:
        unjoined = con.execute(
            """
            select anomaly.event_id
            from platform.events as anomaly
            left join platform.events as result
                on result.event_type = 'dbt.node_result'
                and result.node_id = anomaly.node_id
                and result.dbt_invocation_id = anomaly.dbt_invocation_id
                and result.status in ('warn', 'fail')
            where anomaly.event_type = 'anomaly.detected' and result.event_id is null
            """
        ).fetchall()
        batches = con.execute(
            "select count(*) from platform.events where event_type = 'anomaly.detected' "
            "and batch_id is null and details::json ->> 'monitor' <> 'freshness_anomaly'"
        ).fetchone()[0]
    assert unjoined == []
    # (freshness anomalies judge data that did not arrive: they have no batch)
    assert batches == 0, "anomaly events on delivered data carry the batch id of the rows judged"
