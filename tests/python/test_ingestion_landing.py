"""The landing protocol: a file still being written is never read (dataops/ingestion/landing.py).

A slow writer we do not control writes a file of each format under its final name, chunk by
chunk, while ingestion runs again and again: the file loads exactly once, whole, and is never
quarantined. Writers that use a temporary name are never picked up before their rename.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import duckdb
import pytest

from dataops.ingestion.landing import Snapshot, is_temporary, ready_files
from dataops.ingestion.loader import ingest
from dataops.sources.registry import load_registry

REGISTRY = {t.key: t for t in load_registry()}
SETTLE = 1.0  # seconds; the writer below pauses 0.15 s between chunks
CHUNKS = 12


def _slow_write(data: bytes, target: Path, done: threading.Event) -> None:
    size = -(-len(data) // CHUNKS)
    with target.open("wb") as handle:
        for start in range(0, len(data), size):
            handle.write(data[start : start + size])
            handle.flush()
            time.sleep(0.15)
    done.set()


@pytest.mark.parametrize("key", ["shop.orders", "payments.payments", "web.sessions"])
def test_a_slow_writer_file_loads_exactly_once_and_is_never_quarantined(
    key: str, sample_landing: Path, tmp_path: Path
):
    table = REGISTRY[key]
    template = table.landed_files(sample_landing)[0]
    landing = tmp_path / "landing"
    folder = table.landing_dir(landing)
    folder.mkdir(parents=True)
    target = folder / template.name
    warehouse = tmp_path / "warehouse.duckdb"
    done = threading.Event()
    writer = threading.Thread(target=_slow_write, args=(template.read_bytes(), target, done))
    writer.start()
    runs = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            summary = ingest(warehouse, landing, [table], settle=SETTLE)
            runs += 1
            assert summary.errors == [], summary.errors
            if done.is_set() and summary.files_loaded == 0 and not summary.tables[key].waiting:
                break
            time.sleep(0.2)
    finally:
        writer.join()
    assert runs >= 5, "ingestion must have run while the file was being written"
    with duckdb.connect(str(warehouse)) as con:
        ledger = con.execute(
            "select status, rows_loaded from platform.load_ledger where file_name = ?",
            [target.name],
        ).fetchall()
        [(raw_rows,)] = con.execute(f"select count(*) from {table.schema}.{table.name}").fetchall()
        [(expected,)] = con.execute(
            "select count(*) from "
            + (
                f"read_parquet('{target}')"
                if table.landing.format == "parquet"
                else f"read_csv('{target}', all_varchar = true)"
                if table.landing.format == "csv"
                else f"read_json('{target}', format = 'newline_delimited')"
            )
        ).fetchall()
    assert ledger == [("loaded", expected)], "exactly one load of the whole file, no quarantine"
    assert raw_rows == expected > 0
    assert not (landing / "_quarantine").exists()


def test_temporary_names_are_never_picked_up_until_renamed(sample_landing: Path, tmp_path: Path):
    orders = REGISTRY["shop.orders"]
    anything = orders.landing.model_copy(update={"pattern": "*"})
    everything = dataclasses.replace(orders, landing=anything)
    template = orders.landed_files(sample_landing)[0]
    landing = tmp_path / "landing"
    folder = orders.landing_dir(landing)
    folder.mkdir(parents=True)
    names = [".orders_a.csv", "_orders_b.csv", "~orders_c.csv", "orders_d.csv.tmp",
             "orders_e.csv.part", "orders_f.csv.partial"]  # fmt: skip
    for name in names:
        shutil.copy(template, folder / name)
    assert all(is_temporary(folder / name) for name in names)
    warehouse = tmp_path / "warehouse.duckdb"

    first = ingest(warehouse, landing, [everything], settle=0)
    assert first.files_loaded == 0 and first.errors == []

    (folder / "orders_d.csv.tmp").rename(folder / "orders_d.csv")  # the writer's atomic rename
    second = ingest(warehouse, landing, [everything], settle=0)
    assert second.files_loaded == 1 and second.errors == []


def test_a_file_changed_within_the_settle_window_waits(sample_landing: Path, tmp_path: Path):
    orders = REGISTRY["shop.orders"]
    landing = tmp_path / "landing"
    folder = orders.landing_dir(landing)
    folder.mkdir(parents=True)
    landed = Path(shutil.copy(orders.landed_files(sample_landing)[0], folder / "orders_new.csv"))
    ready, waiting = ready_files(orders, landing, settle=30)
    assert ready == [] and [w.path for w in waiting] == [landed]
    summary = ingest(tmp_path / "warehouse.duckdb", landing, [orders], settle=30)
    assert summary.files_loaded == 0 and summary.tables["shop.orders"].waiting == [landed]
    ready, waiting = ready_files(orders, landing, settle=0)
    assert ready == [(landed, Snapshot.of(landed))] and waiting == []
