"""`dataops report`: the health dashboard, one self-contained HTML file.

What is true now, per asset (source, seed, model): its tests' last results, freshness, volume,
schema and open anomalies, from the incidents table (one row per problem, open until it passes
again) and the last result of each test, not from every failure of every run. Each asset's
history (incidents, test results, builds) is one click away; every test is listed with its last
results and can be searched; the monitored metrics are drawn with plotly (real time axes, the
anomaly model's expected band, anomalies and incidents marked); each incident shows the lineage of
its asset back to the files and the batch that fed it. Nothing is fetched when the file is
opened: plotly.js is inlined.
"""

from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from dataops.observability import charts, lineage, slo

HISTORY = 10  # results kept per test and per model build
AS_OF_ENV = "DATAOPS_AS_OF"  # the simulated clock the dbt hooks also read
TABLE_METRICS = ("rows_added", "row_count", "freshness_lag_hours")
VOLUME_MONITORS = {"volume_anomaly"}
SCHEMA_MONITORS = {"schema_change", "schema_drift"}
FRESHNESS_MONITORS = {"freshness_anomaly", "model_freshness"}
SEVERITY = {"unknown": 0, "ok": 1, "warn": 2, "fail": 3}
TEST_STATUS = {"pass": "ok", "success": "ok", "warn": "warn", "fail": "fail", "error": "fail",
               "runtime error": "fail", "skipped": "warn"}
OPEN = ("open", "acknowledged")
INCIDENT_BADGE = {"open": "fail", "acknowledged": "warn", "resolved": "ok"}


@dataclass
class Check:
    status: str  # ok | warn | fail | unknown
    text: str


@dataclass
class AssetHealth:
    key: str
    kind: str  # source | model | seed | snapshot
    status: str = "unknown"
    tests: Check = field(default_factory=lambda: Check("unknown", "no tests"))
    freshness: Check = field(default_factory=lambda: Check("unknown", "-"))
    volume: Check = field(default_factory=lambda: Check("unknown", "-"))
    schema: Check = field(default_factory=lambda: Check("unknown", "-"))
    anomalies: list[str] = field(default_factory=list)
    monitored: bool = False
    owner: str | None = None


@dataclass(frozen=True)
class ReportData:
    generated_at: str
    as_of: str
    assets: list[AssetHealth]
    tests: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    builds: dict[str, list[dict[str, Any]]]  # asset -> its last build results
    figures: list[dict[str, Any]]  # {id, asset, title, figure, group}
    lineages: dict[str, dict[str, Any]]  # incident id -> lineage
    slis: list[dict[str, Any]]
    invocations: list[dict[str, Any]]
    quarantined: list[dict[str, Any]]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return con.execute(
        "select count(*) from information_schema.columns where table_schema = 'platform' "
        "and table_name = ? and column_name = ?", [table, column],
    ).fetchone()[0] > 0


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute(
        "select count(*) from information_schema.tables where table_schema = 'platform' "
        "and table_name = ?", [name],
    ).fetchone()[0] > 0


def _as_of() -> datetime:
    text = os.environ.get(AS_OF_ENV, "").strip()
    if text:
        return datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None)
    return datetime.now(UTC).replace(tzinfo=None)


