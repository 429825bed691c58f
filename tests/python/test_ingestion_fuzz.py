"""Seeded fuzzing of ingestion: mutated files of every format, mixed with good ones.

Good files of each format (CSV orders, JSON-lines payments, Parquet sessions) are mutated
thousands of times (random bytes, truncation, splices, duplicated/dropped/swapped lines, wrong
encodings, gzip, BOMs, line endings, NUL bytes, fractions, offsets, nested values), one to three
mutations per file, and landed in batches together with good files. After each batch:

- no crash: ``ingest`` returns, and every file is accounted for (loaded, a traced duplicate, or
  quarantined with its reason);
- no row lost: every good file is loaded, all of its rows (an independent reader counts them);
- no duplicate: each content is loaded once, and its raw rows equal its ledger count;
- no silent value change: every row of every file that loaded holds, column for column, what an
  independent parser (Python's csv/json, DuckDB's Parquet reader) reads in the file, and the
  value staging will cast it to means the same (integers integral, decimals within their
  scale, timestamps with an offset at the same instant in UTC).

One line sums it up: ``N mutated files tried, 0 crashes, 0 rows lost, 0 duplicates, 0 silent
value changes``. Deterministic (seeded); ``DATAOPS_FUZZ_FILES`` sets the number per format.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import pytest

from dataops.ingestion.loader import ingest
from dataops.ingestion.validation import strict_cast
from dataops.sources.registry import SourceTable, load_registry

SEED = 18
PER_FORMAT = int(os.environ.get("DATAOPS_FUZZ_FILES", "700"))
BATCH = 175
TEMPLATE_ROWS = 12
REGISTRY = {t.key: t for t in load_registry()}
TABLES = {"csv": "shop.orders", "jsonl": "payments.payments", "parquet": "web.sessions"}
TOTALS = Counter()
SHM = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
EXAMPLES: list[str] = []  # the first problems found, for the failure message


def _problem(kind: str, what: str, count: int = 1) -> None:
    TOTALS[kind] += count
    if len(EXAMPLES) < 8:
        EXAMPLES.append(f"{kind}: {what}")


class _Report:
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if TOTALS["tried"]:
            terminalreporter.write_line(summary_line())


def summary_line() -> str:
    return (
        f"{TOTALS['tried']} mutated files tried, {TOTALS['crashes']} crashes, "
        f"{TOTALS['lost']} rows lost, {TOTALS['duplicates']} duplicates, "
        f"{TOTALS['changed']} silent value changes"
    )


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest):
    plugin = _Report()
    if not request.config.pluginmanager.is_registered(plugin):
        request.config.pluginmanager.register(plugin, "ingestion-fuzz-report")
    yield


# --- Mutations ----------------------------------------------------------------------------------
def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def random_bytes(rng: random.Random, data: bytes) -> bytes:
    noise = rng.randbytes(rng.randint(1, 600))
    return noise if rng.random() < 0.5 else noise.replace(b"\x00", b"\r")


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randint(0, max(0, len(data) - 1))]


def splice_noise(rng: random.Random, data: bytes) -> bytes:
    at = rng.randint(0, len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 12)) + data[at:]


def splice_self(rng: random.Random, data: bytes) -> bytes:
    a, b = sorted(rng.randint(0, len(data)) for _ in range(2))
    at = rng.randint(0, len(data))
    return data[:at] + data[a:b] + data[at:]


def flip_byte(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def delete_byte(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + 1 :]


def duplicate_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    if not lines:
        return data
    at = rng.randrange(len(lines))
    lines.insert(rng.randint(0, len(lines)), lines[at])
    return b"".join(lines)


def drop_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    if lines:
        del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def swap_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    if len(lines) > 1:
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[a], lines[b] = lines[b], lines[a]
    return b"".join(lines)


def latin1(rng: random.Random, data: bytes) -> bytes:
    try:
        return data.decode("utf-8").replace("a", "\u00e9", 1).encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return data + b"\xe9"


def utf16(rng: random.Random, data: bytes) -> bytes:
    return data.decode("utf-8", "replace").encode("utf-16")


def gzipped(rng: random.Random, data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def bom(rng: random.Random, data: bytes) -> bytes:
    return b"\xef\xbb\xbf" + data


def crlf(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def cr_only(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r")


def nul(rng: random.Random, data: bytes) -> bytes:
    at = rng.randint(0, len(data))
    return data[:at] + b"\x00" + data[at:]


def blank_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    lines.insert(rng.randint(1, max(1, len(lines))), b"\n")
    return b"".join(lines)


def fraction(rng: random.Random, data: bytes) -> bytes:
    """A digit followed by '.5': an integer becomes a fraction, a decimal gains a decimal."""
    digits = [i for i, byte in enumerate(data) if 0x30 <= byte <= 0x39]
    if not digits:
        return data
    at = rng.choice(digits) + 1
    return data[:at] + rng.choice([b".5", b".0", b".25", b".123", b"e3"]) + data[at:]


def offset(rng: random.Random, data: bytes) -> bytes:
    """A timestamp gains an offset or zone."""
    text = data.decode("utf-8", "replace")
    zone = rng.choice(["+02:00", "-0530", "Z", " UTC", " Europe/Paris", "+14:00"])
    return text.replace(":00", ":00" + zone, 1).encode()


def nested(rng: random.Random, data: bytes) -> bytes:
    """A JSON value becomes an object or an array (a no-op on other formats)."""
    text = data.decode("utf-8", "replace")
    key = rng.choice(['"payment_method":', '"amount":', '"status":', '"order_id":'])
    return (
        text.replace(key, key + rng.choice(['{"v":', "["]), 1)
        .replace(',"status"', '},"status"' if "{" in text else '],"status"', 1)
        .encode()
    )


TEXT_MUTATIONS = [
    random_bytes, truncate, splice_noise, splice_self, flip_byte, delete_byte, duplicate_line,
    drop_line, swap_lines, latin1, utf16, gzipped, bom, crlf, cr_only, nul, blank_line,
    fraction, offset, nested,
]  # fmt: skip
BYTE_MUTATIONS = [random_bytes, truncate, splice_noise, splice_self, flip_byte, delete_byte,
                  gzipped, nul]  # fmt: skip


def parquet_variant(rng: random.Random, template: Path, target: Path) -> None:
    """A valid Parquet file with a structural change (some load, some must be quarantined)."""
    change = rng.choice(
        [
            "* from t where page_views % 3 <> 1",  # rows dropped
            "* from t union all select * from t",  # every row twice (duplicate keys)
            "* replace (cast(page_views as double) + 0.5 as page_views) from t",
            "* replace (cast(page_views as double) as page_views) from t",
            "* replace ({'d': device} as device) from t",
            "* replace ([device] as device) from t",
            "* replace (cast(customer_id as varchar) as customer_id) from t",
            "* exclude (channel) from t",
            "*, 'x' as extra from t",
            "* replace (cast(started_at as timestamptz) as started_at) from t",
            "* from t limit 0",
        ]
    )
    with duckdb.connect() as con:
        con.execute(f"create table t as select * from read_parquet('{template}')")
        con.execute(f"copy (select {change}) to '{target}' (format parquet)")


# --- Independent readers ----------------------------------------------------------------------
def _plain_text(data: bytes) -> str | None:
    """The file's text as a reader that ignores names would see it (None: not UTF-8 text)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def independent_rows(table: SourceTable, path: Path) -> list[dict[str, object]] | None:
    """The file's records by declared column, as text (None: unparseable here)."""
    names = [c.name for c in table.columns]
    by_lower = {n.lower(): n for n in names}
    if table.landing.format == "parquet":
        with duckdb.connect() as con:
            try:
                cursor = con.execute(f"select * from read_parquet('{path}')")
            except duckdb.Error:
                return None
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    text = _plain_text(path.read_bytes())
    if text is None:
        return None
    if "\n" not in text and "\r" in text:
        text = text.replace("\r", "\n")
    if table.landing.format == "csv":
        try:
            records = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error:
            return None
        records = [r for r in records if r]
        if not records:
            return None
        header, *body = records
        header = [by_lower.get(h.lower(), h) for h in header]  # names match case-insensitively
        return [
            {h: (v if v != "" else None) for h, v in zip(header, r, strict=False)} for r in body
        ]
    rows = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=JsonNumber, parse_int=JsonNumber)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        rows.append(
            {
                by_lower[k.lower()]: (
                    v if isinstance(v, str) or v is None else json.dumps(v).lower()
                )
                for k, v in record.items()
                if k.lower() in by_lower
            }
        )
    return rows


