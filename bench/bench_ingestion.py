"""Ingestion throughput (rows/s) for CSV, JSON lines and Parquet beside DuckDB's raw reads.

For each format a declared table is filled with N synthetic rows (shaped by its declaration, split
into daily files): shop.order_items (CSV), payments.payments (JSON lines), web.sessions (Parquet).
Each is then loaded three ways into a fresh warehouse file:

- ``raw typed``: ``create table as select * from read_csv/read_json/read_parquet([files])`` with
  DuckDB's own type detection (the fastest thing DuckDB can do with these files);
- ``raw text``: the same, read the way ingestion reads (CSV ``all_varchar``, JSON declared columns
  as VARCHAR; Parquet is the same as typed), i.e. what ingestion stores, with DuckDB's default
  storage settings;
- ``raw text, stored as the loader stores it``: the same with text stored uncompressed (no
  dict_fsst string compression, as the loader stores raw text columns: LOAD_SETTINGS), the
  like-for-like baseline for the loader's own overhead;
- ``dataops``: the real loader (hash, read, set-based validation, insert with lineage, ledger and
  events in one transaction per file, checkpoint).

    .venv/bin/python bench/bench_ingestion.py                 # 10M rows per format
    .venv/bin/python bench/bench_ingestion.py --rows 1000000 --formats csv parquet

Prints one line per figure; record them in docs/benchmarks.md. Not a test: nothing fails on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from dataops.ingestion.loader import LEGACY_TEXT_SETTING, LOAD_SETTINGS, ingest  # noqa: E402
from dataops.sources.registry import SourceTable, load_registry  # noqa: E402

TABLES = {"csv": "shop.order_items", "jsonl": "payments.payments", "parquet": "web.sessions"}
COPY = {"csv": "format csv, header true", "jsonl": "format json", "parquet": "format parquet"}
EXTENSION = {"csv": "csv", "jsonl": "json", "parquet": "parquet"}


def _columns(table: SourceTable) -> list[str]:
    """One synthetic select expression per declared column, over the row number ``i``."""
    expressions = []
    for index, column in enumerate(table.columns):
        if column.meta.expression:
            continue
        kind = column.data_type.lower()
        name = '"' + column.name + '"'
        if column.staged_name in table.primary_key:
            value = "i" if not column.is_string else "'k-' || i"
        elif column.meta.accepted_values:
            values = "[" + ", ".join(f"'{v}'" for v in column.meta.accepted_values) + "]"
            value = f"{values}[1 + i % {len(column.meta.accepted_values)}]"
        elif column.meta.values_map:
            codes = "[" + ", ".join(f"'{c}'" for c in column.meta.values_map) + "]"
            value = f"{codes}[1 + i % {len(column.meta.values_map)}]"
        elif kind.startswith(("bigint", "int", "smallint", "tinyint", "hugeint")):
            value = f"(i * 7919 + {index}) % 1000000"
        elif kind.startswith(("decimal", "numeric", "double", "float", "real")):
            value = "cast(((i * 13) % 100000) / 100.0 as decimal(18, 2))"
        elif kind.startswith("bool"):
            value = "i % 7 <> 0"
        elif kind.startswith("timestamp"):
            value = "make_timestamp(1735689600000000 + i * 1000000)"
        elif kind == "date":
            value = "date '2025-01-01' + cast(i % 365 as integer)"
        else:
            value = f"'text ' || ((i * 31 + {index}) % 5000)"
        expressions.append(f"{value} as {name}")
    return expressions


def generate(table: SourceTable, fmt: str, rows: int, files: int, landing: Path) -> list[Path]:
    folder = table.landing_dir(landing)
    marker = folder / f".complete-{rows}"
    if marker.exists():
        return sorted(folder.glob(f"*.{EXTENSION[fmt]}"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_file = -(-rows // files)
    select = ", ".join(_columns(table))
    paths = []
    with duckdb.connect() as con:
        for day in range(files):
            start, stop = day * per_file, min(rows, (day + 1) * per_file)
            path = folder / f"{table.name}_2025-01-{day + 1:02d}.{EXTENSION[fmt]}"
            con.execute(
                f"copy (select {select} from range({start}, {stop}) as r(i) order by i) "
                f"to '{path}' ({COPY[fmt]})"
            )
            paths.append(path)
    marker.touch()
    return paths


def _raw_reader(fmt: str, table: SourceTable, paths: list[Path], as_text: bool) -> str:
    files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    if fmt == "csv":
        return f"read_csv({files}{', all_varchar = true' if as_text else ''})"
    if fmt == "jsonl":
        if not as_text:
            return f"read_json({files}, format = 'newline_delimited')"
        columns = ", ".join(
            f"'{c.name}': 'VARCHAR'" for c in table.columns if not c.meta.expression
        )
        return f"read_json({files}, format = 'newline_delimited', columns = {{{columns}}})"
    return f"read_parquet({files})"


def _fresh(path: Path) -> Path:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    return path


def time_raw(warehouse: Path, reader: str, settings: tuple[str, ...] = ()) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all DuckDB threads included)."""
    started, cpu = time.perf_counter(), time.process_time()
    with duckdb.connect(str(_fresh(warehouse))) as con:
        for setting in settings:
            con.execute(setting)
        con.execute(f"create table raw_bench as select * from {reader}")
        con.execute("checkpoint")
    return time.perf_counter() - started, time.process_time() - cpu


