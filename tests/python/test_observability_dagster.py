"""Dagster runs in the event log: the run-status sensors on a real (ephemeral) Dagster instance."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    job,
    op,
)

from dataops.core import events
from orchestration.assets.metadata import ingestion_metadata, table_metadata
from orchestration.sensors.event_log import run_started, run_succeeded
from tests.python.conftest import settings_for


@op
def _noop() -> None:
    return None


@job
def _tiny_job() -> None:
    _noop()


def test_run_events_are_recorded_and_linked_to_the_runs_dbt_and_file_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, monkeypatch)
    instance = DagsterInstance.ephemeral()
    result = _tiny_job.execute_in_process(instance=instance)
    run = instance.get_run_by_id(result.run_id)
    run_id = result.run_id
    with duckdb.connect(str(settings.warehouse_path)) as con:
        events.ensure_events(con)
        target = f"/repo/target/dbt_models-{run_id[:7]}-abc1234"
        events.record_event(con, "dbt.invocation_started", dbt_invocation_id="inv-1",
                            details={"target_path": target})
        events.record_event(con, "dbt.node_result", dbt_invocation_id="inv-1", status="fail",
                            node_id="test.dataops.x")
        events.record_event(con, "file.loaded", batch_id=f"dagster-{run_id[:8]}", file_hash="h1")
        events.record_event(con, "file.loaded", batch_id="20250101T000000-other", file_hash="h2")

    start = next(
        entry.dagster_event for entry in instance.all_logs(run_id)
        if entry.dagster_event and entry.dagster_event.event_type == DagsterEventType.RUN_START
    )
    run_started(build_run_status_sensor_context(
        sensor_name="event_log_run_started", dagster_instance=instance, dagster_run=run,
        dagster_event=start,
    ))
    run_succeeded(build_run_status_sensor_context(
        sensor_name="event_log_run_succeeded", dagster_instance=instance, dagster_run=run,
        dagster_event=result.get_run_success_event(),
    ))

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute(
            "select event_type, coalesce(file_hash, node_id, '') from platform.events "
            "where dagster_run_id = ? order by 1, 2", [run_id],
        ).fetchall()
    assert rows == [
        ("dagster.run_started", ""),
        ("dagster.run_succeeded", ""),
        ("dbt.invocation_started", ""),
        ("dbt.node_result", "test.dataops.x"),
        ("file.loaded", "h1"),
    ]


def test_table_metadata_reads_the_latest_measurements(built_platform) -> None:
    home, _ = built_platform
    metadata = table_metadata(str(home / "warehouse_dev.duckdb"), "shop", "orders")
    assert set(metadata) == {"row_count", "rows_added", "freshness_lag_hours"}
    assert metadata["row_count"] > 0
    assert table_metadata(str(home / "missing.duckdb"), "shop", "orders") == {}


def test_ingestion_metadata_has_row_count_and_freshness(built_platform) -> None:
    home, _ = built_platform
    metadata = ingestion_metadata(home / "warehouse_dev.duckdb", "raw_shop", "orders")
    assert metadata["row_count"].value > 0
    assert 0 <= metadata["freshness_lag_hours"].value < 24 * 365
    assert ingestion_metadata(home / "warehouse_dev.duckdb", "raw_shop", "missing") == {}
