"""SQL lint (sqlfluff, dbt templater on the in-memory lint target) and the pre-commit hooks.

Real sqlfluff runs on a temp copy of the project; the pre-commit tests run the real hooks in a
temp clone of the committed repository (as CI and a fresh clone would), with the project's venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataops.core.settings import REPO_ROOT
from tests.python.conftest import platform_env
from tests.python.dbt_project_copy import copy_project

# Upper case, but consistently so within each category: sqlfluff's default policy ("consistent")
# accepts this file, so only correctly spelt `lower` policies flag it.
CAPITALISED = """\
SELECT
    ORDER_ID,
    COALESCE(PAID_AMOUNT, 0) AS PAID,
    CAST(ORDER_AMOUNT AS DECIMAL(18, 2)) AS AMOUNT,
    NULL AS NO_VALUE,
    TRUE AS IS_TRUE
FROM {{ ref('fct_orders') }}
"""
CAPITALISATION_CODES = {
    "CP01": "keywords",  # capitalisation_policy
    "CP02": "identifiers",  # extended_capitalisation_policy
    "CP03": "functions",  # extended_capitalisation_policy
    "CP04": "literals",  # capitalisation_policy
    "CP05": "types",  # extended_capitalisation_policy
}

# The other conventions of STYLE.md, one violation each.
UNSTYLED = """\
select
    o.order_id
    , o.customer_id
    , count(*) order_count
    , {long_expression} as too_long
from {{ ref('fct_orders') }} o
join {{ ref('dim_customers') }} as customers
    on o.customer_id = customers.customer_id
group by o.order_id, o.customer_id
""".replace("{long_expression}", " + ".join(["o.order_id"] * 9))
STYLE_CODES = {
    "AL01": "implicit table alias",
    "AL02": "implicit column alias",
    "AL06": "one-letter alias",
    "AM05": "bare join instead of inner join",
    "AM06": "group by column names instead of positions",
    "LT04": "leading comma",
    "LT05": "line over 100 characters",
}


def lint_sql(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m dataops.rules lint sql` (what the pre-commit hook runs)."""
    return subprocess.run(
        [sys.executable, "-m", "dataops.rules", "lint", "sql",
         "--project-dir", str(project), *args],
        cwd=project,
        env=platform_env(project / ".dataops"),
        capture_output=True,
        text=True,
        timeout=900,
    )


def codes_by_file(output: str, root: Path | None = None) -> dict[str, set[str]]:
    """sqlfluff's human output parsed to {file relative to root: {rule codes}}."""
    found: dict[str, set[str]] = {}
    current = None
    for line in output.splitlines():
        if match := re.match(r"== \[(.+)\] FAIL", line):
            current = match.group(1)
            if root and Path(current).is_absolute():
                current = str(Path(current).relative_to(root))
            found[current] = set()
        elif current and (match := re.match(r"L:\s*\d+ \| P:\s*\d+ \| (\w+) \|", line)):
            found[current].add(match.group(1))
    return found


@pytest.fixture(scope="module")
def lint_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("lint") / "project")
    for name in (".sqlfluff", ".sqlfluffignore"):
        shutil.copy(REPO_ROOT / name, project / name)
    (project / "models/marts/core/fct_capitalised.sql").write_text(CAPITALISED)
    (project / "models/marts/core/fct_unstyled.sql").write_text(UNSTYLED)
    return project


@pytest.mark.slow
def test_each_style_key_is_enforced(lint_project: Path):
    # Only the two examples: that the project's own models lint clean is `make lint`'s job (CI
    # runs it on every file), not repeated here.
    examples = [lint_project / "models/marts/core" / name
                for name in ("fct_capitalised.sql", "fct_unstyled.sql")]
    result = lint_sql(lint_project, *map(str, examples))
    assert result.returncode == 1, result.stdout + result.stderr
    found = codes_by_file(result.stdout, lint_project)
    capitalised = found.pop("models/marts/core/fct_capitalised.sql", set())
    unstyled = found.pop("models/marts/core/fct_unstyled.sql", set())
    assert found == {}, result.stdout
    assert set(CAPITALISATION_CODES) <= capitalised, result.stdout
    missing = {code: what for code, what in STYLE_CODES.items() if code not in unstyled}
    assert not missing, f"not enforced: {missing}\n{result.stdout}"
    # compiling against the in-memory lint target never creates a warehouse file
    assert not list(lint_project.rglob("*.duckdb"))
    assert not (lint_project / ".dataops").exists()


