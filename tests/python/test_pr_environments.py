"""Pull-request environments, for real: a git repository holding a copy of the project, a prod
deploy from main, branches that change the project, `dataops pr build|report|teardown` run as
subprocesses from the branch checkout, real DuckDB files, real dbt. Plus the pure parts (dbt
arguments, janitor rules, diff SQL on DuckDB, the GitHub calls against a local HTTP server).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import pytest

from dataops.cicd import github, janitor
from dataops.cicd.diff import keyed_diff_sql, primary_key, set_diff_sql
from dataops.cicd.environments import (
    CicdError,
    Layout,
    connect,
    list_environments,
    pr_schema,
    reset_environment,
)
from dataops.cicd.pr import check_prod_state, pr_build_args
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
        if self.path.startswith("/repos/acme/shop/pulls"):
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
    steps = [s for job in pull_request["jobs"].values() for s in job["steps"]]
    assert any(s.get("uses", "").startswith("actions/cache@") for s in steps)
    assert any((s.get("with") or {}).get("cache") == "pip" for s in steps)
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
    assert "prod-state/manifest.json" in upload["with"]["path"]
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

    def dataops(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The checkout's own `dataops` (its dataops package and dbt project)."""
        env = platform_env(self.home)
        env["DATAOPS_LANDING"] = str(self.landing)
        for key in ("GITHUB_EVENT_PATH", "GITHUB_TOKEN", "DATAOPS_OPEN_PRS"):
            env.pop(key, None)
        result = subprocess.run(
            [sys.executable, "-m", "dataops.cli", *args],
            cwd=self.repo,
            env=env,
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
    assert all(r["status"] in ("success", "pass") for r in results.values())
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
    assert _sha256(co.prod) == prod_before

    rebuilt = co.dataops("pr", "build", "41")  # a second push: the environment starts empty
    assert "PR #41: built 4 models" in rebuilt.stdout

    co.dataops("pr", "teardown", "41")
    assert not co.ci_query("select * from duckdb_schemas() where schema_name = 'pr_41'")
    assert not co.ci_query("select * from duckdb_tables() where schema_name = 'pr_41'")
    assert not (co.home / "pr" / "41").exists()
    assert _sha256(co.prod) == prod_before
    again = co.dataops("pr", "teardown", "41")
    assert "no environment to drop" in again.stdout


@pytest.mark.slow
def test_a_pr_that_breaks_a_test_fails_and_names_the_test(checkout):
    co = checkout
    co.branch("duplicate-days")
    co.edit(
        "models/marts/finance/fct_daily_revenue.sql",
        "    select revenue_date from orders_by_day\n    union\n",
        "    select revenue_date from orders_by_day\n    union all\n",
    )
    co.commit("Keep every day from both sides")
    result = co.dataops("pr", "build", "42", check=False)
    assert result.returncode == 1, result.stdout
    assert "FAILED test unique_fct_daily_revenue_revenue_date: fail" in result.stdout, result.stdout
    report = co.dataops("pr", "report", "42").stdout
    assert "❌" in report and "unique_fct_daily_revenue_revenue_date" in report
    co.dataops("pr", "teardown", "42")


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
