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

import contextlib
import csv
import gzip
import io
import re
import tempfile
import zlib
from collections.abc import Iterator
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
    """An opened file: its columns (name -> type), the reader over it and where its rows are.

    Its rows are in ``relation`` where ``scope`` holds, the first one at ``first_row_id``: the
    temporary table INCOMING (:func:`stage`), or the raw table's rows inserted by the load's
    own transaction (the loader inserts straight from ``reader`` and checks them before commit).
    """

    path: Path
    columns: dict[str, str]
    rows: int
    added_columns: list[str] = field(default_factory=list)
    nul_checked: bool = False  # the file's bytes were scanned for NUL (see _first_nul)
    nested: list[Violation] = field(default_factory=list)  # objects/arrays in scalar columns
    reader: str = ""  # a table function over the file, its one parameter ``read_path``
    read_path: Path | None = None  # the file the reader opens (a normalised copy, maybe)
    compression: str = "none"
    relation: str = INCOMING
    scope: str = "true"
    first_row_id: int = 0




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


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class Content:
    """What a file is, from its bytes (never its name): compression, and for text its start."""

    compression: str  # none | gzip | zstd
    parquet: bool = False
    bom: bool = False  # starts with a UTF-8 byte order mark (after decompression)
    cr_only: bool = False  # lines end with a lone CR (classic Mac), no LF in the first 64 KiB

    @property
    def needs_normalising(self) -> bool:
        return self.bom or self.cr_only


def sniff(path: Path) -> Content:
    """Recognise a file by its magic bytes: gzip, zstd and Parquet whatever the file is named."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic.startswith(GZIP_MAGIC):
        compression = "gzip"
    elif magic == ZSTD_MAGIC:
        return Content("zstd")  # no zstd codec in Python's standard library: DuckDB reads it
    else:
        compression = "none"
    if magic == PARQUET_MAGIC:
        return Content("none", parquet=True)
    try:
        with gzip.open(path, "rb") if compression == "gzip" else path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error):
        head = b""  # a corrupt archive: DuckDB's reader names the problem
    return Content(
        compression,
        bom=head.startswith(UTF8_BOM),
        cr_only=b"\r" in head and b"\n" not in head,
    )


def _compression(table: SourceTable, path: Path) -> str:
    """The file's compression from its magic bytes (the declared option is only a fallback)."""
    detected = sniff(path).compression
    if detected != "none":
        return detected
    declared = table.landing.options.compression
    return "none" if declared in ("auto", "gzip") else declared


def normalised_copy(path: Path, content: Content, folder: Path) -> Path:
    """An uncompressed copy without the BOM and with LF line ends, for readers that need them.

    DuckDB's JSON reader refuses a byte order mark and lines ended by a lone CR; the copy keeps
    every line (one CR becomes one LF), so line numbers in errors still match the delivered file.
    """
    target = folder / f"{path.name}.normalised"
    opener = gzip.open if content.compression == "gzip" else open
    first = True
    with opener(path, "rb") as source, target.open("wb") as out:
        while chunk := source.read(1 << 20):
            if first and chunk.startswith(UTF8_BOM):
                chunk = chunk[len(UTF8_BOM) :]
            first = False
            if content.cr_only:
                chunk = chunk.replace(b"\r", b"\n")
            out.write(chunk)
    return target


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


def _csv_header(table: SourceTable, path: Path, compression: str | None = None) -> list[str]:
    """The header record, parsed with the declared dialect and encoding (a BOM is dropped)."""
    options = table.landing.options
    encoding = {"utf-8": "utf-8-sig"}.get(options.encoding, options.encoding)
    compression = compression or _compression(table, path)
    try:
        if compression not in ("gzip", "none"):
            return []  # zstd: DuckDB reads the header (see stage)
        with gzip.open(path, "rb") if compression == "gzip" else path.open("rb") as raw:
            if options.encoding == "utf-16":  # two-byte newlines: let the codec split lines
                first_line = io.TextIOWrapper(raw, encoding=encoding, newline="").readline()
            else:  # decode the first line only, so a bad byte further down gets its own line
                head = raw.read(1 << 20)
                # the first line ends at LF, CRLF or a lone CR (classic Mac line ends)
                first_line = re.split(rb"\r\n|\n|\r", head, maxsplit=1)[0].decode(encoding)
        record = next(
            csv.reader([first_line], delimiter=options.delimiter, quotechar=options.quote), []
        )
    except UnicodeDecodeError as error:
        raise FileRejected(
            [Violation("encoding", f"header is not {options.encoding}: {error}", line=1)]
        ) from None
    except (OSError, EOFError, zlib.error, csv.Error) as error:
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


