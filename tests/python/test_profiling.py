"""`dataops profile`: a source table's columns profiled over its batches, and the expectations
proposed for its declaration, on a staging table with known properties; `--write` puts them in
the YAML (comments kept), the file stays valid and the derived tests follow."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dataops.sources import profiling
from dataops.sources.registry import parse_sources_file
from tests.python.dbt_project_copy import copy_project

CATEGORIES = ("books", "games", "toys")


def _products(con: duckdb.DuckDBPyConnection) -> None:
    """stg_shop__products over 4 batches of 30 products each: category in 3 values, product_name
    always set (40 distinct, shaped like `Product 12`), unit_price 1.50 .. 90.00 never null,
    is_active null in the third batch only, updated_at never null."""
    con.execute("""
        create table stg_shop__products as
        select
            batch * 100 + item as product_id,
            'Product ' || cast((batch * 30 + item) % 40 as varchar) as product_name,
            ['books', 'games', 'toys'][item % 3 + 1] as category,
            cast(1.5 + (item * 88.5 / 29) as decimal(18, 2)) as unit_price,
            case when batch = 3 and item < 6 then null else item % 2 = 0 end as is_active,
            timestamp '2025-01-01' + to_days(batch) as updated_at,
            'batch' || cast(batch as varchar) as _batch_id
        from range(1, 5) as batches(batch), range(0, 30) as items(item)
    """)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, duckdb.DuckDBPyConnection]:
    project = copy_project(tmp_path / "project")
    con = duckdb.connect()
    _products(con)
    yield project, con
    con.close()


def _products_table(project: Path):
    path = project / "models" / "staging" / "shop" / "_shop__sources.yml"
    return next(t for t in parse_sources_file(path) if t.name == "products")


def test_profile_proposes_what_held_in_every_batch(project) -> None:
    project_dir, con = project
    table = _products_table(project_dir)
    profiles = {p.name: p for p in profiling.profile_relation(con, "stg_shop__products", table)}
    assert profiles["category"].values == [(c, 40) for c in CATEGORIES]
    assert profiles["category"].batches == 4 and profiles["category"].rows == 120
    assert profiles["product_name"].values is None and profiles["product_name"].distinct == 40
    assert profiles["product_name"].patterns == [("Aa+ 9+", 0.75), ("Aa+ 9", 0.25)]  # 10 of 40
    assert (float(profiles["unit_price"].minimum), float(profiles["unit_price"].maximum)) == (
        1.5, 90.0)
    assert profiles["is_active"].nulls == 6 and profiles["is_active"].batches_with_nulls == 1
    assert profiles["is_active"].max_batch_null_rate == pytest.approx(0.2)

    proposals = {(p.staged, p.key): p.value
                 for p in profiling.propose(table, list(profiles.values()))}
    assert proposals == {
        ("product_name", "not_null"): True,
        ("category", "not_null"): True,
        ("category", "accepted_values"): list(CATEGORIES),
        ("unit_price", "not_null"): True,
        ("unit_price", "monitors"): ["min", "max", "mean"],
        ("is_active", "monitors"): ["null_rate"],
        ("updated_at", "not_null"): True,
    }  # nothing on the primary key; is_active had nulls: no not_null
    # not enough history: nothing but what cannot be wrong (monitors need no history either way)
    few = profiling.propose(table, list(profiles.values()), min_batches=5)
    assert few == []


def test_write_adds_them_to_the_declaration_keeping_comments(project) -> None:
    project_dir, con = project
    table = _products_table(project_dir)
    profiles = profiling.profile_relation(con, "stg_shop__products", table)
    proposals = profiling.propose(table, profiles)
    written = profiling.apply_proposals(table, proposals, project_dir)
    declaration = project_dir / "models" / "staging" / "shop" / "_shop__sources.yml"
    assert written[0] == declaration
    text = declaration.read_text()
    assert "# The source registry for the shop database." in text  # comments kept
    after = _products_table(project_dir)
    columns = {c.staged_name: c for c in after.columns}
    assert columns["category"].meta.accepted_values == list(CATEGORIES)
    assert columns["unit_price"].meta.not_null and not columns["is_active"].meta.not_null
    assert after.monitors.columns["unit_price"] == ["min", "max", "mean"]
    assert after.monitors.columns["is_active"] == ["null_rate"]
    derived = (project_dir / "models" / "staging" / "shop" / "_shop__models.yml").read_text()
    products = derived[derived.index("name: stg_shop__products"):]
    assert "accepted_values" in products.split("- name: stg_shop__", 2)[1]
    # the profile holds nothing more to propose once it is declared
    assert profiling.propose(after, profiles) == []
