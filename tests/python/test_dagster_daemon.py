"""The Dagster daemon for real, on its own: files landing start runs, a burst is ingested
exactly once with one warehouse writer at a time, a failed run is recorded and posted to a
webhook, and a restarted daemon does not run a file twice.

One daemon (`dagster-daemon run`, the repo's instance config in a temp DAGSTER_HOME) serves the
module; the tests run in order and each waits for the runs it caused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dataops.ingestion.loader import file_sha256
from orchestration.launcher import PID_TAG
from tests.python.dagster_harness import (
    broken_customers,
    clone_home,
    customer_redelivery,
    dagster_env,
    extra_sessions,
    install_instance,
    prepare_manifest,
    redelivery,
    start_daemon,
    wait_for,
    warehouse_query,
)

pytestmark = pytest.mark.slow

TRIGGER = {"dataops/trigger": "landed_files"}


class Webhook:
    """A local HTTP endpoint on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Platform:
    def __init__(self, home: Path, webhook: Webhook):
        self.home = home
        self.archive = home / "archive"
        self.landing = home / "landing"
        self.dagster_home = install_instance(home / "dagster_home")
        self.webhook = webhook
        self.env = dagster_env(home, self.dagster_home, ALERT_WEBHOOK_URL=webhook.url)
        self.daemon = None
        self._instance = None

    def start(self) -> None:
        self.daemon = start_daemon(self.env, self.home / "daemon.log")

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    @property
    def instance(self):
        from dagster import DagsterInstance
        from dagster._core.instance.ref import InstanceRef

        if self._instance is None:
            self._instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(self.dagster_home)))
        return self._instance

    def runs(self, tags: dict[str, str] | None = None) -> list:
        from dagster import RunsFilter

        return list(self.instance.get_runs(RunsFilter(tags=tags or TRIGGER)))

    def finished(self, run_ids: set[str]) -> list | None:
        runs = [r for r in self.runs() if r.run_id in run_ids]
        if len(runs) == len(run_ids) and all(r.is_finished for r in runs):
            return runs
        return None

    def wait_for_new_runs(self, before: set[str], count: int | None = None) -> list:
        """Wait until the sensor has started new runs and all of them have finished."""

        def settled():
            new = {r.run_id for r in self.runs()} - before
            if not new or (count is not None and len(new) < count):
                assert self.daemon.alive(), f"the daemon died:\n{self.daemon.tail()}"
                return None
            return self.finished(new)

        return wait_for("the landing sensor's runs to finish", settled, interval=2)

    def materialized(self, run_id: str) -> set[str]:
        from dagster import DagsterEventType

        records = self.instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records
        return {r.event_log_entry.asset_materialization.asset_key.to_user_string() for r in records}

    def log_messages(self, run_id: str) -> str:
        return "\n".join(
            (entry.user_message or "")
            + " "
            + str(entry.dagster_event and entry.dagster_event.message)
            for entry in self.instance.all_logs(run_id)
        )

    def ledger(self, hashes: list[str]) -> dict[str, list[str]]:
        rows = warehouse_query(
            self.home,
            "select file_hash, status from platform.load_ledger where file_hash in "
            f"({', '.join('?' for _ in hashes)})",
            hashes,
        )
        by_hash: dict[str, list[str]] = {h: [] for h in hashes}
        for file_hash, status in rows:
            by_hash[file_hash].append(status)
        return by_hash


@contextmanager
def running_platform(home: Path, **env: str) -> Iterator[Platform]:
    """A daemon on ``home`` (its manifest prepared once) with a local webhook and ``env``."""
    prepare_manifest(home)  # the manifest for this home's settings, prepared once
    webhook = Webhook()
    platform = Platform(home, webhook)
    platform.env.update(env)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()
        webhook.close()


@pytest.fixture(scope="module")
def platform(dagster_platform: Path, tmp_path_factory) -> Iterator[Platform]:
    home = clone_home(dagster_platform, tmp_path_factory.mktemp("daemon") / "home")
    with running_platform(home) as platform:
        yield platform


def _downstream_keys(platform: Platform, raw_key: str) -> set[str]:
    from dagster import AssetKey, AssetSelection

    from orchestration.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    selection = AssetSelection.assets(AssetKey.from_user_string(raw_key)).downstream()
    return {k.to_user_string() for k in selection.resolve(graph)}


