"""`dataops sources add <source> --postgres ENV --table T` / `--api ENV --path /p`: onboard a
database table or an API resource like a file: dlt extracts it once into the landing folder (the
first delivery), the draft is inferred from that JSONL file, and the declaration records where
it is extracted from (``config.meta.extract``; secrets only by environment variable name)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dataops.core.settings import Settings
from dataops.extract.pipeline import extract
from dataops.sources import onboarding
from dataops.sources.registry import (
    DeclarationError,
    ExtractSource,
    ExtractTable,
    Landing,
    SourceTable,
)


def _blocks(args: argparse.Namespace) -> tuple[dict, dict]:
    """The source's and the table's `extract` blocks from the command line, validated."""
    if args.postgres:
        source = {"kind": "postgres", "credentials_env": args.postgres}
        if args.schema:
            source["schema"] = args.schema
        table = {"table": args.object or args.table}
    else:
        source = {"kind": "http_api", "base_url_env": args.api}
        if args.token_env:
            source["token_env"] = args.token_env
        table = {"path": args.path, "paginate": args.paginate}
        if args.records:
            table["records"] = args.records
        if args.since_param:
            table["since_param"] = args.since_param
        if args.page_size:
            table["page_size"] = args.page_size
    if args.cursor:
        table["cursor"] = args.cursor
    try:
        ExtractSource.model_validate(source)
        ExtractTable.model_validate(table)
    except ValueError as error:
        raise DeclarationError(f"sources add {args.source}: {error}") from None
    return source, table


def _provisional(
    source: str, table: str, blocks: tuple[dict, dict], declared_in: Path
) -> SourceTable:
    """A table with no declared columns yet: dlt extracts it once to draft from."""
    return SourceTable(
        source=source,
        name=table,
        schema=f"raw_{source}",
        description="",
        landing=Landing(path=f"{source}/{{table}}", format="jsonl"),
        primary_key=(),
        dedupe=None,
        columns=(),
        derived=(),
        declared_in=declared_in,
        extract_source=ExtractSource.model_validate(blocks[0]),
        extract=ExtractTable.model_validate(blocks[1]),
    )


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """`sources add` with --postgres/--api; otherwise the file onboarding."""
    if not (args.postgres or args.api):
        return onboarding.cmd_add(args, settings)
    if not args.table:
        raise DeclarationError("--postgres/--api need --table: the name of the table to declare")
    if args.api and not args.path:
        raise DeclarationError("--api needs --path: the resource path, e.g. --path /orders")
    if args.table in onboarding.declared_tables(args.source):
        raise DeclarationError(
            f"table {args.table!r} is already declared in source {args.source!r}: edit it there"
        )
    blocks = _blocks(args)
    path = onboarding.declaration_path(args.source)
    table = _provisional(args.source, args.table, blocks, path)
    print(f"first extract of {args.source}.{args.table} with dlt ...", flush=True)
    outcome = extract(args.source, [table], settings.landing_dir, settings.home)
    print(f"  {outcome.rows.get(args.table, 0):,} rows landed", flush=True)
    folder = settings.landing_dir / args.source / args.table
    if not outcome.files and not folder.is_dir():
        raise DeclarationError(
            f"{args.source}.{args.table}: the first extract returned no record to draft from"
        )
    draft = onboarding.infer_draft(
        args.source,
        onboarding.sample_of(folder),
        table=args.table,
        fmt="jsonl",
        primary_key=args.primary_key,
        latest_by=args.latest_by or args.cursor,
        pii=tuple(args.pii),
        timezone=args.timezone,
    )
    draft.extract_source, draft.extract_table = blocks
    draft.reference = False
    if args.print_only:
        print(draft.yaml())
        return 0
    print(onboarding.report(draft, onboarding.add_source(draft)))
    return 0


def add_arguments(sources_commands) -> None:
    """Extend `dataops sources add` with the database and API options."""
    add = sources_commands.choices["add"]
    group = add.add_argument_group("database and API sources (extracted with dlt)")
    kinds = group.add_mutually_exclusive_group()
    # --sample/--all are required for files; with --postgres/--api neither is given
    for action in add._mutually_exclusive_groups:
        action.required = False
    kinds.add_argument("--postgres", metavar="ENV", help="env var holding the PostgreSQL URL")
    kinds.add_argument("--api", metavar="ENV", help="env var holding the API's base URL")
    group.add_argument("--object", help="--postgres: the database table (default: --table)")
    group.add_argument("--schema", help="--postgres: the schema (default public)")
    group.add_argument("--path", help="--api: the resource path, e.g. /orders")
    group.add_argument(
        "--records", help="--api: key of the records list in a page (default: the page)"
    )
    group.add_argument(
        "--paginate", choices=("page", "cursor", "none"), default="page", help="--api pagination"
    )
    group.add_argument("--page-size", type=int, help="--api: records per page (default 100)")
    group.add_argument("--since-param", help="--api: query parameter for changed-since")
    group.add_argument("--token-env", help="--api: env var of a bearer token")
    group.add_argument("--cursor", help="incremental by this increasing column (default: full)")
    add.set_defaults(func=cmd_add)
