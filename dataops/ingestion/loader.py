"""Load landed files into raw tables, one schema per source, exactly once per file content.

What to load and how to read it comes from the source registry (dataops/sources/registry.py). For
each landed file, in name order:

1. its content hash (SHA-256) is looked up in the ledger: content already loaded is skipped,
   whatever the file's name, so a file delivered twice loads once;
2. it is read whole into a temporary table and validated against the declaration
   (validation.py); a file that fails is moved to the quarantine folder with a machine-readable
   reason, recorded in the ledger and the event log, and the other files carry on;
3. a valid file is inserted in ONE transaction together with its ledger entry and its events
   (``file.loaded``, and ``file.schema_drift`` when it brought new columns), so a crash at any
   point leaves the file fully loaded or not at all. A changed file under a known name is a new
   delivery: its ledger entry names the content it follows (``previous_file_hash``).

Every row carries its lineage: file name, file content hash, batch id and load time. DuckDB
allows one writer per database file: a second loader waits for the lock (``DATAOPS_LOCK_TIMEOUT``
seconds, default 600) with a message, then fails with a clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dataops.core import events
from dataops.core.sql import quote_identifier, quote_literal
from dataops.ingestion import landing, ledger, quarantine, validation
from dataops.ingestion.faults import crash_point
from dataops.ingestion.validation import INCOMING, FileRejected, Violation
from dataops.sources.registry import SourceTable

HASH_CHUNK = 1 << 20
LOCK_TIMEOUT_ENV = "DATAOPS_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 600.0
# Raw CSV/JSON columns are text. DuckDB 2.0's default string compression (dict_fsst) spends 3-4x
# the whole load time analysing them at checkpoint (docs/benchmarks.md, "Ingestion"); stored
# uncompressed, raw text tables load ~4x faster and take ~2.4x the disk. So raw text columns are
# declared ``using compression uncompressed``, while the lineage columns, one value per file, are
# dictionary-compressed (``dict_fsst``): a 64-character file hash per row stored plainly cost more
# than reading the file. A raw table created before per-column compression (its DDL names none)
# still loads with dict_fsst off for the whole connection (LEGACY_TEXT_SETTING).
# Times with a zone (Parquet TIMESTAMP WITH TIME ZONE) become UTC when stored into a timestamp.
LOAD_SETTINGS = ("set TimeZone = 'UTC'",)
LEGACY_TEXT_SETTING = "set disabled_compression_methods = 'dict_fsst'"
TEXT_STORAGE = "using compression uncompressed"


class _StageInstead(Exception):
    """A direct insert failed converting a value: read the file through the staged copy."""


class WarehouseLocked(RuntimeError):
    """Another process holds the warehouse's write lock for longer than we may wait."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class QuarantinedFile:
    path: Path  # where it was delivered
    quarantined_to: Path
    reason_file: Path
    violations: list[Violation]

    @property
    def message(self) -> str:
        first = self.violations[0]
        more = f" (+{len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        return (
            f"{self.path}: quarantined [{first.rule}] {first.message}{more}; reason in "
            f"{self.reason_file}; fix the file, then run: dataops replay {self.quarantined_to}"
        )


@dataclass
class TableOutcome:
    """What one ingestion run did for one source table."""

    key: str
    files_loaded: int = 0
    rows_loaded: int = 0
    files_skipped: int = 0
    errors: list[str] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (file, loaded earlier)
    waiting: list[Path] = field(default_factory=list)  # still being written: a later run
    quarantined: list[QuarantinedFile] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)


@dataclass
class IngestionSummary:
    batch_id: str
    tables: dict[str, TableOutcome]

    @property
    def files_loaded(self) -> int:
        return sum(t.files_loaded for t in self.tables.values())

    @property
    def rows_loaded(self) -> int:
        return sum(t.rows_loaded for t in self.tables.values())

    @property
    def quarantined(self) -> list[QuarantinedFile]:
        return [q for t in self.tables.values() for q in t.quarantined]

    @property
    def errors(self) -> list[str]:
        """One message per file that was not loaded (quarantined files included)."""
        return [e for t in self.tables.values() for e in t.errors]


