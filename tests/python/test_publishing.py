"""Write -> audit -> publish: nothing unaudited reaches prod, readers see whole releases only.

Fast tests drive dataops/publishing/releases.py on a real DuckDB file with hand-made release
schemas. Slow tests use a copy of the project (to break a test, a unit test, a contract) and a
prod warehouse released once from the built sample platform, and run the real `dataops deploy`,
`dataops --target prod build`, `dataops rollback` in subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import REPO_ROOT, SettingsError, load_settings
from dataops.publishing import releases as rel
from dataops.publishing import wap
from tests.python.conftest import clone_home, platform_env
from tests.python.dbt_project_copy import PROJECT_PARTS

PUBLISHED_SCHEMAS = ("reference", "staging", "intermediate", "marts")


# ---------------------------------------------------------------- fast: settings, release state


@pytest.mark.parametrize("home", ["", "relative/home", "."])
def test_prod_refuses_an_empty_or_relative_home(monkeypatch, home):
    monkeypatch.setenv("DATAOPS_HOME", home)
    with pytest.raises(SettingsError, match="DATAOPS_HOME=.*absolute folder"):
        load_settings("prod")
    load_settings("dev")  # a developer's dev target keeps its default


def test_the_cli_says_why_it_refuses_an_empty_prod_home(tmp_path):
    env = platform_env(tmp_path)
    env["DATAOPS_HOME"] = ""
    result = subprocess.run(
        [sys.executable, "-m", "dataops", "deploy"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "DATAOPS_HOME='' for the prod target" in result.stderr


def _release_tables(con: duckdb.DuckDBPyConnection, release_id: int, rows: int) -> None:
    schema = rel.physical_schema("marts", release_id)
    con.execute(f"create schema if not exists {schema}")
    con.execute(f"create or replace table {schema}.fct_a as select range as i from range({rows})")
    con.execute(f"create or replace table {schema}.fct_b as select {rows} as n")


def _pointers(release_id: int) -> dict[str, rel.Pointer]:
    schema = rel.physical_schema("marts", release_id)
    return {
        f"marts.{name}": rel.Pointer("marts", name, schema, f"model.dataops.{name}", "table")
        for name in ("fct_a", "fct_b")
    }


def _published(con: duckdb.DuckDBPyConnection) -> tuple:
    return (
        con.execute("select count(*) from marts.fct_a").fetchone()[0],
        con.execute("select n from marts.fct_b").fetchone()[0],
    )


def test_switch_rollback_and_cleanup_on_a_real_file(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    # before releases: marts built in place, as tables
    con.execute("create schema marts; create table marts.fct_a as select 1 as i")
    rel.ensure_releases(con)
    for rows in (10, 20, 30):
        rid = rel.begin_release(con, trigger="test", selection="all", git_commit=None)
        _release_tables(con, rid, rows)
        seconds = rel.switch(con, rid, _pointers(rid), built=["x"])
        assert _published(con) == (rows, rows) and seconds < 5
    assert rel.current_release(con).release_id == 3
    assert rel.rollback(con).release_id == 2 and _published(con) == (20, 20)
    assert rel.rollback(con, 1).release_id == 1 and _published(con) == (10, 10)
    with pytest.raises(rel.PublishingError, match="r1 is already current"):
        rel.rollback(con, 1)
    # a failed release is never current and its build stays inspectable
    rid = rel.begin_release(con, trigger="test", selection="all", git_commit=None)
    _release_tables(con, rid, 99)
    rel.finish_failed(con, rid, failures=["test.x: fail"], built=[], manifest_path=None)
    assert _published(con) == (10, 10)
    with pytest.raises(rel.PublishingError, match="has status failed"):
        rel.rollback(con, rid)
    # keep 1: the newest published (r3) and the current (r1) stay, r2 goes, failed r4 stays
    assert rel.cleanup(con, keep=1) == [2]
    assert set(rel.release_schemas(con)) == {1, 3, 4}
    assert _published(con) == (10, 10)
    with pytest.raises(rel.PublishingError, match="cleaned up"):
        rel.rollback(con, 2)


def test_an_interrupted_release_is_abandoned_and_its_schemas_dropped(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rel.ensure_releases(con)
    rid = rel.begin_release(con, trigger="test", selection="all", git_commit=None)
    _release_tables(con, rid, 5)
    rel.switch(con, rid, _pointers(rid))
    killed = rel.begin_release(con, trigger="test", selection="all", git_commit=None)
    _release_tables(con, killed, 7)
    assert rel.recover_interrupted(con) == [killed]
    assert rel.get_release(con, killed).status == "abandoned"
    assert set(rel.release_schemas(con)) == {rid}
    # schemas left by a process killed before it recorded its release are not reused
    con.execute("create schema marts__r9")
    assert rel.begin_release(con, trigger="test", selection="all", git_commit=None) == 10


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _reader_holding(path: Path, seconds: float) -> subprocess.Popen[str]:
    """A reader process that keeps the file open (read-only) for ``seconds``, once it says so."""
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline() == "open\n"
    return reader


def test_a_release_takes_the_file_once_readers_let_go_and_dbt_reuses_it(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    monkeypatch.setattr("dataops.core.warehouse.PROGRESS_SECONDS", 0.5)
    reader = _reader_holding(path, 2.0)
    started = time.monotonic()
    with wap.hold_file(path, wait=60):
        assert time.monotonic() - started > 1.0  # it waited for the reader
        assert "waiting for readers to close" in capsys.readouterr().out
        # what dbt-duckdb does in the same process: it gets the open database, no lock met
        with duckdb.connect(str(path), read_only=False, config={}) as con:
            con.execute("create table t as select 1 as x")
        # meanwhile no other process can take the file
        late = subprocess.run(
            [sys.executable, "-c", HOLDER, str(path), "0"], capture_output=True, text=True
        )
        assert late.returncode != 0 and "lock" in late.stderr.lower()
    reader.wait(timeout=30)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("select x from t").fetchall() == [(1,)]


def test_a_release_gives_up_on_readers_naming_the_file_and_records_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("DATAOPS_HOME", str(home))
    monkeypatch.setenv(wap.FILE_WAIT_ENV, "1.5")
    settings = load_settings("prod")
    settings.warehouse_path.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        rel.ensure_releases(con)
    reader = _reader_holding(settings.warehouse_path, 30.0)
    try:
        with (
            pytest.raises(rel.PublishingError) as raised,
            wap.ReleaseBuild(settings, trigger="test", commit="x", dbt_in_process=True),
        ):
            raise AssertionError("the release must not start")
    finally:
        reader.kill()
        reader.wait(timeout=30)
    message = str(raised.value)
    assert f"Could not open {settings.warehouse_path}" in message
    assert "Nothing was built or published" in message and wap.FILE_WAIT_ENV in message
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert rel.list_releases(con) == []


def test_a_partial_release_reads_what_it_did_not_build_from_the_current_one(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rel.ensure_releases(con)
    assert rel.begin_release(con, trigger="test", selection="all", git_commit=None) == 1
    _release_tables(con, 1, 4)
    pointers = _pointers(1)
    pointers["marts.fct_inc"] = rel.Pointer(
        "marts", "fct_inc", "marts__r1", "model.dataops.fct_inc", "incremental"
    )
    con.execute("create table marts__r1.fct_inc as select 42 as kept")
    rel.switch(con, 1, pointers)
    current = rel.current_release(con)
    rel.prepare_release(con, 2, current, {"model.dataops.fct_inc"})
    # not selected: a view on the current release; selected incremental: its state carried over
    assert rel.relation_type(con, "marts__r2", "fct_a") == "VIEW"
    assert con.execute("select count(*) from marts__r2.fct_a").fetchone() == (4,)
    assert rel.relation_type(con, "marts__r2", "fct_inc") == "BASE TABLE"
    assert con.execute("select kept from marts__r2.fct_inc").fetchone() == (42,)


def test_the_published_manifest_names_the_published_relations():
    manifest = {
        "nodes": {
            "model.dataops.fct_orders": {
                "resource_type": "model",
                "schema": "marts__r12",
                "alias": "fct_orders",
                "relation_name": '"warehouse_prod"."marts__r12"."fct_orders"',
            },
            "test.dataops.x": {"resource_type": "test", "schema": "dbt_test__audit"},
        }
    }
    published = wap.published_manifest(manifest)["nodes"]["model.dataops.fct_orders"]
    assert published["schema"] == "marts"
    assert published["relation_name"] == '"warehouse_prod"."marts"."fct_orders"'
    assert manifest["nodes"]["model.dataops.fct_orders"]["schema"] == "marts__r12"  # a copy


def _dbt_ls(tmp_path: Path, release: str | None) -> subprocess.CompletedProcess[str]:
    """`dbt ls` of two nodes on the in-memory lint target, with a release var."""
    from dataops.dbt.runner import dbt_args, dbt_env, run_dbt_subprocess

    args = dbt_args(
        "ls",
        "lint",
        select=["fct_orders", "country_codes"],
        dbt_vars={wap.RELEASE_VAR: release} if release else None,
        extra=[
            "--resource-types",
            "model",
            "seed",
            "--output",
            "json",
            "--output-keys",
            "name schema",
            "--quiet",
            "--target-path",
            str(tmp_path / "target"),
        ],
    )
    env = dbt_env(target="lint", target_path=tmp_path / "target")
    return run_dbt_subprocess(args, env, timeout=600)


@pytest.mark.slow  # two dbt parses
def test_a_release_build_puts_every_node_in_its_release_schema(tmp_path):
    listed = _dbt_ls(tmp_path, "r12")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    schemas = {
        row["name"]: row["schema"]
        for row in map(json.loads, filter(None, listed.stdout.splitlines()))
    }
    assert schemas == {"fct_orders": "marts__r12", "country_codes": "reference__r12"}
    wrong = _dbt_ls(tmp_path, "marts; drop table x")
    assert wrong.returncode != 0
    assert "var dataops_release must look like r<id>" in wrong.stdout + wrong.stderr


# ---------------------------------------------------------------- slow: real builds


class Prod:
    """A copy of the project (its own dataops package and dbt project) and a prod home."""

    def __init__(self, repo: Path, home: Path) -> None:
        self.repo, self.home = repo, home

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse_prod.duckdb"

    def env(self, **extra: str) -> dict[str, str]:
        env = platform_env(self.home, "prod")
        env.update(extra)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dataops.cli", *args]

    def dataops(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.repo,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=900,
        )

    def edit(self, relative: str, old: str, new: str) -> None:
        edit_file(self.repo, relative, old, new)

    def copy(self, destination: Path) -> Prod:
        shutil.copytree(self.repo, destination / "repo")
        return Prod(destination / "repo", clone_home(self.home, destination / "home"))


def edit_file(repo: Path, relative: str, old: str, new: str) -> None:
    path = repo / relative
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {relative}"
    path.write_text(text.replace(old, new))


def copy_repo(repo: Path) -> Path:
    """A copy of the dbt project and the dataops package, for a test to change."""
    for part in (*PROJECT_PARTS, "dataops"):
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (repo / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, repo / part)
    return repo


def kill_in_switch(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run a publish paused inside its switch transaction (SWITCH_PAUSE_ENV); kill -9 it there."""
    publisher = subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, rel.SWITCH_PAUSE_ENV: "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in publisher.stdout:  # wait until it is inside the switch transaction
        lines.append(line)
        if "switch paused" in line:
            break
    assert "switch paused" in lines[-1], "".join(lines)
    os.kill(publisher.pid, signal.SIGKILL)
    publisher.wait(timeout=60)


