"""`dataops pr report`: the Markdown summary of a PR build, with a data diff against prod.

It reads the PR build's dbt artefacts (``$DATAOPS_HOME/pr/<n>/target``), asks dbt which nodes the
PR modified (``dbt ls --select state:modified`` against the prod manifest), and diffs every model
the PR built against prod's copy.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb

from dataops.cicd import lineage
from dataops.cicd.diff import ModelDiff, diff_model, primary_key
from dataops.cicd.environments import CicdError, Layout, ci_lock, connect, pr_schema, strip_ansi
from dataops.cicd.github import REPORT_MARKER
from dataops.cicd.pr import check_prod_state
from dataops.cicd.pr_parse import SharedParseError, load_built_manifest, parse_for_pr, pr_vars
from dataops.core.settings import load_settings
from dataops.dbt.runner import dbt_args, dbt_env, environ, invoke

PASSED = {"success", "pass"}
FAILED = {"error", "fail", "runtime error"}
RUN_TABLE_LIMIT = 200


def modified_nodes(layout: Layout, number: int) -> set[str]:
    """The unique ids dbt itself calls modified against the prod manifest (models and seeds),
    asked of the manifest the PR build ran on (falling back to a parse of the checkout)."""
    args = dbt_args(
        "ls",
        "ci",
        select=["state:modified"],
        dbt_vars=pr_vars(layout),
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
        settings = load_settings("ci")
        try:  # the manifest the build ran on: no parse at all
            manifest = load_built_manifest(layout.pr_target_dir(number) / "manifest.json")
        except SharedParseError:
            try:  # the checkout's shared parse (as the build): a partial parse
                manifest = parse_for_pr(layout, number, settings).manifest
            except SharedParseError:
                manifest = None  # dbt parses it, as the build did then
        result = invoke(args, dbt_env(settings), manifest=manifest)
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


MODEL_TYPES = ("model", "seed", "snapshot")
TEST_TYPES = ("test", "unit_test")


def node_name(manifest: dict[str, Any], uid: str) -> str:
    """The name dbt shows for a node: a generic test's full name, not the hash its unique id ends
    with (`unique_fct_orders_order_id`, not `22a4f141e8`)."""
    node = manifest.get("nodes", {}).get(uid) or manifest.get("unit_tests", {}).get(uid) or {}
    return node.get("name") or uid.split(".")[-1]


def tested_models(manifest: dict[str, Any], uid: str) -> list[str]:
    """The models, seeds or snapshots a test checks (a singular test may check several)."""
    node = manifest.get("nodes", {}).get(uid) or manifest.get("unit_tests", {}).get(uid) or {}
    if node.get("attached_node"):
        return [node["attached_node"]]
    parents = (node.get("depends_on") or {}).get("nodes") or []
    return [p for p in parents if p.split(".")[0] in MODEL_TYPES]


def is_mart(manifest: dict[str, Any], uid: str) -> bool:
    fqn = (manifest["nodes"].get(uid) or {}).get("fqn") or []
    return len(fqn) > 1 and fqn[1] == "marts"


def per_model_results(
    manifest: dict[str, Any],
    results: list[dict[str, Any]],
    modified: set[str],
    diffs: list[ModelDiff] = (),
) -> list[dict[str, Any]]:
    """One entry per model the PR ran: its build status, time, rows (as dbt reported them, else
    as counted by the diff), and its tests' outcomes."""
    counted = {d.name: d.pr_rows for d in diffs}
    by_model: dict[str, dict[str, Any]] = {}
    for r in results:
        uid = r["unique_id"]
        if uid.split(".")[0] in MODEL_TYPES:
            by_model[uid] = {
                "unique_id": uid,
                "name": node_name(manifest, uid),
                "change": "modified" if uid in modified else "downstream",
                "status": r["status"],
                "seconds": r.get("execution_time") or 0.0,
                "rows": (r.get("adapter_response") or {}).get("rows_affected")
                or counted.get(node_name(manifest, uid)),
                "tests": [],
            }
    for r in results:
        uid = r["unique_id"]
        if uid.split(".")[0] in TEST_TYPES:
            for model in tested_models(manifest, uid):
                if model in by_model:
                    by_model[model]["tests"].append((node_name(manifest, uid), r["status"]))
    return sorted(by_model.values(), key=lambda m: (m["change"] != "modified", m["name"]))


