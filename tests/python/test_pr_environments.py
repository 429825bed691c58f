"""Pull-request environments, for real: a git repository holding a copy of the project, a prod
deploy from main, branches that change the project, `dataops pr build|report|teardown` run as
subprocesses from the branch checkout, real DuckDB files, real dbt. Plus the pure parts (dbt
arguments, janitor rules, diff SQL on DuckDB, the GitHub calls against a local HTTP server).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import pytest

from dataops.cicd import github, janitor, report
from dataops.cicd import pr as pr_module
from dataops.cicd.diff import diff_model, keyed_diff_sql, primary_key, set_diff_sql
from dataops.cicd.environments import (
    CicdError,
    Layout,
    connect,
    list_environments,
    pr_schema,
    reset_environment,
    strip_ansi,
)
from dataops.cicd.pr import (
    changed_source_declarations,
    check_prod_state,
    pr_build_args,
    unchanged_relocated_sources,
)
from dataops.core.events import ensure_events, record_event
from dataops.core.settings import REPO_ROOT
from tests.python.conftest import platform_env
from tests.python.dbt_project_copy import PROJECT_PARTS

# ---------------------------------------------------------------- fast: pure parts, real DuckDB


def _layout(tmp_path: Path) -> Layout:
    return Layout(
        home=tmp_path,
        ci_warehouse=tmp_path / "warehouse_ci.duckdb",
        prod_warehouse=tmp_path / "warehouse_prod.duckdb",
    )


def test_pr_build_defers_everything_unselected_to_the_prod_manifest(tmp_path):
    layout = _layout(tmp_path)
    args = pr_build_args(layout, 12)
    assert args[0] == "build" and args[args.index("--target") + 1] == "ci"
    assert args[args.index("--select") + 1] == "state:modified+"
    assert "--defer" in args and "--favor-state" in args
    assert args[args.index("--state") + 1] == str(tmp_path / "prod-state")
    assert json.loads(args[args.index("--vars") + 1]) == {"dataops_raw_database": "warehouse_prod"}
    assert args[args.index("--target-path") + 1] == str(tmp_path / "pr" / "12" / "target")
    assert layout.dbt_environment(12)["DATAOPS_CI_SCHEMA"] == "pr_12"
    assert layout.dbt_environment(12)["DATAOPS_PROD_CATALOG"] == "warehouse_prod"


@pytest.mark.parametrize("bad", [0, -3, True, "7"])
def test_a_pr_number_must_be_a_positive_integer(bad):
    with pytest.raises(CicdError, match="positive integer"):
        pr_schema(bad)


def test_ci_and_prod_must_be_different_files_with_different_catalog_names(tmp_path):
    same_name = Layout(tmp_path, tmp_path / "ci" / "wh.duckdb", tmp_path / "prod" / "wh.duckdb")
    with pytest.raises(CicdError, match="same name"):
        same_name.check_separate()
    same_file = Layout(tmp_path, tmp_path / "wh.duckdb", tmp_path / "wh.duckdb")
    with pytest.raises(CicdError, match="never write prod"):
        same_file.check_separate()


def test_a_pr_build_without_a_prod_deploy_says_to_deploy_first(tmp_path):
    with pytest.raises(CicdError, match="Run `dataops deploy` on main first"):
        check_prod_state(_layout(tmp_path))


def test_janitor_rules_age_closed_prs_and_interrupted_builds():
    now = datetime(2026, 1, 10, 12, 0)
    envs = [
        janitor.PrEnvironment(1, "pr_1", now - timedelta(days=8), None),
        janitor.PrEnvironment(2, "pr_2", now - timedelta(hours=2), None),
        janitor.PrEnvironment(3, "pr_3", None, None),
        janitor.PrEnvironment(4, "pr_4", now - timedelta(hours=1), None),
    ]
    by_age = janitor.reasons_to_drop(envs, older_than=timedelta(days=7), open_prs=None, now=now)
    assert [e.number for e, _ in by_age] == [1, 3]
    by_state = janitor.reasons_to_drop(envs, older_than=None, open_prs={1, 2, 3}, now=now)
    assert [(e.number, r) for e, r in by_state] == [(4, "pull request is not open")]
    both = janitor.reasons_to_drop(envs, older_than=timedelta(days=7), open_prs={1, 2}, now=now)
    assert [e.number for e, _ in both] == [1, 3, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("36h", timedelta(hours=36)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_janitor_ages(text, expected):
    assert janitor.parse_age(text) == expected


def test_janitor_refuses_an_age_without_a_unit_and_a_sweep_without_a_rule(tmp_path):
    with pytest.raises(CicdError, match=r"m \(minutes\), h \(hours\)"):
        janitor.parse_age("7")
    with pytest.raises(CicdError, match="needs a rule"):
        janitor.sweep(_layout(tmp_path), older_than=None, open_prs=None)


def test_open_prs_come_from_the_command_line_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DATAOPS_OPEN_PRS", raising=False)
    assert janitor.open_prs_from(None, None, False) is None
    assert janitor.open_prs_from([3, 5], None, False) == {3, 5}
    pulls = tmp_path / "pulls.json"
    pulls.write_text(json.dumps([{"number": 8, "state": "open"}, 9]))
    assert janitor.open_prs_from(None, str(pulls), False) == {8, 9}
    pulls.write_text(json.dumps({"number": 8}))
    with pytest.raises(CicdError, match="expected a JSON list"):
        janitor.open_prs_from(None, str(pulls), False)
    monkeypatch.setenv("DATAOPS_OPEN_PRS", "4, 6 7")
    assert janitor.open_prs_from(None, None, False) == {4, 6, 7}


def test_the_janitor_drops_old_and_closed_environments_in_a_real_ci_file(tmp_path):
    layout = _layout(tmp_path)
    with connect(layout.ci_warehouse) as con:
        for number in (1, 2, 3):
            reset_environment(con, number, commit="abc")
            con.execute(f"create table pr_{number}.some_model as select 1 as id")
            layout.pr_target_dir(number).mkdir(parents=True)
        con.execute("update pr_1._pr_environment set created_at = created_at - interval 10 day")
        con.execute("create schema unrelated")
    dropped = janitor.sweep(layout, older_than=timedelta(days=7), open_prs={1, 2})
    assert sorted(env.number for env, _ in dropped) == [1, 3]
    with connect(layout.ci_warehouse, read_only=True) as con:
        assert [env.number for env in list_environments(con)] == [2]
        schemas = {r[0] for r in con.execute("select schema_name from duckdb_schemas()").fetchall()}
        assert "unrelated" in schemas and not {"pr_1", "pr_3"} & schemas
        events = con.execute(
            "select message from platform.events where event_type = 'cicd.pr_environment_dropped'"
        ).fetchall()
    assert len(events) == 2
    assert not layout.pr_dir(1).exists() and not layout.pr_dir(3).exists()
    assert layout.pr_dir(2).exists()


def test_the_janitor_removes_every_trace_rows_in_platform_tables_and_orphan_folders(tmp_path):
    layout = _layout(tmp_path)
    with connect(layout.ci_warehouse) as con:
        ensure_events(con)
        con.execute("create table platform.metric_history (dbt_invocation_id varchar, v double)")
        for number, invocation in ((5, "inv-5"), (6, "inv-6")):
            reset_environment(con, number, commit="abc")
            record_event(
                con,
                "cicd.pr_build_finished",
                details={"pr_number": number, "dbt_invocation_id": invocation},
            )
            record_event(con, "dbt.node_result", dbt_invocation_id=invocation)
            con.execute("insert into platform.metric_history values (?, 1)", [invocation])
        # a build that crashed before recording its invocation: found by its target folder
        record_event(
            con,
            "dbt.invocation_started",
            dbt_invocation_id="inv-5b",
            details={"target_path": str(layout.pr_target_dir(5))},
        )
        con.execute("insert into platform.metric_history values ('inv-5b', 2)")
        record_event(con, "dbt.node_result", dbt_invocation_id="prod-like")
    (layout.pr_dir(9) / "target").mkdir(parents=True)  # no schema: a refused build's folder
    (layout.pr_dir(6) / "target").mkdir(parents=True)
    dropped = janitor.sweep(layout, older_than=None, open_prs={6})
    assert sorted(env.number for env, _ in dropped) == [5, 9]
    assert not layout.pr_dir(9).exists() and layout.pr_dir(6).exists()
    with connect(layout.ci_warehouse, read_only=True) as con:
        invocations = {
            r[0] for r in con.execute("select dbt_invocation_id from platform.events").fetchall()
        }
        assert invocations == {None, "inv-6", "prod-like"}
        assert sorted(
            con.execute("select dbt_invocation_id from platform.metric_history").fetchall()
        ) == [("inv-6",)]
        cicd = con.execute(
            "select event_type, json_extract_string(details, '$.pr_number') from platform.events "
            "where event_type like 'cicd.%' order by 2"
        ).fetchall()
    assert cicd == [
        ("cicd.pr_environment_dropped", "5"),
        ("cicd.pr_build_finished", "6"),
        ("cicd.pr_environment_dropped", "9"),
    ]


def _age(path: Path, days: float) -> None:
    """Set the modification time of a folder, and of everything in it, ``days`` back."""
    when = time.time() - days * 86400
    for item in [*path.rglob("*"), path]:
        os.utime(item, (when, when))


_HOLD_LOCK = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_the_janitor_removes_shared_parses_unused_for_its_age_never_one_in_use(tmp_path):
    layout = _layout(tmp_path)
    root = tmp_path / "pr-parse"
    unused, recent, in_use, busy_file = (
        root / key for key in ("a" * 16, "b" * 16, "c" * 16, "d" * 16)
    )
    for folder in (unused, recent, in_use, busy_file, root / "notes"):
        (folder / "partial_parse.msgpack").parent.mkdir(parents=True)
        (folder / "partial_parse.msgpack").write_bytes(b"\x00" * 1000)
        (folder / "perf_info.json").write_text("{}")
        Path(str(folder) + ".lock").touch()
        _age(folder, 10)
    (recent / "perf_info.json").touch()  # dbt parsed in it just now: it is in use
    os.utime(busy_file, (time.time(), time.time()))  # a PR build touched the folder
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(in_use) + ".lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        listed = janitor.sweep_parses(layout, older_than=timedelta(days=7), dry_run=True)
        assert [folder for folder, _ in listed] == [unused, in_use]
        assert "last used" in listed[0][1] and unused.is_dir(), "a dry run removes nothing"
        removed = janitor.sweep_parses(layout, older_than=timedelta(days=7))
    finally:
        holder.communicate("", timeout=30)
    assert [folder for folder, _ in removed] == [unused]
    assert not unused.exists() and not Path(str(unused) + ".lock").exists()
    # kept: used within the age (a file or the folder), held by a parse, not a parse's folder
    assert all(f.is_dir() for f in (recent, in_use, busy_file, root / "notes"))
    assert Path(str(in_use) + ".lock").exists()
    # once released, the next run removes it; a week later, the others go too
    assert [f for f, _ in janitor.sweep_parses(layout, older_than=timedelta(days=7))] == [in_use]
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=8)
    assert len(janitor.sweep_parses(layout, older_than=timedelta(days=7), now=later)) == 2
    assert sorted(p.name for p in root.iterdir()) == ["notes", "notes.lock"]


def test_report_counts_models_not_hooks_names_tests_and_folds_whole_failures():
    manifest = {
        "nodes": {
            "model.p.fct_a": {"name": "fct_a", "fqn": ["p", "marts", "fct_a"]},
            "test.p.unique_fct_a_id.22a4f141e8": {
                "name": "unique_fct_a_id",
                "attached_node": "model.p.fct_a",
            },
        },
        "unit_tests": {
            "unit_test.p.fct_a.test_a": {
                "name": "test_a",
                "depends_on": {"nodes": ["model.p.fct_a"]},
            }
        },
    }
    long_message = "Compilation Error\n" + "x" * 400 + "\n| is_active | BOOLEAN | missing |"
    results = [
        {"unique_id": "operation.p.p-on-run-start-0", "status": "success"},
        {"unique_id": "operation.p.p-on-run-end-0", "status": "success"},
        {"unique_id": "model.p.fct_a", "status": "success", "execution_time": 1.0},
        {
            "unique_id": "test.p.unique_fct_a_id.22a4f141e8",
            "status": "fail",
            "message": "\x1b[31mGot 3 results\x1b[0m",
        },
        {"unique_id": "unit_test.p.fct_a.test_a", "status": "fail", "message": long_message},
    ]
    data = {
        "number": 3,
        "schema": "pr_3",
        "results": results,
        "read_from_prod": [],
        "diffs": [],
        "per_model": report.per_model_results(manifest, results, {"model.p.fct_a"}),
        "names": {r["unique_id"]: report.node_name(manifest, r["unique_id"]) for r in results},
        "build": {},
    }
    markdown = report.to_markdown(data)
    assert "| models | 1 | 0 | 0 | 0 |" in markdown and "| tests | 0 | 2 | 0 | 0 |" in markdown
    assert "`unique_fct_a_id` (test) fail: Got 3 results" in markdown
    assert "22a4f141e8" not in markdown and "\x1b" not in markdown
    assert "| is_active | BOOLEAN | missing |" in markdown and "x" * 400 in markdown
    assert (
        "| `fct_a` | modified | success | 1.0 | – | 0 | 0 | `unique_fct_a_id` fail, `test_a` fail |"
        in markdown
    )
    assert "Nothing to build" not in markdown
    hooks_only = dict(data, results=results[:2], per_model=[])
    assert "Nothing to build: no model, seed or source changed" in report.to_markdown(hooks_only)


def test_platform_tables_tests_stay_out_of_pr_builds_unless_their_declaration_changed():
    def manifest(database: str, tests: list[str]) -> dict:
        return {
            "sources": {
                "source.p.platform.events": {
                    "source_name": "platform",
                    "name": "events",
                    "relation_name": f'"{database}"."platform"."events"',
                    "columns": {"event_id": {"tests": tests}},
                },
                "source.p.shop.orders": {
                    "source_name": "shop",
                    "name": "orders",
                    "relation_name": '"warehouse_prod"."raw_shop"."orders"',
                },
            },
            "child_map": {"source.p.platform.events": ["test.p.x"], "source.p.shop.orders": ["m"]},
        }

    prod, pr = manifest("warehouse_prod", ["unique"]), manifest("warehouse_ci", ["unique"])
    assert unchanged_relocated_sources(pr, prod) == ["source:platform.events+,resource_type:test"]
    changed = manifest("warehouse_ci", ["unique", "not_null"])
    assert unchanged_relocated_sources(changed, prod) == []
    assert changed_source_declarations(changed, prod) == ["source:platform.events+"]


def test_dbt_colour_codes_are_stripped():
    assert strip_ansi("\x1b[32mactual\x1b[0m differs from \x1b[31mexpected\x1b[0m") == (
        "actual differs from expected"
    )


def _git_repo(tmp_path: Path) -> tuple[Path, Callable[..., str]]:
    """An empty folder for a git repository, and a function running git in it."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=a", "-c", "user.email=a@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    return repo, git


