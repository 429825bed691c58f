"""`dataops pr build` and `dataops pr teardown`: one disposable environment per pull request.

A PR build compares the checked-out project with the manifest prod was last deployed from
(``$DATAOPS_HOME/prod-state/manifest.json``) and builds only ``state:modified+`` into the schema
``pr_<number>`` of the CI warehouse file. Everything it does not build (unchanged upstream
models, seeds, raw sources) is read from prod, which the ci target attaches read-only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dataops.cicd import prune
from dataops.cicd.environments import (
    CicdError,
    Layout,
    ci_lock,
    connect,
    drop_environment,
    pr_schema,
    reset_environment,
    strip_ansi,
)
from dataops.cicd.pr_parse import ParsedCheckout, SharedParseError, parse_for_pr, pr_vars
from dataops.core.events import ensure_events, record_event
from dataops.core.git import git_commit
from dataops.core.settings import PROJECT_DIR, load_settings
from dataops.core.sql import quote_identifier, quote_literal
from dataops.dbt.runner import (
    DbtOutcome,
    dbt_args,
    dbt_env,
    environ,
    invoke,
    outcome_of,
    run_dbt,
)

DEFAULT_SELECTION = ("state:modified+",)
PARTIAL_PARSE = "partial_parse.msgpack"


def pr_build_args(
    layout: Layout,
    number: int,
    select: Sequence[str] = DEFAULT_SELECTION,
    exclude: Sequence[str] = (),
    *,
    full_refresh: bool = False,
    favor_state: bool = True,
) -> list[str]:
    """dbt arguments of a PR build: the modified nodes and their children, the rest from prod.

    ``--defer --favor-state`` resolve every ref to a node not selected to prod's relation (even if
    the PR schema held one); sources are read from prod's catalog through the var the sources
    YAML files use for their ``database``. Without ``favor_state`` (the second step of a pruned
    build, dataops/cicd/prune.py) a ref to a node the PR schema holds resolves to the PR schema.
    """
    pr_schema(number)  # validates the number
    return dbt_args(
        "build",
        "ci",
        select=select,
        exclude=exclude,
        dbt_vars=pr_vars(layout),
        extra=[
            "--state",
            str(layout.prod_state_dir),
            "--defer",
            *(["--favor-state"] if favor_state else []),
            "--target-path",
            str(layout.pr_target_dir(number)),
            *(["--full-refresh"] if full_refresh else []),
        ],
    )


def incremental_ls_args(
    layout: Layout, number: int, select: Sequence[str], exclude: Sequence[str]
) -> list[str]:
    """`dbt ls` of the incremental models a PR build selects (each selector intersected with
    ``config.materialized:incremental``)."""
    return dbt_args(
        "ls",
        "ci",
        select=[f"{s},config.materialized:incremental" for s in select],
        exclude=exclude,
        dbt_vars=pr_vars(layout),
        extra=[
            "--state",
            str(layout.prod_state_dir),
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--target-path",
            str(layout.pr_target_dir(number)),
            "--log-level",
            "none",
        ],
    )


FULL_REFRESH_MARKER = "[full-refresh]"


def full_refresh_requested(head: str | None) -> bool:
    """A commit marker asks for a full refresh: ``[full-refresh]`` in the message of the checked
    out commit, or of the PR's head when the checkout is GitHub's merge commit."""
    if not head:
        return False
    for ref in (head, f"{head}^2"):
        message = _git("log", "-1", "--format=%B", ref)
        if message and message.returncode == 0 and FULL_REFRESH_MARKER in message.stdout:
            return True
    return False


def clone_incremental_models(
    con: duckdb.DuckDBPyConnection,
    layout: Layout,
    uids: list[str],
    pr_manifest: dict[str, Any],
    prod_manifest: dict[str, Any],
) -> list[str]:
    """Copy prod's table of each incremental model into the PR schema, so the PR build runs it
    incrementally (only rows newer than prod's) instead of rebuilding it from all raw data.
    Returns the models cloned (those prod holds)."""
    con.execute(
        f"attach if not exists {quote_literal(str(layout.prod_warehouse))} "
        f"as {quote_identifier(layout.prod_catalog)} (read_only)"
    )
    cloned = []
    for uid in uids:
        node, prod_node = pr_manifest["nodes"].get(uid), prod_manifest["nodes"].get(uid)
        if not node or not prod_node or not prod_node.get("relation_name"):
            continue
        try:
            pr_relation, prod_relation = node["relation_name"], prod_node["relation_name"]
            con.execute(f"create table {pr_relation} as select * from {prod_relation}")
        except duckdb.CatalogException:
            continue  # not in prod yet (never deployed): the build makes it from scratch
        cloned.append(uid)
    return cloned


def pr_parse_args(layout: Layout, number: int) -> list[str]:
    """`dbt parse` of the checkout for the PR's own schema, into its target folder: what a PR
    build falls back to when the shared parse cannot serve it (dataops/cicd/pr_parse.py)."""
    pr_schema(number)
    return dbt_args(
        "parse",
        "ci",
        dbt_vars=pr_vars(layout),
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
    behind_prod: dict[str, Any] | None = None
    cloned: list[str] = field(default_factory=list)
    # descendants not rebuilt, data identical to prod -> the modified models that allow it
    pruned: dict[str, list[str]] = field(default_factory=dict)


def unchanged_relocated_sources(
    pr_manifest: dict[str, Any], prod_manifest: dict[str, Any]
) -> list[str]:
    """Tests to leave out of a PR build: those of source tables whose declaration is unchanged
    but whose relation differs from prod's only because a PR build reads the CI file's own copy
    (the ``platform`` tables). dbt calls such a source modified, so ``state:modified+`` would run
    their tests in every PR, against the CI file's tables, whatever the PR changed."""
    excluded = []
    children = pr_manifest.get("child_map") or {}
    for uid, source in sorted(pr_manifest.get("sources", {}).items()):
        old = prod_manifest.get("sources", {}).get(uid)
        if (
            children.get(uid)
            and old is not None
            and _declaration(old) == _declaration(source)
            and old.get("relation_name") != source.get("relation_name")
        ):
            excluded.append(f"source:{source['source_name']}.{source['name']}+,resource_type:test")
    return excluded


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def behind_prod(deployed_commit: str | None, head: str | None) -> dict[str, Any] | None:
    """Is the commit prod was deployed from part of the checked-out branch? If not, the diff
    against prod shows prod's newer changes as reverted by the PR: say so, and what to merge.

    None when the branch contains prod's commit (or nothing is known to compare).
    """
    if not deployed_commit or not head or deployed_commit == head:
        return None
    known = _git("cat-file", "-e", f"{deployed_commit}^{{commit}}")
    if known is None or known.returncode != 0:
        return {
            "prod_commit": deployed_commit,
            "known": False,
            "commits": [],
            "files": [],
        }
    ancestor = _git("merge-base", "--is-ancestor", deployed_commit, head)
    if ancestor is None or ancestor.returncode == 0:
        return None
    log = _git("log", "--format=%h %s", "--max-count=20", f"{head}..{deployed_commit}")
    files = _git("diff", "--name-only", f"{head}...{deployed_commit}")
    return {
        "prod_commit": deployed_commit,
        "known": True,
        "commits": (log.stdout.splitlines() if log and log.returncode == 0 else []),
        "files": (files.stdout.splitlines() if files and files.returncode == 0 else []),
    }


def _invocation_id(results_file: Path) -> str | None:
    if not results_file.is_file():
        return None
    return json.loads(results_file.read_text()).get("metadata", {}).get("invocation_id")


class CiFileBusy(CicdError):
    """dbt could not open the CI file: another process holds its lock."""


def _is_lock_error(text: str | None) -> bool:
    return bool(text) and "could not set lock" in text.lower()


def build(
    layout: Layout,
    number: int,
    select: Sequence[str] = DEFAULT_SELECTION,
    *,
    full_refresh: bool = False,
) -> PrBuild:
    """Recreate the PR environment empty and build the PR's changes into it.

    The CI file is taken first (the `dataops` lock, then DuckDB's lock, which this process keeps
    while dbt runs in it, so no other process can take the file between the reset and dbt's
    start). If either is held, nothing is created or removed.
    """
    check_prod_state(layout)
    schema = pr_schema(number)
    commit = git_commit()
    target_dir = layout.pr_target_dir(number)
    prod_deploy = layout.prod_state_dir / "deploy.json"
    deployed = json.loads(prod_deploy.read_text()) if prod_deploy.is_file() else {}
    behind = behind_prod(deployed.get("commit"), commit)
    full_refresh = full_refresh or full_refresh_requested(commit)
    with ci_lock(layout, f"dataops pr build {number}"):
        shared, parse_note = _shared_parse(layout, number)
        con = connect(layout.ci_warehouse)
        try:
            outcome, select, changed_sources, excluded, cloned, pruning = _build_locked(
                layout, con, number, select, commit, full_refresh, shared
            )
        finally:
            con.close()
    results_file = target_dir / "run_results.json"
    selected = []
    if results_file.is_file():
        selected = [r["unique_id"] for r in json.loads(results_file.read_text())["results"]]
    failures = [strip_ansi(f) for f in outcome.failures]
    (layout.pr_dir(number) / "build.json").write_text(
        json.dumps(
            {
                "pr_number": number,
                "schema": schema,
                "commit": commit,
                "success": outcome.success,
                "select": list(select),
                "exclude": excluded,
                "changed_sources": changed_sources,
                "failures": failures,
                "exception": strip_ansi(outcome.exception) or None,
                "dbt_invocation_id": _invocation_id(results_file),
                "behind_prod": behind,
                "full_refresh": full_refresh,
                "cloned_from_prod": cloned,
                "parse": parse_note,
                # pruned build (dataops/cicd/prune.py): each modified model compared with prod,
                # and the descendants not rebuilt because their inputs are prod's
                "compared_with_prod": pruning.compared if pruning else {},
                "pruned": pruning.pruned if pruning else {},
                "dbt_invocation_ids": pruning.invocation_ids if pruning else [],
            },
            indent=2,
        )
        + "\n"
    )
    outcome.failures = failures
    outcome.exception = strip_ansi(outcome.exception) or None
    return PrBuild(
        number,
        schema,
        outcome,
        commit,
        target_dir,
        selected,
        behind,
        cloned,
        pruning.pruned if pruning else {},
    )


def _shared_parse(layout: Layout, number: int) -> tuple[ParsedCheckout | None, str]:
    """The checkout's shared parse moved to the PR's schema, or None (and why: then the build
    parses in full, as dbt would); with one line for build.json saying which."""
    with environ(layout.dbt_environment(number)):
        try:
            shared = parse_for_pr(layout, number, load_settings("ci"))
        except SharedParseError as error:
            note = f"full parse for {pr_schema(number)}: the shared parse was not used ({error})"
            print(f"dbt parse: {note}", file=sys.stderr, flush=True)
            return None, note
    return shared, f"shared parse {shared.parse_dir.name}, moved to {pr_schema(number)}"


def _build_locked(
    layout: Layout,
    con: duckdb.DuckDBPyConnection,
    number: int,
    select: Sequence[str],
    commit: str | None,
    full_refresh: bool,
    shared: ParsedCheckout | None,
) -> tuple[DbtOutcome, Sequence[str], list[str], list[str], list[str], prune.Pruning | None]:
    schema = pr_schema(number)
    target_dir = layout.pr_target_dir(number)
    reset_environment(con, number, commit)
    # No stale results of a past build; but dbt's parse cache of a full parse (the fallback)
    # stays: the same PR has the same schema and vars, so a new push parses only the files it
    # changed (dbt checks every hash).
    cache = target_dir / PARTIAL_PARSE
    kept = cache.read_bytes() if cache.is_file() else None
    shutil.rmtree(layout.pr_dir(number), ignore_errors=True)
    target_dir.mkdir(parents=True)
    if kept is not None:
        cache.write_bytes(kept)
    ensure_events(con)
    record_event(
        con,
        "cicd.pr_build_started",
        status="started",
        message=schema,
        details={"pr_number": number, "commit": commit, "select": list(select)},
    )
    changed_sources: list[str] = []
    excluded: list[str] = []
    cloned: list[str] = []
    pruning: prune.Pruning | None = None
    pruned_build = prune.applies(select, DEFAULT_SELECTION, full_refresh)
    try:
        with environ(layout.dbt_environment(number)):
            settings = load_settings("ci")
            # dbt's `ls` and `build` below run on this manifest: neither parses again
            if shared is not None:
                (target_dir / "manifest.json").write_text(shared.manifest_text)
                manifest = shared.manifest
                pr_manifest = json.loads(shared.manifest_text)
            else:
                result = invoke(pr_parse_args(layout, number), dbt_env(settings))
                if not result.success:  # recorded in build.json; the report says so
                    parsed = outcome_of(result)
                    parsed.exception = f"dbt parse failed: {parsed.exception}"
                    return parsed, select, [], [], [], None
                manifest = result.result
                pr_manifest = json.loads((target_dir / "manifest.json").read_text())
            prod_manifest = json.loads(layout.prod_manifest.read_text())
            if tuple(select) == DEFAULT_SELECTION:
                changed_sources = changed_source_declarations(pr_manifest, prod_manifest)
                excluded = unchanged_relocated_sources(pr_manifest, prod_manifest)
                select = (*select, *changed_sources)
            if not full_refresh:
                listed = invoke(
                    incremental_ls_args(layout, number, select, excluded),
                    dbt_env(settings),
                    manifest=manifest,
                )
                if listed.success:
                    incremental = [json.loads(line)["unique_id"] for line in listed.result or []]
                    cloned = clone_incremental_models(
                        con, layout, incremental, pr_manifest, prod_manifest
                    )
            if pruned_build:
                pruning = prune.build(
                    con,
                    layout,
                    number,
                    pr_manifest,
                    prod_manifest,
                    (*changed_sources, *excluded),
                    lambda step, favor_state: run_dbt(
                        settings,
                        pr_build_args(layout, number, step, excluded, favor_state=favor_state),
                        manifest=manifest,
                    ),
                )
                outcome = pruning.outcome
            else:
                outcome = run_dbt(
                    settings,
                    pr_build_args(layout, number, select, excluded, full_refresh=full_refresh),
                    manifest=manifest,
                )
        if _is_lock_error(outcome.exception):
            raise CiFileBusy(
                f"dbt could not open {layout.ci_warehouse}: another process holds its lock "
                f"({strip_ansi(outcome.exception)}). Nothing was built; run the build again."
            )
    except CiFileBusy:
        shutil.rmtree(layout.pr_dir(number), ignore_errors=True)
        drop_environment(layout, con, number, reason="PR build did not start")
        raise
    record_event(
        con,
        "cicd.pr_build_finished",
        status="success" if outcome.success else "failed",
        message=schema,
        details={
            "pr_number": number,
            "commit": commit,
            "dbt_invocation_id": _invocation_id(target_dir / "run_results.json"),
            "failures": [strip_ansi(f) for f in outcome.failures],
            "exception": strip_ansi(outcome.exception) or None,
        },
    )
    return outcome, select, changed_sources, excluded, cloned, pruning


def teardown(layout: Layout, number: int) -> bool:
    """Drop the PR schema, its artefacts and its rows in the CI file's platform tables; True if
    there was anything to drop."""
    pr_schema(number)
    if not layout.ci_warehouse.is_file():
        existed = layout.pr_dir(number).exists()
        shutil.rmtree(layout.pr_dir(number), ignore_errors=True)
        return existed
    with ci_lock(layout, f"dataops pr teardown {number}"), connect(layout.ci_warehouse) as con:
        return drop_environment(layout, con, number, reason="pull request closed (pr teardown)")
