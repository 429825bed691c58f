"""dbt with its project parsed ahead of time, for a process that runs dbt later.

A new ``dbt build`` process spends seconds before its first model on a 2-core machine: it imports
dbt and the adapter, reads ``partial_parse.msgpack`` and checks every project file, and writes
``manifest.json`` before and after the build. A process that knows it will run dbt soon (the
Dagster run worker, orchestration/run_worker.py, while it waits for its run) calls
:func:`preload`: the imports and the parse happen then, off the latency path. A dbt command is
later run in a thread of this process with that manifest (dbt's programmatic invocation,
through :func:`dataops.dbt.runner.invoke`): :meth:`PreloadedProject.start` returns a
:class:`DbtThread`, which behaves as the ``subprocess.Popen`` of ``dbt ... --log-format json``
would (its ``stdout`` gives dbt's structured log lines at level info and above, ``returncode``
dbt's exit code), so a caller that reads dbt's output (dagster-dbt's invocation) sees the same
events.

The parsed project is used only for what it was parsed from: the same project, profiles and
target, no ``--vars`` or selectors (both change what a parse produces) and no project file changed
since (:func:`project_fingerprint`); otherwise :func:`preloaded` answers None and the caller runs
dbt as a subprocess. After each command dbt-duckdb's database is closed, so this process holds no
warehouse lock between commands (one writer at a time: the ``warehouse`` pool).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataops.core.fingerprint import stat_fingerprint
from dataops.dbt.runner import QUIET_ENV, invoke
from dataops.dbt.templates import warm_templates

# What dbt parses: these files, and the folders dbt_project.yml names (model-paths, ...).
PROJECT_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml", "selectors.yml")
PATH_KEYS = {  # dbt_project.yml key: dbt's default
    "model-paths": ["models"],
    "macro-paths": ["macros"],
    "seed-paths": ["seeds"],
    "test-paths": ["tests"],
    "snapshot-paths": ["snapshots"],
    "analysis-paths": ["analyses"],
    "docs-paths": [],
    "packages-install-path": "dbt_packages",
}
# Arguments after which the preloaded manifest may differ from what a new dbt process would parse.
PARSE_CHANGING_ARGS = ("--vars", "--selector", "--project-dir", "--profiles-dir", "--profile")
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
STDOUT_LEVELS = ("info", "warn", "error")  # dbt's stdout at its default log level


def project_folders(project_dir: Path) -> list[str]:
    """The folders of the project's files, as its dbt_project.yml names them."""
    import yaml

    try:
        config = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    folders: list[str] = []
    for key, default in PATH_KEYS.items():
        value = config.get(key, default)
        folders.extend([value] if isinstance(value, str) else list(value))
    return folders


def project_fingerprint(project_dir: Path) -> str:
    """A digest of the path, size and mtime of every file dbt parses in ``project_dir``."""
    paths = [project_dir / name for name in PROJECT_FILES]
    for folder in project_folders(project_dir):
        root = project_dir / folder
        if root.is_dir():
            paths.extend(p for p in root.rglob("*") if p.is_file())
    return stat_fingerprint(paths)