def _nul_violation(
    table: SourceTable, path: Path, offset: int, cr_only: bool = False
) -> Violation:
    """Where a NUL byte sits: line, row and (CSV) column, read from the bytes before it."""
    newline = b"\r" if cr_only else b"\n"
    newlines, line_start, position = 0, 0, 0
    with path.open("rb") as handle:  # count lines in chunks: the NUL may be gigabytes in
        while position < offset:
            chunk = handle.read(min(1 << 20, offset - position))
            newlines += chunk.count(newline)
            if (last := chunk.rfind(newline)) >= 0:
                line_start = position + last + 1
            position += len(chunk)
        handle.seek(line_start)
        before = handle.read(offset - line_start)
        rest = handle.read(1 << 16).split(newline, 1)[0]
    line = newlines + 1
    header = table.landing.format == "csv" and table.landing.options.header
    row = line - 1 if header else line
    text = (before + rest).decode("utf-8", "replace")
    column = None
    if table.landing.format == "csv":
        options = table.landing.options
        try:  # the line may itself be unparseable (a lone CR, random bytes): then no column
            cells = next(
                csv.reader([text], delimiter=options.delimiter, quotechar=options.quote), []
            )
            index = next((i for i, cell in enumerate(cells) if "\x00" in cell), None)
            if index is not None:
                names = _csv_header(table, path) if header else [c.name for c in _declared(table)]
                column = names[index] if index < len(names) else None
                text = cells[index]
        except (csv.Error, FileRejected):
            column = None
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
    with opened(con, table, path) as staged:
        materialise(con, table, staged)
        return staged


@contextlib.contextmanager
def opened(con: duckdb.DuckDBPyConnection, table: SourceTable, path: Path) -> Iterator[StagedFile]:
    """Open a file for reading (nothing read but its header, keys or schema), or FileRejected.

    The file is recognised by its bytes: gzip/zstd whatever its name, Parquet by its magic; a
    JSON-lines file with a BOM or lone-CR line ends is read from a normalised copy, which lives
    as long as the context. Violations raised inside the context name the delivered file.
    """
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
    content = sniff(path)
    expected = table.landing.format
    if expected == "parquet" and not content.parquet:
        what = (
            f"a {content.compression}-compressed file"
            if content.compression != "none"
            else "not a Parquet file (it does not start with the magic bytes PAR1)"
        )
        raise FileRejected(
            [
                Violation(
                    "not_parquet",
                    f"{what}; {table.key} expects Parquet files (Parquet compresses inside "
                    "the file: deliver the .parquet file itself)",
                )
            ]
        )
    if expected != "parquet" and content.parquet:
        raise FileRejected(
            [
                Violation(
                    "wrong_format",
                    f"this is a Parquet file (magic bytes PAR1) but {table.key} expects "
                    f"{expected} files",
                )
            ]
        )
    if expected == "jsonl" and content.needs_normalising:
        with tempfile.TemporaryDirectory(prefix="dataops-normalise-") as folder:
            copy = normalised_copy(path, content, Path(folder))
            try:
                staged = _open(con, table, copy, Content("none"))
                staged.path = path
                yield staged
            except FileRejected as rejected:
                for violation in rejected.violations:
                    violation.message = violation.message.replace(str(copy), str(path))
                raise
        return
    yield _open(con, table, path, content)


