"""The production Dagster instance on a real PostgreSQL server: the services of deploy/systemd/
(gRPC code server, daemon, webserver) on the config of orchestration/instance/production/, a
file landed and materialised through the landing sensor, both services restarted, and the run
history and the sensor cursor found intact in PostgreSQL (and used: a copy of a known file gives
no run after the restart, a new file gives one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dataops.ingestion.loader import file_sha256
from tests.python.dagster_harness import (
    clone_home,
    extra_sessions,
    free_port,
    graphql,
    prepare_manifest,
    wait_for,
)
from tests.python.production_harness import (
    PRODUCTION_YAML,
    DagsterDatabase,
    Services,
    dagster_database,
    install_production_instance,
)

DEV_YAML = PRODUCTION_YAML.parent.parent / "dagster.yaml"
RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status } } }
}
"""
WEB = {"dataops/source": "web"}
WEB_TAGS = [{"key": key, "value": value} for key, value in WEB.items()]


def test_production_instance_is_the_dev_instance_on_postgres():
    dev = yaml.safe_load(DEV_YAML.read_text())
    production = yaml.safe_load(PRODUCTION_YAML.read_text())
    storage = production.pop("storage")
    # The dev instance keeps a warm run worker (orchestration/launcher.py); production launches
    # runs in the code-server container with Dagster's own launcher, behind the same queue.
    assert dev.pop("run_launcher")["class"] == "StandbyRunLauncher"
    assert "run_launcher" not in production
    # The dev daemon also looks for due sensors every second (sensor_loop_seconds, set by its
    # run coordinator); production keeps Dagster's own coordinator and its 5 s sensor loop.
    dev_coordinator = dev.pop("run_coordinator")["config"]
    assert dev_coordinator.pop("sensor_loop_seconds") == 1
    assert dev_coordinator == production.pop("run_coordinator")["config"]
    assert "storage" not in dev and production == dev  # same queue, pools, sensors
    db = storage["postgres"]["postgres_db"]
    # Every connection setting comes from the environment; none is written here.
    assert {key: value for key, value in db.items() if key not in ("params", "scheme")} == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }


def _instance(dagster_home: Path, database: DagsterDatabase, monkeypatch):
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    for key, value in database.service_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD_FILE")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", database.password)
    # Opening it once creates the schema before three services race to do it.
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))


def _web_runs(instance) -> list:
    from dagster import RunsFilter

    return list(instance.get_runs(RunsFilter(tags=WEB)))


def _landing_state(instance):
    from dagster._core.scheduler.instigation import InstigatorType

    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    return next(s for s in states if s.name == "landed_files")


def test_run_history_and_sensor_cursor_survive_restarts_in_postgres(
    dagster_platform: Path, tmp_path: Path, monkeypatch
):
    import psycopg2
    from dagster._core.scheduler.instigation import InstigatorState
    from dagster._serdes import deserialize_value

    home = clone_home(dagster_platform, tmp_path / "home")
    prepare_manifest(home)
    dagster_home = install_production_instance(home / "dagster_home")
    with dagster_database(tmp_path) as database:
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            database.connect(password="not-the-password")  # pragma: allowlist secret
        instance = _instance(dagster_home, database, monkeypatch)
        services = Services(home, dagster_home, database)
        ui_port = free_port()
        try:
            services.start_code_server()
            services.start_daemon()
            services.start_webserver(ui_port)

            # A file lands; the sensor starts one run that ingests and materialises it.
            first_file = extra_sessions(home / "archive", home / "landing", 1)

            def finished(count: int):
                runs = _web_runs(instance)
                if len(runs) >= count and all(r.is_finished for r in runs):
                    return runs
                assert services.running["daemon"].alive(), services.running["daemon"].tail()
                return None

            [first] = wait_for("the landing run", lambda: finished(1), interval=2)
            assert first.status.value == "SUCCESS", services.running["daemon"].tail()
            assert first.tags["dataops/trigger"] == "landed_files"
            first_hash = file_sha256(first_file)
            cursor = _landing_state(instance).instigator_data.cursor
            assert first_hash in cursor

            # Everything is in PostgreSQL, nothing in DAGSTER_HOME's sqlite files.
            assert database.query("select status from runs where run_id = %s", (first.run_id,)) == [
                ("SUCCESS",)
            ]
            materialised = database.query(
                "select count(*) from event_logs where run_id = %s "
                "and dagster_event_type = 'ASSET_MATERIALIZATION' and asset_key like %s",
                (first.run_id, '%"raw", "web", "sessions"%'),
            )
            assert materialised == [(1,)]
            assert list(dagster_home.rglob("*.db")) == []

            # Both services go down; meanwhile a copy of the known file lands under a new name.
            services.stop("webserver", "daemon")
            copy = first_file.with_name("sessions_copy_of_001.parquet")
            copy.write_bytes(first_file.read_bytes())
            state = _landing_state(instance)
            ticks_before = len(instance.get_ticks(state.instigator_origin_id, state.selector_id))
            services.start_daemon()
            services.start_webserver(ui_port)

            # The history is served again, the cursor is the one stored before the restart.
            runs = graphql(ui_port, RUNS, {"tags": WEB_TAGS})
            assert runs["runsOrError"]["results"] == [{"runId": first.run_id, "status": "SUCCESS"}]
            wait_for(
                "three landing sensor ticks after the restart",
                lambda: (
                    len(instance.get_ticks(state.instigator_origin_id, state.selector_id))
                    >= ticks_before + 3
                ),
                interval=2,
            )
            assert [r.run_id for r in _web_runs(instance)] == [first.run_id]  # the copy: no run
            stored = database.query(
                "select instigator_body from instigators where instigator_body like %s",
                ('%"landed_files"%',),
            )
            assert len(stored) == 1
            stored_state = deserialize_value(stored[0][0], InstigatorState)
            cursor = json.loads(stored_state.instigator_data.cursor)
            assert cursor["files"]["web/sessions/sessions_extra_001.parquet"][2] == first_hash
            assert cursor["files"]["web/sessions/sessions_copy_of_001.parquet"][2] == first_hash

            # A genuinely new file after the restart: exactly one more run.
            extra_sessions(home / "archive", home / "landing", 2)
            runs = wait_for("the second landing run", lambda: finished(2), interval=2)
            assert len(runs) == 2 and all(r.status.value == "SUCCESS" for r in runs)
        finally:
            services.stop()
            instance.dispose()