class JsonNumber(str):
    """A JSON number token as written (``2e3``): equal to the raw text of the same number."""


def _equal(value: object, text: str | None) -> bool:
    """The file's value (text, or a typed Parquet value) and the raw table's, as text."""
    if value in (None, "") or text in (None, ""):
        return value in (None, "") and text in (None, "")
    if isinstance(value, JsonNumber):
        try:
            return Decimal(value) == Decimal(text)
        except InvalidOperation:
            return False
    if isinstance(value, str):
        return value == text
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        try:
            return value == datetime.fromisoformat(text)
        except ValueError:
            return False
    if isinstance(value, bool):
        return str(value).lower() == text
    try:
        return Decimal(str(value)) == Decimal(text)
    except InvalidOperation:
        return str(value) == text


def _same_meaning(data_type: str, text: object, typed: object) -> bool:
    """Does the value staging will see (``typed``) mean what the file says (``text``)?"""
    if text is None:
        return typed is None
    kind = data_type.lower().replace(" ", "")
    if kind in ("bigint", "integer"):
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            return typed is None
        return value == value.to_integral_value() and typed == int(value)
    if kind.startswith("decimal"):
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            return typed is None
        return typed == value
    if kind == "timestamp" and isinstance(text, str):
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            return True  # a zone name or a form Python does not read: DuckDB's own cast decides
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        return typed == when
    return True


