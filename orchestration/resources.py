"""Dagster resources and the names shared by everything that writes the warehouse."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource

from orchestration.settings import PROFILES_DIR, PROJECT_DIR, Settings

# DuckDB allows one writing process per file. Every step that opens the warehouse runs in this
# concurrency pool; the instance config (orchestration/instance/dagster.yaml) limits pools to one
# slot, so warehouse writers run one at a time across all runs.
WAREHOUSE_POOL = "warehouse"


def dbt_executable() -> str:
    """The dbt of this virtual environment (dagster-dbt runs dbt as a subprocess)."""
    beside_python = Path(sys.executable).parent / "dbt"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("dbt")
    if not found:
        raise FileNotFoundError(
            f"No dbt executable beside {sys.executable} nor on PATH: run `make install`."
        )
    return found


def dbt_resource(settings: Settings) -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROFILES_DIR),
        target=settings.target,
        dbt_executable=dbt_executable(),
    )
