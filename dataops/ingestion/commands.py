"""`dataops replay <file>`: load a quarantined file again once it is fixed (see loader.replay)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataops.core.settings import Settings
from dataops.ingestion.loader import WarehouseLocked, replay
from dataops.sources.registry import load_registry


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    status = 0
    for name in args.files:
        path = Path(name)
        if path.name.endswith(".reason.json"):  # the reason file stands for its data file
            path = path.with_name(path.name.removesuffix(".reason.json"))
        try:
            outcome = replay(settings.warehouse_path, settings.landing_dir, load_registry(), path)
        except (FileNotFoundError, ValueError, WarehouseLocked) as error:
            print(f"error: {error}", file=sys.stderr)
            status = max(status, 2)
            continue
        print(outcome.message)
        if outcome.status == "quarantined":
            status = max(status, 1)
    return status


def add_replay_command(commands: argparse._SubParsersAction) -> None:
    replay_parser = commands.add_parser(
        "replay",
        help="load quarantined files again after fixing them",
        description=(
            "Validate and load files from <landing>/_quarantine/<source>/<table>/ (exactly once, "
            "like ingest); a file that loads moves back to its landing folder, one that still "
            "fails stays in quarantine with an updated reason. Exit 1 if any is still bad."
        ),
    )
    replay_parser.add_argument("files", nargs="+", help="quarantined file(s) or their .reason.json")
    replay_parser.set_defaults(func=cmd_replay)
