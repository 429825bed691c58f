"""The connections releases are published through: a DuckDB one as is, or a PostgreSQL one.

:mod:`dataops.publishing.releases` writes its SQL once, for a DuckDB connection
(``con.execute(sql, params)`` with ``?`` placeholders returns something to fetch from; explicit
``begin transaction``/``commit``). :class:`PostgresConnection` gives a psycopg2 connection the
same shape: it runs in autocommit mode (so ``begin``/``commit`` are the caller's, as on DuckDB),
turns ``?`` placeholders into ``%s``, and carries the two things PostgreSQL does differently:
``create or replace view`` refuses a view whose columns change, and a switch must wait for (and
not deadlock with) readers holding locks on the published views.
"""

from __future__ import annotations

from typing import Any

import duckdb

# PostgreSQL error codes (SQLSTATE) the switch handles.
INVALID_TABLE_DEFINITION = "42P16"  # create or replace view with changed columns
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
DEADLOCK_DETECTED = "40P01"


class PostgresConnection:
    """A psycopg2 connection that speaks like a DuckDB one (see the module docstring)."""

    dialect = "postgres"

    def __init__(self, connection: Any) -> None:
        connection.autocommit = True
        self.connection = connection

    def execute(self, sql: str, params: Any = None) -> Any:
        """Run one statement (or several, without params); return the cursor to fetch from."""
        cursor = self.connection.cursor()
        if params is None:
            cursor.execute(sql)
        else:  # releases.py writes no literal containing ? or %
            cursor.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))
        return cursor

    def replace_view(self, view: str, query: str) -> None:
        """``create or replace view``; when the columns changed (PostgreSQL refuses that), drop
        the view and create it. Inside the caller's transaction: readers never see it missing."""
        self.execute("savepoint dataops_replace_view")
        try:
            self.execute(f"create or replace view {view} as {query}")
        except self.connection.Error as error:
            if getattr(error, "pgcode", None) != INVALID_TABLE_DEFINITION:
                raise
            self.execute("rollback to savepoint dataops_replace_view")
            self.execute(f"drop view {view}")
            self.execute(f"create view {view} as {query}")
        self.execute("release savepoint dataops_replace_view")

    def is_lock_conflict(self, error: BaseException) -> bool:
        """The switch waited too long for readers' locks (or met one in a deadlock): retry."""
        return isinstance(error, self.connection.Error) and getattr(error, "pgcode", None) in (
            LOCK_NOT_AVAILABLE,
            DEADLOCK_DETECTED,
        )

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What releases.py and the event log are given: a DuckDB connection or a PostgreSQL one.
Connection = duckdb.DuckDBPyConnection | PostgresConnection


def is_postgres(con: Any) -> bool:
    return getattr(con, "dialect", None) == "postgres"
