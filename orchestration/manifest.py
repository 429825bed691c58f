"""The dbt manifest the Dagster definitions are built from: prepared once, then only loaded.

``dataops dbt prepare`` (``make manifest``; ``make ui`` runs it) parses the project once and
writes ``manifest.json`` into the dbt target path. Importing the definitions only reads that
file: no ``dbt deps``/``dbt parse`` in the code server, run workers or steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from orchestration.dbt_cli import DbtOutcome, dbt_args, run_dbt
from orchestration.settings import Settings, load_settings


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


def cmd_prepare(args: argparse.Namespace, settings: Settings) -> int:
    outcome = prepare_manifest(settings)
    path = manifest_path(settings)
    if not outcome.success or not path.exists():
        print(
            f"error: dbt parse failed, no manifest written to {path}: {outcome.exception}",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {path}")
    return 0


def add_dbt_commands(commands: argparse._SubParsersAction) -> None:
    """``dataops dbt prepare``: write the manifest the Dagster definitions load."""
    dbt = commands.add_parser("dbt", help="dbt project artefacts for orchestration")
    dbt_commands = dbt.add_subparsers(dest="dbt_command", required=True)
    prepare = dbt_commands.add_parser(
        "prepare", help="parse the dbt project once and write target/manifest.json for Dagster"
    )
    prepare.set_defaults(func=cmd_prepare)
