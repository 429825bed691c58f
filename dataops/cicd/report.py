"""`dataops pr report`: the Markdown summary of a PR build, with a data diff against prod.

It reads the PR build's dbt artefacts (``$DATAOPS_HOME/pr/<n>/target``), asks dbt which nodes the
PR modified (``dbt ls --select state:modified`` against the prod manifest), and diffs every model
the PR built against prod's copy.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from dataops.cicd.diff import ModelDiff, diff_model, primary_key
from dataops.cicd.environments import CicdError, Layout, connect, pr_schema
from dataops.cicd.github import REPORT_MARKER
from dataops.cicd.pr import RAW_DATABASE_VAR, check_prod_state
from dataops.core.settings import load_settings
from dataops.dbt.runner import dbt_args, dbt_env, environ, invoke

PASSED = {"success", "pass"}
FAILED = {"error", "fail", "runtime error"}
RUN_TABLE_LIMIT = 200


def modified_nodes(layout: Layout, number: int) -> set[str]:
    """The unique ids dbt itself calls modified against the prod manifest (models and seeds)."""
    args = dbt_args(
        "ls",
        "ci",
        select=["state:modified"],
        dbt_vars={RAW_DATABASE_VAR: layout.prod_catalog},
        extra=[
            "--state",
            str(layout.prod_state_dir),
            "--resource-type",
            "model",
            "--resource-type",
            "seed",
            "--resource-type",
            "snapshot",
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
    with environ(layout.dbt_environment(number)):
        result = invoke(args, dbt_env(load_settings("ci")))
    if not result.success:
        raise CicdError(f"dbt ls --select state:modified failed: {result.exception}")
    return {json.loads(line)["unique_id"] for line in result.result or []}


def declared_children(manifest: dict[str, Any], selectors: list[str]) -> set[str]:
    """Staging models of the source tables whose declaration changed (`source:s.t+` selectors):
    their SQL is generated from the declaration, so they count as modified."""
    names = {selector.removeprefix("source:").rstrip("+") for selector in selectors}
    sources = {
        uid
        for uid, source in manifest.get("sources", {}).items()
        if f"{source['source_name']}.{source['name']}" in names
    }
    return {
        uid
        for uid, node in manifest["nodes"].items()
        if node.get("resource_type") == "model"
        and sources & set((node.get("depends_on") or {}).get("nodes") or [])
    }


def _load(path: Path, what: str, number: int) -> dict[str, Any]:
    if not path.is_file():
        raise CicdError(f"No {what} at {path}: run `dataops pr build {number}` first.")
    return json.loads(path.read_text())


def _read_from_prod(manifest: dict[str, Any], built: set[str]) -> list[str]:
    """Models and seeds the PR's nodes read that it did not build: they came from prod."""
    upstream = set()
    for uid in built:
        node = manifest["nodes"].get(uid) or {}
        for parent in (node.get("depends_on") or {}).get("nodes") or []:
            if parent not in built and parent.split(".")[0] in ("model", "seed", "snapshot"):
                upstream.add(parent)
    return sorted(upstream)


def collect(layout: Layout, number: int) -> dict[str, Any]:
    """Everything the report shows, as plain data (the tests read it too)."""
    check_prod_state(layout)
    target = layout.pr_target_dir(number)
    results = _load(target / "run_results.json", "PR build results", number)
    manifest = _load(target / "manifest.json", "PR build manifest", number)
    prod_manifest = json.loads(layout.prod_manifest.read_text())
    prod_deploy_file = layout.prod_state_dir / "deploy.json"
    deploy = json.loads(prod_deploy_file.read_text()) if prod_deploy_file.is_file() else {}
    meta_file = target.parent / "build.json"
    build_record = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    modified = modified_nodes(layout, number) | declared_children(
        manifest, build_record.get("changed_sources") or []
    )
    built = {
        r["unique_id"]
        for r in results["results"]
        if r["unique_id"].split(".")[0] in ("model", "seed", "snapshot") and r["status"] in PASSED
    }
    diffs: list[ModelDiff] = []
    if built:
        with connect(
            layout.ci_warehouse, read_only=True, attach={layout.prod_catalog: layout.prod_warehouse}
        ) as con:
            for uid in sorted(built, key=lambda u: (u not in modified, u)):
                node = manifest["nodes"][uid]
                if node.get("config", {}).get("materialized") == "ephemeral":
                    continue
                prod_node = prod_manifest["nodes"].get(uid)
                diffs.append(
                    diff_model(
                        con,
                        node["name"],
                        "modified" if uid in modified else "downstream",
                        node["relation_name"],
                        prod_node["relation_name"] if prod_node else None,
                        primary_key(manifest, uid),
                    )
                )
    return {
        "number": number,
        "schema": pr_schema(number),
        "results": results["results"],
        "elapsed": results.get("elapsed_time"),
        "modified": sorted(modified),
        "read_from_prod": _read_from_prod(manifest, built),
        "diffs": diffs,
        "deploy": deploy,
        "build": build_record,
    }


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _short(uid: str) -> str:
    return uid.split(".")[-1]


