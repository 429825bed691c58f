"""The project rules: each fires on a deliberately broken example and the project passes them.

Real `dbt parse` runs (in-memory lint target) on temp copies of the project; the broken copy
holds one example per rule, each built to break that rule and no other, so the test can demand
exactly the expected violations.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataops.core.settings import REPO_ROOT
from dataops.rules import RULES, apply_exceptions, load_exceptions, run_rules
from dataops.rules.exceptions import EXCEPTIONS_FILE, ExceptionsError
from tests.python.conftest import platform_env
from tests.python.dbt_project_copy import copy_project

# (path, content) of the broken examples; each comment says which rule it breaks.
BROKEN_FILES = {
    # model_naming: a mart not named fct_/dim_ (otherwise documented, tested, with a contract).
    "models/marts/core/orders_report.sql": "select order_id from {{ ref('fct_orders') }}\n",
    # source_outside_staging: an intermediate model calling source() directly.
    "models/intermediate/sales/int_orders_from_raw.sql": (
        "select order_id from {{ source('shop', 'orders') }}\n"
    ),
    # mart_or_intermediate_reads_source: a mart reading raw data through that model.
    "models/marts/core/fct_raw_orders.sql": (
        "select order_id from {{ ref('int_orders_from_raw') }}\n"
    ),
    # staging_reads_model: a staging model selecting from another model.
    "models/staging/shop/stg_shop__order_lookups.sql": (
        "select order_id from {{ ref('stg_shop__orders') }}\n"
    ),
    # model_documented: a model whose YAML entry has no description.
    "models/intermediate/sales/int_orders_undocumented.sql": (
        "select order_id from {{ ref('stg_shop__orders') }}\n"
    ),
    # primary_key_tested: a model whose key (first column) has no tests.
    "models/intermediate/sales/int_orders_untested.sql": (
        "select order_id from {{ ref('stg_shop__orders') }}\n"
    ),
    # public_mart_contract: a public mart without `contract: enforced`.
    "models/marts/core/fct_orders_uncontracted.sql": (
        "select order_id from {{ ref('fct_orders') }}\n"
    ),
}


def _model(name: str, *, description: str | None = "One row per order.", tests: bool = True,
           contract: bool = False) -> dict:
    column: dict = {"name": "order_id", "description": "The order.", "data_type": "bigint"}
    if tests:
        column["data_tests"] = ["unique", "not_null"]
    entry: dict = {"name": name, "columns": [column]}
    if description:
        entry["description"] = description
    if contract:
        entry["config"] = {"contract": {"enforced": True}}
    return entry


BROKEN_MODELS_YAML = {
    "version": 2,
    "models": [
        _model("orders_report", contract=True),
        _model("int_orders_from_raw"),
        _model("fct_raw_orders", contract=True),
        _model("stg_shop__order_lookups"),
        _model("int_orders_undocumented", description=None),
        _model("int_orders_untested", tests=False),
        _model("fct_orders_uncontracted"),
    ],
}

FRESHNESS = {"warn_after": {"count": 1, "period": "day"}}
BROKEN_SOURCES_YAML = {
    "version": 2,
    "sources": [
        {   # source_documented: no description on the source.
            "name": "undocumented_source",
            "schema": "raw_extra",
            "config": {"loaded_at_field": "_loaded_at", "freshness": FRESHNESS},
            "tables": [{"name": "things", "description": "Things."}],
        },
        {   # source_freshness: no SLA, no loaded_at_field.
            "name": "unmonitored_source",
            "description": "A source nobody watches.",
            "schema": "raw_extra",
            "tables": [{"name": "widgets", "description": "Widgets."}],
        },
    ],
}

EXPECTED = {
    ("model_naming", "orders_report"),
    ("source_outside_staging", "int_orders_from_raw"),
    ("mart_or_intermediate_reads_source", "fct_raw_orders"),
    ("staging_reads_model", "stg_shop__order_lookups"),
    ("model_documented", "int_orders_undocumented"),
    ("source_documented", "undocumented_source.things"),
    ("primary_key_tested", "int_orders_untested"),
    ("source_freshness", "unmonitored_source.widgets"),
    ("public_mart_contract", "fct_orders_uncontracted"),
}


BROKEN_NODES = {model["name"] for model in BROKEN_MODELS_YAML["models"]} | {
    f"{source['name']}.{table['name']}"
    for source in BROKEN_SOURCES_YAML["sources"] for table in source["tables"]
}


def run_rules_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m dataops.rules lint rules` (what the pre-commit hook runs)."""
    return subprocess.run(
        [sys.executable, "-m", "dataops.rules", "lint", "rules",
         "--project-dir", str(project), *args],
        cwd=REPO_ROOT,
        env=platform_env(project / ".dataops"),
        capture_output=True,
        text=True,
        timeout=600,
    )