def test_a_branch_behind_prod_is_detected_from_git(tmp_path, monkeypatch):
    repo, git = _git_repo(tmp_path)
    git("init", "-q", "-b", "main")
    (repo / "models").mkdir()
    (repo / "models" / "a.sql").write_text("select 1 as id\n")
    git("add", "-A")
    git("commit", "-qm", "first")
    base = git("rev-parse", "HEAD")
    git("checkout", "-qb", "feature")
    (repo / "models" / "b.sql").write_text("select 2 as id\n")
    git("add", "-A")
    git("commit", "-qm", "feature")
    feature = git("rev-parse", "HEAD")
    git("checkout", "-q", "main")
    (repo / "models" / "a.sql").write_text("select 3 as id\n")
    git("commit", "-qam", "main moves on")
    deployed = git("rev-parse", "HEAD")
    monkeypatch.setattr(pr_module, "PROJECT_DIR", repo)
    behind = pr_module.behind_prod(deployed, feature)
    assert behind["known"] and behind["files"] == ["models/a.sql"]
    assert [c.split(" ", 1)[1] for c in behind["commits"]] == ["main moves on"]
    assert pr_module.behind_prod(base, feature) is None, "contains prod's commit"
    unknown = pr_module.behind_prod("0" * 40, feature)
    assert unknown == {"prod_commit": "0" * 40, "known": False, "commits": [], "files": []}
    assert "behind prod" in report.warnings({"build": {"behind_prod": behind}})[0]
    assert "fetch-depth: 0" in report.warnings({"build": {"behind_prod": unknown}})[0]


def test_a_full_refresh_is_asked_by_a_commit_marker_on_the_head_or_the_merged_branch(
    tmp_path, monkeypatch
):
    repo, git = _git_repo(tmp_path)
    git("init", "-q", "-b", "main")
    (repo / "a.sql").write_text("select 1 as id\n")
    git("add", "-A")
    git("commit", "-qm", "first")
    monkeypatch.setattr(pr_module, "PROJECT_DIR", repo)
    assert not pr_module.full_refresh_requested(git("rev-parse", "HEAD"))
    git("checkout", "-qb", "feature")
    (repo / "a.sql").write_text("select 2 as id\n")
    git("commit", "-qam", "Recompute old rows\n\n[full-refresh]")
    assert pr_module.full_refresh_requested(git("rev-parse", "HEAD"))
    # GitHub checks out a merge commit of the PR into main: the marker is on its second parent
    git("checkout", "-q", "main")
    (repo / "b.sql").write_text("select 3 as id\n")
    git("add", "-A")
    git("commit", "-qm", "main moves on")
    git("merge", "-q", "--no-ff", "--no-edit", "feature")
    assert pr_module.full_refresh_requested(git("rev-parse", "HEAD"))
    assert not pr_module.full_refresh_requested(None)
    args = pr_build_args(_layout(tmp_path), 3, full_refresh=True)
    assert args[-1] == "--full-refresh" and "--full-refresh" not in pr_build_args(
        _layout(tmp_path), 3
    )


def test_column_impact_follows_each_column_through_the_compiled_sql_to_marts_and_exposures():
    from dataops.cicd import lineage

    schema = {
        "wh": {
            "staging": {"stg_orders": {"order_id": "INTEGER", "amount": "DECIMAL", "note": "TEXT"}},
            "marts": {
                "fct_orders": {"order_id": "INTEGER", "amount_eur": "DECIMAL", "n": "BIGINT"},
                "fct_daily": {"total": "DECIMAL", "orders": "BIGINT"},
            },
        }
    }

    def model(name: str, folder: str, sql: str) -> dict:
        return {
            "name": name,
            "fqn": ["p", folder, name],
            "relation_name": f'"wh"."{folder}"."{name}"',
            "compiled_code": sql,
        }

    manifest = {
        "nodes": {
            "model.p.stg_orders": model("stg_orders", "staging", "select 1 as order_id"),
            "model.p.fct_orders": model(
                "fct_orders",
                "marts",
                "with orders as (select * from wh.staging.stg_orders) "
                "select order_id, amount * 1.1 as amount_eur, count(*) over () as n from orders",
            ),
            "model.p.fct_daily": model(
                "fct_daily",
                "marts",
                "select sum(amount_eur) as total, count(*) as orders from wh.marts.fct_orders",
            ),
        },
        "exposures": {
            "exposure.p.board": {"name": "board", "depends_on": {"nodes": ["model.p.fct_daily"]}}
        },
    }
    sources = lineage.column_sources(
        manifest["nodes"]["model.p.fct_orders"]["compiled_code"],
        lineage.MappingSchema(schema, dialect="duckdb", normalize=False),
    )
    assert sources == {
        "order_id": {("wh.staging.stg_orders", "order_id")},
        "amount_eur": {("wh.staging.stg_orders", "amount")},
        "n": set(),
    }
    changed = [("model.p.stg_orders", "amount"), ("model.p.stg_orders", "note")]
    found = lineage.impact(
        manifest, {}, changed, ["model.p.fct_orders", "model.p.fct_daily"], schema
    )
    amount = ("model.p.stg_orders", "amount")
    assert found.reaches[amount] == [
        ("model.p.fct_daily", "total"),
        ("model.p.fct_orders", "amount_eur"),
    ]
    assert found.marts[amount] == ["fct_daily", "fct_orders"]
    assert found.exposures[amount] == ["board"]
    note = ("model.p.stg_orders", "note")
    assert found.reaches[note] == [] and found.marts[note] == [] and found.exposures[note] == []
    broken = dict(manifest["nodes"]["model.p.fct_daily"], compiled_code="select from where")
    manifest["nodes"]["model.p.fct_daily"] = broken
    partial = lineage.impact(
        manifest, {}, changed, ["model.p.fct_orders", "model.p.fct_daily"], schema
    )
    assert "fct_daily" in partial.errors and partial.exposures[amount] == []


