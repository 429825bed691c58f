"""Pruned PR builds: descendants of a modified model are rebuilt only if its data changed.

A PR build selects ``state:modified+``: every model downstream of a change is rebuilt, even when
the change leaves the modified model's data as it was (a comment, a refactoring, a renamed CTE).
Here the build runs in two steps:

1. the modified models (and the staging models of changed source declarations) with their tests,
   every other ref read from prod (``--defer --favor-state``, as before);
2. each model built in step 1 is compared with its prod relation: same columns and types, same
   row count, same order-independent sum of row hashes (one scan of each side). Then only the
   descendants with at least one parent whose data differs are built, deferred *without*
   ``--favor-state``: a ref to a model step 1 built resolves to the PR schema, any other ref to
   prod. A descendant whose parents all hold prod's data would be rebuilt from the same inputs
   as prod's copy, so it is left out and reported as "data identical to prod".

A model is never judged identical when that cannot be trusted: its build or one of its tests
failed, its compiled SQL is nondeterministic (``now()``, ``random()``, ``uuid()``, a sample, ...)
or cannot be parsed, it is a Python model, a snapshot or ephemeral. Full-refresh builds and
builds with a custom ``--select`` are not pruned (``applies``).
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dataops.cicd.environments import Layout
from dataops.core.sql import quote_identifier, quote_literal
from dataops.dbt.runner import DbtOutcome

MODEL_TYPES = ("model", "seed", "snapshot")
PASSED = {"success", "pass", "warn"}
FAILED = {"error", "fail", "runtime error", "skipped"}

# sqlglot is imported by nondeterminism() only: most commands importing this module never call it.
# Expressions whose value changes from one run to the next (sqlglot's classes, DuckDB dialect).
NONDETERMINISTIC_EXPRESSIONS = (
    "CurrentTimestamp",
    "CurrentDate",
    "CurrentTime",
    "CurrentDatetime",
    "Localtimestamp",
    "Rand",
    "Uuid",
    "TableSample",
    "AnyValue",
    "First",
    "Last",
)
NONDETERMINISTIC_FUNCTIONS = {
    "now",
    "get_current_timestamp",
    "get_current_time",
    "transaction_timestamp",
    "current_localtime",
    "current_localtimestamp",
    "localtime",
    "random",
    "setseed",
    "uuidv4",
    "uuidv7",
    "gen_random_uuid",
    "arbitrary",
    "reservoir_quantile",
    "epoch_ms_now",
}
# Window functions whose result depends on row order when the window has no ORDER BY.
ORDER_DEPENDENT_WINDOWS = ("RowNumber", "FirstValue", "LastValue", "NthValue", "Lag", "Lead")


def applies(select: Sequence[str], default_selection: Sequence[str], full_refresh: bool) -> bool:
    """Pruning replaces the default ``state:modified+`` build only; a custom ``--select`` and a
    full refresh build what they always built."""
    return tuple(select) == tuple(default_selection) and not full_refresh


def nondeterminism(sql: str | None) -> str | None:
    """Why a model's compiled SQL may give different data from one run to the next (None if it
    cannot). SQL sqlglot cannot parse counts as nondeterministic: it cannot be checked."""
    import sqlglot
    from sqlglot import exp

    if not sql:
        return "no compiled SQL"
    nondeterministic = tuple(getattr(exp, name) for name in NONDETERMINISTIC_EXPRESSIONS)
    order_dependent = tuple(getattr(exp, name) for name in ORDER_DEPENDENT_WINDOWS)
    try:
        statements = sqlglot.parse(sql, dialect="duckdb")
    except sqlglot.errors.SqlglotError as error:
        return f"SQL not parsable by sqlglot ({str(error).splitlines()[0][:120]})"
    for statement in statements:
        if statement is None:
            continue
        for node in statement.walk():
            if isinstance(node, nondeterministic):
                return f"nondeterministic SQL: {node.sql(dialect='duckdb')[:80]}"
            if isinstance(node, exp.Anonymous) and node.name.lower() in NONDETERMINISTIC_FUNCTIONS:
                return f"nondeterministic SQL: {node.name}()"
            if (
                isinstance(node, exp.Window)
                and isinstance(node.this, order_dependent)
                and not node.args.get("order")
            ):
                return f"nondeterministic SQL: {node.sql(dialect='duckdb')[:80]} (no order by)"
    return None


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"describe select * from {relation}").fetchall()]


def _fingerprint(
    con: duckdb.DuckDBPyConnection, relation: str, columns: list[tuple[str, str]]
) -> tuple[int, int]:
    """Row count and the sum of one hash per row (as HUGEINT: no overflow, duplicates counted),
    which does not depend on row order. DuckDB's hash of a row tells NULL from any value and
    a column's position from another's."""
    alias = "_dataops_row"
    while alias in {name for name, _ in columns}:
        alias += "_"
    count, total = con.execute(
        f"select count(*), coalesce(sum(hash({alias})), 0) from {relation} as {alias}"
    ).fetchone()
    return int(count), int(total)


def compare_with_prod(
    con: duckdb.DuckDBPyConnection, pr_relation: str, prod_relation: str
) -> str | None:
    """None when both relations hold the same data (same columns in the same order with the
    same types, same rows as a multiset), else what differs."""
    pr_columns, prod_columns = _columns(con, pr_relation), _columns(con, prod_relation)
    if pr_columns != prod_columns:
        return "columns or types differ from prod"
    pr_count, pr_hash = _fingerprint(con, pr_relation, pr_columns)
    prod_count, prod_hash = _fingerprint(con, prod_relation, prod_columns)
    if pr_count != prod_count:
        return f"row count differs from prod ({prod_count:,} -> {pr_count:,})"
    if pr_hash != prod_hash:
        return f"row values differ from prod ({pr_count:,} rows)"
    return None


@dataclass
class Pruning:
    """What a pruned PR build did beyond dbt's results."""

    outcome: DbtOutcome
    # each model step 1 built -> "identical" or why its descendants were rebuilt
    compared: dict[str, str] = field(default_factory=dict)
    # descendants not rebuilt -> the modified parents whose data is identical to prod's
    pruned: dict[str, list[str]] = field(default_factory=dict)
    invocation_ids: list[str] = field(default_factory=list)


