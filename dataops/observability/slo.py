"""Service levels of the data products: SLOs declared on marts, SLIs measured from the event log.

A mart declares its objectives in its YAML (``config.meta.slo``)::

    slo:
      freshness_hours: 30     # rebuilt at least every 30 hours
      freshness: 0.99         # ... during 99 % of the time
      build_success: 0.95     # 95 % of its builds succeed (skipped counts as not built)
      tests_passing: 0.98     # 98 % of the results of the tests on it pass

The indicators are measured over the last 7 and 30 days from the ``dbt.node_result`` events
the dbt hooks record in ``platform.events``: the model's successful builds (freshness: the share
of the window during which the last successful build was at most ``freshness_hours`` old), all
its results (build success; skipped counts as not built) and the results of the tests attached
to it (tests passing). The error budget is what the objective allows to fail (1 - objective);
``budget_left`` is the share of it not yet used (negative: overspent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

from dataops.core.settings import PROJECT_DIR

WINDOWS = (7, 30)
# The freshness SLO of a model without meta.slo: var dataops_model_freshness_hours of
# dbt_project.yml (the model_freshness test reads the same var), else this.
DEFAULT_FRESHNESS_VAR = "dataops_model_freshness_hours"
DEFAULT_FRESHNESS_HOURS = 30.0
OBJECTIVES = ("freshness", "build_success", "tests_passing")
DEFAULT_TARGETS = {"freshness": 0.99, "build_success": 0.95, "tests_passing": 0.95}


class SloDeclarationError(ValueError):
    pass


@dataclass(frozen=True)
class Slo:
    node_id: str
    model: str
    freshness_hours: float
    targets: Mapping[str, float]
    declared_in: str


@dataclass(frozen=True)
class Sli:
    model: str
    objective: str
    window_days: int
    target: float
    value: float | None  # None: nothing measured in the window
    good: float
    total: float

    @property
    def budget_left(self) -> float | None:
        """Share of the error budget (1 - target) not used; negative when overspent."""
        if self.value is None:
            return None
        budget = 1.0 - self.target
        used = 1.0 - self.value
        if budget <= 0:
            return 1.0 if used <= 0 else -1.0
        return 1.0 - used / budget

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value >= self.target


def declared_slos(manifest: Mapping[str, Any]) -> list[Slo]:
    """Every model's ``config.meta.slo`` from the manifest, validated."""
    slos = []
    for unique_id, node in sorted(manifest.get("nodes", {}).items()):
        if node.get("resource_type") != "model":
            continue
        meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
        declared = meta.get("slo")
        if declared is None:
            continue
        where = f"{node.get('patch_path') or node.get('original_file_path')}: model " \
            f"'{node['name']}', meta.slo"
        if not isinstance(declared, Mapping):
            raise SloDeclarationError(f"{where} is {declared!r}: expected a mapping")
        unknown = set(declared) - {"freshness_hours", *OBJECTIVES}
        if unknown:
            raise SloDeclarationError(
                f"{where}: unknown key(s) {sorted(unknown)}; expected freshness_hours, "
                f"{', '.join(OBJECTIVES)}"
            )
        hours = declared.get("freshness_hours")
        if not isinstance(hours, int | float) or isinstance(hours, bool) or hours <= 0:
            raise SloDeclarationError(
                f"{where}.freshness_hours is {hours!r}: expected a number of hours above 0"
            )
        targets = {}
        for objective in OBJECTIVES:
            target = declared.get(objective, DEFAULT_TARGETS[objective])
            if not isinstance(target, int | float) or isinstance(target, bool) \
                    or not 0 < target <= 1:
                raise SloDeclarationError(
                    f"{where}.{objective} is {target!r}: expected a share in (0, 1], e.g. 0.95"
                )
            targets[objective] = float(target)
        slos.append(Slo(unique_id, node["name"], float(hours), targets,
                        str(where.split(":")[0]).split("://")[-1]))
    return slos