def reader_sql(table: SourceTable) -> str:
    """A select over one file (path as parameter 1) returning its columns as delivered.

    Used by the other engines' loaders; the DuckDB loader reads through validation.stage, which
    does not sniff (a sniffer can take a bad row for the header and silently drop rows).
    """
    landing = table.landing
    if landing.format == "csv":
        options = landing.options
        # Without a header row the declared columns (not computed ones) name the fields, in order.
        names = (
            ""
            if options.header
            else ", names = [{}]".format(
                ", ".join(quote_literal(c.name) for c in table.columns if not c.meta.expression)
            )
        )
        return (
            "select * from read_csv(?, header = {header}, delim = {delim}, quote = {quote}, "
            "encoding = {encoding}, compression = {compression}, all_varchar = true{names})"
        ).format(
            header="true" if options.header else "false",
            delim=quote_literal(options.delimiter),
            quote=quote_literal(options.quote),
            encoding=quote_literal(options.encoding),
            compression=quote_literal(options.compression),
            names=names,
        )
    if landing.format == "jsonl":
        columns = ", ".join(f"{quote_literal(c.name)}: 'VARCHAR'" for c in table.columns)
        return (
            "select * from read_json(?, format = 'newline_delimited', "
            f"compression = {quote_literal(landing.options.compression)}, columns = {{{columns}}})"
        )
    return "select * from read_parquet(?)"




