"""Compile, ahead of a dbt command, the Jinja templates of the macros the command will call.

dbt compiles a macro's template the first time a process calls it (``dbt_common``'s
``template_cache``, one per process): in a warm process (dataops/dbt/preloaded.py) the first
build still spent ~0.5-0.7 s CPU compiling the ~190 macros a build uses (materialisations,
adapter macros, the observability hooks, tests), about a fifth of its time above the SQL at
small scale (docs/benchmarks.md "Main job"). :func:`warm_templates` compiles them while the
process waits, into the same cache dbt reads, so the command finds them compiled.

Which macros: those the manifest's nodes and hooks depend on, the materialisations of their
types, the macros dbt-adapters calls from Python (relation cache, renames, drops, column
lookups) and the incremental strategies, each closed over the macros it depends on and over the
dispatched implementations of its name (``<adapter>__name``, ``default__name``). A macro missed
is compiled by dbt when first called, as before; a template that does not compile is left to dbt,
which reports it with its own error when (if ever) the macro is called.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Macros dbt-adapters calls by name from Python (BaseAdapter.execute_macro), not visible in any
# node's depends_on; and the unit test and seed helpers dbt calls the same way.
PYTHON_CALLED = (
    "check_schema_exists",
    "create_schema",
    "drop_relation",
    "drop_schema",
    "get_columns_in_relation",
    "get_fixture_sql",
    "get_quoted_csv",
    "list_relations_without_caching",
    "list_schemas",
    "rename_relation",
    "truncate_relation",
    "validate_fixture_rows",
)
MATERIALIZATION_OF = {"test": "test", "seed": "seed", "unit_test": "unit"}


def macros_to_compile(manifest: Any, adapter_type: str) -> list[str]:
    """Unique ids of the macros a command on ``manifest`` is expected to call, closed over
    their dependencies and dispatched implementations."""
    by_name: dict[str, list[str]] = {}
    for unique_id, macro in manifest.macros.items():
        by_name.setdefault(macro.name, []).append(unique_id)

    def named(names: Iterable[str]) -> list[str]:
        return [unique_id for name in names for unique_id in by_name.get(name, [])]

    roots: list[str] = named(PYTHON_CALLED)
    materializations = {"unit"} if getattr(manifest, "unit_tests", None) else set()
    for node in [*manifest.nodes.values(), *getattr(manifest, "unit_tests", {}).values()]:
        roots += list(getattr(getattr(node, "depends_on", None), "macros", None) or [])
        config = getattr(node, "config", None)
        kind = MATERIALIZATION_OF.get(str(getattr(node, "resource_type", "")))
        kind = kind or getattr(config, "materialized", None)
        if kind:
            materializations.add(kind)
        if kind == "incremental":  # dbt looks its strategy's macro up by name
            strategy = getattr(config, "incremental_strategy", None) or "default"
            roots += named([f"get_incremental_{strategy.replace('+', '_')}_sql"])
    roots += named(
        f"materialization_{kind}_{suffix}"
        for kind in sorted(materializations)
        for suffix in (adapter_type, "default")
    )
    closed: set[str] = set()
    pending = list(roots)
    while pending:
        unique_id = pending.pop()
        macro = manifest.macros.get(unique_id)
        if macro is None or unique_id in closed:
            continue
        closed.add(unique_id)
        pending += list(macro.depends_on.macros)
        pending += named((f"{adapter_type}__{macro.name}", f"default__{macro.name}"))
    return sorted(closed)


def warm_templates(manifest: Any, adapter_type: str | None = None) -> int:
    """Compile the templates :func:`macros_to_compile` names into dbt's template cache; the
    number compiled now (those already in the cache are not compiled again)."""
    from dbt_common.clients.jinja import template_cache

    adapter_type = adapter_type or getattr(manifest.metadata, "adapter_type", None) or "default"
    compiled = 0
    for unique_id in macros_to_compile(manifest, adapter_type):
        macro = manifest.macros[unique_id]
        if macro.macro_sql in template_cache.file_cache:
            continue
        try:
            template_cache.get_node_template(macro)
        except Exception:  # noqa: BLE001 (dbt raises it, with its message, if the macro is called)
            continue
        compiled += 1
    return compiled
