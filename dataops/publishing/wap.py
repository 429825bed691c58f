"""Write -> audit -> publish: one release build, from its schemas to the switch.

    with ReleaseBuild(settings, trigger="deploy") as release:
        outcome = run_dbt(settings, dbt_args("build", "prod", dbt_vars=release.dbt_vars, ...))
        result = release.finish(outcome.success, outcome.failures)

``ReleaseBuild`` takes the publishing lock (one release at a time per warehouse), records the
release, prepares its schemas (views on the current release for what is not rebuilt, copies of
the incremental tables that are), and ``finish`` reads dbt's artefacts: when every model, seed,
snapshot, data test, unit test and contract passed it re-points the published relations in one
transaction; otherwise it publishes nothing, records the failing tests, keeps the build for
inspection and records an ``publishing.audit_failed`` event (and posts it to ALERT_WEBHOOK_URL).
A process that dies in between leaves the release ``building``; the next one marks it abandoned.

DuckDB: when dbt runs in this process (``build_release``), the release first takes the file
(:func:`hold_file`, retrying with jittered backoff while readers have it open) and keeps it open
to the end; dbt-duckdb's own ``duckdb.connect`` of the same file then gets this process's open
database instead of meeting a reader's lock. A reader that reconnects every few milliseconds can
otherwise take the file in each gap of the build (DuckDB keeps no queue) and fail it.

Where releases go is a :class:`PublishedWarehouse`: the target's DuckDB file by default
(:func:`duckdb_warehouse`), or a PostgreSQL database (``dataops/engines/postgres.py`` makes one
for ``dataops engines build postgres``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock

from dataops.core.alerts import post_alert
from dataops.core.events import ensure_events, record_event
from dataops.core.git import git_commit
from dataops.core.settings import Settings
from dataops.core.warehouse import is_lock_error, with_warehouse_lock_retry
from dataops.dbt.runner import DbtOutcome, dbt_args, dbt_env, invoke, run_dbt
from dataops.publishing import releases as rel
from dataops.publishing.connections import Connection

RELEASE_VAR = "dataops_release"  # read by macros/utils/generate_schema_name.sql
KEEP_ENV = "DATAOPS_RELEASES_KEEP"
DEFAULT_KEEP = 5
LOCK_WAIT_SECONDS = 3600.0
# How long a release build waits for readers to let go of the DuckDB file before giving up.
FILE_WAIT_ENV = "DATAOPS_RELEASE_FILE_WAIT_SECONDS"
DEFAULT_FILE_WAIT_SECONDS = 600.0
PUBLISHED_TYPES = ("model", "seed", "snapshot")


def keep_count() -> int:
    raw = os.environ.get(KEEP_ENV) or str(DEFAULT_KEEP)
    if not raw.isdigit() or int(raw) < 1:
        raise rel.PublishingError(f"{KEEP_ENV}={raw!r}: expected a whole number of releases >= 1.")
    return int(raw)


def releases_dir(settings: Settings) -> Path:
    """Per-release dbt artefacts (manifest.json, run_results.json, logs)."""
    return settings.home / "releases"


def file_wait_seconds() -> float:
    raw = os.environ.get(FILE_WAIT_ENV) or str(DEFAULT_FILE_WAIT_SECONDS)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise rel.PublishingError(f"{FILE_WAIT_ENV}={raw!r}: expected a number of seconds > 0.")
    return seconds


@contextmanager
def hold_file(path: Path, wait: float) -> Iterator[None]:
    """Open the DuckDB file for writing, retrying while other processes (readers) have it open,
    for at most ``wait`` seconds, and keep it open for the block. In this process every later
    ``duckdb.connect`` of the file (dbt-duckdb's included) reuses the open database."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def waiting(seconds: float) -> None:
        print(
            f"publishing: waiting for readers to close {path} ({seconds:.0f} s so far, "
            f"at most {wait:.0f} s)",
            flush=True,
        )

    try:
        con = with_warehouse_lock_retry(
            lambda: duckdb.connect(str(path)), wait, progress=waiting
        )
    except duckdb.IOException as error:
        if not is_lock_error(error):
            raise
        raise rel.PublishingError(
            f"Could not open {path} for the release: other processes (readers) kept it open for "
            f"{wait:.0f} s and DuckDB admits no writer while a reader has the file. Nothing was "
            "built or published. Stop the readers or have them reconnect less often (or read a "
            f"copy of the file), then retry; {FILE_WAIT_ENV} sets how long to wait. ({error})"
        ) from error
    try:
        yield
    finally:
        con.close()


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The warehouse, waiting while another process (a reader, a sensor) holds its lock."""
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    return with_warehouse_lock_retry(lambda: duckdb.connect(str(settings.warehouse_path)))


@dataclass(frozen=True)
class PublishedWarehouse:
    """Where one target's releases are published, and how to reach it."""

    target: str  # the dbt target release builds run on
    label: str  # how messages name it (a file path, postgresql://host:port/db)
    connect: Callable[[], AbstractContextManager[Connection]]
    # One release at a time: held from recording the release to its switch; raises
    # TimeoutError after the given seconds.
    lock: Callable[[float], AbstractContextManager[None]]
    releases_dir: Path  # per-release dbt artefacts (manifest.json, run_results.json, logs)
    # Keeps the warehouse open for a release whose dbt runs in this process (DuckDB: the file,
    # see hold_file); None where nothing needs holding (a server).
    hold: Callable[[], AbstractContextManager[None]] | None = None


@contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """A lock file beside the warehouse (filelock's Timeout is a TimeoutError)."""
    lock = FileLock(str(path))
    lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        lock.release()


def duckdb_warehouse(settings: Settings) -> PublishedWarehouse:
    """The target's DuckDB file (prod: ``$DATAOPS_HOME/warehouse_prod.duckdb``)."""
    path = settings.warehouse_path
    return PublishedWarehouse(
        target=settings.target,
        label=str(path),
        connect=lambda: connect(settings),
        lock=lambda timeout: file_lock(Path(f"{path}.publish.lock"), timeout),
        releases_dir=releases_dir(settings),
        hold=lambda: hold_file(path, file_wait_seconds()),
    )


@dataclass
class ReleaseResult:
    release_id: int
    published: bool
    failures: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)  # where the build can be inspected
    switch_seconds: float | None = None
    dropped: list[int] = field(default_factory=list)
    target_dir: Path | None = None
    # Wall seconds of the release's steps (prepare: its schemas and incremental copies; dbt: the
    # build and its audit; publish: switch, cleanup, events), for `describe` and the bench.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return rel.release_name(self.release_id)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def build_failures(run_results: dict[str, Any]) -> list[str]:
    """Failing (error-severity) tests, unit tests, contracts and models, named, from run_results."""
    found = []
    for result in run_results.get("results", []):
        if result.get("status") in ("error", "fail", "runtime error"):
            message = (result.get("message") or "").strip().splitlines()
            found.append(
                f"{result['unique_id']}: {result['status']}"
                + (f": {message[0]}" if message else "")
            )
    return found


