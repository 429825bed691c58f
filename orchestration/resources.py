"""Dagster resources and the names shared by everything that writes the warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from dagster_dbt import DbtCliResource
from packaging import version

from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, Settings
from dataops.dbt.runner import dbt_executable

# DuckDB allows one writing process per file. Every step that opens the warehouse runs in this
# concurrency pool; the instance config (orchestration/instance/dagster.yaml) limits pools to one
# slot, so warehouse writers run one at a time across all runs.
WAREHOUSE_POOL = "warehouse"


class DataopsDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two start-up costs paid on every dbt step.

    - dagster-dbt learns dbt's version by running ``dbt --version`` in a subprocess (a second
      Python start, ~1 s idle); the executable is the dbt of this virtual environment
      (``dbt_executable``), so the version of the installed dbt-core package is the same answer.
    - Before each ``dbt.cli(...)`` dagster-dbt builds a dbt adapter in-process (loads the profile,
      the project and dbt's macros; ~0.5-1 s) that only its ``fetch_column_metadata()`` and
      ``fetch_row_counts()`` use. The platform calls neither (column metadata comes from the
      manifest), so no adapter is built. Calling one of them would then fail loudly, not silently.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__

        return version.parse(__version__)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


def dbt_resource(settings: Settings) -> DbtCliResource:
    """dagster-dbt's resource, running the dbt executable of `dataops.dbt.runner`."""
    return DataopsDbtCliResource(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROFILES_DIR),
        target=settings.target,
        dbt_executable=dbt_executable(),
    )
