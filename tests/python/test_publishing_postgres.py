"""Write -> audit -> publish on PostgreSQL: the same guarantee as on DuckDB, on a real server.

A throw-away server (dataops/engines/local_postgres.py) gets the small sample without its last
day (`dataops engines load postgres`) and a first release (`dataops engines build postgres`).
Each test works on its own copy of that database (``create database ... template``) and its own
copy of the project, so no test changes what another reads.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataops.core.settings import REPO_ROOT
from dataops.publishing import releases as rel
from dataops.publishing.connections import PostgresConnection
from tests.python.conftest import platform_env
from tests.python.test_publishing import copy_repo, edit_file, kill_in_switch

pytestmark = pytest.mark.slow  # a PostgreSQL server and real dbt builds

PUBLISHED_SCHEMAS = ("reference", "staging", "intermediate", "marts")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _connect(env: dict[str, str]):
    import psycopg2

    return psycopg2.connect(
        host=env["DATAOPS_PG_HOST"],
        port=int(env["DATAOPS_PG_PORT"]),
        user=env["DATAOPS_PG_USER"],
        dbname=env["DATAOPS_PG_DATABASE"],
    )


def _create_database(env: dict[str, str], name: str, template: str | None = None) -> None:
    admin = _connect(env)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"' + (f' template "{template}"' if template else ""))
    admin.close()


def read_checksums(cur, schemas: tuple[str, ...] = PUBLISHED_SCHEMAS) -> dict[str, list[str]]:
    """Row count and an order-independent checksum of every published relation."""
    cur.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema = any(%s) order by 1, 2",
        (list(schemas),),
    )
    found = {}
    for schema, name in cur.fetchall():
        cur.execute(
            "select count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) "
            f'from "{schema}"."{name}" as t'
        )
        found[f"{schema}.{name}"] = [str(value) for value in cur.fetchone()]
    return found


def checksums(env: dict[str, str]) -> dict[str, list[str]]:
    con = _connect(env)
    try:
        with con.cursor() as cur:
            return read_checksums(cur)
    finally:
        con.close()


@dataclass
class PgProd:
    """A copy of the project, a home whose landing folder lacks the sample's last day (kept in
    ``later``), and a database of the local server with release r1 published."""

    repo: Path
    home: Path
    env: dict[str, str]

    def dataops(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dataops.cli", *args],
            cwd=self.repo,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=1800,
        )

    def copy(self, tmp_path: Path, database: str) -> PgProd:
        """A private copy: the project and the published database (with its releases)."""
        _create_database(self.env, database, template=self.env["DATAOPS_PG_DATABASE"])
        shutil.copytree(self.repo, tmp_path / "repo")
        return PgProd(tmp_path / "repo", self.home, {**self.env, "DATAOPS_PG_DATABASE": database})

    def edit(self, relative: str, old: str, new: str) -> None:
        edit_file(self.repo, relative, old, new)

    def land_last_day(self) -> None:
        for path in (self.home / "later").rglob("*.*"):
            target = self.home / "landing" / path.relative_to(self.home / "later")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def pg_server() -> Iterator[dict[str, str]]:
    """A local PostgreSQL server for this module: the environment the ``postgres`` target reads."""
    from dataops.engines.local_postgres import LocalPostgres

    server = LocalPostgres.start()
    try:
        yield server.env()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_released(
    pg_server: dict[str, str], sample_landing: Path, tmp_path_factory: pytest.TempPathFactory
) -> PgProd:
    root = tmp_path_factory.mktemp("publishing-postgres")
    repo = copy_repo(root / "repo")
    home = root / "home"
    last = max(DATE.search(p.name)[0] for p in sample_landing.rglob("*.*") if DATE.search(p.name))
    for path in sample_landing.rglob("*.*"):
        folder = "later" if last in path.name else "landing"
        target = home / folder / path.relative_to(sample_landing)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    prod = PgProd(repo, home, {**platform_env(home), **pg_server})
    loaded = _ok(prod.dataops("engines", "load", "postgres"))
    assert "shop.order_items" in loaded and "ERROR" not in loaded
    first = _ok(prod.dataops("engines", "build", "postgres"))
    assert "Published release r1" in first, first
    return prod


def test_a_release_that_fails_a_data_test_publishes_nothing_on_postgres(pg_released, tmp_path):
    prod = pg_released.copy(tmp_path, "failed_audit")
    (prod.repo / "tests/dbt/singular/assert_no_order_is_published.sql").write_text(
        "select order_id from {{ ref('fct_orders') }}\n"
    )
    before = checksums(prod.env)
    assert {"marts.fct_orders", "staging.stg_shop__orders"} <= set(before)
    assert all(int(rows) > 0 for rows, _ in before.values())

    result = prod.dataops("engines", "build", "postgres")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Not published: release r2 failed its audit" in result.stdout
    assert "assert_no_order_is_published" in result.stdout
    assert checksums(prod.env) == before
    listed = _ok(prod.dataops("engines", "releases", "postgres"))
    assert "r2     failed" in listed and "assert_no_order_is_published" in listed
    assert "inspect: schemas" in listed and "marts__r2" in listed
    assert any(line.startswith("* r1 ") for line in listed.splitlines())


READER = """
import json, sys, time, psycopg2
sys.path.insert(0, sys.argv[3])
from tests.python.test_publishing_postgres import read_checksums
con = psycopg2.connect(sys.argv[1])
con.set_session(isolation_level="REPEATABLE READ")  # one snapshot for all relations of a read
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    with con.cursor() as cur:
        snapshot = read_checksums(cur)  # every published relation, all layers
    con.commit()
    print(json.dumps(snapshot), flush=True)
    time.sleep(0.01)