def test_a_landed_file_is_ingested_and_only_its_downstream_assets_rebuilt(platform, monkeypatch):
    before = {r.run_id for r in platform.runs()}
    landed = redelivery(platform.archive, platform.landing, "orders", 1)
    [run] = platform.wait_for_new_runs(before)
    assert run.status.value == "SUCCESS", platform.log_messages(run.run_id)[-3000:]
    assert run.tags["dataops/source"] == "shop"
    # It ran in the worker the daemon's launcher had warmed up (orchestration/launcher.py), and
    # its dbt steps (three: upstream of the partitioned fact, the fact, the rest) and the source
    # freshness check of raw/shop/orders ran dbt in that process on the manifest the worker had
    # preloaded (dataops/dbt/preloaded.py).
    assert run.tags.get(PID_TAG), run.tags
    logs = platform.log_messages(run.run_id)
    assert logs.count("in-process on the preloaded manifest: `dbt build") == 3, logs[-3000:]
    assert logs.count("in-process on the preloaded manifest: `dbt source freshness") == 1
    monkeypatch.setenv("DATAOPS_HOME", str(platform.home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(platform.home / "target"))
    materialized = platform.materialized(run.run_id)
    # Exactly what is downstream of raw/shop/orders, the partitioned fact included (a run
    # without partitions: its incremental logic), and nothing else.
    assert materialized == _downstream_keys(platform, "raw/shop/orders")
    assert "marts/fct_order_items" in materialized
    # That logic reads only new order lines: this file has none, so no partition of the fact
    # was written or recorded (test_dagster_freshness.py lands new lines).
    messages = platform.log_messages(run.run_id)
    assert "fct_order_items: the build wrote 0 rows of 0 day(s)" in messages
    assert "raw/shop/customers" not in materialized
    assert "staging/stg_web__sessions" not in materialized
    assert platform.ledger([file_sha256(landed)]) == {file_sha256(landed): ["loaded"]}


def test_a_burst_of_20_files_is_ingested_exactly_once_one_writer_at_a_time(platform):
    before = {r.run_id for r in platform.runs()}
    files = [customer_redelivery(platform.archive, platform.landing, n) for n in range(2, 12)]
    files += [extra_sessions(platform.archive, platform.landing, n) for n in range(1, 11)]
    hashes = [file_sha256(path) for path in files]
    assert len(set(hashes)) == 20

    def all_loaded_and_settled():
        runs = platform.wait_for_new_runs(before, count=2)
        ledger = platform.ledger(hashes)
        return (runs, ledger) if all(ledger.values()) else None

    runs, ledger = wait_for("every file of the burst in the load ledger", all_loaded_and_settled)
    for run in runs:
        messages = platform.log_messages(run.run_id)
        assert run.status.value == "SUCCESS", messages[-3000:]
        assert "Could not set lock" not in messages
    assert {run.tags["dataops/source"] for run in runs} == {"shop", "web"}
    assert all(statuses == ["loaded"] for statuses in ledger.values()), ledger
    # The ten re-delivered customers (their updated_at is the latest) reached staging.
    redelivered = warehouse_query(
        platform.home,
        "select count(*) from staging.stg_shop__customers where updated_at > '2025-12-31'",
    )
    assert redelivered == [(10,)]
    # The warehouse steps of the runs never overlapped: the pool has one slot.
    intervals = sorted(_step_intervals(platform, runs))
    for (_, end, step), (start, _, other) in zip(intervals, intervals[1:], strict=False):
        assert end <= start, f"{step} and {other} wrote the warehouse at the same time"


def _step_intervals(platform: Platform, runs: list) -> list[tuple[float, float, str]]:
    from dagster import DagsterEventType

    intervals = []
    for run in runs:
        starts = {}
        for entry in platform.instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                key = f"{run.run_id[:8]}:{event.step_key}"
                intervals.append((starts[event.step_key], entry.timestamp, key))
    return intervals


def test_a_failed_run_is_recorded_as_an_event_and_posted_to_the_webhook(platform):
    before = {r.run_id for r in platform.runs()}
    broken_customers(platform.landing)
    [run] = platform.wait_for_new_runs(before)
    assert run.status.value == "FAILURE"
    alert = wait_for(
        "the failure alert on the webhook",
        lambda: next((a for a in platform.webhook.received if a["run_id"] == run.run_id), None),
    )
    assert alert["event_type"] == "dagster.run_failed"
    assert alert["source"] == "shop"
    assert "customers_broken.csv" in json.dumps(alert)
    events = wait_for(
        "the dagster.run_failed event in platform.events",
        lambda: warehouse_query(
            platform.home,
            "select event_type, status, details from platform.events "
            "where dagster_run_id = ? and event_type = 'dagster.run_failed'",
            [run.run_id],
        ),
    )
    [(event_type, status, details)] = events
    assert (event_type, status) == ("dagster.run_failed", "error")
    assert json.loads(details)["webhook"].startswith("sent")


def test_a_restarted_daemon_does_not_run_a_known_file_again(platform):
    from dagster._core.scheduler.instigation import InstigatorType

    before = {r.run_id for r in platform.runs(tags={})}
    platform.stop()
    # Same content as an ingested file, under another name, landed while the daemon is down.
    ingested = platform.landing / "shop" / "customers" / "customers_redelivery_002.csv"
    (ingested.parent / "customers_copy_of_002.csv").write_bytes(ingested.read_bytes())
    state = next(
        s
        for s in platform.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.name == "landed_files"
    )

    def ticks() -> int:
        return len(platform.instance.get_ticks(state.instigator_origin_id, state.selector_id))

    ticks_before = ticks()
    platform.start()
    wait_for("three landing sensor ticks after the restart", lambda: ticks() >= ticks_before + 3)
    new_runs = [r for r in platform.runs(tags={}) if r.run_id not in before]
    assert [r.tags for r in new_runs if r.tags.get("dataops/trigger") == "landed_files"] == []
