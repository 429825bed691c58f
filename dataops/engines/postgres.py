"""Load landed files into PostgreSQL raw tables, driven by the same source declarations.

Each file is read by DuckDB with the ingestion's own reader (dataops/ingestion/loader.py:
``reader_sql``), so the rows are exactly those the DuckDB warehouse gets, and copied into
``<source schema>.<table>`` with ``COPY ... FROM STDIN`` in one transaction per file, with the
same lineage columns. A file whose content hash is already in the table is skipped.

:func:`published_warehouse` is where ``dataops engines build postgres`` publishes its releases
(write -> audit -> publish, dataops/publishing/): the same database, one transaction per switch,
one release at a time through a PostgreSQL advisory lock.
"""

from __future__ import annotations

import re
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.settings import Settings
from dataops.core.sql import qualified, quote_identifier, quote_literal
from dataops.engines.profile import ProfileError, profile_output
from dataops.ingestion.loader import TableOutcome, file_sha256, reader_sql
from dataops.publishing.connections import PostgresConnection
from dataops.publishing.wap import PublishedWarehouse
from dataops.sources.registry import SourceTable

TARGET = "postgres"

# DuckDB column types of the raw tables -> PostgreSQL types.
TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(38, 0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20, 0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "UUID": "uuid",
    "BLOB": "bytea",
}


def postgres_type(duckdb_type: str, where: str) -> str:
    """The PostgreSQL type for a DuckDB column type; fail naming the column otherwise."""
    if re.fullmatch(r"DECIMAL\(\d+,\d+\)", duckdb_type):
        return duckdb_type.replace("DECIMAL", "numeric")
    if duckdb_type in TYPES:
        return TYPES[duckdb_type]
    raise ValueError(
        f"{where}: column type {duckdb_type} has no PostgreSQL equivalent in "
        "dataops/engines/postgres.py TYPES; deliver it as a plain type or add a mapping."
    )


def connection_params(output: dict[str, Any] | None = None) -> dict[str, Any]:
    """psycopg2 connection parameters from the profile's ``postgres`` output."""
    output = output or profile_output(TARGET)
    params = {
        "host": output.get("host"),
        "port": int(output.get("port") or 5432),
        "user": output.get("user"),
        "dbname": output.get("dbname") or output.get("database"),
        "connect_timeout": int(output.get("connect_timeout") or 10),
    }
    if output.get("password"):
        params["password"] = output["password"]
    return params


@contextmanager
def connect() -> Iterator[Any]:
    """A psycopg2 connection to the server of dbt's ``postgres`` target."""
    import psycopg2

    params = connection_params()
    try:
        con = psycopg2.connect(**params)
    except psycopg2.OperationalError as error:
        raise ProfileError(
            f"cannot connect to PostgreSQL at {params['host']}:{params['port']} database "
            f"{params['dbname']} as {params['user']} (profiles/profiles.yml output 'postgres', "
            f"env DATAOPS_PG_HOST/PORT/USER/DATABASE, DBT_ENV_SECRET_PG_PASSWORD): {error}"
        ) from error
    try:
        yield con
    finally:
        con.close()


# The advisory lock key of "one release at a time" on a database (any constant bigint).
PUBLISH_LOCK_KEY = zlib.crc32(b"dataops.publishing") & 0x7FFFFFFF


@contextmanager
def publish_lock(timeout: float) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock PUBLISH_LOCK_KEY on its own connection (released when the
    holder's session ends, even after kill -9); raise TimeoutError after ``timeout`` seconds."""
    with connect() as con:
        con.autocommit = True
        deadline = time.monotonic() + timeout
        with con.cursor() as cur:
            while True:
                cur.execute("select pg_try_advisory_lock(%s)", (PUBLISH_LOCK_KEY,))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"advisory lock {PUBLISH_LOCK_KEY} held by another session")
                time.sleep(1.0)
        yield  # closing the connection releases the lock


@contextmanager
def connect_published() -> Iterator[PostgresConnection]:
    with connect() as con:
        yield PostgresConnection(con)


def published_warehouse(settings: Settings) -> PublishedWarehouse:
    """The database of dbt's ``postgres`` target as a published warehouse: releases built in
    ``<schema>__r<id>``, readers querying ``<schema>.<name>`` views; the release artefacts under
    ``$DATAOPS_HOME/releases-postgres/<host>_<port>_<database>/``."""
    params = connection_params()
    label = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
    folder = f"{params['host']}_{params['port']}_{params['dbname']}"
    return PublishedWarehouse(
        target=TARGET,
        label=label,
        connect=connect_published,
        lock=publish_lock,
        releases_dir=settings.home / "releases-postgres" / folder,
    )


def _known_hashes(cur: Any, table: SourceTable) -> set[str]:
    relation = qualified(table.schema, table.name)
    cur.execute("select to_regclass(%s)", (relation,))
    if cur.fetchone()[0] is None:
        return set()
    cur.execute(f"select distinct _file_hash from {relation}")
    return {row[0] for row in cur.fetchall()}


def load_file(pg: Any, table: SourceTable, path: Path, file_hash: str, batch_id: str) -> int:
    """Copy one file into its raw table in a single transaction; return the row count."""
    target = f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}"
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    select = (
        "select *, ? as _file_name, ? as _file_hash, ? as _batch_id, "
        f"cast(? as timestamp) as _loaded_at from ({reader_sql(table)})"
    )
    with duckdb.connect() as con:
        params = [path.name, file_hash, batch_id, loaded_at, str(path)]
        con.execute(f"create table batch as {select}", params)
        columns = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_name = 'batch' order by ordinal_position"
        ).fetchall()
        rows = con.execute("select count(*) from batch").fetchone()[0]
        with tempfile.TemporaryDirectory(prefix="dataops-pg-") as folder:
            csv_path = Path(folder) / "batch.csv"
            con.execute(f"copy batch to {quote_literal(str(csv_path))} (format csv, header true)")
            definitions = ", ".join(
                f"{quote_identifier(name)} {postgres_type(dtype, f'{table.key}.{name}')}"
                for name, dtype in columns
            )
            names = ", ".join(quote_identifier(name) for name, _ in columns)
            with pg, pg.cursor() as cur:  # one transaction: commit on success, rollback on error
                cur.execute(f"create schema if not exists {quote_identifier(table.schema)}")
                cur.execute(f"create table if not exists {target} ({definitions})")
                with csv_path.open("r", encoding="utf-8") as handle:
                    cur.copy_expert(
                        f"copy {target} ({names}) from stdin with (format csv, header true)", handle
                    )
    return rows


def load_table(pg: Any, table: SourceTable, landing_root: Path, batch_id: str) -> TableOutcome:
    """Copy the new landed files of one table into PostgreSQL; skip known contents."""
    import psycopg2

    outcome = TableOutcome(key=table.key)
    with pg, pg.cursor() as cur:
        known = _known_hashes(cur, table)
    for path in table.landed_files(landing_root):
        file_hash = file_sha256(path)
        if file_hash in known:
            outcome.files_skipped += 1
            continue
        try:
            rows = load_file(pg, table, path, file_hash, batch_id)
        except (duckdb.Error, psycopg2.Error, ValueError) as error:
            outcome.errors.append(
                f"{path}: could not load into {table.schema}.{table.name}: {error}"
            )
            continue
        outcome.rows_loaded += rows
        outcome.files_loaded += 1
        known.add(file_hash)
    return outcome