def checksums(warehouse: Path) -> dict[str, tuple]:
    """Row count and an order-independent checksum of every published relation."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return read_checksums(con)


def read_checksums(con: duckdb.DuckDBPyConnection, schemas=PUBLISHED_SCHEMAS) -> dict[str, tuple]:
    names = con.execute(
        "select table_schema, table_name from information_schema.tables "
        f"where table_schema in ({', '.join('?' for _ in schemas)}) order by 1, 2",
        list(schemas),
    ).fetchall()
    return {
        f"{schema}.{name}": con.execute(
            f'select count(*), coalesce(sum(hash(t)), 0) from "{schema}"."{name}" as t'
        ).fetchone()
        for schema, name in names
    }


@pytest.fixture(scope="module")
def released(built_platform, tmp_path_factory) -> Prod:
    """The built sample platform as prod (its warehouse file renamed), released once (r1)."""
    root = tmp_path_factory.mktemp("publishing")
    repo = copy_repo(root / "repo")
    home = clone_home(built_platform.home, root / "home")
    (home / "warehouse_dev.duckdb").rename(home / "warehouse_prod.duckdb")
    prod = Prod(repo, home)
    first = prod.dataops("deploy", "--no-docs")
    assert first.returncode == 0 and "Published release r1" in first.stdout, (
        first.stdout + first.stderr
    )
    return prod


BREAKAGES = {
    "data_test": (
        "tests/dbt/singular/assert_no_order_is_published.sql",
        None,
        "select order_id from {{ ref('fct_orders') }}\n",
        "assert_no_order_is_published",
    ),
    "unit_test": (
        "models/marts/core/_core__models.yml",
        "lifetime_value: 25.00, is_repeat_customer: true",
        "lifetime_value: 26.00, is_repeat_customer: true",
        "test_dim_customers_cohort_and_lifetime_value",
    ),
    "contract": (
        "models/marts/finance/fct_daily_revenue.sql",
        "count(*) as order_count,",
        "cast(count(*) as varchar) as order_count,",
        "fct_daily_revenue",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_deploy_that_fails_its_audit_publishes_nothing(released, tmp_path, breakage):
    prod = released.copy(tmp_path)
    path, old, new, failing = BREAKAGES[breakage]
    if old is None:
        (prod.repo / path).write_text(new)
    else:
        prod.edit(path, old, new)
    before = checksums(prod.warehouse)
    manifest_before = (prod.home / "prod-state" / "manifest.json").read_bytes()
    alerts: list[dict] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            alerts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = prod.dataops(
            "deploy", "--no-docs", ALERT_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/"
        )
    finally:
        server.shutdown()

    assert result.returncode == 1, result.stdout + result.stderr
    # the failed audit alerts like a failed run: one POST naming the release and the test
    [alert] = alerts
    assert alert["event"] == "publishing.audit_failed" and alert["release"] == "r2"
    assert any(failing in f for f in alert["failures"])
    assert "Not published: release r2 failed its audit" in result.stdout
    assert failing in result.stdout
    assert checksums(prod.warehouse) == before
    assert (prod.home / "prod-state" / "manifest.json").read_bytes() == manifest_before
    listed = prod.dataops("releases").stdout
    assert "r2     failed" in listed and failing in listed and "inspect: schemas" in listed
    assert any(line.startswith("* r1 ") for line in listed.splitlines())
    with duckdb.connect(str(prod.warehouse), read_only=True) as con:
        [(event,)] = con.execute(
            "select details from platform.events where event_type = 'publishing.audit_failed'"
        ).fetchall()
    assert failing in event


READER = """
import json, sys, time, duckdb
sys.path.insert(0, sys.argv[3])
from tests.python.test_publishing import read_checksums
seen, deadline = [], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        con = duckdb.connect(sys.argv[1], read_only=True)
    except duckdb.IOException:
        time.sleep(0.05)  # the writer holds the file: DuckDB allows no reader then
        continue
    try:
        snapshot = read_checksums(con, ("marts",))
    finally:
        con.close()
    if not seen or seen[-1] != snapshot:
        seen.append(snapshot)
    print(json.dumps({k: [str(x) for x in v] for k, v in snapshot.items()}), flush=True)
    time.sleep(float(sys.argv[4]))
