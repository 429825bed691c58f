"""The main job end to end: generated files -> ingestion -> dbt build (data and unit tests)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.python.conftest import dataops

pytestmark = pytest.mark.slow


def _query(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def _run_results(home: Path) -> dict[str, dict]:
    results = json.loads((home / "target" / "run_results.json").read_text())
    return {r["unique_id"]: r for r in results["results"]}


def test_the_main_job_ends_with_a_green_build_and_a_summary(built_platform):
    home, output = built_platform
    assert "Ingestion (batch" in output
    assert "0 failed" in output and output.rstrip().splitlines()[-1].startswith("OK in ")
    results = _run_results(home)
    # Declared exposures (dashboards) are nodes of `dbt build` with nothing to run: "no-op".
    assert all(r["status"] == "no-op" for uid, r in results.items() if uid.startswith("exposure."))
    statuses = {r["status"] for uid, r in results.items() if not uid.startswith("exposure.")}
    assert statuses <= {"success", "pass"}, statuses
    kinds = {uid.split(".")[0] for uid in results}
    assert {"model", "seed", "test", "unit_test"} <= kinds
    assert sum(uid.startswith("unit_test.") for uid in results) >= 4


def test_marts_reconcile_with_the_raw_data(built_platform):
    home, _ = built_platform
    [(orders, raw_orders)] = _query(
        home,
        "select (select count(*) from marts.fct_orders), "
        "(select count(distinct order_id) from raw_shop.orders)",
    )
    assert orders == raw_orders > 0
    [(items, raw_items)] = _query(
        home,
        "select (select count(*) from marts.fct_order_items), "
        "(select count(distinct order_item_id) from raw_shop.order_items)",
    )
    assert items == raw_items
    [(revenue, order_amounts)] = _query(
        home,
        "select (select sum(gross_revenue) from marts.fct_daily_revenue), "
        "(select sum(order_amount) from marts.fct_orders where is_fulfillable)",
    )
    assert revenue == order_amounts > 0
    rows = _query(home, "select distinct payment_state from marts.fct_orders")
    states = {state for (state,) in rows}
    assert {"paid", "unpaid", "refunded"} <= states, states
    [(converted,)] = _query(
        home, "select count(*) from marts.fct_session_conversions where is_converted"
    )
    assert converted > 0


def test_a_second_run_without_new_files_loads_nothing_and_stays_green(platform_copy):
    home = platform_copy
    output = dataops(home, "run").stdout
    assert "0 files loaded" in output and " files loaded" in output
    assert all(" 0 files loaded" in line for line in output.splitlines() if "files loaded" in line)
    assert output.rstrip().splitlines()[-1].startswith("OK in ")


def test_the_incremental_fact_processes_only_newly_landed_lines(platform_copy):
    home = platform_copy
    [(before,)] = _query(home, "select count(*) from marts.fct_order_items")
    landing = home / "landing" / "shop" / "order_items"
    with duckdb.connect(str(home / "warehouse_dev.duckdb")) as con:
        # A marker on an existing line: a full rebuild would erase it, an incremental run keeps it.
        con.execute(
            "update marts.fct_order_items set product_category = 'untouched-marker' "
            "where order_item_id = (select min(order_item_id) from marts.fct_order_items)"
        )
        con.execute(
            f"""
            copy (
                select max_id + row_number() over (order by order_id) as order_item_id,
                       order_id, product_id, 1 as quantity, unit_price
                from (select order_id, product_id, unit_price from staging.stg_shop__order_items
                      order by order_item_id limit 5),
                     (select max(order_item_id) as max_id from staging.stg_shop__order_items)
            ) to '{landing / "order_items_2099-01-01.csv"}' (header)
            """
        )
    output = dataops(home, "run").stdout
    assert "OK in " in output
    fact = next(r for uid, r in _run_results(home).items() if uid.endswith(".fct_order_items"))
    assert fact["status"] == "success"
    assert "_loaded_at > (select max(_loaded_at)" in fact["compiled_code"]
    [(after, markers, newest)] = _query(
        home,
        "select count(*), count(*) filter (where product_category = 'untouched-marker'), "
        "count(*) filter (where _loaded_at = (select max(_loaded_at) from marts.fct_order_items)) "
        "from marts.fct_order_items",
    )
    assert after == before + 5
    assert markers == 1, "the incremental run must not rewrite lines it already had"
    assert newest == 5