def option(args: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in a dbt argument list (``--target dev`` or ``--target=dev``)."""
    for at, arg in enumerate(args):
        if arg == name and at + 1 < len(args):
            return args[at + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@dataclass
class PreloadedProject:
    """A dbt project parsed in this process for one profiles folder and target."""

    project_dir: Path
    profiles_dir: Path
    target: str
    manifest: Any  # dbt.contracts.graph.manifest.Manifest
    fingerprint: str

    def serves(self, args: Sequence[str], env: Mapping[str, str], project_dir: Path) -> bool:
        """True when running ``args`` on this manifest is what a new dbt process would do: same
        project, profiles and target, nothing that changes the parse, no project file changed."""
        return (
            Path(project_dir).resolve() == self.project_dir
            and Path(env.get("DBT_PROFILES_DIR", "")).resolve() == self.profiles_dir
            and option(args, "--target") == self.target
            and not any(option(args, name) is not None for name in PARSE_CHANGING_ARGS)
            and project_fingerprint(self.project_dir) == self.fingerprint
        )

    def start(self, args: Sequence[str], env: Mapping[str, str]) -> DbtThread:
        """Run ``dbt <args>`` (no executable) with ``env`` in a thread, on the parsed manifest."""
        return DbtThread(self.manifest, args, env)


_PRELOADED: dict[tuple[Path, Path, str], PreloadedProject] = {}


def _key(project_dir: Path, profiles_dir: Path, target: str) -> tuple[Path, Path, str]:
    return Path(project_dir).resolve(), Path(profiles_dir).resolve(), target


def preload(project_dir: Path, profiles_dir: Path, target: str) -> PreloadedProject:
    """Parse the project now (from the prepared ``partial_parse.msgpack``, as a new dbt process
    would; in a scratch target folder, so the prepared artefacts are left as they are), and
    compile the templates of the macros a command will call (dataops/dbt/templates.py)."""
    key = _key(project_dir, profiles_dir, target)
    fingerprint = project_fingerprint(key[0])
    prepared = Path(os.environ.get("DBT_TARGET_PATH", "target"))
    if not prepared.is_absolute():
        prepared = key[0] / prepared
    scratch = Path(tempfile.mkdtemp(prefix="dbt-preload-"))
    try:
        if (prepared / PARTIAL_PARSE_FILE).is_file():
            shutil.copy(prepared / PARTIAL_PARSE_FILE, scratch / PARTIAL_PARSE_FILE)
        env = {
            **os.environ,
            **QUIET_ENV,
            "DBT_PROFILES_DIR": str(key[1]),
            "DBT_PROJECT_DIR": str(key[0]),
            "DBT_TARGET_PATH": str(scratch),
            "DBT_LOG_PATH": str(scratch),
        }
        args = ["parse", "--target", target, "--log-level", "none", "--no-write-json"]
        result = invoke(args, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not result.success:
        raise RuntimeError(f"dbt parse of {key[0]} (target {target}) failed: {result.exception}")
    warm_templates(result.result)  # the macros' templates too, while this process waits
    project = PreloadedProject(key[0], key[1], target, result.result, fingerprint)
    _PRELOADED[key] = project
    return project


def preloaded(project_dir: Path, profiles_dir: Path, target: str) -> PreloadedProject | None:
    """The project :func:`preload` parsed in this process, if any."""
    return _PRELOADED.get(_key(project_dir, profiles_dir, target))


class DbtCancelled(KeyboardInterrupt):
    """Raised in the dbt thread when the command is interrupted (dbt handles it as Ctrl-C)."""


class _Lines:
    """The ``stdout`` of a :class:`DbtThread`: dbt's JSON log lines (bytes) until it ends."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self.closed = False

    def put(self, line: bytes | None) -> None:
        self._queue.put(line)

    def __iter__(self) -> Iterator[bytes]:
        while not self.closed:
            line = self._queue.get()
            if line is None:
                self.closed = True
                return
            yield line

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DbtThread:
    """One dbt command running in a thread of this process, seen as a dbt subprocess is.

    ``args`` (for messages) start with ``dbt``; ``stdout`` yields what ``--log-format json``
    prints; ``wait()``/``poll()``/``returncode`` give dbt's exit code (0 success, 1 a failed
    node, 2 an error); ``send_signal(SIGINT)`` interrupts it as Ctrl-C interrupts dbt: running
    queries are cancelled and dbt stops once the current nodes end.
    """

    def __init__(self, manifest: Any, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.args = ["dbt", *args]
        self.returncode: int | None = None
        self.stdout = _Lines()
        # dbt prints nothing itself (its events reach ``stdout`` through the callback); its debug
        # log file (dbt.log in DBT_LOG_PATH) is written as a dbt process writes it.
        file_level = env.get("DBT_LOG_LEVEL_FILE", "debug")
        self._invoke_args = [*args, "--log-level", "none", "--log-level-file", file_level]
        self._env = dict(env)
        self._manifest = manifest
        self._interrupted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbt", daemon=True)
        self._thread.start()

    def _on_event(self, msg: Any) -> None:
        from dbt_common.events.functions import msg_to_json
        from dbt_common.exceptions.base import env_secrets, scrub_secrets

        if self._interrupted.is_set() and threading.current_thread() is self._thread:
            raise DbtCancelled()
        if msg.info.level in STDOUT_LEVELS:
            self.stdout.put(scrub_secrets(msg_to_json(msg), env_secrets()).encode())

    def _run(self) -> None:
        code = 2
        try:
            result = invoke(
                self._invoke_args, self._env, manifest=self._manifest, callbacks=[self._on_event]
            )
            code = 0 if result.success else (2 if result.exception is not None else 1)
            if result.exception is not None and not isinstance(result.exception, KeyboardInterrupt):
                self._error_line(f"Encountered an error:\n{result.exception}")
        except BaseException as error:  # noqa: BLE001 (reported as dbt reports its own errors)
            self._error_line(f"Encountered an error:\n{error}")
        finally:
            close_warehouse_connections()
            self.returncode = code
            self.stdout.put(None)

    def _error_line(self, message: str) -> None:
        """An error in dbt's JSON log shape (dagster-dbt collects error-level messages)."""
        line = {
            "info": {"level": "error", "msg": message, "name": "MainEncounteredError"},
            "data": {},
        }
        self.stdout.put(json.dumps(line).encode())

    def poll(self) -> int | None:
        return self.returncode if not self._thread.is_alive() else None

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode if self.returncode is not None else 2

    def send_signal(self, sig: int) -> None:
        if sig not in (signal.SIGINT, signal.SIGTERM):
            raise ValueError(f"A dbt thread can only be interrupted (SIGINT/SIGTERM), not {sig}.")
        self._interrupted.set()
        _raise_in(self._thread, DbtCancelled)
        cancel_open_queries()

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGTERM)


def _raise_in(thread: threading.Thread, exception: type[BaseException]) -> None:
    """Raise ``exception`` in ``thread`` at its next Python instruction (dbt's main loop turns a
    KeyboardInterrupt into cancelling its open queries and stopping)."""
    import ctypes

    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(exception)
        )


def cancel_open_queries() -> None:
    """Cancel the queries the dbt adapters of this process are running."""
    from dbt.adapters.factory import FACTORY

    for adapter in list(FACTORY.adapters.values()):
        with contextlib.suppress(Exception):
            adapter.cancel_open_connections()


def close_warehouse_connections() -> None:
    """Close dbt-duckdb's database in this process: the file's lock is released at once, as when
    a dbt process exits (dbt-duckdb otherwise keeps it open for the next command)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # no dbt-duckdb: nothing to close
        return
    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        with contextlib.suppress(Exception):
            environment.close()