def project_copy(destination: Path) -> Path:
    project = copy_project(destination)
    exceptions = REPO_ROOT / EXCEPTIONS_FILE
    if exceptions.exists():
        shutil.copy(exceptions, project / EXCEPTIONS_FILE)
    return project


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """A copy of the project with one broken example per rule: (project, manifest, output)."""
    project = project_copy(tmp_path_factory.mktemp("broken") / "project")
    (project / EXCEPTIONS_FILE).unlink(missing_ok=True)
    for relative, sql in BROKEN_FILES.items():
        (project / relative).write_text(sql)
    (project / "models/_broken__models.yml").write_text(json.dumps(BROKEN_MODELS_YAML))
    (project / "models/staging/_broken__sources.yml").write_text(json.dumps(BROKEN_SOURCES_YAML))
    result = run_rules_cli(project)
    assert result.returncode == 1, result.stdout + result.stderr
    manifest = json.loads((project / "target/lint/manifest.json").read_text())
    return project, manifest, result.stdout


# That the project itself passes every rule is checked by `make lint` (the pre-commit hook runs
# `dataops lint rules` on every file in CI), not repeated here.


def test_the_rules_parse_with_the_lint_target_and_never_open_a_warehouse(broken):
    project, _, _ = broken
    assert (project / "target/lint/manifest.json").exists()
    assert not list(project.rglob("*.duckdb"))


def test_each_rule_fires_on_its_broken_example_and_only_there(broken):
    _, manifest, _ = broken
    # Only the examples' own nodes: the rest of the project is judged by `make lint`.
    found = {(v.rule, v.node) for v in run_rules(manifest) if v.node in BROKEN_NODES}
    assert found == EXPECTED
    assert {rule for rule, _ in EXPECTED} == set(RULES), "every rule has a broken example"


def test_a_failure_prints_rule_node_file_and_fix(broken):
    _, _, output = broken
    assert "Project rules FAILED" in output
    assert "[model_naming] model orders_report (models/marts/core/orders_report.sql)" in output
    assert (
        "[source_freshness] source unmonitored_source.widgets "
        "(models/staging/_broken__sources.yml)" in output
    )
    blocks = [b for b in output.split("\n\n") if b.startswith("[")]
    assert len(blocks) >= len(EXPECTED)
    for block in blocks:
        assert "\n  problem: " in block and "\n  fix: " in block, block
    # the fix names the concrete change, not just the rule
    assert "ref('stg_shop__orders')" in output
    assert "contract: {enforced: true}" in output