def changed_columns(manifest: dict[str, Any], diffs: list[ModelDiff]) -> list[tuple[str, str]]:
    """The columns of the PR's modified models whose data changed: values, type, added, removed."""
    uids = {node.get("name"): uid for uid, node in manifest["nodes"].items()}
    changed = set()
    for d in diffs:
        if d.change != "modified" or d.name not in uids:
            continue
        columns = {*d.changed_values, *d.columns_added, *d.columns_removed}
        columns |= {column for column, _, _ in d.columns_retyped}
        changed |= {(uids[d.name], column) for column in columns}
    return sorted(changed)


def collect(layout: Layout, number: int) -> dict[str, Any]:
    """Everything the report shows, as plain data (the tests read it too)."""
    check_prod_state(layout)
    target = layout.pr_target_dir(number)
    meta_file = target.parent / "build.json"
    build_record = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    prod_deploy_file = layout.prod_state_dir / "deploy.json"
    deploy = json.loads(prod_deploy_file.read_text()) if prod_deploy_file.is_file() else {}
    data: dict[str, Any] = {
        "number": number,
        "schema": pr_schema(number),
        "results": [],
        "elapsed": None,
        "modified": [],
        "read_from_prod": [],
        "diffs": [],
        "per_model": [],
        "names": {},
        "deploy": deploy,
        "build": build_record,
    }
    if build_record.get("exception") and not (target / "run_results.json").is_file():
        return data  # dbt never ran (a parse error): the report says why
    results = _load(target / "run_results.json", "PR build results", number)
    manifest = _load(target / "manifest.json", "PR build manifest", number)
    prod_manifest = json.loads(layout.prod_manifest.read_text())
    modified = modified_nodes(layout, number) | declared_children(
        manifest, build_record.get("changed_sources") or []
    )
    built = {
        r["unique_id"]
        for r in results["results"]
        if r["unique_id"].split(".")[0] in MODEL_TYPES and r["status"] in PASSED
    }
    diffs: list[ModelDiff] = []
    if built:
        with (
            ci_lock(layout, f"dataops pr report {number}"),
            connect(
                layout.ci_warehouse,
                read_only=True,
                attach={layout.prod_catalog: layout.prod_warehouse},
            ) as con,
        ):
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
                        sample=is_mart(manifest, uid),
                    )
                )
            changed = changed_columns(manifest, diffs)
            if changed:
                data["impact"] = lineage.impact(
                    manifest, prod_manifest, changed, sorted(built), lineage.warehouse_schema(con)
                )
    data.update(
        results=results["results"],
        elapsed=results.get("elapsed_time"),
        modified=sorted(modified),
        read_from_prod=_read_from_prod(manifest, built),
        diffs=diffs,
        per_model=per_model_results(manifest, results["results"], modified, diffs),
        names={r["unique_id"]: node_name(manifest, r["unique_id"]) for r in results["results"]},
    )
    return data


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _short(uid: str) -> str:
    return uid.split(".")[-1]


def _kind(uid: str) -> str | None:
    """models (models, seeds, snapshots), tests (data and unit tests), or None (hooks)."""
    prefix = uid.split(".")[0]
    if prefix in MODEL_TYPES:
        return "models"
    if prefix in TEST_TYPES:
        return "tests"
    return None


def _outcome(status: str) -> str:
    if status in PASSED:
        return "passed"
    if status in FAILED:
        return "failed"
    return "warned" if status == "warn" else "skipped"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _clip(value: str | None, width: int = 40) -> str:
    if value is None:
        return "null"
    return value if len(value) <= width else value[: width - 1] + "…"


