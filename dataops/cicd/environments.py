"""Where CI/CD keeps things, and the pull-request environments (one schema each) in the CI file.

A PR environment is the schema ``pr_<number>`` in the CI warehouse file (never the prod file),
holding the PR's models and one bookkeeping table, ``_pr_environment`` (PR number, creation time,
commit), from which the janitor reads its age. Beside it, ``$DATAOPS_HOME/pr/<number>/`` holds
the PR build's dbt artefacts and report. Dropping both leaves no trace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout

from dataops.core.events import ensure_events, record_event
from dataops.core.settings import load_settings
from dataops.core.sql import quote_identifier, quote_literal

PR_SCHEMA = re.compile(r"pr_([1-9][0-9]*)")
METADATA_TABLE = "_pr_environment"
# How long a CI/CD command waits for another `dataops` command using the same CI file (a PR build
# takes minutes), and for a foreign process (a notebook, a BI tool) holding the DuckDB lock.
LOCK_WAIT_ENV = "DATAOPS_CI_LOCK_WAIT"
LOCK_WAIT_DEFAULT = 3600.0
BUSY_WAIT_ENV = "DATAOPS_CI_BUSY_WAIT"
BUSY_WAIT_DEFAULT = 30.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str | None) -> str:
    """dbt colours its messages (``\x1b[32m``): reports and JSON records hold plain text."""
    return ANSI.sub("", text or "")


def _seconds(env: str, default: float) -> float:
    value = os.environ.get(env)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise CicdError(f"{env}={value!r}: expected a number of seconds.") from None


class CicdError(RuntimeError):
    """A CI/CD command cannot go on; the message says what is missing and what to run."""


def pr_schema(number: int) -> str:
    """The schema of pull request ``number`` (``pr_<number>``)."""
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise CicdError(f"A pull request number is a positive integer, got {number!r}.")
    return f"pr_{number}"


@dataclass(frozen=True)
class Layout:
    """Every location CI/CD uses, derived from dataops/core/settings.py (DATAOPS_HOME, ...)."""

    home: Path
    ci_warehouse: Path
    prod_warehouse: Path

    @property
    def ci_catalog(self) -> str:
        return self.ci_warehouse.name.removesuffix(".duckdb")

    @property
    def prod_catalog(self) -> str:
        """DuckDB names a file's catalog after the file: prod's relations live in this catalog."""
        return self.prod_warehouse.name.removesuffix(".duckdb")

    @property
    def prod_state_dir(self) -> Path:
        """What `dataops deploy` publishes: manifest.json (PR builds defer to it), deploy.json."""
        return self.home / "prod-state"

    @property
    def prod_manifest(self) -> Path:
        return self.prod_state_dir / "manifest.json"

    @property
    def deploy_target_dir(self) -> Path:
        return self.home / "deploy" / "target"

    def pr_dir(self, number: int) -> Path:
        """Per-PR artefacts: dbt target folder, report.md."""
        return self.home / "pr" / str(number)

    def pr_target_dir(self, number: int) -> Path:
        return self.pr_dir(number) / "target"

    def check_separate(self) -> None:
        if self.ci_warehouse.resolve() == self.prod_warehouse.resolve():
            raise CicdError(
                f"The CI warehouse is the prod file ({self.prod_warehouse}): set "
                "DATAOPS_WAREHOUSE_CI to another file; PR builds must never write prod."
            )
        if self.ci_catalog == self.prod_catalog:
            raise CicdError(
                f"The CI file {self.ci_warehouse} and the prod file {self.prod_warehouse} have the "
                f"same name, so both would be catalog {self.ci_catalog!r}: give them different "
                "file names (DATAOPS_WAREHOUSE_CI / DATAOPS_WAREHOUSE_PROD)."
            )

    def dbt_environment(self, number: int | None = None) -> dict[str, str]:
        """Variables profiles.yml reads for the ci target: its schema and the prod attachment."""
        env = {
            "DATAOPS_WAREHOUSE_CI": str(self.ci_warehouse),
            "DATAOPS_WAREHOUSE_PROD": str(self.prod_warehouse),
            "DATAOPS_PROD_CATALOG": self.prod_catalog,
        }
        if number is not None:
            env["DATAOPS_CI_SCHEMA"] = pr_schema(number)
            # the hooks record it with each invocation: the janitor finds a PR's rows by it
            env["DBT_TARGET_PATH"] = str(self.pr_target_dir(number))
        return env


def load_layout() -> Layout:
    ci = load_settings("ci")
    prod = load_settings("prod")
    return Layout(home=ci.home, ci_warehouse=ci.warehouse_path, prod_warehouse=prod.warehouse_path)


def connect(
    path: Path,
    *,
    read_only: bool = False,
    attach: dict[str, Path] | None = None,
    wait: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open a warehouse file, waiting (backoff, at most ``wait`` seconds, default
    $DATAOPS_CI_BUSY_WAIT or 30) while another process holds its DuckDB lock.

    ``attach`` maps catalog aliases to files attached READ ONLY (prod, for the diff).
    """
    budget = _seconds(BUSY_WAIT_ENV, BUSY_WAIT_DEFAULT) if wait is None else wait
    deadline = time.monotonic() + budget
    delay = 0.25
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() + delay > deadline:
                raise CicdError(
                    f"Cannot open {path}: another process holds it ({error}). Waited "
                    f"{budget:.0f} s ({BUSY_WAIT_ENV}). Stop that process (a notebook or BI tool "
                    "must read a copy, never the CI file), then run the command again; nothing "
                    "was changed."
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
    for alias, attached in (attach or {}).items():
        con.execute(
            f"attach {quote_literal(str(attached))} as {quote_identifier(alias)} (read_only)"
        )
    return con


@contextlib.contextmanager
def ci_lock(layout: Layout, purpose: str, wait: float | None = None) -> Iterator[None]:
    """Serialise the `dataops` commands that write one CI file (PR builds, reports, teardowns,
    the janitor): a lock file beside it, so a second PR build waits for the first instead of
    failing on DuckDB's lock half-way. Prints who holds it while waiting."""
    layout.ci_warehouse.parent.mkdir(parents=True, exist_ok=True)
    lock_path = layout.ci_warehouse.with_name(layout.ci_warehouse.name + ".lock")
    owner_path = lock_path.with_name(lock_path.name + ".owner")
    budget = _seconds(LOCK_WAIT_ENV, LOCK_WAIT_DEFAULT) if wait is None else wait
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads(owner_path.read_text())
        except (OSError, ValueError):
            holder = {}
        who = f"{holder.get('purpose', 'another dataops command')} (pid {holder.get('pid', '?')})"
        print(
            f"waiting for {layout.ci_warehouse.name}: held by {who}; "
            f"waiting up to {budget:.0f} s ({LOCK_WAIT_ENV})",
            file=sys.stderr,
            flush=True,
        )
        try:
            lock.acquire(timeout=budget)
        except Timeout:
            raise CicdError(
                f"{layout.ci_warehouse} is still in use by {who} after {budget:.0f} s "
                f"({LOCK_WAIT_ENV}); nothing was changed. Run the command again later."
            ) from None
    try:
        owner_path.write_text(json.dumps({"pid": os.getpid(), "purpose": purpose}))
        yield
    finally:
        owner_path.unlink(missing_ok=True)
        lock.release()


@dataclass(frozen=True)
class PrEnvironment:
    number: int
    schema: str
    created_at: datetime | None  # None when the bookkeeping table is missing (a crashed build)
    commit: str | None


def reset_environment(
    con: duckdb.DuckDBPyConnection, number: int, commit: str | None = None
) -> PrEnvironment:
    """Drop the PR schema with everything in it and create it empty, with its bookkeeping row.

    A stale PR schema must never shadow prod: dbt's defer would use an old copy of an upstream
    model found in the PR schema instead of prod's.
    """
    schema = pr_schema(number)
    created_at = datetime.now(UTC).replace(tzinfo=None)
    con.execute("begin")
    con.execute(f"drop schema if exists {quote_identifier(schema)} cascade")
    con.execute(f"create schema {quote_identifier(schema)}")
    con.execute(
        f"create table {quote_identifier(schema)}.{METADATA_TABLE} "
        "(pr_number integer not null, created_at timestamp not null, git_commit varchar)"
    )
    con.execute(
        f"insert into {quote_identifier(schema)}.{METADATA_TABLE} values (?, ?, ?)",
        [number, created_at, commit],
    )
    con.execute("commit")
    return PrEnvironment(number=number, schema=schema, created_at=created_at, commit=commit)


def list_environments(con: duckdb.DuckDBPyConnection) -> list[PrEnvironment]:
    """Every PR schema in the connected (CI) file, with its age when known."""
    schemas = [
        row[0]
        for row in con.execute(
            "select schema_name from duckdb_schemas() where database_name = current_database()"
        ).fetchall()
    ]
    found = []
    for schema in sorted(schemas):
        match = PR_SCHEMA.fullmatch(schema)
        if not match:
            continue
        created_at = commit = None
        try:
            row = con.execute(
                f"select created_at, git_commit from {quote_identifier(schema)}.{METADATA_TABLE}"
            ).fetchone()
        except duckdb.CatalogException:
            row = None
        if row:
            created_at, commit = row
        found.append(PrEnvironment(int(match.group(1)), schema, created_at, commit))
    return sorted(found, key=lambda env: env.number)


def pr_invocations(con: duckdb.DuckDBPyConnection, layout: Layout, number: int) -> list[str]:
    """The dbt invocations of a PR's builds, from the CI file's event log: those its builds
    recorded, and those whose hooks ran with the PR's target folder (a build that crashed)."""
    if not _has_table(con, "platform", "events"):
        return []
    rows = con.execute(
        """
        select json_extract_string(details, '$.dbt_invocation_id')
        from platform.events
        where event_type like 'cicd.pr_build_%'
            and try_cast(json_extract_string(details, '$.pr_number') as integer) = ?
        union
        select dbt_invocation_id
        from platform.events
        where event_type = 'dbt.invocation_started'
            and json_extract_string(details, '$.target_path') = ?
        """,
        [number, str(layout.pr_target_dir(number))],
    ).fetchall()
    return sorted({r[0] for r in rows if r[0]})


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    [(n,)] = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(n)


def forget_pr_rows(con: duckdb.DuckDBPyConnection, layout: Layout, number: int) -> int:
    """Delete a PR's rows from the CI file's shared platform tables: every row of its dbt
    invocations (node results, metrics) and its `cicd.pr_*` events. Returns the rows deleted."""
    invocations = pr_invocations(con, layout, number)
    deleted = 0
    con.execute("begin")
    if invocations:
        tables = con.execute(
            "select table_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'platform' and column_name = 'dbt_invocation_id'"
        ).fetchall()
        for (table,) in tables:
            [(n,)] = con.execute(
                f"delete from platform.{quote_identifier(table)} "
                "where list_contains(?, dbt_invocation_id)",
                [invocations],
            ).fetchall()
            deleted += n
    if _has_table(con, "platform", "events"):
        [(n,)] = con.execute(
            """
            delete from platform.events
            where event_type like 'cicd.pr_%' and event_type != 'cicd.pr_environment_dropped'
                and try_cast(json_extract_string(details, '$.pr_number') as integer) = ?
            """,
            [number],
        ).fetchall()
        deleted += n
    con.execute("commit")
    return deleted


def drop_environment(
    layout: Layout, con: duckdb.DuckDBPyConnection, number: int, reason: str
) -> bool:
    """Drop every trace of a PR: its schema, its artefacts folder and its rows in the CI file's
    platform tables. One `cicd.pr_environment_dropped` event is kept as the record of the drop
    (it ages out with vars.dataops_retention.events_days). True if anything existed."""
    schema = pr_schema(number)
    [(existed,)] = con.execute(
        "select count(*) from duckdb_schemas() where database_name = current_database() "
        "and schema_name = ?",
        [schema],
    ).fetchall()
    con.execute(f"drop schema if exists {quote_identifier(schema)} cascade")
    folder = layout.pr_dir(number)
    had_folder = folder.exists()
    shutil.rmtree(folder, ignore_errors=True)
    rows = forget_pr_rows(con, layout, number)
    ensure_events(con)
    record_event(
        con,
        "cicd.pr_environment_dropped",
        status="dropped" if (existed or had_folder or rows) else "absent",
        message=f"{schema}: {reason}",
        details={
            "pr_number": number,
            "schema": schema,
            "reason": reason,
            "folder": str(folder),
            "platform_rows_deleted": rows,
        },
    )
    return bool(existed) or had_folder or bool(rows)
