"""The platform event log: every event (file arrived, loaded, quarantined, dbt invocation and node
results, Dagster runs, checks, anomalies) recorded in one table of the same shape.

Each event carries the ids that join it to the rest: the file's content hash, the dbt invocation
and node ids, the Dagster run id. ``details`` holds anything else as JSON text.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import duckdb

from dataops.core.warehouse import PLATFORM_SCHEMA

EVENTS_TABLE = f"{PLATFORM_SCHEMA}.events"

EVENTS_DDL = f"""
create schema if not exists {PLATFORM_SCHEMA};
create table if not exists {EVENTS_TABLE} (
    event_id varchar not null,
    event_type varchar not null,
    occurred_at timestamp not null,
    status varchar,
    source_name varchar,
    table_name varchar,
    file_name varchar,
    file_hash varchar,
    batch_id varchar,
    dbt_invocation_id varchar,
    node_id varchar,
    dagster_run_id varchar,
    message varchar,
    details varchar
);
"""

EVENT_FIELDS = (
    "status",
    "source_name",
    "table_name",
    "file_name",
    "file_hash",
    "batch_id",
    "dbt_invocation_id",
    "node_id",
    "dagster_run_id",
    "message",
)


def ensure_events(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(EVENTS_DDL)


def record_event(
    con: duckdb.DuckDBPyConnection,
    event_type: str,
    *,
    details: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    **fields: str | None,
) -> str:
    """Append one event (in the caller's transaction, if any) and return its id.

    ``event_type`` is a dotted name such as ``file.loaded``, ``file.quarantined``,
    ``dbt.node_result``, ``dagster.run_failed``; ``fields`` are the columns in EVENT_FIELDS.
    """
    unknown = set(fields) - set(EVENT_FIELDS)
    if unknown:
        raise ValueError(f"Unknown event field(s) {sorted(unknown)}: expected {EVENT_FIELDS}")
    event_id = uuid.uuid4().hex
    values = {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": occurred_at or datetime.now(UTC).replace(tzinfo=None),
        **fields,
        "details": json.dumps(details, sort_keys=True, default=str) if details else None,
    }
    columns = ", ".join(values)
    placeholders = ", ".join("?" for _ in values)
    con.execute(
        f"insert into {EVENTS_TABLE} ({columns}) values ({placeholders})", list(values.values())
    )
    return event_id