def test_an_exception_with_a_reason_excuses_one_violation_and_a_stale_one_fails(
    broken, tmp_path: Path
):
    _, manifest, _ = broken
    path = tmp_path / EXCEPTIONS_FILE
    path.write_text(
        "exceptions:\n"
        "  - rule: model_naming\n"
        "    node: orders_report\n"
        "    reason: Legacy report name kept for the BI tool until Q3 (DATA-42).\n"
        "  - rule: source_freshness\n"
        "    node: unmonitored_*.*\n"
        "    reason: Static reference data, loaded once by hand.\n"
        "  - rule: primary_key_tested\n"
        "    node: fct_orders\n"
        "    reason: Nothing to excuse here, this entry is stale.\n"
    )
    violations = [v for v in run_rules(manifest) if v.node in BROKEN_NODES]
    outcome = apply_exceptions(violations, load_exceptions(path))
    remaining = {(v.rule, v.node) for v in outcome.violations}
    assert remaining == EXPECTED - {
        ("model_naming", "orders_report"), ("source_freshness", "unmonitored_source.widgets")
    }
    assert [(v.node, e.node) for v, e in outcome.excused] == [
        ("orders_report", "orders_report"), ("unmonitored_source.widgets", "unmonitored_*.*")
    ]
    assert [(e.rule, e.node) for e in outcome.unused] == [("primary_key_tested", "fct_orders")]
    assert not outcome.ok


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("  - {rule: model_nameing, node: x, reason: A reason long enough.}",
         "unknown rule 'model_nameing'"),
        ("  - {rule: model_naming, node: x, reason: because}", "reason 'because' is too short"),
        ("  - {rule: model_naming, node: x}", "exceptions.0.reason: Field required"),
    ],
    ids=["unknown-rule", "short-reason", "no-reason"],
)
def test_a_malformed_exception_is_refused_naming_file_and_key(tmp_path: Path, entry, expected):
    path = tmp_path / EXCEPTIONS_FILE
    path.write_text(f"exceptions:\n{entry}\n")
    with pytest.raises(ExceptionsError) as error:
        load_exceptions(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_the_cli_exits_2_on_a_dbt_parse_error(tmp_path: Path):
    project = project_copy(tmp_path / "project")
    (project / "models/marts/core/fct_orders.sql").write_text("select {{ ref('no_such_model') }}")
    result = run_rules_cli(project)
    assert result.returncode == 2
    assert "dbt parse failed" in result.stderr
    assert "no_such_model" in result.stdout + result.stderr


def _key_manifest(meta_key, tests: list[dict]) -> dict:
    model = {
        "unique_id": "model.p.int_stock_levels", "resource_type": "model", "package_name": "p",
        "name": "int_stock_levels", "path": "intermediate/stock/int_stock_levels.sql",
        "original_file_path": "models/intermediate/stock/int_stock_levels.sql",
        "config": {"meta": {"primary_key": meta_key}},
        "columns": {"supply_id": {}, "sku": {}}, "depends_on": {"nodes": []},
    }
    nodes = {model["unique_id"]: model}
    for number, test in enumerate(tests):
        nodes[f"test.p.t{number}"] = {
            "unique_id": f"test.p.t{number}", "resource_type": "test",
            "attached_node": model["unique_id"], **test,
        }
    return {"nodes": nodes, "sources": {}, "metadata": {"project_name": "p"}}


def _primary_key_test(columns) -> dict:
    return {"test_metadata": {"name": "primary_key", "kwargs": {"columns": columns}}}


@pytest.mark.parametrize(
    ("meta_key", "tests", "violation"),
    [
        # the composite key tested as a whole by the one-query key test: counted as tested
        (["supply_id", "sku"], [_primary_key_test(["sku", "supply_id"])], None),
        # a key test of part of the key does not test the key
        (["supply_id", "sku"], [_primary_key_test(["supply_id"])], "primary_key test of"),
        # unique + not_null on one column of a composite key is not enough either
        (["supply_id", "sku"], [
            {"test_metadata": {"name": "unique"}, "column_name": "supply_id"},
            {"test_metadata": {"name": "not_null"}, "column_name": "supply_id"},
        ], "primary_key test of (supply_id, sku)"),
        # a one-column key: the key test, or unique + not_null, both count
        ("supply_id", [_primary_key_test(["supply_id"])], None),
        # the derived staging_rules test (one test of all declared rules) tests its primary_key
        (["supply_id", "sku"], [{"test_metadata": {"name": "staging_rules", "kwargs": {
            "primary_key": ["supply_id", "sku"], "accepted_values": {"sku": ["a"]}}}}], None),
        (["supply_id", "sku"], [{"test_metadata": {"name": "staging_rules", "kwargs": {
            "primary_key": ["supply_id"]}}}], "primary_key test of"),
        ("supply_id", [{"test_metadata": {"name": "unique"}, "column_name": "supply_id"}],
         "has no not_null test"),
    ],
)
def test_the_key_test_counts_for_the_whole_key(meta_key, tests, violation):
    found = [v.problem for v in RULES["primary_key_tested"].check(_key_manifest(meta_key, tests))]
    if violation is None:
        assert found == []
    else:
        assert len(found) == 1 and violation in found[0], found


def test_drafted_placeholder_descriptions_count_as_missing():
    placeholder = "TODO(describe) id as delivered in the stock files."
    model = {
        "unique_id": "model.p.stg_depot__stock", "resource_type": "model", "package_name": "p",
        "name": "stg_depot__stock", "path": "staging/depot/stg_depot__stock.sql",
        "original_file_path": "models/staging/depot/stg_depot__stock.sql",
        "description": "One row per (supply_id, sku): stock levels.",
        "columns": {"supply_id": {"description": placeholder}, "sku": {"description": "SKU."}},
        "config": {}, "depends_on": {"nodes": []},
    }
    source = {
        "unique_id": "source.p.depot.stock", "resource_type": "source", "package_name": "p",
        "source_name": "depot", "name": "stock", "original_file_path": "models/x.yml",
        "source_description": "Depot files.", "description": "TODO(describe) stock of depot",
        "columns": {"sku": {"description": "SKU."}},
    }
    manifest = {
        "nodes": {model["unique_id"]: model},
        "sources": {source["unique_id"]: source},
        "metadata": {"project_name": "p"},
    }
    (model_problem,) = [v.problem for v in RULES["model_documented"].check(manifest)]
    assert model_problem == "columns without a description: supply_id"
    (source_problem,) = [v.problem for v in RULES["source_documented"].check(manifest)]
    assert source_problem == "no description for table 'stock'"
    # once a person writes real descriptions, both rules pass
    model["columns"]["supply_id"]["description"] = "Supply the stock came with."
    source["description"] = "Stock level per supply and SKU."
    assert not list(RULES["model_documented"].check(manifest))
    assert not list(RULES["source_documented"].check(manifest))
