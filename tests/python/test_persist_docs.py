"""Descriptions reach the warehouse as comments (persist_docs), in one statement per model
(macros/engines/duckdb/duckdb__persist_docs.sql): the same comments as dbt's own path, on the
platform's models and on a model built to break it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import yaml

from tests.python.conftest import platform_env
from tests.python.dbt_project_copy import copy_project

DBT = str(Path(sys.executable).parent / "dbt")


def _manifest_models(home: Path) -> list[dict]:
    manifest = json.loads((home / "target" / "manifest.json").read_text())
    return [
        node for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"
    ]


def _comments(warehouse: Path) -> tuple[dict, dict]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {
            (schema, name): comment
            for schema, name, comment in con.execute(
                "select schema_name, table_name, comment from duckdb_tables()"
            ).fetchall()
        }
        columns = {
            (schema, table, column): comment
            for schema, table, column, comment in con.execute(
                "select schema_name, table_name, column_name, comment from duckdb_columns()"
            ).fetchall()
        }
    return tables, columns


def test_every_model_and_documented_column_of_the_platform_carries_its_description(
    built_platform,
):
    tables, columns = _comments(built_platform.warehouse)
    models = _manifest_models(built_platform.home)
    assert models
    commented = 0
    for node in models:
        key = (node["schema"], node["alias"])
        assert key in tables, f"{node['unique_id']} not built"
        assert tables[key] == (node["description"] or None), node["unique_id"]
        for name, column in node["columns"].items():
            if (*key, name) in columns:
                assert columns[(*key, name)] == column["description"], (node["unique_id"], name)
                commented += 1
        documented = set(node["columns"])
        for (schema, table, name), comment in columns.items():
            if (schema, table) == key and name not in documented:
                assert comment is None, (node["unique_id"], name, comment)
    assert commented > 50


ODD_MODEL = """
select
    1 as order_id,
    'a' as "Mixed Case",
    'b' as undocumented
"""

ODD_PROPERTIES = {
    "version": 2,
    "models": [
        {
            "name": "odd_docs",
            "description": "It's $1 and a $tag$ with 'quotes'; -- not a comment\n/* nor this */",
            "columns": [
                {"name": "order_id", "description": "Key; drop table x; -- harmless"},
                {"name": "Mixed Case", "description": "Quoted name.", "quote": True},
                {"name": "gone", "description": "Documented, not in the relation."},
            ],
        }
    ],
}


def test_odd_descriptions_quoted_columns_and_a_documented_missing_column(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    folder = project / "models" / "marts" / "odd"
    folder.mkdir(parents=True)
    (folder / "odd_docs.sql").write_text(ODD_MODEL)
    (folder / "_odd__models.yml").write_text(yaml.safe_dump(ODD_PROPERTIES, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()
    env = platform_env(home, target="dev")
    env["DBT_PROFILES_DIR"] = str(project / "profiles")
    result = subprocess.run(
        [DBT, "run", "--select", "odd_docs", "--project-dir", str(project), "--target", "dev"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tables, columns = _comments(home / "warehouse_dev.duckdb")
    assert tables[("marts", "odd_docs")] == ODD_PROPERTIES["models"][0]["description"]
    assert columns[("marts", "odd_docs", "order_id")] == "Key; drop table x; -- harmless"
    assert columns[("marts", "odd_docs", "Mixed Case")] == "Quoted name."
    assert columns[("marts", "odd_docs", "undocumented")] is None
    assert ("marts", "odd_docs", "gone") not in columns
    # dbt's warning for the documented column the relation lacks is kept
    assert "gone" in result.stdout
    # one column lookup for the comments (dbt's path made two)
    log = (home / "logs" / "dbt.log").read_text()
    assert log.count('(describe "warehouse_dev"."marts"."odd_docs")') == 1
