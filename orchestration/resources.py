"""Dagster resources and the names shared by everything that writes the warehouse."""

from __future__ import annotations

from dagster_dbt import DbtCliResource

from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, Settings
from dataops.dbt.runner import dbt_executable

# DuckDB allows one writing process per file. Every step that opens the warehouse runs in this
# concurrency pool; the instance config (orchestration/instance/dagster.yaml) limits pools to one
# slot, so warehouse writers run one at a time across all runs.
WAREHOUSE_POOL = "warehouse"


def dbt_resource(settings: Settings) -> DbtCliResource:
    """dagster-dbt's resource, running the dbt executable of `dataops.dbt.runner`."""
    return DbtCliResource(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROFILES_DIR),
        target=settings.target,
        dbt_executable=dbt_executable(),
    )