# --- The fuzz run -------------------------------------------------------------------------------
def _good(table: SourceTable, template: Path, folder: Path, n: int) -> Path:
    """A good file with keys of its own (the template's keys shifted)."""
    key = next(c.name for c in table.columns if c.staged_name == table.primary_key[0])
    target = folder / f"good_{n:05d}{''.join(template.suffixes)}"
    shift = 10_000_000 * (n + 1)
    with duckdb.connect() as con:
        if table.landing.format == "parquet":
            con.execute(
                f"copy (select * replace ({key} || '-{n}' as {key}) from "
                f"read_parquet('{template}')) to '{target}' (format parquet)"
            )
        elif table.landing.format == "csv":
            lines = template.read_text("utf-8").splitlines()
            body = [
                f"{int(line.split(',')[0]) + shift},{line.split(',', 1)[1]}" for line in lines[1:]
            ]
            target.write_text("\n".join([lines[0], *body]) + "\n", "utf-8")
        else:
            records = [json.loads(line) for line in template.read_text("utf-8").splitlines()]
            for record in records:
                record[key] += shift
            target.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    return target


def _template(table: SourceTable, sample_landing: Path, folder: Path) -> Path:
    source = table.landed_files(sample_landing)[0]
    target = folder / source.name
    if table.landing.format == "parquet":
        with duckdb.connect() as con:
            con.execute(
                f"copy (select * from read_parquet('{source}') limit {TEMPLATE_ROWS}) "
                f"to '{target}' (format parquet)"
            )
    else:
        lines = source.read_bytes().splitlines(keepends=True)
        header = 1 if table.landing.format == "csv" else 0
        target.write_bytes(b"".join(lines[: TEMPLATE_ROWS + header]))
    return target


