"""Onboard a source: infer a draft declaration from a sample file and derive its staging files.

``dataops sources add crm --sample contacts.csv --delimiter ';' --encoding latin-1`` reads the
sample with DuckDB (the same reader ingestion uses), infers column names, types, a primary key,
a deduplication column and likely PII columns, writes
``models/staging/<source>/_<source>__sources.yml`` and runs ``dataops sources sync`` so the
one-line staging model and its YAML (tests, docs) exist. The draft is a starting point to
review: the declaration, not this module, is the source of truth from then on.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml
from ruamel.yaml import YAML

from dataops.core.settings import PROJECT_DIR
from dataops.core.sql import quote_identifier, quote_literal
from dataops.sources import sync as staging_sync
from dataops.sources.registry import (
    FORMAT_EXTENSIONS,
    IDENTIFIER,
    PLACEHOLDER,
    DeclarationError,
    _snake_case,
    declaration_files,
    parse_sources_file,
)

# Personal data, guessed from the column name (each with the reason printed to the user) ...
PII_NAMES = (
    (r"e_?mail", "the name says an e-mail address"),
    (r"(first|last|full|given|family|middle|maiden)_?name|surname|fullname",
     "the name says a person's name"),
    (r"(customer|contact|person|client|employee|owner|holder|patient|member|user)_name",
     "the name says a person's name"),
    (r"(postal_|home_|billing_|shipping_|street_)?address(_line_?\d?)?|street|addr",
     "the name says a postal address"),
    (r"(mobile_|home_|work_|cell_)?(phone|telephone|tel|mobile|fax)(_number|_no)?",
     "the name says a phone number"),
    (r"iban|bank_account(_number)?|account_iban", "the name says a bank account (IBAN)"),
    (r"(client_|remote_|source_|user_)?ip(_address|_addr)?|ip_v?[46]",
     "the name says an IP address"),
    (r"birth_?date|date_of_birth|dob|birthday|born_(on|at)", "the name says a birth date"),
    (r"ssn|tax_id|national_id|passport(_number)?|social_security(_number)?",
     "the name says a national identifier"),
)
PII_NAME = re.compile(
    "|".join(f"(?:^|_)(?:{pattern})(?:$|_)" for pattern, _ in PII_NAMES)
)
# ... or from the values of a text column (share of non-empty sample values that must match).
PII_VALUES = (
    (r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", "values look like e-mail addresses"),
    (r"[A-Z]{2}[0-9]{2} ?([A-Z0-9]{4} ?){2,7}[A-Z0-9]{1,4}", "values look like IBANs"),
    (r"((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])",
     "values look like IPv4 addresses"),
    (r"\+?[0-9][0-9 ()./-]{6,18}[0-9]", "values look like phone numbers"),
)
PII_VALUE_SHARE = 0.9
# A column called name (or <x>_name) whose values are "Given Family" names, unless the name says
# it is something else's name.
FULL_NAME_VALUES = r"[A-Z][a-zà-ÿ'\-]+( [A-Z][a-zà-ÿ'\-]+){1,2}"
NOT_A_PERSON = re.compile(
    r"(^|_)(product|store|shop|company|category|brand|city|country|region|street|file|table|"
    r"item|plan|event|page|campaign|team|department|supplier|warehouse|host|domain|user)_?name$"
)
PEOPLE_TABLES = re.compile(
    r"(^|_)(customers?|users?|contacts?|employees?|staff|people|persons?|members?|clients?|"
    r"patients?|students?|guests?|buyers?|sellers?|drivers?)$"
)
# Money delivered in integer cents gets a derived decimal column.
CENTS_NAME = re.compile(r"(?P<base>.+?)_(in_)?cents$")
# A small table with no change-tracking timestamp, delivered as one undated file, looks static.
REFERENCE_MAX_ROWS = 10_000
DATED_FILE = re.compile(r"\d{4}-?\d{2}-?\d{2}")
REFERENCE_FRESHNESS = {
    "warn_after": {"count": 30, "period": "day"},
    "error_after": {"count": 90, "period": "day"},
}
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
    pii_reason: str | None = None

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
    primary_key: list[str]
    latest_by: str | None = None
    options: dict = field(default_factory=dict)
    timezone: str | None = None
    notes: list[str] = field(default_factory=list)
    database: str | None = None
    derived: list[dict] = field(default_factory=list)
    reference: bool = False
    extract_source: dict | None = None  # config.meta.extract of the source (database / API)
    extract_table: dict | None = None  # config.meta.extract of the table

    def document(self) -> dict:
        landing: dict = {"path": f"{self.source}/{{table}}", "format": self.format}
        if self.options:
            landing["options"] = self.options
        source_meta: dict = {"landing": landing}
        if self.extract_source:
            source_meta["extract"] = self.extract_source
        if self.timezone:
            source_meta["timezone"] = self.timezone
        key = self.primary_key
        table_meta: dict = {"primary_key": key[0] if len(key) == 1 else list(key)}
        if self.latest_by:
            table_meta["dedupe"] = {"latest_by": self.latest_by}
        if self.derived:
            table_meta["derived"] = self.derived
        if self.extract_table:
            table_meta["extract"] = self.extract_table
        if self.reference:
            # Reference data changes rarely: no volume/freshness anomaly monitors, a long SLA.
            table_meta["reference"] = True
            table_meta["monitors"] = {"volume": False, "freshness": False}
        else:
            table_meta["monitors"] = {"volume": True, "freshness": True}
        columns = []
        for column in self.columns:
            entry: dict = {
                "name": column.name,
                "data_type": column.data_type,
                "description": f"{PLACEHOLDER} {column.name} as delivered in the {self.table} "
                "files.",
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
                    "description": f"{PLACEHOLDER} files of {self.source}; drafted from "
                    f"{self.sample.name}.",
                    **({"database": self.database} if self.database else {}),
                    "schema": f"raw_{self.source}",
                    "loader": "dlt via dataops extract" if self.extract_source
                    else "dataops ingestion",
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
                            "description": f"{PLACEHOLDER} {self.table} of {self.source}; "
                            "what is one row?",
                            "config": {
                                **({"freshness": REFERENCE_FRESHNESS} if self.reference else {}),
                                "meta": table_meta,
                            },
                            "columns": columns,
                        }
                    ],
                }
            ],
        }

    def landing(self) -> dict:
        """The landing block this draft needs (format and reader options)."""
        return self.document()["sources"][0]["config"]["meta"]["landing"]

    def table_document(self, source_landing: dict | None = None) -> dict:
        """The draft's table entry, to add to an existing source; a landing that differs from
        the source's (format, options) becomes the table's own `meta.landing`."""
        table = self.document()["sources"][0]["tables"][0]
        landing = self.landing()
        if source_landing is not None:
            differs = {
                key: value
                for key, value in landing.items()
                if key != "path" and source_landing.get(key) != value
            }
            if differs:
                # the table's options replace the source's whole (csv options fit csv only)
                differs["options"] = landing.get("options", {})
                table["config"]["meta"]["landing"] = differs
        return table

    def yaml(self) -> str:
        out = io.StringIO()
        round_trip_yaml().dump(self.document(), out)  # the layout of the hand-written files
        return HEADER.format(sample=self.sample.name) + out.getvalue().removeprefix("version: 2\n")


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
    primary_key: tuple[str, ...] | str | None = None,
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
        # dlt's own load and row ids (extracted sources) are lineage, not source columns
        columns = [
            DraftColumn(name=name, data_type=declared_type(kind))
            for name, kind in described
            if not name.startswith("_dlt_")
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
            elif fmt == "jsonl" and column.data_type == "varchar":
                _detect_decimal_text(con, reader, column, notes)
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
            if not column.pii:
                column.pii_reason = pii_reason(con, reader, table, column)
                if column.pii_reason:
                    column.pii = True
                    notes.append(
                        f"{column.staged_name} flagged pii (hashed in staging): "
                        f"{column.pii_reason}; remove meta.pii if it is not personal data"
                    )
            if column.pii:
                column.data_type = "varchar"
        derived = _cents_columns(columns, notes)
        reference = _looks_static(con, reader, sample, table, columns, notes)

        if latest_by is not None:
            latest_by = _pick(by_name, latest_by, "--latest-by", staged)
        if isinstance(primary_key, str):
            primary_key = tuple(part.strip() for part in primary_key.split(",") if part.strip())
        key = (
            [_pick(by_name, name, "--primary-key", staged) for name in primary_key]
            if primary_key
            else _guess_primary_key(con, reader, table, columns, latest_by, notes)
        )
        if len(set(key)) != len(key):
            raise DeclarationError(f"--primary-key {key}: names a column twice")
        raw_key = [by_name[name].name for name in key]
        if latest_by is None and not _unique(con, reader, raw_key):
            latest_by = next((c.staged_name for c in columns if _looks_like_latest_by(c)), None)
            if latest_by:
                notes.append(
                    f"{', '.join(key)} repeats in the sample: keeping the latest record by "
                    f"{latest_by}"
                )
            else:
                notes.append(
                    f"{', '.join(key)} repeats in the sample and no updated_at-like column was "
                    "found: "
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
        derived=derived,
        reference=reference,
    )


def pii_reason(
    con: duckdb.DuckDBPyConnection, reader: str, table: str, column: DraftColumn
) -> str | None:
    """Why the column looks like personal data (None: it does not), from its name or values."""
    name = column.staged_name
    for pattern, reason in PII_NAMES:
        if re.search(f"(?:^|_)(?:{pattern})(?:$|_)", name) and not NOT_A_PERSON.search(name):
            return reason
    person_name = (name == "name" or name.endswith("_name")) and not NOT_A_PERSON.search(name)
    if person_name and PEOPLE_TABLES.search(table):
        return f"a name in a table of people ({table}): a person's full name"
    if column.data_type != "varchar" or name.endswith("_id") or name == "id":
        return None
    patterns = list(PII_VALUES)
    if (name == "name" or name.endswith("_name")) and not NOT_A_PERSON.search(name):
        patterns.insert(0, (FULL_NAME_VALUES, "values look like full names (Given Family)"))
    quoted = quote_identifier(column.name)
    shares = con.execute(
        f"select count({quoted}), "
        + ", ".join(
            f"count(*) filter (where regexp_full_match(trim({quoted}), {quote_literal(p)}))"
            for p, _ in patterns
        )
        + f" from {reader}"
    ).fetchone()
    present, *matching = shares
    for (_, reason), count in zip(patterns, matching, strict=True):
        if present and count >= PII_VALUE_SHARE * present:
            return f"{reason} ({count} of {present} sample values)"
    return None


def _cents_columns(columns: list[DraftColumn], notes: list[str]) -> list[dict]:
    """An integer `<amount>_cents` column gets a derived decimal `<amount>` (money as decimal)."""
    taken = {c.staged_name for c in columns}
    derived = []
    for column in columns:
        match = CENTS_NAME.fullmatch(column.staged_name)
        if not match or column.data_type != "bigint":
            continue
        name = match.group("base")
        if name in taken:
            name = f"{name}_amount"
        if name in taken:
            continue
        taken.add(name)
        derived.append(
            {
                "name": name,
                "expression": f"{quote_identifier(column.staged_name)} / 100.0",
                "data_type": "decimal(18, 2)",
                "description": f"{PLACEHOLDER} {column.staged_name} in currency units "
                "(cents / 100).",
            }
        )
        notes.append(
            f"{column.staged_name} is an amount in cents: derived {name} decimal(18, 2) "
            f"= {column.staged_name} / 100"
        )
    return derived


def _looks_static(
    con: duckdb.DuckDBPyConnection,
    reader: str,
    sample: Path,
    table: str,
    columns: list[DraftColumn],
    notes: list[str],
) -> bool:
    """Reference data (stores, products, countries): a small table without a change timestamp
    delivered as one undated file. Proposed as `meta.reference` with a long freshness SLA."""
    if any(_looks_like_latest_by(c) for c in columns):
        return False
    if DATED_FILE.search(sample.name):
        return False
    siblings = [f for f in sample.parent.iterdir() if f.is_file() and not f.name.startswith(".")]
    if len(siblings) > 1:
        return False
    rows = con.execute(f"select count(*) from {reader}").fetchone()[0]
    if rows > REFERENCE_MAX_ROWS:
        return False
    notes.append(
        f"{table} looks like reference data ({rows} rows, one undated file, no updated_at-like "
        "column): declared meta.reference: true with a 30/90-day freshness SLA instead of "
        "the daily one; remove both if it is delivered daily"
    )
    return True


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


def _detect_decimal_text(
    con: duckdb.DuckDBPyConnection, reader: str, column: DraftColumn, notes: list[str]
) -> None:
    """Decimals written as JSON strings ("12.50", as dlt writes database numerics) stay exact."""
    quoted = quote_identifier(column.name)
    present, matching, scale = con.execute(
        f"select count({quoted}), count(*) filter (where regexp_full_match({quoted}, "
        f"'-?[0-9]+\\.[0-9]+')), max(length(split_part({quoted}, '.', 2))) from {reader}"
    ).fetchone()
    if present and matching == present:
        column.data_type = f"decimal(18, {min(max(int(scale), 2), 9)})"
        notes.append(f"{column.name} holds decimal numbers as text: staged as {column.data_type}")


def _looks_like_latest_by(column: DraftColumn) -> bool:
    """An updated_at-like timestamp: when a key repeats, the latest record is kept by it."""
    return bool(LATEST_BY_NAME.search(column.staged_name)) and column.data_type in (
        "timestamp",
        "date",
    )


def _looks_like_key(column: DraftColumn) -> bool:
    """An identifier or code by its name: *_id, *_key, *_code, *_no, *_number, sku, ean, ..."""
    return bool(
        re.search(r"(^|_)(id|key|code|no|number|sku|ean|gtin|isbn|uuid|guid)$", column.staged_name)
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


def _unique(con: duckdb.DuckDBPyConnection, reader: str, raw_names: str | list[str]) -> bool:
    """Whether these columns (one, or a combination) have a value in every row and never repeat."""
    names = [raw_names] if isinstance(raw_names, str) else raw_names
    quoted = [quote_identifier(name) for name in names]
    total, distinct, nulls = con.execute(
        f"select count(*), (select count(*) from (select distinct {', '.join(quoted)} "
        f"from {reader})), count(*) filter (where {' is null or '.join(quoted)} is null) "
        f"from {reader}"
    ).fetchone()
    return nulls == 0 and distinct == total


def _guess_primary_key(
    con: duckdb.DuckDBPyConnection,
    reader: str,
    table: str,
    columns: list[DraftColumn],
    latest_by: str | None,
    notes: list[str],
) -> list[str]:
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
    complete = []
    for column in candidates:
        total, nulls = con.execute(
            f"select count(*), count(*) - count({quote_identifier(column.name)}) from {reader}"
        ).fetchone()
        if total and not nulls:
            complete.append(column)
    keyish = [c for c in complete if c.staged_name in preferred or _looks_like_key(c)]
    # 1. one key-like column (a key column that repeats is fine when records come in versions)
    for column in keyish:
        id_like = column.staged_name in preferred or column.staged_name.endswith("_id")
        if (versioned and id_like) or _unique(con, reader, column.name):
            return [column.staged_name]
    # 2. no single key-like column identifies a row: a unique pair with a key-like column
    #    (a stock level keyed by supply_id and sku)
    pairs = [
        (first, second)
        for index, first in enumerate(complete[:8])
        for second in complete[index + 1 : 8]
        if first in keyish or second in keyish
    ]
    for first, second in pairs:
        if _unique(con, reader, [first.name, second.name]):
            notes.append(
                f"no single column identifies a row: composite primary key "
                f"({first.staged_name}, {second.staged_name})"
            )
            return [first.staged_name, second.staged_name]
    # 3. any unique column
    for column in complete:
        if _unique(con, reader, column.name):
            return [column.staged_name]
    for column in candidates:
        nulls = con.execute(
            f"select count(*) - count({quote_identifier(column.name)}) from {reader}"
        ).fetchone()[0]
        if nulls == 0:
            notes.append(
                f"no unique column in the sample: primary key {column.staged_name} is a guess"
            )
            return [column.staged_name]
    notes.append(f"every column has nulls: primary key {candidates[0].staged_name} is a guess")
    return [candidates[0].staged_name]


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
    """Write the draft declaration of a new source, or add the drafted table to the source's
    existing declaration (everything already there is kept as written, comments included);
    then write the staging files. Return the files written."""
    path = declaration_path(draft.source, project_dir)
    if path.exists():
        before = path.read_text(encoding="utf-8")
        path.write_text(_with_table(path, before, draft), encoding="utf-8")
    else:
        before = None
        path.parent.mkdir(parents=True, exist_ok=True)
        draft.database = draft.database or house_database(project_dir)
        path.write_text(draft.yaml(), encoding="utf-8")
    try:
        parse_sources_file(path)
    except DeclarationError:
        if before is None:
            path.unlink()
        else:
            path.write_text(before, encoding="utf-8")
        raise
    return [path, *staging_sync.sync(project_dir)]


def round_trip_yaml() -> YAML:
    yaml_rt = YAML()  # round-trip: comments, order and quoting of the reviewed file are kept
    yaml_rt.width = 100
    yaml_rt.indent(mapping=2, sequence=4, offset=2)
    yaml_rt.preserve_quotes = True
    return yaml_rt


def _with_table(path: Path, text: str, draft: Draft) -> str:
    """The declaration file's text with the draft's table appended to its source."""
    yaml_rt = round_trip_yaml()
    document = yaml_rt.load(text) or {}
    source = next(
        (s for s in document.get("sources") or [] if s.get("name") == draft.source), None
    )
    if source is None:
        raise DeclarationError(
            f"{path}: declares no source named {draft.source!r}: expected "
            f"`sources: [{{name: {draft.source}, ...}}]`"
        )
    tables = source.setdefault("tables", [])
    if any(t.get("name") == draft.table for t in tables):
        raise DeclarationError(
            f"{path}: table {draft.table!r} is already declared in source {draft.source!r}: "
            "edit it there (or pass --table with another name)"
        )
    source_meta = {**(source.get("meta") or {}), **((source.get("config") or {}).get("meta") or {})}
    declared_extract = dict(source_meta.get("extract") or {})
    if draft.extract_source and declared_extract.get("kind") != draft.extract_source["kind"]:
        raise DeclarationError(
            f"{path}: source {draft.source!r} is "
            + (
                f"extracted from {declared_extract['kind']}"
                if declared_extract
                else "delivered as files"
            )
            + f": a {draft.extract_source['kind']} table needs a source of its own (another name)"
        )
    tables.append(draft.table_document(dict(source_meta.get("landing") or {})))
    out = io.StringIO()
    yaml_rt.dump(document, out)
    return out.getvalue()


def table_folders(source: str, landing_root: Path, project_dir: Path = PROJECT_DIR) -> list[Path]:
    """The table folders under a source's landing path that hold at least one file."""
    path = declaration_path(source, project_dir)
    landing_path = f"{source}/{{table}}"
    if path.exists():
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in document.get("sources") or []:
            if entry.get("name") == source:
                meta = {
                    **(entry.get("meta") or {}),
                    **((entry.get("config") or {}).get("meta") or {}),
                }
                landing_path = (meta.get("landing") or {}).get("path") or landing_path
    if "{table}" not in landing_path:
        raise DeclarationError(
            f"{path}: landing.path {landing_path!r} has no {{table}}: --all drafts one table per "
            "folder <landing>/<source>/<table>/; pass --sample for each table instead"
        )
    root = landing_root / landing_path.split("{table}")[0].format(source=source)
    if not root.is_dir():
        raise DeclarationError(
            f"{root}: no such folder: put each table's files in {root}/<table>/ first"
        )
    return sorted(
        folder
        for folder in root.iterdir()
        if folder.is_dir() and any(f.is_file() for f in folder.iterdir())
    )


