"""The dbt manifest the Dagster definitions are built from: prepared once, then only loaded.

``dataops dbt prepare`` (``make manifest``; ``make ui`` runs it) parses the project once and
writes ``manifest.json`` into the dbt target path. Importing the definitions only reads that
file: no ``dbt deps``/``dbt parse`` in the code server, run workers or steps.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from dataops.core.settings import Settings, load_settings
from dataops.dbt.runner import DbtOutcome, dbt_args, run_dbt


class ManifestMissingError(FileNotFoundError):
    """The prepared manifest is missing or unreadable; the message says how to prepare it."""


def manifest_path(settings: Settings | None = None) -> Path:
    """The prepared manifest: ``$DBT_TARGET_PATH/manifest.json`` (default ``target/``)."""
    return (settings or load_settings()).dbt_target_path / "manifest.json"


def prepare_manifest(settings: Settings) -> DbtOutcome:
    """Parse the dbt project once (``dbt parse``) and write ``manifest.json`` to the target path."""
    return run_dbt(settings, dbt_args("parse", settings.target))


@cache
def load_manifest(path: Path) -> dict[str, Any]:
    """Read a prepared manifest; fail with the command that prepares it when it is missing."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestMissingError(
            f"No dbt manifest at {path}: the Dagster definitions load a prepared manifest and "
            "never parse dbt on import. Run `make manifest` (or `.venv/bin/dataops dbt prepare`) "
            "with the same DBT_TARGET_PATH first."
        ) from None
    except json.JSONDecodeError as error:
        raise ManifestMissingError(
            f"{path} is not valid JSON ({error}); re-create it with `make manifest`."
        ) from None


def manifest_json(manifest: Any) -> str:
    """The text of ``manifest.json`` as dbt writes it, for a manifest parsed in this process."""
    from dbt_common.utils.encoding import JSONEncoder  # imported late: dbt is heavy

    artifact = manifest.writable_manifest().to_dict(omit_none=False, context={"artifact": True})
    return json.dumps(artifact, cls=JSONEncoder)