def _load_manifest(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _slas(manifest: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """source.table -> {warn_after, error_after} in hours."""
    hours = {"minute": 1 / 60, "hour": 1, "day": 24}
    slas: dict[str, dict[str, float]] = {}
    for node in (manifest or {}).get("sources", {}).values():
        freshness = node.get("freshness") or {}
        for level in ("warn_after", "error_after"):
            rule = freshness.get(level) or {}
            if rule.get("count") and rule.get("period"):
                slas.setdefault(f"{node['source_name']}.{node['name']}", {})[level] = (
                    rule["count"] * hours[rule["period"]])
    return slas


def _manifest_assets(manifest: Mapping[str, Any] | None) -> dict[str, AssetHealth]:
    assets: dict[str, AssetHealth] = {}
    for unique_id, node in sorted((manifest or {}).get("sources", {}).items()):
        key = lineage.asset_name(manifest, unique_id)
        assets[key] = AssetHealth(key, "source", owner=(node.get("meta") or {}).get("owner"))
    for _, node in sorted((manifest or {}).get("nodes", {}).items()):
        if node.get("resource_type") in ("model", "seed", "snapshot"):
            meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
            assets[node["name"]] = AssetHealth(node["name"], node["resource_type"],
                                               owner=meta.get("owner"))
    return assets


def _test_catalogue(manifest: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every declared test (data and unit tests) -> {name, asset, kind}."""
    tests: dict[str, dict[str, Any]] = {}
    manifest = manifest or {}
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") != "test":
            continue
        attached = node.get("attached_node") or next(
            (n for n in (node.get("depends_on") or {}).get("nodes", [])
             if not n.startswith("test.")), None)
        metadata = node.get("test_metadata") or {}
        tests[unique_id] = {
            "name": node["name"], "kind": metadata.get("name") or "singular",
            "asset": lineage.asset_name(manifest, attached) if attached else "",
            "column": node.get("column_name") or "",
        }
    for unique_id, node in manifest.get("unit_tests", {}).items():
        tests[unique_id] = {"name": node["name"], "kind": "unit", "asset": node.get("model", ""),
                            "column": ""}
    return tests


def _worst(*statuses: str) -> str:
    return max(statuses, key=lambda s: SEVERITY[s]) if statuses else "unknown"


def _results(con: duckdb.DuckDBPyConnection, resource_types: tuple[str, ...]) -> list[dict]:
    """The last HISTORY node results per node of these resource types, newest first."""
    placeholders = ", ".join("?" for _ in resource_types)
    return _rows(con, f"""
        select node_id, status, message, occurred_at,
            coalesce(source_name || '.', '') || coalesce(table_name, '') as asset
        from platform.events
        where event_type = 'dbt.node_result'
            and json_extract_string(details, '$.resource_type') in ({placeholders})
        qualify row_number() over (partition by node_id order by occurred_at desc) <= {HISTORY}
        order by node_id, occurred_at desc
    """, list(resource_types))


def _incident_times(con: duckdb.DuckDBPyConnection, incidents: list[dict]) -> dict[str, datetime]:
    """When each incident was first seen on the platform's clock (its first invocation)."""
    invocations = {i["first_invocation_id"] for i in incidents if i.get("first_invocation_id")}
    if not invocations:
        return {}
    placeholders = ", ".join("?" for _ in invocations)
    ended = dict(con.execute(
        f"select dbt_invocation_id, max(occurred_at) from platform.events "
        f"where dbt_invocation_id in ({placeholders}) group by 1", sorted(invocations),
    ).fetchall())
    return {i["incident_id"]: ended.get(i["first_invocation_id"]) or i["opened_at"]
            for i in incidents}


def collect(warehouse: Path, manifest_path: Path | None,
            as_of: datetime | None = None) -> ReportData:
    """Read what the dashboard shows; the warehouse is opened read-only."""
    if not warehouse.exists():
        raise FileNotFoundError(
            f"No warehouse at {warehouse}: run `dataops run` (or set DATAOPS_HOME) first."
        )
    as_of = as_of or _as_of()
    manifest = _load_manifest(manifest_path)
    assets = _manifest_assets(manifest)
    catalogue = _test_catalogue(manifest)
    series: dict[tuple[str, str, str | None, str], list] = defaultdict(list)
    bands: dict[tuple[str, str, str | None, str], list[charts.Band]] = defaultdict(list)
    anomaly_points: dict[tuple[str, str | None, str], list] = defaultdict(list)
    node_of: dict[str, str] = {}
    test_rows: list[dict] = []
    build_rows: list[dict] = []
    incidents: list[dict] = []
    invocations: list[dict] = []
    ledger: list[dict] = []
    slis: list[dict] = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if _has_table(con, "metric_history"):
            # the band each measurement was judged with (a history older than bands has none)
            band = ("expected_value, lower_bound, upper_bound"
                    if _has_column(con, "metric_history", "upper_bound")
                    else "null as expected_value, null as lower_bound, null as upper_bound")
            for row in _rows(con, f"""
                select node_id, table_kind,
                    coalesce(source_name || '.', '') || table_name as asset,
                    column_name, metric_name, measured_at, metric_value, {band}
                from platform.metric_history
                where metric_value is not null
                    and metric_name in ('rows_added', 'row_count', 'freshness_lag_hours',
                                        'null_rate', 'distinct_count', 'min', 'max', 'mean')
                order by measured_at
            """):
                if row["column_name"] is None and row["metric_name"] not in TABLE_METRICS:
                    continue
                node_of[row["asset"]] = row["node_id"]
                key = (row["asset"], row["table_kind"], row["column_name"], row["metric_name"])
                series[key].append((row["measured_at"], row["metric_value"]))
                if row["expected_value"] is not None:
                    bands[key].append((row["measured_at"], row["expected_value"],
                                       row["lower_bound"], row["upper_bound"]))
        if _has_table(con, "events"):
            test_rows = _results(con, ("test", "unit_test"))
            build_rows = _results(con, ("model", "seed", "snapshot"))
            for row in _rows(con, """
                select occurred_at, message,
                    coalesce(source_name || '.', '') || table_name as asset,
                    details::json ->> 'monitor' as monitor,
                    details::json ->> 'column_name' as column_name,
                    details::json ->> 'metric_name' as metric_name,
                    try_cast(details::json ->> 'metric_value' as double) as metric_value,
                    try_cast(details::json ->> 'tolerance' as double) as tolerance,
                    try_cast(details::json ->> 'measured_at' as timestamp) as measured_at
                from platform.events
                where event_type = 'anomaly.detected'
                order by occurred_at
            """):
                anomaly_points[(row["asset"], row["column_name"], row["metric_name"])].append({
                    "at": row["measured_at"] or row["occurred_at"], "value": row["metric_value"],
                    "tolerance": row["tolerance"], "message": row["message"],
                })
            invocations = _rows(con, """
                select occurred_at, status, message, dbt_invocation_id, dagster_run_id
                from platform.events
                where event_type = 'dbt.invocation_ended'
                order by occurred_at desc limit 10
            """)
        if _has_table(con, "incidents"):
            incidents = _rows(con, """
                select * from platform.incidents
                order by case status when 'open' then 0 when 'acknowledged' then 1 else 2 end,
                    opened_at desc, incident_id
            """)
            seen_at = _incident_times(con, incidents)
            for incident in incidents:
                incident["seen_at"] = seen_at.get(incident["incident_id"], incident["opened_at"])
        if _has_table(con, "load_ledger"):
            ledger = _rows(con, "select * from platform.load_ledger order by finished_at")
        declared = slo.declared_slos(manifest) if manifest else []
        if declared and _has_table(con, "events"):
            slis = [
                {"model": s.model, "objective": s.objective, "window_days": s.window_days,
                 "target": s.target, "value": s.value, "budget_left": s.budget_left, "met": s.met}
                for s in slo.measure(con, declared, as_of)
            ]
    slas = _slas(manifest)
    tests = _tests(catalogue, test_rows)
    builds: dict[str, list[dict]] = defaultdict(list)
    for row in build_rows:
        builds[row["asset"] or row["node_id"].split(".")[-1]].append(row)
    for key in {*(s[0] for s in series), *(t["asset"] for t in tests if t["asset"]),
                *(i["asset"] for i in incidents if i["asset"])}:
        assets.setdefault(key, AssetHealth(key, "source" if "." in key else "model"))
    for asset in assets.values():
        _judge(asset, tests, incidents, series, builds.get(asset.key, []), slas, as_of)
    figures = _figures(series, bands, anomaly_points, incidents, slas)
    lineages = {}
    for incident in incidents[:30]:
        found = lineage.incident_lineage(manifest, ledger, incident)
        if found:
            lineages[incident["incident_id"]] = found
    quarantined = [r for r in ledger if r["status"] == "quarantined"]
    return ReportData(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        as_of=as_of.strftime("%Y-%m-%d %H:%M:%S"),
        assets=sorted(assets.values(),
                      key=lambda a: (-SEVERITY[a.status], a.kind != "source", a.key)),
        tests=tests, incidents=incidents, builds=dict(builds), figures=figures,
        lineages=lineages, slis=slis, invocations=invocations, quarantined=quarantined[-20:],
    )


def _tests(catalogue: dict[str, dict], rows: list[dict]) -> list[dict[str, Any]]:
    """Every declared test (and every test that reported) with its last results, newest first."""
    history: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        history[row["node_id"]].append(row)
    tests = []
    for node_id in sorted(set(catalogue) | set(history)):
        info = catalogue.get(node_id) or {
            "name": node_id.split(".")[-1], "kind": "", "column": "",
            "asset": history[node_id][0]["asset"]}
        results = history.get(node_id, [])
        last = results[0] if results else None
        tests.append({
            "node_id": node_id, **info,
            "status": last["status"] if last else "not run",
            "last_at": last["occurred_at"] if last else None,
            "message": (last or {}).get("message") or "",
            "history": [(r["occurred_at"], r["status"]) for r in results],
        })
    return tests


def _judge(asset: AssetHealth, tests: list[dict], incidents: list[dict],
           series: Mapping[tuple, list], builds: list[dict], slas: Mapping[str, dict],
           as_of: datetime) -> None:
    """Fill in what is true now for one asset."""
    mine = [t for t in tests if t["asset"] == asset.key and t["status"] != "not run"]
    if mine:
        failing = [t["name"] for t in mine if TEST_STATUS.get(t["status"]) == "fail"]
        warned = [t["name"] for t in mine if TEST_STATUS.get(t["status"]) == "warn"]
        passed = len(mine) - len(failing) - len(warned)
        text = f"{passed}/{len(mine)} passing"
        if failing:
            text += f", {len(failing)} failing"
        if warned:
            text += f", {len(warned)} warning"
        asset.tests = Check("fail" if failing else "warn" if warned else "ok", text)
    open_incidents = [i for i in incidents if i["asset"] == asset.key and i["status"] in OPEN]
    by_monitor = defaultdict(list)
    for incident in open_incidents:
        by_monitor[incident["monitor"]].append(incident)
        if incident["monitor"] in VOLUME_MONITORS | SCHEMA_MONITORS | FRESHNESS_MONITORS:
            asset.anomalies.append(f"{incident['incident_id']} ({incident['monitor']})")
        elif incident["kind"] != "test_failure":
            asset.anomalies.append(f"{incident['incident_id']}: {incident['cause']}")
    table_series = {metric: points for (key, _, column, metric), points in series.items()
                    if key == asset.key and column is None}
    asset.monitored = bool(table_series)

    freshness_incidents = [i for m in FRESHNESS_MONITORS for i in by_monitor.get(m, [])]
    lag = table_series.get("freshness_lag_hours")
    if lag:
        measured_at, value = lag[-1]
        hours = value + max((as_of - measured_at).total_seconds(), 0) / 3600
        sla = slas.get(asset.key, {})
        status = ("fail" if sla.get("error_after") and hours > sla["error_after"] else
                  "warn" if sla.get("warn_after") and hours > sla["warn_after"] else "ok")
        limit = f" (SLA {sla['error_after']:g} h)" if sla.get("error_after") else ""
        asset.freshness = Check(status, f"loaded {hours:.1f} h ago{limit}")
    elif builds:
        built = next((b for b in builds if b["status"] == "success"), None)
        if built:
            hours = max((as_of - built["occurred_at"]).total_seconds(), 0) / 3600
            asset.freshness = Check("ok", f"built {hours:.1f} h ago")
        else:
            asset.freshness = Check("fail", f"last build: {builds[0]['status']}")
    if freshness_incidents:
        asset.freshness = Check("fail", freshness_incidents[0]["cause"])

    volume_metric = "rows_added" if "rows_added" in table_series else "row_count"
    if volume_metric in table_series:
        points = table_series[volume_metric]
        label = "rows delivered" if volume_metric == "rows_added" else "rows"
        asset.volume = Check("ok", f"{points[-1][1]:,.0f} {label}")
    volume_incidents = [i for m in VOLUME_MONITORS for i in by_monitor.get(m, [])]
    if volume_incidents:
        asset.volume = Check("fail", volume_incidents[0]["cause"])

    schema_incidents = [i for m in SCHEMA_MONITORS for i in by_monitor.get(m, [])]
    if schema_incidents:
        asset.schema = Check("fail", schema_incidents[0]["cause"])
    elif asset.monitored and asset.kind == "source":
        asset.schema = Check("ok", "as declared")

    statuses = [asset.tests.status, asset.freshness.status, asset.volume.status,
                asset.schema.status]
    if any(i["status"] == "open" for i in open_incidents):
        statuses.append("fail")
    elif open_incidents:
        statuses.append("warn")  # acknowledged: someone is on it
    asset.status = _worst(*statuses)


def _figures(series: Mapping[tuple, list], bands: Mapping[tuple, list[charts.Band]],
             anomaly_points: Mapping[tuple, list], incidents: list[dict],
             slas: Mapping[str, dict]) -> list[dict[str, Any]]:
    figures = []
    markers = defaultdict(list)
    for incident in incidents:
        markers[incident["asset"]].append(
            {"at": incident["seen_at"], "incident_id": incident["incident_id"],
             "cause": incident["cause"]})
    for (asset, kind, column, metric), points in sorted(
            series.items(), key=lambda item: (item[0][0], item[0][2] or "", item[0][3])):
        if column is None and metric == "row_count" and (asset, kind, None, "rows_added") in series:
            continue  # a source's volume is what each delivery added
        anomalies = anomaly_points.get((asset, column, metric), [])
        if metric == "freshness_lag_hours":
            title, unit = f"{asset}: hours since the newest load", "hours"
            figure = charts.metric_figure(
                title, points, unit=unit, anomalies=anomalies, incidents=markers[asset],
                sla=slas.get(asset, {}).get("error_after"))
        else:
            what = {"rows_added": "rows delivered per load", "row_count": "rows"}.get(metric)
            title = f"{asset}: {what}" if column is None else f"{asset}.{column}: {metric}"
            figure = charts.metric_figure(
                title, points, unit=metric, band=bands.get((asset, kind, column, metric), ()),
                anomalies=anomalies,
                incidents=markers[asset] if column is None else [],
                nonnegative=metric not in ("mean", "min", "max"))
        figures.append({
            "id": f"chart-{len(figures)}", "asset": asset, "title": title, "figure": figure,
            "group": "table" if column is None else "column",
            "points": len(points), "anomalies": len(anomalies),
        })
    return figures


# ------------------------------------------------------------------------------------------ HTML

def _e(value: Any) -> str:
    if isinstance(value, datetime):
        value = value.strftime("%Y-%m-%d %H:%M")
    return html.escape("" if value is None else str(value))


def _badge(status: str, text: str | None = None) -> str:
    kind = TEST_STATUS.get(status, status if status in SEVERITY else "unknown")
    return f'<span class="badge {kind}">{_e(text or status)}</span>'


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def _tiles(data: ReportData) -> str:
    counts = defaultdict(int)
    for asset in data.assets:
        counts[asset.status] += 1
    judged = [t for t in data.tests if t["status"] != "not run"]
    passing = sum(1 for t in judged if TEST_STATUS.get(t["status"]) == "ok")
    open_incidents = [i for i in data.incidents if i["status"] in OPEN]
    monitored = sum(1 for a in data.assets if a.monitored)
    last = data.invocations[0] if data.invocations else None
    slis_met = [s for s in data.slis if s["met"] is not None]
    tiles = [
        ("assets-failing", counts["fail"], "assets failing", "fail" if counts["fail"] else "ok"),
        ("assets-warning", counts["warn"], "assets warning", "warn" if counts["warn"] else "ok"),
        ("assets-healthy", counts["ok"], "assets healthy", "ok"),
        ("open-incidents", len(open_incidents), "open incidents",
         "fail" if open_incidents else "ok"),
        ("tests-passing", f"{passing}/{len(judged)}", "tests passing (last result)",
         "ok" if passing == len(judged) else "fail"),
        ("monitored", f"{monitored}/{len(data.assets)}", "assets monitored", "unknown"),
    ]
    if slis_met:
        met = sum(1 for s in slis_met if s["met"])
        tiles.append(("slos-met", f"{met}/{len(slis_met)}", "SLIs meeting their SLO",
                      "ok" if met == len(slis_met) else "fail"))
    if last:
        tiles.append(("last-run", last["occurred_at"], f"last dbt run: {last['status']}",
                      "ok" if last["status"] == "success" else "fail"))
    return "".join(
        f'<div class="tile {status}" data-tile="{name}"><div class="value">{_e(value)}</div>'
        f'<div class="label">{_e(label)}</div></div>'
        for name, value, label, status in tiles
    )


def _history_strip(history: list[tuple[datetime, str]]) -> str:
    return "".join(
        f'<span class="dot {TEST_STATUS.get(status, "unknown")}" '
        f'title="{_e(at)}: {_e(status)}"></span>' for at, status in reversed(history)
    )


def _asset_rows(data: ReportData) -> str:
    charts_of = {f["asset"] for f in data.figures}
    parts = []
    for asset in data.assets:
        incidents = [i for i in data.incidents if i["asset"] == asset.key]
        tests = [t for t in data.tests if t["asset"] == asset.key]
        cells = "".join(
            f'<span class="cell {check.status}" data-check="{name}">{_e(check.text)}</span>'
            for name, check in (("tests", asset.tests), ("freshness", asset.freshness),
                                ("volume", asset.volume), ("schema", asset.schema))
        )
        anomalies = "; ".join(asset.anomalies) or "-"
        owner = f" · {_e(asset.owner)}" if asset.owner else ""
        body = [
            f"<h4>Incidents on {_e(asset.key)} (all, newest first)</h4>",
            _table(incidents, ["incident_id", "status", "kind", "monitor", "opened_at",
                               "resolved_at", "occurrences", "cause", "note"], "No incident."),
            "<h4>Tests: last results (oldest to newest)</h4>",
            _table([{"test": t["name"], "status": t["status"], "last run": t["last_at"],
                     "message": t["message"]} for t in tests],
                   ["test", "status", "last run", "message"], "No test on this asset."),
        ]
        if tests:
            body.append('<p class="strips">' + "".join(
                f'<span class="strip">{_e(t["name"])} {_history_strip(t["history"])}</span>'
                for t in tests) + "</p>")
        builds = data.builds.get(asset.key, [])
        if builds:
            body.append("<h4>Last builds</h4>")
            body.append(_table(builds, ["occurred_at", "status", "message"], ""))
        if asset.key in charts_of:
            body.append(f'<p><a href="#charts-{_e(asset.key)}">Charts of {_e(asset.key)}</a></p>')
        parts.append(
            f'<details class="asset {asset.status}" data-asset="{_e(asset.key)}" '
            f'data-status="{asset.status}"><summary>'
            f'<span class="cell name">{_badge(asset.status)} {_e(asset.key)} '
            f'<small>{_e(asset.kind)}{owner}</small></span>'
            f'{cells}<span class="cell anomalies {"fail" if asset.anomalies else ""}">'
            f'{_e(anomalies)}</span></summary><div class="history">{"".join(body)}</div></details>'
        )
    return "".join(parts)


def _test_list(data: ReportData) -> str:
    rows = []
    for test in data.tests:
        search = " ".join([test["name"], test["asset"], test["kind"], test["column"],
                           test["status"], test["message"]]).lower()
        rows.append(
            f'<tr class="test-row" data-status="{_e(TEST_STATUS.get(test["status"], "unknown"))}" '
            f'data-search="{_e(search)}"><td>{_e(test["name"])}</td><td>{_e(test["kind"])}</td>'
            f'<td>{_e(test["asset"])}</td><td>{_e(test["column"])}</td>'
            f'<td>{_badge(test["status"])}</td><td>{_e(test["last_at"])}</td>'
            f'<td class="results">{_history_strip(test["history"])}</td>'
            f'<td class="message">{_e(test["message"])}</td></tr>'
        )
    return (
        '<div class="scroll"><table id="test-table"><thead><tr><th>test</th><th>kind</th>'
        '<th>asset</th><th>column</th><th>last status</th><th>last run</th>'
        '<th>last results (oldest to newest)</th><th>message</th></tr></thead><tbody>'
        + "".join(rows) + "</tbody></table></div>"
    )


def _incident_list(data: ReportData) -> str:
    if not data.incidents:
        return '<p class="empty">No incident.</p>'
    parts = []
    for incident in data.incidents:
        found = data.lineages.get(incident["incident_id"])
        sample = ""
        note = f"; note: {_e(incident['note'])}" if incident["note"] else ""
        if incident.get("failing_rows"):
            sample = f'<pre class="sample">{_e(incident["failing_rows"][:2000])}</pre>'
        parts.append(
            f'<details class="incident {incident["status"]}" '
            f'data-incident="{_e(incident["incident_id"])}"><summary>'
            f'{_badge(INCIDENT_BADGE.get(incident["status"], "unknown"), incident["status"])} '
            f'<b>{_e(incident["incident_id"])}</b> {_e(incident["kind"])} on '
            f'<b>{_e(incident["asset"])}</b> by {_e(incident["monitor"])}: {_e(incident["cause"])} '
            f'<small>opened {_e(incident["opened_at"])}, seen {_e(incident["occurrences"])}x'
            f'{", resolved " + _e(incident["resolved_at"]) if incident["resolved_at"] else ""}'
            f'</small></summary>'
            f'<p>first invocation {_e(incident["first_invocation_id"])}, batch '
            f'{_e(incident["batch_id"] or "-")}, file {_e(incident["file_hash"] or "-")}, '
            f'Dagster run {_e(incident["dagster_run_id"] or "-")}{note}</p>'
            f'{sample}{_lineage(found)}</details>'
        )
    return "".join(parts)


def _lineage(found: dict[str, Any] | None) -> str:
    if not found:
        return '<p class="empty">No lineage: the asset is not in the manifest.</p>'
    columns = []
    for column in found["columns"]:
        nodes = []
        for node in column:
            extra = ""
            if node["type"] == "file":
                extra = (f'<small>batch {_e(node["batch_id"])}, {_e(node["status"])}, '
                         f'{_e(node["rows_loaded"])} rows, {_e(node["loaded_at"])}</small>')
            elif node["parents"]:
                extra = f'<small>from {_e(", ".join(node["parents"]))}</small>'
            culprit = " culprit" if node.get("culprit") else ""
            target = " affected" if node["name"] == found["asset"] else ""
            nodes.append(f'<div class="lineage-node {node["type"]}{culprit}{target}">'
                         f'<b>{_e(node["name"])}</b>{extra}</div>')
        columns.append(f'<div class="lineage-column">{"".join(nodes)}</div>')
    return (f'<div class="lineage" data-lineage-of="{_e(found["asset"])}">'
            + '<div class="arrow">&rarr;</div>'.join(columns) + "</div>")


def _chart_sections(data: ReportData) -> str:
    by_asset: dict[str, list[dict]] = defaultdict(list)
    for figure in data.figures:
        by_asset[figure["asset"]].append(figure)
    if not by_asset:
        return '<p class="empty">No metric measured yet.</p>'
    parts = []
    for asset, figures in by_asset.items():
        table = "".join(
            f'<div class="chart" id="{f["id"]}" data-figure="{f["id"]}" '
            f'data-points="{f["points"]}" data-anomalies="{f["anomalies"]}"></div>'
            for f in figures if f["group"] == "table")
        columns = [f for f in figures if f["group"] == "column"]
        column_part = ""
        if columns:
            column_part = (
                f'<details class="column-charts"><summary>{len(columns)} column metric chart(s)'
                f'</summary><div class="charts">' + "".join(
                    f'<div class="chart" id="{f["id"]}" data-figure="{f["id"]}" '
                    f'data-points="{f["points"]}" data-anomalies="{f["anomalies"]}"></div>'
                    for f in columns) + "</div></details>")
        parts.append(f'<section class="asset-charts" id="charts-{_e(asset)}"><h3>{_e(asset)}</h3>'
                     f'<div class="charts">{table}</div>{column_part}</section>')
    return "".join(parts)


def _slo_table(data: ReportData) -> str:
    rows = [{
        "model": s["model"], "objective": s["objective"], "window": f"{s['window_days']} d",
        "target": f"{s['target']:.1%}",
        "SLI": "-" if s["value"] is None else f"{s['value']:.2%}",
        "budget left": "-" if s["budget_left"] is None else f"{s['budget_left']:.0%}",
        "met": {True: "yes", False: "BREACHED", None: "-"}[s["met"]],
    } for s in data.slis]
    return _table(rows, ["model", "objective", "window", "target", "SLI", "budget left", "met"],
                  "No SLO declared (config.meta.slo on a mart).")


def render(data: ReportData, docs_link: str | None = None) -> str:
    payload = json.dumps(
        {f["id"]: f["figure"] for f in data.figures}, sort_keys=True, default=str
    ).replace("</", "<\\/")
    docs = (f'<a href="{_e(docs_link)}">dbt documentation</a>' if docs_link else "")
    here = Path(__file__).parent
    return TEMPLATE.format(
        generated_at=_e(data.generated_at), as_of=_e(data.as_of), docs=docs,
        style=(here / "report.css").read_text(encoding="utf-8"),
        tiles=_tiles(data), assets=_asset_rows(data), tests=_test_list(data),
        test_count=len(data.tests), incidents=_incident_list(data),
        charts=_chart_sections(data), slos=_slo_table(data),
        quarantined=_table(data.quarantined, ["finished_at", "source_name", "table_name",
                                              "file_name", "error", "quarantine_path"],
                           "No file in quarantine."),
        invocations=_table(data.invocations, ["occurred_at", "status", "message",
                                              "dbt_invocation_id", "dagster_run_id"],
                           "No dbt invocation recorded yet."),
        payload=payload,
        plotly=charts.plotly_js().replace("</script", "<\\/script"),
        script=(here / "report.js").read_text(encoding="utf-8"),
    )


def write_report(warehouse: Path, output: Path, manifest_path: Path | None,
                 docs_link: str | None = None) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(collect(warehouse, manifest_path), docs_link), encoding="utf-8")
    return output


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data platform health</title>
<style>{style}</style></head>
<body>
<header><h1>Data platform health</h1>
<p>State as of {as_of} UTC (generated {generated_at}) from platform.incidents, platform.events and
platform.metric_history. {docs}</p>
<nav><a href="#health">Health</a> <a href="#incidents">Incidents</a> <a href="#tests">Tests</a>
<a href="#charts">Charts</a> <a href="#slos">SLOs</a> <a href="#runs">Runs</a></nav></header>
<section id="tiles" class="tiles">{tiles}</section>
<h2 id="health">Assets: what is true now</h2>
<p class="hint">One row per asset; click a row for its history (incidents, test results,
builds).</p>
<div class="asset-head"><span>asset</span><span>tests</span><span>freshness</span>
<span>volume</span><span>schema</span><span>open anomalies</span></div>
<div id="assets">{assets}</div>
<h2 id="incidents">Incidents (open first)</h2>
<p class="hint">Click an incident for its lineage back to the files and batch that fed it.</p>
<div id="incident-list">{incidents}</div>
<h2 id="tests">Tests</h2>
<div class="filters">
<input id="test-search" type="search" placeholder="Search tests, assets, columns, messages...">
<select id="test-status"><option value="">any status</option><option value="fail">failing</option>
<option value="warn">warning</option><option value="ok">passing</option>
<option value="unknown">not run</option></select>
<span id="test-count" data-total="{test_count}">{test_count} of {test_count} tests</span></div>
{tests}
<h2 id="charts">Monitored metrics</h2>
<p class="hint">Shaded: the band the anomaly monitor judged each measurement with, as it recorded
it; crosses: anomalies reported (with the recorded tolerance); dashed lines and triangles:
incidents opened.</p>
<div id="chart-list">{charts}</div>
<h2 id="slos">Service levels</h2>
{slos}
<h2>Files in quarantine</h2>
{quarantined}
<h2 id="runs">Recent dbt invocations</h2>
{invocations}
<script id="report-data" type="application/json">{payload}</script>
<script>{plotly}</script>
<script>{script}</script>
</body></html>
"""
