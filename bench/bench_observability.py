"""Benchmark the observability layer: the time it adds to a `dbt build` of the sample project.

    .venv/bin/python bench/bench_observability.py [--order-items 50000 --days 30 --repeat 3]

Generates and ingests the sample, then alternates `dbt build` with the layer on (hooks recording
every node result and measuring the monitored tables, plus the anomaly monitors on the metric
history) and off (env DATAOPS_OBSERVABILITY=off, `--exclude source:platform`). Prints the median
wall time of each, the overhead in % of the build, and the layer's own parts read from
run_results.json (hooks, monitors). Record the figures in docs/benchmarks.md. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingested import require_all_ingested

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path, observability: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_"))}
    env.update(
        DATAOPS_HOME=str(home),
        DBT_TARGET="dev",
        DBT_TARGET_PATH=str(home / "target"),
        DBT_LOG_PATH=str(home / "logs"),
        DBT_PROFILES_DIR=str(REPO_ROOT / "profiles"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
        DATAOPS_OBSERVABILITY="on" if observability else "off",
        DATAOPS_SETTLE_SECONDS="0",  # the generated files are complete: ingest them at once
    )
    return env


def dataops(home: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dataops.cli", *args], cwd=REPO_ROOT,
                   env=_env(home, True), check=True, stdout=subprocess.DEVNULL)


def build(home: Path, observability: bool) -> tuple[float, dict[str, float]]:
    """Wall time of one `dbt build`, and the layer's parts from run_results.json."""
    dbt = str(Path(sys.executable).parent / "dbt")
    command = [dbt, "build", "--project-dir", str(REPO_ROOT)]
    if not observability:
        command += ["--exclude", "source:platform"]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=_env(home, observability), check=False,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    results = json.loads((home / "target" / "run_results.json").read_text())["results"]
    parts = {"hooks": 0.0, "monitors": 0.0}
    for result in results:
        if result["unique_id"].startswith("operation."):
            parts["hooks"] += result["execution_time"]
        elif "source_" in result["unique_id"] and "_platform_" in result["unique_id"]:
            parts["monitors"] += result["execution_time"]
    return elapsed, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-observability-"))
    try:
        dataops(home, "generate", "--order-items", str(args.order_items), "--days", str(args.days))
        dataops(home, "run")  # ingest + a first build: staging views, partial parse
        rows = require_all_ingested(home / "warehouse_dev.duckdb", home / "landing")
        on, off, parts = [], [], []
        for _ in range(args.repeat):
            elapsed, layer = build(home, observability=True)
            on.append(elapsed)
            parts.append(layer)
            off.append(build(home, observability=False)[0])
        with_layer, without = statistics.median(on), statistics.median(off)
        hooks = statistics.median(p["hooks"] for p in parts)
        monitors = statistics.median(p["monitors"] for p in parts)
        print(f"scale: {rows:,} order items over {args.days} days, {args.repeat} runs each")
        print(f"dbt build without the observability layer: {without:7.2f} s (median)")
        print(f"dbt build with the observability layer:    {with_layer:7.2f} s (median)")
        print(f"overhead:                                  {with_layer - without:7.2f} s "
              f"= {100 * (with_layer - without) / without:5.1f} % of the build")
        print(f"  of which hooks (event log + metrics):    {hooks:7.2f} s")
        print(f"  of which anomaly monitors (tests):       {monitors:7.2f} s (thread time)")
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