"""
# A reader reconnecting every 20 ms once starved a release build in CI (2026-12-02): DuckDB keeps
# no lock queue and dbt-duckdb's 5 connect attempts all met the reader's lock. The release now
# takes the file with its own jittered retries and holds it (wap.hold_file): the test polls as
# tightly as that reader did.
READER_POLL_SECONDS = "0.02"


def _observed(output: str) -> list[dict]:
    """The reader's snapshots (a last line still being written is left for the next look)."""
    return [json.loads(line) for line in output.splitlines(keepends=True) if line.endswith("}\n")]


def _wait_for_snapshot(log: Path, found, what: str, timeout: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = _observed(log.read_text())
        if found(seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the reader made no {what} in {timeout} s: {log.read_text()[-2000:]}")


def _as_text(snapshot: dict[str, tuple]) -> dict:
    return {k: [str(x) for x in v] for k, v in snapshot.items() if k.startswith("marts.")}


@pytest.mark.slow
def test_readers_see_whole_releases_only_and_rollback_restores_the_previous(released, tmp_path):
    prod = released.copy(tmp_path)
    before = checksums(prod.warehouse)
    prod.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "sum(case when is_fulfillable then order_amount else 0 end) as gross_revenue",
        "sum(order_amount) as gross_revenue",
    )
    log = tmp_path / "reader.jsonl"
    with log.open("w") as out:
        reader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER,
                str(prod.warehouse),
                "900",
                str(REPO_ROOT),
                READER_POLL_SECONDS,
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        first = _wait_for_snapshot(log, lambda seen: seen, "a first read")
        result = prod.dataops("deploy", "--no-docs")
        assert result.returncode == 0 and "Published release r2" in result.stdout, result.stdout
        after = checksums(prod.warehouse)
        new = _as_text(after)
        _wait_for_snapshot(log, lambda seen: new in seen, "a read of the new release")
    finally:
        reader.send_signal(signal.SIGTERM)
        errors = reader.communicate(timeout=60)[1]
    assert after["marts.fct_daily_revenue"] != before["marts.fct_daily_revenue"]
    unchanged = set(before) - {"marts.fct_daily_revenue"}
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    observed = _observed(log.read_text())
    # every read saw one release whole: the previous or the new one, never a mix
    old = _as_text(before)
    assert first[0] == old, errors
    mixed = [snapshot for snapshot in observed if snapshot not in (old, new)]
    assert not mixed, mixed[:1]
    assert observed[-1] == new

    rolled = prod.dataops("rollback")
    assert rolled.returncode == 0 and "r2 -> r1" in rolled.stdout, rolled.stdout + rolled.stderr
    assert checksums(prod.warehouse) == before
    assert prod.dataops("rollback", "r2").returncode == 0
    assert checksums(prod.warehouse) == after


@pytest.mark.slow
def test_a_publish_killed_mid_switch_leaves_the_previous_release_and_the_next_succeeds(
    released, tmp_path
):
    prod = released.copy(tmp_path)
    before = checksums(prod.warehouse)
    prod.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "sum(case when is_fulfillable then order_amount else 0 end) as gross_revenue",
        "sum(order_amount) as gross_revenue",
    )
    kill_in_switch(prod.command("build", "--select", "fct_daily_revenue"), prod.repo, prod.env())

    assert checksums(prod.warehouse) == before
    deployed = prod.dataops("deploy", "--no-docs")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "release r2 was interrupted; marked abandoned" in deployed.stdout
    assert "Published release r3" in deployed.stdout
    assert checksums(prod.warehouse)["marts.fct_daily_revenue"] != before["marts.fct_daily_revenue"]
    listed = prod.dataops("releases").stdout
    assert "r2     abandoned" in listed and listed.splitlines()[0].startswith("* r3")


