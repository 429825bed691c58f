"""The Dagster code location, loaded for real from a manifest prepared by `dataops dbt prepare`:
the asset graph, checks, partitions and the landing sensor's decisions (evaluated in-process
against a real ephemeral Dagster instance and real landed files)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DailyPartitionsDefinition, build_sensor_context

from dataops.core.settings import load_settings
from dataops.dbt.manifest import ManifestMissingError, load_manifest
from orchestration.assets.dbt import (
    build_args,
    build_dbt_assets,
    excluded_tests,
    partition_vars,
)
from orchestration.assets.translator import DataopsTranslator
from orchestration.checks.freshness import CHECK_NAME as FRESHNESS
from orchestration.definitions import build_definitions
from orchestration.sensors.alerts import post_webhook
from tests.python.conftest import dataops

K = AssetKey.from_user_string


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("dagster_defs")
    result = dataops(home, "dbt", "prepare")
    assert (home / "target" / "manifest.json").exists(), result.stdout
    return home


@pytest.fixture(scope="module")
def defs(prepared_home: Path) -> Iterator:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATAOPS_HOME", str(prepared_home))
        patch.delenv("DATAOPS_LANDING", raising=False)
        patch.setenv("DBT_TARGET_PATH", str(prepared_home / "target"))
        patch.setenv("DBT_TARGET", "dev")
        yield build_definitions()


@pytest.fixture(scope="module")
def graph(defs):
    return defs.resolve_asset_graph()


def test_definitions_load_the_prepared_manifest_without_invoking_dbt(prepared_home, monkeypatch):
    import dbt.cli.main

    def refuse(*args, **kwargs):
        raise AssertionError("loading the definitions must not run dbt or any subprocess")

    monkeypatch.setattr(dbt.cli.main.dbtRunner, "invoke", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setenv("DATAOPS_HOME", str(prepared_home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(prepared_home / "target"))
    definitions = build_definitions()
    assert K("marts/fct_orders") in definitions.resolve_asset_graph().get_all_asset_keys()


def test_a_missing_manifest_says_how_to_prepare_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ManifestMissingError, match="make manifest"):
        build_definitions()


def test_the_graph_runs_from_landed_files_through_raw_and_staging_to_marts(graph):
    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(K(key)).parent_keys}

    assert upstream("raw/shop/order_items") == {"landing/shop/order_items"}
    assert "raw/shop/order_items" in upstream("staging/stg_shop__order_items")
    assert "staging/stg_shop__order_items" in upstream("marts/fct_order_items")
    assert "intermediate/int_order_items_summed_to_orders" in upstream("marts/fct_orders")
    assert "marts/fct_order_items" in upstream("marts/dim_products")
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["landing/web/sessions"] == "landing"
    assert groups["raw/web/sessions"] == "raw"
    assert groups["staging/stg_web__sessions"] == "staging"
    assert groups["marts/fct_orders"] == "marts"
    assert groups["reference/country_codes"] == "reference"
    assert not graph.get(K("landing/web/sessions")).is_executable


def test_owners_descriptions_and_columns_come_from_the_dbt_yaml(graph):
    staging = graph.get(K("staging/stg_shop__orders"))
    assert staging.owners == ["team:shop-team"]  # the source's meta.owner
    assert graph.get(K("raw/payments/payments")).owners == ["team:finance-team"]
    # Every asset has an owner: marts and intermediate models inherit the owners of the sources
    # they are built from (transitively), the seed declares its own in dbt_project.yml.
    unowned = [k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).owners]
    assert unowned == []
    assert {"team:finance-team", "team:shop-team"} <= set(
        graph.get(K("marts/fct_daily_revenue")).owners
    )
    assert graph.get(K("reference/country_codes")).owners == ["team:data-platform"]
    fct_orders = graph.get(K("marts/fct_orders"))
    assert fct_orders.description.startswith("One row per order")
    columns = {c.name: c.type for c in fct_orders.metadata["dagster/column_schema"].columns}
    assert columns["order_id"] == "bigint"
    assert columns["order_amount"] == "decimal(18, 2)"


def test_dbt_tests_are_asset_checks_and_freshness_checks_follow_the_declared_sla(defs, graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    fct_orders_checks = {name for asset, name in checks if asset == "marts/fct_orders"}
    assert any(name.startswith("unique_fct_orders_order_id") for name in fct_orders_checks)
    raw_assets = {k.to_user_string() for k in graph.get_all_asset_keys() if k.path[0] == "raw"}
    assert {asset for asset, name in checks if name == FRESHNESS} == raw_assets
    specs = [spec for checks_def in defs.asset_checks for spec in checks_def.check_specs]
    # The SLA text is read from the sources YAML (through the manifest), not from Python.
    spec = next(s for s in specs if s.asset_key == K("raw/shop/orders") and s.name == FRESHNESS)
    assert "warn after 26 hour(s), error after 50 hour(s)" in spec.description
    assert "_shop__sources.yml" in spec.description


def test_the_incremental_fact_has_daily_partitions_passed_to_dbt_as_vars(graph):
    partitions = graph.get(K("marts/fct_order_items")).partitions_def
    assert isinstance(partitions, DailyPartitionsDefinition)
    assert partitions.start.date() == date(2025, 1, 1)
    assert graph.get(K("marts/fct_orders")).partitions_def is None
    assert build_args(None) == ["build"]
    args = build_args((date(2025, 1, 2), date(2025, 1, 5)))  # end of a time window is exclusive
    assert args[:2] == ["build", "--vars"]
    assert json.loads(args[2]) == {"min_date": "2025-01-02", "max_date": "2025-01-04"}
    with pytest.raises(ValueError, match="before it starts"):
        partition_vars(date(2025, 1, 3), date(2025, 1, 2))


def test_models_follow_their_upstream_through_automation_conditions(graph):
    assert graph.get(K("marts/fct_orders")).automation_condition is not None
    assert graph.get(K("staging/stg_shop__orders")).automation_condition is not None


# The asset each singular test (tests/dbt/singular/) checks: its parent built last.
SINGULAR_CHECKS = {
    "assert_order_lines_reconcile_with_orders": "marts/fct_order_items",
    "assert_refunds_do_not_exceed_payments": "staging/stg_payments__refunds",
}


def _singular_tests(manifest: dict) -> dict[str, dict]:
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and not node.get("test_metadata")
    }


def test_each_singular_test_is_an_asset_check_of_the_asset_it_names(prepared_home, graph):
    manifest = load_manifest(prepared_home / "target" / "manifest.json")
    checks = {k.name: k.asset_key.to_user_string() for k in graph.asset_check_keys}
    # Every singular test of the project is a check (a test with several parents and no
    # meta.dagster.ref would silently be none) ...
    assert {name: checks.get(name) for name in _singular_tests(manifest)} == SINGULAR_CHECKS
    # ... with its YAML description, and blocking like the other error-severity dbt tests.
    specs = {s.name: s for a in graph.assets_defs for s in a.check_specs}
    assert specs["assert_refunds_do_not_exceed_payments"].description == (
        "A payment is never refunded more than was paid."
    )
    assert specs["assert_order_lines_reconcile_with_orders"].blocking


def test_a_step_leaves_out_the_tests_checked_in_another_step(prepared_home, defs):
    manifest = load_manifest(prepared_home / "target" / "manifest.json")
    translator = DataopsTranslator(manifest)
    steps = {a.op.name: a for a in defs.assets if getattr(a, "op", None) and "dbt" in a.op.name}
    assert set(steps) == {"dbt_models", "dbt_partitioned_models", "dbt_downstream_of_partitioned"}
    assert K("marts/fct_orders") in steps["dbt_models"].keys
    assert K("marts/dim_products") in steps["dbt_downstream_of_partitioned"].keys
    # fct_orders is rebuilt before the fact: the reconciliation reads both, so it runs (and is
    # a check) with the fact, never in the step of fct_orders.
    elsewhere = excluded_tests(manifest, translator, steps["dbt_models"].keys)
    assert "dataops.singular.assert_order_lines_reconcile_with_orders" in elsewhere
    assert excluded_tests(manifest, translator, steps["dbt_partitioned_models"].keys) == []
    assert build_args(None, exclude_tests=["b.t2", "a.t1", "b.t2"]) == [
        "build", "--exclude", "a.t1 b.t2"
    ]


def test_a_singular_test_checking_a_table_built_before_another_it_reads_is_refused(
    prepared_home, monkeypatch
):
    manifest = json.loads((prepared_home / "target" / "manifest.json").read_text())
    test = _singular_tests(manifest)["assert_order_lines_reconcile_with_orders"]
    test["config"]["meta"]["dagster"]["ref"] = {"name": "fct_orders"}
    test["meta"]["dagster"]["ref"] = {"name": "fct_orders"}
    monkeypatch.setenv("DATAOPS_HOME", str(prepared_home))
    with pytest.raises(ValueError, match=r"set its meta.dagster.ref to \{name: fct_order_items\}"):
        build_dbt_assets(manifest, load_settings("dev"))


# --- the landing sensor ------------------------------------------------------------------------


def _land(sample_landing: Path, landing: Path, relative: str, name: str | None = None) -> Path:
    source = sample_landing / relative
    target = landing / Path(relative).parent / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target


def _first(sample_landing: Path, folder: str) -> str:
    return str(sorted((sample_landing / folder).iterdir())[0].relative_to(sample_landing))


@pytest.fixture
def tick(defs, tmp_path, monkeypatch):
    """Evaluate the landing sensor once against `tmp_path/landing` with a given cursor."""
    monkeypatch.setenv("DATAOPS_LANDING", str(tmp_path / "landing"))
    sensor = defs.get_sensor_def("landed_files")
    instance = DagsterInstance.ephemeral()

    def evaluate(cursor: str | None):
        context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        return sensor(context)

    return evaluate


def test_a_landed_file_requests_one_run_of_its_table_and_what_is_downstream(
    tick, sample_landing, tmp_path
):
    _land(sample_landing, tmp_path / "landing", _first(sample_landing, "web/sessions"))
    result = tick(None)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    selected = {k.to_user_string() for k in request.asset_selection}
    assert {"raw/web/sessions", "staging/stg_web__sessions"} <= selected
    assert "marts/fct_session_conversions" in selected
    assert not {k for k in selected if k.startswith(("raw/shop", "raw/payments", "landing/"))}
    assert "staging/stg_shop__orders" not in selected
    assert "marts/dim_products" not in selected
    assert request.tags["dataops/source"] == "web"
    check_names = {k.name for k in request.asset_check_keys}
    assert check_names and FRESHNESS not in check_names  # dbt tests yes, freshness no
    # The same tick again, with the cursor it returned: nothing new.
    again = tick(result.cursor)
    assert again.run_requests == []


def test_a_file_content_gives_one_run_whatever_its_name(tick, sample_landing, tmp_path):
    landing = tmp_path / "landing"
    relative = _first(sample_landing, "shop/customers")
    _land(sample_landing, landing, relative)
    first = tick(None)
    assert len(first.run_requests) == 1
    _land(sample_landing, landing, relative, name="customers_copy.csv")  # same content, new name
    assert tick(first.cursor).run_requests == []
    changed = landing / "shop" / "customers" / "customers_changed.csv"
    changed.write_text((landing / relative).read_text() + "\n")  # different bytes
    third = tick(first.cursor)
    assert len(third.run_requests) == 1
    assert third.run_requests[0].run_key != first.run_requests[0].run_key


def test_files_of_several_sources_give_one_run_per_source(tick, sample_landing, tmp_path):
    landing = tmp_path / "landing"
    for folder in ("shop/orders", "shop/order_items", "payments/payments"):
        _land(sample_landing, landing, _first(sample_landing, folder))
    result = tick(None)
    by_source = {r.tags["dataops/source"]: r for r in result.run_requests}
    assert set(by_source) == {"shop", "payments"}
    shop = {k.to_user_string() for k in by_source["shop"].asset_selection}
    assert {"raw/shop/orders", "raw/shop/order_items", "marts/fct_order_items"} <= shop
    assert "raw/shop/customers" not in shop  # no file landed for it
    assert "raw/payments/payments" not in shop


def test_the_alert_webhook_reports_an_unreachable_endpoint_instead_of_raising():
    outcome = post_webhook("http://127.0.0.1:9/alerts", {"event_type": "dagster.run_failed"}, 2)
    assert outcome.startswith("failed:")


def test_load_manifest_rejects_a_corrupt_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(ManifestMissingError, match="make manifest"):
        load_manifest(path)


def test_files_already_loaded_start_no_run_on_the_first_tick(
    tick, sample_landing, tmp_path, monkeypatch
):
    """After `make run`, a daemon's first look at the landing folders rebuilds nothing."""
    from dataops.ingestion.loader import ingest
    from dataops.sources.registry import load_registry

    landing = tmp_path / "landing"
    loaded = _first(sample_landing, "shop/orders")
    _land(sample_landing, landing, loaded)
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DATAOPS_WAREHOUSE_DEV", str(warehouse))
    orders = [t for t in load_registry() if t.key == "shop.orders"]
    assert ingest(warehouse, landing, orders, settle=0).files_loaded == 1
    new = _first(sample_landing, "web/sessions")
    _land(sample_landing, landing, new)

    result = tick(None)

    assert [r.tags["dataops/source"] for r in result.run_requests] == ["web"]
    assert tick(result.cursor).run_requests == []  # the loaded file is in the cursor


def test_a_file_still_being_written_waits_for_the_settle_window(
    tick, sample_landing, tmp_path, monkeypatch
):
    landing = tmp_path / "landing"
    _land(sample_landing, landing, _first(sample_landing, "web/sessions"))
    monkeypatch.setenv("DATAOPS_SETTLE_SECONDS", "60")
    waiting = tick(None)
    assert waiting.run_requests == []
    monkeypatch.setenv("DATAOPS_SETTLE_SECONDS", "0")
    assert len(tick(waiting.cursor).run_requests) == 1  # not forgotten by the cursor
