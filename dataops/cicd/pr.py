"""`dataops pr build` and `dataops pr teardown`: one disposable environment per pull request.

A PR build compares the checked-out project with the manifest prod was last deployed from
(``$DATAOPS_HOME/prod-state/manifest.json``) and builds only ``state:modified+`` into the schema
``pr_<number>`` of the CI warehouse file. Everything it does not build (unchanged upstream
models, seeds, raw sources) is read from prod, which the ci target attaches read-only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.cicd.environments import (
    CicdError,
    Layout,
    connect,
    drop_environment,
    git_commit,
    pr_schema,
    reset_environment,
)
from dataops.core.events import ensure_events, record_event
from dataops.core.settings import load_settings
from dataops.dbt.runner import DbtOutcome, dbt_args, environ, run_dbt

DEFAULT_SELECTION = ("state:modified+",)
RAW_DATABASE_VAR = "dataops_raw_database"  # read by `database:` in the sources YAML files


def pr_build_args(
    layout: Layout, number: int, select: Sequence[str] = DEFAULT_SELECTION
) -> list[str]:
    """dbt arguments of a PR build: the modified nodes and their children, the rest from prod.

    ``--defer --favor-state`` resolve every ref to a node not selected to prod's relation (even if
    the PR schema held one); sources are read from prod's catalog through the var the sources
    YAML files use for their ``database``.
    """
    pr_schema(number)  # validates the number
    return dbt_args(
        "build",
        "ci",
        select=select,
        dbt_vars={RAW_DATABASE_VAR: layout.prod_catalog},
        extra=[
            "--state",
            str(layout.prod_state_dir),
            "--defer",
            "--favor-state",
            "--target-path",
            str(layout.pr_target_dir(number)),
        ],
    )


def pr_parse_args(layout: Layout, number: int) -> list[str]:
    """`dbt parse` of the checkout with the same vars and target folder as the build that follows
    (so the build reuses the parse: partial parsing)."""
    pr_schema(number)
    return dbt_args(
        "parse",
        "ci",
        dbt_vars={RAW_DATABASE_VAR: layout.prod_catalog},
        extra=["--target-path", str(layout.pr_target_dir(number))],
    )


def _declaration(source: dict[str, Any]) -> dict[str, Any]:
    """What the staging macros read from a source table's declaration (descriptions aside)."""
    return {
        "identifier": source.get("identifier"),
        "schema": source.get("schema"),
        "loaded_at_field": source.get("loaded_at_field"),
        "meta": source.get("meta"),
        "source_meta": source.get("source_meta"),
        "config_meta": (source.get("config") or {}).get("meta"),
        "columns": {
            name: {
                "data_type": c.get("data_type"),
                "meta": c.get("meta"),
                "constraints": c.get("constraints"),
                "tests": c.get("tests"),
            }
            for name, c in (source.get("columns") or {}).items()
        },
    }


def changed_source_declarations(
    pr_manifest: dict[str, Any], prod_manifest: dict[str, Any]
) -> list[str]:
    """Source tables whose declaration differs from prod's, as dbt selectors (`source:s.t+`).

    dbt's ``state:modified`` ignores a source's columns, yet the staging macros generate the
    staging SQL from them (types, renames, PII hashing): a changed declaration is a changed
    staging model, so the PR build selects the source's children too.
    """
    changed = []
    for uid, source in sorted(pr_manifest.get("sources", {}).items()):
        old = prod_manifest.get("sources", {}).get(uid)
        if old is None or _declaration(old) != _declaration(source):
            changed.append(f"source:{source['source_name']}.{source['name']}+")
    return changed


