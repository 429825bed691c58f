"""dbt command lines for an engine's target (small pure functions, used by tests and benchmarks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestration.settings import PROFILES_DIR, PROJECT_DIR

# dbt targets (profiles/profiles.yml) of each engine; DuckDB's dev target is the default one.
ENGINE_TARGETS = {"duckdb": "dev", "spark": "spark", "postgres": "postgres"}

# Spark has no databases above schemas: a source's `database` must be empty there.
ENGINE_VARS: dict[str, dict[str, str]] = {"spark": {"dataops_raw_database": ""}}


def dbt_executable() -> str:
    """The dbt of this Python environment."""
    return str(Path(sys.executable).parent / "dbt")


def engine_dbt_args(engine: str, command: str, *extra: str) -> list[str]:
    """`dbt <command>` on the engine's target, project and profiles at the repo root."""
    if engine not in ENGINE_TARGETS:
        raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINE_TARGETS)}")
    args = [
        dbt_executable(),
        command,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROFILES_DIR),
        "--target",
        ENGINE_TARGETS[engine],
    ]
    if engine in ENGINE_VARS:
        args += ["--vars", json.dumps(ENGINE_VARS[engine], sort_keys=True)]
    return args + list(extra)