def pointers_after(
    manifest: dict[str, Any],
    run_results: dict[str, Any],
    release_id: int,
    current: rel.Release | None,
    partial: bool,
) -> tuple[dict[str, rel.Pointer], list[str]]:
    """The release's pointers: what it built, plus (partial builds) the rest of the current
    release; a full build drops what the project no longer has. Also returns the built ids."""
    nodes = manifest.get("nodes", {})
    built = {
        r["unique_id"]
        for r in run_results.get("results", [])
        if r.get("status") == "success"
        and r["unique_id"] in nodes
        and nodes[r["unique_id"]]["resource_type"] in PUBLISHED_TYPES
    }
    pointers = {
        key: pointer
        for key, pointer in (current.pointers if current else {}).items()
        if partial or pointer.node in nodes
    }
    for uid in sorted(built):
        node = nodes[uid]
        materialized = node.get("config", {}).get("materialized", "")
        if materialized == "ephemeral":
            continue
        match = rel.RELEASE_SCHEMA.fullmatch(node["schema"])
        if not match or int(match["id"]) != release_id:
            raise rel.PublishingError(
                f"{uid} was built into schema {node['schema']!r}, not a schema of release "
                f"r{release_id}: macros/utils/generate_schema_name.sql must add the release suffix."
            )
        pointer = rel.Pointer(
            schema=match["base"],
            name=node["alias"],
            physical=node["schema"],
            node=uid,
            materialized=materialized,
        )
        pointers[pointer.published] = pointer
    return pointers, sorted(built)