def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def lock_timeout() -> float:
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if not value:
        return DEFAULT_LOCK_TIMEOUT
    try:
        return max(0.0, float(value))
    except ValueError:
        raise ValueError(
            f"{LOCK_TIMEOUT_ENV}={value!r} is not a number: expected seconds, e.g. 600"
        ) from None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def connect_warehouse(
    path: Path, timeout: float | None = None, log: Callable[[str], None] = _stderr
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse for writing, waiting while another process holds its lock."""
    timeout = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay, warned = 0.1, False
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            holder = re.search(r"PID (\d+)", str(error))
            who = f"process {holder.group(1)}" if holder else "another process"
            if time.monotonic() >= deadline:
                raise WarehouseLocked(
                    f"The warehouse {path} is locked by {who} (another loader, dbt or a reader); "
                    f"gave up after waiting {timeout:.0f} s. Nothing was loaded. Wait for that "
                    f"process to finish (or stop it) and run again, or wait longer with "
                    f"{LOCK_TIMEOUT_ENV}=<seconds>."
                ) from None
            if not warned:
                log(
                    f"The warehouse {path} is in use by {who}; waiting up to {timeout:.0f} s for "
                    f"its lock ({LOCK_TIMEOUT_ENV})..."
                )
                warned = True
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)


def _raw_columns(con: duckdb.DuckDBPyConnection, table: SourceTable) -> dict[str, str] | None:
    rows = con.execute(  # duckdb_columns(): half the cost of information_schema, per file
        "select column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = ? and table_name = ? "
        "order by column_index",
        [table.schema, table.name],
    ).fetchall()
    return {name: data_type for name, data_type in rows} if rows else None


LINEAGE_DDL = (
    "_file_name varchar using compression dict_fsst, "
    "_file_hash varchar using compression dict_fsst, "
    "_batch_id varchar using compression dict_fsst, _loaded_at timestamp"
)


def column_ddl(name: str, data_type: str) -> str:
    """A raw column's definition: text stored uncompressed (see LOAD_SETTINGS)."""
    text = data_type.strip().upper() in ("VARCHAR", "TEXT", "STRING")
    return f"{quote_identifier(name)} {data_type}" + (f" {TEXT_STORAGE}" if text else "")


def set_text_storage(con: duckdb.DuckDBPyConnection, tables: list[SourceTable]) -> bool:
    """Turn dict_fsst off for the connection if a raw table predates per-column compression.

    Returns whether it did (a legacy table: its CREATE statement names no compression).
    """
    legacy = False
    for table in tables:
        row = con.execute(
            "select sql from duckdb_tables() where database_name = current_database() "
            "and schema_name = ? and table_name = ?",
            [table.schema, table.name],
        ).fetchone()
        if row and "USING COMPRESSION" not in (row[0] or "").upper():
            legacy = True
    con.execute(LEGACY_TEXT_SETTING if legacy else "set disabled_compression_methods = ''")
    return legacy


def ensure_declared_tables(con: duckdb.DuckDBPyConnection, tables: list[SourceTable]) -> list[str]:
    """Create each declared raw table that does not exist yet: empty, typed, with lineage.

    So a table declared before its first file is delivered builds (staging reads zero rows) and
    its freshness says "never delivered" instead of failing on a missing table. CSV and JSON-lines
    raw columns are text (as loaded); Parquet ones have the declared types, so a first file with
    other (exactly convertible) types cannot decide them for the files that follow.
    """
    created = []
    for table in tables:
        if _raw_columns(con, table) is not None:
            continue
        columns = ", ".join(
            column_ddl(c.name, c.data_type if table.landing.format == "parquet" else "varchar")
            for c in validation._declared(table)
        )
        con.execute("begin transaction")
        try:
            con.execute(f"create schema if not exists {quote_identifier(table.schema)}")
            con.execute(
                f"create table if not exists {quote_identifier(table.schema)}."
                f"{quote_identifier(table.name)} ({columns}, {LINEAGE_DDL})"
            )
            con.execute("commit")
        except BaseException:
            _rollback(con)
            raise
        created.append(table.key)
    return created


@dataclass
class FileResult:
    rows: int = 0
    quarantined: QuarantinedFile | None = None
    changed: bool = False  # the file changed while it was read: nothing done, next run
    added_columns: list[str] = field(default_factory=list)


def load_file(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    path: Path,
    file_hash: str,
    batch_id: str,
    landing_root: Path,
    recorded_path: Path | None = None,
    extra_events: list[tuple[str, dict]] | None = None,
    snapshot: landing.Snapshot | None = None,
) -> FileResult:
    """Validate one file and load it with its ledger entry in one transaction, or quarantine it.

    ``recorded_path`` is where the file will live once loaded (a replay moves it back to the
    landing folder after the commit); ``extra_events`` are (type, details) written in the same
    transaction. ``snapshot``: the file's size and mtime when it was chosen; if it changed since
    (a writer still writing), nothing is loaded or quarantined (``changed``).

    A file whose columns have their raw columns' types (every CSV and JSON-lines file, and a
    Parquet file typed as declared) is inserted straight from its reader inside the load
    transaction, and the inserted rows are checked before the commit (one read, one write);
    otherwise it is read into a temporary table and checked there before it is inserted.
    """
    recorded_path = recorded_path or path
    try:
        with validation.opened(con, table, path) as staged:
            existing = _raw_columns(con, table)
            direct = existing is not None and validation.loads_as_read(staged, existing)
            if direct:
                violations = validation.check_columns(table, staged, existing)
                if not violations:
                    try:
                        return _load(
                            con, table, path, staged, direct, file_hash, batch_id, landing_root,
                            recorded_path, extra_events, snapshot,
                        )  # fmt: skip
                    except _StageInstead:
                        direct = False  # a value out of a raw column's range: name its row
            if not direct:
                validation.materialise(con, table, staged)
                crash_point("after_stage")
                violations = validation.validate(con, table, staged, existing)
                if not violations:
                    return _load(
                        con, table, path, staged, direct, file_hash, batch_id, landing_root,
                        recorded_path, extra_events, snapshot,
                    )  # fmt: skip
    except FileRejected as rejected:
        violations = rejected.violations
    except duckdb.Error as error:  # a check that could not run on this content
        violations = [validation.explain_read_error(error)]
    except Exception as error:  # noqa: BLE001 - no content may stop ingestion: quarantine it
        violations = [unexpected(error)]
    con.execute(f"drop table if exists {INCOMING}")
    if snapshot is not None and not landing.unchanged(path, snapshot):
        return FileResult(changed=True)  # a partial file is not bad: it is not done yet
    return FileResult(
        quarantined=quarantine_file(con, table, path, file_hash, batch_id, landing_root, violations)
    )


# Rows a transaction appends to a table get row ids from here on (DuckDB's MAX_ROW_ID, 2^55
# rounded), above every committed row's: the load's own rows are read back by this filter, which
# DuckDB pushes into the scan (committed row groups are skipped). Checked after each insert.
LOCAL_ROW_ID = 36_028_797_018_960_000


def _load(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    path: Path,
    staged: validation.StagedFile,
    direct: bool,
    file_hash: str,
    batch_id: str,
    landing_root: Path,
    recorded_path: Path,
    extra_events: list[tuple[str, dict]] | None,
    snapshot: landing.Snapshot | None,
) -> FileResult:
    """Insert a file's rows (checking them first if ``direct``), ledger entry, events; commit.

    Raises FileRejected (after rolling back) when the rows read in the transaction fail a check.
    """
    started_at = _now()
    target = f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}"
    source = f"{staged.reader}" if direct else INCOMING
    select = (
        f"select *, ? as _file_name, ? as _file_hash, ? as _batch_id, "
        f"cast(? as timestamp) as _loaded_at from {source}"
    )
    params = [recorded_path.name, file_hash, batch_id, started_at]
    if direct:
        params.append(str(staged.read_path))
    con.execute("begin transaction")
    try:
        crash_point("after_begin")
        con.execute(f"create schema if not exists {quote_identifier(table.schema)}")
        existing = _raw_columns(con, table)
        raw_lower = {k.lower(): v for k, v in (existing or {}).items()}
        # Columns the insert converts exactly (validation.exact_conversion): checked as stored.
        converted = {
            name: raw_lower[name.lower()]
            for name, data_type in staged.columns.items()
            if name.lower() in raw_lower
            and validation._normalise_type(raw_lower[name.lower()])
            != validation._normalise_type(data_type)
        }
        if existing is None:
            con.execute(f"create table {target} as {select} limit 0", params)
        else:
            known = {name.lower() for name in existing}
            for name, data_type in staged.columns.items():
                if name.lower() not in known:
                    con.execute(f"alter table {target} add column {column_ddl(name, data_type)}")
        crash_point("after_create_table")
        if direct:
            try:
                rows = con.execute(f"insert into {target} by name {select}", params).fetchone()[0]
            except duckdb.Error as error:  # the file cannot be read: its own reason, not a load
                _rollback(con)
                if converted and isinstance(error, duckdb.ConversionException):
                    raise _StageInstead from None
                raise FileRejected([validation.explain_read_error(error)]) from None
            crash_point("after_stage")
            _check_inserted(con, table, staged, target, rows, converted)
        else:
            rows = con.execute(f"insert into {target} by name {select}", params).fetchone()[0]
        crash_point("after_insert")
        previous = ledger.previous_delivery(
            con, table.source, table.name, recorded_path.name, file_hash
        )
        ledger.record(
            con,
            file_hash=file_hash,
            source_name=table.source,
            table_name=table.name,
            file_name=recorded_path.name,
            file_path=str(recorded_path),
            file_size=path.stat().st_size,
            status="loaded",
            rows_loaded=rows,
            error=None,
            batch_id=batch_id,
            started_at=started_at,
            finished_at=_now(),
            previous_file_hash=previous,
        )
        crash_point("after_ledger")
        common = {
            "source_name": table.source,
            "table_name": table.name,
            "file_name": recorded_path.name,
            "file_hash": file_hash,
            "batch_id": batch_id,
        }
        details = {"rows": rows, "path": str(recorded_path)}
        if previous:
            details["redelivery_of"] = previous
        events.record_event(con, "file.loaded", status="success", details=details, **common)
        if staged.added_columns:
            events.record_event(
                con,
                "file.schema_drift",
                status="warning",
                message=(
                    f"{len(staged.added_columns)} undeclared column(s) added to "
                    f"{table.schema}.{table.name}: {', '.join(staged.added_columns)}; declare "
                    f"them in {table.declared_in} to stage them"
                ),
                details={"added_columns": staged.added_columns, "policy": "additive"},
                **common,
            )
        for event_type, event_details in extra_events or []:
            events.record_event(con, event_type, status="success", details=event_details, **common)
        crash_point("before_commit")
        if snapshot is not None and not landing.unchanged(path, snapshot):
            _rollback(con)
            con.execute(f"drop table if exists {INCOMING}")
            return FileResult(changed=True)
        con.execute("commit")
    except (duckdb.Error, ValueError, TypeError, OverflowError) as error:
        # the file's data did not fit the raw table after all
        _rollback(con)
        con.execute(f"drop table if exists {INCOMING}")
        if isinstance(error, duckdb.Error):
            problem = validation.explain_read_error(error)
        else:
            problem = unexpected(error)
        problem.rule = "load_failed"
        return FileResult(
            quarantined=quarantine_file(
                con, table, path, file_hash, batch_id, landing_root, [problem]
            )
        )
    except BaseException:
        _rollback(con)
        raise
    crash_point("after_commit")
    con.execute(f"drop table if exists {INCOMING}")
    return FileResult(rows=rows, added_columns=staged.added_columns)


