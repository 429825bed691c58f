"""The dbt project as Dagster assets: models, seeds and snapshots, with dbt tests as asset checks.

Built from the prepared manifest (orchestration/manifest.py), never by parsing dbt on import.
Models declaring ``config.meta.partitions`` (the incremental fact ``fct_order_items``) form a
separate, daily-partitioned asset definition: a run for a partition or a range of partitions
(a backfill) passes the range to dbt as ``--vars '{"min_date": ..., "max_date": ...}'``; a run
without partitions (landing sensor, daily schedule) keeps the model's own incremental logic.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from orchestration.assets.translator import DataopsTranslator, daily_partitions, partitions_meta
from orchestration.resources import WAREHOUSE_POOL
from orchestration.settings import PROFILES_DIR, PROJECT_DIR, Settings


def partition_vars(first_day: date, last_day: date) -> dict[str, str]:
    """The dbt vars for a range of daily partitions, both days included."""
    if last_day < first_day:
        raise ValueError(f"Partition range ends ({last_day}) before it starts ({first_day}).")
    return {"min_date": first_day.isoformat(), "max_date": last_day.isoformat()}


def build_args(partition_window: tuple[date, date] | None) -> list[str]:
    """``dbt build`` arguments for a run; a partition window (start, exclusive end) adds vars."""
    if partition_window is None:
        return ["build"]
    start, end = partition_window
    return ["build", "--vars", json.dumps(partition_vars(start, end - timedelta(days=1)))]


def partitioned_models(manifest: Mapping[str, Any]) -> list[str]:
    """Names of the models that declare daily partitions in their YAML/config meta."""
    return sorted(
        node["name"]
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model" and partitions_meta(node)
    )


def dbt_project(settings: Settings) -> DbtProject:
    return DbtProject(
        project_dir=PROJECT_DIR,
        target_path=settings.dbt_target_path,
        profiles_dir=PROFILES_DIR,
        target=settings.target,
    )


def build_dbt_assets(manifest: Mapping[str, Any], settings: Settings) -> list[AssetsDefinition]:
    """One definition for the unpartitioned dbt graph and one per partitioned model set."""
    translator = DataopsTranslator(manifest)
    project = dbt_project(settings)
    partitioned = partitioned_models(manifest)
    definitions: list[AssetsDefinition] = []

    @dbt_assets(
        manifest=manifest,
        exclude=" ".join(partitioned) or None,
        dagster_dbt_translator=translator,
        project=project,
        pool=WAREHOUSE_POOL,
        name="dbt_models",
    )
    def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt.cli(["build"], context=context).stream()

    definitions.append(dbt_models)

    if partitioned:
        partitions = {
            str(daily_partitions(n))
            for n in manifest["nodes"].values()
            if n.get("name") in partitioned and n.get("resource_type") == "model"
        }
        if len(partitions) > 1:
            raise ValueError(
                f"Partitioned models {partitioned} declare different meta.partitions; "
                "declare the same daily_start for all of them."
            )
        first = next(
            n
            for n in manifest["nodes"].values()
            if n.get("resource_type") == "model" and n.get("name") == partitioned[0]
        )

        @dbt_assets(
            manifest=manifest,
            select=" ".join(partitioned),
            dagster_dbt_translator=translator,
            project=project,
            partitions_def=daily_partitions(first),
            backfill_policy=BackfillPolicy.single_run(),
            pool=WAREHOUSE_POOL,
            name="dbt_partitioned_models",
        )
        def dbt_partitioned_models(
            context: AssetExecutionContext, dbt: DbtCliResource
        ) -> Iterator[Any]:
            window = None
            if context.has_partition_key or context.has_partition_key_range:
                time_window = context.partition_time_window
                window = (time_window.start.date(), time_window.end.date())
            yield from dbt.cli(build_args(window), context=context).stream()

        definitions.append(dbt_partitioned_models)
    return definitions
