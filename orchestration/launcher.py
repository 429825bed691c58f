"""The run launcher of the platform's instance: runs start in a run worker that is already warm.

Dagster's ``DefaultRunLauncher`` asks the code server to start each run in a new Python process,
which then imports Dagster, dagster-dbt and the code location before its first step: ~8-9 s on
an idle 2-core machine, most of a landed file's way to its marts. This launcher keeps one run
worker (orchestration/run_worker.py) started ahead of time in the daemon: it has imported the
code location and waits; a launched run is handed to it at once, and the next one starts warming
up. Everything else is Dagster's: the worker executes the run as ``dagster api execute_run``
does, the run queue and the pools (orchestration/instance/dagster.yaml: one warehouse writer at a
time) decide when a run and its steps start, exactly as before.

A warm worker is used only when it can run the job exactly as a new process would: same Python,
same working directory, same code location module, and no change to the code, the source
registry or the prepared manifest since it started (else it is discarded and the run goes the
default way). Runs launched outside the daemon (e.g. a test launching in-process) take the
default way too, so no process other than the daemon keeps a worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from dagster import (
    Bool,
    DefaultRunLauncher,
    Field,
    Float,
    Int,
    QueuedRunCoordinator,
    StringSource,
)
from dagster._core.launcher.base import LaunchRunContext
from dagster._serdes import ConfigurableClassData, serialize_value

from dataops.core.fingerprint import stat_fingerprint
from dataops.core.settings import REPO_ROOT

PID_TAG = "dataops/run_worker_pid"
HOST_TAG = "dataops/run_worker_host"
# What the definitions read: the code, the source registry (models/**/*.yml) and the manifest.
WATCHED = (("orchestration", "*.py"), ("dataops", "*.py"), ("models", "*.yml"))


def code_fingerprint(manifest: Path | None = None, root: Path = REPO_ROOT) -> str:
    """A digest of the path, size and mtime of every file the code location is built from: a
    worker warmed up under another fingerprint would run other code than a new process."""
    paths = [p for folder, pattern in WATCHED for p in (root / folder).rglob(pattern)]
    if manifest is not None:
        paths.append(manifest)
    return stat_fingerprint(paths)


def _manifest() -> Path | None:
    from dataops.core.settings import load_settings
    from dataops.dbt.manifest import manifest_path

    try:
        return manifest_path(load_settings())
    except Exception:  # settings that do not load: the definitions would fail the same way
        return None


def is_daemon_process(argv: list[str] | None = None) -> bool:
    """True in ``dagster-daemon run`` (also as ``dagster dev`` starts it: ``python -m
    dagster._daemon run``): the process that dequeues and launches runs."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    script = Path(argv[0])
    started_as = script.name == "dagster-daemon" or script.parent.name == "_daemon"
    return started_as and "run" in argv[1:]


@dataclass
class Standby:
    process: subprocess.Popen
    module: str
    cwd: str
    fingerprint: str


class StandbyRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` that hands each run to a run worker started ahead of time.

    Config (dagster.yaml ``run_launcher.config``): ``module``, the code location module to warm
    up (``orchestration.definitions``); ``standby_workers``: 1 keeps a warm worker, 0 launches
    every run the default way; ``preload_dbt``: the warm worker also parses the dbt project
    while it waits, and its dbt steps run dbt in-process on it (dataops/dbt/preloaded.py).
    """

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        module: str = "orchestration.definitions",
        standby_workers: int = 1,
        preload_dbt: bool = True,
    ):
        super().__init__(inst_data=inst_data)
        self._module = module
        self._preload_dbt = preload_dbt
        self._enabled = standby_workers > 0 and is_daemon_process()
        self._lock = threading.Lock()
        self._standby: Standby | None = None
        self._launched: list[subprocess.Popen] = []

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "module": Field(
                StringSource, is_required=False, default_value="orchestration.definitions"
            ),
            "standby_workers": Field(Int, is_required=False, default_value=1),
            "preload_dbt": Field(Bool, is_required=False, default_value=True),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        if self._enabled:
            with self._lock:
                self._ensure_standby()

    def _ensure_standby(self) -> None:
        """Start a worker warming up, unless one is already waiting (call with the lock)."""
        if self._standby is not None and self._standby.process.poll() is None:
            return
        fingerprint = code_fingerprint(_manifest())
        options = [] if self._preload_dbt else ["--no-dbt-preload"]
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestration.run_worker", self._module, *options],
            stdin=subprocess.PIPE,
            cwd=os.getcwd(),
            text=True,
        )
        self._standby = Standby(process, self._module, os.getcwd(), fingerprint)

    def _discard_standby(self) -> None:
        if self._standby is not None:
            self._close(self._standby.process)
            self._standby = None

    @staticmethod
    def _close(process: subprocess.Popen) -> None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # EOF: the worker exits without running anything

    def _usable(self, standby: Standby, origin) -> bool:
        repository = origin.repository_origin
        pointer = repository.code_pointer
        return (
            standby.process.poll() is None
            and repository.executable_path == sys.executable
            and getattr(pointer, "module", None) == standby.module
            and os.path.abspath(pointer.working_directory or standby.cwd) == standby.cwd
            and code_fingerprint(_manifest()) == standby.fingerprint
        )

    def launch_run(self, context: LaunchRunContext) -> None:
        if not self._enabled:
            super().launch_run(context)
            return
        from dagster._grpc.types import ExecuteRunArgs

        run = context.dagster_run
        with self._lock:
            standby, self._standby = self._standby, None
            origin = run.job_code_origin
            if standby is None or origin is None or not self._usable(standby, origin):
                # No warm worker fit for this run (it died, or the code changed since it
                # started): the default way, and a fresh worker for the next run.
                if standby is not None:
                    self._close(standby.process)
                self._ensure_standby()
                super().launch_run(context)
                return
            args = ExecuteRunArgs(
                job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
            )
            try:
                standby.process.stdin.write(serialize_value(args) + "\n")
                standby.process.stdin.close()
            except OSError:  # the worker died while waiting: start the run the default way
                self._ensure_standby()
                super().launch_run(context)
                return
            # The next run's worker warms up now, while this run works (its imports take one
            # core for a few seconds; a worker started only after this run would often still
            # be warming up when the next file lands).
            self._ensure_standby()
        self._instance.add_run_tags(
            run.run_id, {PID_TAG: str(standby.process.pid), HOST_TAG: socket.gethostname()}
        )
        self._launched.append(standby.process)
        self._launched = [p for p in self._launched if p.poll() is None]  # reap finished workers

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or PID_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        if run.tags.get(HOST_TAG) != socket.gethostname():
            self._instance.report_engine_event(
                f"Cannot interrupt the run worker: it runs on {run.tags.get(HOST_TAG)}.",
                run,
                cls=self.__class__,
            )
            return False
        try:
            # The worker turns SIGINT into a clean interruption of the run (as the code server's
            # cancel does): steps stop, dbt is terminated, the run ends CANCELED.
            os.kill(int(run.tags[PID_TAG]), signal.SIGINT)
        except ProcessLookupError:
            return False
        return True

    def dispose(self) -> None:
        with self._lock:
            self._discard_standby()
        super().dispose()


class WarmingQueuedRunCoordinator(QueuedRunCoordinator):
    """Dagster's ``QueuedRunCoordinator``; in the daemon it also creates the run launcher as the
    daemon starts (Dagster creates it at the first launch), so that the first run already finds
    a warm worker.

    ``sensor_loop_seconds`` (config, optional): how often the daemon's sensor loop looks for due
    sensors. Dagster's loop waits 5 s between iterations whatever the sensors' own
    ``minimum_interval_seconds`` (``MIN_INTERVAL_LOOP_TIME``, not configurable); a landed file
    then waits 2.5 s on average before the landing sensor even runs. Set in the daemon process
    only (the coordinator is created there as the daemon starts, before its first loop).
    """

    def __init__(self, *args: Any, sensor_loop_seconds: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sensor_loop_seconds = sensor_loop_seconds

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            **super().config_type(),
            "sensor_loop_seconds": Field(Float, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        coordinator = super().from_config_value(inst_data, config_value)
        coordinator._sensor_loop_seconds = config_value.get("sensor_loop_seconds")
        return coordinator

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        if is_daemon_process():
            instance.run_launcher  # noqa: B018 (creating it starts its warm worker)
            if self._sensor_loop_seconds is not None:
                set_sensor_loop_seconds(self._sensor_loop_seconds)


def set_sensor_loop_seconds(seconds: float) -> None:
    """Make the sensor daemon of this process look for due sensors every ``seconds`` (each
    sensor still runs at most once per its ``minimum_interval_seconds``)."""
    from dagster._daemon import sensor as sensor_daemon

    if not hasattr(sensor_daemon, "MIN_INTERVAL_LOOP_TIME"):
        raise RuntimeError(
            "This Dagster version has no dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME: remove "
            "sensor_loop_seconds from run_coordinator.config in dagster.yaml."
        )
    if seconds <= 0:
        raise ValueError(f"sensor_loop_seconds must be positive, not {seconds}.")
    sensor_daemon.MIN_INTERVAL_LOOP_TIME = seconds
