"""`dataops extract [source ...]`: pull the declared database and API sources into landing."""

from __future__ import annotations

import argparse

from dataops.core.settings import Settings
from dataops.extract.pipeline import ExtractError, extract, extract_sources
from dataops.sources.registry import SourceTable, load_registry, select_tables


def run_extracts(settings: Settings, tables: list[SourceTable]) -> list[str]:
    """Extract every extract source among the tables; return the errors (one per source)."""
    errors = []
    for source, source_tables in sorted(extract_sources(tables).items()):
        try:
            outcome = extract(source, source_tables, settings.landing_dir, settings.home)
        except ExtractError as error:
            print(f"  ERROR {error}", flush=True)
            errors.append(str(error))
            continue
        for table, rows in sorted(outcome.rows.items()):
            print(f"  {source}.{table:<20} {rows:>10,} rows extracted", flush=True)
    return errors


def cmd_extract(args: argparse.Namespace, settings: Settings) -> int:
    tables = select_tables(load_registry(), args.source)
    if not extract_sources(tables):
        print("No extracted source (config.meta.extract) among the selected sources.")
        return 0
    return 1 if run_extracts(settings, tables) else 0


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "extract",
        help="pull database and API sources (config.meta.extract) into the landing folder",
        description="Run dlt for each declared postgres / http_api source: new records land as "
        "JSONL files in <landing>/<source>/<table>/ for `dataops ingest`.",
    )
    parser.add_argument("source", nargs="*", help="source or source.table names (default all)")
    parser.set_defaults(func=cmd_extract)


__all__ = ["ExtractError", "add_parser", "cmd_extract", "run_extracts"]
