"""Benchmark the main job: wall and CPU time of `dataops run` and of `dbt build`, beside the same
transformations run as raw DuckDB SQL (dbt's own compiled SQL, executed in DAG order).

    .venv/bin/python bench/bench_main.py                      # default scale (50k order items)
    .venv/bin/python bench/bench_main.py --order-items 10000000
    .venv/bin/python bench/bench_main.py --order-items 1000000 --baseline main~3

Each build is timed twice: as a new `dbt` process (Python start, dbt's imports, its partial
parse and manifest writes included) and as the Dagster run worker runs it ("warm":
dataops/dbt/preloaded.py: the worker imported dbt and parsed the project while it waited for
its run, so only the command itself is timed, `--no-write-json` as in the worker's steps).

With `--baseline REF` the models-only build and its raw SQL also run from the project as it was at
git REF (same installed packages, same landed data, each on its own copy of the warehouse),
alternating with this checkout, so a change's saving is measured side by side in one run.

Prints a table to record in docs/benchmarks.md, with the load average. Not a test: nothing fails
on time.
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
DBT = str(Path(sys.executable).parent / "dbt")


def _env(home: Path, target_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_"))}
    target_path = target_path or home / "target"
    env.update(
        DATAOPS_HOME=str(home),
        DBT_TARGET="dev",
        DBT_TARGET_PATH=str(target_path),
        DBT_LOG_PATH=str(target_path / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
        # The bench ingests the sample it has just generated, complete: without this the files
        # younger than the landing settle window (ingestion/landing.py) wait for a next run,
        # and at small scales nothing at all was loaded.
        DATAOPS_SETTLE_SECONDS="0",
    )
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def timed(home: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one `dataops` command (CPU is steadier on a shared machine)."""
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [sys.executable, "-m", "dataops.cli", *args],
        cwd=REPO_ROOT, env=_env(home), check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def dbt_models(
    project: Path, home: Path, target: Path, with_tests: bool
) -> tuple[float, float]:
    """Wall and CPU seconds of `dbt build` of every model, rebuilt in full (`--full-refresh`, so
    the incremental fact is computed whole, like its raw SQL), from the project at `project`:
    the models alone (hooks and contracts included) or with the tests and unit tests on them."""
    started, cpu = time.perf_counter(), _children_cpu()
    indirect = "eager" if with_tests else "empty"
    subprocess.run(
        [DBT, *BUILD_ARGS, "--indirect-selection", indirect,
         "--project-dir", str(project), "--profiles-dir", str(project / "profiles")],
        cwd=project, env=_env(home, target), check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, _children_cpu() - cpu


BUILD_ARGS = ("build", "--select", "resource_type:model", "--full-refresh")


def warm_child(project: Path, target: Path, indirect: str) -> None:
    """In a fresh process: import dbt and parse the project as the warm run worker does while it
    waits (untimed), then time the build on that manifest; print wall and process CPU seconds
    (DuckDB's threads included) as JSON. Run as `bench_main.py _warm PROJECT TARGET INDIRECT`."""
    sys.path.insert(0, str(REPO_ROOT))
    from dataops.dbt.preloaded import preload

    os.environ.update(DBT_PROFILES_DIR=str(project / "profiles"), DBT_PROJECT_DIR=str(project))
    parsed = preload(project, project / "profiles", "dev")
    args = [*BUILD_ARGS, "--indirect-selection", indirect, "--target", "dev", "--no-write-json"]
    started, cpu = time.perf_counter(), time.process_time()
    code = parsed.start(args, dict(os.environ)).wait()
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                      "code": code}))


