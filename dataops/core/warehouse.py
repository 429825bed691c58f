"""The warehouse file: the platform's own schema in it, and waiting for its write lock.

DuckDB allows one writing process per file ("Could not set lock on file ..."). Runs serialise
through the Dagster pool `warehouse`; short writers outside runs (sensors recording events) and
readers retry here with backoff while another process holds the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import duckdb

# The platform's own tables (load ledger, event log, metric history) live in this schema of
# every warehouse, beside the raw_<source> schemas and the dbt models.
PLATFORM_SCHEMA = "platform"

LOCK_WAIT_SECONDS = 120.0
T = TypeVar("T")


def is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def with_warehouse_lock_retry(action: Callable[[], T], wait: float = LOCK_WAIT_SECONDS) -> T:
    """Run ``action``; while another process holds the DuckDB write lock, retry with backoff
    (up to ``wait`` seconds, then the lock error is raised)."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            return action()
        except duckdb.IOException as error:
            if not is_lock_error(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
