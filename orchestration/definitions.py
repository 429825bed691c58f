"""The Dagster code location: assembles assets, checks, sensors, schedules and resources.

Loads the prepared dbt manifest (``make manifest``); nothing here parses dbt or opens the
warehouse. Run the UI with ``make ui``.
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    in_process_executor,
)

from dataops.core.settings import load_settings
from dataops.dbt.manifest import load_manifest, manifest_path
from dataops.sources.registry import load_registry
from orchestration.assets.dbt import build_dbt_assets
from orchestration.assets.extract import build_extract_assets, build_extract_schedules
from orchestration.assets.ingestion import (
    LANDING_PREFIX,
    build_ingestion_assets,
    landing_specs,
    source_owners,
)
from orchestration.checks.freshness import build_freshness_checks
from orchestration.resources import dbt_resource
from orchestration.schedules import build_daily_job, build_daily_schedule
from orchestration.sensors.alerts import run_failure_alert
from orchestration.sensors.event_log import event_log_sensors
from orchestration.sensors.landing import build_landing_sensor


def build_definitions() -> Definitions:
    settings = load_settings()
    manifest = load_manifest(manifest_path(settings))
    tables = load_registry()
    owners = source_owners(manifest)
    executable = AssetSelection.all() - AssetSelection.groups(LANDING_PREFIX)
    daily_job = build_daily_job(executable)
    return Definitions(
        assets=[
            # landing folders: watched for delivered files, materialised by dlt for extracts
            *landing_specs([t for t in tables if t.extract_source is None], settings, owners),
            *build_extract_assets(tables, owners),
            build_ingestion_assets(tables, owners),
            *build_dbt_assets(manifest, settings),
        ],
        asset_checks=build_freshness_checks(manifest),
        jobs=[daily_job],
        schedules=[build_daily_schedule(daily_job), *build_extract_schedules(tables)],
        sensors=[
            build_landing_sensor(tables, executable),
            run_failure_alert,
            *event_log_sensors(),  # dagster.run_started/succeeded; links run ids
            AutomationConditionSensorDefinition(
                "dbt_automation",
                target=executable,
                minimum_interval_seconds=15,
                default_status=DefaultSensorStatus.RUNNING,
            ),
        ],
        resources={"dbt": dbt_resource(settings)},
        # One process per run: a step subprocess would import Dagster and the definitions again.
        executor=in_process_executor,
    )


defs = build_definitions()
