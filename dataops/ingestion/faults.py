"""Fault injection for the crash-recovery tests: the loader kills itself (SIGKILL) at a named point.

Set ``DATAOPS_CRASH_AT=<point>`` (or ``<point>:<n>`` for the n-th time the point is reached) and
run ingestion: the process dies there exactly as a ``kill -9`` would, with no cleanup. Unset, a
crash point costs one environment lookup. The points are listed in :data:`CRASH_POINTS`.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "DATAOPS_CRASH_AT"

CRASH_POINTS = (
    "after_connect",  # warehouse open, nothing done yet
    "after_hash",  # a landed file's content hash computed
    "after_stage",  # the file read into a temporary table (not yet validated)
    "after_begin",  # load transaction begun
    "after_create_table",  # raw table (and added drift columns) created inside the transaction
    "after_insert",  # rows inserted, ledger entry not yet written
    "after_ledger",  # ledger entry written, event not yet
    "before_commit",  # rows, ledger entry and event written, not committed
    "after_commit",  # file committed, the next file not started
    "quarantine_after_reason",  # reason file written, nothing recorded, file not moved
    "quarantine_after_record",  # ledger entry and event committed, file not moved yet
    "quarantine_after_move",  # bad file moved to the quarantine folder
    "before_checkpoint",  # every file done, warehouse not checkpointed
    "replay_after_commit",  # replayed file committed, not yet moved back to the landing folder
)

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) when DATAOPS_CRASH_AT names this point."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
