"""The daily schedule: a full build of every asset (ingestion of anything new, all dbt models,
seeds and tests) plus the source freshness checks."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    JobDefinition,
    ScheduleDefinition,
    define_asset_job,
)

DAILY_CRON = "0 6 * * *"  # 06:00 UTC, after the nightly exports have landed


def build_daily_job(executable: AssetSelection) -> JobDefinition:
    return define_asset_job(
        name="daily_full_build",
        # Asset checks of the selected assets come along: dbt tests and source freshness.
        selection=executable,
        description="Ingest anything new, `dbt build` everything, then `dbt source freshness`.",
        tags={"dataops/trigger": "daily_schedule"},
    )


def build_daily_schedule(job: JobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="daily_full_build_schedule",
        job=job,
        cron_schedule=DAILY_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
    )
