"""Ingestion: landed files become raw rows exactly once, each row with its lineage, in a ledger."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import REPO_ROOT
from dataops.ingestion.loader import (
    WarehouseLocked,
    connect_warehouse,
    file_sha256,
    ingest,
)
from dataops.ingestion.validation import cast_fails, strict_cast
from dataops.sources.registry import load_registry
from tests.python.conftest import dataops, platform_env

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
                "select distinct _file_name, _file_hash, _batch_id "
                f"from {table.schema}.{table.name} where _loaded_at is not null"
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
    fourth = ingest(warehouse, landing, [orders])
    assert third.files_loaded == fourth.files_loaded == 0
    copy = original.with_name("orders_copy_of_day_one.csv")
    assert third.tables["shop.orders"].duplicates == [(copy, original)]
    assert fourth.tables["shop.orders"].duplicates == []  # traced once, not at every run
    with duckdb.connect(str(warehouse)) as con:
        statuses = dict(
            con.execute("select status, count(*) from platform.load_ledger group by 1").fetchall()
        )
        duplicate = con.execute(
            "select file_name, duplicate_of from platform.load_ledger where status = 'duplicate'"
        ).fetchall()
        events = con.execute(
            "select file_name, details from platform.events where event_type = 'file.duplicate'"
        ).fetchall()
        raw_rows = con.execute("select count(*) from raw_shop.orders").fetchone()[0]
    assert statuses == {"loaded": first.files_loaded, "duplicate": 1}
    assert duplicate == [(copy.name, str(original))]
    assert [(name, json.loads(details)["duplicate_of"]) for name, details in events] == [
        (copy.name, str(original))
    ]
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


# --- Redeliveries, replay of quarantined files, the warehouse lock ------------------------------
def _orders_landing(sample_landing: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A platform home whose landing holds only the sample's order files: (home, orders folder)."""
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    home = tmp_path / "home"
    folder = orders.landing_dir(home / "landing")
    shutil.copytree(orders.landing_dir(sample_landing), folder)
    return home, folder


