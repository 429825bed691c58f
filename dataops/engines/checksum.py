"""Row counts and order-independent checksums of the marts, comparable across engines.

Each engine returns the same values in slightly different Python types (Decimal('12.30') or
Decimal('12.3'), naive or aware datetimes), so every value is normalised to text first; a row's
digest is the SHA-256 of its ``column=value`` pairs (columns in name order), and a table's
checksum is the sum of its row digests modulo 2**64: independent of row order and engine.
Columns starting with ``_`` (load lineage such as ``_loaded_at``) differ by when each engine
loaded the data and are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from dataops.core.settings import PROJECT_DIR

MARTS_SCHEMA = "marts"


def mart_names(project_dir: Path = PROJECT_DIR) -> list[str]:
    """Every mart model of the project (models/marts/**/<name>.sql)."""
    return sorted(path.stem for path in (project_dir / "models" / "marts").rglob("*.sql"))


def normalise(value: Any) -> str:
    """One value as engine-independent text."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = Decimal(repr(round(value, 9)))
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class TableChecksum:
    rows: int
    checksum: str


def table_checksum(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> TableChecksum:
    kept = sorted((name.lower(), i) for i, name in enumerate(columns) if not name.startswith("_"))
    total = 0
    count = 0
    for row in rows:
        text = "\x1f".join(f"{name}={normalise(row[i])}" for name, i in kept)
        total += int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        count += 1
    return TableChecksum(rows=count, checksum=f"{total % 2**64:016x}")


def as_json(checksums: dict[str, TableChecksum]) -> dict[str, dict[str, Any]]:
    return {name: asdict(value) for name, value in sorted(checksums.items())}


def duckdb_checksums(warehouse: Path, names: Sequence[str]) -> dict[str, TableChecksum]:
    import duckdb

    result = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for name in names:
            cursor = con.execute(f'select * from {MARTS_SCHEMA}."{name}"')
            columns = [d[0] for d in cursor.description]
            result[name] = table_checksum(columns, cursor.fetchall())
    return result


def postgres_checksums(names: Sequence[str]) -> dict[str, TableChecksum]:
    from dataops.engines.postgres import connect

    result = {}
    with connect() as pg, pg.cursor() as cur:
        for name in names:
            cur.execute(f'select * from {MARTS_SCHEMA}."{name}"')
            columns = [d[0] for d in cur.description]
            result[name] = table_checksum(columns, cur.fetchall())
    return result


def spark_checksums(names: Sequence[str]) -> dict[str, TableChecksum]:
    import os
    import time

    from dataops.engines.spark import spark_session

    # PySpark turns timestamps into naive datetimes in the process's local time zone; the
    # session's zone is UTC (profiles.yml), so read them in UTC too.
    os.environ["TZ"] = "UTC"
    time.tzset()
    result = {}
    with spark_session() as spark:
        for name in names:
            frame = spark.table(f"`{MARTS_SCHEMA}`.`{name}`")
            result[name] = table_checksum(frame.columns, frame.toLocalIterator())
    return result