def materialise(con: duckdb.DuckDBPyConnection, table: SourceTable, staged: StagedFile) -> None:
    """Read an opened file's rows into the temporary table INCOMING."""
    try:
        con.execute(
            f"create or replace temp table {INCOMING} as select * from {staged.reader}",
            [str(staged.read_path)],
        )
    except duckdb.Error as error:
        raise FileRejected([explain_read_error(error)]) from None
    staged.relation, staged.scope, staged.first_row_id = INCOMING, "true", 0
    staged.rows = con.execute(f"select count(*) from {INCOMING}").fetchone()[0]
    staged.nested = find_nested(con, table, staged)


def _open(
    con: duckdb.DuckDBPyConnection, table: SourceTable, path: Path, content: Content
) -> StagedFile:
    landing = table.landing
    declared_compression = landing.options.compression
    compression = (
        content.compression
        if content.compression != "none" or declared_compression in ("auto", "gzip")
        else declared_compression
    )
    # NUL bytes in a plain UTF-8/latin-1 text file are found on the bytes (cheaper than a SQL
    # check per text column); compressed and UTF-16 files are checked in SQL by validate().
    nul_checked = (
        landing.format != "parquet"
        and compression == "none"
        and landing.options.encoding != "utf-16"
    )
    if nul_checked and (offset := _first_nul(path)) is not None:
        raise FileRejected([_nul_violation(table, path, offset, content.cr_only)])
    if landing.format == "csv":
        options = landing.options
        if options.header:
            names = _csv_header(table, path, compression)
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
        file_columns = dict.fromkeys(names, "VARCHAR")
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
        # JSON keys are case-sensitive, declared names are not: a key is read under the exact
        # spelling the file uses, and a name spelt two ways in one file is refused (else the
        # reader would silently give null for the records that use the other spelling).
        spellings: dict[str, list[str]] = {}
        for key in sorted(keys):
            spellings.setdefault(key.lower(), []).append(key)
        mixed = {lower: found for lower, found in spellings.items() if len(found) > 1}
        if mixed:
            raise FileRejected(
                [
                    Violation(
                        "key_case",
                        f"key {found[0]!r} is spelt {len(found)} ways in this file "
                        f"({', '.join(map(repr, found))}): use one spelling in every record",
                        column=found[0],
                        value=", ".join(found),
                    )
                    for found in mixed.values()
                ]
            )
        spelt = {lower: found[0] for lower, found in spellings.items()}
        declared = [spelt.get(c.name.lower(), c.name) for c in _declared(table)]
        lowered = {k.lower() for k in declared}
        names = declared + sorted(k for k in keys if k.lower() not in lowered)
        columns = ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in names)
        reader = (
            "read_json(?, format = 'newline_delimited', "
            f"columns = {{{columns}}}, compression = {quote_literal(compression)})"
        )
        # A declared key that no record carries is a removed column, not a column of nulls.
        present = {k.lower() for k in keys}
        file_columns = {n: "VARCHAR" for n in names if n.lower() in present}
    else:
        reader = "read_parquet(?)"
        try:
            described = con.execute(f"describe select * from {reader}", [str(path)]).fetchall()
        except duckdb.Error as error:
            raise FileRejected([explain_read_error(error)]) from None
        file_columns = {row[0]: row[1] for row in described}
    return StagedFile(
        path=path,
        columns=file_columns,
        rows=0,
        nul_checked=nul_checked,
        reader=reader,
        read_path=path,
        compression=compression,
    )


