"""Lineage of an incident's asset back to the files and the ingestion batch that fed it.

From dbt's manifest (``parent_map``) the asset's upstream models, seeds and sources; from the load
ledger (``platform.load_ledger``) the files of each upstream source: the incident's own file or
batch when the monitor recorded one (an anomaly on a delivery), otherwise the last batch each
source loaded before the incident was opened.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

LINEAGE_TYPES = ("model", "seed", "snapshot", "source")


def node_for(manifest: Mapping[str, Any], asset: str) -> str | None:
    """The dbt unique id of an asset named ``source.table`` (a source) or ``name`` (a model)."""
    for unique_id, node in manifest.get("sources", {}).items():
        if f"{node['source_name']}.{node['name']}" == asset:
            return unique_id
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") in LINEAGE_TYPES and node.get("name") == asset:
            return unique_id
    return None


def asset_name(manifest: Mapping[str, Any], unique_id: str) -> str:
    node = manifest.get("sources", {}).get(unique_id) or manifest.get("nodes", {}).get(unique_id)
    if not node:
        return unique_id.split(".")[-1]
    if node.get("resource_type") == "source":
        return f"{node['source_name']}.{node['name']}"
    return node["name"]


def upstream(manifest: Mapping[str, Any], start: str) -> dict[str, int]:
    """Every model, seed and source upstream of ``start`` (itself included) -> hops from it."""
    parents = manifest.get("parent_map", {})
    known = {**manifest.get("nodes", {}), **manifest.get("sources", {})}
    hops, queue = {start: 0}, deque([start])
    while queue:
        current = queue.popleft()
        for parent in parents.get(current, []):
            node = known.get(parent) or {}
            if node.get("resource_type") in LINEAGE_TYPES and parent not in hops:
                hops[parent] = hops[current] + 1
                queue.append(parent)
    return hops


def files_behind(
    ledger: Sequence[Mapping[str, Any]], source: str, incident: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The ledger rows of ``source`` (``source.table``) behind an incident: its file, else its
    batch, else the source's last batch loaded before the incident opened."""
    rows = [r for r in ledger if f"{r['source_name']}.{r['table_name']}" == source]
    if incident.get("file_hash"):
        own = [r for r in rows if r["file_hash"] == incident["file_hash"]]
        if own:
            return [{**r, "culprit": True} for r in own]
    if incident.get("batch_id"):
        own = [r for r in rows if r["batch_id"] == incident["batch_id"]]
        if own:
            return [{**r, "culprit": True} for r in own]
    opened = incident.get("opened_at")
    before = [r for r in rows if opened is None or r["finished_at"] <= opened]
    if not before:
        return []
    last_batch = max(before, key=lambda r: r["finished_at"])["batch_id"]
    return [{**r, "culprit": False} for r in before if r["batch_id"] == last_batch]


def incident_lineage(
    manifest: Mapping[str, Any] | None,
    ledger: Sequence[Mapping[str, Any]],
    incident: Mapping[str, Any],
) -> dict[str, Any] | None:
    """{asset, columns: [[{id, name, type, parents, files?}]]}: columns run from the files (left)
    to the incident's asset (right); None when the asset is not in the manifest."""
    if not manifest or not incident.get("asset"):
        return None
    start = node_for(manifest, incident["asset"])
    if start is None:
        return None
    hops = upstream(manifest, start)
    parents = manifest.get("parent_map", {})
    deepest = max(hops.values())
    columns: list[list[dict[str, Any]]] = [[] for _ in range(deepest + 2)]
    files_column: list[dict[str, Any]] = []
    for unique_id, hop in sorted(hops.items(), key=lambda item: (-item[1], item[0])):
        name = asset_name(manifest, unique_id)
        kind = unique_id.split(".")[0]
        entry = {
            "id": unique_id, "name": name, "type": kind,
            "parents": [asset_name(manifest, p) for p in parents.get(unique_id, []) if p in hops],
        }
        if kind == "source":
            files = files_behind(ledger, name, incident)
            for row in files:
                files_column.append({
                    "id": f"file:{row['file_hash']}", "name": row["file_name"], "type": "file",
                    "parents": [], "batch_id": row["batch_id"], "status": row["status"],
                    "rows_loaded": row.get("rows_loaded"), "culprit": row["culprit"],
                    "loaded_at": str(row["finished_at"])[:19], "feeds": name,
                })
            entry["parents"] = sorted({f["name"] for f in files_column if f["feeds"] == name})
        columns[deepest - hop + 1].append(entry)
    columns[0] = files_column
    return {
        "incident_id": incident.get("incident_id"),
        "asset": incident["asset"],
        "columns": [column for column in columns if column],
    }
