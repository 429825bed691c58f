"""Fault injection: bad input gets a clear error and a quarantine; good input is never held hostage.

Each kind of bad input is tried on its own and mixed into a batch of good files of the same table
(the sample generator's files). For every case the test checks the outcome (quarantined with the
expected rule and a machine-readable reason, or accepted the documented way), and that every row
of every good file is in the warehouse exactly once (row for row, by primary key). The session
ends with one line: ``N bad inputs tried, 0 rows lost, 0 duplicates``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from dataops.ingestion.loader import IngestionSummary, file_sha256, ingest
from dataops.sources.registry import SourceTable, load_registry

REGISTRY = {t.key: t for t in load_registry()}
TOTALS = {"kinds": set(), "tries": 0, "lost": 0, "duplicates": 0}


class _Report:
    """Prints the suite's one-line result at the end of the session (kept in this file)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if TOTALS["tries"]:
            terminalreporter.write_line(
                f"{len(TOTALS['kinds'])} bad inputs tried, {TOTALS['lost']} rows lost, "
                f"{TOTALS['duplicates']} duplicates"
            )


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest):
    plugin = _Report()
    if not request.config.pluginmanager.is_registered(plugin):
        request.config.pluginmanager.register(plugin, "ingestion-faults-report")
    yield


# --- Building bad files from a good one ------------------------------------------------------
def _lines(template: Path) -> list[str]:
    return template.read_text("utf-8").splitlines(keepends=True)


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _csv_cell(line: str, index: int, value: str) -> str:
    cells = line.rstrip("\n").split(",")
    cells[index] = value
    return ",".join(cells) + "\n"


def truncated(folder: Path, template: Path) -> Path:
    text = template.read_text("utf-8")
    return _write(folder, "orders_2099-01-01.csv", text[: text.rindex(",") - 3])