def dbt_models_warm(
    project: Path, home: Path, target: Path, with_tests: bool
) -> tuple[float, float]:
    """Wall and CPU seconds of the same build as :func:`dbt_models`, run on a manifest parsed
    beforehand in the same process (how the Dagster run worker runs its dbt steps)."""
    indirect = "eager" if with_tests else "empty"
    done = subprocess.run(
        [sys.executable, __file__, "_warm", str(project), str(target), indirect],
        cwd=project, env=_env(home, target), check=True, capture_output=True, text=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["code"] != 0:
        raise SystemExit(f"warm dbt build failed (exit {figures['code']}):\n{done.stderr}")
    return figures["wall"], figures["cpu"]


def raw_sql_models(target: Path) -> list[tuple[str, str, str]]:
    """(relation, materialization, compiled SQL) of every model, in dependency order."""
    manifest = json.loads((target / "manifest.json").read_text())
    results = json.loads((target / "run_results.json").read_text())
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


def run_raw_sql(
    warehouse: Path, plan: list[tuple[str, str, str]]
) -> tuple[tuple[float, float], tuple[float, float], dict[str, float]]:
    """Wall and CPU seconds of the plan, closing the database (its last checkpoint, as dbt's
    build closes it too); the same before the close; and the wall seconds of each relation."""
    each = {}
    con = duckdb.connect(str(warehouse))
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for relation, materialized, sql in plan:
            begun = time.perf_counter()
            con.execute(f"create or replace {materialized} {relation} as {sql}")
            each[relation.split(".")[-1]] = time.perf_counter() - begun
        statements = (time.perf_counter() - started, time.process_time() - cpu)
    finally:
        con.close()
    return (time.perf_counter() - started, time.process_time() - cpu), statements, each


def node_timings(target: Path, top: int | None = None) -> list[tuple[float, str]]:
    results = json.loads((target / "run_results.json").read_text())["results"]
    timings = sorted(((r["execution_time"], r["unique_id"]) for r in results), reverse=True)
    return timings[:top]


def export_project(ref: str, destination: Path) -> Path:
    """The dbt project as it was at git `ref` (models, macros, seeds, tests, profiles)."""
    destination.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", ref, "dbt_project.yml", "profiles", "models", "macros", "seeds",
         "tests/dbt"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    return destination


def compare(home: Path, variants: dict[str, Path], top: int) -> dict[str, dict]:
    """Models-only build and raw SQL of each variant, each on its own copy of the warehouse."""
    warehouse = home / "warehouse_dev.duckdb"
    figures: dict[str, dict] = {}
    for name, project in variants.items():
        copy_home = home / f"ab-{name}"
        copy_home.mkdir()
        shutil.copy(warehouse, copy_home / warehouse.name)
        for wal in home.glob("warehouse_dev.duckdb.wal"):
            shutil.copy(wal, copy_home / wal.name)
        figures[name] = {"home": copy_home, "project": project}
    for item in figures.values():  # variant after variant, per phase: the load drifts
        target = item["home"] / "target"
        # untimed: a parse, so every timed build starts from partial parsing like a daily run
        subprocess.run(
            [DBT, "parse", "--project-dir", str(item["project"]),
             "--profiles-dir", str(item["project"] / "profiles")],
            cwd=item["project"], env=_env(item["home"], target), check=True,
            stdout=subprocess.DEVNULL,
        )
        item["tested"] = dbt_models(item["project"], item["home"], target, with_tests=True)
        item["tested_nodes"] = node_timings(target, top)
        item["models"] = dbt_models(item["project"], item["home"], target, with_tests=False)
        item["load"] = _load()
        item["nodes"] = node_timings(target, top)
        item["all_nodes"] = node_timings(target)
        item["plan"] = raw_sql_models(target)
        item["warm_tested"] = dbt_models_warm(item["project"], item["home"], target, True)
        item["warm"] = dbt_models_warm(item["project"], item["home"], target, False)
        item["warm_load"] = _load()
    for item in figures.values():
        with tempfile.TemporaryDirectory(dir=item["home"]) as scratch:
            copy = Path(scratch) / "warehouse_dev.duckdb"  # same catalog name as the SQL
            shutil.copy(item["home"] / "warehouse_dev.duckdb", copy)
            item["raw"], item["raw_statements"], item["raw_each"] = run_raw_sql(copy, item["plan"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--baseline", metavar="REF", help="also measure the project at git REF")
    parser.add_argument("--top", type=int, default=8, help="slowest nodes listed per build")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-main-"))
    scale = ["--order-items", str(args.order_items), "--days", str(args.days)]
    try:
        print(f"load average at start: {_load()}", flush=True)
        generate = timed(home, "generate", *scale)
        run = timed(home, "run", *scale)
        run_dbt = json.loads((home / "target" / "run_results.json").read_text())["elapsed_time"]
        run_load = _load()
        build = timed(home, "build")
        from ingested import require_all_ingested  # bench/ingested.py, as bench_observability

        rows = require_all_ingested(home / "warehouse_dev.duckdb", home / "landing")
        variants = {"this checkout": REPO_ROOT}
        if args.baseline:
            variants = {
                f"baseline {args.baseline}": export_project(args.baseline, home / "baseline"),
                **variants,
            }
        figures = compare(home, variants, args.top)

        print(f"scale: {rows:,} order items over {args.days} days")
        print("| step | wall s | CPU s | load (1/5/15 min) |")
        print("|---|---:|---:|---|")
        print(f"| generate sample data | {generate[0]:.2f} | {generate[1]:.2f} | |")
        print(f"| main command `dataops run` (ingest + dbt build) | {run[0]:.2f} | {run[1]:.2f} "
              f"| {run_load} |")
        print(f"| of which `dbt build` (run_results elapsed) | {run_dbt:.2f} | | |")
        print(f"| of which ingestion and start-up (the rest) | {run[0] - run_dbt:.2f} | | |")
        print(f"| `dbt build` again (models + tests, nothing new landed) | {build[0]:.2f} "
              f"| {build[1]:.2f} | |")
        for name, item in figures.items():
            (mw, mc), (rw, rc), (tw, tc) = item["models"], item["raw"], item["tested"]
            count = len(item["plan"])
            print(f"| {name}: dbt build of the {count} models (`--full-refresh`, hooks and "
                  f"contracts, no tests) | {mw:.2f} | {mc:.2f} | {item['load']} |")
            print(f"| {name}: same models as raw DuckDB SQL | {rw:.2f} | {rc:.2f} | |")
            ow, oc = item["raw_statements"]
            print(f"| {name}: of which the statements (before closing the database; the "
                  f"raw figure until 2026-12-03) | {ow:.2f} | {oc:.2f} | |")
            print(f"| {name}: **ratio dbt models / raw** | **{mw / rw:.2f}x** | **{mc / rc:.2f}x** "
                  "| |")
            print(f"| {name}: the same with their tests and unit tests | {tw:.2f} | {tc:.2f} | |")
            print(f"| {name}: ratio dbt models + tests / raw models | {tw / rw:.2f}x "
                  f"| {tc / rc:.2f}x | |")
            (ww, wc), (vw, vc) = item["warm"], item["warm_tested"]
            print(f"| {name}: the models, warm (dbt imported and project parsed beforehand, as "
                  f"the Dagster run worker) | {ww:.2f} | {wc:.2f} | {item['warm_load']} |")
            print(f"| {name}: **ratio warm dbt models / raw** | **{ww / rw:.2f}x** "
                  f"| **{wc / rc:.2f}x** | |")
            print(f"| {name}: the same with their tests and unit tests, warm | {vw:.2f} "
                  f"| {vc:.2f} | |")
            print(f"| {name}: ratio warm models + tests / raw models | {vw / rw:.2f}x "
                  f"| {vc / rc:.2f}x | |")
        for name, item in figures.items():
            for label, key in (("models", "nodes"), ("models + tests", "tested_nodes")):
                print(f"slowest nodes, {name}, {label}: " + ", ".join(
                    f"{uid.split('.')[2]} {seconds:.2f}s" for seconds, uid in item[key]))
        for name, item in figures.items():
            print(f"per model, {name} (wall s): dbt node execution_time / raw SQL statement")
            for seconds, uid in item["all_nodes"]:
                short = uid.split(".")[2]
                raw = item["raw_each"].get(short)
                print(f"  {short:<40} {seconds:7.2f} / " + (f"{raw:7.2f}" if raw else "      -"))
        print(f"load average at end: {_load()}")
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_warm"]:
        warm_child(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
    else:
        main()