def _check(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    files: dict[Path, bytes],
    good: set[Path],
    landing: Path,
) -> None:
    """Account for every file of the batch and compare every loaded row with its file."""
    ledger = {}
    for name, digest, status, rows in con.execute(
        "select file_name, file_hash, status, rows_loaded from platform.load_ledger "
        "where source_name = ? and table_name = ?",
        [table.source, table.name],
    ).fetchall():
        ledger.setdefault(name, []).append((digest, status, rows))
    loaded_per_hash = Counter(
        digest for entries in ledger.values() for digest, status, _ in entries if status == "loaded"
    )
    TOTALS["duplicates"] += sum(n - 1 for n in loaded_per_hash.values() if n > 1)
    quarantine = landing / "_quarantine" / table.source / table.name
    declared = [c for c in table.columns if not c.meta.expression]
    typed_columns = [c for c in declared if not c.is_string]
    as_text = {c.name: 'cast("' + c.name + '" as varchar)' for c in declared}
    casts = ", ".join(strict_cast(as_text[c.name], c.data_type) for c in typed_columns)
    for path, data in files.items():
        statuses = {status for _, status, _ in ledger.get(path.name, [])}
        if "quarantined" in statuses:
            if path.exists() or not (quarantine / (path.name + ".reason.json")).exists():
                TOTALS["crashes"] += 1  # recorded as quarantined but not moved beside a reason
            if path in good:  # a good file must load
                reason = (quarantine / (path.name + ".reason.json")).read_text()
                _problem(
                    "lost", f"good file {path.name} quarantined: {reason[:600]}", TEMPLATE_ROWS
                )
            continue
        if not statuses & {"loaded", "duplicate"} and data != b"":
            same = [p for p in files if p != path and files[p] == data]
            if not same:
                TOTALS["crashes"] += 1  # neither loaded, traced nor quarantined
            continue
        if "loaded" not in statuses:
            continue
        [(digest, _, rows_loaded)] = [e for e in ledger[path.name] if e[1] == "loaded"]
        raw = con.execute(
            f"select {', '.join(as_text[c.name] for c in declared)}"
            + (f", {casts}" if casts else "")
            + f" from {table.schema}.{table.name} where _file_hash = ? order by rowid",
            [digest],
        ).fetchall()
        if len(raw) != rows_loaded:
            TOTALS["duplicates"] += max(0, len(raw) - rows_loaded)
            TOTALS["lost"] += max(0, rows_loaded - len(raw))
        expected = independent_rows(table, path)
        if expected is None:
            _problem("changed", f"{path.name} loaded but unreadable here: {data[:80]!r}")
            continue
        if len(expected) != len(raw):
            what = (
                f"{path.name}: {len(expected)} rows in the file, {len(raw)} loaded {data[:120]!r}"
            )
            if len(expected) > len(raw):
                _problem("lost", what, len(expected) - len(raw))
            else:
                _problem("duplicates", what, len(raw) - len(expected))
            continue
        for record, row in zip(expected, raw, strict=True):
            texts, typed = row[: len(declared)], row[len(declared) :]
            for column, text in zip(declared, texts, strict=True):
                value = record.get(column.name)
                if not _equal(value, text):
                    if os.environ.get("DATAOPS_FUZZ_KEEP"):  # keep the file to reproduce it
                        Path(os.environ["DATAOPS_FUZZ_KEEP"], path.name).write_bytes(data)
                    _problem(
                        "changed",
                        f"{path.name} {column.name}: file {value!r}, raw {text!r} {data[:150]!r}",
                    )
            for column, value in zip(typed_columns, typed, strict=True):
                if table.landing.format != "parquet" and not _same_meaning(
                    column.data_type, record.get(column.name), value
                ):
                    _problem(
                        "changed",
                        f"{path.name} {column.name}: file {record.get(column.name)!r}, "
                        f"staged {value!r}",
                    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_fuzzed_files_never_crash_lose_duplicate_or_change_a_value(
    fmt: str, sample_landing: Path, tmp_path: Path, request: pytest.FixtureRequest
):
    table = REGISTRY[TABLES[fmt]]
    rng = random.Random(f"{SEED}-{fmt}")
    work = tmp_path / "templates"
    work.mkdir()
    template = _template(table, sample_landing, work)
    # Memory-backed when the machine has it: thousands of small commits, each an fsync on disk.
    scratch = Path(tempfile.mkdtemp(dir=SHM)) if SHM else tmp_path
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    landing = scratch / "landing"
    folder = table.landing_dir(landing)
    folder.mkdir(parents=True)
    warehouse = scratch / "warehouse.duckdb"
    before = Counter(TOTALS)
    made = 0
    while made < PER_FORMAT:
        files: dict[Path, bytes] = {}
        good: set[Path] = set()
        for _ in range(3):  # good files mixed into every batch
            path = _good(table, template, folder, made + len(good))
            good.add(path)
            files[path] = path.read_bytes()
        for _ in range(min(BATCH, PER_FORMAT - made)):
            name = f"fuzz_{made:05d}{''.join(template.suffixes)}"
            target = folder / name
            if fmt == "parquet" and rng.random() < 0.3:
                parquet_variant(rng, template, target)
            else:
                data = template.read_bytes()
                mutations = TEXT_MUTATIONS if fmt != "parquet" else BYTE_MUTATIONS
                for mutation in rng.sample(mutations, rng.randint(1, 3)):
                    data = mutation(rng, data)
                target.write_bytes(data)
            files[target] = target.read_bytes()
            made += 1
        try:
            summary = ingest(warehouse, landing, [table], settle=0)
        except Exception as error:  # noqa: BLE001 - counted and reported
            TOTALS["crashes"] += 1
            pytest.fail(f"ingest crashed: {error!r}")
        assert summary.tables[table.key].waiting == []
        with duckdb.connect(str(warehouse)) as con:
            _check(con, table, files, good, landing)
        for path in files:  # the next batch lands in an empty folder
            path.unlink(missing_ok=True)
    TOTALS["tried"] += made
    mine = {k: TOTALS[k] - before[k] for k in ("crashes", "lost", "duplicates", "changed")}
    print(summary_line())
    assert mine == {"crashes": 0, "lost": 0, "duplicates": 0, "changed": 0}, (mine, EXAMPLES)