IDENTICAL = "identical"
FAILED_UPSTREAM = "not compared: its build or a test failed"


def _one_level(selector: str) -> str:
    """`source:s.t+` (the source and every descendant) -> `source:s.t+1` (its direct children)."""
    return selector.split(",")[0].rstrip("+") + "+1"


def _read_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"results": []}


def _tested(manifest: dict[str, Any], test: dict[str, Any]) -> list[str]:
    node = (
        manifest["nodes"].get(test["unique_id"])
        or manifest.get("unit_tests", {}).get(test["unique_id"])
        or {}
    )
    parents = (node.get("depends_on") or {}).get("nodes") or []
    attached = [node["attached_node"]] if node.get("attached_node") else []
    return [*attached, *(p for p in parents if p.split(".")[0] in MODEL_TYPES)]


def verdicts(
    con: duckdb.DuckDBPyConnection,
    manifest: dict[str, Any],
    prod_manifest: dict[str, Any],
    results: list[dict[str, Any]],
) -> dict[str, str]:
    """For each model-type node of step 1 with models downstream: "identical" (its data is
    prod's), or why not. A model nothing is built from is not compared (nothing to decide)."""
    status = {r["unique_id"]: r["status"] for r in results}
    children = manifest.get("child_map") or {}
    failed = {
        model
        for r in results
        if r["unique_id"].split(".")[0] in ("test", "unit_test") and r["status"] in FAILED
        for model in _tested(manifest, r)
    }
    found: dict[str, str] = {}
    for uid in sorted(u for u in status if u.split(".")[0] in MODEL_TYPES):
        if not any(c.split(".")[0] in MODEL_TYPES for c in children.get(uid, [])):
            continue
        node, prod_node = manifest["nodes"].get(uid) or {}, prod_manifest["nodes"].get(uid)
        materialized = (node.get("config") or {}).get("materialized")
        if status[uid] not in PASSED or uid in failed:
            found[uid] = FAILED_UPSTREAM
        elif not prod_node or not prod_node.get("relation_name"):
            found[uid] = "new: not in prod"
        elif node.get("resource_type") == "snapshot" or materialized == "ephemeral":
            found[uid] = f"not compared: {materialized or node.get('resource_type')}"
        elif node.get("language", "sql") != "sql":
            found[uid] = f"not compared: a {node.get('language')} model"
        else:
            sql = next((r.get("compiled_code") for r in results if r["unique_id"] == uid), None)
            reason = None if node.get("resource_type") == "seed" else nondeterminism(sql)
            if reason is None:
                try:
                    reason = compare_with_prod(
                        con, node["relation_name"], prod_node["relation_name"]
                    )
                except duckdb.Error as error:
                    reason = f"not compared: {str(error).splitlines()[0][:160]}"
            found[uid] = reason or IDENTICAL
    return found


