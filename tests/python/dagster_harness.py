"""Helpers for the Dagster end-to-end tests: a built platform home, real Dagster processes
(daemon, or webserver + daemon through `make ui`) in their own process group, GraphQL, and
landed-file variants that keep the sample data valid.

Nothing here imports Dagster at module level (test modules that never start Dagster import it).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from dataops.core.settings import REPO_ROOT
from tests.python.conftest import clone_home, dataops, platform_env  # noqa: F401 (re-exported)

INSTANCE_YAML = REPO_ROOT / "orchestration" / "instance" / "dagster.yaml"
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 1200, interval: float = 1.0
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    The timeout only bounds a hang (it is generous: CI machines are shared); no test asserts speed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dagster_env(home: Path, dagster_home: Path, **extra: str) -> dict[str, str]:
    env = platform_env(home)
    env.pop("ALERT_WEBHOOK_URL", None)
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            "PYTHONUNBUFFERED": "1",
            # Shared CI machines can be slow to answer: give the code server more than 60 s.
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",
            **extra,
        }
    )
    return env


def install_instance(dagster_home: Path) -> Path:
    """The repo's instance config in a DAGSTER_HOME, with its storage created up front (a fresh
    home opened at once by the daemon and its code server can race on the sqlite schema)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE_YAML, dagster_home / "dagster.yaml")
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))):
        pass
    return dagster_home


class ProcessGroup:
    """A command started in its own session/process group, stopped by that group id only."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._log_handle = log.open("ab")
        self.process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pgid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, first: int = signal.SIGTERM, grace: float = 60) -> None:
        for sig in (first, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace if sig != signal.SIGKILL else 10)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log_handle.close()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_daemon(env: dict[str, str], log: Path) -> ProcessGroup:
    daemon = str(Path(sys.executable).parent / "dagster-daemon")
    return ProcessGroup([daemon, "run", "-m", "orchestration.definitions"], env, log)


def prepare_manifest(home: Path) -> None:
    dataops(home, "dbt", "prepare")


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


# --- landed files that keep the sample valid ------------------------------------------------


def redelivery(archive: Path, landing: Path, table: str, n: int) -> Path:
    """A shop file re-delivering one row of ``table`` (customers, products or orders: tables
    deduplicated by ``updated_at``) with the latest ``updated_at`` (and, for customers, a changed
    first name): new content, valid data, resolved by staging's deduplication."""
    source = sorted((archive / "shop" / table).glob("*.csv"))[0]
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    row = dict(rows[n % len(rows)])
    if "first_name" in row:
        row["first_name"] = f"Variant{n}"
    # Later than any delivery of the sample (whose window starts 2025-01-01), so it wins.
    updated = max(datetime.fromisoformat(row["updated_at"]), datetime(2025, 12, 31))
    row["updated_at"] = (updated + timedelta(seconds=n + 1)).strftime("%Y-%m-%d %H:%M:%S")
    folder = landing / "shop" / table
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{table}_redelivery_{n:03d}.csv"
    partial = folder / f".{target.name}.partial"
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(row)
    partial.rename(target)  # land atomically, like an upload finishing
    return target


def customer_redelivery(archive: Path, landing: Path, n: int) -> Path:
    return redelivery(archive, landing, "customers", n)


def extra_sessions(archive: Path, landing: Path, n: int) -> Path:
    """A web sessions file with the first day's sessions under new session ids."""
    source = sorted((archive / "web" / "sessions").glob("*.parquet"))[0]
    folder = landing / "web" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"sessions_extra_{n:03d}.parquet"
    partial = folder / f".{target.name}.partial"
    with duckdb.connect() as con:
        con.execute(
            f"copy (select * replace ('x{n:03d}' || session_id as session_id) "
            f"from read_parquet('{source}') limit 20) to '{partial}' (format parquet)"
        )
    partial.rename(target)
    return target


def broken_customers(landing: Path) -> Path:
    folder = landing / "shop" / "customers"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "customers_broken.csv"
    target.write_text("these,are,not\nthe,declared,columns\n", encoding="utf-8")
    return target


def warehouse_query(home: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Read the warehouse, waiting while a run holds the write lock."""
    from dataops.core.warehouse import with_warehouse_lock_retry

    def read() -> list[tuple]:
        with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    return with_warehouse_lock_retry(read)
