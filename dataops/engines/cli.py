"""`dataops engines ...`: load the raw data into Spark or PostgreSQL, compare marts across engines.

On PostgreSQL, `dataops engines build postgres` builds as a release (write -> audit -> publish,
dataops/publishing/): built and tested in ``<schema>__r<id>``, published in one transaction only
when everything passed; `engines releases|rollback postgres` list and restore them. Spark has no
transaction across tables: build it in place with dbt itself (``dbt build --target spark``); see
README "Choosing an engine".
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from dataops.core.settings import Settings
from dataops.publishing.commands import release_id
from dataops.sources.registry import load_registry, select_tables


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    tables = select_tables(load_registry(), args.source)
    batch_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    outcomes = []
    if args.engine == "spark":
        from dataops.engines import spark

        with spark.spark_session() as session:
            outcomes = [
                spark.load_table(session, t, settings.landing_dir, batch_id) for t in tables
            ]
    else:
        from dataops.engines import postgres

        with postgres.connect() as pg:
            outcomes = [postgres.load_table(pg, t, settings.landing_dir, batch_id) for t in tables]
    print(f"Loaded into {args.engine} (batch {batch_id}):")
    for outcome in outcomes:
        print(
            f"  {outcome.key:<24} {outcome.files_loaded:>4} files loaded "
            f"{outcome.rows_loaded:>12,} rows   {outcome.files_skipped:>4} already loaded"
        )
        for error in outcome.errors:
            print(f"  ERROR {error}")
    return 1 if any(o.errors for o in outcomes) else 0


def cmd_checksum(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.engines import checksum

    names = args.mart or checksum.mart_names()
    if args.engine == "duckdb":
        result = checksum.duckdb_checksums(settings.warehouse_path, names)
    elif args.engine == "spark":
        result = checksum.spark_checksums(names)
    else:
        result = checksum.postgres_checksums(names)
    print(json.dumps(checksum.as_json(result), indent=2))
    return 0


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.engines.postgres import published_warehouse
    from dataops.engines.profile import ProfileError
    from dataops.publishing import wap
    from dataops.publishing.releases import PublishingError

    try:
        result, outcome = wap.build_release(
            settings,
            trigger="build",
            select=args.select or (),
            full_refresh=args.full_refresh,
            warehouse=published_warehouse(settings),
        )
    except (PublishingError, ProfileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"dbt build on {args.engine}: {outcome.count('model', 'success')} models built, "
        f"{outcome.count('test', 'pass') + outcome.count('unit_test', 'pass')} tests passed"
    )
    for line in wap.describe(result):
        print(line)
    return 0 if result.published else 1


def cmd_releases(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.engines.postgres import published_warehouse
    from dataops.publishing.commands import print_releases

    warehouse = published_warehouse(settings)
    return print_releases(warehouse, args.limit, args.json, "`dataops engines build postgres`")


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.engines.postgres import published_warehouse
    from dataops.publishing.commands import print_rollback

    return print_rollback(published_warehouse(settings), args.release)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `dataops engines load|checksum` on the main command line."""
    engines = commands.add_parser(
        "engines", help="run the same project on Spark or PostgreSQL (load raw data, compare marts)"
    )
    engine_commands = engines.add_subparsers(dest="engines_command", required=True)
    load = engine_commands.add_parser(
        "load", help="load landed files into the engine's raw tables (dbt target of the same name)"
    )
    load.add_argument("engine", choices=("spark", "postgres"))
    load.add_argument("--source", nargs="*", help="source or source.table names (default all)")
    load.set_defaults(func=cmd_load)
    check = engine_commands.add_parser(
        "checksum", help="print row counts and order-independent checksums of the marts as JSON"
    )
    check.add_argument("engine", choices=("duckdb", "spark", "postgres"))
    check.add_argument("--mart", nargs="*", help="mart names (default: all of models/marts)")
    check.set_defaults(func=cmd_checksum)
    build = engine_commands.add_parser(
        "build",
        help="dbt build on PostgreSQL as a release: built and tested in its own schemas, "
        "published in one transaction only when every test passed",
    )
    build.add_argument("engine", choices=("postgres",), help="Spark: dbt build --target spark")
    build.add_argument("--select", nargs="*", help="dbt selection (default: everything)")
    build.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from scratch"
    )
    build.set_defaults(func=cmd_build)
    releases = engine_commands.add_parser("releases", help="list the releases of PostgreSQL")
    releases.add_argument("engine", choices=("postgres",))
    releases.add_argument("--limit", type=int, default=20, help="newest N (default 20)")
    releases.add_argument("--json", action="store_true", help="machine-readable")
    releases.set_defaults(func=cmd_releases)
    rollback = engine_commands.add_parser(
        "rollback", help="switch PostgreSQL back to an earlier release in one transaction"
    )
    rollback.add_argument("engine", choices=("postgres",))
    rollback.add_argument(
        "release", nargs="?", type=release_id, help="r<id> (default: the one before the current)"
    )
    rollback.set_defaults(func=cmd_rollback)
