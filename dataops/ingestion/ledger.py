"""The load ledger: one row per landed file and its outcome, in the warehouse's platform schema.

``status`` is ``loaded`` (its rows are in the raw table, written in the same transaction) or
``quarantined`` (moved to the quarantine folder, ``quarantine_path``; see quarantine.py) or
``duplicate`` (content already loaded from another file, ``duplicate_of``; nothing loaded). A file
whose name was loaded before with other content is a redelivery: ``previous_file_hash`` names the
content it follows. Older ledgers (``failed`` rows, no new columns) are upgraded in place.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataops.core.warehouse import PLATFORM_SCHEMA

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
alter table {LEDGER_TABLE} add column if not exists previous_file_hash varchar;
alter table {LEDGER_TABLE} add column if not exists quarantine_path varchar;
alter table {LEDGER_TABLE} add column if not exists duplicate_of varchar;
"""


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)


def loaded_hashes(con: duckdb.DuckDBPyConnection, source_name: str, table_name: str) -> set[str]:
    """Content hashes whose rows are in the raw table: a file with one of these is skipped."""
    rows = con.execute(
        f"select distinct file_hash from {LEDGER_TABLE} "
        "where source_name = ? and table_name = ? and status = 'loaded'",
        [source_name, table_name],
    ).fetchall()
    return {row[0] for row in rows}


known_hashes = loaded_hashes  # the foundation's name


def recorded_duplicates(
    con: duckdb.DuckDBPyConnection, source_name: str, table_name: str
) -> set[tuple[str, str]]:
    """(content hash, landed path) of every duplicate delivery already recorded (once each)."""
    rows = con.execute(
        f"select file_hash, file_path from {LEDGER_TABLE} "
        "where source_name = ? and table_name = ? and status = 'duplicate'",
        [source_name, table_name],
    ).fetchall()
    return {(digest, path) for digest, path in rows}


def pending_quarantines(
    con: duckdb.DuckDBPyConnection, source_name: str, table_name: str
) -> dict[tuple[str, str], str]:
    """(content hash, landed path) -> quarantine path of every file recorded as quarantined."""
    rows = con.execute(
        f"select file_hash, file_path, quarantine_path from {LEDGER_TABLE} "
        "where source_name = ? and table_name = ? and status = 'quarantined' "
        "and quarantine_path is not null",
        [source_name, table_name],
    ).fetchall()
    return {(digest, path): target for digest, path, target in rows}


def loaded_path(
    con: duckdb.DuckDBPyConnection, source_name: str, table_name: str, file_hash: str
) -> str | None:
    row = con.execute(
        f"select file_path from {LEDGER_TABLE} where source_name = ? and table_name = ? "
        "and file_hash = ? and status = 'loaded' limit 1",
        [source_name, table_name, file_hash],
    ).fetchone()
    return row[0] if row else None


def previous_delivery(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    table_name: str,
    file_name: str,
    file_hash: str,
) -> str | None:
    """The content hash last loaded under this file name, when it differs from this one."""
    row = con.execute(
        f"select file_hash from {LEDGER_TABLE} where source_name = ? and table_name = ? "
        "and file_name = ? and status = 'loaded' and file_hash <> ? "
        "order by finished_at desc limit 1",
        [source_name, table_name, file_name, file_hash],
    ).fetchone()
    return row[0] if row else None


def loaded_file_hashes(warehouse: Path) -> set[str] | None:
    """Content hashes loaded into any raw table, read without taking the write lock.

    None when the warehouse is locked by a writer (ask again later); empty when there is no
    warehouse or no ledger yet.
    """
    if not warehouse.exists():
        return set()
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            found = con.execute(
                "select count(*) from information_schema.tables "
                "where table_schema = ? and table_name = 'load_ledger'",
                [PLATFORM_SCHEMA],
            ).fetchone()[0]
            if not found:
                return set()
            rows = con.execute(
                f"select distinct file_hash from {LEDGER_TABLE} where status = 'loaded'"
            ).fetchall()
    except duckdb.IOException:
        return None
    return {row[0] for row in rows}


def record(con: duckdb.DuckDBPyConnection, **entry: object) -> None:
    columns = ", ".join(entry)
    placeholders = ", ".join("?" for _ in entry)
    con.execute(
        f"insert into {LEDGER_TABLE} ({columns}) values ({placeholders})", list(entry.values())
    )
