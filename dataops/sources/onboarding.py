"""Onboard a source: infer a draft declaration from a sample file and derive its staging files.

``dataops sources add crm --sample contacts.csv --delimiter ';' --encoding latin-1`` reads the
sample with DuckDB (the same reader ingestion uses), infers column names, types, a primary key,
a deduplication column and likely PII columns, writes
``models/staging/<source>/_<source>__sources.yml`` and runs ``dataops sources sync`` so the
one-line staging model and its YAML (tests, docs) exist. The draft is a starting point to
review: the declaration, not this module, is the source of truth from then on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from dataops.core.settings import PROJECT_DIR
from dataops.core.sql import quote_identifier, quote_literal
from dataops.sources import sync as staging_sync
from dataops.sources.registry import (
    FORMAT_EXTENSIONS,
    IDENTIFIER,
    DeclarationError,
    _snake_case,
    declaration_files,
    parse_sources_file,
)

PII_NAME = re.compile(
    r"(^|_)(e_?mail|phone|mobile|first_?name|last_?name|full_?name|surname|address|street|"
    r"birth_?date|date_of_birth|iban|ssn|tax_id|ip_address)($|_)"
)
LATEST_BY_NAME = re.compile(r"(^|_)(updated|modified|changed|last_modified)(_at|_on|_date|$)")
ENCODINGS = ("utf-8", "latin-1")

HEADER = """version: 2

# Drafted by `dataops sources add` from {sample}. Review it: descriptions, primary key,
# dedupe, PII flags, accepted values and freshness SLA (docs/source-declarations.md).
# Then run `dataops sources sync` after every edit.
"""


@dataclass
class DraftColumn:
    name: str
    data_type: str
    pii: bool = False
    expression: str | None = None

    @property
    def staged_name(self) -> str:
        return self.name if IDENTIFIER.fullmatch(self.name) else _snake_case(self.name)


@dataclass
class Draft:
    """A draft declaration of one source table, inferred from a sample file."""

    source: str
    table: str
    sample: Path
    format: str
    columns: list[DraftColumn]
    primary_key: str
    latest_by: str | None = None
    options: dict = field(default_factory=dict)
    timezone: str | None = None
    notes: list[str] = field(default_factory=list)
    database: str | None = None

    def document(self) -> dict:
        landing: dict = {"path": f"{self.source}/{{table}}", "format": self.format}
        if self.options:
            landing["options"] = self.options
        source_meta: dict = {"landing": landing}
        if self.timezone:
            source_meta["timezone"] = self.timezone
        table_meta: dict = {"primary_key": self.primary_key}
        if self.latest_by:
            table_meta["dedupe"] = {"latest_by": self.latest_by}
        table_meta["monitors"] = {"volume": True, "freshness": True}
        columns = []
        for column in self.columns:
            entry: dict = {
                "name": column.name,
                "data_type": column.data_type,
                "description": f"{column.name} as delivered in the {self.table} files.",
            }
            meta: dict = {}
            if column.staged_name != column.name:
                meta["rename"] = column.staged_name
            if column.pii:
                meta["pii"] = True
            if column.expression:
                meta["expression"] = column.expression
                meta["safe_cast"] = True
            if meta:
                entry["meta"] = meta
            columns.append(entry)
        return {
            "version": 2,
            "sources": [
                {
                    "name": self.source,
                    "description": f"Files of {self.source}; drafted from {self.sample.name}.",
                    **({"database": self.database} if self.database else {}),
                    "schema": f"raw_{self.source}",
                    "loader": "dataops ingestion",
                    "config": {
                        "loaded_at_field": "_loaded_at",
                        "freshness": {
                            "warn_after": {"count": 26, "period": "hour"},
                            "error_after": {"count": 50, "period": "hour"},
                        },
                        "meta": source_meta,
                    },
                    "tables": [
                        {
                            "name": self.table,
                            "description": f"{self.table} of {self.source}; describe one row.",
                            "config": {"meta": table_meta},
                            "columns": columns,
                        }
                    ],
                }
            ],
        }

    def yaml(self) -> str:
        body = yaml.safe_dump(self.document(), sort_keys=False, width=100, allow_unicode=True)
        return HEADER.format(sample=self.sample.name) + body.removeprefix("version: 2\n")


def guess_format(sample: Path) -> str:
    name = sample.name.lower()
    for fmt, extensions in FORMAT_EXTENSIONS.items():
        if any(name.endswith("." + ext) for ext in extensions):
            return fmt
    raise DeclarationError(
        f"{sample}: cannot tell the format from the file name: expected one of "
        f"{', '.join('.' + e for exts in FORMAT_EXTENSIONS.values() for e in exts)}, "
        "or pass --format csv|jsonl|parquet"
    )


def declared_type(duckdb_type: str) -> str:
    """The declaration's data_type for a type DuckDB inferred from the sample."""
    upper = duckdb_type.upper()
    if upper in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    ):
        return "bigint"
    if upper in ("DOUBLE", "FLOAT", "REAL"):
        return "double"
    if match := re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", upper):
        return f"decimal({match.group(1)}, {match.group(2)})"
    if upper == "BOOLEAN":
        return "boolean"
    if upper == "DATE":
        return "date"
    if upper.startswith("TIMESTAMP"):
        return "timestamp"
    if upper == "TIME":
        return "time"
    return "varchar"




