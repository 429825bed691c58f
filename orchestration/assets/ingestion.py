"""Landed files and raw tables as assets, one pair per declared source table.

``landing/<source>/<table>`` is the landing folder (an external asset: files arrive from outside,
the landing sensor watches them); ``raw/<source>/<table>`` is the raw table that ingestion loads
them into and that the dbt source of the same name reads, so the graph reads
landed files -> raw -> staging -> intermediate -> marts.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    multi_asset,
)

from dataops.core.settings import Settings, load_settings
from dataops.core.warehouse import with_warehouse_lock_retry
from dataops.ingestion.loader import TableOutcome, ingest
from dataops.sources.registry import LINEAGE_COLUMNS, SourceTable
from orchestration.assets.metadata import ingestion_metadata
from orchestration.assets.translator import RAW_PREFIX, owner_tag, raw_asset_key
from orchestration.resources import WAREHOUSE_POOL

LANDING_PREFIX = "landing"


def source_owners(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Owner of each source, from ``meta.owner`` in its sources YAML (read via the manifest)."""
    owners: dict[str, str] = {}
    for source in manifest.get("sources", {}).values():
        meta = {**(source.get("meta") or {}), **((source.get("config") or {}).get("meta") or {})}
        if meta.get("owner"):
            owners.setdefault(source["source_name"], meta["owner"])
    return owners


def landing_asset_key(table: SourceTable) -> AssetKey:
    return AssetKey([LANDING_PREFIX, table.source, table.name])


def _owners(table: SourceTable, owners: dict[str, str]) -> list[str]:
    owner = owners.get(table.source)
    return [owner_tag(owner)] if owner else []


def landing_specs(
    tables: Sequence[SourceTable], settings: Settings, owners: dict[str, str]
) -> list[AssetSpec]:
    """The landing folders, shown in the graph; they are observed, never materialised."""
    return [
        AssetSpec(
            key=landing_asset_key(table),
            description=(
                f"{table.landing.format} files landing in "
                f"{table.landing_dir(settings.landing_dir)} (declared in {table.declared_in.name})."
            ),
            group_name=LANDING_PREFIX,
            owners=_owners(table, owners),
            kinds={table.landing.format, "files"},
            metadata={
                "landing_path": MetadataValue.path(str(table.landing_dir(settings.landing_dir)))
            },
        )
        for table in tables
    ]


def raw_spec(table: SourceTable, owners: dict[str, str]) -> AssetSpec:
    columns = [
        TableColumn(
            name=column.name,
            type="varchar" if table.landing.format != "parquet" else column.data_type,
            description=column.description,
        )
        for column in table.columns
    ] + [TableColumn(name=name, type="lineage") for name in LINEAGE_COLUMNS]
    return AssetSpec(
        key=raw_asset_key(table.source, table.name),
        deps=[landing_asset_key(table)],
        description=(
            f"Raw {table.name} rows as delivered, one batch per landed file. {table.description}"
        ),
        group_name=RAW_PREFIX,
        owners=_owners(table, owners),
        kinds={"duckdb", "python"},
        metadata={
            "dagster/column_schema": TableSchema(columns=columns),
            "dagster/table_name": f"{table.schema}.{table.name}",
            "declared_in": MetadataValue.path(str(table.declared_in)),
        },
        skippable=True,
    )


def raw_metadata(outcome: TableOutcome, batch_id: str) -> dict[str, object]:
    """What one ingestion did for a table (issue 5 extends this with row counts/freshness)."""
    return {
        "files_loaded": outcome.files_loaded,
        "rows_loaded": outcome.rows_loaded,
        "files_skipped": outcome.files_skipped,
        "batch_id": batch_id,
    }


def build_ingestion_assets(tables: Sequence[SourceTable], owners: dict[str, str]):
    """One subsettable multi-asset: a run ingests only the raw tables it selects."""
    by_key = {raw_asset_key(t.source, t.name): t for t in tables}

    @multi_asset(
        name="ingest_landed_files",
        specs=[raw_spec(table, owners) for table in tables],
        can_subset=True,
        pool=WAREHOUSE_POOL,
    )
    def ingest_landed_files(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
        settings = load_settings()
        selected = [by_key[key] for key in sorted(context.selected_asset_keys, key=str)]
        # Runs hold the warehouse pool, but the daemon's sensors write events outside it for a
        # moment: wait for such a short-lived lock instead of failing (ingest opens the file
        # before loading anything, so a retry starts from scratch).
        summary = with_warehouse_lock_retry(
            lambda: ingest(
                settings.warehouse_path,
                settings.landing_dir,
                selected,
                batch_id=f"dagster-{context.run.run_id[:8]}",
            )
        )
        for table in selected:
            outcome = summary.tables[table.key]
            context.log.info(
                f"{table.key}: {outcome.files_loaded} files, {outcome.rows_loaded} rows loaded, "
                f"{outcome.files_skipped} already loaded"
            )
        if summary.errors and not summary.files_loaded:
            # Nothing new to rebuild: the run fails, so the failure alert names the files.
            raise Failure(
                description=(
                    f"{len(summary.errors)} landed file(s) could not be loaded; each is "
                    "quarantined and recorded in platform.load_ledger and platform.events. Fix "
                    "the file, then `dataops replay <quarantined file>`:\n"
                    + "\n".join(summary.errors)
                ),
                metadata={"errors": MetadataValue.json(summary.errors)},
            )
        for error in summary.errors:
            # Other files of this run loaded: their raw tables materialise (so everything
            # downstream is rebuilt); the bad ones are quarantined and reported here and as
            # file.quarantined events.
            context.log.error(error)
        for table in selected:
            outcome = summary.tables[table.key]
            yield MaterializeResult(
                asset_key=raw_asset_key(table.source, table.name),
                metadata={
                    **raw_metadata(outcome, summary.batch_id),
                    "files_quarantined": len(outcome.quarantined),
                    # row_count, freshness_lag_hours (dataops/observability)
                    **ingestion_metadata(settings.warehouse_path, table.schema, table.name),
                },
            )

    return ingest_landed_files