def test_keyed_diff_counts_added_removed_changed_rows_and_changed_values():
    con = duckdb.connect()
    con.execute(
        "create table prod_t as select * from (values (1, 'a', 10), (2, 'b', 20), "
        "(3, 'c', null), (4, 'd', 40)) as t(id, name, amount)"
    )
    con.execute(
        "create table pr_t as select * from (values (1, 'a', 10), (2, 'B', 21), "
        "(3, 'c', 30), (5, 'e', 50)) as t(id, name, amount)"
    )
    row = con.execute(keyed_diff_sql("pr_t", "prod_t", "id", ["name", "amount"])).fetchone()
    added, removed, changed, name_changes, amount_changes = row
    assert (added, removed, changed) == (1, 1, 2)
    assert (name_changes, amount_changes) == (1, 2), "null -> 30 counts as a change"
    assert con.execute(set_diff_sql("pr_t", "prod_t", ["id", "name", "amount"])).fetchone() == (
        3,
        3,
    )


def test_primary_key_from_tests_then_constraints_then_the_source_declaration():
    manifest = {
        "nodes": {
            "model.p.a": {"depends_on": {"nodes": []}},
            "test.p.u": {
                "resource_type": "test",
                "attached_node": "model.p.a",
                "column_name": "a_id",
                "test_metadata": {"name": "unique"},
            },
            "test.p.n": {
                "resource_type": "test",
                "attached_node": "model.p.a",
                "column_name": "a_id",
                "test_metadata": {"name": "not_null"},
            },
            "test.p.n2": {
                "resource_type": "test",
                "attached_node": "model.p.a",
                "column_name": "other",
                "test_metadata": {"name": "not_null"},
            },
            "model.p.b": {"constraints": [{"type": "primary_key", "columns": ["b_id"]}]},
            "model.p.stg": {"depends_on": {"nodes": ["source.p.s.t"]}},
            "model.p.none": {"depends_on": {"nodes": []}},
        },
        "sources": {"source.p.s.t": {"config": {"meta": {"primary_key": "t_id"}}}},
    }
    assert primary_key(manifest, "model.p.a") == "a_id"
    assert primary_key(manifest, "model.p.b") == "b_id"
    assert primary_key(manifest, "model.p.stg") == "t_id"
    assert primary_key(manifest, "model.p.none") is None


class _FakeGitHub(BaseHTTPRequestHandler):
    artifact: bytes = b""
    comments: list[dict] = []
    calls: list[tuple[str, str]] = []

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.calls.append(("GET", self.path))
        host = f"http://127.0.0.1:{self.server.server_port}"
        if self.path.startswith("/repos/acme/shop/actions/workflows/deploy.yml/runs"):
            assert "branch=main" in self.path and "status=success" in self.path
            self._reply(200, {"workflow_runs": [{"id": 11, "head_sha": "f00d" * 10}]})
        elif self.path.startswith("/repos/acme/shop/actions/runs/11/artifacts"):
            self._reply(
                200,
                {
                    "artifacts": [
                        {"name": "pr-3-report", "archive_download_url": f"{host}/dl/2"},
                        {
                            "name": "prod-manifest-and-docs-f00d",
                            "archive_download_url": f"{host}/dl/1",
                        },
                    ]
                },
            )
        elif self.path == "/dl/1":  # GitHub redirects to signed storage
            assert self.headers["Authorization"] == "Bearer t0ken"
            self.send_response(302)
            self.send_header("Location", f"{host}/blob/1")
            self.end_headers()
        elif self.path == "/blob/1":
            assert self.headers.get("Authorization") is None, "the token never leaves GitHub"
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.end_headers()
            self.wfile.write(self.artifact)
        elif self.path.startswith("/repos/acme/shop/pulls"):
            self._reply(200, [{"number": 4}, {"number": 9}])
        else:
            self._reply(200, self.comments)

    def _body(self) -> dict:
        assert self.headers["Authorization"] == "Bearer t0ken"
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_POST(self) -> None:  # noqa: N802
        self.calls.append(("POST", self.path))
        comment = {"id": len(self.comments) + 1, "body": self._body()["body"], "html_url": "u"}
        self.comments.append(comment)
        self._reply(201, comment)

    def do_PATCH(self) -> None:  # noqa: N802
        self.calls.append(("PATCH", self.path))
        comment_id = int(self.path.rsplit("/", 1)[-1])
        comment = next(c for c in self.comments if c["id"] == comment_id)
        comment["body"] = self._body()["body"]
        self._reply(200, comment)

    def log_message(self, *args: object) -> None:
        pass


