"""The load ledger: one row per landed file and its outcome, in the warehouse's platform schema."""

from __future__ import annotations

import duckdb

PLATFORM_SCHEMA = "platform"
LEDGER_TABLE = f"{PLATFORM_SCHEMA}.load_ledger"

LEDGER_DDL = f"""
create schema if not exists {PLATFORM_SCHEMA};
create table if not exists {LEDGER_TABLE} (
    file_hash varchar not null,
    source_name varchar not null,
    table_name varchar not null,
    file_name varchar not null,
    file_path varchar not null,
    file_size bigint not null,
    status varchar not null,
    rows_loaded bigint,
    error varchar,
    batch_id varchar not null,
    started_at timestamp not null,
    finished_at timestamp not null
);
"""


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)


def known_hashes(con: duckdb.DuckDBPyConnection, source_name: str, table_name: str) -> set[str]:
    """Content hashes already recorded for a table, whatever their outcome."""
    rows = con.execute(
        f"select distinct file_hash from {LEDGER_TABLE} where source_name = ? and table_name = ?",
        [source_name, table_name],
    ).fetchall()
    return {row[0] for row in rows}


def record(con: duckdb.DuckDBPyConnection, **entry: object) -> None:
    columns = ", ".join(entry)
    placeholders = ", ".join("?" for _ in entry)
    con.execute(f"insert into {LEDGER_TABLE} ({columns}) values ({placeholders})", list(entry.values()))
