"""Onboarding real sources by CLI commands only, on a copy of the built platform: a source of
several CSV tables with a composite key, reference data and amounts in cents; a PostgreSQL table
(the real server of the engine tests) and a paginated JSON API (a local HTTP server), both
extracted with dlt, resuming after a kill and a failing page, stopping on a new field. Each new
source builds green, and the main job (`dataops run`) of the whole project stays green after."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest
import yaml

from dataops.core.settings import REPO_ROOT
from tests.python.conftest import platform_env
from tests.python.dbt_project_copy import copy_project


def project_copy(destination: Path) -> Path:
    """The whole project (dbt and Python), so onboarding changes a copy, not this checkout."""
    project = copy_project(destination)
    for package in ("dataops", "orchestration"):
        shutil.copytree(
            REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return project


def cli(project: Path, home: Path, *args: str, env: dict | None = None) -> str:
    """`dataops ...` run from the project copy; fails the test with its output on an error."""
    run_env = platform_env(home)
    run_env["DBT_PROFILES_DIR"] = str(project / "profiles")
    run_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "dataops.cli", *args],
        cwd=project,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dataops {' '.join(args)}\n{output}"
    return output


def run_statuses(home: Path, prefix: str) -> dict[str, str]:
    """Status of each test and model of the last dbt invocation whose name starts with prefix."""
    results = json.loads((home / "target" / "run_results.json").read_text())["results"]
    return {
        r["unique_id"].split(".")[2]: r["status"]
        for r in results
        if r["unique_id"].split(".")[2].startswith(prefix)
    }


# A small shop's depot: stores and products are reference data; stock levels are keyed by
# (supply_id, sku) and delivered daily; prices in integer cents.
DEPOT = {
    "stores/stores.csv": (
        "store_id,name,city\n1,Mitte,Berlin\n2,Altona,Hamburg\n3,Schwabing,Munich\n"
    ),
    "products/products.csv": (
        "sku,product_name,price_cents\nA-1,Blue Mug,1250\nA-2,Red Mug,1399\nB-1,Teapot,2900\n"
    ),
    "stock/stock_2024-03-01.csv": (
        "supply_id,sku,store_id,quantity\n"
        "10,A-1,1,5\n10,A-2,1,7\n11,A-1,2,0\n11,B-1,2,3\n12,A-1,3,9\n"
    ),
    "stock/stock_2024-03-02.csv": "supply_id,sku,store_id,quantity\n10,A-1,1,4\n13,B-1,3,2\n",
}


def write_depot(landing: Path) -> None:
    for name, text in DEPOT.items():
        path = landing / "depot" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.slow
def test_a_three_table_csv_source_with_a_composite_key_is_onboarded_by_cli(
    platform_copy: Path, tmp_path: Path
):
    home = platform_copy
    project = project_copy(tmp_path / "project")
    write_depot(home / "landing")

    drafted = cli(project, home, "sources", "add", "depot", "--all")
    assert "[3/3] stores" in drafted
    assert "composite primary key (supply_id, sku)" in drafted
    assert "price_cents is an amount in cents: derived price" in drafted
    assert "stores looks like reference data" in drafted
    assert "stock looks like reference data" not in drafted, "dated daily files are no reference"
    declaration = project / "models/staging/depot/_depot__sources.yml"
    tables = {t["name"]: t for t in yaml.safe_load(declaration.read_text())["sources"][0]["tables"]}
    assert list(tables) == ["products", "stock", "stores"]
    assert tables["stock"]["config"]["meta"]["primary_key"] == ["supply_id", "sku"]
    assert tables["stores"]["config"]["meta"]["reference"] is True
    # Running it again drafts nothing new and changes nothing.
    before = declaration.read_text()
    assert "nothing to draft" in cli(project, home, "sources", "add", "depot", "--all")
    assert declaration.read_text() == before

    ingested = cli(project, home, "ingest", "--source", "depot")
    assert "depot" in ingested and "quarantined" not in ingested.split("depot", 1)[1][:200]
    cli(project, home, "build", "--select", "source:depot+")
    statuses = run_statuses(home, "staging_rules_stg_depot")
    assert len(statuses) == 3 and set(statuses.values()) == {"pass"}, statuses
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        stock = con.execute(
            "select supply_id, sku, quantity from staging.stg_depot__stock order by 1, 2"
        ).fetchall()
        prices = con.execute(
            "select sku, price from staging.stg_depot__products order by 1"
        ).fetchall()
    # (10, A-1) came again on day 2: the latest delivery wins; other keys are kept once each
    assert stock == [
        (10, "A-1", 4),
        (10, "A-2", 7),
        (11, "A-1", 0),
        (11, "B-1", 3),
        (12, "A-1", 9),
        (13, "B-1", 2),
    ]
    assert [(sku, str(price)) for sku, price in prices] == [
        ("A-1", "12.50"),
        ("A-2", "13.99"),
        ("B-1", "29.00"),
    ]

    # The whole project's main job stays green with the new source in it.
    ran = cli(project, home, "run")
    assert "OK in" in ran, ran


# --- A PostgreSQL table and a paginated JSON API, extracted with dlt ------------------------------


class CatalogApi:
    """A local JSON API: /items?page=N&per_page=M&updated_since=T, records under "data", in
    updated_at order. It can fail a page (HTTP 500) a number of times, and grow a new field."""

    def __init__(self) -> None:
        self.items = {
            i: {"item_id": i, "title": f"Item {i}", "price": f"{i}.50", "updated_at": _at(i)}
            for i in range(1, 26)
        }
        self.failures: dict[int, int] = {}  # page -> how many more requests of it fail
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                api.requests.append(self.path)
                page, size = int(query.get("page", 1)), int(query.get("per_page", 10))
                if url.path != "/items":
                    self.send_error(404)
                    return
                if api.failures.get(page, 0) > 0:
                    api.failures[page] -= 1
                    self.send_error(500, "temporarily broken")
                    return
                since = query.get("updated_since", "")
                rows = sorted(
                    (r for r in api.items.values() if r["updated_at"] >= since),
                    key=lambda r: (r["updated_at"], r["item_id"]),
                )
                body = json.dumps({"data": rows[(page - 1) * size : page * size]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _at(hour: int) -> str:
    return f"2024-03-{1 + hour // 24:02d}T{hour % 24:02d}:00:00"


def raw_rows(home: Path, relation: str, columns: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        return con.execute(f"select {columns} from {relation} order by all").fetchall()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    from dataops.engines.local_postgres import LocalPostgres

    server = LocalPostgres.start()
    try:
        yield f"postgresql://{server.user}@127.0.0.1:{server.port}/{server.database}"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_postgres_table_and_an_api_are_onboarded_by_cli_and_resume_after_failures(
    platform_copy: Path, tmp_path: Path, postgres_url: str
):
    import psycopg2

    home = platform_copy
    project = project_copy(tmp_path / "project")
    api = CatalogApi()
    env = {"INVENTORY_PG_URL": postgres_url, "CATALOG_API_URL": api.url}
    try:
        with psycopg2.connect(postgres_url) as pg, pg.cursor() as cur:
            cur.execute(
                "create table stock_moves (move_id bigint primary key, sku text not null, "
                "quantity integer, amount numeric(12, 2), updated_at timestamp not null)"
            )
            cur.execute(
                "insert into stock_moves select i, 'S' || (i % 7), i % 5, i * 1.25, "
                "timestamp '2024-03-01' + i * interval '1 hour' from generate_series(1, 40) i"
            )

        # 1. PostgreSQL: onboard (first extract + draft), ingest, build.
        added = cli(
            project,
            home,
            "sources",
            "add",
            "inventory",
            "--postgres",
            "INVENTORY_PG_URL",
            "--table",
            "stock_moves",
            "--cursor",
            "updated_at",
            env=env,
        )
        assert "40 rows landed" in added and "amount holds decimal numbers" in added, added
        declaration = (project / "models/staging/inventory/_inventory__sources.yml").read_text()
        assert "credentials_env: INVENTORY_PG_URL" in declaration
        assert postgres_url not in declaration, "credentials come from the environment only"

        # 2. Changes, then a run killed after extracting (before anything landed) ...
        with psycopg2.connect(postgres_url) as pg, pg.cursor() as cur:
            cur.execute(
                "insert into stock_moves select i, 'S' || (i % 7), i % 5, i * 1.25, "
                "timestamp '2024-03-01' + i * interval '1 hour' from generate_series(41, 50) i"
            )
            cur.execute(
                "update stock_moves set quantity = 99, updated_at = '2024-04-01' where move_id = 3"
            )
        folder = home / "landing/inventory/stock_moves"
        files_before = sorted(folder.iterdir())
        killed = subprocess.run(
            [sys.executable, "-m", "dataops.cli", "extract", "inventory"],
            cwd=project,
            env={**platform_env(home), **env, "DATAOPS_CRASH_AT": "extract_after_normalize"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert killed.returncode == -9, killed.stdout + killed.stderr
        assert sorted(folder.iterdir()) == files_before, "nothing landed from the killed run"
        # ... the next run finishes it: no gap, no duplicate.
        resumed = cli(project, home, "extract", "inventory", env=env)
        assert "finishing the load an earlier run left pending" in resumed, resumed
        cli(project, home, "ingest", "--source", "inventory")
        moves = raw_rows(home, "raw_inventory.stock_moves", "cast(move_id as bigint), quantity")
        assert [m for m, _ in moves] == sorted([*range(1, 51), 3]), "each change landed once"
        cli(project, home, "build", "--select", "source:inventory+")
        assert set(run_statuses(home, "staging_rules_stg_inventory").values()) == {"pass"}
        assert (
            raw_rows(home, "staging.stg_inventory__stock_moves", "count(*), sum(quantity)")[0][0]
            == 50
        )
        staged = raw_rows(
            home, "staging.stg_inventory__stock_moves where move_id = 3", "quantity, amount"
        )
        assert [(q, str(a)) for q, a in staged] == [(99, "3.75")]

        # 3. The API: onboard by pages, incremental by updated_at.
        added = cli(
            project,
            home,
            "sources",
            "add",
            "catalog",
            "--api",
            "CATALOG_API_URL",
            "--path",
            "/items",
            "--table",
            "items",
            "--records",
            "data",
            "--cursor",
            "updated_at",
            "--since-param",
            "updated_since",
            "--page-size",
            "10",
            env=env,
        )
        assert "25 rows landed" in added, added
        assert any("page=3" in r for r in api.requests), "25 records come in pages of 10"
        # changes; page 2 keeps failing: the run stops with a clear error, nothing lands
        for item_id in (2, 7, 30, 31):
            api.items[item_id] = {
                "item_id": item_id,
                "title": f"Item {item_id} v2",
                "price": "9.99",
                "updated_at": _at(100 + item_id),
            }
        api.failures[2] = 100
        items_folder = home / "landing/catalog/items"
        files_before = sorted(items_folder.iterdir())
        failed = _cli_fails(project, home, "extract", "catalog", env=env)
        assert "500" in failed and "Nothing was landed" in failed, failed
        assert sorted(items_folder.iterdir()) == files_before
        # page 1 fails once: retried; then everything since the last completed load lands
        api.failures = {1: 1}
        cli(project, home, "extract", "catalog", env=env)
        cli(project, home, "ingest", "--source", "catalog")
        items = raw_rows(home, "raw_catalog.items", "cast(item_id as bigint)")
        assert [i for (i,) in items] == sorted([*range(1, 26), 2, 7, 30, 31])
        # a new field is a schema change: a clear error naming it, nothing lands
        api.items[40] = {**api.items[31], "item_id": 40, "colour": "red", "updated_at": _at(200)}
        failed = _cli_fails(project, home, "extract", "catalog", env=env)
        assert "schema change in source catalog.items: field(s) ['colour']" in failed, failed
        # declared (a person's review), the next run resumes and the column loads
        path = project / "models/staging/catalog/_catalog__sources.yml"
        document = yaml.safe_load(path.read_text())
        document["sources"][0]["tables"][0]["columns"].append(
            {"name": "colour", "data_type": "varchar", "description": "Colour of the item."}
        )
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        cli(project, home, "sources", "sync")
        cli(project, home, "extract", "catalog", env=env)
        cli(project, home, "ingest", "--source", "catalog")
        cli(project, home, "build", "--select", "source:catalog+")
        assert set(run_statuses(home, "staging_rules_stg_catalog").values()) == {"pass"}
        staged = raw_rows(home, "staging.stg_catalog__items", "item_id, title, colour")
        assert len(staged) == 28 and staged[-1] == (40, "Item 31 v2", "red")
        assert (7, "Item 7 v2", None) in staged

        # 4. The whole project's main job (which extracts first) stays green.
        ran = cli(project, home, "run", env=env)
        assert "Extract (dlt):" in ran and "OK in" in ran, ran
    finally:
        api.stop()


def _cli_fails(project: Path, home: Path, *args: str, env: dict) -> str:
    run_env = {**platform_env(home), "DBT_PROFILES_DIR": str(project / "profiles"), **env}
    result = subprocess.run(
        [sys.executable, "-m", "dataops.cli", *args],
        cwd=project,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


CATALOG = {
    "version": 2,
    "sources": [
        {
            "name": "catalog",
            "description": "Items of the catalogue API.",
            "schema": "raw_catalog",
            "config": {
                "loaded_at_field": "_loaded_at",
                "freshness": {"warn_after": {"count": 26, "period": "hour"}},
                "meta": {
                    "landing": {"path": "catalog/{table}", "format": "jsonl"},
                    "extract": {
                        "kind": "http_api",
                        "base_url_env": "CATALOG_API_URL",
                        "max_attempts": 2,
                        "schedule": "*/30 * * * *",
                    },
                },
            },
            "tables": [
                {
                    "name": "items",
                    "description": "Items.",
                    "config": {
                        "meta": {
                            "primary_key": "item_id",
                            "extract": {
                                "path": "/items",
                                "records": "data",
                                "cursor": "updated_at",
                                "since_param": "updated_since",
                                "page_size": 10,
                            },
                        }
                    },
                    "columns": [
                        {"name": "item_id", "data_type": "bigint", "description": "Id."},
                        {"name": "title", "data_type": "varchar", "description": "Title."},
                        {"name": "price", "data_type": "decimal(18, 2)", "description": "EUR."},
                        {"name": "updated_at", "data_type": "timestamp", "description": "At."},
                    ],
                }
            ],
        }
    ],
}


def test_an_extracted_source_is_a_dagster_asset_on_its_own_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from dagster import DagsterInstance, materialize

    from dataops.sources.registry import parse_sources_file
    from orchestration.assets.extract import build_extract_assets, build_extract_schedules

    path = tmp_path / "models/staging/catalog/_catalog__sources.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(CATALOG, sort_keys=False))
    tables = parse_sources_file(path)
    api = CatalogApi()
    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATAOPS_LANDING", raising=False)
    monkeypatch.setenv("CATALOG_API_URL", api.url)
    try:
        (asset,) = build_extract_assets(tables, {"catalog": "catalog-team"})
        (schedule,) = build_extract_schedules(tables)
        assert asset.op.name == "extract_catalog"
        assert [k.path for k in asset.keys] == [["landing", "catalog", "items"]]
        assert (schedule.name, schedule.cron_schedule) == (
            "extract_catalog_schedule",
            "*/30 * * * *",
        )
        instance = DagsterInstance.ephemeral()
        result = materialize([asset], instance=instance)
        (event,) = result.asset_materializations_for_node("extract_catalog")
        assert event.metadata["rows_extracted"].value == 25
        landed = list((tmp_path / "home/landing/catalog/items").glob("*.jsonl"))
        assert sum(len(p.read_text().splitlines()) for p in landed) == 25
        # a page failing beyond the retries fails the asset with the extract's message
        api.items[3] = {**api.items[3], "updated_at": _at(300)}
        api.failures[1] = 5
        failed = materialize([asset], instance=instance, raise_on_error=False)
        assert not failed.success
        message = str(failed.all_events)
        assert "extracting source catalog (http_api) failed" in message
        assert "Nothing was landed" in message
    finally:
        api.stop()
