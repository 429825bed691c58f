"""Quoting values from configuration into SQL: the one helper for identifiers and literals.

Both follow standard SQL, which DuckDB, PostgreSQL and Spark (ANSI mode off: backticks there,
see the engines) accept: identifiers in double quotes, string literals in single quotes, each
with its quote character doubled inside.
"""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier: ``"my ""odd"" name"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal: ``'it''s'``."""
    return "'" + value.replace("'", "''") + "'"


def qualified(*parts: str) -> str:
    """A dotted, quoted name such as ``"raw_shop"."orders"``."""
    return ".".join(quote_identifier(part) for part in parts)
