"""Freshness and partition status under the real Dagster daemon (issue 19).

One daemon (`dagster-daemon run`, the repo's instance config in a temp DAGSTER_HOME, the
freshness daemon every 5 s) on a copy of the built platform:

- a model not rebuilt within its freshness SLO fails its freshness policy, one rebuilt within it
  passes (the daemon judges the asset's last materialisation);
- a landed file's run evaluates the source freshness checks of the raw table it loads (recorded
  in the instance for that run, after the dbt steps), and leaves materialised exactly the
  partitions of fct_order_items whose lines it wrote (and goes on downstream of it).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.checks.freshness import CHECK_NAME as FRESHNESS
from tests.python.dagster_harness import clone_home, wait_for, warehouse_query
from tests.python.test_dagster_daemon import Platform, running_platform

pytestmark = pytest.mark.slow

FACT = "marts/fct_order_items"
NEW_IDS = 7_000_000  # order_item_id offset of the landed lines (the sample's are small)


@pytest.fixture(scope="module")
def platform(dagster_platform: Path, tmp_path_factory) -> Iterator[Platform]:
    home = clone_home(dagster_platform, tmp_path_factory.mktemp("freshness") / "home")
    with running_platform(home, FRESHNESS_DAEMON_INTERVAL_SECONDS="5") as platform:
        yield platform


def _materialized_at(platform: Platform, key: str, timestamp: float) -> None:
    """Record a materialisation of ``key`` at ``timestamp`` (as if a run had built it then)."""
    import logging

    from dagster import AssetKey, AssetMaterialization, DagsterEvent, DagsterEventType
    from dagster._core.events import StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    platform.instance.store_event(
        EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message="",
            run_id=RUNLESS_RUN_ID,
            timestamp=timestamp,
            job_name=RUNLESS_JOB_NAME,
            dagster_event=DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                event_specific_data=StepMaterializationData(
                    AssetMaterialization(AssetKey.from_user_string(key))
                ),
                job_name=RUNLESS_JOB_NAME,
            ),
        )
    )


def test_a_model_not_rebuilt_within_its_slo_fails_its_freshness_policy(platform):
    from dagster import AssetKey
    from dagster._core.definitions.freshness import FreshnessState

    # Both staging models have the default SLO (var dataops_model_freshness_hours: 30 hours).
    stale, fresh = "staging/stg_web__sessions", "staging/stg_payments__payments"
    now = time.time()
    _materialized_at(platform, stale, now - 31 * 3600)
    _materialized_at(platform, fresh, now - 29 * 3600)
    keys = [AssetKey.from_user_string(k) for k in (stale, fresh)]

    def states():
        records = platform.instance.get_freshness_state_records(keys)
        found = {k.to_user_string(): r.freshness_state for k, r in records.items()}
        assert platform.daemon.alive(), platform.daemon.tail()
        return found if len(found) == 2 else None

    found = wait_for("the freshness daemon's verdicts", states, timeout=600, interval=2)
    assert found == {stale: FreshnessState.FAIL, fresh: FreshnessState.PASS}


def _new_order_lines(platform: Platform, count: int = 40) -> Path:
    """An order_items file with new lines (new ids) of existing orders and products."""
    template = sorted((platform.archive / "shop" / "order_items").glob("*.csv"))[-1]
    with template.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:count]
    folder = platform.landing / "shop" / "order_items"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "order_items_late_lines.csv"
    partial = folder / f".{target.name}.partial"
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "order_item_id": int(row["order_item_id"]) + NEW_IDS})
    partial.rename(target)
    return target


def test_a_landed_file_run_checks_freshness_and_marks_the_partitions_it_wrote(platform):
    from dagster import AssetKey, DagsterEventType

    fact = AssetKey.from_user_string(FACT)
    assert platform.instance.get_materialized_partitions(fact) == set()
    before = {r.run_id for r in platform.runs()}
    _new_order_lines(platform)
    [run] = platform.wait_for_new_runs(before)
    assert run.status.value == "SUCCESS", platform.log_messages(run.run_id)[-3000:]

    # The source freshness check of the loaded raw table, evaluated in this run.
    records = platform.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in (r.event_log_entry.dagster_event.event_specific_data for r in records)
    }
    assert ("raw/shop/order_items", FRESHNESS) in evaluations, sorted(evaluations)
    assert evaluations[("raw/shop/order_items", FRESHNESS)].passed  # just loaded
    assert {a for a, name in evaluations if name == FRESHNESS} == {"raw/shop/order_items"}
    # ... after the dbt steps (its step has a lower priority): the marts were not delayed.
    starts, ends = {}, {}
    for entry in platform.instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event and event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event and event.event_type == DagsterEventType.STEP_SUCCESS:
            ends[event.step_key] = entry.timestamp
    dbt_steps = [step for step in ends if step.startswith("dbt_")]
    assert dbt_steps and starts["source_freshness"] >= max(ends[s] for s in dbt_steps), starts

    # The partitions of the fact: the days of the lines this run wrote, and no materialisation
    # without a partition.
    written = {
        day.isoformat()
        for (day,) in warehouse_query(
            platform.home,
            "select distinct order_date from marts.fct_order_items where order_item_id > ?",
            [NEW_IDS],
        )
    }
    assert written
    assert platform.instance.get_materialized_partitions(fact) == written
    records = platform.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    partitions = [
        r.event_log_entry.dagster_event.partition for r in records if r.asset_key == fact
    ]
    # dbt's output (no partition) and one per written day
    assert partitions.count(None) == 1
    assert sorted(p for p in partitions if p) == sorted(written)
    # The run went on downstream of the fact.
    assert "marts/dim_products" in platform.materialized(run.run_id)