def changed_nodes(manifest: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """Models, seeds and snapshots whose code differs from the previous release's (or are new or
    removed)."""

    def checksums(m: dict[str, Any]) -> dict[str, str]:
        return {
            uid: (node.get("checksum") or {}).get("checksum", "")
            for uid, node in m.get("nodes", {}).items()
            if node.get("resource_type") in PUBLISHED_TYPES
        }

    new, old = checksums(manifest), checksums(previous)
    return sorted(uid for uid in new.keys() | old.keys() if new.get(uid) != old.get(uid))


def published_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The release build's manifest with every node at its published name (``marts.fct_orders``
    rather than ``marts__r7.fct_orders``): the manifest PR builds defer to and compare with."""
    result = json.loads(json.dumps(manifest))
    for node in result.get("nodes", {}).values():
        match = rel.RELEASE_SCHEMA.fullmatch(node.get("schema") or "")
        if not match:
            continue
        if node.get("relation_name"):
            node["relation_name"] = node["relation_name"].replace(
                f'"{node["schema"]}"', f'"{match["base"]}"'
            )
        node["schema"] = match["base"]
    return result


class ReleaseBuild:
    """One release: enter to lock, record and prepare it; run dbt with ``dbt_vars`` and
    ``target_dir``; then ``finish``. Leaving without ``finish`` (an exception) fails it."""

    def __init__(
        self,
        settings: Settings,
        *,
        trigger: str,
        selection: str = "all",
        full_refresh: bool = False,
        dagster_run_id: str | None = None,
        commit: str | None = None,
        warehouse: PublishedWarehouse | None = None,
        dbt_in_process: bool = False,
    ) -> None:
        self.settings = settings
        self.warehouse = warehouse or duckdb_warehouse(settings)
        self.trigger = trigger
        self.selection = selection
        self.selected: set[str] | None = None
        self.full_refresh = full_refresh
        self.dagster_run_id = dagster_run_id
        self.commit = commit if commit is not None else git_commit()
        # dbt runs in this process (build_release): hold the warehouse for the whole release.
        # Not for dbt in a subprocess (Dagster's steps): it could not open a file held here.
        self.dbt_in_process = dbt_in_process
        self.release_id: int | None = None
        self.current: rel.Release | None = None
        self.result: ReleaseResult | None = None
        self.timings: dict[str, float] = {}
        self._locked = ExitStack()

    @property
    def name(self) -> str:
        assert self.release_id is not None, "enter the ReleaseBuild first"
        return rel.release_name(self.release_id)

    @property
    def dbt_vars(self) -> dict[str, str]:
        return {RELEASE_VAR: self.name}

    @property
    def target_dir(self) -> Path:
        return self.warehouse.releases_dir / self.name

    def __enter__(self) -> ReleaseBuild:
        try:
            self._locked.enter_context(self.warehouse.lock(LOCK_WAIT_SECONDS))
        except TimeoutError as error:
            raise rel.PublishingError(
                f"Another release of {self.warehouse.label} has been building for over "
                f"{LOCK_WAIT_SECONDS:.0f} s."
            ) from error
        try:
            if self.dbt_in_process and self.warehouse.hold is not None:
                self._locked.enter_context(self.warehouse.hold())
            with self.warehouse.connect() as con:
                rel.ensure_releases(con)
                abandoned = rel.recover_interrupted(con)
                for rid in abandoned:
                    print(f"publishing: release r{rid} was interrupted; marked abandoned")
                self.current = rel.current_release(con)
                self.release_id = rel.begin_release(
                    con,
                    trigger=self.trigger,
                    selection=self.selection,
                    git_commit=self.commit,
                    dagster_run_id=self.dagster_run_id,
                )
        except BaseException:
            self._locked.close()
            raise
        self.target_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.result is None and self.release_id is not None:
                self.finish(
                    False,
                    [
                        f"{self.trigger} stopped before the audit: "
                        f"{exc_type.__name__ if exc_type else 'no result'}: {exc}"
                    ],
                )
        finally:
            self._locked.close()

    def prepare(self, selected: set[str] | None) -> None:
        """Ready the release's schemas for a build of ``selected`` unique ids (None: all)."""
        assert self.release_id is not None, "enter the ReleaseBuild first"
        if self.current is None and selected is not None:
            raise rel.PublishingError(
                f"{self.warehouse.label} has no published release yet, so a partial "
                "build has nothing to build on: run a full release first (`dataops deploy`; "
                "on PostgreSQL `dataops engines build postgres` without --select)."
            )
        self.selected = selected
        started = time.perf_counter()
        with self.warehouse.connect() as con:
            rel.prepare_release(
                con, self.release_id, self.current, selected, full_refresh=self.full_refresh
            )
        self.timings["prepare"] = time.perf_counter() - started

    def finish(self, success: bool, failures: Sequence[str] = ()) -> ReleaseResult:
        """Publish the release when the build and every test passed; else record the failure."""
        assert self.release_id is not None
        started = time.perf_counter()
        manifest_path = self.target_dir / "manifest.json"
        manifest = _read_json(manifest_path)
        run_results = _read_json(self.target_dir / "run_results.json")
        failures = list(dict.fromkeys([*build_failures(run_results), *failures]))
        ok = success and not failures and bool(manifest) and bool(run_results)
        if success and not (manifest and run_results):
            failures.append(f"dbt wrote no manifest/run_results in {self.target_dir}")
        result = ReleaseResult(self.release_id, False, failures, target_dir=self.target_dir)
        with self.warehouse.connect() as con:
            ensure_events(con)
            if ok:
                pointers, built = pointers_after(
                    manifest,
                    run_results,
                    self.release_id,
                    self.current,
                    partial=self.selected is not None,
                )
                previous = (
                    _read_json(Path(self.current.manifest_path))
                    if (self.current and self.current.manifest_path)
                    else {}
                )
                result.built, result.changed = built, changed_nodes(manifest, previous)
                result.switch_seconds = rel.switch(
                    con,
                    self.release_id,
                    pointers,
                    built=built,
                    changed=result.changed,
                    manifest_path=str(manifest_path),
                )
                result.published = True
                cleaning = time.perf_counter()
                result.dropped = rel.cleanup(con, keep_count())
                self.timings["cleanup"] = time.perf_counter() - cleaning
                record_event(
                    con,
                    "publishing.published",
                    status="published",
                    dagster_run_id=self.dagster_run_id,
                    message=f"release {self.name} ({self.trigger}): {len(built)} relations built",
                    details={
                        "release": self.name,
                        "commit": self.commit,
                        "built": built,
                        "changed": result.changed,
                        "switch_seconds": result.switch_seconds,
                        "dropped_releases": result.dropped,
                    },
                )
            else:
                rel.finish_failed(
                    con,
                    self.release_id,
                    failures=failures,
                    built=[
                        r["unique_id"]
                        for r in run_results.get("results", [])
                        if r.get("status") == "success"
                    ],
                    manifest_path=str(manifest_path) if manifest else None,
                )
                result.schemas = sorted(rel.release_schemas(con).get(self.release_id, []))
                payload = {
                    "event": "publishing.audit_failed",
                    "release": self.name,
                    "trigger": self.trigger,
                    "commit": self.commit,
                    "failures": failures,
                    "inspect_schemas": result.schemas,
                    "warehouse": self.warehouse.label,
                    "dagster_run_id": self.dagster_run_id,
                }
                delivery = post_alert(payload)
                record_event(
                    con,
                    "publishing.audit_failed",
                    status="failed",
                    dagster_run_id=self.dagster_run_id,
                    message=f"release {self.name} not published: {len(failures)} failure(s)",
                    details={**payload, "webhook": delivery},
                )
        result.timings = {**self.timings, "publish": time.perf_counter() - started}
        self.result = result
        return result


