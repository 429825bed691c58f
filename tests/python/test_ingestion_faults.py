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
]  # fmt: skip


# --- Checking what the warehouse holds ---------------------------------------------------------
def _reader(path: Path) -> str:
    """An independent reader (DuckDB's own detection) to count a good file's rows and keys."""
    if ".csv" in path.suffixes:
        return f"read_csv('{path}', all_varchar = true)"
    if path.suffix == ".json":
        return f"read_json('{path}', format = 'newline_delimited')"
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
                    "select file_name from platform.load_ledger where file_hash = ?", [bad_hash]
                ).fetchall()
                assert names == [(template.name,)]
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