def test_the_report_is_one_pr_comment_created_then_updated(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
        monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
        _FakeGitHub.comments.append({"id": 1, "body": "LGTM from a human"})
        github.upsert_comment(7, "first report")
        github.upsert_comment(7, "second report")
        assert [c["body"] for c in _FakeGitHub.comments] == [
            "LGTM from a human",
            f"{github.REPORT_MARKER}\nsecond report",
        ]
        assert [m for m, _ in _FakeGitHub.calls] == ["GET", "POST", "GET", "PATCH"]
        assert github.open_pull_requests() == {4, 9}
    finally:
        server.shutdown()


def test_pr_jobs_download_the_prod_state_the_deploy_workflow_published(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"nodes": {}, "metadata": {"v": 2}}))
        archive.writestr("deploy.json", json.dumps({"commit": "f00d" * 10}))
        archive.writestr("docs/index.html", "<html></html>")
    _FakeGitHub.artifact = buffer.getvalue()
    server = HTTPServer(("127.0.0.1", 0), _FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = tmp_path / "prod-state"
    state.mkdir()
    (state / "manifest.json").write_text("{}")  # the runner's stale copy
    (state / "stale.json").write_text("{}")
    try:
        monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
        monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
        artifact = github.download_prod_state(
            "deploy.yml", "main", "prod-manifest-and-docs-", state
        )
    finally:
        server.shutdown()
    assert artifact["name"] == "prod-manifest-and-docs-f00d"
    assert json.loads((state / "manifest.json").read_text())["metadata"] == {"v": 2}
    assert json.loads((state / "deploy.json").read_text())["commit"] == "f00d" * 10
    assert (state / "docs" / "index.html").is_file() and not (state / "stale.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod-state"], "no staging left"


def test_github_calls_without_a_token_say_what_to_set(monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
    with pytest.raises(CicdError, match="Set GITHUB_TOKEN"):
        github.upsert_comment(1, "x")


WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def _validate_workflows(*paths: Path) -> subprocess.CompletedProcess[str]:
    """GitHub's workflow JSON schema (vendored in check-jsonschema: no network)."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflows_are_valid_github_workflows(tmp_path):
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert len(workflows) >= 4
    result = _validate_workflows(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"  # the validator does reject a wrong workflow
    broken.write_text("on: push\njobs:\n  x:\n    steps:\n      - run: make test\n")
    rejected = _validate_workflows(broken)
    assert rejected.returncode != 0 and "runs-on" in rejected.stdout + rejected.stderr


OURS = ("pull-request.yml", "pull-request-closed.yml", "janitor.yml")


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "actionlint"),
            "-config-file",
            str(REPO_ROOT / ".github" / "actionlint.yaml"),
            "-no-color",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_actionlint_passes_the_pull_request_workflows_and_catches_a_broken_one(tmp_path):
    result = _actionlint(*(WORKFLOWS / name for name in OURS))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"  # a job graph and an expression actionlint must refuse
    broken.write_text(
        "on: push\njobs:\n  x:\n    needs: [lint]\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ steps.python.outputs.python-version }}\n"
    )
    rejected = _actionlint(broken).stdout
    assert 'job "x" needs job "lint" which does not exist' in rejected, rejected
    assert 'property "python" is not defined' in rejected, rejected


def test_the_pr_environment_waits_for_lint_and_fast_tests_and_shares_one_warehouse_lock():
    pull_request = _workflow("pull-request.yml")
    jobs = pull_request["jobs"]
    env_job = jobs["pr-environment"]
    assert env_job["needs"] == ["lint", "fast-tests"], "not the whole suite"
    assert any(s.get("run") == "make test-fast" for s in jobs["fast-tests"]["steps"])
    assert any(s.get("run") == "make test" for s in jobs["tests"]["steps"]), "still run in full"
    # one concurrency group for every job writing the CI file, whichever runner it lands on
    warehouse_jobs = [
        env_job,
        _workflow("pull-request-closed.yml")["jobs"]["teardown"],
        _workflow("janitor.yml")["jobs"]["janitor"],
    ]
    for job in warehouse_jobs:
        assert job["runs-on"] == ["self-hosted", "dataops-warehouse"]
        assert job["concurrency"] == {"group": "dataops-warehouse-ci", "cancel-in-progress": False}
        checkout = next(
            s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")
        )
        assert checkout["with"]["clean"] is False, "the runner's .venv survives between jobs"
    # prod state comes from the deploy workflow's artifact, before the build reads it
    runs = [s.get("run", "") for s in env_job["steps"]]
    fetch = next(i for i, r in enumerate(runs) if r.startswith(".venv/bin/dataops pr fetch-state"))
    build = next(i for i, r in enumerate(runs) if r.startswith(".venv/bin/dataops pr build"))
    assert fetch < build and "--workflow deploy.yml" in runs[fetch]
    assert env_job["permissions"]["actions"] == "read", "to list and download artifacts"
    checkout = next(
        s for s in env_job["steps"] if s.get("uses", "").startswith("actions/checkout@")
    )
    assert checkout["with"]["fetch-depth"] == 0, "the behind-prod check needs history"
    assert "full-refresh" in runs[build] and "--full-refresh" in runs[build]
    # caches on hosted runners: .venv keyed on the full Python version, uv's download cache kept
    for name in ("lint", "fast-tests", "tests"):
        steps = jobs[name]["steps"]
        python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
        assert python["id"] == "python"
        caches = {
            s["with"]["path"]: s["with"]["key"]
            for s in steps
            if s.get("uses", "").startswith("actions/cache@")
        }
        assert "${{ steps.python.outputs.python-version }}" in caches[".venv"]
        assert "hashFiles('requirements.lock'" in caches[".venv"]
        assert "~/.cache/uv" in caches


def _workflow(name: str) -> dict:
    import yaml

    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as true
    return document


def _runs(document: dict) -> list[str]:
    return [
        step["run"] for job in document["jobs"].values() for step in job["steps"] if "run" in step
    ]


def test_the_workflows_only_call_the_projects_commands_at_the_right_events():
    for path in WORKFLOWS.glob("*.yml"):
        for command in _runs(_workflow(path.name)):
            assert command.startswith(("make ", "sudo make ", ".venv/bin/dataops ")), (
                f"{path.name}: {command!r} is not a project command (make or dataops)"
            )
    pull_request = _workflow("pull-request.yml")
    assert pull_request["on"]["pull_request"]["types"] == ["opened", "synchronize", "reopened"]
    commands = _runs(pull_request)
    for expected in (
        "make install",
        "make lint",
        "make test",
        ".venv/bin/dataops pr build",
        ".venv/bin/dataops pr report",
    ):
        assert any(c.startswith(expected) for c in commands), expected
    assert any("--post" in c for c in commands), "the report goes to the one PR comment"
    assert pull_request["jobs"]["pr-environment"]["permissions"]["pull-requests"] == "write"
    closed = _workflow("pull-request-closed.yml")
    assert closed["on"]["pull_request"]["types"] == ["closed"]
    assert any(c.startswith(".venv/bin/dataops pr teardown") for c in _runs(closed))
    janitor_flow = _workflow("janitor.yml")
    assert janitor_flow["on"]["schedule"]
    assert any(c.startswith(".venv/bin/dataops janitor --older-than") for c in _runs(janitor_flow))
    deploy_flow = _workflow("deploy.yml")
    assert deploy_flow["on"]["push"]["branches"] == ["main"]
    assert ".venv/bin/dataops deploy --ingest" in _runs(deploy_flow)
    upload = next(
        s
        for s in deploy_flow["jobs"]["deploy"]["steps"]
        if s.get("uses", "").startswith("actions/upload-artifact@")
    )
    for published in ("manifest.json", "run_results.json", "deploy.json", "docs/"):
        assert f"prod-state/{published}" in upload["with"]["path"], published
    assert "prod-state/docs/" in upload["with"]["path"]


# ---------------------------------------------------------------- slow: git, deploy, PR builds


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Checkout:
    """A git repository holding a copy of the project, and a platform home for its commands."""

    def __init__(self, repo: Path, home: Path, landing: Path) -> None:
        self.repo, self.home, self.landing = repo, home, landing

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=Analyst", "-c", "user.email=analyst@example.com", *args],
            cwd=self.repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = platform_env(self.home)
        env["DATAOPS_LANDING"] = str(self.landing)
        for key in ("GITHUB_EVENT_PATH", "GITHUB_TOKEN", "DATAOPS_OPEN_PRS"):
            env.pop(key, None)
        env.update(extra or {})
        return env

    def dataops(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The checkout's own `dataops` (its dataops package and dbt project)."""
        result = subprocess.run(
            [sys.executable, "-m", "dataops.cli", *args],
            cwd=cwd or self.repo,
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"dataops {' '.join(args)} exited {result.returncode}\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.repo / relative
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} not found once in {relative}"
        path.write_text(text.replace(old, new))

    def branch(self, name: str) -> None:
        self.git("checkout", "-q", "main")
        self.git("checkout", "-q", "-b", name)

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def commit_change(self, relative: str, old: str, new: str) -> None:
        self.edit(relative, old, new)
        self.commit(f"Change {relative}")

    @property
    def prod(self) -> Path:
        return self.home / "warehouse_prod.duckdb"

    @property
    def ci(self) -> Path:
        return self.home / "warehouse_ci.duckdb"

    def ci_query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.ci), read_only=True) as con:
            return con.execute(sql).fetchall()

    def run_results(self, number: int) -> dict[str, dict]:
        path = self.home / "pr" / str(number) / "target" / "run_results.json"
        return {r["unique_id"]: r for r in json.loads(path.read_text())["results"]}

    def copy(self, destination: Path) -> Checkout:
        """An independent copy (repository with its history, home with prod deployed), for a
        test that deploys prod again: the shared checkout's prod stays as the others read it."""
        shutil.copytree(self.repo, destination / "repo", symlinks=True)
        shutil.copytree(
            self.home, destination / "home", ignore=shutil.ignore_patterns("pr", "*.lock*")
        )
        return Checkout(destination / "repo", destination / "home", self.landing)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory, sample_landing: Path) -> Checkout:
    """main committed and deployed to prod (small sample), as CI on a push to main would."""
    root = tmp_path_factory.mktemp("pr_envs")
    repo = root / "repo"
    repo.mkdir()
    for part in (*PROJECT_PARTS, "dataops"):
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / part)
    (repo / ".gitignore").write_text("target/\nlogs/\n*.duckdb\n__pycache__/\n")
    co = Checkout(repo, root / "home", sample_landing)
    co.git("init", "-q", "-b", "main")
    co.commit("the project as on main")
    co.dataops("--target", "prod", "ingest")
    deployed = co.dataops("deploy")
    assert "Published" in deployed.stdout, deployed.stdout
    return co


@pytest.mark.slow
def test_deploy_publishes_the_manifest_pr_builds_defer_to_and_the_docs(checkout):
    state = checkout.home / "prod-state"
    manifest = json.loads((state / "manifest.json").read_text())
    assert (
        manifest["nodes"]["model.dataops.fct_orders"]["relation_name"]
        == '"warehouse_prod"."marts"."fct_orders"'
    )
    deploy = json.loads((state / "deploy.json").read_text())
    assert deploy["commit"] == checkout.git("rev-parse", "HEAD")
    assert deploy["release"], "the release PR builds compare against"
    results = json.loads((state / "run_results.json").read_text())["results"]
    assert results and not [r for r in results if r["status"] in ("error", "fail")]
    assert (state / "docs" / "index.html").is_file() and (state / "docs" / "catalog.json").is_file()


