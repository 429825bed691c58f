"""How dbt resources become Dagster assets: keys, groups by layer, owners, automation.

Everything is read from the dbt YAML through the manifest: descriptions and column schemas (the
dagster-dbt defaults; a test's description becomes its asset check's), owners from
``meta.owner`` (a model without one inherits the owners of the sources it is built from,
transitively: a mart built from shop and payments data has both teams; the seed declares its
owner in dbt_project.yml), and the daily partitions of a model from ``meta.partitions``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetKey,
    AssetSpec,
    AutomationCondition,
    DailyPartitionsDefinition,
)
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

RAW_PREFIX = "raw"
SEED_GROUP = "reference"


def raw_asset_key(source_name: str, table_name: str) -> AssetKey:
    """The key of a raw table: the ingestion asset and the dbt source share it."""
    return AssetKey([RAW_PREFIX, source_name, table_name])


def owner_tag(owner: str) -> str:
    """Dagster owners are e-mail addresses or ``team:<name>``; dbt YAML says ``shop-team``."""
    return owner if "@" in owner or owner.startswith("team:") else f"team:{owner}"


def partitions_meta(props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = {**(props.get("meta") or {}), **((props.get("config") or {}).get("meta") or {})}
    return meta.get("partitions")


def daily_partitions(props: Mapping[str, Any]) -> DailyPartitionsDefinition | None:
    """Daily partitions declared in a model's ``config.meta.partitions: {daily_start: ...}``."""
    declared = partitions_meta(props)
    if not declared:
        return None
    start = declared.get("daily_start") if isinstance(declared, Mapping) else None
    if not isinstance(start, str):
        raise ValueError(
            f"{props.get('original_file_path')}: config.meta.partitions must be "
            f"{{daily_start: 'YYYY-MM-DD'}}, got {declared!r}"
        )
    # end_offset=1: today's partition exists, so a run can (re)build the day in progress.
    return DailyPartitionsDefinition(start_date=start, end_offset=1)


def _declared_owner(props: Mapping[str, Any]) -> str | None:
    meta = {**(props.get("meta") or {}), **((props.get("config") or {}).get("meta") or {})}
    return meta.get("owner")


class DataopsTranslator(DagsterDbtTranslator):
    """Sources map onto the raw tables that ingestion writes; models are grouped by layer."""

    def __init__(self, manifest: Mapping[str, Any]):
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self._source_owners = {
            unique_id: (source.get("meta") or {}).get("owner")
            or ((source.get("config") or {}).get("meta") or {}).get("owner")
            for unique_id, source in manifest.get("sources", {}).items()
        }
        self._parents = {
            unique_id: list((node.get("depends_on") or {}).get("nodes") or [])
            for unique_id, node in manifest.get("nodes", {}).items()
        }
        self._declared_owners = {
            unique_id: _declared_owner(node)
            for unique_id, node in manifest.get("nodes", {}).items()
        }

    def _inherited_owners(self, unique_id: str) -> list[str]:
        """Owners of everything upstream: a node's own meta.owner stops the walk up its branch,
        otherwise the owners of the sources (and owned models or seeds) it is built from."""
        owners: set[str] = set()
        seen: set[str] = set()
        pending = list(self._parents.get(unique_id, []))
        while pending:
            parent = pending.pop()
            if parent in seen:
                continue
            seen.add(parent)
            owner = self._source_owners.get(parent) or self._declared_owners.get(parent)
            if owner:
                owners.add(owner_tag(owner))
            else:
                pending.extend(self._parents.get(parent, []))
        return sorted(owners)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return raw_asset_key(dbt_resource_props["source_name"], dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        resource_type = dbt_resource_props["resource_type"]
        if resource_type == "source":
            return RAW_PREFIX
        if resource_type == "seed":
            return SEED_GROUP
        if resource_type == "snapshot":
            return "snapshots"
        # fqn: [project, layer, (domain...), name] -> the layer folder under models/
        fqn = dbt_resource_props.get("fqn") or []
        return fqn[1] if len(fqn) > 2 else "models"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        meta = {
            **(dbt_resource_props.get("meta") or {}),
            **((dbt_resource_props.get("config") or {}).get("meta") or {}),
        }
        if meta.get("owner"):
            return [owner_tag(meta["owner"])]
        if dbt_resource_props["resource_type"] == "source":
            owner = self._source_owners.get(dbt_resource_props["unique_id"])
            return [owner_tag(owner)] if owner else None
        return self._inherited_owners(dbt_resource_props["unique_id"]) or None

    def get_asset_check_spec(
        self,
        asset_spec: AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> AssetCheckSpec | None:
        """dagster-dbt's check of a test, described by the test's YAML ``description`` (a
        singular test's in tests/dbt/singular/_singular__tests.yml); dagster-dbt reads only
        ``meta.description``."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        description = (manifest.get("nodes", {}).get(unique_id) or {}).get("description")
        if spec is None or spec.description or not description:
            return spec
        return spec._replace(description=description.strip())

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> AutomationCondition | None:
        # Models follow their upstream: when a parent is updated outside a run that already
        # rebuilt them (a UI materialisation, a backfill), they are rebuilt. Partitioned models
        # are rebuilt by the landing sensor, the daily schedule and backfills instead.
        if dbt_resource_props["resource_type"] not in ("model", "snapshot"):
            return None
        if partitions_meta(dbt_resource_props):
            return None
        return follow_upstream()


def follow_upstream() -> AutomationCondition:
    """``eager()`` without its two "missing" clauses: a dbt model is rebuilt when a parent is
    updated, not merely because Dagster has never recorded it (dbt may have built it outside
    Dagster), and a parent never recorded by Dagster (a seed) does not block it. Updates made by
    a run that also rebuilt the model do not trigger it again."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("follow_upstream")