def test_a_changed_file_under_a_known_name_is_a_new_delivery(landing: Path, tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    ingest(warehouse, landing, [orders])
    newest = orders.landed_files(landing)[-1]
    old_hash = file_sha256(newest)
    lines = newest.read_text().splitlines()
    newest.write_text("\n".join(lines[:-1]) + "\n")  # the sender re-exports the day, one row less

    second = ingest(warehouse, landing, [orders])

    assert second.files_loaded == 1 and second.rows_loaded == len(lines) - 2
    with duckdb.connect(str(warehouse)) as con:
        ledger = con.execute(
            "select file_hash, previous_file_hash from platform.load_ledger where file_name = ? "
            "order by finished_at",
            [newest.name],
        ).fetchall()
        [(details,)] = con.execute(
            "select details from platform.events where event_type = 'file.loaded' "
            "and file_hash = ?",
            [file_sha256(newest)],
        ).fetchall()
    assert ledger == [(old_hash, None), (file_sha256(newest), old_hash)]
    assert json.loads(details)["redelivery_of"] == old_hash


def test_a_fixed_quarantined_file_is_replayed_once(sample_landing: Path, tmp_path: Path):
    home, folder = _orders_landing(sample_landing, tmp_path)
    bad = folder / "orders_2099-01-01.csv"
    good_lines = sorted(folder.glob("*.csv"))[0].read_text().splitlines()
    rows = [good_lines[0]] + [
        f"{9_000_000 + n},{line.split(',', 1)[1]}" for n, line in enumerate(good_lines[1:])
    ]
    rows[3] = rows[3].replace(rows[3].split(",")[1], "not-a-customer", 1)
    bad.write_text("\n".join(rows) + "\n")

    first = dataops(home, "ingest", "--source", "shop.orders", check=False)

    assert first.returncode == 1 and "dataops replay" in first.stdout
    quarantined = home / "landing" / "_quarantine" / "shop" / "orders" / bad.name
    reason = json.loads(quarantined.with_name(bad.name + ".reason.json").read_text())
    assert (reason["rule"], reason["column"], reason["row"], reason["line"], reason["value"]) == (
        "type_cast", "customer_id", 3, 4, "not-a-customer"
    )
    # replaying it unchanged keeps it in quarantine
    again = dataops(home, "replay", str(quarantined), check=False)
    assert again.returncode == 1 and "still quarantined" in again.stdout and quarantined.exists()

    quarantined.write_text(quarantined.read_text().replace("not-a-customer", "42"))
    replayed = dataops(home, "replay", str(quarantined))

    assert f"loaded {len(rows) - 1:,} rows into shop.orders" in replayed.stdout
    assert bad.exists() and not quarantined.exists()
    assert not quarantined.with_name(bad.name + ".reason.json").exists()
    with duckdb.connect(str(home / "warehouse_dev.duckdb")) as con:
        [(loaded,)] = con.execute(
            "select count(*) from raw_shop.orders where _file_hash = ?", [file_sha256(bad)]
        ).fetchall()
        replay_events = con.execute(
            "select details from platform.events where event_type = 'file.replayed'"
        ).fetchall()
    assert loaded == len(rows) - 1
    assert [json.loads(d)["quarantined_rule"] for (d,) in replay_events] == ["type_cast"]
    # the next ingest sees the file back in the landing folder and skips it: loaded once
    rerun = dataops(home, "ingest", "--source", "shop.orders")
    assert "0 files loaded" in rerun.stdout


def test_a_replay_killed_after_its_commit_is_finished_by_replaying_again(
    sample_landing: Path, tmp_path: Path
):
    home, folder = _orders_landing(sample_landing, tmp_path)
    bad = folder / "orders_2099-01-01.csv"
    header, *body = sorted(folder.glob("*.csv"))[0].read_text().splitlines()
    body = [f"{8_000_000 + n},{line.split(',', 1)[1]}" for n, line in enumerate(body)]
    bad.write_text("\n".join([header, ",9,placed,x,y", *body]) + "\n")  # a null key on line 2
    dataops(home, "ingest", "--source", "shop.orders", check=False)
    quarantined = home / "landing" / "_quarantine" / "shop" / "orders" / bad.name
    quarantined.write_text("\n".join([header, *body]) + "\n")
    env = platform_env(home)
    env["DATAOPS_CRASH_AT"] = "replay_after_commit"
    crashed = subprocess.run(
        [sys.executable, "-m", "dataops.cli", "replay", str(quarantined)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert crashed.returncode == -9 and quarantined.exists()

    finished = dataops(home, "replay", str(quarantined))

    assert "already loaded" in finished.stdout
    assert bad.exists() and not quarantined.exists()
    with duckdb.connect(str(home / "warehouse_dev.duckdb")) as con:
        [(rows, ledger)] = con.execute(
            "select (select count(*) from raw_shop.orders where _file_hash = ?), "
            "(select count(*) from platform.load_ledger where file_hash = ?)",
            [file_sha256(bad)] * 2,
        ).fetchall()
    assert (rows, ledger) == (len(body), 1)


def test_quarantined_files_are_never_picked_up_by_ingestion(landing: Path, tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    sessions = next(t for t in REGISTRY if t.key == "web.sessions")
    everything = dataclasses.replace(  # a recursive pattern over the whole landing root
        sessions,
        landing=sessions.landing.model_copy(update={"path": ".", "pattern": "**/*.parquet"}),
    )
    (sessions.landing_dir(landing) / "sessions_broken.parquet").write_bytes(b"not parquet")
    first = ingest(warehouse, landing, [everything])
    second = ingest(warehouse, landing, [everything])

    assert len(first.quarantined) == 1 and first.files_loaded == 7
    assert second.errors == [] and second.files_loaded == 0


def _hold_lock(warehouse: Path) -> subprocess.Popen[str]:
    """Another process holding the warehouse open until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
         "sys.stdin.read()", str(warehouse)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_loader_waits_for_the_lock_then_loads(landing: Path, tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    holder = _hold_lock(warehouse)
    messages: list[str] = []

    def release_after_first_wait(message: str) -> None:
        messages.append(message)
        holder.stdin.close()  # the other process finishes while we wait
        holder.wait(timeout=60)

    con = connect_warehouse(warehouse, timeout=120, log=release_after_first_wait)
    con.close()
    summary = ingest(warehouse, landing, [orders], lock_timeout=120)

    assert len(messages) == 1 and f"process {holder.pid}" in messages[0]
    assert "waiting up to 120 s" in messages[0]
    assert summary.files_loaded == len(orders.landed_files(landing))


def test_a_loader_that_cannot_get_the_lock_fails_clearly_and_loads_nothing(
    landing: Path, tmp_path: Path
):
    warehouse = tmp_path / "warehouse.duckdb"
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    ingest(warehouse, landing, [orders])
    holder = _hold_lock(warehouse)
    try:
        with pytest.raises(WarehouseLocked, match=f"locked by process {holder.pid}.*DATAOPS_LOCK"):
            ingest(warehouse, landing, [orders], lock_timeout=0.5)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select count(*) from platform.load_ledger").fetchone()[0] == len(
            orders.landed_files(landing)
        )


def test_no_file_stops_ingestion_the_cli_names_what_was_quarantined(
    sample_landing: Path, tmp_path: Path
):
    """Random bytes (NUL + lone CR) and gzip under a .json name no longer crash `dataops ingest`."""
    home = tmp_path / "home"
    shutil.copytree(sample_landing, home / "landing")
    orders = next(t for t in REGISTRY if t.key == "shop.orders")
    payments = next(t for t in REGISTRY if t.key == "payments.payments")
    poison = orders.landing_dir(home / "landing") / "orders_0000-poison.csv"
    poison.write_bytes(b"order_id\r\x00" + bytes(range(256)) * 8)
    packed = payments.landing_dir(home / "landing") / "payments_9999-packed.json"
    first = payments.landed_files(home / "landing")[0]
    records = [json.loads(line) for line in first.read_text("utf-8").splitlines()]
    for record in records:
        record["payment_id"] += 9_000_000  # a new delivery, gzip-compressed under a .json name
    packed.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))

    result = dataops(home, "ingest", check=False)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "1 file(s) quarantined" in result.stdout
    assert f"{poison}: quarantined [nul_byte]" in result.stdout
    assert (home / "landing" / "_quarantine" / "shop" / "orders" / poison.name).exists()
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        statuses = dict(
            con.execute(
                "select file_name, status from platform.load_ledger "
                "where file_name in (?, ?)",
                [poison.name, packed.name],
            ).fetchall()
        )
        sources = {
            row[0]
            for row in con.execute(
                "select distinct source_name from platform.load_ledger where status = 'loaded'"
            ).fetchall()
        }
    assert statuses == {poison.name: "quarantined", packed.name: "loaded"}
    assert sources == {t.source for t in REGISTRY}
    again = dataops(home, "ingest", check=False)
    assert again.returncode == 0, again.stdout


def test_a_declared_table_exists_empty_and_typed_before_its_first_file(
    sample_landing: Path, tmp_path: Path
):
    landing = tmp_path / "landing"
    landing.mkdir()
    warehouse = tmp_path / "warehouse.duckdb"
    summary = ingest(warehouse, landing, REGISTRY)  # nothing landed yet
    assert summary.files_loaded == 0 and summary.errors == []
    sessions = next(t for t in REGISTRY if t.key == "web.sessions")
    with duckdb.connect(str(warehouse)) as con:
        for table in REGISTRY:
            assert con.execute(f"select count(*) from {table.schema}.{table.name}").fetchone() == (
                0,
            )
        types = dict(con.execute("describe raw_web.sessions").fetchall()[i][:2] for i in range(4))
    declared = {c.name: c.data_type.upper() for c in sessions.columns}
    assert {name: declared[name] for name in types} == types  # Parquet: the declared types
    # the first file decides the raw columns (its own Parquet types), without a retype error
    shutil.copytree(sessions.landing_dir(sample_landing), sessions.landing_dir(landing))
    loaded = ingest(warehouse, landing, [sessions])
    assert loaded.errors == [] and loaded.files_loaded == len(sessions.landed_files(landing))


@pytest.mark.slow
def test_a_table_declared_before_its_first_file_builds_green(sample_landing: Path, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(sample_landing, home / "landing")
    refunds = next(t for t in REGISTRY if t.key == "payments.refunds")
    shutil.rmtree(refunds.landing_dir(home / "landing"))

    result = dataops(home, "run", check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw_payments.refunds").fetchone() == (0,)
        assert con.execute("select count(*) from staging.stg_payments__refunds").fetchone() == (0,)


CAST_SAMPLES = {
    "bigint": ["42", "-42", "007", "-0", "+5", " 5 ", "1.0", "1.", "1.5", "0.5", "1e3", "0x10",
               "1_000", "", " ", "abc", "9223372036854775807", "9223372036854775808"],
    "integer": ["2147483647", "2147483648", "12", "12.00", "-3"],
    "smallint": ["32767", "32768", "1"],
    "decimal(18, 2)": ["0.13", "0.10", "0.1", "0.125", "0.120", "1.5", ".5", "5.", "-0.13",
                       "1e2", "12", "-0.00", "1234567890123456.78", "12345678901234567.00"],
    "decimal(5, 0)": ["12345", "123456", "1.0", "1.5"],
    "timestamp": ["2025-01-01 00:00:00", "2025-01-01T00:00:00", "2025-01-01 00:00:00+02:00",
                  "2025-01-01 10:00:00 Europe/Paris", "2025-01-01 00:00:00.5",
                  "2025-01-01 00:00:00.123456", "2025-01-01", "infinity", "2025-13-01 00:00:00"],
}


@pytest.mark.parametrize("data_type", list(CAST_SAMPLES))
def test_the_canonical_text_fast_path_fails_exactly_the_values_strict_cast_fails(data_type: str):
    """cast_fails (the loader's check) skips strict_cast's patterns for values already in DuckDB's
    own text for the type; it must fail exactly the values strict_cast turns into null."""
    values = [*CAST_SAMPLES[data_type], None]
    with duckdb.connect() as con:
        con.execute("create table t (x varchar)")
        con.executemany("insert into t values (?)", [[v] for v in values])
        rows = con.execute(
            f"select x, {cast_fails('x', data_type)}, "
            f"x is not null and {strict_cast('x', data_type)} is null from t"
        ).fetchall()
    assert [(x, fast) for x, fast, _ in rows] == [(x, strict) for x, _, strict in rows]
    assert any(fast for _, fast, _ in rows) and not all(fast for _, fast, _ in rows)