def check_prod_state(layout: Layout) -> dict:
    """The prod manifest PR builds defer to; a clear error when prod was never deployed."""
    layout.check_separate()
    if not layout.prod_manifest.is_file():
        raise CicdError(
            f"No prod manifest at {layout.prod_manifest}: PR builds defer to the last prod "
            "deploy. Run `dataops deploy` on main first (it builds prod, publishes the manifest)."
        )
    if not layout.prod_warehouse.is_file():
        raise CicdError(
            f"No prod warehouse file at {layout.prod_warehouse} (DATAOPS_WAREHOUSE_PROD / "
            "DATAOPS_HOME): PR builds read unchanged models and raw data from prod."
        )
    manifest = json.loads(layout.prod_manifest.read_text())
    databases = {
        node.get("database")
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") in ("model", "seed")
    }
    if databases and databases != {layout.prod_catalog}:
        raise CicdError(
            f"{layout.prod_manifest} was deployed to catalog(s) {sorted(databases)}, but the prod "
            f"file here is {layout.prod_warehouse} (catalog {layout.prod_catalog!r}): deploy "
            "and PR builds must use the same DATAOPS_WAREHOUSE_PROD."
        )
    return manifest


@dataclass
class PrBuild:
    number: int
    schema: str
    outcome: DbtOutcome
    commit: str | None
    target_dir: Path
    selected: list[str] = field(default_factory=list)


def build(layout: Layout, number: int, select: Sequence[str] = DEFAULT_SELECTION) -> PrBuild:
    """Recreate the PR environment empty and build the PR's changes into it."""
    check_prod_state(layout)
    schema = pr_schema(number)
    commit = git_commit()
    target_dir = layout.pr_target_dir(number)
    shutil.rmtree(layout.pr_dir(number), ignore_errors=True)  # no stale results of a past build
    target_dir.mkdir(parents=True)
    layout.ci_warehouse.parent.mkdir(parents=True, exist_ok=True)
    with connect(layout.ci_warehouse) as con:
        reset_environment(con, number, commit)
        ensure_events(con)
        record_event(
            con,
            "cicd.pr_build_started",
            status="started",
            message=schema,
            details={"pr_number": number, "commit": commit, "select": list(select)},
        )
    changed_sources: list[str] = []
    with environ(layout.dbt_environment(number)):
        settings = load_settings("ci")
        if tuple(select) == DEFAULT_SELECTION:
            parsed = run_dbt(settings, pr_parse_args(layout, number))
            if not parsed.success:
                raise CicdError(f"dbt parse of the checkout failed: {parsed.exception}")
            changed_sources = changed_source_declarations(
                json.loads((target_dir / "manifest.json").read_text()),
                json.loads(layout.prod_manifest.read_text()),
            )
            select = (*select, *changed_sources)
        outcome = run_dbt(settings, pr_build_args(layout, number, select))
    selected = []
    results_file = target_dir / "run_results.json"
    if results_file.is_file():
        selected = [r["unique_id"] for r in json.loads(results_file.read_text())["results"]]
    (layout.pr_dir(number) / "build.json").write_text(
        json.dumps(
            {
                "pr_number": number,
                "schema": schema,
                "commit": commit,
                "success": outcome.success,
                "select": list(select),
                "changed_sources": changed_sources,
                "failures": outcome.failures,
            },
            indent=2,
        )
        + "\n"
    )
    with connect(layout.ci_warehouse) as con:
        record_event(
            con,
            "cicd.pr_build_finished",
            status="success" if outcome.success else "failed",
            message=schema,
            details={
                "pr_number": number,
                "commit": commit,
                "nodes": len(selected),
                "failures": outcome.failures,
                "exception": outcome.exception,
            },
        )
    return PrBuild(number, schema, outcome, commit, target_dir, selected)


def teardown(layout: Layout, number: int) -> bool:
    """Drop the PR schema and its artefacts; True if there was anything to drop."""
    pr_schema(number)
    if not layout.ci_warehouse.is_file():
        shutil.rmtree(layout.pr_dir(number), ignore_errors=True)
        return False
    with connect(layout.ci_warehouse) as con:
        return drop_environment(layout, con, number, reason="pull request closed (pr teardown)")
