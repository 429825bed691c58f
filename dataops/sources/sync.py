"""Derive the staging layer's files from the source registry and check they are in sync.

For each declared table this writes the one-line staging model (a call of the ``stage_source``
macro) and, per source, ``_<source>__models.yml`` with the staging models' columns, descriptions
and tests (one staging_rules test of the declared rules, relationships). The declaration
stays the single source of truth: ``check`` fails when a derived file differs from what the
declaration gives.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from dataops.core.settings import PROJECT_DIR
from dataops.sources.registry import CAST_FAILURES_COLUMN, SourceTable, load_registry

HEADER = (
    "# Generated from _{source}__sources.yml by `dataops sources sync`: edit the declaration,\n"
    "# then run the sync again (pre-commit and CI run `dataops sources sync --check`).\n"
)


def staging_sql(table: SourceTable) -> str:
    return f"{{{{ stage_source('{table.source}', '{table.name}') }}}}\n"


def _column_tests(table: SourceTable, column_name: str) -> list:
    """Column tests other than the staging_rules test: relationships (they read another model)."""
    column = next((c for c in table.columns if c.staged_name == column_name), None)
    if column is None or not column.meta.relationship:
        return []
    rel = column.meta.relationship
    return [{"relationships": {"arguments": {"to": f"ref('{rel.to}')", "field": rel.field}}}]


def _cast_failures_column(table: SourceTable) -> dict:
    """The per-row count of values that did not convert to their declared type."""
    names = ", ".join(c.staged_name for c in table.columns if table.column_safe_cast(c))
    return {
        "name": CAST_FAILURES_COLUMN,
        "data_type": "integer",
        "description": (
            f"Number of values in this row that did not convert to their declared type ({names}); "
            "those values are null in the staged row; the staging_rules test warns about such rows."
        ),
    }


def staging_rules_test(table: SourceTable) -> dict:
    """The declared rules of the staging model in one test (tests/dbt/generic/
    test_staging_rules.sql): the key present and unique, not_null columns, accepted values, and
    rows with values that failed a safe cast (those warn). One test node instead of one per rule
    keeps a cold `dbt parse` cheap per declared table (docs/benchmarks.md, "Parametrisation")."""
    arguments: dict = {"primary_key": list(table.primary_key)}
    # Key columns are tested as a whole by the primary_key rule (no nulls, no repeats).
    not_null = [
        c.staged_name
        for c in table.columns
        if c.meta.not_null and c.staged_name not in table.primary_key
    ]
    if not_null:
        arguments["not_null"] = not_null
    accepted = {
        c.staged_name: list(c.meta.accepted_values) for c in table.columns if c.meta.accepted_values
    }
    if accepted:
        arguments["accepted_values"] = accepted
    if table.has_safe_casts:
        arguments["cast_failures"] = True
    name = f"staging_rules_{table.staging_model}"
    return {"staging_rules": {"name": name, "arguments": arguments}}


def models_yaml(source: str, tables: list[SourceTable]) -> str:
    models = []
    for table in tables:
        columns = []
        for column in table.columns:
            entry = {
                "name": column.staged_name,
                "data_type": column.data_type,
                "description": column.description,
            }
            if tests := _column_tests(table, column.staged_name):
                entry["data_tests"] = tests
            columns.append(entry)
        for derived in table.derived:
            columns.append(
                {
                    "name": derived.name,
                    "data_type": derived.data_type,
                    "description": derived.description,
                }
            )
        if table.has_safe_casts:
            columns.append(_cast_failures_column(table))
        description = (
            f"One row per {table.key_label}: {table.description.rstrip('.')}. "
            f"Staged from source {table.key} (latest record per key)."
        )
        model = {"name": table.staging_model, "description": description}
        model["data_tests"] = [staging_rules_test(table)]
        model["columns"] = columns
        models.append(model)
    body = yaml.safe_dump(
        {"version": 2, "models": models}, sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER.format(source=source) + "\n" + body


def expected_files(project_dir: Path = PROJECT_DIR) -> dict[Path, str]:
    """Every derived staging file with the content the declarations give."""
    by_source: dict[str, list[SourceTable]] = defaultdict(list)
    for table in load_registry(project_dir):
        by_source[table.source].append(table)
    files: dict[Path, str] = {}
    for source, tables in by_source.items():
        folder = tables[0].declared_in.parent
        files[folder / f"_{source}__models.yml"] = models_yaml(source, tables)
        for table in tables:
            files[folder / f"{table.staging_model}.sql"] = staging_sql(table)
    return files


def check(project_dir: Path = PROJECT_DIR) -> list[str]:
    """Problems found, each naming the file and what to do; empty when in sync."""
    problems = []
    expected = expected_files(project_dir)
    for path, content in sorted(expected.items()):
        if not path.exists():
            problems.append(f"{path}: missing; run `dataops sources sync` to write it")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{path}: differs from its declaration; run `dataops sources sync`")
    staging = project_dir / "models" / "staging"
    for path in sorted(staging.glob("*/stg_*.sql")):
        if path not in expected:
            problems.append(
                f"{path}: no source table is declared for this staging model; declare it in "
                f"{path.parent}/_{path.parent.name}__sources.yml or delete the file"
            )
    return problems


def sync(project_dir: Path = PROJECT_DIR) -> list[Path]:
    """Write every derived file whose content differs; return the files written."""
    written = []
    for path, content in sorted(expected_files(project_dir).items()):
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written.append(path)
    return written