def folded(title: str, text: str) -> list[str]:
    """A failure's full text, folded: its first line shows, the whole text opens on a click."""
    text = strip_ansi(text).replace("\r\n", "\n").strip() or "(no message)"
    first = " ".join(text.splitlines()[0].split())
    if len(first) > 160:
        first = first[:159] + "…"
    return [
        "<details>",
        f"<summary>{title}: {html.escape(first)}</summary>",
        "",
        "````text",
        text.replace("````", "` ` ` `"),
        "````",
        "",
        "</details>",
    ]


def warnings(data: dict[str, Any]) -> list[str]:
    """What a reviewer must know before reading the numbers."""
    found = []
    behind = (data.get("build") or {}).get("behind_prod")
    if behind and behind.get("known"):
        commits = behind.get("commits") or []
        changed = [f for f in behind.get("files") or [] if f.startswith(("models/", "seeds/"))]
        found.append(
            f"**This branch is behind prod**: prod was deployed from "
            f"`{behind['prod_commit'][:12]}`, which this branch does not contain "
            f"({len(commits)} commit(s) on main"
            + (": " + "; ".join(f"`{c}`" for c in commits[:5]) if commits else "")
            + "). The diff below shows those changes as if this PR reverted them"
            + (" (" + ", ".join(f"`{f}`" for f in changed[:10]) + ")" if changed else "")
            + ". Merge main into the branch (`git merge origin/main`) and push."
        )
    elif behind:
        found.append(
            f"Cannot tell whether this branch contains prod's commit "
            f"`{behind['prod_commit'][:12]}` (not in this clone: check out with full history, "
            "`fetch-depth: 0`). If it does not, the diff shows main's newer changes as reverted."
        )
    for d in data.get("diffs") or []:
        if d.key_broken:
            found.append(
                f"**`{d.name}`: key `{d.key}` is no longer unique** ({_n(d.pr_duplicates)} rows "
                f"beyond one per key, {_n(d.prod_rows)} → {_n(d.pr_rows)} rows): a join fans "
                "out. Its added/changed counts are rows of the fan-out, not real changes."
            )
    return found


