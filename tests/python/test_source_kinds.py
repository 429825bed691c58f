"""Onboarding real sources by CLI commands only, on a copy of the built platform: a source of
several CSV tables with a composite key, reference data and amounts in cents. Each new source
builds green, and the main job (`dataops run`) of the whole project stays green afterwards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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
    statuses = run_statuses(home, "primary_key_stg_depot")
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
