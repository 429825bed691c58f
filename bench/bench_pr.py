"""Benchmark pull-request builds: a slim PR build (`dataops pr build`: state:modified+ deferred to
prod) for a one-model change, against a full build of the same project for the PR.

    .venv/bin/python bench/bench_pr.py                                  # 50k order items
    .venv/bin/python bench/bench_pr.py --order-items 10000000 --home /tmp/bench_pr --keep
    # big samples: load and deploy prod once (any CPU slot), then time the builds alone
    .venv/bin/python bench/bench_pr.py --order-items 10000000 --home /tmp/bench_pr --prepare-only
    .venv/bin/python bench/bench_pr.py --home /tmp/bench_pr --reuse-prod
    .venv/bin/python bench/bench_pr.py --home /tmp/bench_pr --reuse-prod --no-full  # PR builds only

Steps, in a git repository holding a copy of the project (main, then one branch per change):
generate the sample (skipped when the home's landing folder holds files), ingest into prod,
`dataops deploy` (the prod build), then for each change: commit it on a branch and time
`dataops pr build` (a pruned build: descendants of a change whose data equals prod's are
left to prod, so the comment-only and the data-changing intermediate changes differ); and once,
the full build of the whole project into a PR environment
(`dataops pr build --select '*' --full-refresh`: everything rebuilt from raw data read from
prod, incremental models included), which is what a CI without state comparison does. Prints one
line per figure; record them in docs/benchmarks.md. Not a test: nothing fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PARTS = (
    "dbt_project.yml",
    "profiles",
    "models",
    "macros",
    "seeds",
    "tests/dbt",
    "dataops",
)

# One-model changes: (name, file, old text, new text).
CHANGES = {
    "mart": (
        "models/marts/finance/fct_daily_revenue.sql",
        "sum(case when is_fulfillable then order_amount else 0 end) as gross_revenue",
        "sum(order_amount) as gross_revenue",
    ),
    # the same data as prod's: a pruned PR build leaves its descendants to prod
    "intermediate": (
        "models/intermediate/finance/int_payments_pivoted_to_orders.sql",
        "\nfinal as (",
        "\nfinal as (\n    -- a comment is a change: dbt compares the SQL text\n",
    ),
    # different data (first_paid_at to the minute: nearly every order's): its descendants are
    # rebuilt
    "intermediate-data": (
        "models/intermediate/finance/int_payments_pivoted_to_orders.sql",
        "then created_at end) as first_paid_at",
        "then date_trunc('minute', created_at) end) as first_paid_at",
    ),
}


def _env(home: Path, landing: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_", "GITHUB_"))}
    env.update(
        DATAOPS_HOME=str(home),
        DATAOPS_LANDING=str(landing),
        DBT_TARGET="dev",
        DBT_TARGET_PATH=str(home / "target"),
        DBT_LOG_PATH=str(home / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
        DATAOPS_SETTLE_SECONDS="0",  # the generated files are complete: ingest them at once
    )
    return env


CPU = {"last": 0.0}


def cpu_seconds() -> float:
    """CPU seconds (user + system) of the finished child processes since the previous call."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent, CPU["last"] = total - CPU["last"], total
    return spent


def load() -> str:
    return "load " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def timed(repo: Path, env: dict[str, str], *args: str) -> float:
    cpu_seconds()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dataops.cli", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dataops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def models_built(home: Path, number: int) -> int:
    results = json.loads((home / "pr" / str(number) / "target" / "run_results.json").read_text())
    return sum(r["unique_id"].startswith("model.") for r in results["results"])


def models_pruned(home: Path, number: int) -> int:
    """Descendants the PR build left to prod (data identical to prod, dataops/cicd/prune.py)."""
    record = json.loads((home / "pr" / str(number) / "build.json").read_text())
    return len(record.get("pruned") or {})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--home", type=Path, help="platform home to use (kept; reuses its landing)")
    parser.add_argument("--changes", nargs="*", default=list(CHANGES), choices=list(CHANGES))
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="generate, ingest and deploy prod into --home, then stop (time the builds later)",
    )
    parser.add_argument(
        "--reuse-prod",
        action="store_true",
        help="keep the prod deploy already in --home (its prod-state) instead of deploying again",
    )
    parser.add_argument(
        "--no-full",
        action="store_true",
        help="skip the full build (re-measuring PR builds only; no ratios printed)",
    )
    args = parser.parse_args()
    if (args.prepare_only or args.reuse_prod) and not args.home:
        parser.error("--prepare-only and --reuse-prod need --home (the prepared platform home)")

    home = (args.home or Path(tempfile.mkdtemp(prefix="bench-pr-"))).resolve()
    landing = home / "landing"
    repo = home / "repo"
    env = _env(home, landing)
    try:
        if not (landing.exists() and any(p.is_file() for p in landing.rglob("*"))):
            seconds = timed(
                REPO_ROOT,
                env,
                "generate",
                "--order-items",
                str(args.order_items),
                "--days",
                str(args.days),
            )
            print(
                f"generate {args.order_items:,} order items:          {seconds:8.1f} s "
                f"({cpu_seconds():.0f} CPU s, {load()})"
            )
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        for part in PROJECT_PARTS:
            source = REPO_ROOT / part
            if source.is_dir():
                shutil.copytree(source, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, repo / part)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "main")
        if not (home / "warehouse_prod.duckdb").exists():
            seconds = timed(repo, env, "--target", "prod", "ingest")
            print(
                f"ingest into prod:                       {seconds:8.1f} s "
                f"({cpu_seconds():.0f} CPU s, {load()})"
            )
        if args.reuse_prod and (home / "prod-state" / "manifest.json").is_file():
            print(f"prod deploy reused from {home / 'prod-state'}")
        else:
            seconds = timed(repo, env, "deploy", "--no-docs")
            print(
                f"deploy (prod build + publish manifest): {seconds:8.1f} s "
                f"({cpu_seconds():.0f} CPU s, {load()})"
            )
        if args.prepare_only:
            return

        full = full_cpu = None
        if not args.no_full:
            full = timed(repo, env, "pr", "build", "900", "--select", "*", "--full-refresh")
            full_cpu = cpu_seconds()
            full_models = models_built(home, 900)
            timed(repo, env, "pr", "teardown", "900")
            print(
                f"full build for a PR ({full_models} models):        {full:8.1f} s "
                f"({full_cpu:.0f} CPU s, {load()})"
            )
        for number, name in enumerate(args.changes, start=901):
            path, old, new = CHANGES[name]
            git(repo, "checkout", "-q", "main")
            git(repo, "checkout", "-q", "-B", f"change-{name}")
            text = (repo / path).read_text()
            assert text.count(old) == 1, f"{path}: {old!r} not found once"
            (repo / path).write_text(text.replace(old, new))
            git(repo, "commit", "-q", "-am", f"one-model change: {name}")
            slim = timed(repo, env, "pr", "build", str(number))
            slim_cpu = cpu_seconds()
            built, pruned = models_built(home, number), models_pruned(home, number)
            timed(repo, env, "pr", "teardown", str(number))
            ratios = (
                f"= {slim / full:.2f}x the full build; CPU {slim_cpu:.0f} s "
                f"= {slim_cpu / max(full_cpu, 1e-9):.2f}x"
                if full and full_cpu is not None
                else f"CPU {slim_cpu:.0f} s"
            )
            print(
                f"PR build, {name} change ({built} models, {pruned} left to prod):  "
                f"{slim:8.1f} s   {ratios} ({load()})"
            )
    finally:
        if args.keep or args.home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
