"""The same project on Spark (local session) and PostgreSQL (a real server) as on DuckDB.

One sample is generated and loaded into each engine from the same declarations; dbt compiles,
builds and tests the whole project on each; every mart has the same row count and the same
order-independent checksum on all three engines (dataops/engines/checksum.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dataops.core.settings import PROJECT_DIR, REPO_ROOT
from dataops.engines.checksum import mart_names, normalise, table_checksum
from dataops.engines.dbt_commands import engine_dbt_args
from dataops.engines.profile import ProfileError, profile_output
from tests.python.conftest import clone_home, platform_env

POSTGRES_IDENTIFIER_LIMIT = 63


# Fast checks ---------------------------------------------------------------------------------


def test_checksums_ignore_row_order_types_and_lineage_columns():
    from datetime import UTC, datetime
    from decimal import Decimal

    one = table_checksum(
        ["order_id", "amount", "_loaded_at"],
        [(1, Decimal("12.30"), "a"), (2, Decimal("0.00"), "b")],
    )
    same = table_checksum(
        ["amount", "order_id", "_loaded_at"],
        [(Decimal("0"), 2, "x"), (Decimal("12.3"), 1, "y")],
    )
    assert one == same and one.rows == 2
    assert table_checksum(["amount"], [(Decimal("12.31"),)]) != table_checksum(
        ["amount"], [(Decimal("12.30"),)]
    )
    assert normalise(datetime(2025, 1, 1, 10, tzinfo=UTC)) == normalise(datetime(2025, 1, 1, 10))
    assert normalise(None) != normalise("") and normalise(True) == "true"


def test_engine_profiles_come_from_the_environment_without_secrets(monkeypatch):
    monkeypatch.setenv("DATAOPS_PG_PORT", "6543")
    monkeypatch.setenv("DATAOPS_HOME", "/srv/dataops")
    monkeypatch.delenv("DATAOPS_SPARK_DIR", raising=False)
    postgres = profile_output("postgres")
    assert (postgres["host"], str(postgres["port"])) == ("127.0.0.1", "6543")
    raw = (REPO_ROOT / "profiles" / "profiles.yml").read_text()
    assert "password: \"{{ env_var('DBT_ENV_SECRET_PG_PASSWORD'" in raw
    spark = profile_output("spark")
    assert spark["method"] == "session"
    params = spark["server_side_parameters"]
    assert params["spark.sql.warehouse.dir"] == "/srv/dataops/spark/spark-warehouse"
    metastore = params["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert "databaseName=/srv/dataops/spark/metastore_db;" in metastore
    assert (
        "-Dderby.stream.error.file=/srv/dataops/spark/derby.log"
        in params["spark.driver.extraJavaOptions"]
    )
    with pytest.raises(ProfileError, match="no output 'oracle'"):
        profile_output("oracle")


def test_spark_scratch_files_are_git_ignored(tmp_path):
    home = REPO_ROOT / ".dataops"
    paths = [f"{home.name}/spark/metastore_db/x", f"{home.name}/spark/derby.log"]
    result = subprocess.run(
        ["git", "check-ignore", *paths], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == paths


def test_model_and_unit_test_names_fit_postgres_identifiers():
    """PostgreSQL cuts identifiers at 63 characters; dbt refuses longer relation names."""
    too_long = []
    for path in (PROJECT_DIR / "models").rglob("*"):
        if path.suffix == ".sql" and len(path.stem) > POSTGRES_IDENTIFIER_LIMIT:
            too_long.append(f"{path}: model {path.stem}")
        if path.suffix == ".yml":
            document = yaml.safe_load(path.read_text()) or {}
            for test in document.get("unit_tests") or []:
                if len(test["name"]) > POSTGRES_IDENTIFIER_LIMIT:
                    too_long.append(f"{path}: unit test {test['name']}")
    assert not too_long, "names longer than 63 characters:\n" + "\n".join(too_long)


# End to end on three engines ------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str], timeout: int = 3600) -> str:
    result = subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-6000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result.stdout


def _checksums(home: Path, engine: str, env: dict[str, str]) -> dict[str, dict]:
    output = _run([sys.executable, "-m", "dataops.cli", "engines", "checksum", engine], env)
    return json.loads(output[output.index("{") :])


def _build_and_test(engine: str, env: dict[str, str]) -> dict[str, str]:
    """dbt compile and dbt build of the whole project; the statuses of every node."""
    _run(engine_dbt_args(engine, "compile"), env)
    _run(engine_dbt_args(engine, "build"), env)
    results = json.loads((Path(env["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    return {r["unique_id"]: r["status"] for r in results["results"]}


@pytest.fixture(scope="module")
def duckdb_reference(
    built_platform, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict]]:
    """A copy of the sample built on DuckDB (the main job) and its mart checksums."""
    home = clone_home(built_platform.home, tmp_path_factory.mktemp("engines") / "home")
    env = platform_env(home)
    _run(engine_dbt_args("duckdb", "compile"), env)  # the whole project, as on the other engines
    return home, _checksums(home, "duckdb", env)


def _engine_env(home: Path, engine: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = platform_env(home)
    env.update(extra or {})
    env["DBT_TARGET_PATH"] = str(home / f"target-{engine}")
    return env


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[dict[str, str]]:
    from dataops.engines.local_postgres import LocalPostgres

    server = LocalPostgres.start()
    try:
        yield server.env()
    finally:
        server.stop()


def _assert_same_marts(reference: dict[str, dict], other: dict[str, dict], engine: str) -> None:
    assert set(reference) == set(mart_names()) and all(v["rows"] > 0 for v in reference.values())
    differing = {
        name: {"duckdb": reference[name], engine: other.get(name)}
        for name in reference
        if other.get(name) != reference[name]
    }
    assert not differing, f"marts differ between DuckDB and {engine}: {differing}"


def _assert_green(statuses: dict[str, str]) -> None:
    # Declared exposures (dashboards) are nodes of `dbt build` with nothing to run: "no-op".
    ok = {"exposure": ("no-op",)}
    bad = {
        uid: status
        for uid, status in statuses.items()
        if status not in ok.get(uid.split(".")[0], ("success", "pass"))
    }
    assert not bad, bad
    kinds = {uid.split(".")[0] for uid in statuses}
    assert {"model", "seed", "test", "unit_test"} <= kinds, kinds


@pytest.fixture(scope="module")
def postgres_built(duckdb_reference, postgres_server) -> tuple[Path, dict[str, str], dict]:
    """The sample loaded into PostgreSQL and built there: (home, environment, node statuses)."""
    home, _ = duckdb_reference
    env = _engine_env(home, "postgres", postgres_server)
    output = _run([sys.executable, "-m", "dataops.cli", "engines", "load", "postgres"], env)
    assert "shop.order_items" in output and "ERROR" not in output
    again = _run([sys.executable, "-m", "dataops.cli", "engines", "load", "postgres"], env)
    assert all(" 0 files loaded" in line for line in again.splitlines() if "files loaded" in line)
    return home, env, _build_and_test("postgres", env)


def _postgres_rows(env: dict[str, str], sql: str) -> tuple[list[str], list[tuple]]:
    import psycopg2

    with (
        psycopg2.connect(
            host=env["DATAOPS_PG_HOST"],
            port=int(env["DATAOPS_PG_PORT"]),
            user=env["DATAOPS_PG_USER"],
            dbname=env["DATAOPS_PG_DATABASE"],
        ) as con,
        con.cursor() as cur,
    ):
        cur.execute(sql)
        rows = cur.fetchall() if cur.description else []
        return [d[0] for d in cur.description or []], rows


@pytest.mark.slow
def test_the_project_builds_on_postgres_with_the_same_marts(duckdb_reference, postgres_built):
    _, reference = duckdb_reference
    home, env, statuses = postgres_built
    _assert_green(statuses)
    _assert_same_marts(reference, _checksums(home, "postgres", env), "postgres")
    # A second build runs the incremental fact incrementally, and changes nothing.
    _run(engine_dbt_args("postgres", "build", "--select", "fct_order_items"), env)
    after = _checksums(home, "postgres", env)
    assert after["fct_order_items"] == reference["fct_order_items"]


@pytest.mark.slow
def test_a_pull_request_environment_on_postgres_is_one_schema_of_the_shared_database(
    postgres_built,
):
    home, env, _ = postgres_built
    pr_env = {**env, "DATAOPS_PG_SCHEMA": "pr_7", "DBT_TARGET_PATH": str(home / "target-pr-7")}
    _run(
        engine_dbt_args(
            "postgres",
            "build",
            "--select",
            "fct_orders+",
            "--defer",
            "--state",
            env["DBT_TARGET_PATH"],
        ),
        pr_env,
    )
    _, tables = _postgres_rows(
        env, "select table_name from information_schema.tables where table_schema = 'pr_7'"
    )
    built = {name for (name,) in tables}
    assert {"fct_orders", "dim_customers", "fct_daily_revenue"} <= built
    assert not {name for name in built if name.startswith(("stg_", "int_"))}, built
    pr = table_checksum(*_postgres_rows(env, "select * from pr_7.fct_orders"))
    prod = table_checksum(*_postgres_rows(env, "select * from marts.fct_orders"))
    assert pr == prod and pr.rows > 0
    _postgres_rows(env, "drop schema pr_7 cascade")
    assert _postgres_rows(env, "select count(*) from marts.fct_orders")[1][0][0] == prod.rows


@pytest.mark.slow
def test_the_project_builds_on_spark_with_the_same_marts(duckdb_reference):
    home, reference = duckdb_reference
    env = _engine_env(home, "spark")
    output = _run([sys.executable, "-m", "dataops.cli", "engines", "load", "spark"], env)
    assert "shop.order_items" in output and "ERROR" not in output
    statuses = _build_and_test("spark", env)
    _assert_green(statuses)
    assert (home / "spark" / "metastore_db").is_dir() and (home / "spark" / "derby.log").exists()
    _assert_same_marts(reference, _checksums(home, "spark", env), "spark")