@pytest.mark.slow
def test_a_pr_builds_only_its_changes_reads_the_rest_from_prod_and_leaves_no_trace(checkout):
    co = checkout
    co.branch("round-prices")
    # One staging column changed through its declaration (then the staging YAML re-synced) ...
    co.edit(
        "models/staging/shop/_shop__sources.yml",
        "data_type: decimal(18, 2)\n            description: Current list price in EUR.",
        "data_type: decimal(18, 0)\n            description: Current list price in EUR.",
    )
    co.dataops("sources", "sync")
    # ... and one mart.
    co.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "sum(case when is_fulfillable then order_amount else 0 end) as gross_revenue",
        "sum(order_amount) as gross_revenue",
    )
    co.commit("Round product prices to whole euros; count every order in gross revenue")
    prod_before = _sha256(co.prod)

    built = co.dataops("pr", "build", "41")
    assert "PR #41: built" in built.stdout, built.stdout
    results = co.run_results(41)
    models = {uid for uid in results if uid.startswith("model.")}
    # the two changes and their children, nothing else
    assert models == {
        "model.dataops.stg_shop__products",
        "model.dataops.fct_order_items",
        "model.dataops.dim_products",
        "model.dataops.fct_daily_revenue",
    }
    assert all(
        r["status"] in ("success", "pass")
        for uid, r in results.items()
        if not uid.startswith("exposure.")  # dbt lists the exposures downstream as no-op
    )
    assert any(uid.startswith("test.") for uid in results)
    # unchanged upstream models and raw data were read from prod
    revenue_sql = results["model.dataops.fct_daily_revenue"]["compiled_code"]
    assert '"warehouse_prod"."marts"."fct_orders"' in revenue_sql
    assert '"warehouse_prod"."marts"."dim_customers"' in revenue_sql
    products_sql = results["model.dataops.stg_shop__products"]["compiled_code"]
    assert '"warehouse_prod"."raw_shop"."products"' in products_sql
    # the PR environment is one schema of the CI file; prod is byte-identical
    ci_schemas = {
        r[0]
        for r in co.ci_query(
            "select schema_name from duckdb_schemas() where database_name = 'warehouse_ci' "
            "and not internal"
        )
    }
    assert ci_schemas - {"main", "platform"} == {"pr_41"}
    tables = {
        r[0]
        for r in co.ci_query(
            "select table_name from duckdb_tables() where schema_name = 'pr_41' union all "
            "select view_name from duckdb_views() where schema_name = 'pr_41'"
        )
    }
    assert tables >= {
        "_pr_environment",
        "stg_shop__products",
        "fct_order_items",
        "dim_products",
        "fct_daily_revenue",
    }
    manifest = json.loads((co.home / "pr" / "41" / "target" / "manifest.json").read_text())
    unchanged = {
        n["alias"]
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] in ("model", "seed") and uid not in models
    }
    assert "fct_orders" in unchanged and not tables & unchanged, "no copy of an unchanged model"
    assert _sha256(co.prod) == prod_before
    # prod's raw tables are read, never measured: prod's own builds monitor them
    invocation = json.loads((co.home / "pr" / "41" / "build.json").read_text())["dbt_invocation_id"]
    measured = co.ci_query(
        "select node_id, count(*) from platform.metric_history "
        f"where dbt_invocation_id = '{invocation}' group by 1 order by 1"
    )
    assert measured and not [n for n, _ in measured if n.startswith("source.")], measured

    report = co.dataops("pr", "report", "41").stdout
    assert report.startswith(github.REPORT_MARKER) and "✅" in report
    assert (co.home / "pr" / "41" / "report.md").read_text() in report
    lines = {
        line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| `")
    }
    products = lines["`stg_shop__products`"]
    assert "| modified | `product_id` |" in products and "| ~1 |" in products
    assert "column `unit_price` retyped: DECIMAL(18,2) → DECIMAL(18,0)" in report
    revenue = lines["`fct_daily_revenue`"]
    assert "| modified | `revenue_date` |" in revenue
    cells = [c.strip() for c in revenue.split("|")]
    prod_rows, pr_rows = cells[4].split(" → ")
    assert prod_rows == pr_rows and cells[5:7] == ["0", "0"] and int(cells[7]) > 0
    assert "| `gross_revenue` |" in report and "| `net_revenue` |" in report
    assert "| `dim_products` | downstream | `product_id` |" in report
    assert "Read from prod (unchanged upstream):" in report and "`fct_orders`" in report
    # column-level impact from the compiled SQL, down to marts and declared exposures
    impact = {
        line.split("|")[1].strip(): line
        for line in report.split("### Column-level impact")[1].split("###")[0].splitlines()
        if line.startswith("| `")
    }
    price = impact["`stg_shop__products.unit_price`"]
    assert "`dim_products.unit_price`" in price and "`product_catalogue_sync`" in price
    gross = impact["`fct_daily_revenue.gross_revenue`"]
    assert "| `fct_daily_revenue` | `revenue_dashboard` |" in gross
    # the incremental model downstream was cloned from prod, not rebuilt from raw data
    assert "Incremental models cloned from prod" in report and "`fct_order_items`" in report
    # a sample of changed rows of the mart, prod value then PR value
    assert re.search(r"\| [0-9-]+ \| `gross_revenue` \| [0-9.]+ \| [0-9.]+ \|", report), report
    assert _sha256(co.prod) == prod_before
    # beyond the report: one query on both sides, unbuilt refs read from prod
    query = co.dataops(
        "pr",
        "query-diff",
        "41",
        "select revenue_date, gross_revenue, order_count from {{ ref('fct_daily_revenue') }}",
        "--key",
        "revenue_date",
    ).stdout
    assert '"warehouse_ci"."pr_41"."fct_daily_revenue"' in query
    assert re.search(r"\| [0-9-]+ \| `gross_revenue` \| [0-9.]+ \| [0-9.]+ \|", query), query
    assert "`order_count`" not in query, "unchanged column: no changed values"

    log = co.home / "logs" / "dbt.log"
    logged = log.stat().st_size
    rebuilt = co.dataops("pr", "build", "41")  # a second push: the environment starts empty
    assert "PR #41: built 4 models" in rebuilt.stdout
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(logged)
        second = handle.read()
    assert "Partial parsing enabled" in second and "Starting full parse" not in second, (
        "the same PR's next push reuses dbt's parse"
    )

    co.dataops("pr", "teardown", "41")
    assert not co.ci_query("select * from duckdb_schemas() where schema_name = 'pr_41'")
    assert not co.ci_query("select * from duckdb_tables() where schema_name = 'pr_41'")
    assert not (co.home / "pr" / "41").exists()
    assert _sha256(co.prod) == prod_before
    again = co.dataops("pr", "teardown", "41")
    assert "no environment to drop" in again.stdout


@pytest.mark.slow
def test_a_pr_with_failures_names_them_in_full_and_warns_of_a_fan_out(checkout):
    co = checkout
    co.branch("duplicate-days")
    # a fan-out: the day key of fct_daily_revenue stops being unique (its unique test fails) ...
    co.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "    select revenue_date from orders_by_day\n    union\n",
        "    select revenue_date from orders_by_day\n    union all\n",
    )
    # ... a contract broken (a column missing) and a unit test broken
    co.edit("models/marts/core/dim_products.sql", "        products.is_active,\n", "")
    co.edit(
        "models/marts/marketing/fct_session_conversions.sql",
        "attributed_orders.session_id is not null as is_converted",
        "true as is_converted",
    )
    co.commit("Keep every day from both sides; drop is_active; every session converts")
    result = co.dataops("pr", "build", "42", check=False, env={"DBT_USE_COLORS": "true"})
    assert result.returncode == 1, result.stdout
    assert "FAILED test unique_fct_daily_revenue_revenue_date: fail" in result.stdout, result.stdout
    record = (co.home / "pr" / "42" / "build.json").read_text()
    assert "\\u001b[" not in record and "is_active" in record, "plain text, contract row kept"
    report = co.dataops("pr", "report", "42").stdout
    assert "\x1b[" not in report
    assert "❌" in report and "3 node(s) failed" in report
    # hooks are not models: 3 models built (fct_daily_revenue; dim_products failed, the
    # session mart skipped after its unit test)
    assert "| models | 1 | 1 | 0 | 1 |" in report, report
    # tests by the names dbt gives them, never a hash
    assert "`unique_fct_daily_revenue_revenue_date` (test) fail" in report
    assert "`test_session_conversions_attribute_to_latest_open_session` (unit_test) fail" in report
    assert not re.search(r"`[0-9a-f]{10}`", report), "a generic test shown as its hash"
    # the whole contract failure, folded: the row naming the missing column is there
    assert "| is_active   |                 | BOOLEAN       | missing in definition |" in report
    assert "<summary>`dim_products` (model) error: Compilation Error in model" in report
    # per model results
    per_model = r"\| `fct_daily_revenue` \| modified \| success \| [0-9.]+ \| 13 \| 3 \| 0 \|"
    assert re.search(per_model, report), report
    assert "`unique_fct_daily_revenue_revenue_date` fail" in report
    # the fan-out is called out, not shown as changed rows only
    assert "`fct_daily_revenue`: key `revenue_date` is no longer unique" in report
    assert "| `fct_daily_revenue` | modified | `revenue_date` ⚠️ not unique |" in report
    co.dataops("pr", "teardown", "42")


@pytest.mark.slow
def test_a_pr_that_changes_nothing_has_nothing_to_build(checkout):
    co = checkout
    co.branch("nothing")
    (co.repo / "NOTES.md").write_text("A pull request that touches no model.\n")
    co.commit("Notes only")
    built = co.dataops("pr", "build", "45")
    assert "built 0 models into pr_45, 0 tests passed, 0 failed (0 nodes" in built.stdout
    assert "Nothing to build" in built.stdout
    results = co.run_results(45)
    assert not [uid for uid in results if not uid.startswith("operation.")], results.keys()
    report = co.dataops("pr", "report", "45").stdout
    assert "| models | 0 | 0 | 0 | 0 |" in report and "| tests | 0 | 0 | 0 | 0 |" in report
    assert "Nothing to build: no model, seed or source changed against prod." in report
    assert "This branch is behind prod" not in report
    co.dataops("pr", "teardown", "45")


INT_PAYMENTS = "models/intermediate/finance/int_payments_pivoted_to_orders.sql"
PAYMENTS_DESCENDANTS = {
    "model.dataops.fct_orders",
    "model.dataops.dim_customers",
    "model.dataops.fct_daily_revenue",
    "model.dataops.fct_session_conversions",
}


def _build_record(co: Checkout, number: int) -> dict:
    return json.loads((co.home / "pr" / str(number) / "build.json").read_text())


def _change_payments(co: Checkout, branch: str, old: str, new: str) -> None:
    """A branch from main changing one line of the payments intermediate model."""
    co.branch(branch)
    co.commit_change(INT_PAYMENTS, old, new)


def _pr_tables(co: Checkout, number: int) -> set[str]:
    return {
        r[0]
        for r in co.ci_query(
            f"select table_name from duckdb_tables() where schema_name = 'pr_{number}'"
        )
    } - {"_pr_environment"}


@pytest.mark.slow
def test_a_change_that_keeps_its_data_leaves_its_descendants_to_prod(checkout):
    co = checkout
    _change_payments(co, "comment-only", "\nfinal as (", "\nfinal as (\n    -- same words\n")
    prod_before = _sha256(co.prod)
    built = co.dataops("pr", "build", "51")
    assert "PR #51: built 1 models" in built.stdout, built.stdout
    assert "fct_orders: not rebuilt, data identical to prod" in built.stdout
    results = co.run_results(51)
    assert {uid for uid in results if uid.startswith("model.")} == {
        "model.dataops.int_payments_pivoted_to_orders"
    }
    tests = [r["status"] for uid, r in results.items() if uid.startswith(("test.", "unit_test."))]
    assert tests and set(tests) == {"pass"}, "the modified model's own tests ran"
    record = _build_record(co, 51)
    assert record["compared_with_prod"] == {
        "model.dataops.int_payments_pivoted_to_orders": "identical"
    }
    assert record["pruned"] == {
        uid: ["model.dataops.int_payments_pivoted_to_orders"] for uid in PAYMENTS_DESCENDANTS
    }
    assert _pr_tables(co, 51) == {"int_payments_pivoted_to_orders"}, "no descendant rebuilt"
    report = co.dataops("pr", "report", "51").stdout
    assert "✅" in report and "Not rebuilt, data identical to prod" in report
    assert "| `fct_session_conversions` | `int_payments_pivoted_to_orders` |" in report
    assert "- `int_payments_pivoted_to_orders`: identical" in report
    assert _sha256(co.prod) == prod_before
    co.dataops("pr", "teardown", "51")