def _check_inserted(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    staged: validation.StagedFile,
    target: str,
    rows: int,
    converted: dict[str, str] | None = None,
) -> None:
    """Check the rows this transaction inserted; roll back and raise FileRejected if any fail.

    ``converted``: file columns the insert converted exactly into another type (name -> the raw
    column's type); their values are checked as stored.
    """
    scope = f"rowid >= {LOCAL_ROW_ID}"
    found, first = con.execute(
        f"select count(*), min(rowid) from {target} where {scope}"
    ).fetchone()
    if found != rows:
        _rollback(con)
        raise RuntimeError(
            f"{rows} rows inserted into {target} but {found} found from row id {LOCAL_ROW_ID}: "
            "this DuckDB numbers a transaction's new rows differently (dataops/ingestion/loader.py)"
        )
    staged.relation, staged.scope, staged.rows = target, scope, rows
    staged.first_row_id = LOCAL_ROW_ID if first is None else int(first)
    staged.nested = validation.find_nested(con, table, staged)
    stored = replace(staged, columns={**staged.columns, **(converted or {})})
    violations = staged.nested or validation.check_rows(con, table, stored)
    if violations:
        _rollback(con)
        raise FileRejected(violations)


def unexpected(error: Exception) -> Violation:
    """A violation for an error no rule foresaw (named, so the file can be quarantined)."""
    return Violation(
        "unreadable",
        f"the file could not be read or checked ({type(error).__name__}: "
        f"{str(error)[: validation.MAX_MESSAGE_CHARS]})",
    )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # a failed commit has already ended it
        con.execute("rollback")


