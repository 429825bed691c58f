"""The warehouse file: the platform's own schema in it, and waiting for its write lock.

DuckDB allows one writing process per file ("Could not set lock on file ..."). Runs serialise
through the Dagster pool `warehouse`; short writers outside runs (sensors recording events) and
readers retry here with backoff while another process holds the lock.

DuckDB keeps no queue of waiting processes: whoever tries at a moment the file is free gets it.
The retries are therefore frequent and jittered (never in step with a reader that reconnects at
a fixed interval), so a writer finds the gaps between a polling reader's connections.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import duckdb

# The platform's own tables (load ledger, event log, metric history) live in this schema of
# every warehouse, beside the raw_<source> schemas and the dbt models.
PLATFORM_SCHEMA = "platform"

LOCK_WAIT_SECONDS = 120.0
# Jittered backoff between attempts: a random pause up to a ceiling that doubles from the first
# to the last value; `progress` is called about every PROGRESS_SECONDS while waiting.
FIRST_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 1.0
PROGRESS_SECONDS = 5.0
T = TypeVar("T")


def is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def with_warehouse_lock_retry(
    action: Callable[[], T],
    wait: float = LOCK_WAIT_SECONDS,
    *,
    progress: Callable[[float], None] | None = None,
) -> T:
    """Run ``action``; while another process holds the DuckDB file's lock, retry with jittered
    backoff (up to ``wait`` seconds, then the lock error is raised). ``progress`` is told the
    seconds waited so far, about every ``PROGRESS_SECONDS``."""
    started = time.monotonic()
    deadline, report_at = started + wait, started + PROGRESS_SECONDS
    ceiling = FIRST_DELAY_SECONDS
    while True:
        try:
            return action()
        except duckdb.IOException as error:
            now = time.monotonic()
            if not is_lock_error(error) or now > deadline:
                raise
            if progress is not None and now >= report_at:
                progress(now - started)
                report_at = now + PROGRESS_SECONDS
            time.sleep(min(random.uniform(0, ceiling), max(deadline - now, 0.0)))
            ceiling = min(ceiling * 2, MAX_DELAY_SECONDS)
