"""Which daily partitions a run without partitions wrote, so the UI's partition status is true.

A partitioned incremental model (``config.meta.partitions``) is also built by runs that carry no
partition: the landing sensor's runs and the daily schedule keep the model's own incremental
logic (rows loaded since its newest ``loaded_at_field``), and dbt's output is recorded as a
materialisation without a partition, which the UI's partition status does not count (it showed
0 of 700 partitions for a full table). Such a run also records one materialisation per day whose
rows it wrote: the days (``meta.partitions.column``) of the rows whose ``loaded_at_field`` is
newer than the model's newest before the build, which is the model's own incremental predicate.
A run that wrote no row records no partition. A run for partitions (a backfill, a UI launch)
passes them to dbt and records them as before (orchestration/assets/dbt.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
from dagster import AssetKey, AssetMaterialization, Output, PartitionsDefinition

from dataops.core.sql import qualified
from dataops.core.warehouse import with_warehouse_lock_retry
from orchestration.assets.metadata import ROW_COUNT


@dataclass(frozen=True)
class PartitionedModel:
    """A partitioned model's relation and the columns that say which day a row belongs to."""

    asset_key: AssetKey
    relation: tuple[str, str]  # schema, identifier (in the target's warehouse file)
    column: str  # the partition day (meta.partitions.column)
    loaded_at_field: str  # the incremental watermark (meta.partitions.loaded_at_field)

    @classmethod
    def from_node(cls, asset_key: AssetKey, node: Mapping[str, Any]) -> PartitionedModel:
        meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
        declared = meta.get("partitions") or {}
        names = {key: declared.get(key) for key in ("column", "loaded_at_field")}
        missing = sorted(key for key, value in names.items() if not isinstance(value, str))
        if missing:
            raise ValueError(
                f"{node.get('original_file_path')}: config.meta.partitions of model "
                f"'{node.get('name')}' needs {' and '.join(missing)} (the column holding the "
                f"partition day, the column of its incremental watermark), got {declared!r}"
            )
        # Schema and name only: the catalog in the manifest is the file it was parsed against,
        # the warehouse file read here is the target's.
        relation = (node["schema"], node.get("alias") or node["name"])
        return cls(asset_key, relation, names["column"], names["loaded_at_field"])


def _read(warehouse: Path, sql: str, params: list[Any]) -> list[tuple]:
    def read() -> list[tuple]:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.execute(sql, params).fetchall()

    return with_warehouse_lock_retry(read)


def watermark(warehouse: Path, model: PartitionedModel) -> datetime | None:
    """The model's newest ``loaded_at_field`` before a build (None: no row or no table yet)."""
    if not warehouse.exists():
        return None
    try:
        [(newest,)] = _read(
            warehouse,
            f"select max({qualified(model.loaded_at_field)}) from {qualified(*model.relation)}",
            [],
        )
    except duckdb.CatalogException:  # not built yet
        return None
    return newest


def written_days(
    warehouse: Path, model: PartitionedModel, since: datetime | None
) -> dict[date, int]:
    """Rows the build wrote per day: ``loaded_at_field`` newer than ``since`` (all when None)."""
    where = f"where {qualified(model.loaded_at_field)} > ?" if since is not None else ""
    rows = _read(
        warehouse,
        f"select cast({qualified(model.column)} as date), count(*) "
        f"from {qualified(*model.relation)} {where} group by 1 order by 1",
        [since] if since is not None else [],
    )
    return {day: count for day, count in rows if day is not None}


def partition_materializations(
    output: Output,
    model: PartitionedModel,
    days: Mapping[date, int],
    partitions_def: PartitionsDefinition,
) -> Iterator[AssetMaterialization]:
    """One materialisation per written day, with the build's metadata (not the whole table's
    row count) and the day's rows written."""
    metadata = {k: v for k, v in (output.metadata or {}).items() if k != ROW_COUNT}
    for day, rows in sorted(days.items()):
        key = day.isoformat()
        if not partitions_def.has_partition_key(key):
            continue  # a day outside the declared partitions (before daily_start, future)
        yield AssetMaterialization(
            asset_key=model.asset_key,
            partition=key,
            metadata={**metadata, "rows_written": rows},
        )


def outside_partitions(days: Iterable[date], partitions_def: PartitionsDefinition) -> list[str]:
    """Written days that are not partitions (before ``daily_start``, or in the future)."""
    keys = [day.isoformat() for day in sorted(days)]
    return [key for key in keys if not partitions_def.has_partition_key(key)]