"""


def _observed(log: Path) -> list[dict]:
    lines = log.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("}\n")]


def _wait_until(log: Path, found, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found(_observed(log)):
            return
        time.sleep(0.1)
    raise AssertionError(f"the reader made no {what} in {timeout} s: {log.read_text()[-2000:]}")


def test_postgres_readers_see_whole_releases_only_and_rollback_restores_the_previous(
    pg_released, tmp_path
):
    prod = pg_released.copy(tmp_path, "reader_loop")
    before = checksums(prod.env)
    prod.land_last_day()  # a new day: every mart changes with the next release
    _ok(prod.dataops("engines", "load", "postgres"))
    assert checksums(prod.env) == before  # raw rows reach readers only through a release
    env = prod.env
    dsn = (
        f"host={env['DATAOPS_PG_HOST']} port={env['DATAOPS_PG_PORT']} "
        f"user={env['DATAOPS_PG_USER']} dbname={env['DATAOPS_PG_DATABASE']}"
    )
    log = tmp_path / "reader.jsonl"
    with log.open("w") as out:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, dsn, "900", str(REPO_ROOT)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        _wait_until(log, bool, "first read")
        # paused half-way through the switch: a reader then sees the whole previous release
        published = prod.dataops("engines", "build", "postgres", **{rel.SWITCH_PAUSE_ENV: "2"})
        assert "Published release r2" in _ok(published)
        after = checksums(prod.env)
        _wait_until(log, lambda seen: after in seen, "read of the new release")
    finally:
        reader.send_signal(signal.SIGTERM)
        errors = reader.communicate(timeout=60)[1]
    old, new = before, after
    changed = {k for k in old if old[k] != new[k]}
    assert {"marts.fct_orders", "marts.fct_order_items", "staging.stg_shop__orders"} <= changed
    observed = _observed(log)
    assert observed[0] == old, errors
    mixed = [snapshot for snapshot in observed if snapshot not in (old, new)]
    assert not mixed, (mixed[:1], errors)
    assert observed[-1] == new and len(observed) > 10

    rolled = _ok(prod.dataops("engines", "rollback", "postgres"))
    assert "r2 -> r1" in rolled
    assert checksums(prod.env) == before
    _ok(prod.dataops("engines", "rollback", "postgres", "r2"))
    assert checksums(prod.env) == after


def _table(cur, schema: str, sql: str) -> None:
    cur.execute(f'create schema if not exists "{schema}"')
    cur.execute(f'create table "{schema}".fct_a as {sql}')


def test_the_postgres_switch_replaces_changed_columns_and_waits_for_a_reader(pg_server):
    """The switch itself (no dbt): a view whose columns change is dropped and created in the
    same transaction, and a reader's open transaction delays the switch instead of seeing half
    of it or being aborted."""
    env = {**pg_server, "DATAOPS_PG_DATABASE": "switch_only"}
    _create_database(pg_server, "switch_only")
    con = PostgresConnection(_connect(env))
    rel.ensure_releases(con)
    pointer = {
        1: rel.Pointer("marts", "fct_a", "marts__r1", "model.dataops.fct_a", "table"),
        2: rel.Pointer("marts", "fct_a", "marts__r2", "model.dataops.fct_a", "table"),
    }
    with con.connection.cursor() as cur:
        assert rel.begin_release(con, trigger="t", selection="all", git_commit=None) == 1
        _table(cur, "marts__r1", "select 1 as order_id, 'a'::text as name")
        rel.switch(con, 1, {"marts.fct_a": pointer[1]})
        assert rel.begin_release(con, trigger="t", selection="all", git_commit=None) == 2
        # a column renamed and one added: create or replace view refuses both
        _table(cur, "marts__r2", "select 2 as order_id, 'b'::text as label, 2.5 as amount")

    reader = _connect(env)
    with reader.cursor() as cur:  # an open transaction that has read the published view
        cur.execute("select * from marts.fct_a")
        assert [d[0] for d in cur.description] == ["order_id", "name"]
        timer_started = time.monotonic()
        release = threading.Timer(1.5, reader.commit)
        release.start()
        seconds = rel.switch(con, 2, {"marts.fct_a": pointer[2]})
        release.join()
    assert seconds >= 1.0 and time.monotonic() - timer_started >= 1.5
    with reader.cursor() as cur:
        cur.execute("select * from marts.fct_a")
        assert [d[0] for d in cur.description] == ["order_id", "label", "amount"]
        assert cur.fetchall()[0][:2] == (2, "b")
    reader.close()
    assert rel.rollback(con).release_id == 1
    with con.connection.cursor() as cur:
        cur.execute("select * from marts.fct_a")
        assert cur.fetchall() == [(1, "a")]
    con.close()


def test_a_postgres_publish_killed_mid_switch_leaves_the_previous_release(pg_released, tmp_path):
    prod = pg_released.copy(tmp_path, "killed_switch")
    before = checksums(prod.env)
    prod.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "sum(case when is_fulfillable then order_amount else 0 end) as gross_revenue",
        "sum(order_amount) as gross_revenue",
    )
    build = ["engines", "build", "postgres", "--select", "fct_daily_revenue"]
    # kill -9: the server aborts the switch's transaction and frees the advisory lock
    kill_in_switch([sys.executable, "-m", "dataops.cli", *build], prod.repo, prod.env)

    assert checksums(prod.env) == before
    again = prod.dataops(*build)
    assert "release r2 was interrupted; marked abandoned" in _ok(again)
    assert "Published release r3" in again.stdout
    after = checksums(prod.env)
    assert after["marts.fct_daily_revenue"] != before["marts.fct_daily_revenue"]
    assert {k: v for k, v in after.items() if k != "marts.fct_daily_revenue"} == {
        k: v for k, v in before.items() if k != "marts.fct_daily_revenue"
    }
