"""Incidents: one per problem, open until the check that found it passes again.

After each dbt invocation :func:`sync_incidents` reads that invocation's node results and anomaly
events from the event log (``platform.events``) and keeps ``platform.incidents`` true:

- a failing (or erroring) data test opens an incident keyed by the test; an anomaly monitor opens
  one per monitored table, column and metric it reports (freshness breaches and stale models
  included: they are monitors too);
- while it is open, each repeat attaches to it (``occurrences`` + 1, ``last_seen_at``); no new
  incident, no new alert;
- it is resolved when the test runs again and passes, or the monitor runs again without
  reporting that table/column/metric;
- each incident alerts twice at most: once when opened (the cause, the asset, the failing test or
  monitor, a sample of the failing rows, the Dagster run link and the report link) and once when
  resolved. Alerts are POSTed as JSON to ``ALERT_WEBHOOK_URL`` (Slack/Teams-style incoming hook
  or any HTTP endpoint); each alert is also recorded as an ``incident.opened`` /
  ``incident.resolved`` event.

``dataops incidents`` lists them (open first), ``ack`` acknowledges and ``resolve`` closes one by
hand, with a note.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from dataops.core import events
from dataops.core.alerts import ALERT_WEBHOOK_ENV, post_webhook
from dataops.core.secrets import read_secret
from dataops.core.settings import PROJECT_DIR
from dataops.core.warehouse import PLATFORM_SCHEMA

INCIDENTS_TABLE = f"{PLATFORM_SCHEMA}.incidents"
DAGSTER_URL_ENV = "DAGSTER_WEBSERVER_URL"  # e.g. http://127.0.0.1:3000; the run link's base
REPORT_URL_ENV = "DATAOPS_REPORT_URL"  # where the dashboard is served; default its file:// URL
SAMPLE_ROWS = 5

INCIDENTS_DDL = f"""
create schema if not exists {PLATFORM_SCHEMA};
create table if not exists {INCIDENTS_TABLE} (
    incident_id varchar primary key,
    incident_key varchar not null,
    kind varchar not null,
    status varchar not null,
    asset varchar,
    monitor varchar,
    test_node_id varchar,
    column_name varchar,
    metric_name varchar,
    cause varchar,
    failing_rows varchar,
    opened_at timestamp not null,
    last_seen_at timestamp not null,
    resolved_at timestamp,
    occurrences integer not null,
    first_invocation_id varchar,
    last_invocation_id varchar,
    dagster_run_id varchar,
    batch_id varchar,
    file_hash varchar,
    acknowledged_at timestamp,
    note varchar
);
"""

AlertSender = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Finding:
    """One problem seen in an invocation: a failing test or one anomaly a monitor reported."""

    key: str
    kind: str  # test_failure | anomaly | freshness
    asset: str
    monitor: str
    test_node_id: str
    cause: str
    column_name: str | None = None
    metric_name: str | None = None
    batch_id: str | None = None
    file_hash: str | None = None
    failing_rows: list[dict[str, Any]] | None = None


def ensure_incidents(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(INCIDENTS_DDL)


def webhook_sender(url: str | None = None) -> AlertSender:
    """The alert sender for ``url`` (default $ALERT_WEBHOOK_URL); without one, alerts are only
    recorded as events."""
    url = url if url is not None else read_secret(ALERT_WEBHOOK_ENV)  # or ALERT_WEBHOOK_URL_FILE
    if not url:
        return lambda payload: None
    return lambda payload: post_webhook(url, payload)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Iterable[Any] = ()) -> list[dict]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _json(text: str | None) -> dict[str, Any]:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def _failing_rows(
    con: duckdb.DuckDBPyConnection, sql: str | None, limit: int = SAMPLE_ROWS
) -> list[dict[str, Any]] | None:
    """A few of the rows a failed test returned, re-running its compiled SQL (read only)."""
    if not sql:
        return None
    try:
        rows = _rows(con, f"select * from ({sql.rstrip().rstrip(';')}) as failing limit {limit}")
    except duckdb.Error as error:
        return [{"error": f"could not sample the failing rows: {error}"[:300]}]
    return [{k: (v if isinstance(v, int | float | str | None) else str(v)) for k, v in r.items()}
            for r in rows]


def _compiled_sql(manifest: dict[str, Any] | None, node_id: str) -> str | None:
    """The test's compiled SQL: the file dbt wrote (``compiled_path``, relative to the project)."""
    node = (manifest or {}).get("nodes", {}).get(node_id) or {}
    path = node.get("compiled_path")
    if path:
        compiled = Path(path) if Path(path).is_absolute() else PROJECT_DIR / path
        if compiled.is_file():
            return compiled.read_text(encoding="utf-8")
    return node.get("compiled_code")


