"""A parsed dbt project moved to another target schema, without parsing it again.

dbt cannot reuse a parse (partial parsing) across target schemas: the schema is part of the
profile, and a changed profile means a full parse. A command that runs the same project for many
schemas of one target (a PR build per ``pr_<n>``, dataops/cicd/pr_parse.py) can instead parse it
once with a fixed schema and move the result: every node dbt placed in the target schema gets the
new schema, and its ``relation_name`` is computed again the way dbt's parser computes it (the
adapter's ``Relation.create_from`` with the project's quoting), then the ``graph`` context
variable (``flat_graph``) is rebuilt from the moved nodes.

That is only right when the target schema reaches the manifest through the nodes' ``schema``
alone. Whatever contradicts it raises :class:`RelocationError` and the caller parses in full:
a node in another schema (a ``generate_schema_name`` that derives a schema from the target's),
a source in the target schema, saved-query exports, a relation name this module does not
compute as dbt did, or the parsed schema's name still somewhere in the written manifest
(:func:`check_moved`: parse with a schema name that cannot occur otherwise).
"""

from __future__ import annotations

from typing import Any


class RelocationError(RuntimeError):
    """The parsed manifest cannot be moved to another schema exactly; parse in full instead."""


def _registered_adapter(manifest: Any, parsed_schema: str) -> Any:
    """The adapter dbt registered in this process for the parse that produced ``manifest``."""
    from dbt.adapters.factory import FACTORY

    adapter_type = manifest.metadata.adapter_type
    adapter = FACTORY.adapters.get(adapter_type)
    config = getattr(adapter, "config", None)
    if config is None or getattr(config.credentials, "schema", None) != parsed_schema:
        raise RelocationError(
            f"No {adapter_type} adapter of the parse with schema {parsed_schema!r} is registered "
            "in this process: relocate right after the parse, in the process that ran it."
        )
    return adapter


def _relation_name(adapter: Any, node: Any) -> str:
    return str(adapter.Relation.create_from(adapter.config, node))


def _nodes(manifest: Any) -> list[Any]:
    """Every parsed object that carries a target schema: nodes (models, seeds, snapshots, tests,
    hooks, analyses), unit tests, functions, and their disabled versions."""
    nodes = [
        *manifest.nodes.values(),
        *manifest.unit_tests.values(),
        *getattr(manifest, "functions", {}).values(),
    ]
    for disabled in manifest.disabled.values():
        nodes.extend(node for node in disabled if getattr(node, "resource_type", None) != "source")
    return nodes


def relocate_schema(manifest: Any, parsed_schema: str, schema: str) -> int:
    """Move the nodes of ``manifest`` (parsed in this process with target schema
    ``parsed_schema``) to ``schema``, in place; return how many were moved."""
    adapter = _registered_adapter(manifest, parsed_schema)
    if getattr(manifest, "saved_queries", None):
        raise RelocationError("saved queries' exports carry schemas of their own: not moved here")
    for uid, source in manifest.sources.items():
        if source.schema == parsed_schema:
            raise RelocationError(
                f"{uid} is read from the target schema {parsed_schema!r}: its declaration "
                "depends on the target, so only a parse with the real schema knows it."
            )
    moved = _nodes(manifest)
    for node in moved:
        if node.schema != parsed_schema:
            raise RelocationError(
                f"{node.unique_id} was placed in schema {node.schema!r}, not the target schema "
                f"{parsed_schema!r}: its schema is derived (generate_schema_name), so only a "
                "parse with the real schema knows it."
            )
        relation_name = getattr(node, "relation_name", None)
        if relation_name is not None and _relation_name(adapter, node) != relation_name:
            raise RelocationError(
                f"{node.unique_id}: its relation name {relation_name!r} is not what "
                f"{adapter.Relation.__name__}.create_from gives; cannot recompute it."
            )
    for node in moved:
        node.schema = schema
        if getattr(node, "relation_name", None) is not None:
            node.relation_name = _relation_name(adapter, node)
    manifest.build_flat_graph()  # the `graph` context variable holds copies of the nodes
    return len(moved)


def check_moved(manifest_text: str, parsed_schema: str) -> None:
    """Fail if the written manifest still names the parsed schema anywhere (a description, a
    config value or a rendered property that dbt derived from the target's schema)."""
    found = manifest_text.lower().find(parsed_schema.lower())
    if found >= 0:
        context = manifest_text[max(found - 120, 0) : found + 60]
        raise RelocationError(
            f"the parsed schema {parsed_schema!r} is still in the manifest after the move "
            f"(...{context}...): a value rendered from the target's schema."
        )