def plan(
    manifest: dict[str, Any], prod_manifest: dict[str, Any], compared: dict[str, str]
) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """Which descendants of the step-1 models to build, which to leave to prod (with the
    identical parents that allow it), and which to skip after a failure upstream."""
    children, parents = manifest.get("child_map") or {}, manifest.get("parent_map") or {}
    nodes = manifest["nodes"]

    def model_type(uid: str) -> bool:
        return uid.split(".")[0] in MODEL_TYPES and uid in nodes

    # A modified ephemeral model is never built, so never in step 1's results: its data differs.
    roots = dict(compared)
    for uid, node in nodes.items():
        if (node.get("config") or {}).get("materialized") == "ephemeral":
            old = prod_manifest["nodes"].get(uid)
            if not old or old.get("checksum") != node.get("checksum"):
                roots.setdefault(uid, "not compared: ephemeral")
    descendants: set[str] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if model_type(child) and child not in roots and child not in descendants:
                descendants.add(child)
                stack.append(child)
    differs = {uid for uid, verdict in roots.items() if verdict != IDENTICAL}
    failed = {uid for uid, verdict in roots.items() if verdict == FAILED_UPSTREAM}
    build: list[str] = []
    pruned: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    graph = {uid: [p for p in parents.get(uid, []) if p in descendants] for uid in descendants}
    for uid in graphlib.TopologicalSorter(graph).static_order():
        ups = parents.get(uid, [])
        upstream_failure = next((p for p in ups if p in failed or p in skipped), None)
        if upstream_failure:
            skipped[uid] = upstream_failure
        elif any(p in differs for p in ups):
            differs.add(uid)
            build.append(uid)
        else:  # name the modified models whose identity with prod allows it
            pruned[uid] = sorted(
                {p for p in ups if p in roots} | {r for p in ups for r in pruned.get(p, [])}
            )
    return build, pruned, skipped


def _selector(node: dict[str, Any]) -> str:
    return "fqn:" + ".".join(node["fqn"])


def outcome_of_results(
    manifest: dict[str, Any], results: list[dict[str, Any]], success: bool
) -> DbtOutcome:
    """A DbtOutcome counted from run_results entries (the two steps' merged)."""
    outcome = DbtOutcome(success=success)
    for r in results:
        uid = r["unique_id"]
        node = manifest["nodes"].get(uid) or manifest.get("unit_tests", {}).get(uid) or {}
        name = node.get("name") or uid.split(".")[-1]
        outcome.record(uid.split(".")[0], name, r["status"], r.get("message"))
    return outcome


def build(
    con: duckdb.DuckDBPyConnection,
    layout: Layout,
    number: int,
    manifest: dict[str, Any],
    prod_manifest: dict[str, Any],
    sources: Sequence[str],
    run_step: Callable[[Sequence[str], bool], DbtOutcome],
) -> Pruning:
    """Build the modified models, compare them with prod, then build only the descendants whose
    inputs differ from prod's. ``sources``: selectors of changed (or relocated) source tables
    (`source:s.t+`); ``run_step(select, favor_state)`` runs one deferred `dbt build`."""
    target_dir = layout.pr_target_dir(number)
    results_file = target_dir / "run_results.json"
    first = run_step(["state:modified", *(_one_level(s) for s in sources)], True)
    first_results = _read_results(results_file)
    ids = [i for i in [first_results.get("metadata", {}).get("invocation_id")] if i]
    if first.exception:
        return Pruning(first, invocation_ids=ids)
    con.execute(
        f"attach if not exists {quote_literal(str(layout.prod_warehouse))} "
        f"as {quote_identifier(layout.prod_catalog)} (read_only)"
    )
    compared = verdicts(con, manifest, prod_manifest, first_results["results"])
    to_build, pruned, skipped = plan(manifest, prod_manifest, compared)
    selectors = [
        _selector(manifest["nodes"][uid])
        for uid in to_build
        if (manifest["nodes"][uid].get("config") or {}).get("materialized") != "ephemeral"
    ]
    if not selectors and not skipped:
        return Pruning(first, compared, pruned, ids)
    second, second_results = None, {"results": []}
    if selectors:
        second = run_step(selectors, False)
        second_results = _read_results(results_file)
        ids += [i for i in [second_results.get("metadata", {}).get("invocation_id")] if i]
    rerun = {r["unique_id"] for r in second_results["results"]}
    merged = [r for r in first_results["results"] if r["unique_id"] not in rerun]
    merged += second_results["results"]
    merged += [
        {
            "unique_id": uid,
            "status": "skipped",
            "message": f"not built: {manifest['nodes'][cause]['name']} upstream failed",
            "execution_time": 0.0,
            "timing": [],
            "thread_id": None,
            "adapter_response": {},
            "failures": None,
            "compiled": False,
            "compiled_code": None,
            "relation_name": manifest["nodes"][uid].get("relation_name"),
        }
        for uid, cause in skipped.items()
    ]
    record = dict(first_results)
    record["results"] = merged
    record["elapsed_time"] = first_results.get("elapsed_time", 0) + second_results.get(
        "elapsed_time", 0
    )
    results_file.write_text(json.dumps(record, indent=2) + "\n")
    success = first.success and (second is None or second.success)
    outcome = outcome_of_results(manifest, merged, success)
    outcome.exception = second.exception if second else None
    outcome.invocation_id = first.invocation_id
    return Pruning(outcome, compared, pruned, ids)