FRESHNESS_MONITORS = {"freshness_anomaly", "model_freshness"}


def findings_of(
    con: duckdb.DuckDBPyConnection, invocation_id: str, manifest: dict[str, Any] | None = None
) -> tuple[list[Finding], set[str]]:
    """What failed in one invocation, and the test node ids that ran (pass or not)."""
    results = _rows(
        con,
        f"select node_id, status, table_name, source_name, message, details "
        f"from {events.EVENTS_TABLE} where event_type = 'dbt.node_result' "
        f"and dbt_invocation_id = ?",
        [invocation_id],
    )
    anomalies = _rows(
        con,
        f"select node_id, source_name, table_name, batch_id, file_hash, message, details "
        f"from {events.EVENTS_TABLE} where event_type = 'anomaly.detected' "
        f"and dbt_invocation_id = ?",
        [invocation_id],
    )
    ran: set[str] = set()
    found: list[Finding] = []
    by_test: dict[str, list[dict]] = {}
    for anomaly in anomalies:
        by_test.setdefault(anomaly["node_id"], []).append(anomaly)
    for result in results:
        details = _json(result["details"])
        if details.get("resource_type") not in ("test", "unit_test"):
            continue
        node_id = result["node_id"]
        ran.add(node_id)
        if result["status"] not in ("fail", "error", "warn"):
            continue
        test_name = details.get("test_name") or details.get("name") or node_id
        if node_id in by_test:
            for anomaly in by_test[node_id]:
                info = _json(anomaly["details"])
                asset = (f"{anomaly['source_name']}." if anomaly["source_name"] else "") + (
                    anomaly["table_name"] or "")
                monitor = info.get("monitor") or test_name
                column, metric = info.get("column_name"), info.get("metric_name")
                found.append(Finding(
                    key=f"{node_id}|{info.get('monitored_node_id')}|{column or ''}|{metric or ''}",
                    kind="freshness" if monitor in FRESHNESS_MONITORS else "anomaly",
                    asset=asset, monitor=monitor, test_node_id=node_id,
                    cause=anomaly["message"] or "", column_name=column, metric_name=metric,
                    batch_id=anomaly["batch_id"], file_hash=anomaly["file_hash"],
                ))
            continue
        if result["status"] == "warn" and details.get("test_name") in ANOMALY_MONITORS:
            continue  # a monitor that warned without stored rows: nothing to attach to
        asset = (f"{result['source_name']}." if result["source_name"] else "") + (
            result["table_name"] or "")
        found.append(Finding(
            key=node_id, kind="test_failure", asset=asset, monitor=details.get("name") or node_id,
            test_node_id=node_id,
            cause=f"{details.get('name')} {result['status']}: {result['message'] or ''}".strip(),
            failing_rows=_failing_rows(con, _compiled_sql(manifest, node_id)),
        ))
    return found, ran


ANOMALY_MONITORS = {
    "volume_anomaly", "freshness_anomaly", "null_rate_anomaly", "distribution_anomaly",
    "schema_change", "schema_drift", "model_freshness", "model_metrics_anomaly",
}


def _links(dagster_run_id: str | None, report_url: str | None) -> dict[str, str | None]:
    base = os.environ.get(DAGSTER_URL_ENV, "").rstrip("/")
    return {
        "dagster_run_url": f"{base}/runs/{dagster_run_id}" if base and dagster_run_id else None,
        "report_url": os.environ.get(REPORT_URL_ENV) or report_url,
    }