@pytest.mark.slow
def test_a_change_of_data_rebuilds_its_descendants_from_the_pr_schema(checkout):
    co = checkout
    _change_payments(
        co,
        "paid-to-the-minute",
        "then created_at end) as first_paid_at",
        "then date_trunc('minute', created_at) end) as first_paid_at",
    )
    prod_before = _sha256(co.prod)
    built = co.dataops("pr", "build", "52")
    assert "PR #52: built 5 models" in built.stdout, built.stdout
    assert "not rebuilt" not in built.stdout
    results = co.run_results(52)
    models = {uid for uid in results if uid.startswith("model.")}
    assert models == {"model.dataops.int_payments_pivoted_to_orders", *PAYMENTS_DESCENDANTS}
    assert all(
        r["status"] in ("success", "pass")
        for uid, r in results.items()
        if not uid.startswith("exposure.")
    )
    record = _build_record(co, 52)
    verdict = record["compared_with_prod"]["model.dataops.int_payments_pivoted_to_orders"]
    assert verdict.startswith("row values differ from prod") and record["pruned"] == {}
    assert len(record["dbt_invocation_ids"]) == 2
    # step 2 reads the changed model from the PR schema, everything else from prod
    orders_sql = results["model.dataops.fct_orders"]["compiled_code"]
    assert '"warehouse_ci"."pr_52"."int_payments_pivoted_to_orders"' in orders_sql
    assert '"warehouse_prod"."intermediate"."int_order_items_summed_to_orders"' in orders_sql
    assert '"warehouse_prod"."staging"."stg_shop__orders"' in orders_sql
    revenue_sql = results["model.dataops.fct_daily_revenue"]["compiled_code"]
    assert '"warehouse_ci"."pr_52"."fct_orders"' in revenue_sql
    assert '"warehouse_ci"."pr_52"."dim_customers"' in revenue_sql
    # the data is the change's: first_paid_at to the minute, every other column as prod's
    with duckdb.connect(str(co.ci), read_only=True) as con:
        con.execute(f"attach '{co.prod}' as warehouse_prod (read_only)")
        pr_orders, prod_orders = "pr_52.fct_orders", "warehouse_prod.marts.fct_orders"
        changed, wrong, others = con.execute(
            "select count(*) filter (where pr.first_paid_at is distinct from prod.first_paid_at),"
            " count(*) filter (where pr.first_paid_at is distinct from"
            "   date_trunc('minute', prod.first_paid_at)),"
            f" (select count(*) from (select * exclude (first_paid_at) from {pr_orders}"
            f"   except all select * exclude (first_paid_at) from {prod_orders}))"
            f" from {pr_orders} as pr full join {prod_orders} as prod using (order_id)"
        ).fetchone()
    assert changed > 0 and wrong == 0 and others == 0, (changed, wrong, others)
    assert _sha256(co.prod) == prod_before
    co.dataops("pr", "teardown", "52")
    # both dbt invocations' rows leave with the environment
    invocations = ", ".join(f"'{i}'" for i in record["dbt_invocation_ids"])
    assert co.ci_query(
        f"select count(*) from platform.events where dbt_invocation_id in ({invocations})"
    ) == [(0,)]


@pytest.mark.slow
def test_a_nondeterministic_model_is_never_judged_identical_to_prod(checkout):
    co = checkout
    # the same rows today, but current_date makes equality with prod no evidence
    _change_payments(
        co,
        "paid-before-today",
        "    from payments\n    group by 1",
        "    from payments\n    where current_date > date '2000-01-01'\n    group by 1",
    )
    built = co.dataops("pr", "build", "53")
    assert "PR #53: built 5 models" in built.stdout, built.stdout
    record = _build_record(co, 53)
    verdict = record["compared_with_prod"]["model.dataops.int_payments_pivoted_to_orders"]
    assert verdict == "nondeterministic SQL: CURRENT_DATE" and record["pruned"] == {}
    assert _pr_tables(co, 53) >= {"fct_orders", "fct_session_conversions"}
    co.dataops("pr", "teardown", "53")


@pytest.mark.slow
def test_a_branch_behind_prod_is_warned_and_merging_main_clears_it(checkout, tmp_path):
    co = checkout.copy(tmp_path)  # this test deploys prod again
    co.branch("daily-average")
    # the branch adds a column to a mart (a contract: SQL and YAML) ...
    co.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "        count(distinct customer_id) as customer_count\n",
        "        count(distinct customer_id) as customer_count,\n"
        "        avg(order_amount) as average_order_amount\n",
    )
    co.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "        ) as net_revenue\n",
        "        ) as net_revenue,\n"
        "        cast(orders_by_day.average_order_amount as decimal(18, 2))"
        " as average_order_amount\n",
    )
    co.edit(
        "models/marts/finance/_finance__models.yml",
        "        description: Gross revenue minus refunds.\n",
        "        description: Gross revenue minus refunds.\n"
        "      - name: average_order_amount\n"
        "        data_type: decimal(18, 2)\n"
        "        description: Mean amount of the day's orders (null on a day without orders).\n",
    )
    co.commit("Daily revenue: the average order amount")
    # ... while main moves on and is deployed without it
    co.git("checkout", "-q", "main")
    co.edit(
        "models/marts/core/dim_products.sql",
        "        products.product_name,\n",
        "        upper(products.product_name) as product_name,\n",
    )
    co.commit("Product names in capitals")
    deployed = co.dataops("deploy", "--no-docs")
    assert "Published" in deployed.stdout, deployed.stdout
    main_commit = co.git("rev-parse", "HEAD")
    co.git("checkout", "-q", "daily-average")

    built = co.dataops("pr", "build", "50")
    assert "WARNING: this branch is behind prod" in built.stdout, built.stdout
    report = co.dataops("pr", "report", "50").stdout
    warning = next(line for line in report.splitlines() if "This branch is behind prod" in line)
    assert f"`{main_commit[:12]}`" in warning and "Product names in capitals" in warning
    assert "`models/marts/core/dim_products.sql`" in warning and "git merge origin/main" in warning
    # what the warning is about: prod's newer change shows up as reverted by this PR
    reverted = (
        r"\| `dim_products` \| modified \| `product_id` "
        r"\| [0-9,]+ → [0-9,]+ \| 0 \| 0 \| [1-9]"
    )
    assert re.search(reverted, report), report
    assert "| `product_name` |" in report
    # the added column, profiled
    assert "- columns added: `average_order_amount`" in report
    profile = report.split("Profile of the added columns:")[1]
    assert re.search(r"\| `average_order_amount` \| DECIMAL\(18,2\) \| [0-9,]+ \|", profile)

    co.git("merge", "-q", "--no-edit", "main")
    rebuilt = co.dataops("pr", "build", "50")
    assert "behind prod" not in rebuilt.stdout, rebuilt.stdout
    assert {uid.split(".")[-1] for uid in co.run_results(50) if uid.startswith("model.")} == {
        "fct_daily_revenue"
    }
    merged = co.dataops("pr", "report", "50").stdout
    assert "behind prod" not in merged and "`dim_products`" not in merged.split("### Data diff")[1]
    assert "- columns added: `average_order_amount`" in merged


@pytest.mark.slow
def test_the_ci_target_cannot_write_prod(checkout):
    co = checkout
    co.branch("write-prod")
    (co.repo / "models" / "marts" / "core" / "ci_writes_prod.sql").write_text(
        "{{ config(database='warehouse_prod') }}\nselect 1 as id\n"
    )
    co.commit("A model that tries to write into prod")
    prod_before = _sha256(co.prod)
    result = co.dataops("pr", "build", "43", check=False)
    assert result.returncode == 1
    # refused by DuckDB before anything is written (creating its schema in prod's catalog)
    assert 'on database "warehouse_prod" which is attached in read-only mode' in result.stdout, (
        result.stdout
    )
    assert _sha256(co.prod) == prod_before
    with duckdb.connect(str(co.prod), read_only=True) as con:
        assert not con.execute(
            "select * from duckdb_tables() where table_name = 'ci_writes_prod'"
        ).fetchall()
    co.dataops("pr", "teardown", "43")


def test_a_pr_without_a_prod_deploy_is_refused_with_what_to_run(tmp_path, sample_landing):
    co = Checkout(REPO_ROOT, tmp_path, sample_landing)
    result = co.dataops("pr", "build", "5", check=False)
    assert result.returncode == 2
    assert "Run `dataops deploy` on main first" in result.stderr


