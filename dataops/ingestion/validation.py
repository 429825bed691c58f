"""Validation of a landed file against its source declaration, before anything is loaded.

A file is first read whole into a temporary table (:func:`stage`): CSV and JSON lines as text,
Parquet with its own types. Reading fails on anything the declared format and encoding cannot
parse (unclosed quote, wrong field count, bytes that are not UTF-8, malformed JSON, a line that is
not a JSON object, a file that is not Parquet, a corrupt archive, an oversized line), and the
error is turned into a :class:`Violation` with its line. :func:`validate` then checks the staged
rows set-based inside DuckDB (one aggregate query plus one group-by, never row by row in Python):

- required columns: every declared column (except ``meta.expression`` ones) is in the file;
- schema drift (``landing.schema_drift``): ``additive`` accepts undeclared columns (they are added
  to the raw table), ``strict`` rejects them; a column whose type differs from the raw table's
  (Parquet) is rejected under both;
- castable: each value of a non-string column converts to the declared ``data_type`` the way
  staging will convert it (same trimming, case and coded-value mapping; ``safe_cast`` columns are
  exempt: staging counts their failures instead);
- no NUL byte in any text value;
- primary key: never null or blank, and unique within the file unless the declaration says
  ``duplicate_keys: keep``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.sql import quote_identifier, quote_literal
from dataops.sources.registry import LINEAGE_COLUMNS, Column, SourceTable

INCOMING = "_dataops_incoming"
MAX_VALUE_CHARS = 200
MAX_MESSAGE_CHARS = 600


@dataclass
class Violation:
    """One reason a file cannot be loaded (``row``: data record from 1; ``line``: file line)."""

    rule: str
    message: str
    column: str | None = None
    row: int | None = None
    line: int | None = None
    value: str | None = None
    count: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FileRejected(Exception):
    def __init__(self, violations: list[Violation]):
        super().__init__("; ".join(v.message for v in violations))
        self.violations = violations


@dataclass
class StagedFile:
    """A file read into the temporary table INCOMING: its columns (name -> type) and row count."""

    path: Path
    columns: dict[str, str]
    rows: int
    added_columns: list[str] = field(default_factory=list)
    nul_checked: bool = False  # the file's bytes were scanned for NUL (see _first_nul)




def _short(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


# --- Reading ---------------------------------------------------------------------------------
READ_ERRORS = (  # (pattern in DuckDB's message, rule)
    ("invalid unicode", "encoding"),
    ("not utf-8", "encoding"),
    ("unterminated quote", "unclosed_quote"),
    ("expected number of columns", "column_count"),
    ("maximum line size", "line_too_long"),
    ("gzip", "compression"),
    ("zstd", "compression"),
    ("magic bytes", "not_parquet"),
    ("parquet", "not_parquet"),
    ("expected object", "not_json_object"),
    ("malformed json", "malformed_json"),
)


EXPLANATION = re.compile(
    r"(Expected Number of Columns|Maximum line size|Value with unterminated quote|"
    r"Invalid unicode|Invalid Input Error|The file|Error when)"
)


def _compression(table: SourceTable, path: Path) -> str:
    declared = table.landing.options.compression
    if declared != "auto":
        return declared
    if path.name.endswith(".gz"):
        return "gzip"
    if path.name.endswith(".zst"):
        return "zstd"
    return "none"


def explain_read_error(error: Exception) -> Violation:
    """A short, line-numbered violation from a DuckDB read error (no echo of huge lines)."""
    text = str(error)
    line_match = re.search(r"CSV Error on Line: (\d+)|in line (\d+)", text)
    line = int(next(g for g in line_match.groups() if g)) if line_match else None
    # DuckDB's first line says what and where; the explanation follows the echoed original line
    # (which may be huge), then hints and the reader's settings, which are left out.
    first, *rest = text.splitlines() or [""]
    kept = [first[:MAX_MESSAGE_CHARS]]
    kept += [line.strip() for line in rest if EXPLANATION.match(line.strip())]
    message = " ".join(kept).replace(" Try auto-detecting the JSON format", "")
    if line is not None and "Malformed JSON" in text:
        # DuckDB 2.0 counts malformed-JSON lines from 2 (checked against files with a known bad
        # line); report the file's own line number.
        message = message.replace(f"in line {line}", f"in line {line - 1}")
        line -= 1
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    lowered = text.lower()
    rule = next((rule for pattern, rule in READ_ERRORS if pattern in lowered), "unreadable")
    return Violation(rule=rule, message=message, line=line)


def _csv_header(table: SourceTable, path: Path) -> list[str]:
    """The header record, parsed with the declared dialect and encoding (a BOM is dropped)."""
    options = table.landing.options
    encoding = {"utf-8": "utf-8-sig"}.get(options.encoding, options.encoding)
    compression = _compression(table, path)
    try:
        if compression not in ("gzip", "none"):
            return []  # zstd: DuckDB reads the header (see stage)
        with gzip.open(path, "rb") if compression == "gzip" else path.open("rb") as raw:
            if options.encoding == "utf-16":  # two-byte newlines: let the codec split lines
                first_line = io.TextIOWrapper(raw, encoding=encoding, newline="").readline()
            else:  # decode the first line only, so a bad byte further down gets its own line
                first_line = raw.readline(1 << 20).decode(encoding)
        record = next(
            csv.reader([first_line], delimiter=options.delimiter, quotechar=options.quote), []
        )
    except UnicodeDecodeError as error:
        raise FileRejected(
            [Violation("encoding", f"header is not {options.encoding}: {error}", line=1)]
        ) from None
    except (OSError, EOFError, csv.Error) as error:
        rule = "compression" if compression != "none" else "unreadable"
        raise FileRejected([Violation(rule, f"cannot read the header: {error}", line=1)]) from None
    return record


def _check_header(names: list[str]) -> None:
    violations = []
    seen: dict[str, str] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            violations.append(
                Violation("invalid_header", f"header field {position} is empty", line=1)
            )
        elif name.lower() in seen:
            violations.append(
                Violation(
                    "invalid_header",
                    f"column {name!r} appears twice in the header",
                    column=name,
                    line=1,
                )
            )
        seen[name.lower()] = name
    if violations:
        raise FileRejected(violations)


def _declared(table: SourceTable) -> list[Column]:
    """Columns that must be in the file (``meta.expression`` columns are computed in staging)."""
    return [c for c in table.columns if not c.meta.expression]


def _first_nul(path: Path) -> int | None:
    """Offset of the first NUL byte of a file (a memchr per megabyte), or None."""
    offset = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            found = chunk.find(b"\x00")
            if found >= 0:
                return offset + found
            offset += len(chunk)
    return None


def _nul_violation(table: SourceTable, path: Path, offset: int) -> Violation:
    """Where a NUL byte sits: line, row and (CSV) column, read from the bytes before it."""
    newlines, line_start, position = 0, 0, 0
    with path.open("rb") as handle:  # count lines in chunks: the NUL may be gigabytes in
        while position < offset:
            chunk = handle.read(min(1 << 20, offset - position))
            newlines += chunk.count(b"\n")
            if (last := chunk.rfind(b"\n")) >= 0:
                line_start = position + last + 1
            position += len(chunk)
        handle.seek(line_start)
        before = handle.read(offset - line_start)
        rest = handle.readline()
    line = newlines + 1
    header = table.landing.format == "csv" and table.landing.options.header
    row = line - 1 if header else line
    text = (before + rest).decode("utf-8", "replace")
    column = None
    if table.landing.format == "csv":
        options = table.landing.options
        cells = next(csv.reader([text], delimiter=options.delimiter, quotechar=options.quote), [])
        index = next((i for i, cell in enumerate(cells) if "\x00" in cell), None)
        if index is not None:
            names = _csv_header(table, path) if header else [c.name for c in _declared(table)]
            column = names[index] if index < len(names) else None
            text = cells[index]
    return Violation(
        "nul_byte",
        f"value contains a NUL byte: line {line}" + (f", column {column!r}" if column else ""),
        column=column,
        row=row,
        line=line,
        value=_short(text.replace("\x00", "\\0").rstrip("\r\n")),
    )


def stage(con: duckdb.DuckDBPyConnection, table: SourceTable, path: Path) -> StagedFile:
    """Read the whole file into the temporary table INCOMING; raise FileRejected if unreadable."""
    if path.stat().st_size == 0:
        raise FileRejected(
            [
                Violation(
                    "empty_file",
                    "the file is empty (0 bytes): a delivery with no rows must "
                    "still carry its header (CSV) or be a valid file; deliver it again",
                )
            ]
        )
    landing = table.landing
    compression = _compression(table, path)
    # NUL bytes in a plain UTF-8/latin-1 text file are found on the bytes (cheaper than a SQL
    # check per text column); compressed and UTF-16 files are checked in SQL by validate().
    nul_checked = (
        landing.format != "parquet"
        and compression == "none"
        and landing.options.encoding != "utf-16"
    )
    if nul_checked and (offset := _first_nul(path)) is not None:
        raise FileRejected([_nul_violation(table, path, offset)])
    if landing.format == "csv":
        options = landing.options
        if options.header:
            names = _csv_header(table, path)
            if not names and compression == "zstd":
                described = con.execute(
                    "describe select * from read_csv(?, header = true, all_varchar = true, "
                    f"delim = {quote_literal(options.delimiter)}, "
                    f"quote = {quote_literal(options.quote)}, compression = 'zstd')",
                    [str(path)],
                ).fetchall()
                names = [row[0] for row in described]
            if not names or names == [""]:
                raise FileRejected(
                    [Violation("invalid_header", "the first line has no header", line=1)]
                )
            _check_header(names)
        else:
            names = [c.name for c in _declared(table)]
        columns = ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in names)
        reader = (
            f"read_csv(?, auto_detect = false, header = {str(options.header).lower()}, "
            f"columns = {{{columns}}}, delim = {quote_literal(options.delimiter)}, "
            f"quote = {quote_literal(options.quote)}, escape = {quote_literal(options.quote)}, "
            f"encoding = {quote_literal(options.encoding)}, "
            f"compression = {quote_literal(compression)}, strict_mode = true)"
        )
    elif landing.format == "jsonl":
        try:
            keys = [
                row[0]
                for row in con.execute(
                    "select distinct unnest(json_keys(json)) from "
                    f"read_ndjson_objects(?, compression = {quote_literal(compression)})",
                    [str(path)],
                ).fetchall()
            ]
        except duckdb.Error as error:
            raise FileRejected([explain_read_error(error)]) from None
        declared = [c.name for c in _declared(table)]
        lowered = {k.lower() for k in declared}
        names = declared + sorted(k for k in keys if k.lower() not in lowered)
        columns = ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in names)
        reader = (
            "read_json(?, format = 'newline_delimited', "
            f"columns = {{{columns}}}, compression = {quote_literal(compression)})"
        )
        # A declared key that no record carries is a removed column, not a column of nulls.
        present = {k.lower() for k in keys}
        missing = [n for n in declared if n.lower() not in present]
    else:
        reader = "read_parquet(?)"
    try:
        con.execute(
            f"create or replace temp table {INCOMING} as select * from {reader}", [str(path)]
        )
    except duckdb.Error as error:
        raise FileRejected([explain_read_error(error)]) from None
    described = con.execute(f"describe {INCOMING}").fetchall()
    file_columns = {row[0]: row[1] for row in described}
    if landing.format == "jsonl":
        for name in missing:
            file_columns.pop(name, None)
    rows = con.execute(f"select count(*) from {INCOMING}").fetchone()[0]
    return StagedFile(path=path, columns=file_columns, rows=rows, nul_checked=nul_checked)


# --- Checking ------------------------------------------------------------------------------
def _normalise_type(data_type: str) -> str:
    return re.sub(r"\s+", "", data_type.lower()).replace("int64", "bigint")


def _staged_text(column: Column, raw: str) -> tuple[str, bool]:
    """The expression staging casts, and whether it is text (see staging_column_text)."""
    meta = column.meta
    trim = column.is_string if meta.trim is None else meta.trim
    if not (column.is_string or trim or meta.case or meta.values_map):
        return raw, False
    expression = f"cast({raw} as varchar)"
    if trim:
        expression = f"nullif(trim({expression}), '')"
    if meta.case:
        expression = f"{meta.case}({expression})"
    if meta.values_map:
        branches = " ".join(
            f"when {quote_literal(code)} then {quote_literal(value)}"
            for code, value in meta.values_map.items()
        )
        expression = f"case {expression} {branches} else {expression} end"
    return expression, True


def _position(
    staged_format: str, row_id: int | None, header: bool
) -> tuple[int | None, int | None]:
    if row_id is None:
        return None, None
    row = int(row_id) + 1
    if staged_format == "csv":
        return row, row + (1 if header else 0)
    if staged_format == "jsonl":
        return row, row
    return row, None


def validate(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    staged: StagedFile,
    raw_columns: dict[str, str] | None,
) -> list[Violation]:
    """Check the staged file, set ``staged.added_columns``; return the violations (none: load)."""
    landing = table.landing
    by_lower = {name.lower(): name for name in staged.columns}
    declared = _declared(table)
    declared_lower = {c.name.lower() for c in declared}
    violations: list[Violation] = []
    found = ", ".join(staged.columns) or "none"
    if landing.format == "csv" and len(staged.columns) == 1:
        [only] = staged.columns
        other = next((d for d in (";", "\t", "|", ",") if d in only), None)
        if other and other != landing.options.delimiter:
            found += (
                f"; is the delimiter {other!r} instead of the declared "
                f"{landing.options.delimiter!r}?"
            )
    for column in declared:
        if column.name.lower() not in by_lower:
            violations.append(
                Violation(
                    "missing_column",
                    f"declared column {column.name!r} is not in the file (columns found: {found})",
                    column=column.name,
                )
            )
    for name in staged.columns:
        if name.lower() in {c.lower() for c in LINEAGE_COLUMNS}:
            violations.append(
                Violation(
                    "reserved_column", f"column {name!r} is reserved for lineage", column=name
                )
            )
    extras = [
        n
        for n in staged.columns
        if n.lower() not in declared_lower and n.lower() not in {c.lower() for c in LINEAGE_COLUMNS}
    ]
    if extras and landing.schema_drift == "strict":
        for name in extras:
            violations.append(
                Violation(
                    "unexpected_column",
                    f"column {name!r} is not declared and schema_drift is strict: declare it in "
                    f"{table.declared_in} or set schema_drift: additive",
                    column=name,
                )
            )
    raw_lower = {k.lower(): v for k, v in (raw_columns or {}).items()}
    for name, data_type in staged.columns.items():
        known = raw_lower.get(name.lower())
        if known is not None and _normalise_type(known) != _normalise_type(data_type):
            violations.append(
                Violation(
                    "column_retyped",
                    f"column {name!r} is {data_type} in the file but {known} in the raw table "
                    f"{table.schema}.{table.name}",
                    column=name,
                    value=data_type,
                )
            )
    if violations:
        return violations
    staged.added_columns = extras

    checks: list[tuple[str, str, str, str]] = []  # (rule, column, failing condition, message)
    for column in declared:
        raw = quote_identifier(by_lower[column.name.lower()])
        text, _ = _staged_text(column, raw)
        file_type = staged.columns[by_lower[column.name.lower()]]
        castable = (
            column.is_string
            or table.column_safe_cast(column)
            or (
                _normalise_type(file_type) == _normalise_type(column.data_type)
                and not column.meta.values_map
            )
        )
        if not castable:
            checks.append(
                (
                    "type_cast",
                    column.name,
                    f"{text} is not null and try_cast({text} as {column.data_type}) is null",
                    f"value does not convert to {column.data_type}",
                )
            )
        if column.staged_name in table.primary_key:
            key_text = text if column.is_string else raw
            blank = (
                f" or trim(cast({raw} as varchar)) = ''" if file_type.upper() == "VARCHAR" else ""
            )
            checks.append(
                (
                    "primary_key_null",
                    column.name,
                    f"{key_text} is null{blank}",
                    f"primary key {column.staged_name!r} is null or blank",
                )
            )
    for name, data_type in staged.columns.items():
        if data_type.upper() == "VARCHAR" and not staged.nul_checked:
            checks.append(
                (
                    "nul_byte",
                    name,
                    f"contains({quote_identifier(name)}, chr(0))",
                    "value contains a NUL byte",
                )
            )
    # Every key column (a composite key is several) must be a declared raw column to compare keys.
    key_columns = [c for c in declared if c.staged_name in table.primary_key]
    key_column = key_columns[0] if len(key_columns) == len(table.primary_key) else None
    key = None
    if key_column is not None and landing.duplicate_keys == "quarantine":
        # Keys compare as staging will see them (cast to the declared type: '007' and '7' are
        # one key), which also hashes faster than text.
        parts = []
        for column in key_columns:
            part, _ = _staged_text(column, quote_identifier(by_lower[column.name.lower()]))
            parts.append(part if column.is_string else f"try_cast({part} as {column.data_type})")
        # A composite key compares as one row value; it is null when any part is (null parts
        # are reported by the null check above).
        key = parts[0] if len(parts) == 1 else (
            f"case when {' or '.join(p + ' is null' for p in parts)} then null "
            f"else row({', '.join(parts)}) end"
        )
    # One scan counts every failure (each condition evaluated once); the rare failing checks get
    # a second query for their first row and value.
    aggregates = [f"count_if({condition})" for _, _, condition, _ in checks]
    aggregates.append(f"count({key}) - count(distinct {key})" if key else "0")
    *counts, repeated = con.execute(f"select {', '.join(aggregates)} from {INCOMING}").fetchone()
    failing = [index for index, count in enumerate(counts) if count]
    if failing:
        details = []
        for index in failing:
            _, column_name, condition, _ = checks[index]
            value = f"cast({quote_identifier(by_lower[column_name.lower()])} as varchar)"
            details.append(
                f"min(rowid) filter (where {condition}), "
                f"arg_min({value}, rowid) filter (where {condition})"
            )
        found_rows = con.execute(f"select {', '.join(details)} from {INCOMING}").fetchone()
        for position, index in enumerate(failing):
            rule, column_name, _, message = checks[index]
            count = counts[index]
            row_id, value = found_rows[2 * position : 2 * position + 2]
            row, line = _position(landing.format, row_id, landing.options.header)
            violations.append(
                Violation(
                    rule,
                    f"{message}: column {column_name!r}, row {row}"
                    + (f" (line {line})" if line else "")
                    + f", value {_short(value)!r}"
                    + (f" and {count - 1} more row(s)" if count > 1 else ""),
                    column=column_name,
                    row=row,
                    line=line,
                    value=_short(value),
                    count=int(count),
                )
            )
    if not repeated or key_column is None:
        return violations
    duplicates = con.execute(
        f"""
        with duplicated as (
            select {key} as k, count(*) as n, min(rowid) as first_row, max(rowid) as last_row
            from {INCOMING}
            where {key} is not null
            group by 1
            having count(*) > 1
        )
        select count(*), sum(n), arg_min(cast(k as varchar), first_row), min(first_row),
            arg_min(last_row, first_row)
        from duplicated
        """
    ).fetchone()
    keys, rows, value, first_id, second_id = duplicates
    if keys:
        row, line = _position(landing.format, first_id, landing.options.header)
        again, again_line = _position(landing.format, second_id, landing.options.header)
        where = f"line {line} and {again_line}" if line else f"row {row} and {again}"
        violations.append(
            Violation(
                "primary_key_duplicate",
                f"primary key {table.key_label!r} value {_short(value)!r} appears more than once "
                f"in the file ({where}); {keys} key(s) repeated over {rows} rows. If this table's "
                "files legitimately repeat keys, declare duplicate_keys: keep",
                column=key_column.name,
                row=row,
                line=line,
                value=_short(value),
                count=int(keys),
            )
        )
    return violations