def _payload(
    incident: dict[str, Any], event_type: str, links: dict[str, str | None]
) -> dict[str, Any]:
    rows = json.loads(incident["failing_rows"]) if incident.get("failing_rows") else None
    verb = "opened" if event_type == "incident.opened" else "resolved"
    text = (
        f"Incident {incident['incident_id']} {verb}: {incident['asset']} - {incident['cause']}"
        f" ({incident['monitor']})"
    )
    if verb == "resolved":
        text += f" after {incident['occurrences']} occurrence(s)"
    return {
        "event_type": event_type,
        "incident_id": incident["incident_id"],
        "kind": incident["kind"],
        "status": incident["status"],
        "asset": incident["asset"],
        "monitor": incident["monitor"],
        "test_node_id": incident["test_node_id"],
        "column": incident.get("column_name"),
        "metric": incident.get("metric_name"),
        "cause": incident["cause"],
        "failing_rows_sample": rows,
        "batch_id": incident.get("batch_id"),
        "file_hash": incident.get("file_hash"),
        "opened_at": incident["opened_at"],
        "resolved_at": incident.get("resolved_at"),
        "occurrences": incident["occurrences"],
        "note": incident.get("note"),
        "dbt_invocation_id": incident.get("last_invocation_id"),
        "dagster_run_id": incident.get("dagster_run_id"),
        **links,
        "text": text,
    }


def _alert(
    con: duckdb.DuckDBPyConnection,
    incident: dict[str, Any],
    event_type: str,
    send: AlertSender,
    links: dict[str, str | None],
) -> dict[str, Any]:
    payload = _payload(incident, event_type, links)
    delivery = send(payload)
    events.record_event(
        con, event_type, status=incident["status"], table_name=incident["asset"],
        node_id=incident["test_node_id"], batch_id=incident.get("batch_id"),
        file_hash=incident.get("file_hash"), dbt_invocation_id=incident.get("last_invocation_id"),
        dagster_run_id=incident.get("dagster_run_id"), message=payload["text"],
        details={"incident_id": incident["incident_id"], "webhook": delivery},
    )
    return payload


def _incident_id(key: str, opened_at: datetime) -> str:
    return "INC-" + hashlib.sha256(f"{key}|{opened_at.isoformat()}".encode()).hexdigest()[:8]


def _get(con: duckdb.DuckDBPyConnection, incident_id: str) -> dict[str, Any]:
    found = _rows(con, f"select * from {INCIDENTS_TABLE} where incident_id = ?", [incident_id])
    return found[0]


def sync_incidents(
    con: duckdb.DuckDBPyConnection,
    invocation_id: str,
    *,
    manifest: dict[str, Any] | None = None,
    send: AlertSender | None = None,
    report_url: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Open, attach to and resolve incidents from one invocation; return the alerts sent."""
    ensure_incidents(con)
    events.ensure_events(con)
    send = send or webhook_sender()
    now = now or _now()
    dagster_run_id = con.execute(
        f"select max(dagster_run_id) from {events.EVENTS_TABLE} where dbt_invocation_id = ?",
        [invocation_id],
    ).fetchone()[0]
    links = _links(dagster_run_id, report_url)
    findings, ran = findings_of(con, invocation_id, manifest)
    open_rows = {
        row["incident_key"]: row
        for row in _rows(con, f"select * from {INCIDENTS_TABLE} where status <> 'resolved'")
    }
    alerts = []
    seen: set[str] = set()
    for finding in findings:
        if finding.key in seen:
            continue
        seen.add(finding.key)
        if finding.key in open_rows:
            con.execute(
                f"update {INCIDENTS_TABLE} set occurrences = occurrences + 1, last_seen_at = ?, "
                f"last_invocation_id = ?, cause = ? where incident_id = ?",
                [now, invocation_id, finding.cause, open_rows[finding.key]["incident_id"]],
            )
            continue
        incident_id = _incident_id(finding.key, now)
        con.execute(
            f"insert into {INCIDENTS_TABLE} (incident_id, incident_key, kind, status, asset, "
            f"monitor, test_node_id, column_name, metric_name, cause, failing_rows, opened_at, "
            f"last_seen_at, occurrences, first_invocation_id, last_invocation_id, dagster_run_id, "
            f"batch_id, file_hash) values (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, "
            f"?, ?)",
            [incident_id, finding.key, finding.kind, finding.asset, finding.monitor,
             finding.test_node_id, finding.column_name, finding.metric_name, finding.cause,
             json.dumps(finding.failing_rows, default=str) if finding.failing_rows else None,
             now, now, invocation_id, invocation_id, dagster_run_id, finding.batch_id,
             finding.file_hash],
        )
        alerts.append(_alert(con, _get(con, incident_id), "incident.opened", send, links))
    for key, row in open_rows.items():
        if key in seen or row["test_node_id"] not in ran:
            continue  # still failing, or its check did not run this time
        con.execute(
            f"update {INCIDENTS_TABLE} set status = 'resolved', resolved_at = ?, "
            f"last_invocation_id = ?, note = coalesce(note, 'passed again') where incident_id = ?",
            [now, invocation_id, row["incident_id"]],
        )
        alerts.append(_alert(con, _get(con, row["incident_id"]), "incident.resolved", send, links))
    return alerts


def list_incidents(con: duckdb.DuckDBPyConnection, include_resolved: bool = True) -> list[dict]:
    """Incidents, open (and acknowledged) first, newest first within each group."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? "
        "and table_name = 'incidents'",
        [PLATFORM_SCHEMA],
    ).fetchone()[0]
    if not exists:
        return []
    where = "" if include_resolved else "where status <> 'resolved'"
    return _rows(
        con,
        f"select * from {INCIDENTS_TABLE} {where} order by "
        f"case status when 'open' then 0 when 'acknowledged' then 1 else 2 end, "
        f"opened_at desc, incident_id",
    )