_HOLD_CI_FILE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.slow
def test_a_ci_file_held_before_the_build_is_refused_clearly_and_leaves_nothing(checkout):
    co = checkout
    co.branch("held-before")
    co.commit_change(
        "models/marts/finance/fct_daily_revenue.sql", "\nfinal as (", "\n-- x\nfinal as ("
    )
    co.ci.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(co.ci)).close()
    # another process (a notebook, a BI tool) holds DuckDB's lock on the CI file
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_CI_FILE, str(co.ci), "60"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = co.dataops("pr", "build", "46", check=False, env={"DATAOPS_CI_BUSY_WAIT": "2"})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "another process holds it" in result.stderr and "nothing was changed" in result.stderr
    assert not (co.home / "pr" / "46").exists(), "no leftover artefacts folder"
    assert not co.ci_query("select * from duckdb_schemas() where schema_name = 'pr_46'")

    # another dataops command holds the CI file (the lock beside it): this one waits, then says
    # who holds it
    from filelock import FileLock

    with FileLock(str(co.ci) + ".lock"):
        (co.home / "warehouse_ci.duckdb.lock.owner").write_text(
            json.dumps({"pid": 4242, "purpose": "dataops pr build 7"})
        )
        result = co.dataops("pr", "build", "46", check=False, env={"DATAOPS_CI_LOCK_WAIT": "1"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "waiting for warehouse_ci.duckdb: held by dataops pr build 7 (pid 4242)" in result.stderr
    assert "still in use by dataops pr build 7 (pid 4242) after 1 s" in result.stderr
    assert not (co.home / "pr" / "46").exists()


@pytest.mark.slow
def test_no_process_can_take_the_ci_file_between_the_reset_and_dbt(checkout):
    co = checkout
    co.branch("held-at-start")
    co.commit_change(
        "models/marts/finance/fct_daily_revenue.sql", "\nfinal as (", "\n-- y\nfinal as ("
    )
    build = subprocess.Popen(
        [sys.executable, "-m", "dataops.cli", "pr", "build", "47"],
        cwd=co.repo,
        env=co._env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = co.home / "pr" / "47" / "target"
    deadline = time.monotonic() + 300
    while not target.exists() and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.exists() and build.poll() is None, "the build reset its environment and runs"
    # the environment exists; dbt parses, then builds: the file stays the build's throughout
    with pytest.raises(duckdb.IOException, match="lock"):
        duckdb.connect(str(co.ci)).close()
    stdout, stderr = build.communicate(timeout=600)
    assert build.returncode == 0, stdout + stderr
    assert "PR #47: built 1 models" in stdout
    co.dataops("pr", "teardown", "47")


@pytest.mark.slow
def test_two_pr_builds_at_once_both_succeed_one_after_the_other(checkout):
    co = checkout
    co.branch("concurrent-a")
    co.commit_change(
        "models/marts/finance/fct_daily_revenue.sql", "\nfinal as (", "\n-- a\nfinal as ("
    )
    co.branch("concurrent-b")
    co.commit_change(
        "models/marts/marketing/fct_session_conversions.sql", "\nfinal as (", "\n-- b\nfinal as ("
    )
    other = co.repo.parent / "repo-b"
    co.git("checkout", "-q", "main")
    co.git("worktree", "add", "-q", str(other), "concurrent-b")
    co.git("checkout", "-q", "concurrent-a")
    builds = [
        subprocess.Popen(
            [sys.executable, "-m", "dataops.cli", "pr", "build", str(number)],
            cwd=cwd,
            env=co._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number, cwd in ((48, co.repo), (49, other))
    ]
    outputs = [build.communicate(timeout=900) for build in builds]
    for build, (stdout, stderr) in zip(builds, outputs, strict=True):
        assert build.returncode == 0, stdout + stderr
    assert "PR #48: built 1 models" in outputs[0][0]
    assert "PR #49: built 1 models" in outputs[1][0]
    assert any("waiting for warehouse_ci.duckdb: held by dataops pr build" in e for _, e in outputs)
    assert {"fct_daily_revenue"} == {
        r.split(".")[-1] for r in co.run_results(48) if r.startswith("model.")
    }
    assert {"fct_session_conversions"} == {
        r.split(".")[-1] for r in co.run_results(49) if r.startswith("model.")
    }
    tables = co.ci_query(
        "select schema_name, table_name from duckdb_tables() "
        "where schema_name in ('pr_48', 'pr_49') and table_name like 'fct_%'"
    )
    assert sorted(tables) == [("pr_48", "fct_daily_revenue"), ("pr_49", "fct_session_conversions")]
    # the janitor removes every trace: schemas, folders, the builds' rows in platform tables
    invocations = [
        json.loads((co.home / "pr" / str(n) / "build.json").read_text())["dbt_invocation_id"]
        for n in (48, 49)
    ]
    assert all(invocations)
    ids = ", ".join(f"'{i}'" for i in invocations)
    [(rows,)] = co.ci_query(
        f"select count(*) from platform.events where dbt_invocation_id in ({ids})"
    )
    assert rows > 10, "the builds' hooks recorded their node results"
    (co.home / "pr" / "77").mkdir()  # a folder left by a build refused long ago
    co.dataops("janitor", "--open-prs", "1")
    assert not co.ci_query("select * from duckdb_schemas() where schema_name like 'pr_%'")
    assert not [p for p in (co.home / "pr").iterdir()], "no folder left"
    for table in ("events", "metric_history"):
        left = co.ci_query(
            f"select count(*) from platform.{table} where dbt_invocation_id in ({ids})"
        )
        assert left == [(0,)], table
    kept = co.ci_query(
        "select event_type, count(*) from platform.events "
        "where try_cast(json_extract_string(details, '$.pr_number') as integer) in (48, 49) "
        "group by 1"
    )
    assert kept == [("cicd.pr_environment_dropped", 2)], "one record of each drop, nothing else"
    co.git("worktree", "remove", "--force", str(other))


def _dbt_log_after(co: Checkout, offset: int) -> str:
    with (co.home / "logs" / "dbt.log").open(encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        return handle.read()


def _dbt_log_size(co: Checkout) -> int:
    log = co.home / "logs" / "dbt.log"
    return log.stat().st_size if log.exists() else 0


def _models_built(co: Checkout, number: int) -> set[str]:
    return {uid.split(".")[-1] for uid in co.run_results(number) if uid.startswith("model.")}


def _parse_note(co: Checkout, number: int) -> str:
    return json.loads((co.home / "pr" / str(number) / "build.json").read_text())["parse"]


@pytest.mark.slow
def test_pr_builds_share_one_parse_yet_each_pr_and_push_builds_its_own_changes(checkout):
    co = checkout
    co.branch("shared-parse-a")
    co.commit_change(
        "models/marts/finance/fct_daily_revenue.sql", "\nfinal as (", "\n-- shared a\nfinal as ("
    )
    co.dataops("pr", "build", "60")
    assert _models_built(co, 60) == {"fct_daily_revenue"}
    # another PR (another branch, schema and target folder): dbt's partial parse of the first
    # PR's parse serves it, and sees that this branch changed another file
    co.branch("shared-parse-b")
    co.commit_change(
        "models/marts/marketing/fct_session_conversions.sql",
        "\nfinal as (",
        "\n-- shared b\nfinal as (",
    )
    offset = _dbt_log_size(co)
    co.dataops("pr", "build", "61")
    log = _dbt_log_after(co, offset)
    assert "Partial parsing enabled" in log and "Starting full parse" not in log, log[-3000:]
    assert _models_built(co, 61) == {"fct_session_conversions"}
    assert _parse_note(co, 61).startswith("shared parse ")
    assert _parse_note(co, 61).split()[2] == _parse_note(co, 60).split()[2], "one parse folder"
    manifest = json.loads((co.home / "pr" / "61" / "target" / "manifest.json").read_text())
    node = manifest["nodes"]["model.dataops.fct_session_conversions"]
    assert node["relation_name"] == '"warehouse_ci"."pr_61"."fct_session_conversions"'
    assert co.ci_query(
        "select table_name from duckdb_tables() where schema_name = 'pr_61' "
        "and table_name like 'fct_%'"
    ) == [("fct_session_conversions",)]
    # a second push to that PR changes one more model: built too, still no full parse
    co.commit_change("models/marts/core/dim_products.sql", "\nfinal as (", "\n-- b2\nfinal as (")
    offset = _dbt_log_size(co)
    co.dataops("pr", "build", "61")
    assert "Starting full parse" not in _dbt_log_after(co, offset)
    assert _models_built(co, 61) == {"fct_session_conversions", "dim_products"}
    # and the report's own dbt command (state:modified) runs on the manifest the build ran on,
    # loaded from its manifest.json: no parse at all
    offset = _dbt_log_size(co)
    report = co.dataops("pr", "report", "61").stdout
    assert "| `dim_products` | modified |" in report, report
    log = _dbt_log_after(co, offset)
    assert "Partial parsing" not in log and "Starting full parse" not in log, log[-3000:]
    # a manifest.json dbt cannot load (another schema version): the report parses (the shared
    # parse, moved to pr_61) and says the same
    built = co.home / "pr" / "61" / "target" / "manifest.json"
    manifest = json.loads(built.read_text())
    manifest["metadata"]["dbt_schema_version"] = "https://schemas.getdbt.com/dbt/manifest/v99.json"
    built.write_text(json.dumps(manifest))
    offset = _dbt_log_size(co)
    assert "| `dim_products` | modified |" in co.dataops("pr", "report", "61").stdout
    assert "Partial parsing enabled" in _dbt_log_after(co, offset)
    for number in ("60", "61"):
        co.dataops("pr", "teardown", number)


@pytest.mark.slow
def test_a_pr_build_parses_in_full_when_the_shared_parse_cannot_serve_it(checkout, tmp_path):
    co = checkout.copy(tmp_path)  # this test leaves a schema of its own in the CI file
    co.branch("no-shared-parse")
    co.commit_change(
        "models/marts/finance/fct_daily_revenue.sql", "\nfinal as (", "\n-- fallback\nfinal as ("
    )
    # the shared parse's folder cannot be made: said, then a full parse; the build is the same
    shutil.rmtree(co.home / "pr-parse", ignore_errors=True)
    (co.home / "pr-parse").write_text("not a folder")
    built = co.dataops("pr", "build", "62")
    assert "dbt parse: full parse for pr_62: the shared parse was not used" in built.stderr
    assert _parse_note(co, 62).startswith("full parse for pr_62")
    assert _models_built(co, 62) == {"fct_daily_revenue"}
    (co.home / "pr-parse").unlink()

    # a shared parse whose file is corrupt (a crash while dbt wrote it): dbt parses in full into
    # the shared folder, the build is right, and the next PR reuses the repaired parse
    co.dataops("pr", "build", "62")
    (parse_dir,) = [p for p in (co.home / "pr-parse").iterdir() if p.is_dir()]
    cache = parse_dir / "partial_parse.msgpack"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    offset = _dbt_log_size(co)
    co.dataops("pr", "build", "62")
    log = _dbt_log_after(co, offset)
    assert "Failed to load parsed file from disk" in log, log[-3000:]
    assert _parse_note(co, 62).startswith("shared parse ")
    assert _models_built(co, 62) == {"fct_daily_revenue"}
    offset = _dbt_log_size(co)
    co.dataops("pr", "build", "66")
    assert "Starting full parse" not in _dbt_log_after(co, offset)
    assert "Failed to load" not in _dbt_log_after(co, offset)
    assert _models_built(co, 66) == {"fct_daily_revenue"}

    # the nightly janitor keeps a shared parse a build used within its age, and removes it once
    # none did; the next build parses anew into its folder
    janitor_run = co.dataops("janitor", "--older-than", "7d")
    assert "and 0 unused shared dbt parse(s)" in janitor_run.stdout and parse_dir.is_dir()
    _age(parse_dir, 8)
    janitor_run = co.dataops("janitor", "--older-than", "7d")
    assert f"dropped the shared dbt parse {parse_dir}: last used" in janitor_run.stdout
    assert not parse_dir.exists()
    offset = _dbt_log_size(co)
    co.dataops("pr", "build", "66")
    assert "Starting full parse" in _dbt_log_after(co, offset)
    assert _parse_note(co, 66).startswith("shared parse ") and parse_dir.is_dir()
    assert _models_built(co, 66) == {"fct_daily_revenue"}

    # a branch that derives schemas from the target's: moving the shared parse to pr_<n> would
    # put the models in the wrong schema; the move refuses and dbt's own parse places them
    co.edit(
        "macros/utils/generate_schema_name.sql",
        "        {{ target.schema | trim }}\n",
        "        {{ target.schema | trim }}_x\n",
    )
    co.commit("CI schemas get a suffix")
    built = co.dataops("pr", "build", "62")
    assert "placed in schema 'dataops_shared_parse_x'" in built.stderr, built.stderr
    assert _models_built(co, 62) == {"fct_daily_revenue"}
    assert co.ci_query(
        "select schema_name from duckdb_tables() where table_name = 'fct_daily_revenue' "
        "and schema_name like 'pr_62%'"
    ) == [("pr_62_x",)]
    manifest = json.loads((co.home / "pr" / "62" / "target" / "manifest.json").read_text())
    assert manifest["nodes"]["model.dataops.fct_daily_revenue"]["schema"] == "pr_62_x"


@pytest.mark.slow
def test_two_pr_builds_of_one_checkout_at_once_share_its_parse_without_harm(checkout):
    co = checkout
    co.branch("parse-at-once")
    co.commit_change(
        "models/marts/core/dim_products.sql", "\nfinal as (", "\n-- at once\nfinal as ("
    )
    shutil.rmtree(co.home / "pr-parse", ignore_errors=True)  # both start with a full parse
    builds = [
        subprocess.Popen(
            [sys.executable, "-m", "dataops.cli", "pr", "build", number],
            cwd=co.repo,
            env=co._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in ("63", "64")
    ]
    outputs = [build.communicate(timeout=900) for build in builds]
    for build, (stdout, stderr) in zip(builds, outputs, strict=True):
        assert build.returncode == 0, stdout + stderr
        assert "the shared parse was not used" not in stderr, stderr
    for number in (63, 64):
        assert _models_built(co, number) == {"dim_products"}
        assert _parse_note(co, number).startswith("shared parse ")
    assert len([p for p in (co.home / "pr-parse").iterdir() if p.is_dir()]) == 1
    # the parse they shared is whole: the next build reuses it as it is
    offset = _dbt_log_size(co)
    co.dataops("pr", "build", "65")
    log = _dbt_log_after(co, offset)
    assert "Partial parsing enabled" in log, log[-3000:]
    assert "Starting full parse" not in log and "Failed to load" not in log
    assert _models_built(co, 65) == {"dim_products"}
    for number in ("63", "64", "65"):
        co.dataops("pr", "teardown", number)


def test_a_query_diff_runs_one_query_on_both_sides_with_unbuilt_refs_read_from_prod(tmp_path):
    layout = _layout(tmp_path)
    with duckdb.connect(str(layout.prod_warehouse)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.fct_a as "
            "select * from (values (1, 10), (2, 20), (3, 30)) as t(id, amount)"
        )
        con.execute(
            "create table marts.dim_b as "
            "select * from (values (1, 'x'), (2, 'y'), (4, 'z')) as t(id, label)"
        )
    with duckdb.connect(str(layout.ci_warehouse)) as con:
        con.execute("create schema pr_3")
        con.execute(
            "create table pr_3.fct_a as "
            "select * from (values (1, 10), (2, 25), (4, 40)) as t(id, amount)"
        )

    def node(name: str, database: str, schema: str) -> dict:
        return {
            "resource_type": "model",
            "name": name,
            "database": database,
            "relation_name": f'"{database}"."{schema}"."{name}"',
        }

    layout.prod_state_dir.mkdir(parents=True)
    layout.prod_manifest.write_text(
        json.dumps(
            {
                "nodes": {
                    f"model.p.{n}": node(n, "warehouse_prod", "marts") for n in ("fct_a", "dim_b")
                }
            }
        )
    )
    target = layout.pr_target_dir(3)
    target.mkdir(parents=True)
    (target / "manifest.json").write_text(
        json.dumps(
            {"nodes": {f"model.p.{n}": node(n, "warehouse_ci", "pr_3") for n in ("fct_a", "dim_b")}}
        )
    )
    (target / "run_results.json").write_text(
        json.dumps({"results": [{"unique_id": "model.p.fct_a", "status": "success"}]})
    )
    sql = (
        "select a.id, a.amount, b.label from {{ ref('fct_a') }} as a\n"
        'left join {{ ref("dim_b") }} as b on a.id = b.id where a.id < 10;'
    )
    diff, pr_sql, prod_sql = report.query_diff(layout, 3, sql, ["id"])
    # the PR's own fct_a and prod's dim_b (not built in the PR: deferred); prod reads its own
    assert (
        '"warehouse_ci"."pr_3"."fct_a"' in pr_sql and '"warehouse_prod"."marts"."dim_b"' in pr_sql
    )
    assert '"warehouse_prod"."marts"."fct_a"' in prod_sql and "pr_3" not in prod_sql
    assert (diff.added, diff.removed, diff.changed) == (1, 1, 1)
    assert diff.changed_values == {"amount": 1}
    assert diff.samples == [("2", {"amount": ("20", "25")})]
    markdown = report.query_diff_markdown(diff, pr_sql, prod_sql)
    assert "| `id` | 3 → 3 | 1 | 1 | 1 |" in markdown and "| 2 | `amount` | 20 | 25 |" in markdown
    whole = report.query_diff(layout, 3, "select amount from {{ ref('fct_a') }}")[0]
    assert (whole.added, whole.removed, whole.key) == (2, 2, None) and "whole rows" in whole.note
    with pytest.raises(CicdError, match="refers to no model"):
        report.query_diff(layout, 3, "select 1")
    with pytest.raises(CicdError, match="Not in prod's manifest: fct_new"):
        report.query_diff(layout, 3, "select * from {{ ref('fct_new') }}")
    with pytest.raises(CicdError, match="The query failed: .*no_such_column"):
        report.query_diff(layout, 3, "select no_such_column from {{ ref('fct_a') }}")


def test_a_composite_key_matches_rows_on_every_key_column():
    con = duckdb.connect()
    con.execute(
        "create table prod_t as select * from (values (1, 'A', 5), (1, 'B', 7), (2, 'A', 3)) "
        "as t(supply_id, sku, quantity)"
    )
    con.execute(
        "create table pr_t as select * from (values (1, 'A', 5), (1, 'B', 8), (2, 'B', 3)) "
        "as t(supply_id, sku, quantity)"
    )
    sql = keyed_diff_sql("pr_t", "prod_t", ["supply_id", "sku"], ["quantity"])
    # (1, B) changed; (2, B) added; (2, A) removed: matching on supply_id alone would differ
    assert con.execute(sql).fetchone() == (1, 1, 1, 1)
    manifest = {
        "nodes": {
            "model.p.stock": {"depends_on": {"nodes": []}},
            "test.p.pk": {
                "resource_type": "test",
                "attached_node": "model.p.stock",
                "test_metadata": {
                    "name": "primary_key",
                    "kwargs": {"columns": ["supply_id", "sku"]},
                },
            },
        },
        "sources": {},
    }
    assert primary_key(manifest, "model.p.stock") == ["supply_id", "sku"]
    # a staging model's derived staging_rules test names the key as `primary_key`
    manifest["nodes"]["test.p.pk"]["test_metadata"] = {
        "name": "staging_rules",
        "kwargs": {"primary_key": ["supply_id", "sku"], "not_null": ["quantity"]},
    }
    assert primary_key(manifest, "model.p.stock") == ["supply_id", "sku"]


def test_a_composite_key_fan_out_and_changed_row_samples():
    con = duckdb.connect()
    con.execute(
        "create table prod_t as select * from (values (1, 'A', 5), (1, 'B', 7), (2, 'A', 3)) "
        "as t(supply_id, sku, quantity)"
    )
    con.execute(
        "create table pr_t as select * from (values (1, 'A', 5), (1, 'B', 8), (1, 'B', 8), "
        "(2, 'A', 3)) as t(supply_id, sku, quantity)"
    )
    diff = diff_model(con, "stock", "modified", "pr_t", "prod_t", ["supply_id", "sku"], sample=True)
    assert diff.key == "supply_id, sku" and diff.key_broken and diff.pr_duplicates == 1
    assert diff.samples == [("1, B", {"quantity": ("7", "8")}), ("1, B", {"quantity": ("7", "8")})]
