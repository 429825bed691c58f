"""The landing sensor: a file landing for a declared source starts one run that ingests it and
rebuilds only what is downstream of its raw table.

Which folders to watch comes from the source registry (each table's ``meta.landing``). Files are
recognised by content hash: the cursor keeps the hash of every file currently in the landing
folders, so a file gives exactly one run, also after a daemon restart (the cursor is stored in the
Dagster instance), and a copy of a known file under another name gives none. On its very first
evaluation, files the load ledger already has (loaded by `make run` before the daemon started)
are known and start nothing. A file still being
written (the landing protocol, dataops/ingestion/landing.py) waits for a later tick. New files
found in one tick are grouped by source: one run per source ingests them all (a burst of files
does not queue a run per file; every file still belongs to exactly one run). The ingestion ledger
loads each content once whatever happens, so the cursor is an optimisation, not the safety net.
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetObservation,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dataops.core.settings import load_settings
from dataops.ingestion.landing import ready_files
from dataops.ingestion.ledger import loaded_file_hashes
from dataops.ingestion.loader import file_sha256
from dataops.sources.registry import SourceTable
from orchestration.assets.ingestion import landing_asset_key
from orchestration.assets.translator import raw_asset_key

SENSOR_NAME = "landed_files"
# How often the daemon looks at the landing folders; part of the landing -> marts latency. The
# daemon's sensor loop runs every `sensor_loop_seconds` (orchestration/instance/dagster.yaml;
# Dagster's default loop, 5 s, bounds it otherwise). One evaluation lists the declared landing
# folders and hashes only new files.
SENSOR_INTERVAL_SECONDS = 1
CURSOR_VERSION = 1
TRIGGER_TAG = "dataops/trigger"
SOURCE_TAG = "dataops/source"
FILES_TAG = "dataops/files"


@dataclass(frozen=True)
class LandedFile:
    table: SourceTable
    path: Path
    relative: str
    size: int
    mtime_ns: int
    sha256: str


def read_cursor(cursor: str | None) -> dict[str, list]:
    """``{relative path: [size, mtime_ns, sha256]}`` of the files seen by the previous tick."""
    if not cursor:
        return {}
    data = json.loads(cursor)
    if data.get("v") != CURSOR_VERSION:
        raise ValueError(
            f"Landing sensor cursor version {data.get('v')!r} is not {CURSOR_VERSION}: reset the "
            f"cursor of sensor {SENSOR_NAME!r} in the UI (Sensors > {SENSOR_NAME} > Reset cursor)."
        )
    return data["files"]


def write_cursor(files: Iterable[LandedFile]) -> str:
    entries = {f.relative: [f.size, f.mtime_ns, f.sha256] for f in files}
    return json.dumps({"v": CURSOR_VERSION, "files": entries}, sort_keys=True)


def scan(
    tables: Sequence[SourceTable],
    landing_root: Path,
    seen: dict[str, list],
    settle: float | None = None,
) -> list[LandedFile]:
    """Every complete file in the declared landing folders (the landing protocol: temporary
    names and files changed within the settle window are left for a later tick, and stay out of
    the cursor); hashes are reused while size+mtime match."""
    found = []
    for table in tables:
        ready, _ = ready_files(table, landing_root, settle)
        for path, snapshot in ready:
            relative = path.relative_to(landing_root).as_posix()
            previous = seen.get(relative)
            if previous and previous[0] == snapshot.size and previous[1] == snapshot.mtime_ns:
                digest = previous[2]
            else:
                try:
                    digest = file_sha256(path)
                except OSError:  # renamed or removed since it was listed
                    continue
            found.append(
                LandedFile(table, path, relative, snapshot.size, snapshot.mtime_ns, digest)
            )
    return found


def new_files(found: Sequence[LandedFile], seen: dict[str, list]) -> list[LandedFile]:
    """Files whose content the previous tick did not know, one per content."""
    known = {entry[2] for entry in seen.values()}
    fresh = []
    for landed in found:
        if landed.sha256 not in known:
            known.add(landed.sha256)
            fresh.append(landed)
    return fresh


def baseline(found: Sequence[LandedFile], loaded: set[str]) -> dict[str, list]:
    """A cursor holding the found files whose content the load ledger already has."""
    return {f.relative: [f.size, f.mtime_ns, f.sha256] for f in found if f.sha256 in loaded}


def run_key(source: str, files: Sequence[LandedFile]) -> str:
    digest = hashlib.sha256("\n".join(sorted(f.sha256 for f in files)).encode()).hexdigest()
    return f"{source}:{digest[:32]}"


def run_requests(fresh: Sequence[LandedFile], asset_graph) -> list[RunRequest]:
    """One run per source: its raw tables with new files and everything downstream of them,
    with every check of those assets: the dbt tests, and the source freshness checks
    (``freshness_sla``) of the raw tables it loads, evaluated after the dbt steps."""
    by_source: dict[str, list[LandedFile]] = defaultdict(list)
    for landed in fresh:
        by_source[landed.table.source].append(landed)
    requests = []
    for source, files in sorted(by_source.items()):
        raw_keys = sorted({raw_asset_key(f.table.source, f.table.name) for f in files}, key=str)
        selection = AssetSelection.assets(*raw_keys).downstream()
        asset_keys = sorted(selection.resolve(asset_graph), key=str)
        check_keys = sorted(selection.resolve_checks(asset_graph), key=str)
        names = ", ".join(sorted(f.relative for f in files))
        requests.append(
            RunRequest(
                run_key=run_key(source, files),
                asset_selection=asset_keys,
                asset_check_keys=check_keys,
                tags={
                    TRIGGER_TAG: SENSOR_NAME,
                    SOURCE_TAG: source,
                    FILES_TAG: names if len(names) <= 1000 else names[:997] + "...",
                },
            )
        )
    return requests


def observations(fresh: Sequence[LandedFile]) -> list[AssetObservation]:
    return [
        AssetObservation(
            asset_key=landing_asset_key(f.table),
            metadata={"file": f.relative, "sha256": f.sha256, "bytes": f.size},
        )
        for f in fresh
    ]


def build_landing_sensor(tables: Sequence[SourceTable], target: AssetSelection) -> SensorDefinition:
    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        target=target,
        description=(
            "Starts a run when a file lands in a declared landing folder: ingest it, then rebuild "
            "only the assets downstream of its raw table. One file content, one run."
        ),
    )
    def landed_files(context: SensorEvaluationContext) -> SensorResult:
        settings = load_settings()
        seen = read_cursor(context.cursor)
        found = scan(tables, settings.landing_dir, seen)
        if context.cursor is None:
            # First evaluation (a new instance): files already loaded, e.g. by `make run` before
            # the daemon ever started, are known, not new; only the others start runs.
            loaded = loaded_file_hashes(settings.warehouse_path)
            if loaded is None:
                return SensorResult(
                    skip_reason=SkipReason("The warehouse is being written; looking again soon.")
                )
            seen = baseline(found, loaded)
        fresh = new_files(found, seen)
        cursor = write_cursor(found)
        if not fresh:
            return SensorResult(
                skip_reason=SkipReason(f"No new files under {settings.landing_dir}."), cursor=cursor
            )
        return SensorResult(
            run_requests=run_requests(fresh, context.repository_def.asset_graph),
            asset_events=observations(fresh),
            cursor=cursor,
        )

    return landed_files
