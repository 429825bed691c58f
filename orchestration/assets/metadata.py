"""Numeric materialisation metadata read from the warehouse (the Dagster UI plots it over time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from dagster import MetadataValue

from dataops.core.sql import qualified


def table_metadata(warehouse: str, source_name: str, table_name: str) -> dict[str, float]:
    """Latest metric-history values of a monitored table, for materialisation metadata
    (row_count, rows_added, freshness_lag_hours): Dagster plots numeric metadata over time."""
    try:
        with duckdb.connect(warehouse, read_only=True) as con:
            rows = con.execute(
                """
                select metric_name, metric_value from platform.metric_history
                where source_name = ? and table_name = ? and column_name is null
                    and metric_name in ('row_count', 'rows_added', 'freshness_lag_hours')
                qualify row_number() over (partition by metric_name order by measured_at desc) = 1
                """,
                [source_name, table_name],
            ).fetchall()
    except duckdb.Error:
        return {}
    return {name: float(value) for name, value in rows if value is not None}


def ingestion_metadata(warehouse: Path, schema: str, table: str) -> dict[str, Any]:
    """Row count and freshness of a raw table right after ingestion, as materialisation metadata
    (numbers, so the Dagster UI plots them per materialisation)."""
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows, lag = con.execute(
                "select count(*), epoch((now() at time zone 'UTC') - max(_loaded_at)) / 3600.0 "
                f"from {qualified(schema, table)}"
            ).fetchone()
    except duckdb.Error:
        return {}
    metadata: dict[str, Any] = {"row_count": MetadataValue.int(int(rows))}
    if lag is not None:
        metadata["freshness_lag_hours"] = MetadataValue.float(float(lag))
    return metadata
