"""The anomaly monitors on 35 generated normal days, then one injected change a day.

Proves the method (a robust expected value and a tolerance from the history's own spread, with
weekday seasonality and trend, over a trailing window that excludes the day judged): no alarm on
any normal day, and each injected change caught on the day it happens by the named monitor, as an
`anomaly.detected` event in platform.events that joins the failing test's node result. The test
prints the replay table (injected change -> caught or not, on which run, by which monitor, the
series' spread) that the issue asks for; `pytest -s` shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from dataops.sample_data.generator import generate
from tests.python.observability_replay import Injection, Replay, edit_csv, edit_jsonl, edit_parquet

START = date(2025, 1, 1)
NORMAL_DAYS = 35
KEYS = {"shop/orders": "order_id", "shop/order_items": "order_item_id",
        "payments/payments": "payment_id", "web/sessions": "session_id"}
EDITORS = {"shop": edit_csv, "payments": edit_jsonl, "web": edit_parquet}


def _file(landing: Path, key: str, day: int) -> Path:
    (path,) = (landing / key).glob(f"*_{(START + timedelta(days=day)).isoformat()}.*")
    return path


def _edit(key: str, select: Callable[[str], str]) -> Callable[[int], Injection]:
    """An injection for `day`: rewrite that day's file of `key` through `select(key column)`."""
    def for_day(day: int) -> Injection:
        return lambda landing: EDITORS[key.split("/")[0]](
            _file(landing, key, day), select(KEYS[key]))
    return for_day


def volume(key: str, percent: int) -> Callable[[int], Injection]:
    return _edit(key, lambda pk: f"select * from file where hash({pk}) % 100 >= {percent}")


def duplicated(key: str, percent: int) -> Callable[[int], Injection]:
    return _edit(key, lambda pk: f"select * from file union all "
                                 f"select * from file where hash({pk}) % 100 < {percent}")


def scaled(key: str, column: str, factor: float, cast: str) -> Callable[[int], Injection]:
    return _edit(key, lambda pk: f"select * replace (cast(round(cast({column} as double) * "
                                 f"{factor}, 2) as {cast}) as {column}) from file")


def nulls(key: str, column: str, percent: int) -> Callable[[int], Injection]:
    return _edit(key, lambda pk: f"select * replace (case when hash({pk}) % 100 < {percent} "
                                 f"then null else {column} end as {column}) from file")


def dropped(key: str, column: str) -> Callable[[int], Injection]:
    return _edit(key, lambda pk: f"select * exclude ({column}) from file")


def added(key: str, column: str) -> Callable[[int], Injection]:
    return _edit(key, lambda pk: f"select *, 'SPRING' as {column} from file")


def shifted(key: str, column: str, percent: int) -> Callable[[int], Injection]:
    """+1 on `percent` % of the rows of an integer column."""
    value = f"cast({column} as integer)"
    return _edit(key, lambda pk: f"select * replace (case when hash({pk}) % 100 < {percent} "
                                 f"then {value} + 1 else {value} end as {column}) from file")


def missing(key: str) -> Callable[[int], Injection]:
    return lambda day: lambda landing: _file(landing, key, day).unlink()


@dataclass(frozen=True)
class Case:
    change: str
    table: str  # the monitored source table, "source.table"
    injection: Callable[[int], Injection] | None
    monitors: tuple[str, ...]  # a catch = an anomaly on `table` by one of these
    late: str | None = None  # "source/table" held back two days
    # The goal: caught where the series' spread allows it. A change within about 4 spreads of the
    # series (the sensitivity) may pass: the table shows it, the test does not require it.
    required: bool = True
    series: tuple[str | None, str] = (None, "rows_added")  # (column, metric) for the spread