def _reader(sample: Path, fmt: str, options: dict) -> str:
    if fmt == "csv":
        settings = [f"header = {'true' if options.get('header', True) else 'false'}"]
        if "delimiter" in options:
            settings.append(f"delim = {quote_literal(options['delimiter'])}")
        settings.append(f"encoding = {quote_literal(options.get('encoding', 'utf-8'))}")
        return f"read_csv({quote_literal(str(sample))}, {', '.join(settings)})"
    if fmt == "jsonl":
        return f"read_json({quote_literal(str(sample))}, format = 'newline_delimited')"
    return f"read_parquet({quote_literal(str(sample))})"


def _describe(con: duckdb.DuckDBPyConnection, reader: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"describe select * from {reader}").fetchall()]


def infer_draft(
    source: str,
    sample: Path,
    *,
    table: str | None = None,
    fmt: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    header: bool = True,
    primary_key: str | None = None,
    latest_by: str | None = None,
    pii: tuple[str, ...] = (),
    timezone: str | None = None,
) -> Draft:
    """Read the sample and draft a declaration; raise DeclarationError on a wrong option."""
    if not IDENTIFIER.fullmatch(source):
        raise DeclarationError(
            f"source name {source!r} is not a valid identifier: expected lower snake_case"
        )
    if not sample.is_file():
        raise DeclarationError(f"{sample}: no such sample file")
    table = table or _default_table(source, sample)
    if not IDENTIFIER.fullmatch(table):
        raise DeclarationError(
            f"table name {table!r} is not a valid identifier: expected lower snake_case "
            f"(pass --table, e.g. --table {_snake_case(table)})"
        )
    fmt = fmt or guess_format(sample)
    options: dict = {}
    notes: list[str] = []
    with duckdb.connect() as con:
        if fmt == "csv":
            if delimiter:
                options["delimiter"] = delimiter
            if not header:
                options["header"] = False
            described = None
            for candidate in (encoding,) if encoding else ENCODINGS:
                options["encoding"] = candidate
                try:
                    described = _describe(con, _reader(sample, fmt, options))
                    break
                except duckdb.Error as error:
                    last_error = error
            if described is None:
                raise DeclarationError(
                    f"{sample}: DuckDB could not read the sample as CSV: {last_error}; check "
                    "--delimiter, --encoding (utf-8, latin-1 or utf-16) and --no-header"
                )
            if not encoding and options["encoding"] != "utf-8":
                notes.append(f"the sample is not UTF-8: reading it as {options['encoding']}")
            if not delimiter:
                sniffed = con.execute(
                    f"select Delimiter from sniff_csv({quote_literal(str(sample))}, "
                    f"encoding = {quote_literal(options['encoding'])})"
                ).fetchone()[0]
                options["delimiter"] = sniffed
            if not header:
                # Headerless files: DuckDB names the fields column0, column1, ...
                described = [(f"column_{i + 1}", kind) for i, (_, kind) in enumerate(described)]
            reader = _reader(sample, fmt, options)
        else:
            reader = _reader(sample, fmt, options)
            try:
                described = _describe(con, reader)
            except duckdb.Error as error:
                raise DeclarationError(
                    f"{sample}: DuckDB could not read it as {fmt}: {error}"
                ) from None
        columns = [
            DraftColumn(name=name, data_type=declared_type(kind)) for name, kind in described
        ]
        for column in columns:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,62}", column.name):
                raise DeclarationError(
                    f"{sample}: column {column.name!r} cannot be declared as delivered: expected "
                    "letters, digits, spaces, hyphens, dots and underscores; rename it in the "
                    "export, or read the file with --no-header"
                )
        for column in columns:
            if fmt == "csv" and column.data_type == "varchar":
                _detect_decimal_comma(con, reader, column, notes)
        staged = [c.staged_name for c in columns]
        if len(set(staged)) != len(staged):
            raise DeclarationError(f"{sample}: columns {staged} give the same staged name twice")
        by_name = {c.name: c for c in columns} | {c.staged_name: c for c in columns}

        for name in pii:
            if name not in by_name:
                raise DeclarationError(
                    f"--pii {name!r}: not a column of {sample.name}: expected one of {staged}"
                )
            by_name[name].pii = True
        for column in columns:
            if PII_NAME.search(column.staged_name) and not column.pii:
                column.pii = True
                notes.append(f"{column.staged_name} looks like personal data: flagged pii (hashed)")
            if column.pii:
                column.data_type = "varchar"

        if latest_by is not None:
            latest_by = _pick(by_name, latest_by, "--latest-by", staged)
        key = (
            _pick(by_name, primary_key, "--primary-key", staged)
            if primary_key
            else _guess_primary_key(con, reader, table, columns, latest_by, notes)
        )
        if latest_by is None and not _unique(con, reader, by_name[key].name):
            latest_by = next((c.staged_name for c in columns if _looks_like_latest_by(c)), None)
            if latest_by:
                notes.append(
                    f"{key} repeats in the sample: keeping the latest record by {latest_by}"
                )
            else:
                notes.append(
                    f"{key} repeats in the sample and no updated_at-like column was found: "
                    "declare dedupe.latest_by or choose another primary key"
                )
    return Draft(
        source=source,
        table=table,
        sample=sample,
        format=fmt,
        columns=columns,
        primary_key=key,
        latest_by=latest_by,
        options=options,
        timezone=timezone,
        notes=notes,
    )


