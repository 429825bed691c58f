"""The landing protocol: which landed files are complete, so no half-written file is ever read.

A writer delivers a file in one of two ways (docs/source-declarations.md, "Landing protocol"):

1. **Temporary name, then rename** (preferred, atomic): write ``.orders_2025-01-01.csv`` (a name
   starting with ``.``, ``_`` or ``~``) or ``orders_2025-01-01.csv.tmp`` / ``.part`` /
   ``.partial`` / ``.filepart``, then rename it to its final name. A temporary name is never
   picked up, whatever the declared pattern.
2. **Settle window**, for writers we do not control: a file is picked up only once neither its
   size nor its modification time has moved for ``DATAOPS_SETTLE_SECONDS``
   (default 5). A file still being written waits for a later run.

Both ``dataops ingest`` and the Dagster landing sensor use :func:`ready_files`, and the loader
checks a file again before committing it (:func:`unchanged`): a file that changed while it was
read is neither loaded nor quarantined, it waits for the next run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from dataops.sources.registry import SourceTable

SETTLE_ENV = "DATAOPS_SETTLE_SECONDS"
DEFAULT_SETTLE_SECONDS = 5.0
TEMPORARY_PREFIXES = (".", "_", "~")
TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".download")


def settle_seconds() -> float:
    value = os.environ.get(SETTLE_ENV)
    if not value:
        return DEFAULT_SETTLE_SECONDS
    try:
        return max(0.0, float(value))
    except ValueError:
        raise ValueError(
            f"{SETTLE_ENV}={value!r} is not a number: expected seconds, e.g. 5"
        ) from None


def is_temporary(path: Path) -> bool:
    """A name writers use while writing (renamed to its final name when complete)."""
    name = path.name
    return name.startswith(TEMPORARY_PREFIXES) or name.lower().endswith(TEMPORARY_SUFFIXES)


@dataclass(frozen=True)
class Snapshot:
    """What a file looked like when it was chosen: compared again before its load commits."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Snapshot:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns)

    def age(self, now_ns: int) -> float:
        return (now_ns - self.mtime_ns) / 1e9


def unchanged(path: Path, snapshot: Snapshot) -> bool:
    try:
        return Snapshot.of(path) == snapshot
    except OSError:
        return False


@dataclass(frozen=True)
class Waiting:
    path: Path
    age: float  # seconds since its last change


def ready_files(
    table: SourceTable, landing_root: Path, settle: float | None = None
) -> tuple[list[tuple[Path, Snapshot]], list[Waiting]]:
    """The table's landed files that are complete (settled, not temporary), and those waiting."""
    settle = settle_seconds() if settle is None else settle
    now_ns = time.time_ns()
    ready, waiting = [], []
    for path in table.landed_files(landing_root):
        if is_temporary(path):
            continue
        try:
            snapshot = Snapshot.of(path)
        except OSError:  # renamed or removed since it was listed
            continue
        age = snapshot.age(now_ns)
        if age < settle:
            waiting.append(Waiting(path, age))
        else:
            ready.append((path, snapshot))
    return ready, waiting
