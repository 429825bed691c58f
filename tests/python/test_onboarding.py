"""Onboarding a source: a draft declaration inferred from a sample file, and a new source taken
from files to tested staging by following the README's "Add a source" section, with no change to
macros or Python code."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from dataops.core.settings import REPO_ROOT
from dataops.sources.onboarding import (
    add_source,
    declared_type,
    infer_draft,
    table_folders,
)
from dataops.sources.registry import DeclarationError, parse_sources_file
from tests.python.conftest import platform_env
from tests.python.dbt_project_copy import copy_project

HEADER = "Contact ID;First Name;E-Mail;Status;Country;Lifetime Value;Updated At\n"
DAY_1 = HEADER + (
    "1;José;jose@example.com;A;de;12,50;2024-03-01 09:00:00\n"
    "2;Zoë;zoe@example.com;I;fr;0,00;2024-03-01 10:30:00\n"
    "3;Anaïs;anais@example.com;A;es;7,25;2024-03-01 11:00:00\n"
)
# Day 2 delivers contact 1 again (changed) and a value that does not convert.
DAY_2 = HEADER + (
    "1;José;jose.new@example.com;I;de;15,00;2024-03-02 08:00:00\n"
    "4;Björn;bjorn@example.com;A;se;n/a;2024-03-02 09:15:00\n"
)


def write_crm_files(landing: Path) -> list[Path]:
    folder = landing / "crm" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for day, text in (("2024-03-01", DAY_1), ("2024-03-02", DAY_2)):
        path = folder / f"contacts_{day}.csv"
        path.write_bytes(text.encode("latin-1"))
        files.append(path)
    return files


# --- Inference (fast: DuckDB only) ---------------------------------------------------------------


def test_a_latin1_semicolon_export_is_drafted_with_types_names_key_and_pii(tmp_path: Path):
    day_1, _ = write_crm_files(tmp_path / "crm")
    draft = infer_draft("crm", day_1)
    assert draft.table == "contacts", "the table is named after the landing folder"
    assert draft.options == {"encoding": "latin-1", "delimiter": ";"}
    columns = {c.staged_name: c for c in draft.columns}
    assert {name: c.data_type for name, c in columns.items()} == {
        "contact_id": "bigint",
        "first_name": "varchar",
        "e_mail": "varchar",
        "status": "varchar",
        "country": "varchar",
        "lifetime_value": "decimal(18, 2)",
        "updated_at": "timestamp",
    }
    assert columns["contact_id"].name == "Contact ID"
    assert {name for name, c in columns.items() if c.pii} == {"first_name", "e_mail"}
    assert columns["lifetime_value"].expression == "replace(\"Lifetime Value\", ',', '.')"
    assert draft.primary_key == ["contact_id"] and draft.latest_by is None
    assert any("not UTF-8" in note for note in draft.notes)


def test_a_repeated_key_gets_the_updated_at_column_as_dedupe(tmp_path: Path):
    sample = tmp_path / "contacts.csv"
    sample.write_text(
        "id,name_of_plan,updated_at\n1,basic,2024-01-01 00:00:00\n1,pro,2024-02-01 00:00:00\n"
    )
    draft = infer_draft("billing", sample)
    assert (draft.primary_key, draft.latest_by) == (["id"], "updated_at")
    assert draft.table == "contacts"


def test_jsonl_and_parquet_samples_are_drafted_with_their_types(tmp_path: Path):
    jsonl = tmp_path / "events_2024-01-01.jsonl"
    jsonl.write_text('{"event_id": 1, "kind": "click", "at": "2024-01-01T10:00:00", "ok": true}\n')
    draft = infer_draft("app", jsonl)
    assert draft.table == "events" and draft.format == "jsonl"
    assert [(c.name, c.data_type) for c in draft.columns] == [
        ("event_id", "bigint"),
        ("kind", "varchar"),
        ("at", "timestamp"),
        ("ok", "boolean"),
    ]
    assert draft.primary_key == ["event_id"]
    parquet = tmp_path / "prices.parquet"
    with duckdb.connect() as con:
        con.execute(
            "copy (select 7 as sku_id, 1.5::decimal(10, 3) as price) "
            f"to '{parquet}' (format parquet)"
        )
    draft = infer_draft("erp", parquet)
    assert [(c.name, c.data_type) for c in draft.columns] == [
        ("sku_id", "bigint"),
        ("price", "decimal(10, 3)"),
    ]


@pytest.mark.parametrize(
    ("duckdb_type", "declared"),
    [
        ("INTEGER", "bigint"),
        ("DOUBLE", "double"),
        ("DECIMAL(12,4)", "decimal(12, 4)"),
        ("TIMESTAMP WITH TIME ZONE", "timestamp"),
        ("DATE", "date"),
        ("UUID", "varchar"),
    ],
)
def test_duckdb_types_map_to_declared_types(duckdb_type: str, declared: str):
    assert declared_type(duckdb_type) == declared


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"source": "CRM"}, "source name 'CRM' is not a valid identifier"),
        ({"table": "Contacts 2024"}, "pass --table, e.g. --table contacts_2024"),
        ({"pii": ("phone",)}, "--pii 'phone': not a column of contacts_2024-03-01.csv"),
        ({"primary_key": "uuid"}, "--primary-key 'uuid': not a column of the sample"),
        ({"delimiter": ";", "encoding": "utf-8"}, "could not read the sample as CSV"),
    ],
    ids=["source-name", "table-name", "pii-column", "primary-key", "wrong-encoding"],
)
def test_wrong_onboarding_options_are_explained(tmp_path: Path, kwargs: dict, expected: str):
    day_1, _ = write_crm_files(tmp_path)
    arguments = {"source": "crm", **kwargs}
    with pytest.raises(DeclarationError, match=re.escape(expected)):
        infer_draft(arguments.pop("source"), day_1, **arguments)


def test_the_draft_is_a_valid_declaration_with_its_staging_files(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    day_1, _ = write_crm_files(tmp_path / "landing")
    draft = infer_draft("crm", day_1, latest_by="updated_at", timezone="Europe/Berlin")
    written = add_source(draft, project)
    folder = project / "models" / "staging" / "crm"
    assert set(written) >= {
        folder / "_crm__sources.yml",
        folder / "_crm__models.yml",
        folder / "stg_crm__contacts.sql",
    }
    (table,) = parse_sources_file(folder / "_crm__sources.yml")
    assert (table.primary_key, table.dedupe.latest_by, table.timezone) == (
        ("contact_id",),
        "updated_at",
        "Europe/Berlin",
    )
    assert (
        folder / "stg_crm__contacts.sql"
    ).read_text() == "{{ stage_source('crm', 'contacts') }}\n"
    before = (folder / "_crm__sources.yml").read_text()
    with pytest.raises(DeclarationError, match="'contacts' is already declared in source 'crm'"):
        add_source(draft, project)
    assert (folder / "_crm__sources.yml").read_text() == before, "nothing changed"


def test_a_table_without_a_single_key_column_gets_a_composite_key(tmp_path: Path):
    sample = tmp_path / "stock.csv"
    sample.write_text("supply_id,sku,quantity\n1,A,5\n1,B,7\n2,A,5\n")
    draft = infer_draft("depot", sample)
    assert draft.primary_key == ["supply_id", "sku"]
    assert any("composite primary key (supply_id, sku)" in note for note in draft.notes)
    chosen = infer_draft("depot", sample, primary_key="sku, supply_id")
    assert chosen.primary_key == ["sku", "supply_id"]
    with pytest.raises(DeclarationError, match="--primary-key 'bin': not a column"):
        infer_draft("depot", sample, primary_key="supply_id,bin")


def test_a_second_table_is_added_to_the_reviewed_declaration(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    day_1, _ = write_crm_files(tmp_path / "landing")
    add_source(infer_draft("crm", day_1), project)
    path = project / "models" / "staging" / "crm" / "_crm__sources.yml"
    # A person reviews the draft: a comment and a description of their own.
    drafted = path.read_text()
    reviewed = drafted.replace(
        "\n    description: TODO(describe)",
        "\n    # reviewed by the CRM team\n    description: TODO(describe)",
    )
    reviewed = reviewed.replace(
        "description: TODO(describe) Contact ID as delivered in the contacts files.",
        "description: Contact number in the CRM.",
    )
    assert reviewed.count("reviewed by the CRM team") == 1 and "Contact number" in reviewed
    path.write_text(reviewed)
    stock = tmp_path / "landing" / "crm" / "stock" / "stock_2024-03-01.jsonl"
    stock.parent.mkdir(parents=True)
    stock.write_text(
        '{"supply_id": 1, "sku": "A", "qty": 3}\n{"supply_id": 1, "sku": "B", "qty": 1}\n'
        '{"supply_id": 2, "sku": "A", "qty": 4}\n'
    )
    written = add_source(infer_draft("crm", stock), project)
    text = path.read_text()
    assert reviewed.rstrip("\n") in text, "the reviewed content is kept as written"
    contacts, stock_table = parse_sources_file(path)
    assert contacts.columns[0].description == "Contact number in the CRM."
    assert (stock_table.name, stock_table.primary_key) == ("stock", ("supply_id", "sku"))
    assert stock_table.landing.format == "jsonl" and contacts.landing.format == "csv"
    models = (project / "models/staging/crm/_crm__models.yml").read_text()
    assert "primary_key:\n        - supply_id\n        - sku" in models, "the composite key tested"
    assert project / "models/staging/crm/stg_crm__stock.sql" in written
    assert [f.name for f in table_folders("crm", tmp_path / "landing", project)] == [
        "contacts",
        "stock",
    ]


# --- The README's "Add a source", end to end -----------------------------------------------------


def readme_section() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Add a source\n", 1)[1].split("\n## ", 1)[0]


def readme_commands(section: str) -> list[list[str]]:
    """The `dataops` command lines of the section, in order."""
    return [
        shlex.split(line.strip())
        for line in section.splitlines()
        if line.strip().startswith(".venv/bin/dataops ")
    ]


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def readme_exports(section: str) -> list[str]:
    """The environment variables the section exports (their values are examples)."""
    return re.findall(r"^\s*export ([A-Z_]+)=", section, flags=re.MULTILINE)


DEALS = "deal_id,contact_id,amount_cents,stage\n1,1,125000,won\n2,3,9900,open\n"
STOCK = "supply_id,sku,quantity\n1,A,5\n1,B,7\n2,A,3\n"


@pytest.mark.slow
def test_a_new_source_is_onboarded_by_following_the_readme(tmp_path: Path):
    import psycopg2

    from dataops.engines.local_postgres import LocalPostgres
    from tests.python.test_source_kinds import CatalogApi

    # A copy of the whole project (dbt and Python), so the real one is not changed.
    project = copy_project(tmp_path / "project")
    for package in ("dataops", "orchestration"):
        shutil.copytree(
            REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    code = ("macros", "dataops", "orchestration")
    code_before = {part: _tree_digest(project / part) for part in code}
    home = tmp_path / "home"
    env = platform_env(home)
    env["DBT_PROFILES_DIR"] = str(project / "profiles")

    # Step 1: the files land where the README says (.dataops/ is DATAOPS_HOME).
    write_crm_files(home / "landing")
    section = readme_section()
    commands = readme_commands(section)
    assert [c[1:3] for c in commands] == [
        ["sources", "add"],
        ["sources", "sync"],
        ["ingest", "--source"],
        ["build", "--select"],
        ["sources", "add"],  # 5: another table of the source
        ["sources", "add"],  # 5: --all
        ["sources", "add"],  # 6: a PostgreSQL table
        ["sources", "add"],  # 7: an API
        ["extract", "catalog"],
        ["ingest", "--source"],
        ["build", "--select"],
    ]
    # Steps 6 and 7 name their servers by environment variable: ours are local.
    postgres = LocalPostgres.start()
    api = CatalogApi()
    try:
        url = f"postgresql://{postgres.user}@127.0.0.1:{postgres.port}/{postgres.database}"
        with psycopg2.connect(url) as pg, pg.cursor() as cur:
            cur.execute(
                "create table stock_moves (move_id bigint primary key, sku text, "
                "quantity integer, updated_at timestamp not null)"
            )
            cur.execute(
                "insert into stock_moves select i, 'S' || i, i, "
                "timestamp '2024-03-01' + i * interval '1 hour' from generate_series(1, 12) i"
            )
        servers = {"INVENTORY_PG_URL": url, "CATALOG_API_URL": api.url}
        assert readme_exports(section) == list(servers)
        env.update(servers)
        _follow_readme(project, home, env, section, commands)
    finally:
        api.stop()
        postgres.stop()
    # Nothing but configuration was added.
    assert code_before == {part: _tree_digest(project / part) for part in code}


def _follow_readme(project: Path, home: Path, env: dict, section: str, commands: list) -> None:
    def run(command: list[str]) -> str:
        arguments = [a.replace(".dataops/", f"{home}/") for a in command[1:]]
        result = subprocess.run(
            [sys.executable, "-m", "dataops.cli", *arguments],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{shlex.join(command)}\n{output}"
        return output

    # Step 2: draft the declaration from the sample.
    drafted = run(commands[0])
    assert "wrote models/staging/crm/_crm__sources.yml" in drafted
    assert "first_name flagged pii (hashed in staging): the name says a person's name" in drafted
    # Step 3: the review edit shown in the README, under the column `Status`.
    snippet = re.search(r"```yaml\n(.*?)```", section, flags=re.DOTALL).group(1)
    edit = yaml.safe_load(snippet)["meta"]
    declaration = project / "models/staging/crm/_crm__sources.yml"
    document = yaml.safe_load(declaration.read_text(encoding="utf-8"))
    status = next(
        c for c in document["sources"][0]["tables"][0]["columns"] if c["name"] == "Status"
    )
    status.setdefault("meta", {}).update(edit)
    declaration.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    run(commands[1])
    run([".venv/bin/dataops", "sources", "sync", "--check"])
    # Step 4: ingest and build.
    ingested = run(commands[2])
    assert re.search(r"crm\s+2 files loaded\s+5 rows", ingested), ingested
    built = run(commands[3])
    assert "1 warned, 0 failed" in built, built

    results = {
        r["unique_id"].split(".")[2].split("_stg_")[0]: (r["status"], r["failures"])
        for r in json.loads((home / "target" / "run_results.json").read_text())["results"]
    }
    assert results["stg_crm__contacts"] == ("success", None)
    # key and accepted values pass; the n/a lifetime value (a failed cast) warns and is counted
    assert results["staging_rules"] == ("warn", 1)
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select contact_id, first_name, e_mail, status, country, lifetime_value, "
            "_cast_failures from staging.stg_crm__contacts order by 1"
        ).fetchall()
    assert [row[0] for row in rows] == [1, 2, 3, 4]
    contact = rows[0]
    assert contact[2] == hashlib.md5(b"jose.new@example.com").hexdigest(), "latest version, hashed"
    assert contact[1] == hashlib.md5("José".encode()).hexdigest(), "latin-1 decoded, then hashed"
    assert contact[3:6] == ("inactive", "de", 15)
    assert rows[3][5] is None and rows[3][6] == 1

    # Step 5: more tables of the source: one by its sample, the rest by --all.
    for name, text in (("deals/deals_2024-03-01.csv", DEALS), ("stock/stock.csv", STOCK)):
        (home / "landing/crm" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "landing/crm" / name).write_text(text, encoding="utf-8")
    reviewed = declaration.read_text(encoding="utf-8")
    deals = run(commands[4])
    assert "amount_cents is an amount in cents: derived amount" in deals, deals
    stock = run(commands[5])
    assert "composite primary key (supply_id, sku)" in stock, stock
    assert "stock looks like reference data" in stock, stock
    before = yaml.safe_load(reviewed)["sources"][0]
    after = yaml.safe_load(declaration.read_text(encoding="utf-8"))["sources"][0]
    assert after["tables"][0] == before["tables"][0], "the reviewed table is kept as it was"
    assert {k: v for k, v in after.items() if k != "tables"} == {
        k: v for k, v in before.items() if k != "tables"
    }
    tables = {t.name: t for t in parse_sources_file(declaration)}
    assert list(tables) == ["contacts", "deals", "stock"]
    assert tables["stock"].primary_key == ("supply_id", "sku") and tables["stock"].reference
    assert [d.name for d in tables["deals"].derived] == ["amount"]

    # Steps 6 and 7: a PostgreSQL table and an API, then extract, ingest, build.
    assert "12 rows landed" in run(commands[6])
    assert "25 rows landed" in run(commands[7])
    run(commands[8])
    run(commands[9])
    built = run(commands[10])
    assert re.search(r"tests passed, 0 warned, 0 failed", built), built
    with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
        counts = [
            con.execute(f"select count(*) from staging.{model}").fetchone()[0]
            for model in ("stg_inventory__stock_moves", "stg_catalog__items")
        ]
    assert counts == [12, 25]