CASES = (
    # Volume: rows delivered per day (weekday-seasonal, spread 1-4 % of the level in this sample).
    Case("volume -10%", "shop.orders", volume("shop/orders", 10), ("volume_anomaly",),
         required=False),
    Case("volume -15%", "shop.order_items", volume("shop/order_items", 15), ("volume_anomaly",)),
    Case("volume -25%", "payments.payments", volume("payments/payments", 25), ("volume_anomaly",)),
    Case("volume -40%", "web.sessions", volume("web/sessions", 40), ("volume_anomaly",)),
    # Means: quantity's daily mean has a spread under 3 %, unit price's ~7 %, amount's ~10 %.
    Case("mean +10% (quantity)", "shop.order_items", shifted("shop/order_items", "quantity", 15),
         ("distribution_anomaly",), required=False, series=("quantity", "mean")),
    Case("mean +20% (quantity)", "shop.order_items", shifted("shop/order_items", "quantity", 30),
         ("distribution_anomaly",), series=("quantity", "mean")),
    Case("mean +20% (amount)", "payments.payments",
         scaled("payments/payments", "amount", 1.2, "bigint"), ("distribution_anomaly",),
         required=False, series=("amount_cents", "mean")),
    Case("mean x100 (amount)", "payments.payments",
         scaled("payments/payments", "amount", 100, "bigint"), ("distribution_anomaly",),
         series=("amount_cents", "mean")),
    Case("null burst 30% (payment_method)", "payments.payments",
         nulls("payments/payments", "payment_method", 30), ("null_rate_anomaly",)),
    Case("null burst 5% (status)", "shop.orders", nulls("shop/orders", "status", 5),
         ("null_rate_anomaly",)),
    Case("late delivery (2 days)", "web.sessions", None, ("freshness_anomaly",),
         late="web/sessions"),
    Case("missing delivery", "payments.payments", missing("payments/payments"),
         ("freshness_anomaly",)),
    # Ingestion quarantines a file with duplicate keys (duplicate_keys: quarantine, the default):
    # no rows arrive, so freshness catches it (volume would, were the rows loaded).
    Case("duplicates +30% rows", "shop.order_items", duplicated("shop/order_items", 30),
         ("freshness_anomaly", "volume_anomaly")),
    # Ingestion quarantines a file without a declared column, so no rows arrive: freshness.
    Case("dropped column (status)", "shop.orders", dropped("shop/orders", "status"),
         ("freshness_anomaly", "schema_change")),
    # Accepted as additive drift (the declared policy): reported on that delivery only.
    Case("added column (coupon)", "shop.orders", added("shop/orders", "coupon"),
         ("schema_drift",)),
)
LATE_RELEASE_AFTER = 2  # days a late table's files are held back


def _spread(warehouse: Path, case: Case, day: int) -> str:
    """The series' relative spread (1.4826 MAD / median) over the 28 days before `day` (volume:
    same weekday only), a rough figure for the table; the monitor's own is in its message."""
    as_of = START + timedelta(days=day)
    column, metric = case.series
    weekday = "extract(isodow from measured_at) = extract(isodow from ?::timestamp)"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(
            f"""
            with days as (
                select metric_value from platform.metric_history
                where coalesce(source_name || '.', '') || table_name = ?
                    and coalesce(column_name, '') = ? and metric_name = ? and metric_value > 0
                    and measured_at < ? and measured_at >= ? - interval 28 days
                    and {weekday if metric == "rows_added" else "? is not null"}
            )
            select 1.4826 * median(abs(metric_value - (select median(metric_value) from days)))
                / median(metric_value)
            from days
            """,
            [case.table, column or "", metric, as_of, as_of, as_of],
        ).fetchone()
    return f"{row[0]:.1%}" if row and row[0] is not None else "-"


