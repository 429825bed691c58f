"""`dataops dbt prepare`: write the manifest the Dagster definitions load."""

from __future__ import annotations

import argparse
import sys

from dataops.core.settings import Settings
from dataops.dbt.manifest import manifest_path, prepare_manifest


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
