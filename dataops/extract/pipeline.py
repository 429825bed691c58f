"""Run dlt for one declared source: its tables become JSONL files in the source's landing folder.

dlt keeps its state (cursor values, pending packages) under ``$DATAOPS_HOME/dlt``. A run that
fails part way (a page that keeps failing, a schema change) lands nothing and leaves the state as
it was, so the next run starts again from the last completed load: no gap and no duplicate.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dataops.extract.errors import ExtractError
from dataops.extract.resources import resource_for
from dataops.sources.registry import SourceTable

__all__ = ["ExtractError", "ExtractOutcome", "extract", "extract_sources"]

# dlt reads its configuration from the environment: uncompressed files (ingestion sniffs the
# extension), no telemetry, quiet logs.
DLT_ENV = {
    "DATA_WRITER__DISABLE_COMPRESSION": "true",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "RUNTIME__LOG_LEVEL": "WARNING",
}
LAYOUT = "{table_name}/{load_id}.{file_id}.{ext}"


@dataclass
class ExtractOutcome:
    source: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows landed in this run
    files: list[Path] = field(default_factory=list)


def extract_sources(tables: list[SourceTable]) -> dict[str, list[SourceTable]]:
    """The declared tables that are extracted (not delivered as files), by source."""
    found: dict[str, list[SourceTable]] = {}
    for table in tables:
        if table.extract_source is not None:
            found.setdefault(table.source, []).append(table)
    return found


@contextmanager
def _dlt_environment() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in DLT_ENV}
    os.environ.update({key: os.environ.get(key, value) for key, value in DLT_ENV.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _count(counts: dict[str, int], info) -> None:
    for table, rows in (getattr(info, "row_counts", None) or {}).items():
        counts[table] = counts.get(table, 0) + int(rows)


def crash_point(name: str) -> None:
    """Die here like `kill -9` when DATAOPS_CRASH_AT names this point (the crash tests; the same
    variable as the ingestion's fault injection)."""
    if os.environ.get("DATAOPS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _root_cause(error: BaseException) -> BaseException:
    seen = set()
    while error.__cause__ is not None or error.__context__ is not None:
        if id(error) in seen:
            break
        seen.add(id(error))
        if isinstance(error, ExtractError):
            return error
        error = error.__cause__ or error.__context__
    return error


def extract(
    source: str,
    tables: list[SourceTable],
    landing_root: Path,
    home: Path,
    progress: Callable[[str], None] = print,
) -> ExtractOutcome:
    """Extract every table of one source into ``<landing_root>/<source>/<table>/`` with dlt."""
    import dlt
    from dlt.pipeline.exceptions import PipelineStepFailed

    if not tables:
        return ExtractOutcome(source)
    kind = tables[0].extract_source.kind
    outcome = ExtractOutcome(source)
    before = {p for t in tables for p in t.landed_files(landing_root)}
    with _dlt_environment():
        try:
            resources = [resource_for(table) for table in tables]
        except ExtractError:
            raise
        except Exception as error:  # a wrong URL, an unreachable server, a missing table
            raise ExtractError(
                f"extracting source {source} ({kind}): {type(error).__name__}: {error}. Check "
                f"the source's config.meta.extract in {tables[0].declared_in} and its "
                "environment variables."
            ) from error
        pipeline = dlt.pipeline(
            pipeline_name=f"dataops_{source}",
            destination=dlt.destinations.filesystem(
                bucket_url=landing_root.resolve().as_uri(), layout=LAYOUT
            ),
            dataset_name=source,
            pipelines_dir=str(home / "dlt"),
            progress="log" if os.environ.get("DATAOPS_DLT_PROGRESS") else None,
        )
        counts: dict[str, int] = {}
        try:
            if pipeline.has_pending_data:
                # a run that was killed after extracting: its package finishes loading first
                progress(f"{source}: finishing the load an earlier run left pending")
                _count(counts, pipeline.normalize())
                pipeline.load()
            progress(f"extracting {source} ({kind}): {', '.join(t.name for t in tables)}")
            pipeline.extract(resources, loader_file_format="jsonl")
            crash_point("extract_after_extract")
            _count(counts, pipeline.normalize())
            crash_point("extract_after_normalize")
            pipeline.load()
        except PipelineStepFailed as error:
            cause = _root_cause(error)
            if isinstance(cause, ExtractError):
                raise ExtractError(f"{cause} Nothing was landed from this run.") from error
            raise ExtractError(
                f"extracting source {source} ({kind}) failed at dlt step {error.step}: "
                f"{type(cause).__name__}: {cause}. Nothing was landed from this run and the "
                f"incremental state is unchanged: fix the cause, then run `dataops extract "
                f"{source}` again (it resumes from the last completed load)."
            ) from error
    for table in tables:
        outcome.rows[table.name] = int(counts.get(table.name, 0))
    outcome.files = sorted(
        p for t in tables for p in t.landed_files(landing_root) if p not in before
    )
    return outcome
