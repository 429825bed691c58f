"""Ingestion: landed files become raw rows exactly once, each row with its lineage, in a ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from orchestration.ingestion.loader import file_sha256, ingest
from orchestration.registry import load_registry

REGISTRY = load_registry()


def _file_rows(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    if path.suffix == ".csv":
        reader = f"read_csv('{path}', all_varchar = true)"
    elif path.suffix in (".json", ".jsonl"):
        reader = f"read_json('{path}', format = 'newline_delimited')"
    else:
        reader = f"read_parquet('{path}')"
    return con.execute(f"select count(*) from {reader}").fetchone()[0]


@pytest.fixture()
def landing(sample_landing: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "landing"
    shutil.copytree(sample_landing, copy)
    return copy


def test_every_file_is_loaded_with_its_rows_lineage_and_ledger_entry(landing: Path, tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    summary = ingest(warehouse, landing, REGISTRY)

    assert summary.errors == []
    files = {t.key: t.landed_files(landing) for t in REGISTRY}
    assert all(files.values()), "the sample must land files for every declared table"
    with duckdb.connect(str(warehouse)) as con:
        for table in REGISTRY:
            expected = {p.name: _file_rows(con, p) for p in files[table.key]}
            loaded = dict(
                con.execute(
                    f"select _file_name, count(*) from {table.schema}.{table.name} group by 1"
                ).fetchall()
            )
            assert loaded == expected, table.key
            # every row carries its lineage, and the hash is the file's content hash
            lineage = con.execute(
                f"select distinct _file_name, _file_hash, _batch_id from {table.schema}.{table.name} "
                "where _loaded_at is not null"
            ).fetchall()
            assert {(name, digest) for name, digest, _ in lineage} == {
                (p.name, file_sha256(p)) for p in files[table.key]
            }
            assert {batch for _, _, batch in lineage} == {summary.batch_id}
        ledger = con.execute(
            "select source_name || '.' || table_name, file_name, status, rows_loaded "
            "from platform.load_ledger"
        ).fetchall()
    assert len(ledger) == sum(len(v) for v in files.values())
    assert {status for _, _, status, _ in ledger} == {"loaded"}
    assert sum(rows for *_, rows in ledger) == summary.rows_loaded > 0


def test_loading_the_same_files_again_adds_nothing(landing: Path, tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    first = ingest(warehouse, landing, REGISTRY)
    second = ingest(warehouse, landing, REGISTRY)

    assert second.files_loaded == 0 and second.rows_loaded == 0
    assert sum(t.files_skipped for t in second.tables.values()) == first.files_loaded
    # same content under another name is the same delivery
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    original = orders.landed_files(landing)[0]
    shutil.copy(original, original.with_name("orders_copy_of_day_one.csv"))
    third = ingest(warehouse, landing, [orders])
    assert third.files_loaded == 0
    with duckdb.connect(str(warehouse)) as con:
        ledger_rows = con.execute("select count(*) from platform.load_ledger").fetchone()[0]
        raw_rows = con.execute("select count(*) from raw_shop.orders").fetchone()[0]
    assert ledger_rows == first.files_loaded
    assert raw_rows == first.tables["shop.orders"].rows_loaded


def test_a_new_file_loads_only_its_own_rows(landing: Path, tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    first = ingest(warehouse, landing, [orders])
    newest = orders.landed_files(landing)[-1]
    changed = newest.with_name("orders_2099-01-01.csv")
    lines = newest.read_text().splitlines()
    changed.write_text("\n".join(lines[:3]) + "\n")

    second = ingest(warehouse, landing, [orders])

    assert second.files_loaded == 1
    assert second.rows_loaded == 2
    with duckdb.connect(str(warehouse)) as con:
        total = con.execute("select count(*) from raw_shop.orders").fetchone()[0]
    assert total == first.rows_loaded + 2


def test_a_file_that_cannot_be_loaded_is_quarantined_and_does_not_block_the_others(
    landing: Path, tmp_path: Path
):
    warehouse = tmp_path / "warehouse.duckdb"
    sessions = next(t for t in REGISTRY if t.key == "web.sessions")
    good = sessions.landed_files(landing)
    broken = sessions.landing_dir(landing) / "sessions_broken.parquet"
    broken.write_bytes(b"not parquet at all")

    summary = ingest(warehouse, landing, [sessions])

    assert len(summary.errors) == 1 and "sessions_broken.parquet" in summary.errors[0]
    assert summary.files_loaded == len(good)
    # moved out of the landing folder, beside a reason that names the rule
    assert not broken.exists() and sessions.landed_files(landing) == good
    moved = landing / "_quarantine" / "web" / "sessions" / "sessions_broken.parquet"
    assert moved.read_bytes() == b"not parquet at all"
    reason = json.loads(moved.with_name(moved.name + ".reason.json").read_text())
    assert reason["rule"] == "not_parquet" and "magic bytes" in reason["message"]
    with duckdb.connect(str(warehouse)) as con:
        quarantined = con.execute(
            "select file_name, error, quarantine_path from platform.load_ledger "
            "where status = 'quarantined'"
        ).fetchall()
        [(event_file,)] = con.execute(
            "select file_name from platform.events where event_type = 'file.quarantined'"
        ).fetchall()
    assert [name for name, *_ in quarantined] == ["sessions_broken.parquet"] == [event_file]
    assert quarantined[0][1] and quarantined[0][2] == str(moved)