def quarantine_file(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    path: Path,
    file_hash: str,
    batch_id: str,
    landing_root: Path,
    violations: list[Violation],
) -> QuarantinedFile:
    """Move a bad file to quarantine with its reason; ledger entry and event in one transaction.

    Order for crash safety: reason file, then ledger + event (committed), then the move. A crash
    before the commit leaves the file in place (the next run validates it again); a crash after
    it is finished by the next run (the ledger row names the quarantine path) without a second row.
    """
    target = quarantine.destination(landing_root, table, path, file_hash)
    first = violations[0]
    reason = {
        "file": str(path),
        "file_name": path.name,
        "quarantined_file": str(target),
        "source": table.source,
        "table": table.name,
        "format": table.landing.format,
        "declared_in": str(table.declared_in),
        "file_hash": file_hash,
        "batch_id": batch_id,
        "quarantined_at": _now().isoformat(),
        "rule": first.rule,
        "column": first.column,
        "row": first.row,
        "line": first.line,
        "value": first.value,
        "message": first.message,
        "violations": [v.as_dict() for v in violations],
        "fix": (
            f"Correct the file (or its declaration in {table.declared_in}), then run: "
            f"dataops replay {target}"
        ),
    }
    reason_file = quarantine.write_reason(target, reason)
    crash_point("quarantine_after_reason")
    now = _now()
    con.execute("begin transaction")
    try:
        ledger.record(
            con,
            file_hash=file_hash,
            source_name=table.source,
            table_name=table.name,
            file_name=path.name,
            file_path=str(path),
            file_size=path.stat().st_size,
            status="quarantined",
            rows_loaded=0,
            error=f"[{first.rule}] {first.message}",
            batch_id=batch_id,
            started_at=now,
            finished_at=now,
            quarantine_path=str(target),
        )
        events.record_event(
            con,
            "file.quarantined",
            status="error",
            source_name=table.source,
            table_name=table.name,
            file_name=path.name,
            file_hash=file_hash,
            batch_id=batch_id,
            message=f"[{first.rule}] {first.message}",
            details={k: reason[k] for k in ("file", "quarantined_file", "rule", "violations")},
        )
        con.execute("commit")
    except BaseException:
        _rollback(con)
        raise
    crash_point("quarantine_after_record")
    quarantine.move(path, target)
    crash_point("quarantine_after_move")
    return QuarantinedFile(
        path=path, quarantined_to=target, reason_file=reason_file, violations=violations
    )