def selected_nodes(
    settings: Settings,
    release: ReleaseBuild,
    select: Sequence[str],
    exclude: Sequence[str],
    dbt_vars: dict[str, Any],
) -> set[str] | None:
    """Unique ids of the models, seeds and snapshots a selection builds (None: everything).

    `dbt ls` with the build's own vars and target folder, so the build reuses its parse."""
    if not select and not exclude:
        return None
    args = dbt_args(
        "ls",
        release.warehouse.target,
        select=select,
        exclude=exclude,
        dbt_vars=dbt_vars,
        extra=[
            "--resource-types",
            *PUBLISHED_TYPES,
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--target-path",
            str(release.target_dir),
            "--quiet",
        ],
    )
    result = invoke(args, dbt_env(settings, extra={"DBT_LOG_PATH": str(release.target_dir)}))
    if not result.success:
        raise rel.PublishingError(f"dbt ls {' '.join(select)} failed: {result.exception}")
    return {json.loads(line)["unique_id"] for line in result.result or []}


def build_release(
    settings: Settings,
    *,
    trigger: str,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extra_vars: dict[str, Any] | None = None,
    full_refresh: bool = False,
    warehouse: PublishedWarehouse | None = None,
) -> tuple[ReleaseResult, DbtOutcome]:
    """`dbt build` of ``select`` (default everything) as one release, published if it passes.

    A selection builds just those nodes on top of the current release (a partial release).
    ``warehouse``: where to publish (default the target's DuckDB file)."""
    selection = " ".join([*select, *(f"--exclude {e}" for e in exclude)]) or "all"
    with ReleaseBuild(
        settings,
        trigger=trigger,
        selection=selection,
        full_refresh=full_refresh,
        warehouse=warehouse,
        dbt_in_process=True,
    ) as release:
        dbt_vars = {**(extra_vars or {}), **release.dbt_vars}
        release.prepare(selected_nodes(settings, release, select, exclude, dbt_vars))
        extra = ["--target-path", str(release.target_dir)]
        if full_refresh:
            extra.append("--full-refresh")
        args = dbt_args(
            "build",
            release.warehouse.target,
            select=select,
            exclude=exclude,
            dbt_vars=dbt_vars,
            extra=extra,
        )
        started = time.perf_counter()
        outcome = run_dbt(settings, args, extra_env={"DBT_LOG_PATH": str(release.target_dir)})
        release.timings["dbt"] = time.perf_counter() - started
        failures = [f"dbt error: {outcome.exception}"] if outcome.exception else []
        result = release.finish(outcome.success, failures)
    return result, outcome


def describe(result: ReleaseResult, failures: Iterable[str] | None = None) -> list[str]:
    """Lines telling what happened to a release (printed by the commands)."""
    if result.published:
        lines = [
            f"Published release {result.name}: {len(result.built)} relations built, "
            f"{len(result.changed)} changed, switched in {result.switch_seconds:.3f} s"
        ]
        if result.dropped:
            lines.append(f"  cleaned up releases {', '.join(f'r{i}' for i in result.dropped)}")
        if result.timings:
            lines.append(
                "  steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
            )
        return lines
    lines = [
        f"Not published: release {result.name} failed its audit; the published relations "
        "are unchanged."
    ]
    lines += [f"  FAILED {f}" for f in (failures if failures is not None else result.failures)]
    if result.schemas:
        lines.append(
            f"  Inspect the unpublished build in schemas {', '.join(result.schemas)} "
            f"(artefacts {result.target_dir})."
        )
    return lines
