"""Performance changes keep their guarantees: the metric hooks measure a source's staged rows
from stage_source restricted to the changed keys (the same rows as the staging model) and compare
the stored watermark as a literal (the same rows), and the platform's dagster-dbt resource answers
dbt's version without a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import REPO_ROOT
from tests.python.conftest import platform_env

DBT = str(Path(sys.executable).parent / "dbt")


def _staged_sql(home: Path, table: str, changed_since: str | None) -> str:
    call = f"stage_source('shop', '{table}'" + (
        f", changed_since=\"{changed_since}\")" if changed_since else ")"
    )
    env = platform_env(home, target="dev")
    result = subprocess.run(
        [DBT, "compile", "--inline", "{{ " + call + " }}", "--quiet", "--output", "text",
         "--project-dir", str(REPO_ROOT), "--target", "dev"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("table", ["orders", "customers"])
def test_staging_restricted_to_changed_keys_keeps_the_rows_the_model_keeps(
    platform_copy: Path, table: str
) -> None:
    warehouse = platform_copy / "warehouse_dev.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        # a cut inside the deliveries: some keys have rows on both sides of it
        cut = con.execute(
            f"select quantile_disc(_loaded_at, 0.5) from raw_shop.{table}"
        ).fetchone()[0]
    since = f"_loaded_at > cast('{cut}' as timestamp)"
    full = _staged_sql(platform_copy, table, None)
    restricted = _staged_sql(platform_copy, table, since)
    assert "exists (" in restricted and "exists (" not in full
    with duckdb.connect(str(warehouse), read_only=True) as con:
        expected = con.execute(f"select * from ({full}) where {since} order by all").fetchall()
        got = con.execute(f"select * from ({restricted}) where {since} order by all").fetchall()
        ranked_keys = con.execute(f"select count(*) from ({restricted})").fetchone()[0]
        all_keys = con.execute(f"select count(*) from ({full})").fetchone()[0]
    assert expected, "the cut must leave staged rows after it"
    assert got == expected
    assert ranked_keys < all_keys  # only the changed keys were ranked


@pytest.mark.slow
def test_metric_hook_compares_the_stored_watermark_as_a_literal_on_the_same_rows(
    platform_copy: Path,
) -> None:
    """The source metrics read the watermark before rendering and compare `_loaded_at` with a
    timestamp literal (zone maps skip the rows loaded before it): the same rows as
    `epoch_us(_loaded_at) > watermark`, the comparison it replaces."""
    node_id = "source.dataops.shop.orders"
    warehouse = platform_copy / "warehouse_dev.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        cut = con.execute(  # a watermark inside the deliveries
            "select epoch_us(quantile_disc(_loaded_at, 0.5)) from raw_shop.orders"
        ).fetchone()[0]
        expected = con.execute(
            "select count(*), max(epoch_us(_loaded_at)) from raw_shop.orders "
            "where epoch_us(_loaded_at) > ?", [cut],
        ).fetchone()
        con.execute(
            "delete from platform.metric_history where node_id = ? "
            "and metric_name = 'loaded_at_max'", [node_id],
        )
        con.execute(
            "insert into platform.metric_history (measured_at, dbt_invocation_id, node_id, "
            "table_kind, source_name, table_name, metric_name, metric_value) "
            "values (now(), 'test', ?, 'source', 'shop', 'orders', 'loaded_at_max', ?)",
            [node_id, cut],
        )
    inline = (
        "{% set specs = dataops_monitored_tables() | selectattr('node_id', 'equalto', '"
        + node_id + "') | list %}{{ dataops_collect_metrics(specs) }}"
    )
    result = subprocess.run(
        [DBT, "compile", "--inline", inline, "--quiet", "--output", "text",
         "--project-dir", str(REPO_ROOT), "--target", "dev"],
        cwd=REPO_ROOT, env=platform_env(platform_copy, target="dev"), capture_output=True,
        text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sql = result.stdout
    assert "select max(metric_value)" not in sql and "as timestamp)" in sql
    measured = sql[sql.index("\nwith\n"):].strip().rstrip(";")  # the insert's query
    with duckdb.connect(str(warehouse), read_only=True) as con:
        got = dict(con.execute(
            f"select metric_name, metric_value from ({measured}) where column_name is null"
        ).fetchall())
    assert expected[0] > 0, "the cut must leave rows after it"
    assert (got["rows_added"], got["loaded_at_max"]) == (expected[0], expected[1])


def test_dbt_version_comes_from_the_installed_package_without_a_subprocess(monkeypatch) -> None:
    from dagster_dbt.core import resource as dagster_dbt_resource

    from dataops.core.settings import load_settings
    from orchestration.resources import dbt_resource

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(dagster_dbt_resource, "check_output", no_subprocess)
    resource = dbt_resource(load_settings())
    printed = subprocess.run(
        [resource.dbt_executable, "--version"], capture_output=True, text=True, check=True,
        env={**os.environ, "DBT_VERSION_CHECK": "false"},
    ).stdout
    assert f"installed: {resource._cli_version}" in printed
    assert resource._initialize_dbt_core_adapter(["build"]) is None
