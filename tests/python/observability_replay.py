"""Replay generated sample days one by one through ingestion and the dbt monitors.

The clock is simulated.

Each day: the day's files are copied from a generated landing folder into the platform's (empty)
landing folder, an injection may edit them there, ingestion loads them, their rows get the
simulated load time (``_loaded_at`` = the day at 23:00 UTC, as if loaded that evening), then
``dbt test --select source:platform`` measures the monitored tables (on-run-start) and runs the
anomaly monitors with ``DATAOPS_AS_OF`` = the day at 23:30 UTC. Used by the detection test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb

from dataops.core.settings import REPO_ROOT
from dataops.ingestion.loader import ingest
from dataops.sources.registry import load_registry
from tests.python.conftest import platform_env


@dataclass(frozen=True)
class DbtRun:
    success: bool
    log: str


Injection = Callable[[Path], None]  # edits the landing folder after the day's files are copied


@dataclass
class Replay:
    generated: Path  # the generator's landing folder (all days)
    home: Path  # platform home: landing/ and the warehouse
    start: date
    withheld: dict[str, list[Path]] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # by the last day's ingestion
    quarantined_on: dict[int, list[str]] = field(default_factory=dict)  # day -> file names

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse_dev.duckdb"

    def dbt(self, *args: str, as_of: datetime | None = None) -> DbtRun:
        """A real dbt invocation in a subprocess (dbt-duckdb keeps its connection open in-process,
        which would lock the ingestion out)."""
        env = platform_env(self.home)
        if as_of:
            env["DATAOPS_AS_OF"] = as_of.strftime("%Y-%m-%d %H:%M:%S")
        dbt = str(Path(sys.executable).parent / "dbt")
        result = subprocess.run(
            [dbt, *args, "--project-dir", str(REPO_ROOT)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        return DbtRun(success=result.returncode == 0, log=result.stdout)

    def land(self, day: date, late: set[str] = frozenset()) -> None:
        """Copy the day's files; tables in `late` ("source/table") hold theirs back."""
        for path in sorted(self.generated.rglob(f"*_{day.isoformat()}.*")):
            relative = path.relative_to(self.generated)
            key = "/".join(relative.parts[:2])
            if key in late:
                self.withheld.setdefault(key, []).append(path)
                continue
            target = self.landing / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)

    def release(self, key: str) -> None:
        for path in self.withheld.pop(key, []):
            target = self.landing / path.relative_to(self.generated)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)

    def day(
        self, index: int, injection: Injection | None = None, late: set[str] = frozenset()
    ) -> DbtRun:
        day = self.start + timedelta(days=index)
        self.land(day, late)
        if injection:
            injection(self.landing)
        summary = ingest(self.warehouse, self.landing, load_registry())
        self.quarantined = [q.path.name for q in summary.quarantined]
        self.quarantined_on[index] = self.quarantined
        rejected = [e for e in summary.errors if "quarantined" not in e]
        assert not rejected, rejected
        loaded_at = datetime.combine(day, time(23, 0))
        with duckdb.connect(str(self.warehouse)) as con:
            for table in load_registry():
                exists = con.execute(
                    "select count(*) from information_schema.tables "
                    "where table_schema = ? and table_name = ?", [table.schema, table.name],
                ).fetchone()[0]
                if exists:
                    relation = f'"{table.schema}"."{table.name}"'
                    con.execute(
                        f"update {relation} set _loaded_at = ? where _batch_id = ?",
                        [loaded_at, summary.batch_id],
                    )
        if index == 0:
            monitored = [t.staging_model for t in load_registry() if t.monitors]
            built = self.dbt("run", "--select", *monitored, as_of=loaded_at + timedelta(minutes=15))
            assert built.success, built.log
        as_of = loaded_at + timedelta(minutes=30)
        # Only the staging models are built (on day 0): model freshness is not what this replays.
        return self.dbt("test", "--select", "source:platform", "--exclude",
                        "test_name:model_freshness", as_of=as_of)

    def anomalies(self, index: int, with_message: bool = False) -> list[tuple]:
        """(monitor, table, column, metric[, message]) of the anomaly events measured on that
        day."""
        as_of = datetime.combine(self.start + timedelta(days=index), time(23, 30))
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            rows = con.execute(
                """
                select
                    details::json ->> 'monitor',
                    coalesce(source_name || '.', '') || table_name,
                    details::json ->> 'column_name',
                    details::json ->> 'metric_name',
                    message
                from platform.events
                where event_type = 'anomaly.detected'
                    and cast(details::json ->> 'measured_at' as timestamp) = ?
                order by 1, 2, 3
                """,
                [as_of],
            ).fetchall()
        return [tuple(row) if with_message else tuple(row[:4]) for row in rows]


def edit_csv(path: Path, select: str) -> None:
    """Rewrite a landed CSV file through a DuckDB select over `file` (all columns as text)."""
    with duckdb.connect() as con:
        con.execute(f"create table file as select * from read_csv('{path}', all_varchar = true)")
        con.execute(f"copy ({select}) to '{path}' (format csv, header true)")


def edit_jsonl(path: Path, select: str) -> None:
    """Rewrite a landed JSON-lines file through a DuckDB select over `file`."""
    with duckdb.connect() as con:
        con.execute(
            f"create table file as select * from read_json('{path}', format = 'newline_delimited')"
        )
        con.execute(f"copy ({select}) to '{path}' (format json)")


def edit_parquet(path: Path, select: str) -> None:
    """Rewrite a landed Parquet file through a DuckDB select over `file`."""
    with duckdb.connect() as con:
        con.execute(f"create table file as select * from read_parquet('{path}')")
        con.execute(f"copy ({select}) to '{path}' (format parquet)")
