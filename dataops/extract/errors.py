"""What an extraction reports when it cannot go on (shared by the pipeline and its resources)."""

from __future__ import annotations

import os

from dataops.sources.registry import SourceTable


class ExtractError(RuntimeError):
    """An extraction failed; the message names the source, the table and what to do."""


def env_value(name: str, table: SourceTable, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ExtractError(
            f"{table.declared_in}: source {table.source} reads its {what} from the environment "
            f"variable {name}, which is not set: export {name}=... (credentials never go in the "
            "declaration)"
        )
    return value