def time_dataops(warehouse: Path, landing: Path, table: SourceTable) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), time.process_time()
    summary = ingest(_fresh(warehouse), landing, [table], settle=0)  # files are complete
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if summary.errors:
        raise SystemExit(f"ingestion rejected benchmark files: {summary.errors}")
    return elapsed, cpu, summary.rows_loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows per format (10M)")
    parser.add_argument("--files", type=int, default=10, help="daily files per format (10)")
    parser.add_argument("--formats", nargs="*", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--workdir", type=Path, help="keep generated files here (default: temp)")
    args = parser.parse_args()
    registry = {t.key: t for t in load_registry()}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ingestion-"))
    landing = workdir / "landing"
    print(f"{args.rows:,} rows per format in {args.files} files, under {workdir}")
    print("  (load average 1/5/15 min: {:.1f} {:.1f} {:.1f})".format(*os.getloadavg()))
    print(
        f"{'format':<8} {'load':<30} {'wall s':>7} {'rows/s':>10} {'CPU s':>7} {'rows/CPU s':>10}"
        "  dataops vs this (wall, CPU)"
    )
    for fmt in args.formats:
        table = registry[TABLES[fmt]]
        started = time.perf_counter()
        paths = generate(table, fmt, args.rows, args.files, landing)
        size = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"  ({table.key}: {len(paths)} {fmt} files, {size:,.0f} MB, ready in "
            f"{time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        warehouse = workdir / "bench.duckdb"
        typed = _raw_reader(fmt, table, paths, as_text=False)
        text = _raw_reader(fmt, table, paths, as_text=True)
        timings = [
            (f"raw {fmt.replace('jsonl', 'json')} typed", time_raw(warehouse, typed)),
            ("raw as text (DuckDB defaults)", time_raw(warehouse, text)),
            (
                "raw as text (text uncompressed)",
                time_raw(warehouse, text, (LEGACY_TEXT_SETTING, *LOAD_SETTINGS)),
            ),
        ]
        wall, cpu, rows = time_dataops(warehouse, landing, table)
        assert rows == args.rows, (rows, args.rows)
        for name, (seconds, cpu_seconds) in [*timings, ("dataops ingest", (wall, cpu))]:
            print(
                f"{fmt:<8} {name:<30} {seconds:>7.1f} {rows / seconds:>10,.0f} "
                f"{cpu_seconds:>7.1f} {rows / cpu_seconds:>10,.0f}  "
                f"{seconds / wall:.2f}x, {cpu_seconds / cpu:.2f}x",
                flush=True,
            )
        _fresh(warehouse)
        print("  (load average 1/5/15 min: {:.1f} {:.1f} {:.1f})".format(*os.getloadavg()))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