def _finish_quarantine(path: Path, target: Path, file_hash: str) -> QuarantinedFile:
    """A file recorded as quarantined by a run that died before moving it: move it now."""
    reason = quarantine.read_reason(target) or {}
    violations = [Violation(**v) for v in reason.get("violations", [])] or [
        Violation("unknown", "recorded as quarantined by an interrupted run")
    ]
    if target.exists() and file_sha256(target) == file_hash:
        path.unlink()  # the very same content is already in quarantine
    else:
        quarantine.move(path, target)
    return QuarantinedFile(
        path=path,
        quarantined_to=target,
        reason_file=quarantine.reason_path(target),
        violations=violations,
    )


def _ingest_one(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    path: Path,
    batch_id: str,
    landing_root: Path,
    outcome: TableOutcome,
    loaded: set[str],
    pending: dict[tuple[str, str], str],
    duplicates: set[tuple[str, str]],
    snapshot: landing.Snapshot | None = None,
) -> None:
    """Load, skip (recording a duplicate delivery once) or quarantine one landed file."""
    file_hash = file_sha256(path)
    crash_point("after_hash")
    if file_hash in loaded:
        outcome.files_skipped += 1
        if (file_hash, str(path)) not in duplicates:
            original = ledger.loaded_path(con, table.source, table.name, file_hash)
            if original is not None and original != str(path):
                record_duplicate(con, table, path, file_hash, batch_id, original)
                outcome.duplicates.append((path, Path(original)))
            duplicates.add((file_hash, str(path)))
        return
    if (file_hash, str(path)) in pending:
        done = _finish_quarantine(path, Path(pending[file_hash, str(path)]), file_hash)
        outcome.quarantined.append(done)
        outcome.errors.append(done.message)
        return
    result = load_file(con, table, path, file_hash, batch_id, landing_root, snapshot=snapshot)
    if result.changed:
        outcome.waiting.append(path)
        return
    if result.quarantined:
        outcome.quarantined.append(result.quarantined)
        outcome.errors.append(result.quarantined.message)
        return
    outcome.files_loaded += 1
    outcome.rows_loaded += result.rows
    outcome.added_columns.extend(c for c in result.added_columns if c not in outcome.added_columns)
    loaded.add(file_hash)


def record_duplicate(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    path: Path,
    file_hash: str,
    batch_id: str,
    original: str,
) -> None:
    """A known content delivered again under another name: ledger row + event, nothing loaded."""
    now = _now()
    message = (
        f"{path.name} has the same content as {Path(original).name}, already loaded; "
        "skipped (nothing loaded twice)"
    )
    con.execute("begin transaction")
    try:
        ledger.record(
            con,
            file_hash=file_hash,
            source_name=table.source,
            table_name=table.name,
            file_name=path.name,
            file_path=str(path),
            file_size=path.stat().st_size,
            status="duplicate",
            rows_loaded=0,
            error=None,
            batch_id=batch_id,
            started_at=now,
            finished_at=now,
            duplicate_of=original,
        )
        events.record_event(
            con,
            "file.duplicate",
            status="warning",
            source_name=table.source,
            table_name=table.name,
            file_name=path.name,
            file_hash=file_hash,
            batch_id=batch_id,
            message=message,
            details={"path": str(path), "duplicate_of": original},
        )
        con.execute("commit")
    except BaseException:
        _rollback(con)
        raise


