"""`dataops releases` and `dataops rollback [release]` (prod unless --target says otherwise).

``print_releases`` and ``print_rollback`` take any published warehouse; `dataops engines
releases|rollback postgres` call them with the PostgreSQL one."""

from __future__ import annotations

import argparse
import json
import sys

from dataops.core.settings import Settings, load_settings
from dataops.publishing import releases as rel
from dataops.publishing.wap import PublishedWarehouse, duckdb_warehouse, keep_count


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.target or "prod")


def release_id(text: str) -> int:
    """``r7`` or ``7`` as a release id (an argparse type)."""
    value = text.removeprefix("r")
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a release is r<id> or <id> (e.g. r7), got {text!r}")
    return int(value)


def cmd_releases(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(args)
    if not settings.warehouse_path.exists():
        print(f"No warehouse at {settings.warehouse_path}: nothing released yet.")
        return 0
    return print_releases(duckdb_warehouse(settings), args.limit, args.json, "`dataops deploy`")


def print_releases(warehouse: PublishedWarehouse, limit: int, as_json: bool, first: str) -> int:
    """List a warehouse's releases, newest first; ``first`` names the command making one."""
    with warehouse.connect() as con:
        releases = rel.list_releases(con)[:limit]
        schemas = rel.release_schemas(con)
    if as_json:
        print(json.dumps([_as_dict(r) for r in releases], indent=2, default=str))
        return 0
    if not releases:
        print(f"No release of {warehouse.label} yet: {first} makes the first.")
        return 0
    for r in releases:
        mark = "*" if r.is_current else " "
        commit = (r.git_commit or "-")[:10]
        when = r.published_at or r.finished_at or r.started_at
        print(
            f"{mark} {r.name:<6} {r.status:<10} {when:%Y-%m-%d %H:%M:%S}  {commit:<10} "
            f"{r.trigger or '-':<8} built {len(r.built_nodes):>3}  "
            f"changed {len(r.changed_nodes):>3}"
            f"  select {r.selection or '-'}" + ("  (cleaned up)" if r.dropped_at else "")
        )
        for failure in r.failures if r.status == "failed" else []:
            print(f"      FAILED {failure}")
        if r.status == "failed" and r.release_id in schemas:
            print(
                f"      inspect: schemas {', '.join(sorted(schemas[r.release_id]))}"
                + (f"; manifest {r.manifest_path}" if r.manifest_path else "")
            )
    print(f"(* current; keeping {keep_count()} published releases, DATAOPS_RELEASES_KEEP)")
    return 0


def _as_dict(r: rel.Release) -> dict:
    return {
        "release": r.name,
        "status": r.status,
        "current": r.is_current,
        "trigger": r.trigger,
        "git_commit": r.git_commit,
        "selection": r.selection,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "published_at": r.published_at,
        "manifest": r.manifest_path,
        "built": r.built_nodes,
        "changed": r.changed_nodes,
        "failures": r.failures,
        "dropped_at": r.dropped_at,
        "dagster_run_id": r.dagster_run_id,
    }


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    return print_rollback(duckdb_warehouse(_settings(args)), args.release)


def print_rollback(warehouse: PublishedWarehouse, release: int | None) -> int:
    """Switch a warehouse back to ``release`` (default: the one before the current)."""
    try:
        with warehouse.connect() as con:
            before = rel.current_release(con)
            restored = rel.rollback(con, release)
    except rel.PublishingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"Rolled back {warehouse.label}: {before.name if before else 'nothing'} -> "
        f"{restored.name} ({len(restored.pointers)} published relations switched in one "
        "transaction)"
    )
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `releases` and `rollback` on the `dataops` parser."""
    releases = commands.add_parser(
        "releases", help="list the releases of prod (current, failed with their failing tests)"
    )
    releases.add_argument("--limit", type=int, default=20, help="newest N (default 20)")
    releases.add_argument("--json", action="store_true", help="machine-readable")
    releases.set_defaults(func=cmd_releases)
    rollback = commands.add_parser(
        "rollback", help="switch prod back to an earlier release in one transaction"
    )
    rollback.add_argument(
        "release", nargs="?", type=release_id, help="r<id> (default: the one before the current)"
    )
    rollback.set_defaults(func=cmd_rollback)