def find_nested(
    con: duckdb.DuckDBPyConnection, table: SourceTable, staged: StagedFile
) -> list[Violation]:
    """An object or array where a declared (scalar) column is expected: a cast failure.

    Read as text, a nested value becomes its JSON text, like a string that happens to start with
    '{' or '['; only when such text is found is the file read again to tell the two apart.
    """
    if table.landing.format != "jsonl":
        return []
    declared = {c.name.lower() for c in _declared(table)}
    names = [n for n in staged.columns if n.lower() in declared]
    if not names:
        return []
    path, compression = staged.read_path, staged.compression
    # Text starting with '[' or '{' as byte ranges (['[', '\\') and ['{', '|')): cheaper than
    # left(), and a row group whose min/max rule it out is skipped unread.
    candidates = con.execute(
        "select "
        + ", ".join(
            f"count_if(({q} >= '[' and {q} < '\\') or ({q} >= '{{' and {q} < '|'))"
            for q in map(quote_identifier, names)
        )
        + f" from {staged.relation} where {staged.scope}"
    ).fetchone()
    violations = []
    for name, candidate in zip(names, candidates, strict=True):
        if not candidate:
            continue
        key = quote_literal(name)
        count, value = con.execute(
            f"select count(*), cast(any_value(json -> {key}) as varchar) "
            f"from read_ndjson_objects(?, compression = {quote_literal(compression)}) "
            f"where json_type(json -> {key}) in ('OBJECT', 'ARRAY')",
            [str(path)],
        ).fetchone()
        if not count:
            continue
        row_id = con.execute(
            f"select min(rowid) - {staged.first_row_id} from {staged.relation} "
            f"where {staged.scope} and {quote_identifier(name)} = ?",
            [value],
        ).fetchone()[0]
        line = None if row_id is None else int(row_id) + 1
        violations.append(
            Violation(
                "nested_value",
                f"an object or array where a scalar is declared: column {name!r}"
                + (f", line {line}" if line else "")
                + f", value {_short(value)!r}"
                + (f" and {count - 1} more row(s)" if count > 1 else ""),
                column=name,
                row=line,
                line=line,
                value=_short(value),
                count=int(count),
            )
        )
    return violations


# --- Checking ------------------------------------------------------------------------------
def _is_nested_type(data_type: str) -> bool:
    upper = data_type.upper().strip()
    return upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION", "JSON"))


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


INTEGER_TYPES = frozenset(
    {
        "tinyint", "smallint", "integer", "int", "bigint", "hugeint", "utinyint", "usmallint",
        "uinteger", "ubigint", "uhugeint", "int1", "int2", "int4", "int8", "long", "short",
        "signed",
    }
)  # fmt: skip
FLOAT_TYPES = frozenset({"double", "float", "real", "float4", "float8"})
# A time followed by an offset or zone name (same pattern as macros/staging/staging_cast.sql).
OFFSET_PATTERN = (
    "(?i)[0-9]:[0-9]{2}(:[0-9]{2}([.][0-9]*)?)? *(z|[+-][0-9]{2}(:?[0-9]{2})?|utc|gmt|"
    "[a-z]+/[a-z_/+-]+) *$"
)
INTEGER_PATTERN = " *[+-]?[0-9]+([.]0*)? *"


def strict_cast(expression: str, data_type: str) -> str:
    """DuckDB SQL casting a value without changing its meaning; null when it does not convert.

    Mirrors ``duckdb__staging_cast`` (macros/staging/staging_cast.sql) with ``safe``: a fractional
    value is not an integer, decimals beyond the scale are not rounded, a finite value that
    overflows a float is a failure, a timestamp with an offset or zone is converted to UTC.
    """
    kind = data_type.lower().replace(" ", "")
    text = f"cast({expression} as varchar)"
    decimal = re.match(r"^(decimal|numeric)(\((\d+),(\d+)\))?$", kind)
    if kind in INTEGER_TYPES:
        condition = f"regexp_full_match({text}, '{INTEGER_PATTERN}')"
    elif decimal:
        scale = int(decimal.group(4) or 3)
        pattern = (
            INTEGER_PATTERN
            if scale == 0
            else f" *[+-]?([0-9]+([.][0-9]{{0,{scale}}}0*)?|[.][0-9]{{1,{scale}}}0*) *"
        )
        condition = f"regexp_full_match({text}, '{pattern}')"
    elif kind in FLOAT_TYPES:
        condition = (
            f"(not isinf(try_cast({text} as {data_type})) or regexp_matches(lower({text}), 'inf'))"
        )
    elif kind in ("timestamp", "datetime"):
        return (
            f"case when regexp_matches({text}, '{OFFSET_PATTERN}') then timezone('UTC', "
            f"try_cast({text} as timestamptz)) else try_cast({expression} as {data_type}) end"
        )
    else:
        return f"try_cast({expression} as {data_type})"
    return f"case when {condition} then try_cast({expression} as {data_type}) end"