def to_markdown(data: dict[str, Any]) -> str:
    results = data["results"]
    names = data.get("names") or {}
    build = data.get("build") or {}
    counts: Counter = Counter()
    for r in results:
        kind = _kind(r["unique_id"])
        if kind:
            counts[(kind, _outcome(r["status"]))] += 1
    failed = [r for r in results if r["status"] in FAILED]
    dbt_error = build.get("exception")
    ok = not failed and not dbt_error
    if ok:
        title = "build passed"
    elif failed:
        title = f"{len(failed)} node(s) failed"
    else:
        title = "dbt did not complete"
    lines = [REPORT_MARKER, f"## {'✅' if ok else '❌'} dataops PR #{data['number']}: {title}", ""]
    commit = build.get("commit")
    deployed = data.get("deploy") or {}
    pruned = len(build.get("pruned") or {})
    lines.append(
        "`state:modified+`"
        + (f" (less {pruned} descendant(s) with prod's inputs, listed below)" if pruned else "")
        + f" built into schema `{data['schema']}` of the CI warehouse"
        + (f" at commit `{commit[:12]}`" if commit else "")
        + "; everything else read from prod"
        + (f" as deployed from `{deployed['commit'][:12]}`" if deployed.get("commit") else "")
        + (f" at {deployed['deployed_at'][:16]} UTC" if deployed.get("deployed_at") else "")
        + "."
    )
    for warning in warnings(data):
        lines += ["", f"> ⚠️ {warning}"]
    lines += ["", "| | passed | failed | warned | skipped |", "|---|---:|---:|---:|---:|"]
    for kind in ("models", "tests"):
        lines.append(
            f"| {kind} | "
            + " | ".join(str(counts[(kind, o)]) for o in ("passed", "failed", "warned", "skipped"))
            + " |"
        )
    if not any(_kind(r["unique_id"]) for r in results) and not dbt_error:
        lines += ["", "Nothing to build: no model, seed or source changed against prod."]
    if dbt_error:
        lines += ["", *folded("**dbt error**", dbt_error)]
    if failed:
        lines += ["", "### Failures", ""]
        for r in failed:
            name = names.get(r["unique_id"]) or _short(r["unique_id"])
            kind = r["unique_id"].split(".")[0]
            lines += folded(f"`{name}` ({kind}) {r['status']}", r.get("message") or "")
    lines += _per_model_section(data.get("per_model") or [])
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
            name = names.get(r["unique_id"]) or _short(r["unique_id"])
            lines.append(
                f"| `{name}` | {'hook' if kind == 'operation' else kind} | {r['status']} | "
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
    lines += _pruned_section(build)
    cloned = build.get("cloned_from_prod") or []
    if cloned:
        lines += [
            "",
            "Incremental models cloned from prod, then run incrementally (rows prod already had "
            "keep prod's logic; label the PR `full-refresh` or put `[full-refresh]` in a commit "
            "message to rebuild them in full): " + ", ".join(f"`{_short(u)}`" for u in cloned),
        ]
    elif build.get("full_refresh"):
        lines += ["", "Full refresh: incremental models rebuilt from all data."]
    lines += _impact_section(data.get("impact"), data.get("names") or {})
    lines += _diff_section(data["diffs"])
    return "\n".join(lines) + "\n"


def _pruned_section(build: dict[str, Any]) -> list[str]:
    """The descendants a pruned build left to prod, and why (dataops/cicd/prune.py)."""
    pruned = build.get("pruned") or {}
    compared = build.get("compared_with_prod") or {}
    lines = []
    if compared:
        lines += [
            "",
            "<details><summary>Modified models compared with prod (their descendants are "
            "rebuilt unless the data is identical)</summary>",
            "",
            *(f"- `{_short(uid)}`: {_cell(verdict)}" for uid, verdict in sorted(compared.items())),
            "",
            "</details>",
        ]
    if not pruned:
        return lines
    lines += [
        "",
        "Not rebuilt, data identical to prod: each modified parent built the same data as prod "
        "(same columns and types, rows and row hashes), so these descendants would be rebuilt "
        "from prod's own inputs; prod's copies stand and are not diffed.",
        "",
        "| model | modified parents with prod's data |",
        "|---|---|",
    ]
    for uid, parents in sorted(pruned.items()):
        lines.append(f"| `{_short(uid)}` | {', '.join(f'`{_short(p)}`' for p in parents)} |")
    return lines


def _impact_section(impact: lineage.Impact | None, names: dict[str, str]) -> list[str]:
    """Each changed column, the downstream columns it feeds, the marts and exposures it reaches."""
    if impact is None or not impact.changed:
        return []

    def column(c: tuple[str, str]) -> str:
        return f"`{names.get(c[0]) or _short(c[0])}.{c[1]}`"

    lines = [
        "",
        "### Column-level impact",
        "",
        "From the compiled SQL (sqlglot lineage): where each changed column flows.",
        "",
        "| changed column | downstream columns | marts | exposures |",
        "|---|---|---|---|",
    ]
    for start in impact.changed:
        reached = impact.reaches.get(start) or []
        shown = ", ".join(column(c) for c in reached[:15])
        if len(reached) > 15:
            shown += f" and {len(reached) - 15} more"
        lines.append(
            f"| {column(start)} | {shown or '–'} | "
            + (", ".join(f"`{m}`" for m in impact.marts.get(start) or []) or "–")
            + " | "
            + (", ".join(f"`{e}`" for e in impact.exposures.get(start) or []) or "–")
            + " |"
        )
    for model, error in sorted(impact.errors.items()):
        lines.append(f"\n- `{model}`: lineage not computed ({_cell(error)})")
    return lines


def _per_model_section(per_model: list[dict[str, Any]]) -> list[str]:
    if not per_model:
        return []
    lines = [
        "",
        "### Results per model",
        "",
        "| model | change | build | seconds | rows | tests passed | skipped | failed or warned |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for m in per_model:
        passed = sum(1 for _, status in m["tests"] if status in PASSED)
        skipped = sum(1 for _, status in m["tests"] if status == "skipped")
        others = [
            f"`{name}` {status}"
            for name, status in m["tests"]
            if status not in PASSED and status != "skipped"
        ]
        lines.append(
            f"| `{m['name']}` | {m['change']} | {m['status']} | {m['seconds']:.1f} | "
            f"{_n(m['rows'])} | {passed} | {skipped} | {_cell(', '.join(others) or '–')} |"
        )
    return lines


def _diff_section(diffs: list[ModelDiff]) -> list[str]:
    lines = ["", "### Data diff against prod", ""]
    if not diffs:
        lines.append("No model was built, so there is nothing to compare.")
        return lines
    lines += [
        "| model | change | key | rows prod → PR | added | removed | changed | columns |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for d in diffs:
        columns = []
        if d.columns_added and d.change != "new":
            columns.append(f"+{len(d.columns_added)}")
        if d.columns_removed:
            columns.append(f"−{len(d.columns_removed)}")
        if d.columns_retyped:
            columns.append(f"~{len(d.columns_retyped)}")
        key = (f"`{d.key}`" + (" ⚠️ not unique" if d.key_broken else "")) if d.key else "–"
        lines.append(
            f"| `{d.name}` | {d.change} | {key} | "
            f"{_n(d.prod_rows)} → {_n(d.pr_rows)} | {_n(d.added)} | {_n(d.removed)} | "
            f"{_n(d.changed)} | {' '.join(columns) or ('same' if d.change != 'new' else '–')} |"
        )
    for d in diffs:
        if d.identical and not d.note and not d.key_broken:
            continue
        lines += ["", f"#### `{d.name}` ({d.change})", ""]
        lines += _model_details(d)
    return lines


def _model_details(d: ModelDiff) -> list[str]:
    lines = []
    if d.change == "new":
        lines.append(f"- new model, {_n(d.pr_rows)} rows")
    else:
        if d.columns_added:
            lines.append("- columns added: " + ", ".join(f"`{c}`" for c in d.columns_added))
        if d.columns_removed:
            lines.append("- columns removed: " + ", ".join(f"`{c}`" for c in d.columns_removed))
        for column, before, after in d.columns_retyped:
            lines.append(f"- column `{column}` retyped: {before} → {after}")
    if d.key_broken:
        lines.append(
            f"- ⚠️ key `{d.key}` is not unique in the PR: {_n(d.pr_duplicates)} rows beyond "
            "one per key"
        )
    if d.note:
        lines.append(f"- note: {d.note}")
    if d.profiles:
        lines += [
            "",
            "Profile of the " + ("columns" if d.change == "new" else "added columns") + ":",
            "",
            "| column | type | rows | nulls | distinct | min | max |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for p in d.profiles:
            null_rate = f" ({p.nulls / p.rows:.0%})" if p.rows else ""
            lines.append(
                f"| `{p.column}` | {p.data_type} | {p.rows:,} | {p.nulls:,}{null_rate} | "
                f"{p.distinct:,} | {_cell(_clip(p.minimum))} | {_cell(_clip(p.maximum))} |"
            )
    if d.changed_values:
        lines += ["", "| column | rows with a changed value |", "|---|---:|"]
        for column, n in sorted(d.changed_values.items(), key=lambda kv: -kv[1]):
            lines.append(f"| `{column}` | {n:,} |")
    if d.samples:
        lines += [
            "",
            f"Sample of changed rows (first {len(d.samples)} by `{d.key}`), prod → PR:",
            "",
            f"| `{d.key}` | column | prod | PR |",
            "|---|---|---|---|",
        ]
        for key_value, pairs in d.samples:
            for column, (before, after) in pairs.items():
                lines.append(
                    f"| {_cell(key_value)} | `{column}` | {_cell(_clip(before))} | "
                    f"{_cell(_clip(after))} |"
                )
    return lines


def render(layout: Layout, number: int) -> str:
    return to_markdown(collect(layout, number))


REF = re.compile(r"""\{\{\s*ref\(\s*['"]([A-Za-z0-9_]+)['"]\s*\)\s*\}\}""")


def resolve_refs(
    sql: str, manifest: dict[str, Any], prod_manifest: dict[str, Any], built: set[str]
) -> tuple[str, str]:
    """The query twice: ``{{ ref('m') }}`` as the PR sees it (the PR's relation when the PR
    built ``m``, else prod's, as a deferred build reads it) and as prod has it."""
    by_name: dict[str, dict[str, str]] = {}
    for side, source in (("prod", prod_manifest), ("pr", manifest)):
        for uid, node in source.get("nodes", {}).items():
            if node.get("resource_type") in MODEL_TYPES and node.get("relation_name"):
                if side == "pr" and uid not in built:
                    continue
                by_name.setdefault(node["name"], {})[side] = node["relation_name"]
    names = REF.findall(sql)
    if not names:
        raise CicdError(
            "The query refers to no model: write models as {{ ref('fct_orders') }}, as in a dbt "
            "model, so each side reads its own version."
        )
    unknown = sorted({n for n in names if "prod" not in by_name.get(n, {})})
    if unknown:
        raise CicdError(
            f"Not in prod's manifest: {', '.join(unknown)} (a model new in this PR has no prod "
            "version to compare with; check the name with `dbt ls`)."
        )

    def render(side: str) -> str:
        return REF.sub(lambda m: by_name[m.group(1)].get(side) or by_name[m.group(1)]["prod"], sql)

    return render("pr"), render("prod")


def query_diff(
    layout: Layout, number: int, sql: str, key: list[str] | None = None
) -> tuple[ModelDiff, str, str]:
    """Run one query against the PR environment and against prod and compare the results: rows
    matched by ``key`` (added, removed, changed, per column, a sample), or whole rows without
    one. For what the report does not show: a filtered slice, an aggregate, a join."""
    check_prod_state(layout)
    target = layout.pr_target_dir(number)
    manifest = _load(target / "manifest.json", "PR build manifest", number)
    results = _load(target / "run_results.json", "PR build results", number)
    built = {
        r["unique_id"]
        for r in results["results"]
        if r["unique_id"].split(".")[0] in MODEL_TYPES and r["status"] in PASSED
    }
    pr_sql, prod_sql = resolve_refs(
        sql.strip().rstrip(";"), manifest, json.loads(layout.prod_manifest.read_text()), built
    )
    with (
        ci_lock(layout, f"dataops pr query-diff {number}"),
        connect(
            layout.ci_warehouse, read_only=True, attach={layout.prod_catalog: layout.prod_warehouse}
        ) as con,
    ):
        try:
            diff = diff_model(
                con, "query", "query", f"({pr_sql})", f"({prod_sql})", key or None, sample=True
            )
        except duckdb.Error as error:
            raise CicdError(f"The query failed: {strip_ansi(str(error))}") from None
    if not key:
        diff.note = "no --key: whole rows compared (added: only in the PR; removed: only in prod)"
    return diff, pr_sql, prod_sql


def query_diff_markdown(diff: ModelDiff, pr_sql: str, prod_sql: str) -> str:
    lines = [
        "### Query diff, PR against prod",
        "",
        "```sql",
        f"-- PR\n{pr_sql}\n-- prod\n{prod_sql}",
        "```",
        "",
        "| key | rows prod → PR | added | removed | changed |",
        "|---|---:|---:|---:|---:|",
        f"| {f'`{diff.key}`' if diff.key else 'whole rows'} | {_n(diff.prod_rows)} → "
        f"{_n(diff.pr_rows)} | {_n(diff.added)} | {_n(diff.removed)} | {_n(diff.changed)} |",
        "",
    ]
    lines += _model_details(diff)
    return "\n".join(lines) + "\n"