def _prod_sensor_run(released, tmp_path, monkeypatch, land):
    """A copy of the released prod home; ``land(archive, landing)`` lands files, then one tick of
    the landing sensor and its run, in process on an ephemeral Dagster instance."""
    from dagster import DagsterInstance, build_sensor_context

    from orchestration.definitions import build_definitions

    prod = released.copy(tmp_path)
    home = prod.home
    (home / "landing").rename(home / "archive")
    (home / "landing").mkdir()
    land(home / "archive", home / "landing")
    before = checksums(prod.warehouse)
    for key, value in platform_env(home, "prod").items():
        if key.startswith(("DATAOPS_", "DBT_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("DATAOPS_LANDING", raising=False)
    defs = build_definitions()
    instance = DagsterInstance.ephemeral()
    tick = defs.get_sensor_def("landed_files")(
        build_sensor_context(instance=instance, definitions=defs)
    )
    [request] = tick.run_requests
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=list(request.asset_selection),
        tags=request.tags,
        raise_on_error=False,
    )
    return prod, before, result


@pytest.mark.slow
def test_a_dagster_sensor_run_with_a_failing_test_publishes_nothing(
    released, tmp_path, monkeypatch
):
    def unknown_customer_sessions(archive: Path, landing: Path) -> None:
        folder = landing / "web" / "sessions"
        folder.mkdir(parents=True)
        source = sorted((archive / "web" / "sessions").glob("*.parquet"))[0]
        with duckdb.connect() as con:  # sessions of a customer the shop does not know
            con.execute(
                "copy (select * replace ('u' || session_id as session_id, "
                "987654321::bigint as customer_id) "
                f"from read_parquet('{source}') limit 20) to '{folder / 'sessions_u.parquet'}' "
                "(format parquet)"
            )

    prod, before, result = _prod_sensor_run(
        released, tmp_path, monkeypatch, unknown_customer_sessions
    )

    assert not result.success
    failures = [e.message or "" for e in result.all_events if e.is_step_failure]
    failures += [str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
    assert any("relationships_stg_web__sessions_customer_id" in f for f in failures), failures
    assert any("Not published: release r2" in f for f in failures), failures
    # every published relation (all layers are tables) is byte-identical
    assert checksums(prod.warehouse) == before
    materialized = {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert "marts/fct_session_conversions" not in materialized
    assert not {k for k in materialized if k.startswith(("staging/", "marts/"))}
    with duckdb.connect(str(prod.warehouse), read_only=True) as con:
        current, failed = con.execute(
            "select max(release_id) filter (where is_current), "
            "max(release_id) filter (where status = 'failed') from platform.releases"
        ).fetchone()
    assert (current, failed) == (1, 2)


@pytest.mark.slow
def test_a_dagster_sensor_run_that_passes_publishes_with_the_published_row_counts(
    released, tmp_path, monkeypatch
):
    from dagster import AssetKey

    from tests.python.dagster_harness import extra_sessions

    def new_sessions(archive: Path, landing: Path) -> None:
        extra_sessions(archive, landing, 1)

    prod, _, result = _prod_sensor_run(released, tmp_path, monkeypatch, new_sessions)
    assert result.success
    materialized = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert "marts/fct_session_conversions" in materialized
    with duckdb.connect(str(prod.warehouse), read_only=True) as con:
        for key, metadata in materialized.items():
            if key.startswith(("staging/", "marts/")):
                schema, table = AssetKey.from_user_string(key).path
                [(rows,)] = con.execute(f'select count(*) from "{schema}"."{table}"').fetchall()
                assert metadata["dagster/row_count"].value == rows, key
