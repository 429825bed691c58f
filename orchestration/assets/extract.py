"""Extracted sources as assets: ``extract_<source>`` runs dlt for a database or API source and
materialises its landing folders ``landing/<source>/<table>``, upstream of the raw tables that
ingestion loads; each such source also gets its own schedule (``meta.extract.schedule``)."""

from collections.abc import Iterator, Sequence

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    AssetSpec,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    define_asset_job,
    multi_asset,
)

from dataops.core.settings import load_settings
from dataops.extract.pipeline import ExtractError, extract, extract_sources
from dataops.sources.registry import SourceTable
from orchestration.assets.ingestion import landing_asset_key
from orchestration.assets.translator import owner_tag, raw_asset_key

EXTRACT_GROUP = "extract"


def build_extract_assets(tables: Sequence[SourceTable], owners: dict[str, str]) -> list:
    """One multi-asset per extracted source: its tables' landing folders."""
    return [
        _extract_asset(source, source_tables, owners.get(source))
        for source, source_tables in sorted(extract_sources(list(tables)).items())
    ]


def _extract_asset(source: str, tables: list[SourceTable], owner: str | None):
    kind = tables[0].extract_source.kind

    @multi_asset(
        name=f"extract_{source}",
        specs=[
            AssetSpec(
                key=landing_asset_key(table),
                description=f"{table.name} extracted from {kind} by dlt into JSONL files "
                f"(declared in {table.declared_in.name}).",
                group_name=EXTRACT_GROUP,
                kinds={"dlt", kind if kind == "postgres" else "api"},
                owners=[owner_tag(owner)] if owner else [],
                skippable=True,
            )
            for table in tables
        ],
        can_subset=False,
    )
    def extract_source(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
        settings = load_settings()
        try:
            outcome = extract(
                source, tables, settings.landing_dir, settings.home, progress=context.log.info
            )
        except ExtractError as error:
            raise Failure(description=str(error)) from error
        for table in tables:
            yield MaterializeResult(
                asset_key=landing_asset_key(table),
                metadata={
                    "rows_extracted": outcome.rows.get(table.name, 0),
                    "files": MetadataValue.json(
                        [p.name for p in outcome.files if p.parent.name == table.name]
                    ),
                },
            )

    return extract_source


def build_extract_schedules(tables: Sequence[SourceTable]) -> list[ScheduleDefinition]:
    """Per extracted source: extract, then ingest its raw tables, on its own cron."""
    schedules = []
    for source, source_tables in sorted(extract_sources(list(tables)).items()):
        selection = AssetSelection.assets(
            *[landing_asset_key(t) for t in source_tables],
            *[raw_asset_key(t.source, t.name) for t in source_tables],
        )
        job = define_asset_job(
            name=f"extract_{source}_job",
            selection=selection,
            description=f"Extract {source} with dlt, then ingest what landed.",
            tags={"dataops/trigger": "extract_schedule"},
        )
        schedules.append(
            ScheduleDefinition(
                name=f"extract_{source}_schedule",
                job=job,
                cron_schedule=source_tables[0].extract_source.schedule,
                execution_timezone="UTC",
                default_status=DefaultScheduleStatus.RUNNING,
            )
        )
    return schedules