def cast_fails(expression: str, data_type: str) -> str:
    """DuckDB SQL, true where a non-null value does not convert by :func:`strict_cast`.

    A value that is already DuckDB's own text for the type ('42', '0.13', '2025-01-01 00:00:00':
    cast to the type and back, it comes out unchanged) converts without any change of meaning,
    so strict_cast's pattern checks (a regular expression per value) run only on the others.
    """
    failed = f"{expression} is not null and {strict_cast(expression, data_type)} is null"
    kind = data_type.lower().replace(" ", "")
    if not (
        kind in INTEGER_TYPES
        or kind in ("timestamp", "datetime")
        or re.match(r"^(decimal|numeric)(\(\d+,\d+\))?$", kind)
    ):
        return failed
    text = f"cast({expression} as varchar)"
    canonical = f"cast(try_cast({expression} as {data_type}) as varchar) = {text}"
    return f"{expression} is not null and (case when {canonical} then false else {failed} end)"


def _position(
    staged_format: str, row_id: int | None, header: bool, first_row_id: int = 0
) -> tuple[int | None, int | None]:
    if row_id is None:
        return None, None
    row = int(row_id) - first_row_id + 1
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
    return check_columns(table, staged, raw_columns) or check_rows(con, table, staged)


def exact_conversion(file_type: str, raw_type: str) -> bool:
    """Whether inserting a ``file_type`` value into a ``raw_type`` column keeps it or fails.

    Integer to integer (a Parquet BIGINT into a declared INTEGER): DuckDB converts the value
    unchanged or raises a conversion error (out of range); it never rounds. Any other
    conversion (a DOUBLE into an integer rounds) must be checked before the value is converted.
    """
    file_kind, raw_kind = _normalise_type(file_type), _normalise_type(raw_type)
    return file_kind == raw_kind or (file_kind in INTEGER_TYPES and raw_kind in INTEGER_TYPES)


def loads_as_read(staged: StagedFile, raw_columns: dict[str, str]) -> bool:
    """Whether each column of the file goes into its raw column unchanged or not at all.

    Then the file can be inserted straight from its reader and its rows checked in the raw table
    before commit (a value out of the raw column's range fails the insert: the loader then reads
    the file through the staged copy to name the row). A value that an insert would silently
    convert (a Parquet DOUBLE into an integer column) must be checked before it is converted,
    from the staged copy.
    """
    raw_lower = {k.lower(): v for k, v in raw_columns.items()}
    return all(
        exact_conversion(data_type, raw_lower.get(name.lower(), data_type))
        for name, data_type in staged.columns.items()
    )


def check_columns(
    table: SourceTable, staged: StagedFile, raw_columns: dict[str, str] | None
) -> list[Violation]:
    """The file's columns against the declaration and the raw table; sets ``added_columns``."""
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
    violations.extend(staged.nested)
    for column in declared:
        file_type = staged.columns.get(by_lower.get(column.name.lower(), ""), "")
        if _is_nested_type(file_type) and not _is_nested_type(column.data_type):
            violations.append(
                Violation(
                    "nested_value",
                    f"column {column.name!r} is {file_type} in the file, a nested type where "
                    f"{column.data_type} is declared",
                    column=column.name,
                    value=file_type,
                )
            )
    raw_lower = {k.lower(): v for k, v in (raw_columns or {}).items()}
    declared_by_lower = {c.name.lower(): c for c in declared}
    for name, data_type in staged.columns.items():
        known = raw_lower.get(name.lower())
        if known is not None and _normalise_type(known) != _normalise_type(data_type):
            column = declared_by_lower.get(name.lower())
            if (
                column is not None
                and not column.is_string
                and not table.column_safe_cast(column)
                and _normalise_type(known) == _normalise_type(column.data_type)
            ):
                continue  # each value is checked against the declared type below, then cast
            violations.append(
                Violation(
                    "column_retyped",
                    f"column {name!r} is {data_type} in the file but {known} in the raw table "
                    f"{table.schema}.{table.name}",
                    column=name,
                    value=data_type,
                )
            )
    if not violations:
        staged.added_columns = extras
    return violations


