"""Numeric materialisation metadata read from the warehouse (the Dagster UI plots it over time)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
from dagster import MetadataValue

from dataops.core.sql import qualified, quote_literal
from dataops.core.warehouse import PLATFORM_SCHEMA, with_warehouse_lock_retry

ROW_COUNT = "dagster/row_count"  # Dagster's standard key: the UI shows and plots it
MONITOR_PREFIX = "monitor/"
# Measurements that are no plot of the data: the watermark of the source monitors (epoch us);
# a model's own row_count is ROW_COUNT already.
_NOT_PLOTTED = ("loaded_at_max", "row_count")


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


def monitor_key(column_name: str | None, metric_name: str) -> str:
    """Metadata key of a monitored metric: ``monitor/net_revenue/mean``, ``monitor/<metric>``."""
    return MONITOR_PREFIX + (f"{column_name}/" if column_name else "") + metric_name


def built_table_metadata(
    warehouse: Path, relations: Mapping[str, str], invocation_ids: set[str]
) -> dict[str, dict[str, MetadataValue]]:
    """Row count and monitored metrics of the tables a dbt invocation built, by dbt unique id.

    ``relations`` maps unique ids to quoted table names; one query counts them all (a
    ``count(*)`` per table reads no column) and reads what the model post-hook
    (``dataops_after_model_build``) measured of the monitored models in ``invocation_ids``
    from platform.metric_history. A warehouse that cannot be read raises ``duckdb.Error``.
    """
    if not relations:
        return {}
    counts = [
        f"select {quote_literal(unique_id)} as node_id, null as column_name, "
        f"'row_count' as metric_name, cast(count(*) as double) as metric_value from {relation}"
        for unique_id, relation in sorted(relations.items())
    ]

    def read() -> list[tuple[str, str | None, str, float | None]]:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            [(has_history,)] = con.execute(
                "select count(*) from duckdb_tables() where database_name = current_database() "
                "and schema_name = ? and table_name = 'metric_history'",
                [PLATFORM_SCHEMA],
            ).fetchall()
            query = " union all ".join(counts)
            parameters: list[Any] = []
            if has_history and invocation_ids:
                query += (
                    " union all select node_id, column_name, metric_name, metric_value "
                    f"from {qualified(PLATFORM_SCHEMA, 'metric_history')} "
                    "where table_kind = 'model' and metric_value is not null "
                    f"and metric_name not in ({', '.join(map(quote_literal, _NOT_PLOTTED))}) "
                    f"and dbt_invocation_id in ({', '.join('?' for _ in invocation_ids)})"
                )
                parameters = sorted(invocation_ids)
            return con.execute(query, parameters).fetchall()

    rows = with_warehouse_lock_retry(read, wait=30)
    metadata: dict[str, dict[str, MetadataValue]] = {}
    for node_id, column_name, metric_name, value in rows:
        if node_id not in relations or value is None:
            continue
        entry = metadata.setdefault(node_id, {})
        if column_name is None and metric_name == "row_count":
            entry[ROW_COUNT] = MetadataValue.int(int(value))
        else:
            entry[monitor_key(column_name, metric_name)] = MetadataValue.float(float(value))
    return metadata
