"""Freshness checks on the raw tables, from the SLA each source declares in its YAML.

The SLA (``freshness: {warn_after, error_after}`` and ``loaded_at_field``) is declared once, in
``models/staging/<source>/_<source>__sources.yml``. These checks run ``dbt source freshness``,
which reads that same declaration, and report dbt's verdict per table: pass, warn (a WARN
check) or error (an ERROR check). Nothing about the SLA is repeated in Python.

They run in every run that loads a raw table (the landing sensor's runs select them with the
assets) and in the daily full build. Their step has a low priority, so it runs after the dbt
steps that were ready at the same time: it does not delay the marts of a landed file.
"""

import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    multi_asset_check,
)
from dagster_dbt import DbtCliResource

from orchestration.assets.translator import raw_asset_key
from orchestration.resources import WAREHOUSE_POOL

CHECK_NAME = "freshness_sla"
# Dagster runs ready steps of higher priority first (default 0): the dbt steps go first.
AFTER_THE_BUILD = {"dagster/priority": "-1"}


def _describe(threshold: Mapping[str, Any] | None) -> str | None:
    if not threshold or not threshold.get("count"):
        return None
    return f"{threshold['count']} {threshold['period']}(s)"


def declared_slas(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Sources with a declared freshness SLA, by dbt unique id."""
    slas = {}
    for unique_id, source in manifest.get("sources", {}).items():
        freshness = source.get("freshness") or {}
        if _describe(freshness.get("warn_after")) or _describe(freshness.get("error_after")):
            slas[unique_id] = source
    return slas


def sla_description(source: Mapping[str, Any]) -> str:
    freshness = source["freshness"]
    parts = [
        f"{label} {text}"
        for label, text in (
            ("warn after", _describe(freshness.get("warn_after"))),
            ("error after", _describe(freshness.get("error_after"))),
        )
        if text
    ]
    return (
        f"max({source.get('loaded_at_field')}) is at most: {', '.join(parts)} old "
        f"(declared in {source['original_file_path']}; evaluated by `dbt source freshness`)."
    )


def check_result(spec_key: AssetCheckKey, result: Mapping[str, Any] | None) -> AssetCheckResult:
    """Turn one entry of dbt's sources.json into a check result."""
    if result is None:
        return AssetCheckResult(
            asset_key=spec_key.asset_key,
            check_name=spec_key.name,
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            metadata={"error": "dbt source freshness returned no result for this source"},
        )
    status = result.get("status")
    metadata: dict[str, Any] = {"dbt_status": str(status)}
    if result.get("max_loaded_at"):
        metadata["max_loaded_at"] = str(result["max_loaded_at"])
        metadata["age_hours"] = round(float(result.get("max_loaded_at_time_ago_in_s", 0)) / 3600, 2)
    if result.get("error") or result.get("message"):
        metadata["message"] = str(result.get("error") or result.get("message"))
    return AssetCheckResult(
        asset_key=spec_key.asset_key,
        check_name=spec_key.name,
        passed=status == "pass",
        severity=AssetCheckSeverity.WARN if status == "warn" else AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def build_freshness_checks(manifest: Mapping[str, Any]) -> list[AssetChecksDefinition]:
    slas = declared_slas(manifest)
    if not slas:
        return []
    specs = {
        unique_id: AssetCheckSpec(
            name=CHECK_NAME,
            asset=raw_asset_key(source["source_name"], source["name"]),
            description=sla_description(source),
        )
        for unique_id, source in slas.items()
    }

    @multi_asset_check(
        name="source_freshness",
        specs=list(specs.values()),
        can_subset=True,
        pool=WAREHOUSE_POOL,
        compute_kind="dbt",
        op_tags=AFTER_THE_BUILD,
    )
    def source_freshness(
        context: AssetCheckExecutionContext, dbt: DbtCliResource
    ) -> Iterator[AssetCheckResult]:
        wanted = {
            unique_id: spec
            for unique_id, spec in specs.items()
            if spec.key in context.selected_asset_check_keys
        }
        selection = [f"source:{slas[u]['source_name']}.{slas[u]['name']}" for u in wanted]
        with tempfile.TemporaryDirectory(prefix="dbt-freshness-") as target:
            invocation = dbt.cli(
                ["source", "freshness", "--select", " ".join(selection)],
                raise_on_error=False,
                target_path=Path(target),
            )
            log = [
                str(event.raw_event.get("info", {}).get("msg", ""))
                for event in invocation.stream_raw_events()
            ]
            sources_json = Path(target) / "sources.json"
            if not sources_json.exists():
                raise RuntimeError(
                    f"`dbt source freshness` wrote no {sources_json.name} "
                    f"(exit {invocation.process.returncode}, {invocation.process.args}); its log:\n"
                    + "\n".join(log[-40:])
                )
            results = json.loads(sources_json.read_text(encoding="utf-8"))["results"]
        by_id = {r["unique_id"]: r for r in results}
        for unique_id, spec in wanted.items():
            yield check_result(spec.key, by_id.get(unique_id))

    return [source_freshness]
