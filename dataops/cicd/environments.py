"""Where CI/CD keeps things, and the pull-request environments (one schema each) in the CI file.

A PR environment is the schema ``pr_<number>`` in the CI warehouse file (never the prod file),
holding the PR's models and one bookkeeping table, ``_pr_environment`` (PR number, creation time,
commit), from which the janitor reads its age. Beside it, ``$DATAOPS_HOME/pr/<number>/`` holds
the PR build's dbt artefacts and report. Dropping both leaves no trace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dataops.core.events import ensure_events, record_event
from dataops.core.settings import PROJECT_DIR, load_settings
from dataops.core.sql import quote_identifier, quote_literal

PR_SCHEMA = re.compile(r"pr_([1-9][0-9]*)")
METADATA_TABLE = "_pr_environment"


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
        return env


def load_layout() -> Layout:
    ci = load_settings("ci")
    prod = load_settings("prod")
    return Layout(home=ci.home, ci_warehouse=ci.warehouse_path, prod_warehouse=prod.warehouse_path)


def connect(
    path: Path, *, read_only: bool = False, attach: dict[str, Path] | None = None, attempts: int = 6
) -> duckdb.DuckDBPyConnection:
    """Open a warehouse file, waiting (exponential backoff) while another process holds its lock.

    ``attach`` maps catalog aliases to files attached READ ONLY (prod, for the diff).
    """
    delay = 0.5
    for attempt in range(attempts):
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or attempt == attempts - 1:
                raise CicdError(
                    f"Cannot open {path}: {error}. Another process holds it; PR builds, teardowns "
                    "and the janitor on one CI file must run one at a time."
                ) from error
            time.sleep(delay)
            delay *= 2
    for alias, attached in (attach or {}).items():
        con.execute(
            f"attach {quote_literal(str(attached))} as {quote_identifier(alias)} (read_only)"
        )
    return con




@dataclass(frozen=True)
class PrEnvironment:
    number: int
    schema: str
    created_at: datetime | None  # None when the bookkeeping table is missing (a crashed build)
    commit: str | None


def git_commit(project_dir: Path = PROJECT_DIR) -> str | None:
    """The checked-out commit of the project, or GITHUB_SHA, or None outside git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        result = None
    if result is not None and result.returncode == 0:
        return result.stdout.strip()
    return os.environ.get("GITHUB_SHA")


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


def drop_environment(
    layout: Layout, con: duckdb.DuckDBPyConnection, number: int, reason: str
) -> bool:
    """Drop a PR's schema and its artefacts folder; record the event. True if anything existed."""
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
    ensure_events(con)
    record_event(
        con,
        "cicd.pr_environment_dropped",
        status="dropped" if (existed or had_folder) else "absent",
        message=f"{schema}: {reason}",
        details={"pr_number": number, "schema": schema, "reason": reason, "folder": str(folder)},
    )
    return bool(existed) or had_folder