def default_freshness_hours(project_dir: Path = PROJECT_DIR) -> float:
    """``vars.dataops_model_freshness_hours`` of ``dbt_project.yml`` (30 when not declared)."""
    path = project_dir / "dbt_project.yml"
    declared = (yaml.safe_load(path.read_text(encoding="utf-8")).get("vars") or {}).get(
        DEFAULT_FRESHNESS_VAR, DEFAULT_FRESHNESS_HOURS
    )
    if not isinstance(declared, int | float) or isinstance(declared, bool) or declared <= 0:
        raise SloDeclarationError(
            f"{path}: vars.{DEFAULT_FRESHNESS_VAR} is {declared!r}: expected a number of hours "
            "above 0"
        )
    return float(declared)


def model_freshness_hours(manifest: Mapping[str, Any], default_hours: float) -> dict[str, float]:
    """The freshness SLO in hours of every model that is built (not ephemeral, enabled): its
    ``meta.slo.freshness_hours``, else ``default_hours``; the model_freshness test's rule."""
    declared = {slo.node_id: slo.freshness_hours for slo in declared_slos(manifest)}
    return {
        unique_id: declared.get(unique_id, default_hours)
        for unique_id, node in sorted(manifest.get("nodes", {}).items())
        if node.get("resource_type") == "model"
        and (node.get("config") or {}).get("enabled", True)
        and (node.get("config") or {}).get("materialized") != "ephemeral"
    }


def fresh_share(builds: list[datetime], hours: float, start: datetime, end: datetime) -> float:
    """Share of [start, end] during which the latest build was at most ``hours`` old."""
    limit = timedelta(hours=hours)
    last = max((b for b in builds if b <= start), default=None)
    edges = [start, *sorted(b for b in builds if start < b <= end), end]
    stale = 0.0
    for index, (a, z) in enumerate(zip(edges, edges[1:], strict=False)):
        if index > 0:
            last = edges[index]
        if last is None:
            stale += (z - a).total_seconds()
        else:
            stale += max(0.0, (z - max(a, last + limit)).total_seconds())
    total = (end - start).total_seconds()
    return 1.0 - stale / total if total > 0 else 1.0


def measure(
    con: duckdb.DuckDBPyConnection, slos: list[Slo], now: datetime,
    windows: tuple[int, ...] = WINDOWS,
) -> list[Sli]:
    """The SLIs of every declared SLO over each window ending at ``now``."""
    found: list[Sli] = []
    for slo in slos:
        builds = [row[0] for row in con.execute(
            "select occurred_at from platform.events where event_type = 'dbt.node_result' "
            "and node_id = ? and status = 'success' and occurred_at <= ? order by 1",
            [slo.node_id, now]).fetchall()]
        results = con.execute(
            "select occurred_at, status, details from platform.events "
            "where event_type = 'dbt.node_result' and occurred_at <= ? "
            "and (node_id = ? or details::json ->> 'tested_node_id' = ?)",
            [now, slo.node_id, slo.node_id]).fetchall()
        for days in windows:
            start = now - timedelta(days=days)
            # measured from the first build on (a new mart does not start in debt)
            since = max(start, builds[0]) if builds else start
            share = fresh_share(builds, slo.freshness_hours, since, now) if builds else None
            hours = (now - since).total_seconds() / 3600
            found.append(Sli(slo.model, "freshness", days, slo.targets["freshness"], share,
                             (share or 0.0) * hours, hours))
            in_window = [(status, json.loads(details or "{}")) for occurred, status, details
                         in results if occurred >= start]
            built = [s for s, d in in_window if d.get("resource_type") == "model"]
            good = sum(1 for s in built if s == "success")
            found.append(Sli(slo.model, "build_success", days, slo.targets["build_success"],
                             good / len(built) if built else None, good, len(built)))
            tested = [s for s, d in in_window if d.get("resource_type") == "test"]
            good = sum(1 for s in tested if s == "pass")
            found.append(Sli(slo.model, "tests_passing", days, slo.targets["tests_passing"],
                             good / len(tested) if tested else None, good, len(tested)))
    return found
