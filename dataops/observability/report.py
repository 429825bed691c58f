"""`dataops report`: one self-contained HTML file over the event log and the metric history.

Volume and freshness per monitored table over time (SVG charts drawn by a few lines of inline
JavaScript from data embedded in the file), recent failures and anomalies, and the lineage of a
mart affected by them (from dbt's manifest). Nothing is fetched when the file is opened.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

RECENT = 50


@dataclass(frozen=True)
class ReportData:
    series: dict[str, dict[str, list[tuple[str, float]]]]  # table -> metric -> [(time, value)]
    slas: dict[str, float]  # table -> freshness error_after hours
    anomalies: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    invocations: list[dict[str, Any]]
    lineage: dict[str, Any] | None
    generated_at: str


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute(
        "select count(*) from information_schema.tables where table_schema = 'platform' "
        "and table_name = ?", [name],
    ).fetchone()[0] > 0


def collect(warehouse: Path, manifest_path: Path | None) -> ReportData:
    """Read what the report shows; the warehouse is opened read-only."""
    if not warehouse.exists():
        raise FileNotFoundError(
            f"No warehouse at {warehouse}: run `dataops run` (or set DATAOPS_HOME) first."
        )
    series: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    anomalies: list[dict] = []
    failures: list[dict] = []
    invocations: list[dict] = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if _has_table(con, "metric_history"):
            for row in _rows(con, """
                select
                    coalesce(source_name || '.', '') || table_name as table_key,
                    metric_name,
                    strftime(measured_at, '%Y-%m-%dT%H:%M:%S') as measured_at,
                    metric_value
                from platform.metric_history
                where column_name is null
                    and metric_name in ('row_count', 'rows_added', 'freshness_lag_hours')
                    and metric_value is not null
                order by measured_at
            """):
                series[row["table_key"]][row["metric_name"]].append(
                    (row["measured_at"], row["metric_value"])
                )
        if _has_table(con, "events"):
            anomalies = _rows(con, f"""
                select strftime(occurred_at, '%Y-%m-%d %H:%M:%S') as occurred_at, status,
                    coalesce(source_name || '.', '') || table_name as table_key, message,
                    details::json ->> 'monitor' as monitor, node_id, dbt_invocation_id, batch_id,
                    file_hash
                from platform.events
                where event_type = 'anomaly.detected'
                order by occurred_at desc limit {RECENT}
            """)
            failures = _rows(con, f"""
                select strftime(occurred_at, '%Y-%m-%d %H:%M:%S') as occurred_at, event_type,
                    status,
                    coalesce(source_name || '.', '') || coalesce(table_name, '') as table_key,
                    coalesce(file_name, node_id) as subject, message, dbt_invocation_id, file_hash
                from platform.events
                where event_type <> 'anomaly.detected'
                    and (status in ('error', 'fail', 'warn', 'runtime error', 'quarantined')
                         or event_type in ('file.failed', 'file.quarantined')
                         or event_type like '%drift%' or event_type like '%failed%')
                order by occurred_at desc limit {RECENT}
            """)
            invocations = _rows(con, """
                select strftime(occurred_at, '%Y-%m-%d %H:%M:%S') as occurred_at, status, message,
                    dbt_invocation_id, dagster_run_id
                from platform.events
                where event_type = 'dbt.invocation_ended'
                order by occurred_at desc limit 10
            """)
    manifest = _load_manifest(manifest_path)
    affected = [a["table_key"] for a in anomalies] + [f["table_key"] for f in failures]
    return ReportData(
        series={table: dict(metrics) for table, metrics in sorted(series.items())},
        slas=_slas(manifest),
        anomalies=anomalies,
        failures=failures,
        invocations=invocations,
        lineage=lineage_of_affected_mart(manifest, affected) if manifest else None,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def _load_manifest(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _slas(manifest: dict[str, Any] | None) -> dict[str, float]:
    hours = {"minute": 1 / 60, "hour": 1, "day": 24}
    slas = {}
    for node in (manifest or {}).get("sources", {}).values():
        rule = (node.get("freshness") or {}).get("error_after") or {}
        if rule.get("count") and rule.get("period"):
            slas[f"{node['source_name']}.{node['name']}"] = rule["count"] * hours[rule["period"]]
    return slas


def _node_for(manifest: dict[str, Any], table_key: str) -> str | None:
    for unique_id, node in manifest.get("sources", {}).items():
        if f"{node['source_name']}.{node['name']}" == table_key:
            return unique_id
    for unique_id, node in manifest.get("nodes", {}).items():
        if node["resource_type"] in ("model", "seed") and node["name"] == table_key:
            return unique_id
    return None


def lineage_of_affected_mart(
    manifest: dict[str, Any], affected: list[str]
) -> dict[str, Any] | None:
    """The first affected table that feeds a mart, that mart, and every node on the paths between.

    Returns {affected, mart, nodes: [{id, name, type, depth}], edges: [[from, to]]}.
    """
    children = manifest.get("child_map", {})
    nodes = {**manifest.get("nodes", {}), **manifest.get("sources", {})}

    def is_mart(unique_id: str) -> bool:
        node = nodes.get(unique_id) or {}
        return node.get("resource_type") == "model" and "marts" in node.get("fqn", [])

    for table_key in dict.fromkeys(affected):
        start = _node_for(manifest, table_key)
        if start is None:
            continue
        depth = {start: 0}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            for child in children.get(current, []):
                if child in nodes and nodes[child]["resource_type"] in ("model", "seed") \
                        and child not in depth:
                    depth[child] = depth[current] + 1
                    queue.append(child)
        marts = sorted((uid for uid in depth if is_mart(uid)), key=lambda uid: (depth[uid], uid))
        if not marts:
            continue
        mart = marts[0]
        parents = manifest.get("parent_map", {})
        on_path, queue = {mart}, deque([mart])
        while queue:
            for parent in parents.get(queue.popleft(), []):
                if parent in depth and parent not in on_path:
                    on_path.add(parent)
                    queue.append(parent)
        return {
            "affected": table_key,
            "mart": nodes[mart]["name"],
            "nodes": [
                {"id": uid, "name": nodes[uid]["name"] if uid != start else table_key,
                 "type": nodes[uid]["resource_type"], "depth": depth[uid]}
                for uid in sorted(on_path, key=lambda uid: (depth[uid], uid))
            ],
            "edges": [[p, c] for c in on_path for p in parents.get(c, []) if p in on_path],
        }
    return None


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    cells = ("".join(f"<td>{html.escape(str(row.get(c) or ''))}</td>" for c in columns)
             for row in rows)
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(data: ReportData, docs_link: str | None = None) -> str:
    payload = json.dumps(
        {"series": data.series, "slas": data.slas, "lineage": data.lineage}, sort_keys=True
    ).replace("</", "<\\/")
    docs = (
        f'<p>dbt documentation: <a href="{html.escape(docs_link)}">{html.escape(docs_link)}</a></p>'
        if docs_link else ""
    )
    lineage_title = "Lineage of an affected mart"
    if data.lineage:
        lineage_title = (
            f"Lineage: {html.escape(data.lineage['affected'])} &rarr; "
            f"{html.escape(data.lineage['mart'])}"
        )
    return TEMPLATE.format(
        generated_at=html.escape(data.generated_at),
        docs=docs,
        anomalies=_table(
            data.anomalies,
            ["occurred_at", "monitor", "table_key", "message", "batch_id", "dbt_invocation_id"],
            "No anomaly detected.",
        ),
        failures=_table(
            data.failures,
            ["occurred_at", "event_type", "status", "table_key", "subject", "message", "file_hash",
             "dbt_invocation_id"],
            "No failure recorded.",
        ),
        invocations=_table(
            data.invocations,
            ["occurred_at", "status", "message", "dbt_invocation_id", "dagster_run_id"],
            "No dbt invocation recorded yet.",
        ),
        lineage_title=lineage_title,
        payload=payload,
        script=(Path(__file__).parent / "report.js").read_text(encoding="utf-8"),
    )


def write_report(warehouse: Path, output: Path, manifest_path: Path | None,
                 docs_link: str | None = None) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(collect(warehouse, manifest_path), docs_link), encoding="utf-8")
    return output


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Data platform observability report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 32px; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.chart {{ border: 1px solid #ddd; padding: 8px; }} .chart h3 {{ font-size: 13px; margin: 0 0 4px; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }}
.empty {{ color: #777; }} .sla {{ stroke: #c00; stroke-dasharray: 4 3; }}
</style></head>
<body>
<h1>Data platform observability report</h1>
<p>Generated {generated_at} from platform.events and platform.metric_history.</p>
{docs}
<h2>Anomalies</h2>
{anomalies}
<h2>Recent failures</h2>
{failures}
<h2>Volume per table (rows)</h2>
<div class="charts" id="volume-charts"></div>
<h2>Freshness per table (hours since the newest load; dashed: SLA)</h2>
<div class="charts" id="freshness-charts"></div>
<h2 id="lineage-title">{lineage_title}</h2>
<div id="lineage"><p class="empty">No affected mart.</p></div>
<h2>Recent dbt invocations</h2>
{invocations}
<script id="report-data" type="application/json">{payload}</script>
<script>{script}</script>
</body></html>
"""
