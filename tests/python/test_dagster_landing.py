"""The landing protocol and partial failures under the real Dagster daemon (issue 18).

One daemon with a settle window (DATAOPS_SETTLE_SECONDS=3) starts on a home where `dataops run`
already loaded every landed file, as after `make run` then `make ui`:

- the files loaded before the daemon first started start no run;
- a good and a bad file of one table in the same tick: the good file is loaded and everything
  downstream of its raw table is rebuilt, the bad one is quarantined;
- a slow writer on every format (CSV, JSON lines, Parquet; chunk by chunk over 18 s, under its
  final name or under a temporary name renamed when complete): loaded exactly once, never
  quarantined, by exactly one run.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from dataops.ingestion.loader import file_sha256
from tests.python.dagster_harness import (
    broken_customers,
    clone_home,
    prepare_manifest,
    redelivery,
    wait_for,
    warehouse_query,
)
from tests.python.test_dagster_daemon import Platform, Webhook, _downstream_keys

pytestmark = pytest.mark.slow
SETTLE = 3  # seconds (DATAOPS_SETTLE_SECONDS): 5x the slow writer's pause between chunks
CHUNKS, PAUSE = 30, 0.6  # the slow writer: 18 s in all, several sensor ticks (every 5 s)


@pytest.fixture(scope="module")
def platform(built_platform, tmp_path_factory) -> Iterator[Platform]:
    home = clone_home(built_platform.home, tmp_path_factory.mktemp("landing_daemon") / "home")
    (home / "archive").mkdir()
    prepare_manifest(home)
    webhook = Webhook()
    platform = Platform(home, webhook)
    platform.env["DATAOPS_SETTLE_SECONDS"] = str(SETTLE)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()
        webhook.close()


def _ticks(platform: Platform) -> int:
    from dagster._core.scheduler.instigation import InstigatorType

    states = [
        s
        for s in platform.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.name == "landed_files"
    ]
    if not states:
        return 0
    state = states[0]
    return len(platform.instance.get_ticks(state.instigator_origin_id, state.selector_id))


def test_files_loaded_before_the_daemon_first_started_start_no_run(platform):
    wait_for("three landing sensor ticks", lambda: _ticks(platform) >= 3, timeout=600)
    assert platform.runs() == [], "the files `dataops run` loaded must not be loaded again"


def test_a_good_and_a_bad_file_in_one_tick_the_good_one_is_rebuilt(platform):
    before = {r.run_id for r in platform.runs()}
    archive = platform.landing  # the loaded sample files are the templates
    good = redelivery(archive, platform.landing, "customers", 7)
    bad = broken_customers(platform.landing)
    [run] = platform.wait_for_new_runs(before)
    assert run.status.value == "SUCCESS", platform.log_messages(run.run_id)[-3000:]
    materialized = platform.materialized(run.run_id)
    assert materialized == _downstream_keys(platform, "raw/shop/customers")
    assert platform.ledger([file_sha256(good)]) == {file_sha256(good): ["loaded"]}
    assert not bad.exists()
    assert (platform.landing / "_quarantine" / "shop" / "customers" / bad.name).exists()
    assert "customers_broken.csv: quarantined" in platform.log_messages(run.run_id)


def _slow_write(data: bytes, target: Path, final: Path | None = None) -> None:
    """Write ``data`` in CHUNKS chunks, PAUSE s apart; with ``final``, rename to it when done."""
    size = -(-len(data) // CHUNKS)
    with target.open("wb") as handle:
        for start in range(0, len(data), size):
            handle.write(data[start : start + size])
            handle.flush()
            time.sleep(PAUSE)  # each pause < settle window
    if final is not None:
        target.rename(final)  # the landing protocol's atomic delivery


def _slow_file_data(source: Path, n: int) -> bytes:
    """A file of the same table as ``source`` with new keys (``n`` keeps two files apart) and rows
    that keep the downstream tests green (a payment that failed adds nothing paid)."""
    if source.suffix == ".parquet":
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "slow.parquet"
            with duckdb.connect() as con:
                con.execute(
                    f"copy (select * replace ('slow{n}-' || session_id as session_id) from "
                    f"read_parquet('{source}') limit 20) to '{target}' (format parquet)"
                )
            return target.read_bytes()
    lines = source.read_text("utf-8").splitlines()
    if source.suffix == ".csv":
        body = [
            f"{int(line.split(',')[0]) + n * 1_000_000},{line.split(',', 1)[1]}"
            for line in lines[1:]
        ]
        return ("\n".join([lines[0], *body]) + "\n").encode()
    records = []
    for line in lines[:20]:
        record = json.loads(line)
        record["payment_id"] += n * 1_000_000
        record["status"] = "failed"
        records.append(json.dumps(record))
    return ("\n".join(records) + "\n").encode()


def _runs_with(runs: list, relative: str) -> list:
    return [r for r in runs if relative in r.tags["dataops/files"].split(", ")]


def test_a_slow_writer_file_of_every_format_loads_once_in_one_run(platform):
    """Each format, written slowly (30 chunks over 18 s) in both ways the landing protocol allows:
    under its final name by a writer we do not control (the settle window holds it back), and
    under a temporary name renamed when complete. Each file: exactly one load of all its rows,
    no quarantine, exactly one Dagster run, and that run succeeded."""
    before = {r.run_id for r in platform.runs()}
    landing = platform.landing
    writes: list[tuple[bytes, Path, Path | None]] = []
    for n, (folder, suffix) in enumerate(
        (("shop/orders", "csv"), ("payments/payments", "json"), ("web/sessions", "parquet"))
    ):
        directory = landing / folder
        source = sorted(directory.glob(f"*.{suffix}"))[0]
        stem = source.name.rsplit("_", 1)[0]
        uncontrolled = directory / f"{stem}_slow.{suffix}"
        renamed = directory / f"{stem}_renamed.{suffix}"
        writes.append((_slow_file_data(source, 5 + 2 * n), uncontrolled, None))
        writes.append(
            (_slow_file_data(source, 6 + 2 * n), directory / f".{renamed.name}.partial", renamed)
        )
    writers = [threading.Thread(target=_slow_write, args=write) for write in writes]
    seen = _ticks(platform)
    ticks = wait_for("a landing sensor tick", lambda: (n := _ticks(platform)) > seen and n)
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    # The next tick started while the files were being written (ticks are >= 5 s apart): the
    # sensor looked at them unfinished, so a file read early would show as a second run.
    assert _ticks(platform) > ticks, "the sensor must have looked at the unfinished files"
    targets = [final or target for _, target, final in writes]
    gone = [str(target) for target in targets if not target.exists()]
    assert not gone, f"taken (quarantined?) while being written: {gone}"
    hashes = {target: file_sha256(target) for target in targets}

    def every_file_loaded_and_runs_finished():
        ledger = platform.ledger(list(hashes.values()))
        if not all(ledger.values()):
            return None
        runs = platform.finished({r.run_id for r in platform.runs()} - before)
        return (ledger, runs) if runs else None

    ledger, runs = wait_for(
        "every slow file in the ledger, its runs finished", every_file_loaded_and_runs_finished
    )
    for target in targets:
        relative = target.relative_to(landing).as_posix()
        assert ledger[hashes[target]] == ["loaded"], (relative, ledger[hashes[target]])
        started = _runs_with(runs, relative)
        assert len(started) == 1, (relative, [r.tags["dataops/files"] for r in started])
        [run] = started
        assert run.status.value == "SUCCESS", platform.log_messages(run.run_id)[-3000:]
        [(rows, loaded_rows)] = warehouse_query(
            platform.home,
            "select rows_loaded, (select count(*) from "
            f"raw_{target.parent.parent.name}.{target.parent.name} where _file_name = ?) "
            "from platform.load_ledger where file_hash = ?",
            [target.name, hashes[target]],
        )
        assert rows == loaded_rows > 0, (relative, rows, loaded_rows)
    for folder in ("shop/orders", "payments/payments", "web/sessions"):
        assert not (landing / "_quarantine" / folder).exists(), folder
    files = [name for r in runs for name in r.tags["dataops/files"].split(", ")]
    assert sorted(files) == sorted(t.relative_to(landing).as_posix() for t in targets), (
        "no temporary name was ever picked up"
    )
