"""The dbt project as Dagster assets: models, seeds and snapshots, with dbt tests as asset checks.

Built from the prepared manifest (dataops/dbt/manifest.py), never by parsing dbt on import.
Models declaring ``config.meta.partitions`` (the incremental fact ``fct_order_items``) form a
separate, daily-partitioned asset definition: a run for a partition or a range of partitions
(a backfill) passes the range to dbt as ``--vars '{"min_date": ..., "max_date": ...}'``; a run
without partitions (landing sensor, daily schedule) keeps the model's own incremental logic.

Every dbt test is an asset check: a generic test checks the node it is declared on, a singular
test (tests/dbt/singular/) its one parent, or the parent its ``meta.dagster.ref`` names. A step
leaves out the tests whose check belongs to another step (dbt would otherwise also run a test in
the step of any of its parents, before the others were rebuilt).

Each materialisation carries the table's row count (``dagster/row_count``) and, for a monitored
model, the metrics its post-hook measured in the same invocation (``monitor/<column>/<metric>``):
one query after dbt has finished (it holds the DuckDB file until then), so a step's events are
reported together when its dbt invocation ends.

On the prod target every dbt step is a release (dataops/publishing/): the step builds and tests
its selection in the release's own schemas and publishes it only when every test passed; a
failing test publishes nothing, records no materialisation, and fails the step naming the test,
so the steps downstream of it do not run.
"""

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import duckdb
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
)
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.asset_utils import get_asset_check_key_for_test

from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, PUBLISHED_TARGETS, Settings
from dataops.core.sql import qualified
from dataops.publishing.wap import PUBLISHED_TYPES, ReleaseBuild
from orchestration.assets.metadata import built_table_metadata
from orchestration.assets.translator import DataopsTranslator, daily_partitions, partitions_meta
from orchestration.resources import WAREHOUSE_POOL


def partition_vars(first_day: date, last_day: date) -> dict[str, str]:
    """The dbt vars for a range of daily partitions, both days included."""
    if last_day < first_day:
        raise ValueError(f"Partition range ends ({last_day}) before it starts ({first_day}).")
    return {"min_date": first_day.isoformat(), "max_date": last_day.isoformat()}


def build_args(
    partition_window: tuple[date, date] | None,
    extra_vars: Mapping[str, str] | None = None,
    exclude_tests: Iterable[str] = (),
) -> list[str]:
    """``dbt build`` arguments for a run; a partition window (start, exclusive end) adds vars,
    and so does a release (``extra_vars``: its ``dataops_release``); ``exclude_tests`` (dbt
    selectors) are left out (dagster-dbt adds them to the step's own ``--exclude``)."""
    dbt_vars = dict(extra_vars or {})
    if partition_window is not None:
        start, end = partition_window
        dbt_vars.update(partition_vars(start, end - timedelta(days=1)))
    args = ["build"]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    excluded = sorted(set(exclude_tests))
    if excluded:
        args += ["--exclude", " ".join(excluded)]
    return args


def checked_assets(
    manifest: Mapping[str, Any], translator: DataopsTranslator
) -> dict[str, AssetKey]:
    """The asset each dbt test is a check of (dagster-dbt's rule), by the test's unique id."""
    keys = {}
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") != "test":
            continue
        key = get_asset_check_key_for_test(manifest, translator, unique_id, project=None)
        if key is not None:
            keys[unique_id] = key.asset_key
    return keys


def excluded_tests(
    manifest: Mapping[str, Any], translator: DataopsTranslator, step_keys: Iterable[AssetKey]
) -> list[str]:
    """dbt selectors (fqn) of the tests that read an asset of this step but are checks of an
    asset of another step: dbt's indirect selection would run them here too, before their own
    step has rebuilt what they check (a check result Dagster could not record, or a false
    failure that stops the run)."""
    keys = set(step_keys)
    nodes = manifest.get("nodes", {})
    sources = manifest.get("sources", {})
    found = []
    for unique_id, checked in checked_assets(manifest, translator).items():
        if checked in keys:
            continue
        parents = (nodes[unique_id].get("depends_on") or {}).get("nodes") or []
        reads_this_step = any(
            translator.get_asset_key(nodes.get(parent) or sources[parent]) in keys
            for parent in parents
            if parent in nodes or parent in sources
        )
        if reads_this_step:
            found.append(".".join(nodes[unique_id]["fqn"]))
    return sorted(found)


def with_table_metadata(
    context: AssetExecutionContext,
    events: Sequence[Any],
    settings: Settings,
    manifest: Mapping[str, Any],
) -> Iterator[Any]:
    """The events of a finished dbt invocation, each materialisation with the table's row count
    and monitored metrics (orchestration/assets/metadata.py) as numbers the UI plots."""
    nodes = manifest.get("nodes", {})
    relations: dict[str, str] = {}
    invocations: set[str] = set()
    for event in events:
        if isinstance(event, (Output, AssetMaterialization)):
            unique_id = _metadata_text(event.metadata, "unique_id")
            node = nodes.get(unique_id or "") or {}
            if unique_id and node.get("relation_name"):
                # Schema and name only: the catalog in relation_name is the file the manifest
                # was parsed against, the warehouse file read here is the target's.
                relations[unique_id] = qualified(node["schema"], node["alias"])
                invocations.add(_metadata_text(event.metadata, "invocation_id") or "")
    try:
        measured = built_table_metadata(settings.warehouse_path, relations, invocations - {""})
    except duckdb.Error as error:
        context.log.warning(
            f"No row counts on this step's materialisations: {settings.warehouse_path} could "
            f"not be read ({error})."
        )
        measured = {}
    for event in events:
        if isinstance(event, (Output, AssetMaterialization)):
            extra = measured.get(_metadata_text(event.metadata, "unique_id") or "")
            if extra:
                event = event.with_metadata({**event.metadata, **extra})
        yield event


