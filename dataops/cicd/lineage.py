"""Column-level impact of a PR: which downstream columns, marts and exposures a changed column
reaches, computed from the compiled SQL with sqlglot (its optimizer qualifies every column,
expanding ``select *`` from the warehouse's own column lists, and its lineage walks each output
column back to the table columns it reads).

A model's columns come from the warehouse (the PR relation or prod's), so star expansion sees
exactly what was built. Edges are (model, column) -> (model, column); the impact of a changed
column is everything reachable from it. Exposures (dashboards, notebooks, applications declared
in ``models/marts/_exposures.yml``) are reached through the models they depend on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import duckdb
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope
from sqlglot.schema import MappingSchema

Column = tuple[str, str]  # (node unique id, column name)


def relation_key(relation_name: str) -> str:
    """`"warehouse_prod"."marts"."fct_orders"` -> `warehouse_prod.marts.fct_orders`."""
    return ".".join(part.strip('"').lower() for part in relation_name.split('"."'))


def _table_key(table: exp.Table) -> str:
    return ".".join(p.lower() for p in (table.catalog, table.db, table.name) if p)


def warehouse_schema(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every relation's columns and types in the connected file and its attachments, as the
    nested mapping sqlglot's MappingSchema reads (catalog -> schema -> table -> column -> type)."""
    mapping: dict[str, Any] = {}
    for catalog, schema, table, column, data_type in con.execute(
        "select database_name, schema_name, table_name, column_name, data_type "
        "from duckdb_columns() where not internal"
    ).fetchall():
        mapping.setdefault(catalog, {}).setdefault(schema, {}).setdefault(table, {})[column] = (
            data_type
        )
    return mapping


def column_sources(sql: str, schema: MappingSchema) -> dict[str, set[tuple[str, str]]]:
    """For each output column of a SELECT: the (relation key, column) pairs it is computed from.

    ``count(*)`` and literals depend on no column (an empty set)."""
    expression = qualify(
        parse_one(sql, read="duckdb"),
        schema=schema,
        dialect="duckdb",
        validate_qualify_columns=False,
        identify=False,
    )
    scope = build_scope(expression)
    found: dict[str, set[tuple[str, str]]] = {}
    for select in expression.selects:
        name = select.alias_or_name
        node = lineage(name, expression, schema=schema, dialect="duckdb", scope=scope)
        sources = set()
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.source, exp.Table):
                continue
            sources.add((_table_key(leaf.source), leaf.name.split(".")[-1].strip('"')))
        found[name] = sources
    return found


@dataclass
class Impact:
    """What each changed column reaches downstream."""

    changed: list[Column]
    reaches: dict[Column, list[Column]] = field(default_factory=dict)
    marts: dict[Column, list[str]] = field(default_factory=dict)
    exposures: dict[Column, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # model name -> why it was not parsed


def column_graph(
    manifest: dict[str, Any],
    prod_manifest: dict[str, Any],
    models: list[str],
    schema: MappingSchema,
    errors: dict[str, str],
) -> dict[Column, set[Column]]:
    """Edges parent column -> child column, for the given models' compiled SQL."""
    by_relation = {}
    for source_manifest in (prod_manifest, manifest):  # the PR's relations win
        for uid, node in source_manifest.get("nodes", {}).items():
            if node.get("relation_name"):
                by_relation[relation_key(node["relation_name"])] = uid
    children: dict[Column, set[Column]] = {}
    for uid in models:
        node = manifest["nodes"][uid]
        sql = node.get("compiled_code")
        if not sql:
            continue
        try:
            sources = column_sources(sql, schema)
        except (SqlglotError, RecursionError, KeyError, ValueError) as error:
            errors[node["name"]] = f"{type(error).__name__}: {str(error)[:200]}"
            continue
        for column, parents in sources.items():
            for relation, parent_column in parents:
                parent = by_relation.get(relation)
                if parent:
                    children.setdefault((parent, parent_column), set()).add((uid, column))
    return children


def impact(
    manifest: dict[str, Any],
    prod_manifest: dict[str, Any],
    changed: list[Column],
    built: list[str],
    schema_mapping: dict[str, Any],
) -> Impact:
    """The downstream columns, marts and exposures each changed column reaches."""
    result = Impact(changed=sorted(changed))
    schema = MappingSchema(schema_mapping, dialect="duckdb", normalize=False)
    graph = column_graph(manifest, prod_manifest, built, schema, result.errors)
    exposures = manifest.get("exposures") or {}
    for start in result.changed:
        seen: set[Column] = set()
        queue = deque([start])
        while queue:
            for child in sorted(graph.get(queue.popleft(), ())):
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        result.reaches[start] = sorted(seen)
        models = {start[0]} | {uid for uid, _ in seen}
        result.marts[start] = sorted(
            manifest["nodes"][uid]["name"]
            for uid in models
            if (manifest["nodes"].get(uid) or {}).get("fqn", [None, None])[1] == "marts"
        )
        result.exposures[start] = sorted(
            exposure["name"]
            for exposure in exposures.values()
            if models & set((exposure.get("depends_on") or {}).get("nodes") or [])
        )
    return result
