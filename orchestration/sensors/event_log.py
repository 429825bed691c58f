"""Dagster runs in the platform event log, and the ids that join them to dbt and ingestion events.

Run-status sensors record `dagster.run_started` and `dagster.run_succeeded` (failures are
recorded by orchestration/sensors/alerts.py as `dagster.run_failed`). When a run ends, whatever
succeeded or failed, the events it caused get its run id: dagster-dbt gives each dbt invocation a
target path containing the run id's first 7 characters (the dbt hooks record that path), and the
ingestion asset names its batch `dagster-<run id[:8]>`.
"""

from __future__ import annotations

from typing import Any

import duckdb
from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunStatusSensorContext,
    SensorDefinition,
    run_status_sensor,
)

from dataops.core import events
from dataops.core.settings import load_settings
from dataops.core.warehouse import with_warehouse_lock_retry


def link_run_events(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Set dagster_run_id on the dbt and ingestion events of that run; return how many."""
    prefix = run_id[:7]
    invocations = f"""
        select dbt_invocation_id from {events.EVENTS_TABLE}
        where event_type = 'dbt.invocation_started'
            and details::json ->> 'target_path' like ?
    """
    result = con.execute(
        f"""
        update {events.EVENTS_TABLE} set dagster_run_id = ?
        where dagster_run_id is null
            and (dbt_invocation_id in ({invocations}) or batch_id = ?)
        """,
        [run_id, f"%-{prefix}-%", f"dagster-{run_id[:8]}"],
    ).fetchall()
    return int(result[0][0]) if result else 0


def record_run_event(run_id: str, event_type: str, status: str, details: dict[str, Any]) -> None:
    settings = load_settings()

    def write() -> None:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            events.ensure_events(con)
            events.record_event(
                con, event_type, status=status, dagster_run_id=run_id,
                message=f"Dagster run {run_id} ({details.get('job_name')}) {status}",
                details=details,
            )
            if event_type != "dagster.run_started":
                link_run_events(con, run_id)

    with_warehouse_lock_retry(write)


def _details(context: RunStatusSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    return {"job_name": run.job_name, "tags": dict(run.tags)}


@run_status_sensor(
    run_status=DagsterRunStatus.STARTED,
    name="event_log_run_started",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records each started run as a `dagster.run_started` event.",
)
def run_started(context: RunStatusSensorContext) -> None:
    record_run_event(context.dagster_run.run_id, "dagster.run_started", "started",
                     _details(context))


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="event_log_run_succeeded",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records each succeeded run as `dagster.run_succeeded`; links its dbt/file events.",
)
def run_succeeded(context: RunStatusSensorContext) -> None:
    record_run_event(context.dagster_run.run_id, "dagster.run_succeeded", "success",
                     _details(context))


@run_status_sensor(
    run_status=DagsterRunStatus.FAILURE,
    name="event_log_link_failed_run",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Links a failed run's dbt and file events to its run id (run_failure_alert "
    "records the failure itself).",
)
def link_failed_run(context: RunStatusSensorContext) -> None:
    settings = load_settings()

    def write() -> None:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            events.ensure_events(con)
            link_run_events(con, context.dagster_run.run_id)

    with_warehouse_lock_retry(write)


def event_log_sensors() -> list[SensorDefinition]:
    return [run_started, run_succeeded, link_failed_run]