def ingest(
    warehouse_path: Path,
    landing_root: Path,
    tables: list[SourceTable],
    batch_id: str | None = None,
    lock_timeout: float | None = None,
    settle: float | None = None,
) -> IngestionSummary:
    """Load every new landed file of the given tables; a file whose content is known is skipped.

    Only complete files are read (landing.py: temporary names are ignored, a file must have been
    still for ``settle`` seconds, default ``DATAOPS_SETTLE_SECONDS``); the others wait.
    """
    batch_id = batch_id or f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    summary = IngestionSummary(batch_id=batch_id, tables={})
    con = connect_warehouse(warehouse_path, lock_timeout)
    try:
        for setting in LOAD_SETTINGS:
            con.execute(setting)
        crash_point("after_connect")
        ledger.ensure_ledger(con)
        events.ensure_events(con)
        ensure_declared_tables(con, tables)
        set_text_storage(con, tables)
        for table in tables:
            outcome = summary.tables.setdefault(table.key, TableOutcome(key=table.key))
            loaded = ledger.loaded_hashes(con, table.source, table.name)
            pending = ledger.pending_quarantines(con, table.source, table.name)
            duplicates = ledger.recorded_duplicates(con, table.source, table.name)
            ready, waiting = landing.ready_files(table, landing_root, settle)
            outcome.waiting.extend(w.path for w in waiting)
            for path, snapshot in ready:
                if quarantine.is_quarantined(path, landing_root):
                    continue
                try:
                    _ingest_one(
                        con, table, path, batch_id, landing_root, outcome, loaded, pending,
                        duplicates, snapshot,
                    )
                except (OSError, duckdb.Error) as error:
                    # the file vanished or could not be opened while we read it: say so, go on
                    _rollback(con)
                    outcome.errors.append(
                        f"{path}: not loaded ({type(error).__name__}: {error}); it stays where "
                        "it is and the next run tries it again"
                    )
        crash_point("before_checkpoint")
        con.execute("checkpoint")
    finally:
        con.close()
    return summary


@dataclass
class ReplayOutcome:
    file: Path
    table: str
    status: str  # loaded | already_loaded | quarantined
    rows: int = 0
    landed_as: Path | None = None
    quarantined: QuarantinedFile | None = None

    @property
    def message(self) -> str:
        if self.status == "loaded":
            return (
                f"{self.file}: loaded {self.rows:,} rows into {self.table}; the file is back in "
                f"the landing folder as {self.landed_as}"
            )
        if self.status == "already_loaded":
            return (
                f"{self.file}: this content is already loaded into {self.table} ({self.landed_as})"
            )
        assert self.quarantined is not None
        return self.quarantined.message.replace("quarantined", "still quarantined", 1)


def replay(
    warehouse_path: Path,
    landing_root: Path,
    tables: list[SourceTable],
    file: Path,
    lock_timeout: float | None = None,
) -> ReplayOutcome:
    """Re-ingest a quarantined file (after it was fixed): validate, load, move it back to landing.

    The load commits first, then the file moves back to its table's landing folder; a crash in
    between is finished by running the replay again (the content is then already loaded).
    """
    file = file.resolve()
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: no such file; expected a file under "
            f"{landing_root / quarantine.QUARANTINE_DIR}/<source>/<table>/"
        )
    table = quarantine.table_of(file, landing_root, tables)
    reason = quarantine.read_reason(file) or {}
    original_name = reason.get("file_name") or file.name
    file_hash = file_sha256(file)
    landing_dir = table.landing_dir(landing_root)
    destination = landing_dir / original_name
    if destination.exists() and file_sha256(destination) != file_hash:
        destination = landing_dir / f"replayed-{file_hash[:12]}-{original_name}"
    batch_id = f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    con = connect_warehouse(warehouse_path, lock_timeout)
    try:
        for setting in LOAD_SETTINGS:
            con.execute(setting)
        ledger.ensure_ledger(con)
        events.ensure_events(con)
        ensure_declared_tables(con, [table])
        set_text_storage(con, [table])
        already = ledger.loaded_path(con, table.source, table.name, file_hash)
        if already is not None:
            _put_back(file, Path(already))
            return ReplayOutcome(file, table.key, "already_loaded", landed_as=Path(already))
        result = load_file(
            con,
            table,
            file,
            file_hash,
            batch_id,
            landing_root,
            recorded_path=destination,
            extra_events=[
                (
                    "file.replayed",
                    {
                        "from": str(file),
                        "quarantined_hash": reason.get("file_hash"),
                        "quarantined_rule": reason.get("rule"),
                    },
                )
            ],
        )
        if result.quarantined:
            return ReplayOutcome(file, table.key, "quarantined", quarantined=result.quarantined)
        crash_point("replay_after_commit")
        _put_back(file, destination)
        con.execute("checkpoint")
        return ReplayOutcome(file, table.key, "loaded", rows=result.rows, landed_as=destination)
    finally:
        con.close()


def _put_back(file: Path, destination: Path) -> None:
    """Move a replayed file to the landing folder and drop its reason file."""
    if destination.exists() and file_sha256(destination) == file_sha256(file):
        file.unlink()
    else:
        quarantine.move(file, destination)
    quarantine.reason_path(file).unlink(missing_ok=True)
