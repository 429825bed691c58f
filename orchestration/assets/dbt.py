"""The dbt project as Dagster assets: models, seeds and snapshots, with dbt tests as asset checks.

Built from the prepared manifest (dataops/dbt/manifest.py), never by parsing dbt on import.
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

from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, Settings
from orchestration.assets.translator import DataopsTranslator, daily_partitions, partitions_meta
from orchestration.resources import WAREHOUSE_POOL


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
    """The dbt graph as asset definitions, split around the partitioned models.

    Without partitioned models: one definition. With them: what they are built from, the
    partitioned models (daily partitions, backfills in one run), and everything else. The split
    keeps the steps of a run acyclic: upstream -> partitioned -> the rest.
    """
    translator = DataopsTranslator(manifest)
    project = dbt_project(settings)
    partitioned = partitioned_models(manifest)
    common = {
        "manifest": manifest,
        "dagster_dbt_translator": translator,
        "project": project,
        "pool": WAREHOUSE_POOL,
    }

    def unpartitioned(name: str, select: str, exclude: str | None) -> AssetsDefinition:
        @dbt_assets(name=name, select=select, exclude=exclude, **common)
        def _dbt(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
            yield from dbt.cli(["build"], context=context).stream()

        return _dbt

    if not partitioned:
        return [unpartitioned("dbt_models", "fqn:*", None)]

    nodes = [
        n
        for n in manifest["nodes"].values()
        if n.get("resource_type") == "model" and n["name"] in partitioned
    ]
    declared = {str(daily_partitions(n)) for n in nodes}
    if len(declared) > 1:
        raise ValueError(
            f"Partitioned models {partitioned} declare different meta.partitions; declare the "
            "same daily_start for all of them."
        )
    models = " ".join(partitioned)
    ancestors = " ".join(f"+{name}" for name in partitioned)

    @dbt_assets(
        name="dbt_partitioned_models",
        select=models,
        partitions_def=daily_partitions(nodes[0]),
        backfill_policy=BackfillPolicy.single_run(),
        **common,
    )
    def dbt_partitioned_models(
        context: AssetExecutionContext, dbt: DbtCliResource
    ) -> Iterator[Any]:
        window = None
        if context.has_partition_key or context.has_partition_key_range:
            time_window = context.partition_time_window
            window = (time_window.start.date(), time_window.end.date())
        yield from dbt.cli(build_args(window), context=context).stream()

    return [
        unpartitioned("dbt_upstream_of_partitioned", ancestors, models),
        dbt_partitioned_models,
        unpartitioned("dbt_models", "fqn:*", ancestors),
    ]
