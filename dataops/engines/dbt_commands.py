"""dbt command lines for an engine's target (small pure functions, used by tests and benchmarks)."""

from __future__ import annotations

from dataops.dbt.runner import dbt_args, dbt_executable

# dbt targets (profiles/profiles.yml) of each engine; DuckDB's dev target is the default one.
ENGINE_TARGETS = {"duckdb": "dev", "spark": "spark", "postgres": "postgres"}

# Spark has no databases above schemas: a source's `database` must be empty there.
ENGINE_VARS: dict[str, dict[str, str]] = {"spark": {"dataops_raw_database": ""}}


def engine_dbt_args(engine: str, command: str, *extra: str) -> list[str]:
    """`dbt <command>` (the executable first) on the engine's target, project at the repo root."""
    if engine not in ENGINE_TARGETS:
        raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINE_TARGETS)}")
    return [
        dbt_executable(),
        *dbt_args(command, ENGINE_TARGETS[engine], dbt_vars=ENGINE_VARS.get(engine), extra=extra),
    ]