def to_markdown(data: dict[str, Any]) -> str:
    results = data["results"]
    counts: Counter = Counter()
    for r in results:
        kind = "tests" if r["unique_id"].startswith(("test.", "unit_test.")) else "models"
        outcome = (
            "passed"
            if r["status"] in PASSED
            else "failed"
            if r["status"] in FAILED
            else "warned"
            if r["status"] == "warn"
            else "skipped"
        )
        counts[(kind, outcome)] += 1
    failed = [r for r in results if r["status"] in FAILED]
    ok = not failed
    lines = [
        REPORT_MARKER,
        f"## {'✅' if ok else '❌'} dataops PR #{data['number']}: "
        f"{'build passed' if ok else f'{len(failed)} node(s) failed'}",
        "",
    ]
    commit = (data.get("build") or {}).get("commit")
    deployed = data.get("deploy") or {}
    lines.append(
        f"`state:modified+` built into schema `{data['schema']}` of the CI warehouse"
        + (f" at commit `{commit[:12]}`" if commit else "")
        + "; everything else read from prod"
        + (f" as deployed from `{deployed['commit'][:12]}`" if deployed.get("commit") else "")
        + (f" at {deployed['deployed_at'][:16]} UTC" if deployed.get("deployed_at") else "")
        + "."
    )
    lines += ["", "| | passed | failed | warned | skipped |", "|---|---:|---:|---:|---:|"]
    for kind in ("models", "tests"):
        lines.append(
            f"| {kind} | "
            + " | ".join(str(counts[(kind, o)]) for o in ("passed", "failed", "warned", "skipped"))
            + " |"
        )
    if not results:
        lines += ["", "Nothing to build: no model, seed or source changed against prod."]
    if failed:
        lines += ["", "**Failures**", ""]
        for r in failed:
            message = " ".join((r.get("message") or "").split())[:300]
            lines.append(f"- `{r['unique_id']}`: {r['status']}: {message}")
    if results:
        lines += [
            "",
            f"<details><summary>{len(results)} nodes run</summary>",
            "",
            "| node | type | status | seconds |",
            "|---|---|---|---:|",
        ]
        ordered = sorted(results, key=lambda r: (r["status"] in PASSED, r["unique_id"]))
        for r in ordered[:RUN_TABLE_LIMIT]:
            kind = r["unique_id"].split(".")[0]
            lines.append(
                f"| `{_short(r['unique_id'])}` | {kind} | {r['status']} | "
                f"{r.get('execution_time') or 0:.1f} |"
            )
        if len(ordered) > RUN_TABLE_LIMIT:
            lines.append(f"| … {len(ordered) - RUN_TABLE_LIMIT} more | | | |")
        lines += ["", "</details>"]
    if data["read_from_prod"]:
        lines += [
            "",
            "Read from prod (unchanged upstream): "
            + ", ".join(f"`{_short(u)}`" for u in data["read_from_prod"]),
        ]
    lines += ["", "### Data diff against prod", ""]
    if not data["diffs"]:
        lines.append("No model was built, so there is nothing to compare.")
    else:
        lines += [
            "| model | change | key | rows prod → PR | added | removed | changed | columns |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for d in data["diffs"]:
            columns = []
            if d.columns_added and d.change != "new":
                columns.append(f"+{len(d.columns_added)}")
            if d.columns_removed:
                columns.append(f"−{len(d.columns_removed)}")
            if d.columns_retyped:
                columns.append(f"~{len(d.columns_retyped)}")
            lines.append(
                f"| `{d.name}` | {d.change} | {f'`{d.key}`' if d.key else '–'} | "
                f"{_n(d.prod_rows)} → {_n(d.pr_rows)} | {_n(d.added)} | {_n(d.removed)} | "
                f"{_n(d.changed)} | {' '.join(columns) or ('same' if d.change != 'new' else '–')} |"
            )
        for d in data["diffs"]:
            if d.identical and not d.note:
                continue
            lines += ["", f"#### `{d.name}` ({d.change})", ""]
            if d.change == "new":
                lines.append(
                    f"- new model, {_n(d.pr_rows)} rows, columns: "
                    + ", ".join(f"`{c}`" for c in d.columns_added)
                )
            else:
                if d.columns_added:
                    lines.append("- columns added: " + ", ".join(f"`{c}`" for c in d.columns_added))
                if d.columns_removed:
                    lines.append(
                        "- columns removed: " + ", ".join(f"`{c}`" for c in d.columns_removed)
                    )
                for column, before, after in d.columns_retyped:
                    lines.append(f"- column `{column}` retyped: {before} → {after}")
            if d.note:
                lines.append(f"- note: {d.note}")
            if d.changed_values:
                lines += ["", "| column | rows with a changed value |", "|---|---:|"]
                for column, n in sorted(d.changed_values.items(), key=lambda kv: -kv[1]):
                    lines.append(f"| `{column}` | {n:,} |")
    return "\n".join(lines) + "\n"


def render(layout: Layout, number: int) -> str:
    return to_markdown(collect(layout, number))
