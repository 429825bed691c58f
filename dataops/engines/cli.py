"""`dataops engines ...`: load the raw data into Spark or PostgreSQL, compare marts across engines.

Build with dbt itself on the engine's target (``dbt build --target spark``); see README
"Choosing an engine".
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from dataops.core.settings import Settings
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
