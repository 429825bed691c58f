"""Benchmark the main job: wall time of `dataops run` and of `dbt build`, beside the same
transformations run as raw DuckDB SQL (dbt's own compiled SQL, executed in DAG order).

    .venv/bin/python bench/bench_main.py                      # default scale (50k order items)
    .venv/bin/python bench/bench_main.py --order-items 10000000

Prints one line per figure; record them in docs/benchmarks.md. Not a test: nothing fails on time.
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
from graphlib import TopologicalSorter
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_"))}
    env.update(
        DATAOPS_HOME=str(home),
        DBT_TARGET="dev",
        DBT_TARGET_PATH=str(home / "target"),
        DBT_LOG_PATH=str(home / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
    )
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(home: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one `dataops` command (CPU is steadier on a shared machine)."""
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [sys.executable, "-m", "dataops.cli", *args],
        cwd=REPO_ROOT, env=_env(home), check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def raw_sql_models(home: Path) -> list[tuple[str, str, str]]:
    """(relation, materialization, compiled SQL) of every model, in dependency order."""
    manifest = json.loads((home / "target" / "manifest.json").read_text())
    results = json.loads((home / "target" / "run_results.json").read_text())
    compiled = {r["unique_id"]: r.get("compiled_code") for r in results["results"]}
    models = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    order = TopologicalSorter(
        {uid: [d for d in n["depends_on"]["nodes"] if d in models] for uid, n in models.items()}
    ).static_order()
    plan = []
    for uid in order:
        node = models[uid]
        materialized = "view" if node["config"]["materialized"] == "view" else "table"
        plan.append((f'{node["schema"]}.{node["alias"]}', materialized, compiled[uid]))
    return plan


def run_raw_sql(warehouse: Path, plan: list[tuple[str, str, str]]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / warehouse.name  # same catalog name as in the compiled SQL
        shutil.copy(warehouse, copy)
        with duckdb.connect(str(copy)) as con:
            started, cpu = time.perf_counter(), time.process_time()
            for relation, materialized, sql in plan:
                con.execute(f"create or replace {materialized} {relation} as {sql}")
            return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-main-"))
    scale = ["--order-items", str(args.order_items), "--days", str(args.days)]
    try:
        generate = timed(home, "generate", *scale)
        run = timed(home, "run", *scale)
        build = timed(home, "build")
        with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
            rows = con.execute("select count(*) from raw_shop.order_items").fetchone()[0]
        # dbt models only (no tests), as full rebuild, to compare like with like
        models_only = timed(home, "build", "--select", "resource_type:model")
        plan = raw_sql_models(home)
        raw = run_raw_sql(home / "warehouse_dev.duckdb", plan)
        print(f"scale: {rows:,} order items over {args.days} days  (wall s / CPU s)")
        for label, (wall, cpu) in [
            ("generate sample data", generate),
            ("main command (ingest + dbt build)", run),
            ("dbt build (models + tests)", build),
            (f"dbt build of the {len(plan)} models only", models_only),
            ("same models as raw DuckDB SQL", raw),
        ]:
            print(f"{label:<36} {wall:8.2f} / {cpu:8.2f}")
        print(f"{'ratio dbt models / raw SQL':<36} {models_only[0] / raw[0]:8.1f} x wall, "
              f"{models_only[1] / raw[1]:.1f} x CPU")
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