@pytest.mark.slow
def test_no_false_alarm_on_normal_days_and_every_injected_change_caught_on_its_day(
    tmp_path: Path,
) -> None:
    days = NORMAL_DAYS + len(CASES) + LATE_RELEASE_AFTER
    generated = tmp_path / "generated"
    generate(generated, order_items=40_000, days=days, start=START)
    replay = Replay(generated=generated, home=tmp_path / "home", start=START)

    false_alarms = {}
    for day in range(NORMAL_DAYS):
        result = replay.day(day)
        assert result.success, result.log[-3000:]
        if found := replay.anomalies(day):
            false_alarms[day] = found

    rows, missed, side_alarms = [], [], {}
    releases: dict[int, str] = {}
    for offset, case in enumerate(CASES):
        day = NORMAL_DAYS + offset
        if releases.get(day):
            replay.release(releases.pop(day))
        result = replay.day(
            day, case.injection(day) if case.injection else None,
            late={case.late} if case.late else set(),
        )
        assert result.success, result.log[-3000:]
        if case.late:
            releases[day + LATE_RELEASE_AFTER] = case.late
        found = replay.anomalies(day, with_message=True)
        caught = [f for f in found if f[1] == case.table and f[0] in case.monitors]
        others = [f for f in found if f not in caught]
        if others:
            side_alarms[case.change] = others
        if not caught and case.required:
            missed.append(case.change)
        rows.append((case.change, case.table, day,
                     "caught" if caught else "MISSED",
                     ", ".join(sorted({f[0] for f in caught})) or "-",
                     _spread(replay.warehouse, case, day),
                     caught[0][4] if caught else ""))

    table = ["", f"Replay: {NORMAL_DAYS} normal days (run 1-{NORMAL_DAYS}), false alarms: "
             f"{sum(len(f) for f in false_alarms.values())}"]
    table.append(f"{'injected change':<32} {'table':<18} {'run':>4} {'result':<7} "
                 f"{'monitor':<22} {'spread':>6}  message")
    for change, name, day, result, monitor, spread, message in rows:
        table.append(f"{change:<32} {name:<18} {day + 1:>4} {result:<7} {monitor:<22} "
                     f"{spread:>6}  {message}")
    for change, others in side_alarms.items():
        table.append(f"  also on the run of '{change}': " + "; ".join(o[4] for o in others))
    print("\n".join(table))

    assert false_alarms == {}, f"alarms on normal days: {false_alarms}"
    assert missed == [], f"injected changes not caught on their day: {missed}\n" + "\n".join(table)
    dropped_day = NORMAL_DAYS + [c.change for c in CASES].index("dropped column (status)")
    assert replay.quarantined_on[dropped_day] == [
        f"orders_{(START + timedelta(days=dropped_day)).isoformat()}.csv"]
    # The added column is judged on the delivery that carries it, not on every later build.
    added_day = NORMAL_DAYS + [c.change for c in CASES].index("added column (coupon)")
    assert all(f[0] != "schema_drift" for d in range(added_day + 1, NORMAL_DAYS + len(CASES))
               for f in replay.anomalies(d))

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
        # The band each metric monitor judged with is on its measurements: the measurements
        # outside their recorded band are exactly the ones it reported.
        judged, outside = con.execute(
            "select count(*), list(distinct (node_id, column_name, metric_name, measured_at) "
            "order by (node_id, column_name, metric_name, measured_at)) "
            "filter (where metric_value < lower_bound or metric_value > upper_bound) "
            "from platform.metric_history where judged_by is not null"
        ).fetchone()
        reported = con.execute(
            "with found as (select (details::json ->> 'monitored_node_id', "
            "details::json ->> 'column_name', details::json ->> 'metric_name', "
            "try_cast(details::json ->> 'measured_at' as timestamp)) as measurement "
            "from platform.events where event_type = 'anomaly.detected' and details::json ->> "
            "'monitor' in ('volume_anomaly', 'null_rate_anomaly', 'distribution_anomaly', "
            "'model_metrics_anomaly')) "
            "select list(distinct measurement order by measurement) from found"
        ).fetchone()[0]
    print(f"bands recorded on {judged} judged measurements, {len(outside or [])} outside them")
    assert judged > 0 and (outside or []) == (reported or [])
    assert unjoined == []
    # (freshness anomalies judge data that did not arrive: they have no batch)
    assert batches == 0, "anomaly events on delivered data carry the batch id of the rows judged"
