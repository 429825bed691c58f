"""What a dbt run records in Dagster: each materialisation carries the table's row count and the
monitored metrics as numbers (the UI plots them), and each singular test is recorded as an asset
check evaluation of the asset it checks (real dbt, a real DuckDB file, an ephemeral Dagster
instance)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    FloatMetadataValue,
    IntMetadataValue,
    materialize,
)

from orchestration.assets.metadata import ROW_COUNT, monitor_key
from orchestration.definitions import build_definitions
from tests.python.dagster_harness import clone_home

pytestmark = pytest.mark.slow

K = AssetKey.from_user_string
FACT = K("marts/fct_order_items")
RECONCILE = AssetCheckKey(FACT, "assert_order_lines_reconcile_with_orders")
REFUNDS = AssetCheckKey(K("staging/stg_payments__refunds"), "assert_refunds_do_not_exceed_payments")


def test_dbt_materialisations_carry_row_counts_and_metrics_and_singular_tests_are_checks(
    dagster_platform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = clone_home(dagster_platform, tmp_path / "home")
    monkeypatch.setenv("DATAOPS_HOME", str(home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(home / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(home / "logs"))
    monkeypatch.delenv("DATAOPS_LANDING", raising=False)
    warehouse = str(home / "warehouse_dev.duckdb")
    manifest = json.loads((home / "target" / "manifest.json").read_text())
    relations = {
        node["name"]: node["relation_name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed")
    }

    defs = build_definitions()
    dbt_steps = [a for a in defs.assets if getattr(a, "op", None) and "dbt" in a.op.name]
    instance = DagsterInstance.ephemeral()
    result = materialize(dbt_steps, instance=instance, resources={"dbt": defs.resources["dbt"]})
    assert result.success

    # Every built table: its row count, an integer, equal to count(*) of the table.
    materialized = {
        e.asset_key: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert len(materialized) == len(relations)
    with duckdb.connect(warehouse, read_only=True) as con:
        counts = {
            name: con.execute(f"select count(*) from {relation}").fetchone()[0]
            for name, relation in relations.items()
        }
        [(mean_net_revenue, min_net_revenue)] = con.execute(
            "select avg(net_revenue), min(net_revenue) from marts.fct_daily_revenue"
        ).fetchall()
    assert counts["fct_orders"] > 0
    for key, metadata in materialized.items():
        assert isinstance(metadata[ROW_COUNT], IntMetadataValue), key
        assert metadata[ROW_COUNT].value == counts[key.path[-1]], key
    # The monitored mart's metrics (its `monitors` block), as measured after it was built.
    revenue = materialized[K("marts/fct_daily_revenue")]
    mean = revenue[monitor_key("net_revenue", "mean")]
    assert isinstance(mean, FloatMetadataValue)
    assert mean.value == pytest.approx(float(mean_net_revenue))
    assert revenue[monitor_key("net_revenue", "min")].value == pytest.approx(
        float(min_net_revenue)
    )
    assert not any(k.startswith("monitor/") for k in materialized[K("marts/fct_orders")])

    # Both singular tests ran as checks of their assets, and passed; the instance records them.
    evaluations = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    for check in (RECONCILE, REFUNDS):
        assert evaluations[(check.asset_key, check.name)].passed, check
    recorded = instance.event_log_storage.get_latest_asset_check_execution_by_key([RECONCILE])
    assert recorded[RECONCILE].run_id == result.run_id

    # A run of fct_orders alone (as the landing sensor starts them) leaves the reconciliation to
    # the fact's step: dbt would otherwise run it here too, before the fact is rebuilt.
    orders_only = materialize(
        dbt_steps,
        selection=[K("marts/fct_orders")],
        instance=instance,
        resources={"dbt": defs.resources["dbt"]},
    )
    assert orders_only.success
    ran = {
        e.asset_observation_data.asset_observation.metadata["unique_id"].value
        for e in orders_only.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
    assert not any("assert_order_lines" in unique_id for unique_id in ran), ran
    assert RECONCILE.name not in {e.check_name for e in orders_only.get_asset_check_evaluations()}

    # An order whose amount no longer matches its lines: the reconciliation fails the next run
    # of the fact, as a failed check of the fact with the failing row count.
    with duckdb.connect(warehouse) as con:
        con.execute(
            "update marts.fct_orders set order_amount = order_amount + 1 "
            "where order_id = (select min(order_id) from marts.fct_orders where line_count > 0)"
        )
    partitioned = next(a for a in dbt_steps if FACT in a.keys)
    failed = materialize(
        [partitioned],
        selection=[FACT],
        instance=instance,
        resources={"dbt": defs.resources["dbt"]},
        raise_on_error=False,
    )
    assert not failed.success
    [evaluation] = [
        e for e in failed.get_asset_check_evaluations() if e.check_name == RECONCILE.name
    ]
    assert evaluation.asset_key == FACT
    assert not evaluation.passed
    assert evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.metadata["dagster_dbt/failed_row_count"].value == 1
    recorded = instance.event_log_storage.get_latest_asset_check_execution_by_key([RECONCILE])
    assert recorded[RECONCILE].run_id == failed.run_id
    assert recorded[RECONCILE].status.value == "FAILED"