def empty(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_2099-01-01.csv", b"")


def header_only(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_2099-01-01.csv", _lines(template)[0])


def wrong_delimiter(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_2099-01-01.csv", template.read_text("utf-8").replace(",", ";"))


def unclosed_quote(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[3] = _csv_cell(lines[3], 2, '"placed')
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def not_utf8(folder: Path, template: Path) -> Path:
    lines = [line.encode("utf-8") for line in _lines(template)]
    lines.insert(2, b"9999999,2,caf\xe9,2025-01-01 00:00:00,2025-01-01 00:00:00\n")  # latin-1
    return _write(folder, "orders_2099-01-01.csv", b"".join(lines))


def with_bom(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_2099-01-01.csv", b"\xef\xbb\xbf" + _bumped(template))


def nul_bytes(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[2] = _csv_cell(lines[2], 2, "pla\x00ced")
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def extra_column(folder: Path, template: Path) -> Path:
    lines = _bumped(template).decode().splitlines()
    rows = [lines[0] + ",coupon_code"] + [f"{line},SAVE{n}" for n, line in enumerate(lines[1:])]
    return _write(folder, "orders_2099-01-01.csv", "\n".join(rows) + "\n")


def missing_column(folder: Path, template: Path) -> Path:
    lines = template.read_text("utf-8").splitlines()
    rows = [",".join(c for i, c in enumerate(line.split(",")) if i != 1) for line in lines]
    return _write(folder, "orders_2099-01-01.csv", "\n".join(rows) + "\n")


def text_in_numeric(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[4] = _csv_cell(lines[4], 1, "two hundred")
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def null_key(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[3] = _csv_cell(lines[3], 0, "")
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def duplicate_keys(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    return _write(folder, "orders_2099-01-01.csv", "".join(lines + [lines[2]]))


def repeated_key_within_range(folder: Path, template: Path) -> Path:
    """One key replaced by another of the file: as many keys as values in their range."""
    lines = _lines(template)
    lines[5] = _csv_cell(lines[5], 0, lines[2].split(",")[0])
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def repeated_key_far_apart(folder: Path, template: Path) -> Path:
    """Two rows share a key far from the others (a range too wide for a bitmap)."""
    lines = _lines(template)
    for index in (2, 6):
        lines[index] = _csv_cell(lines[index], 0, "900000000000000")
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def reserved_column(folder: Path, template: Path) -> Path:
    lines = _bumped(template).decode().splitlines()
    rows = [lines[0] + ",_file_name"] + [f"{line},x" for line in lines[1:]]
    return _write(folder, "orders_2099-01-01.csv", "\n".join(rows) + "\n")


def very_large_field(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[2] = _csv_cell(lines[2], 2, "x" * 3_000_000)
    return _write(folder, "orders_2099-01-01.csv", "".join(lines))


def corrupt_gzip(folder: Path, template: Path) -> Path:
    packed = gzip.compress(template.read_bytes())
    return _write(folder, "orders_2099-01-01.csv.gz", packed[: len(packed) // 2] + b"\x00" * 64)


def same_file_twice(folder: Path, template: Path) -> Path:
    """The same file (name and content) delivered again after it was loaded."""
    return _write(folder, template.name, template.read_bytes())


def renamed_copy(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_copy_of_" + template.name, template.read_bytes())


def json_trailing_garbage(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[1] = lines[1].rstrip("\n") + " }garbage\n"
    return _write(folder, "payments_2099-01-01.json", "".join(lines))


def json_array(folder: Path, template: Path) -> Path:
    records = [json.loads(line) for line in _lines(template)]
    return _write(folder, "payments_2099-01-01.json", json.dumps(records, indent=2) + "\n")


def json_missing_key(folder: Path, template: Path) -> Path:
    records = [json.loads(line) for line in _lines(template)]
    lines = [json.dumps({k: v for k, v in r.items() if k != "order_id"}) for r in records]
    return _write(folder, "payments_2099-01-01.json", "\n".join(lines) + "\n")


def json_not_object(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines.insert(2, '["an", "array", "line"]\n')
    return _write(folder, "payments_2099-01-01.json", "".join(lines))


def _parquet(folder: Path, template: Path, name: str, select: str) -> Path:
    target = folder / name
    with duckdb.connect() as con:
        con.execute(
            f"copy (select {select} from read_parquet('{template}')) to '{target}' (format parquet)"
        )
    return target


def parquet_other_schema(folder: Path, template: Path) -> Path:
    select = "* exclude (started_at, device), started_at as start_time"
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def parquet_retyped(folder: Path, template: Path) -> Path:
    select = "* replace ('visitor-' || cast(customer_id as varchar) as customer_id)"
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def not_parquet(folder: Path, template: Path) -> Path:
    return _write(folder, "sessions_2099-01-01.parquet", b"PAR1 this is a CSV export, renamed\n")


def truncated_parquet(folder: Path, template: Path) -> Path:
    data = template.read_bytes()
    return _write(folder, "sessions_2099-01-01.parquet", data[: len(data) // 2])


def random_bytes_nul_cr(folder: Path, template: Path) -> Path:
    """Random bytes with a NUL and a lone CR: once crashed the NUL reporter (csv.Error)."""
    noise = random.Random(18).randbytes(4096)
    return _write(folder, "orders_2099-01-01.csv", b"order_id,x\r\x00" + noise)


def random_bytes_json(folder: Path, template: Path) -> Path:
    noise = random.Random(19).randbytes(4096)
    return _write(folder, "payments_2099-01-01.json", b"{\"a\r\x00" + noise)


def gzip_named_csv(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_2099-01-01.csv", gzip.compress(_bumped(template)))


def gzip_named_json(folder: Path, template: Path) -> Path:
    return _write(folder, "payments_2099-01-01.json", gzip.compress(_bumped_json(template)))


def json_with_bom(folder: Path, template: Path) -> Path:
    return _write(folder, "payments_2099-01-01.json", b"\xef\xbb\xbf" + _bumped_json(template))


def gzip_json_with_bom(folder: Path, template: Path) -> Path:
    data = gzip.compress(b"\xef\xbb\xbf" + _bumped_json(template))
    return _write(folder, "payments_2099-01-01.json.gz", data)


def csv_cr_only(folder: Path, template: Path) -> Path:
    return _write(folder, "orders_2099-01-01.csv", _bumped(template).replace(b"\n", b"\r"))


def json_cr_only(folder: Path, template: Path) -> Path:
    return _write(folder, "payments_2099-01-01.json", _bumped_json(template).replace(b"\n", b"\r"))


def gzip_named_parquet(folder: Path, template: Path) -> Path:
    return _write(folder, "sessions_2099-01-01.parquet", gzip.compress(template.read_bytes()))


def _json_edit(folder: Path, template: Path, index: int, **changes: object) -> Path:
    records = [json.loads(line) for line in _bumped_json(template).decode().splitlines()]
    records[index].update(changes)
    return _write(
        folder, "payments_2099-01-01.json", "".join(json.dumps(r) + "\n" for r in records)
    )


def json_fraction_in_integer(folder: Path, template: Path) -> Path:
    return _json_edit(folder, template, 2, amount=1.5)


def json_integer_out_of_range(folder: Path, template: Path) -> Path:
    return _json_edit(folder, template, 1, amount=2**70)


def json_nested_in_varchar(folder: Path, template: Path) -> Path:
    return _json_edit(folder, template, 3, payment_method={"type": "card"})


def json_string_that_looks_nested(folder: Path, template: Path) -> Path:
    return _json_edit(folder, template, 3, payment_method='{"type": "card"}')


def json_timestamp_with_offset(folder: Path, template: Path) -> Path:
    return _json_edit(folder, template, 0, created_at="2025-02-03T10:00:00+02:00")


def json_key_spelt_twice(folder: Path, template: Path) -> Path:
    """One record spells a declared key with other case: its value must not become null."""
    text = _bumped_json(template).decode().splitlines(keepends=True)
    text[5] = text[5].replace('"order_id"', '"Order_ID"')
    return _write(folder, "payments_2099-01-01.json", "".join(text))


def csv_too_many_decimals(folder: Path, template: Path) -> Path:
    lines = _lines(template)
    lines[2] = _csv_cell(lines[2], 4, "12.345")
    return _write(folder, "order_items_2099-01-01.csv", "".join(lines))


def parquet_fraction_in_integer(folder: Path, template: Path) -> Path:
    select = "* replace (cast(page_views as double) + 0.5 as page_views)"
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def parquet_blank_key(folder: Path, template: Path) -> Path:
    """A session_id (a text key) of spaces only at row 3: blank, as null."""
    select = (
        "* replace (case when row_number() over () = 3 then '   ' else session_id end "
        "as session_id)"
    )
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def parquet_wider_integer(folder: Path, template: Path) -> Path:
    """page_views as BIGINT where INTEGER is declared: inserted directly, converted exactly."""
    select = "* replace (cast(page_views as bigint) as page_views)"
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def parquet_integer_out_of_range(folder: Path, template: Path) -> Path:
    """One BIGINT page_views value beyond INTEGER's range (row 3): the direct insert fails, the
    staged copy names the row."""
    select = (
        "* replace (case when row_number() over () = 3 then 3000000000 "
        "else cast(page_views as bigint) end as page_views)"
    )
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def parquet_nested_in_varchar(folder: Path, template: Path) -> Path:
    select = "* replace ({'name': device} as device)"
    return _parquet(folder, template, "sessions_2099-01-01.parquet", select)


def strict_extra_column(folder: Path, template: Path) -> Path:
    return extra_column(folder, template)


def _bumped(template: Path) -> bytes:
    """The template's rows with keys shifted out of the sample's range (a new, valid file)."""
    lines = template.read_text("utf-8").splitlines()
    rows = [lines[0]] + [
        ",".join([str(int(cells[0]) + 1_000_000), *cells[1:]])
        for cells in (line.split(",") for line in lines[1:])
    ]
    return ("\n".join(rows) + "\n").encode()


def _bumped_json(template: Path) -> bytes:
    """The template's JSON lines with keys shifted out of the sample's range (a new, valid file)."""
    records = [json.loads(line) for line in _lines(template)]
    for record in records:
        record["payment_id"] += 1_000_000
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


@dataclass(frozen=True)
class Case:
    kind: str
    table: str
    build: Callable[[Path, Path], Path]
    outcome: str  # quarantined | loaded | skipped
    rules: tuple[str, ...] = ()
    message: str = ""  # a fragment the reason's message must contain
    deliver_first: bool = False  # the template is loaded in an earlier run
    table_override: dict | None = None
    where: dict | None = None  # expected reason fields (line, column, value, ...)


CASES = [
    Case("truncated file", "shop.orders", truncated, "quarantined", ("column_count",), "Found"),
    Case("empty file", "shop.orders", empty, "quarantined", ("empty_file",), "0 bytes"),
    Case("header only", "shop.orders", header_only, "loaded"),
    Case("wrong delimiter", "shop.orders", wrong_delimiter, "quarantined", ("missing_column",),
         "is the delimiter ';'"),
    Case("unclosed quote", "shop.orders", unclosed_quote, "quarantined", ("unclosed_quote",),
         "unterminated quote"),
    Case("non-UTF-8 bytes", "shop.orders", not_utf8, "quarantined", ("encoding",), "unicode"),
    Case("UTF-8 byte order mark", "shop.orders", with_bom, "loaded"),
    Case("NUL bytes", "shop.orders", nul_bytes, "quarantined", ("nul_byte",), "NUL byte",
         where={"line": 3, "row": 2, "column": "status", "value": "pla\\0ced"}),
    Case("extra column (additive drift)", "shop.orders", extra_column, "loaded"),
    Case("extra column under strict drift", "shop.orders", strict_extra_column, "quarantined",
         ("unexpected_column",), "schema_drift is strict",
         table_override={"schema_drift": "strict"}),
    Case("missing required column", "shop.orders", missing_column, "quarantined",
         ("missing_column",), "'customer_id'"),
    Case("text in a numeric column", "shop.orders", text_in_numeric, "quarantined",
         ("type_cast",), "'two hundred'",
         where={"line": 5, "row": 4, "column": "customer_id", "value": "two hundred"}),
    Case("null primary key", "shop.orders", null_key, "quarantined", ("primary_key_null",),
         "order_id", where={"line": 4, "row": 3, "column": "order_id"}),
    Case("duplicate primary keys inside a file", "shop.orders", duplicate_keys, "quarantined",
         ("primary_key_duplicate",), "appears more than once",
         where={"line": 3, "column": "order_id"}),
    Case("a key repeated within the keys' range", "shop.orders", repeated_key_within_range,
         "quarantined", ("primary_key_duplicate",), "appears more than once",
         where={"line": 3, "column": "order_id"}),
    Case("a key repeated far from the others", "shop.orders", repeated_key_far_apart,
         "quarantined", ("primary_key_duplicate",), "'900000000000000'",
         where={"line": 3, "column": "order_id"}),
    Case("lineage column in the file", "shop.orders", reserved_column, "quarantined",
         ("reserved_column",), "_file_name"),
    Case("very large single field", "shop.orders", very_large_field, "quarantined",
         ("line_too_long",), "line size"),
    Case("corrupt gzip", "shop.orders", corrupt_gzip, "quarantined", ("compression",)),
    Case("same file twice", "shop.orders", same_file_twice, "skipped", deliver_first=True),
    Case("same content renamed", "shop.orders", renamed_copy, "skipped", deliver_first=True),
    Case("JSON line with trailing garbage", "payments.payments", json_trailing_garbage,
         "quarantined", ("malformed_json",), "in line 2:", where={"line": 2}),
    Case("JSON array instead of lines", "payments.payments", json_array, "quarantined",
         ("malformed_json", "not_json_object")),
    Case("JSON line that is not an object", "payments.payments", json_not_object, "quarantined",
         ("not_json_object",), "in line 3:",
         where={"line": 3}),
    Case("JSON key missing from every record", "payments.payments", json_missing_key,
         "quarantined", ("missing_column",), "'order_id'"),
    Case("Parquet with a different schema", "web.sessions", parquet_other_schema, "quarantined",
         ("missing_column",), "'started_at'"),
    Case("Parquet with a retyped column", "web.sessions", parquet_retyped, "quarantined",
         ("column_retyped", "type_cast")),
    Case("a Parquet file that is not Parquet", "web.sessions", not_parquet, "quarantined",
         ("not_parquet",)),
    Case("truncated Parquet", "web.sessions", truncated_parquet, "quarantined", ("not_parquet",)),
    Case("random bytes with a NUL and a lone CR", "shop.orders", random_bytes_nul_cr,
         "quarantined", ("nul_byte",), "NUL byte", where={"line": 1}),
    Case("random bytes as JSON lines", "payments.payments", random_bytes_json, "quarantined",
         ("nul_byte",), "NUL byte"),
    Case("gzip file named .csv", "shop.orders", gzip_named_csv, "loaded"),
    Case("gzip file named .json", "payments.payments", gzip_named_json, "loaded"),
    Case("JSON lines with a byte order mark", "payments.payments", json_with_bom, "loaded"),
    Case("gzip JSON lines with a byte order mark", "payments.payments", gzip_json_with_bom,
         "loaded"),
    Case("CSV with CR-only line ends", "shop.orders", csv_cr_only, "loaded"),
    Case("JSON lines with CR-only line ends", "payments.payments", json_cr_only, "loaded"),
    Case("gzip-compressed Parquet", "web.sessions", gzip_named_parquet, "quarantined",
         ("not_parquet",), "gzip-compressed"),
    Case("fraction in an integer column (JSON)", "payments.payments", json_fraction_in_integer,
         "quarantined", ("type_cast",), "without changing its meaning",
         where={"line": 3, "column": "amount", "value": "1.5"}),
    Case("integer out of range (JSON)", "payments.payments", json_integer_out_of_range,
         "quarantined", ("type_cast",), str(2**70), where={"line": 2, "column": "amount"}),
    Case("object in a varchar column (JSON)", "payments.payments", json_nested_in_varchar,
         "quarantined", ("nested_value",), "object or array",
         where={"line": 4, "column": "payment_method"}),
    Case("string that looks like an object (JSON)", "payments.payments",
         json_string_that_looks_nested, "loaded"),
    Case("a JSON key spelt two ways", "payments.payments", json_key_spelt_twice, "quarantined",
         ("key_case",), "spelt 2 ways", where={"column": "Order_ID"}),
    Case("timestamp with an offset (JSON)", "payments.payments", json_timestamp_with_offset,
         "loaded"),
    Case("more decimals than the scale (CSV)", "shop.order_items", csv_too_many_decimals,
         "quarantined", ("type_cast",), "'12.345'",
         where={"line": 3, "column": "unit_price"}),
    Case("fraction in an integer column (Parquet)", "web.sessions", parquet_fraction_in_integer,
         "quarantined", ("type_cast", "column_retyped")),
    Case("blank text primary key (Parquet)", "web.sessions", parquet_blank_key, "quarantined",
         ("primary_key_null",), "session_id", where={"row": 3, "column": "session_id"}),
    Case("wider integer type than declared (Parquet)", "web.sessions", parquet_wider_integer,
         "loaded"),
    Case("integer out of the declared range (Parquet)", "web.sessions",
         parquet_integer_out_of_range, "quarantined", ("type_cast",), "3000000000",
         where={"row": 3, "column": "page_views", "value": "3000000000"}),
    Case("struct in a varchar column (Parquet)", "web.sessions", parquet_nested_in_varchar,
         "quarantined", ("nested_value",), "nested type"),
]  # fmt: skip


# --- Checking what the warehouse holds ---------------------------------------------------------
def _reader(path: Path) -> str:
    """An independent reader (DuckDB's own detection) to count a good file's rows and keys."""
    packed = path.read_bytes()[:2] == b"\x1f\x8b"
    compression = "gzip" if packed else "none"
    if ".csv" in path.suffixes:
        return f"read_csv('{path}', all_varchar = true, compression = '{compression}')"
    if ".json" in path.suffixes:
        text = gzip.decompress(path.read_bytes()) if packed else path.read_bytes()
        text = text.removeprefix(b"\xef\xbb\xbf").replace(b"\r", b"\n")
        plain = path.with_name(path.name + ".independent")
        if not plain.exists():  # outside the landing pattern: never ingested
            plain.write_bytes(text)
        return f"read_json('{plain}', format = 'newline_delimited')"
    return f"read_parquet('{path}')"


def _key_column(table: SourceTable) -> str:
    return next(c.name for c in table.columns if c.staged_name == table.primary_key[0])


def _check_good_file(con: duckdb.DuckDBPyConnection, table: SourceTable, path: Path) -> None:
    """Every row of the file is in the raw table exactly once, under its content hash."""
    key = _key_column(table)
    digest = file_sha256(path)
    lost, extra = con.execute(
        f"""
        with in_file as (select cast("{key}" as varchar) as k from {_reader(path)}),
        in_raw as (
            select cast("{key}" as varchar) as k from {table.schema}.{table.name}
            where _file_hash = ?
        )
        select
            (select count(*) from (select k from in_file except all select k from in_raw)),
            (select count(*) from (select k from in_raw except all select k from in_file))
        """,
        [digest],
    ).fetchone()
    TOTALS["lost"] += lost
    TOTALS["duplicates"] += extra
    assert (lost, extra) == (0, 0), f"{path.name}: {lost} rows lost, {extra} extra"
    [(loaded,)] = con.execute(
        "select count(*) from platform.load_ledger where file_hash = ? and status = 'loaded'",
        [digest],
    ).fetchall()
    assert loaded == 1, f"{path.name}: {loaded} ledger entries"


def _table(case: Case) -> SourceTable:
    table = REGISTRY[case.table]
    if case.table_override:
        table = dataclasses.replace(
            table, landing=table.landing.model_copy(update=case.table_override)
        )
    return table


@pytest.mark.parametrize("mode", ["alone", "mixed"])
@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input(case: Case, mode: str, sample_landing: Path, tmp_path: Path):
    table = _table(case)
    landing = tmp_path / "landing"
    folder = table.landing_dir(landing)
    folder.mkdir(parents=True)
    samples = table.landed_files(sample_landing)
    template = samples[0]
    good = []
    if mode == "mixed":
        good = [Path(shutil.copy(p, folder / p.name)) for p in samples]
    warehouse = tmp_path / "warehouse.duckdb"
    if case.deliver_first:
        if mode == "alone":
            good = [Path(shutil.copy(template, folder / template.name))]
        ingest(warehouse, landing, [table])
    bad = case.build(folder, template)
    bad_bytes = bad.read_bytes()
    bad_hash = file_sha256(bad)

    summary: IngestionSummary = ingest(warehouse, landing, [table])

    TOTALS["kinds"].add(case.kind)
    TOTALS["tries"] += 1
    quarantine = landing / "_quarantine" / table.source / table.name
    with duckdb.connect(str(warehouse)) as con:
        if case.outcome == "quarantined":
            assert not bad.exists(), "a bad file must leave the landing folder"
            moved = quarantine / bad.name
            assert moved.read_bytes() == bad_bytes, "the quarantined file is kept byte for byte"
            reason = json.loads((quarantine / (bad.name + ".reason.json")).read_text())
            assert reason["rule"] in case.rules, reason
            assert case.message.lower() in reason["message"].lower(), reason["message"]
            assert {"file", "row", "line", "column", "value", "rule", "violations"} <= set(reason)
            assert reason["file"] == str(bad) and reason["file_hash"] == bad_hash
            for key, value in (case.where or {}).items():
                assert reason[key] == value, (key, reason)
            assert reason["fix"].endswith(f"dataops replay {moved}")
            [message] = [e for e in summary.errors if bad.name in e]
            assert reason["rule"] in message and "dataops replay" in message
            ledger = con.execute(
                "select status, quarantine_path from platform.load_ledger where file_hash = ?",
                [bad_hash],
            ).fetchall()
            assert ledger == [("quarantined", str(moved))]
            events = con.execute(
                "select event_type, status from platform.events where file_hash = ?", [bad_hash]
            ).fetchall()
            assert events == [("file.quarantined", "error")]
        else:
            assert summary.errors == []
            assert bad.exists(), "an accepted file stays in the landing folder"
            if case.outcome == "loaded":
                good.append(bad)
            else:  # skipped: the content is known, whatever the name
                assert summary.files_loaded == 0 and summary.tables[table.key].files_skipped >= 1
                names = con.execute(
                    "select file_name, status, duplicate_of from platform.load_ledger "
                    "where file_hash = ? order by status desc",
                    [bad_hash],
                ).fetchall()
                if bad.name == template.name:
                    assert names == [(template.name, "loaded", None)]
                else:  # the same content under another name leaves a trace: ledger + event
                    assert names == [
                        (template.name, "loaded", None),
                        (bad.name, "duplicate", str(folder / template.name)),
                    ]
                    [(event,)] = con.execute(
                        "select details from platform.events "
                        "where event_type = 'file.duplicate' and file_hash = ?",
                        [bad_hash],
                    ).fetchall()
                    assert json.loads(event)["duplicate_of"] == str(folder / template.name)
        for path in good:
            _check_good_file(con, table, path)
        expected = sum(
            con.execute(f"select count(*) from {_reader(p)}").fetchone()[0] for p in good
        )
        if good:
            [(raw_rows,)] = con.execute(
                f"select count(*) from {table.schema}.{table.name}"
            ).fetchall()
            assert raw_rows == expected, "no rows other than the good files' rows"
        if case.kind.startswith("extra column (additive"):
            [(coupons,)] = con.execute(
                f"select count(coupon_code) from {table.schema}.{table.name} where _file_hash = ?",
                [bad_hash],
            ).fetchall()
            assert coupons == expected_rows(bad) > 0
            [(drift,)] = con.execute(
                "select details from platform.events where event_type = 'file.schema_drift' "
                "and file_hash = ?",
                [bad_hash],
            ).fetchall()
            assert json.loads(drift)["added_columns"] == ["coupon_code"]
        if case.kind == "UTF-8 byte order mark":
            columns = [
                row[0] for row in con.execute(f"describe {table.schema}.{table.name}").fetchall()
            ]
            assert columns[0] == "order_id"


def expected_rows(path: Path) -> int:
    with duckdb.connect() as con:
        return con.execute(f"select count(*) from {_reader(path)}").fetchone()[0]


def test_the_suite_tries_at_least_twenty_kinds_of_bad_input():
    assert len({c.kind for c in CASES}) >= 20