def set_status(
    con: duckdb.DuckDBPyConnection,
    incident_id: str,
    status: str,
    note: str | None,
    send: AlertSender | None = None,
) -> dict[str, Any]:
    """Acknowledge (``acknowledged``) or resolve (``resolved``) one incident by hand."""
    if status not in ("acknowledged", "resolved"):
        raise ValueError(f"status {status!r}: expected acknowledged or resolved")
    ensure_incidents(con)
    events.ensure_events(con)
    found = _rows(con, f"select * from {INCIDENTS_TABLE} where incident_id = ?", [incident_id])
    if not found:
        raise KeyError(f"no incident {incident_id!r}: `dataops incidents` lists them")
    if found[0]["status"] == "resolved":
        raise ValueError(f"incident {incident_id} is already resolved")
    now = _now()
    if status == "acknowledged":
        con.execute(
            f"update {INCIDENTS_TABLE} set status = 'acknowledged', acknowledged_at = ?, "
            f"note = ? where incident_id = ?", [now, note, incident_id],
        )
        incident = _get(con, incident_id)
        events.record_event(con, "incident.acknowledged", status="acknowledged",
                            table_name=incident["asset"], node_id=incident["test_node_id"],
                            message=f"Incident {incident_id} acknowledged: {note or ''}".strip(),
                            details={"incident_id": incident_id})
        return incident
    con.execute(
        f"update {INCIDENTS_TABLE} set status = 'resolved', resolved_at = ?, note = ? "
        f"where incident_id = ?", [now, note, incident_id],
    )
    incident = _get(con, incident_id)
    _alert(con, incident, "incident.resolved", send or webhook_sender(),
           _links(incident.get("dagster_run_id"), None))
    return incident


@dataclass(frozen=True)
class BuildObservations:
    """What one invocation found, for the run summary: each anomaly's message and the alerts."""

    anomalies: list[str]
    alerts: list[dict[str, Any]]


def observe_build(
    warehouse: Path,
    invocation_id: str,
    manifest_path: Path | None = None,
    send: AlertSender | None = None,
    report_url: str | None = None,
) -> BuildObservations:
    """After a dbt invocation: name its anomalies and bring the incidents up to date."""
    manifest = None
    if manifest_path and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    with duckdb.connect(str(warehouse)) as con:
        events.ensure_events(con)
        messages = [
            f"{status.upper()} {monitor}: {message}"
            for status, monitor, message in con.execute(
                f"select status, details::json ->> 'monitor', message from {events.EVENTS_TABLE} "
                f"where event_type = 'anomaly.detected' and dbt_invocation_id = ? order by message",
                [invocation_id],
            ).fetchall()
        ]
        alerts = sync_incidents(
            con, invocation_id, manifest=manifest, send=send, report_url=report_url
        )
    return BuildObservations(messages, alerts)