def _metadata_text(metadata: Mapping[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else None


def selected_unique_ids(
    context: AssetExecutionContext, manifest: Mapping[str, Any], translator: DataopsTranslator
) -> set[str]:
    """The dbt models, seeds and snapshots this step builds (its selected assets)."""
    keys = context.selected_asset_keys
    return {
        uid
        for uid, node in manifest.get("nodes", {}).items()
        if node.get("resource_type") in PUBLISHED_TYPES and translator.get_asset_key(node) in keys
    }


def build_and_publish(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    settings: Settings,
    manifest: Mapping[str, Any],
    translator: DataopsTranslator,
    window: tuple[date, date] | None = None,
) -> Iterator[Any]:
    """One dbt step: in place on dev; on prod a release, published only when all tests pass."""
    exclude = excluded_tests(manifest, translator, context.assets_def.keys)
    if settings.target not in PUBLISHED_TARGETS:
        invocation = dbt.cli(
            build_args(window, exclude_tests=exclude), context=context, raise_on_error=False
        )
        yield from with_table_metadata(context, list(invocation.stream()), settings, manifest)
        error = invocation.get_error()
        if error is not None:
            raise error
        return
    selected = selected_unique_ids(context, manifest, translator)
    names = sorted(manifest["nodes"][uid]["name"] for uid in selected)
    with ReleaseBuild(
        settings,
        trigger="dagster",
        selection=" ".join(names) if len(names) <= 12 else f"{len(names)} assets",
        dagster_run_id=context.run.run_id,
    ) as release:
        release.prepare(selected)
        invocation = dbt.cli(
            build_args(window, release.dbt_vars, exclude),
            context=context,
            raise_on_error=False,
            target_path=release.target_dir,
        )
        events = list(invocation.stream())
        error = invocation.get_error()
        result = release.finish(invocation.is_successful(), [str(error)] if error else [])
    if result.published:
        context.log.info(
            f"Published release {result.name} ({len(result.built)} relations) in "
            f"{result.switch_seconds:.3f} s"
        )
        yield from with_table_metadata(context, events, settings, manifest)
        return
    # Nothing was published: no materialisation is recorded; the checks show what failed.
    yield from (e for e in events if isinstance(e, (AssetCheckResult, AssetCheckEvaluation)))
    raise Failure(
        description=f"Not published: release {result.name} failed its audit: "
        + "; ".join(result.failures),
        metadata={
            "release": result.name,
            "failures": MetadataValue.json(result.failures),
            "inspect_schemas": ", ".join(result.schemas),
        },
    )


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

    Without partitioned models: one definition. With them: everything not built from them, the
    partitioned models (daily partitions, backfills in one run), and what is built from them.
    The split keeps the steps of a run acyclic (not downstream -> partitioned -> downstream), and
    a test comparing a partitioned model with the other marts (assert_order_lines_reconcile_with_
    orders) runs with the partitioned model, after the marts it reads were rebuilt.
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
            yield from build_and_publish(context, dbt, settings, manifest, translator)

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
    downstream = " ".join(f"{name}+" for name in partitioned)

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
        yield from build_and_publish(context, dbt, settings, manifest, translator, window)

    steps = [unpartitioned("dbt_models", "fqn:*", downstream), dbt_partitioned_models]
    if descendants(manifest, {n["unique_id"] for n in nodes}):
        steps.append(unpartitioned("dbt_downstream_of_partitioned", downstream, models))
    check_singular_test_steps(manifest, translator, steps)
    return steps


def descendants(manifest: Mapping[str, Any], unique_ids: set[str]) -> set[str]:
    """The models, seeds and snapshots built from any of ``unique_ids`` (transitively)."""
    children = manifest.get("child_map", {})
    nodes = manifest.get("nodes", {})
    found: set[str] = set()
    pending = [c for u in unique_ids for c in children.get(u, [])]
    while pending:
        child = pending.pop()
        if child in found or child in unique_ids:
            continue
        if (nodes.get(child) or {}).get("resource_type") in PUBLISHED_TYPES:
            found.add(child)
            pending.extend(children.get(child, []))
    return found


def check_singular_test_steps(
    manifest: Mapping[str, Any], translator: DataopsTranslator, steps: Sequence[AssetsDefinition]
) -> None:
    """A singular test reading tables of several steps must be a check of an asset of the last
    of them: its check runs in that step, after the others were rebuilt."""
    step_of = {key: i for i, step in enumerate(steps) for key in step.keys}
    nodes = manifest.get("nodes", {})
    for unique_id, checked in checked_assets(manifest, translator).items():
        test = nodes[unique_id]
        if test.get("test_metadata") or checked not in step_of:
            continue
        for parent in (test.get("depends_on") or {}).get("nodes") or []:
            if parent not in nodes:
                continue
            parent_key = translator.get_asset_key(nodes[parent])
            if step_of.get(parent_key, -1) > step_of[checked]:
                raise ValueError(
                    f"{test['original_file_path']}: the singular test {test['name']} is a check "
                    f"of {checked.to_user_string()}, which is built before "
                    f"{parent_key.to_user_string()} that the test also reads; set its "
                    f"meta.dagster.ref to {{name: {nodes[parent]['name']}}} "
                    "(tests/dbt/singular/_singular__tests.yml)."
                )