def _detect_decimal_comma(
    con: duckdb.DuckDBPyConnection, reader: str, column: DraftColumn, notes: list[str]
) -> None:
    """Numbers written with a decimal comma (12,50) become decimals, converted in staging."""
    quoted = quote_identifier(column.name)
    present, matching, scale = con.execute(
        f"select count({quoted}), count(*) filter (where regexp_full_match({quoted}, "
        f"'-?[0-9]+,[0-9]+')), max(length(split_part({quoted}, ',', 2))) from {reader}"
    ).fetchone()
    if present and matching == present:
        column.data_type = f"decimal(18, {max(int(scale), 2)})"
        column.expression = f"replace({quoted}, ',', '.')"
        notes.append(
            f"{column.name} has decimal commas: staged as {column.data_type} with a safe cast "
            "(values that do not convert are counted in _cast_failures)"
        )


def _looks_like_latest_by(column: DraftColumn) -> bool:
    """An updated_at-like timestamp: when a key repeats, the latest record is kept by it."""
    return bool(LATEST_BY_NAME.search(column.staged_name)) and column.data_type in (
        "timestamp",
        "date",
    )


def _default_table(source: str, sample: Path) -> str:
    """The landing layout is <landing>/<source>/<table>/<file>; otherwise the file's stem."""
    if sample.parent.parent.name == source:
        return sample.parent.name
    stem = sample.name.split(".")[0]
    return _snake_case(re.sub(r"[_-]?\d{4}-?\d{2}-?\d{2}.*$", "", stem) or stem)


def _pick(by_name: dict[str, DraftColumn], name: str, option: str, staged: list[str]) -> str:
    if name not in by_name:
        raise DeclarationError(
            f"{option} {name!r}: not a column of the sample: expected one of {staged}"
        )
    return by_name[name].staged_name


def _unique(con: duckdb.DuckDBPyConnection, reader: str, raw_name: str) -> bool:
    quoted = quote_identifier(raw_name)
    total, distinct, nulls = con.execute(
        f"select count(*), count(distinct {quoted}), count(*) - count({quoted}) from {reader}"
    ).fetchone()
    return nulls == 0 and distinct == total


def _guess_primary_key(
    con: duckdb.DuckDBPyConnection,
    reader: str,
    table: str,
    columns: list[DraftColumn],
    latest_by: str | None,
    notes: list[str],
) -> str:
    singular = table[:-1] if table.endswith("s") else table
    preferred = ("id", f"{table}_id", f"{singular}_id")
    candidates = sorted(
        columns,
        key=lambda c: (
            0 if c.staged_name in preferred else 1 if c.staged_name.endswith("_id") else 2,
            columns.index(c),
        ),
    )
    versioned = latest_by or any(_looks_like_latest_by(c) for c in columns)
    for column in candidates:
        total, nulls = con.execute(
            f"select count(*), count(*) - count({quote_identifier(column.name)}) from {reader}"
        ).fetchone()
        if not total or nulls:
            continue
        looks_like_key = column.staged_name in preferred or column.staged_name.endswith("_id")
        # A key column that repeats is fine when records come in versions (an updated_at).
        if (looks_like_key and versioned) or _unique(con, reader, column.name):
            return column.staged_name
    for column in candidates:
        nulls = con.execute(
            f"select count(*) - count({quote_identifier(column.name)}) from {reader}"
        ).fetchone()[0]
        if nulls == 0:
            notes.append(
                f"no unique column in the sample: primary key {column.staged_name} is a guess"
            )
            return column.staged_name
    notes.append(f"every column has nulls: primary key {candidates[0].staged_name} is a guess")
    return candidates[0].staged_name