@pytest.mark.slow
def test_fix_rewrites_a_model_to_the_style(lint_project: Path):
    model = lint_project / "models/marts/core/fct_to_fix.sql"  # removed again: shared project
    model.write_text(CAPITALISED)
    try:
        fixed = lint_sql(lint_project, "--fix", str(model))
        assert "fct_to_fix.sql" in fixed.stdout, fixed.stdout + fixed.stderr
        assert model.read_text() == CAPITALISED.lower()  # ref('fct_orders') was lower case
        relint = lint_sql(lint_project, str(model))
        assert relint.returncode == 0, relint.stdout + relint.stderr
    finally:
        model.unlink()


def test_a_misspelt_capitalisation_key_would_be_ignored(tmp_path: Path):
    """The control for the test above: with the well-known misspelling, CP03 goes silent."""
    config = (REPO_ROOT / ".sqlfluff").read_text()
    section = "[sqlfluff:rules:capitalisation.functions]\n"
    assert f"{section}extended_capitalisation_policy = lower" in config
    misspelt = config.replace(
        f"{section}extended_capitalisation_policy", f"{section}capitalisation_policy"
    ).replace("templater = dbt", "templater = jinja")  # no dbt project needed here
    (tmp_path / ".sqlfluff").write_text(misspelt)
    (tmp_path / "model.sql").write_text(CAPITALISED)
    result = subprocess.run(
        [sys.executable, "-m", "sqlfluff", "lint", "model.sql", "--rules", "capitalisation"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    codes = codes_by_file(result.stdout).get("model.sql", set())
    assert "CP01" in codes and "CP03" not in codes, result.stdout


def test_the_hook_lints_only_models_and_singular_tests_among_changed_files(tmp_path: Path):
    from dataops.rules.commands import sql_targets

    changed = ["models/marts/core/fct_orders.sql", "models/marts/core/_core__models.yml",
               "macros/staging/stage_source.sql", "tests/dbt/generic/test_not_negative.sql",
               "tests/dbt/singular/assert_x.sql", "dataops/cli.py"]
    targets = sql_targets([str(tmp_path / p) for p in changed], tmp_path)
    assert targets == [str(tmp_path / "models/marts/core/fct_orders.sql"),
                       str(tmp_path / "tests/dbt/singular/assert_x.sql")]
    assert sql_targets([], tmp_path) == [str(tmp_path / "models"),
                                         str(tmp_path / "tests/dbt/singular")]


# --- pre-commit ----------------------------------------------------------------------------------
HOOK = "dbt parse + project rules + sqlfluff"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone of the committed repository using the project's venv."""
    destination = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(destination)], check=True)
    (destination / ".venv").symlink_to(REPO_ROOT / ".venv")
    return destination


def pre_commit(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "DATAOPS_"))}
    env["PRE_COMMIT_HOME"] = str(clone.parent / "pre-commit-home")
    env["VIRTUAL_ENV"] = ""  # hooks must not rely on an activated venv
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(
        [str(REPO_ROOT / ".venv/bin/pre-commit"), "run", "--color", "never", *args],
        cwd=clone, env=env, capture_output=True, text=True, timeout=1800,
    )


def hook_status(output: str) -> dict[str, str]:
    return {
        match.group(1).strip(): match.group(2)
        for match in re.finditer(r"^(.+?)\.{3,}(?:\(no files to check\))?(Passed|Failed|Skipped)$",
                                 output, flags=re.MULTILINE)
    }


# `make lint` (the first step of .ci/run, on a fresh clone) runs every hook on every file; the
# test below checks what it cannot: a commit of one changed file, as a developer makes it.


@pytest.mark.slow
def test_pre_commit_on_a_one_model_change_names_the_file_and_violation(clone: Path):
    model = clone / "models/marts/core/dim_products.sql"
    model.write_text(model.read_text().replace("select * from", "SELECT * from", 1))
    subprocess.run(["git", "add", str(model)], cwd=clone, check=True)
    result = pre_commit(clone)
    statuses = hook_status(result.stdout)
    assert result.returncode == 1
    assert statuses[HOOK] == "Failed", result.stdout
    assert "Project rules OK" in result.stdout  # the rules passed, sqlfluff failed
    assert statuses["ruff (Python)"] == "Skipped"  # only the changed files are checked
    assert "models/marts/core/dim_products.sql" in result.stdout
    assert "CP01" in result.stdout
