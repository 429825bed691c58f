"""Benchmark write -> audit -> publish: a prod release against today's in-place build.

The same raw tables are built twice each way: in place (`dataops build` on the dev target, what
prod did before releases) and as a release (`dataops --target prod build`: own schemas, audit,
one-transaction switch). The first build of each is cold (incremental models built in full), the
second warm (incremental models add to their state; the release copies it forward). The switch
time is the publish transaction alone, as recorded by the release, and a rollback (a switch
with no build) is timed end to end.

    .venv/bin/python bench/bench_publish.py                        # 1M order items
    .venv/bin/python bench/bench_publish.py --order-items 10000000

Prints one line per figure (wall s / CPU s of the command and its children) and the load; record
them in docs/benchmarks.md. Not a test: nothing fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path, target: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_"))}
    env.update(
        DATAOPS_HOME=str(home),
        DBT_TARGET=target,
        DBT_TARGET_PATH=str(home / "target"),
        DBT_LOG_PATH=str(home / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
        DATAOPS_SETTLE_SECONDS="0",  # the generated files are complete: ingest them at once
    )
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(home: Path, target: str, *args: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one `dataops` command, and what it printed."""
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(
        [sys.executable, "-m", "dataops.cli", "--target", target, *args],
        cwd=REPO_ROOT,
        env=_env(home, target),
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, _children_cpu() - cpu, result.stdout


def switch_seconds(output: str) -> float:
    match = re.search(r"switched in ([0-9.]+) s", output)
    assert match, output
    return float(match.group(1))


LOG_TIME = re.compile(r"(\d\d):(\d\d):(\d\d\.\d+)")


def parse_seconds(log: Path) -> tuple[float, str]:
    """From the last dbt invocation in ``log``: seconds from its start to the end of parsing
    ("Found N models, ..."), and whether it parsed in full or partially."""
    lines = log.read_text(errors="replace").splitlines()
    start = max(i for i, line in enumerate(lines) if "Running with dbt=" in line)
    kind = "partial"
    for line in lines[start:]:
        if "Unable to do partial parsing" in line or "Partial parse save file not found" in line:
            kind = "full"
        if "Found " in line and " models" in line:
            seconds = [LOG_TIME.search(x) for x in (lines[start], line)]
            first, last = (int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) for m in seconds)
            return (last - first) % 86400, kind
    return float("nan"), kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order-items", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    scale = ["--order-items", str(args.order_items), "--days", str(args.days)]
    try:
        timed(home, "dev", "generate", *scale)
        timed(home, "dev", "ingest")
        # prod starts from the same raw tables (nothing else is in the file yet)
        shutil.copy(home / "warehouse_dev.duckdb", home / "warehouse_prod.duckdb")
        with duckdb.connect(str(home / "warehouse_dev.duckdb"), read_only=True) as con:
            rows = con.execute("select count(*) from raw_shop.order_items").fetchone()[0]
        assert rows > 0, "nothing was ingested"
        figures = {}
        steps = []
        for number, run in enumerate(("cold", "warm"), start=1):
            figures[f"in place, {run}"] = timed(home, "dev", "build")
            parse, kind = parse_seconds(home / "logs" / "dbt.log")
            steps.append(f"in place, {run}: dbt start -> parsed {parse:.2f} s ({kind} parse)")
            figures[f"release, {run}"] = timed(home, "prod", "build")
            parse, kind = parse_seconds(home / "releases" / f"r{number}" / "dbt.log")
            [line] = [x for x in figures[f"release, {run}"][2].splitlines() if "steps:" in x]
            steps.append(
                f"release, {run}: {line.strip()}; dbt start -> parsed {parse:.2f} s ({kind} parse)"
            )
        figures["rollback (switch only)"] = timed(home, "prod", "rollback")
        with duckdb.connect(str(home / "warehouse_prod.duckdb"), read_only=True) as con:
            sizes = con.execute("select count(*) from marts.fct_order_items").fetchone()[0]
        print(
            f"scale: {rows:,} order items over {args.days} days ({sizes:,} fct_order_items); "
            f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs  (wall s / CPU s)"
        )
        for label, (wall, cpu, _) in figures.items():
            print(f"{label:<28} {wall:8.2f} / {cpu:8.2f}")
        for run in ("cold", "warm"):
            base, release = figures[f"in place, {run}"], figures[f"release, {run}"]
            print(
                f"{'overhead, ' + run:<28} {release[0] / base[0] - 1:+8.1%} wall, "
                f"{release[1] / base[1] - 1:+.1%} CPU; switch "
                f"{switch_seconds(release[2]):.3f} s"
            )
        for line in steps:
            print(line)
        print(json.dumps({k: [round(v[0], 2), round(v[1], 2)] for k, v in figures.items()}))
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