def declared_tables(source: str, project_dir: Path = PROJECT_DIR) -> set[str]:
    path = declaration_path(source, project_dir)
    if not path.exists():
        return set()
    return {t.name for t in parse_sources_file(path) if t.source == source}


def sample_of(folder: Path) -> Path:
    """The largest file of a table folder (the most rows to infer types and keys from; the
    newest of equal ones)."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise DeclarationError(f"{folder}: no file to draft the table from")
    return max(reversed(files), key=lambda f: f.stat().st_size)


def report(draft: Draft, written: list[Path], project_dir: Path = PROJECT_DIR) -> str:
    """What `dataops sources add` did and what to do next, for the terminal."""
    lines = [f"Drafted {draft.source}.{draft.table} from {draft.sample} ({draft.format}):"]
    for column in draft.columns:
        flags = " pii" if column.pii else ""
        flags += " primary key" if column.staged_name in draft.primary_key else ""
        flags += " latest by" if column.staged_name == draft.latest_by else ""
        lines.append(f"  {column.name:<24} {column.data_type:<16} -> {column.staged_name}{flags}")
    lines += [f"  note: {note}" for note in draft.notes]
    lines += [
        f"wrote {path.relative_to(project_dir) if path.is_relative_to(project_dir) else path}"
        for path in written
    ]
    delivery = (
        f"`dataops extract {draft.source}` (the first extract has landed already)"
        if draft.extract_source
        else f"put the files in $DATAOPS_HOME/landing/{draft.source}/{draft.table}/"
    )
    lines.append(
        f"Next: review {declaration_path(draft.source, project_dir).relative_to(project_dir)} "
        f"(replace each {PLACEHOLDER} description), run `dataops sources sync`, {delivery}, "
        f"then `dataops ingest --source {draft.source}` and `dataops build --select "
        f"source:{draft.source}+`."
    )
    return "\n".join(lines)


def add_parser(sources_commands) -> None:
    """`dataops sources add`: the subcommand's options (wired in dataops/cli.py)."""
    add = sources_commands.add_parser(
        "add",
        help="draft a source table's declaration from a sample file, then write its staging files",
        description="Infer columns, types, primary key, dedupe column and PII from a sample file; "
        "write models/staging/<source>/_<source>__sources.yml (or add the table to it, keeping "
        "what is there) and sync the staging files.",
    )
    add.add_argument("source", help="the source's name (lower snake_case), e.g. crm")
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--sample", type=Path, help="a file as the source delivers it")
    what.add_argument(
        "--all",
        dest="all_tables",
        action="store_true",
        help="draft every table folder under the source's landing path "
        "($DATAOPS_HOME/landing/<source>/<table>/) not declared yet, from its largest file",
    )
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
    add.add_argument(
        "--primary-key",
        help="column(s) that identify a record, comma-separated for a composite key, e.g. "
        "supply_id,sku (default: guessed)",
    )
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
    if not args.all_tables and args.sample is None:
        raise DeclarationError(
            "sources add: say what to draft from: --sample FILE, --all (every table folder), "
            "--postgres ENV or --api ENV"
        )
    options = dict(
        fmt=args.fmt,
        delimiter=args.delimiter,
        encoding=args.encoding,
        header=args.header,
        latest_by=args.latest_by,
        pii=tuple(args.pii),
        timezone=args.timezone,
    )
    if args.all_tables:
        if args.table or args.primary_key:
            raise DeclarationError(
                "--all drafts each table from its folder: --table and --primary-key apply to "
                "one table (use --sample for it)"
            )
        declared = declared_tables(args.source)
        folders = [
            f for f in table_folders(args.source, settings.landing_dir) if f.name not in declared
        ]
        if not folders:
            print(f"every table folder of {args.source} is declared already; nothing to draft")
            return 0
        for number, folder in enumerate(folders, 1):
            print(f"[{number}/{len(folders)}] {folder.name}", flush=True)
            draft = infer_draft(args.source, sample_of(folder), table=folder.name, **options)
            if args.print_only:
                print(draft.yaml())
            else:
                print(report(draft, add_source(draft)))
        return 0
    draft = infer_draft(
        args.source, args.sample, table=args.table, primary_key=args.primary_key, **options
    )
    if args.print_only:
        draft.database = house_database()
        print(draft.yaml())
        return 0
    print(report(draft, add_source(draft)))
    return 0
