"""Load landed files into raw tables, one schema per source, exactly once per file content.

What to load and how to read it comes from the source registry (orchestration/registry.py).
Each file is loaded in one transaction together with its ledger entry, and every row carries its
lineage: file name, file content hash, batch id and load time.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from orchestration import events
from orchestration.ingestion import ledger
from orchestration.registry import SourceTable

HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TableOutcome:
    """What one ingestion run did for one source table."""

    key: str
    files_loaded: int = 0
    rows_loaded: int = 0
    files_skipped: int = 0
    errors: list[str] = field(default_factory=list)


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
    def errors(self) -> list[str]:
        return [e for t in self.tables.values() for e in t.errors]


def reader_sql(table: SourceTable) -> str:
    """A select over one file (path as parameter 1) returning its columns as delivered.

    CSV and JSON columns are kept as text (nothing is lost or reinterpreted on the way in; staging
    casts); Parquet keeps its own types.
    """
    landing = table.landing
    if landing.format == "csv":
        options = landing.options
        # Without a header row the declared columns name the fields, in file order.
        names = "" if options.header else ", names = [{}]".format(
            ", ".join(_literal(c.name) for c in table.columns)
        )
        return (
            "select * from read_csv(?, header = {header}, delim = {delim}, quote = {quote}, "
            "encoding = {encoding}, compression = {compression}, all_varchar = true{names})"
        ).format(
            header="true" if options.header else "false",
            delim=_literal(options.delimiter),
            quote=_literal(options.quote),
            encoding=_literal(options.encoding),
            compression=_literal(options.compression),
            names=names,
        )
    if landing.format == "jsonl":
        columns = ", ".join(f"{_literal(c.name)}: 'VARCHAR'" for c in table.columns)
        return (
            "select * from read_json(?, format = 'newline_delimited', "
            f"compression = {_literal(landing.options.compression)}, columns = {{{columns}}})"
        )
    return "select * from read_parquet(?)"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def load_file(
    con: duckdb.DuckDBPyConnection, table: SourceTable, path: Path, file_hash: str, batch_id: str
) -> int:
    """Load one file and write its ledger entry in a single transaction; return the row count."""
    target = f"{_quote(table.schema)}.{_quote(table.name)}"
    started_at = datetime.now(UTC).replace(tzinfo=None)
    select = (
        f"select *, ? as _file_name, ? as _file_hash, ? as _batch_id, "
        f"cast(? as timestamp) as _loaded_at from ({reader_sql(table)})"
    )
    # Parameters in statement order: the lineage values, then the file path for the reader.
    params = [path.name, file_hash, batch_id, started_at, str(path)]
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {_quote(table.schema)}")
        con.execute(f"create table if not exists {target} as {select} limit 0", params)
        rows = con.execute(f"insert into {target} by name {select}", params).fetchone()[0]
        ledger.record(
            con,
            file_hash=file_hash,
            source_name=table.source,
            table_name=table.name,
            file_name=path.name,
            file_path=str(path),
            file_size=path.stat().st_size,
            status="loaded",
            rows_loaded=rows,
            error=None,
            batch_id=batch_id,
            started_at=started_at,
            finished_at=datetime.now(UTC).replace(tzinfo=None),
        )
        events.record_event(
            con,
            "file.loaded",
            status="success",
            source_name=table.source,
            table_name=table.name,
            file_name=path.name,
            file_hash=file_hash,
            batch_id=batch_id,
            details={"rows": rows, "path": str(path)},
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return rows


def ingest(
    warehouse_path: Path,
    landing_root: Path,
    tables: list[SourceTable],
    batch_id: str | None = None,
) -> IngestionSummary:
    """Load every new landed file of the given tables; a file whose content is known is skipped."""
    batch_id = batch_id or f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    summary = IngestionSummary(batch_id=batch_id, tables={})
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse_path)) as con:
        ledger.ensure_ledger(con)
        events.ensure_events(con)
        for table in tables:
            outcome = summary.tables.setdefault(table.key, TableOutcome(key=table.key))
            known = ledger.known_hashes(con, table.source, table.name)
            for path in table.landed_files(landing_root):
                file_hash = file_sha256(path)
                if file_hash in known:
                    outcome.files_skipped += 1
                    continue
                try:
                    rows = load_file(con, table, path, file_hash, batch_id)
                except duckdb.Error as error:
                    message = f"{path}: could not load into {table.schema}.{table.name}: {error}"
                    outcome.errors.append(message)
                    now = datetime.now(UTC).replace(tzinfo=None)
                    ledger.record(
                        con,
                        file_hash=file_hash,
                        source_name=table.source,
                        table_name=table.name,
                        file_name=path.name,
                        file_path=str(path),
                        file_size=path.stat().st_size,
                        status="failed",
                        rows_loaded=0,
                        error=str(error),
                        batch_id=batch_id,
                        started_at=now,
                        finished_at=now,
                    )
                    events.record_event(
                        con,
                        "file.failed",
                        status="error",
                        source_name=table.source,
                        table_name=table.name,
                        file_name=path.name,
                        file_hash=file_hash,
                        batch_id=batch_id,
                        message=str(error),
                    )
                else:
                    outcome.files_loaded += 1
                    outcome.rows_loaded += rows
                known.add(file_hash)
    return summary