def house_database(project_dir: Path = PROJECT_DIR) -> str | None:
    """The `database:` every declared source shares (e.g. a var for PR builds), if any."""
    values = set()
    for path in declaration_files(project_dir):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        values.update(source.get("database") for source in document.get("sources") or [])
    return values.pop() if len(values) == 1 else None


def declaration_path(source: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / "models" / "staging" / source / f"_{source}__sources.yml"


def add_source(draft: Draft, project_dir: Path = PROJECT_DIR) -> list[Path]:
    """Write the draft declaration of a new source, then its staging files; return files written."""
    path = declaration_path(draft.source, project_dir)
    if path.exists():
        raise DeclarationError(
            f"{path} already exists: add table {draft.table!r} to it by hand (print a draft with "
            "`dataops sources add ... --print`) or choose another source name"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    draft.database = draft.database or house_database(project_dir)
    path.write_text(draft.yaml(), encoding="utf-8")
    try:
        parse_sources_file(path)
    except DeclarationError:
        path.unlink()
        raise
    return [path, *staging_sync.sync(project_dir)]


def report(draft: Draft, written: list[Path], project_dir: Path = PROJECT_DIR) -> str:
    """What `dataops sources add` did and what to do next, for the terminal."""
    lines = [f"Drafted {draft.source}.{draft.table} from {draft.sample} ({draft.format}):"]
    for column in draft.columns:
        flags = " pii" if column.pii else ""
        flags += " primary key" if column.staged_name == draft.primary_key else ""
        flags += " latest by" if column.staged_name == draft.latest_by else ""
        lines.append(f"  {column.name:<24} {column.data_type:<16} -> {column.staged_name}{flags}")
    lines += [f"  note: {note}" for note in draft.notes]
    lines += [
        f"wrote {path.relative_to(project_dir) if path.is_relative_to(project_dir) else path}"
        for path in written
    ]
    lines.append(
        f"Next: review {declaration_path(draft.source, project_dir).relative_to(project_dir)}, run "
        "`dataops sources sync`, put the files in "
        f"$DATAOPS_HOME/landing/{draft.source}/{draft.table}/, then `dataops ingest --source "
        f"{draft.source}` and `dataops build --select source:{draft.source}+`."
    )
    return "\n".join(lines)


def add_parser(sources_commands) -> None:
    """`dataops sources add`: the subcommand's options (wired in dataops/cli.py)."""
    add = sources_commands.add_parser(
        "add",
        help="draft a new source's declaration from a sample file, then write its staging files",
        description="Infer columns, types, primary key, dedupe column and PII from a sample file; "
        "write models/staging/<source>/_<source>__sources.yml and sync the staging files.",
    )
    add.add_argument("source", help="the new source's name (lower snake_case), e.g. crm")
    add.add_argument("--sample", type=Path, required=True, help="a file as the source delivers it")
    add.add_argument(
        "--table",
        help="table name (default: the sample's folder in the landing "
        "layout <source>/<table>/, else its file name)",
    )
    add.add_argument(
        "--format",
        dest="fmt",
        choices=("csv", "jsonl", "parquet"),
        help="default: from the file extension",
    )
    add.add_argument("--delimiter", help="CSV field delimiter (default: sniffed)")
    add.add_argument(
        "--encoding",
        choices=("utf-8", "latin-1", "utf-16"),
        help="CSV encoding (default: utf-8, else latin-1)",
    )
    add.add_argument(
        "--no-header", dest="header", action="store_false", help="CSV without header row"
    )
    add.add_argument("--primary-key", help="column that identifies a record (default: guessed)")
    add.add_argument("--latest-by", help="keep the latest record per key by this column")
    add.add_argument(
        "--pii", nargs="*", default=[], help="columns to hash (likely ones are guessed)"
    )
    add.add_argument("--timezone", help="IANA zone the source's timestamps are in (staged as UTC)")
    add.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the draft declaration, write nothing",
    )
    add.set_defaults(func=cmd_add)


def cmd_add(args, settings) -> int:
    """Handler of `dataops sources add`."""
    from dataops.sources.registry import _timezone

    if args.timezone:
        try:
            _timezone(args.timezone)
        except ValueError as error:
            raise DeclarationError(f"--timezone: {error}") from None
    draft = infer_draft(
        args.source,
        args.sample,
        table=args.table,
        fmt=args.fmt,
        delimiter=args.delimiter,
        encoding=args.encoding,
        header=args.header,
        primary_key=args.primary_key,
        latest_by=args.latest_by,
        pii=tuple(args.pii),
        timezone=args.timezone,
    )
    if args.print_only:
        draft.database = house_database()
        print(draft.yaml())
        return 0
    print(report(draft, add_source(draft)))
    return 0
