"""Invoking dbt: argument building (small pure functions) and an in-process runner."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestration.settings import PROFILES_DIR, PROJECT_DIR, Settings


def dbt_args(
    command: str,
    target: str,
    *,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dbt_vars: dict[str, Any] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The argument list of one dbt command for a target, project and profiles at the repo root."""
    args = [
        command,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROFILES_DIR),
        "--target",
        target,
    ]
    if select:
        args += ["--select", *select]
    if exclude:
        args += ["--exclude", *exclude]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    return args + list(extra)


@dataclass
class DbtOutcome:
    """What a dbt invocation did, counted by resource type and status."""

    success: bool
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    exception: str | None = None

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(n for (rtype, status), n in self.counts.items()
                   if rtype == resource_type and (not statuses or status in statuses))


def run_dbt(settings: Settings, args: list[str]) -> DbtOutcome:
    """Run dbt in this process with the target's environment; never raises on a failed build."""
    from dbt.cli.main import dbtRunner  # imported late: dbt is heavy and not needed to plan

    os.environ.update(settings.dbt_env())
    result = dbtRunner().invoke(args)
    outcome = DbtOutcome(success=result.success)
    if result.exception is not None:
        outcome.exception = str(result.exception)
    for node_result in getattr(result.result, "results", None) or []:
        node = node_result.node
        status = str(node_result.status)
        outcome.counts[(node.resource_type, status)] += 1
        if status in ("error", "fail", "runtime error"):
            outcome.failures.append(
                f"{node.resource_type} {node.name}: {status}: {node_result.message}"
            )
    return outcome