# Integer keys whose values fit a bitmap: uniqueness is checked with ``bitstring_agg`` (one bit
# per value between the file's smallest and largest key) instead of ``count(distinct)``'s hash
# table, when that range is at most BITMAP_MAX_BITS (16 MiB of bits).
BITMAP_TYPES = frozenset(
    {"tinyint", "smallint", "integer", "int", "bigint", "int1", "int2", "int4", "int8", "long",
     "short", "signed", "utinyint", "usmallint", "uinteger"}
)  # fmt: skip
BITMAP_MAX_BITS = 1 << 27


def _repeated_keys(
    con: duckdb.DuckDBPyConnection,
    key: str,
    rows: str,
    scope: str,
    count: int,
    low: int | None,
    high: int | None,
) -> int:
    """How many non-null integer keys repeat one another (0: the keys are unique)."""
    if not count:
        return 0
    span = int(high) - int(low) + 1
    if span < count:
        return count - span  # more keys than values in their range: some repeat (at least this)
    if span > BITMAP_MAX_BITS:
        query = f"count({key}) - count(distinct {key})"
    else:
        query = f"count({key}) - bit_count(bitstring_agg({key}, {int(low)}, {int(high)}))"
    return con.execute(f"select {query} from {rows} where {scope}").fetchone()[0]


def check_rows(
    con: duckdb.DuckDBPyConnection, table: SourceTable, staged: StagedFile
) -> list[Violation]:
    """Set-based checks of the file's rows (values cast, keys, NUL bytes) where they are."""
    landing = table.landing
    by_lower = {name.lower(): name for name in staged.columns}
    declared = _declared(table)
    violations: list[Violation] = []
    rows, scope, first = staged.relation, staged.scope, staged.first_row_id

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
                    cast_fails(text, column.data_type),
                    f"value does not convert to {column.data_type} without changing its "
                    "meaning (no rounding, offsets converted to UTC, within range)",
                )
            )
        if column.staged_name in table.primary_key:
            if file_type.upper() == "VARCHAR":
                # Null or blank (spaces only). The staged key text is null exactly then, and a
                # blank value sorts below '!', so trim() runs only on those few values.
                as_text = f"cast({raw} as varchar)"
                missing = (
                    f"{raw} is null or (case when {as_text} < '!' then trim({as_text}) = '' "
                    "else false end)"
                )
            else:
                missing = f"{text if column.is_string else raw} is null"
            checks.append(
                (
                    "primary_key_null",
                    column.name,
                    missing,
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
    key, dense = None, False
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
        dense = len(key_columns) == 1 and _normalise_type(key_column.data_type) in BITMAP_TYPES
    # One scan counts every failure (each condition evaluated once); the rare failing checks get
    # a second query for their first row and value.
    aggregates = [f"count_if({condition})" for _, _, condition, _ in checks]
    if dense:  # an integer key: its range first, then a bitmap of the values (_repeated_keys)
        aggregates += [f"count({key})", f"min({key})", f"max({key})"]
    else:
        aggregates.append(f"count({key}) - count(distinct {key})" if key else "0")
    found = con.execute(f"select {', '.join(aggregates)} from {rows} where {scope}").fetchone()
    if dense:
        counts = list(found[: len(checks)])
        repeated = _repeated_keys(con, key, rows, scope, *found[len(checks) :])
    else:
        *counts, repeated = found
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
        found_rows = con.execute(
            f"select {', '.join(details)} from {rows} where {scope}"
        ).fetchone()
        for position, index in enumerate(failing):
            rule, column_name, _, message = checks[index]
            count = counts[index]
            row_id, value = found_rows[2 * position : 2 * position + 2]
            row, line = _position(landing.format, row_id, landing.options.header, first)
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
            from {rows}
            where {scope} and {key} is not null
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
        row, line = _position(landing.format, first_id, landing.options.header, first)
        again, again_line = _position(landing.format, second_id, landing.options.header, first)
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
