"""Crash recovery: a loader killed (SIGKILL, as kill -9) at any point leaves the warehouse and the
ledger consistent, and the next run finishes the job with no duplicates and no gaps.

The loader kills itself at a named point (dataops/ingestion/faults.py, DATAOPS_CRASH_AT)
while loading CSV, JSON lines and Parquet files plus one bad file. After each crash the warehouse
must hold only whole files, each with exactly one ledger entry and one event; after the rerun it
must equal the state of a run that never crashed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import REPO_ROOT
from dataops.ingestion.faults import CRASH_ENV, CRASH_POINTS
from dataops.sources.registry import load_registry
from tests.python.conftest import platform_env

pytestmark = pytest.mark.slow

TABLES = ("shop.orders", "payments.payments", "web.sessions")
REGISTRY = {t.key: t for t in load_registry()}
# (point, which time it is reached): spread over the batch of 22 files.
KILLS = [
    ("after_connect", 1),
    ("after_hash", 4),
    ("after_stage", 3),
    ("after_begin", 9),
    ("after_create_table", 2),
    ("after_insert", 12),
    ("after_ledger", 15),
    ("before_commit", 6),
    ("after_commit", 10),
    ("quarantine_after_reason", 1),
    ("quarantine_after_record", 1),
    ("quarantine_after_move", 1),
    ("before_checkpoint", 1),
]
RUNNER = (
    "import sys; from pathlib import Path; "
    "from dataops.ingestion.loader import ingest; "
    "from dataops.sources.registry import load_registry, select_tables; "
    "from dataops.core.settings import load_settings; "
    "s = load_settings(); "
    "ingest(s.warehouse_path, s.landing_dir, select_tables(load_registry(), sys.argv[1:]))"
)


def _run_loader(home: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = platform_env(home)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *TABLES],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def landing_template(sample_landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good files of three tables (CSV, JSON lines, Parquet) and one bad CSV (a null key)."""
    landing = tmp_path_factory.mktemp("crash") / "landing"
    for key in TABLES:
        table = REGISTRY[key]
        shutil.copytree(table.landing_dir(sample_landing), table.landing_dir(landing))
    orders = REGISTRY["shop.orders"].landing_dir(landing)
    lines = sorted(orders.glob("*.csv"))[0].read_text().splitlines()
    lines[2] = "," + lines[2].split(",", 1)[1]
    (orders / "orders_2025-01-04_bad.csv").write_text("\n".join(lines) + "\n")
    return landing


def _home(tmp_path: Path, landing_template: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(landing_template, home / "landing")
    return home


def _state(home: Path) -> dict[str, object]:
    """Everything that must not depend on crashes: files, rows per file, ledger, events, folders."""
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        ledger = sorted(
            con.execute(
                "select source_name, table_name, file_name, file_hash, status, rows_loaded "
                "from platform.load_ledger"
            ).fetchall()
        )
        rows = {}
        for key in TABLES:
            table = REGISTRY[key]
            rows[key] = sorted(
                con.execute(
                    f"select _file_name, _file_hash, count(*) from {table.schema}.{table.name} "
                    "group by 1, 2"
                ).fetchall()
            )
        events = sorted(
            con.execute(
                "select event_type, file_hash, count(*) from platform.events "
                "where event_type like 'file.%' group by 1, 2"
            ).fetchall()
        )
    landing = home / "landing"
    files = sorted(str(p.relative_to(landing)) for p in landing.rglob("*") if p.is_file())
    return {"ledger": ledger, "rows": rows, "events": events, "files": files}


def _assert_consistent(home: Path) -> None:
    """Whatever was interrupted: whole files only, each loaded file once in ledger and events."""
    warehouse = home / "warehouse_dev.duckdb"
    if not warehouse.exists():
        return
    with duckdb.connect(str(warehouse), read_only=True) as con:
        schemas = {
            row[0] for row in con.execute("select schema_name from duckdb_schemas()").fetchall()
        }
        if "platform" not in schemas:
            return
        tables = {
            (s, t)
            for s, t in con.execute(
                "select schema_name, table_name from duckdb_tables()"
            ).fetchall()
        }
        ledger = con.execute(
            "select source_name || '.' || table_name, file_hash, rows_loaded, count(*) over "
            "(partition by source_name, table_name, file_hash) from platform.load_ledger "
            "where status = 'loaded'"
        ).fetchall()
        assert all(copies == 1 for *_, copies in ledger), "a file loaded twice"
        expected = {(key, digest): rows for key, digest, rows, _ in ledger}
        for key in TABLES:
            table = REGISTRY[key]
            if (table.schema, table.name) not in tables:
                assert not [k for k in expected if k[0] == key]
                continue
            raw = dict(
                con.execute(
                    f"select _file_hash, count(*) from {table.schema}.{table.name} group by 1"
                ).fetchall()
            )
            assert raw == {d: n for (k, d), n in expected.items() if k == key}, (
                f"{key}: raw rows and ledger disagree"
            )
        loaded_events = dict(
            con.execute(
                "select file_hash, count(*) from platform.events where event_type = 'file.loaded' "
                "group by 1"
            ).fetchall()
        )
        assert loaded_events == {digest: 1 for _, digest in expected}


@pytest.fixture(scope="module")
def reference(landing_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = _home(tmp_path_factory.mktemp("reference"), landing_template)
    result = _run_loader(home)
    assert result.returncode == 0, result.stderr
    state = _state(home)
    assert any(status == "quarantined" for *_, status, _ in state["ledger"])
    assert len(state["ledger"]) == 22
    return state


def test_every_named_crash_point_is_exercised():
    assert {point for point, _ in KILLS} | {"replay_after_commit"} == set(CRASH_POINTS)
    assert len(KILLS) >= 10


@pytest.mark.parametrize(("point", "nth"), KILLS, ids=[f"{p}:{n}" for p, n in KILLS])
def test_a_killed_load_leaves_a_consistent_state_and_the_rerun_completes_it(
    point: str, nth: int, landing_template: Path, reference: dict, tmp_path: Path
):
    home = _home(tmp_path, landing_template)

    crashed = _run_loader(home, crash_at=f"{point}:{nth}")

    assert crashed.returncode == -9, f"the loader was not killed at {point}:{nth}: {crashed.stderr}"
    _assert_consistent(home)
    rerun = _run_loader(home)
    assert rerun.returncode == 0, rerun.stderr
    _assert_consistent(home)
    assert _state(home) == reference
