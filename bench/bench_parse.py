"""Benchmark how generated staging scales: cold `dbt parse` with 50, 200 and 1000 declared tables.

For each size, a temporary copy of the project gets one more source with that many tables (each
with seven columns using renames, PII hashing, coded values, a safe cast, accepted values and a
deduplication rule), `dataops sources sync` writes their staging models and tests, and a cold
`dbt parse --no-partial-parse` is timed. The cost per declared table is the extra parse time over
the unchanged project, divided by the number of tables (goal: at most 15 ms CPU). For comparison
the same is measured for the same number of trivial hand-written models (`select 1 as id`).

    .venv/bin/python bench/bench_parse.py                    # 50, 200 and 1000 tables
    .venv/bin/python bench/bench_parse.py --tables 100 --repeat 3

Prints one line per figure; record them in docs/benchmarks.md. Not a test: nothing fails on time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from dataops.sources import sync as staging_sync  # noqa: E402

PROJECT_PARTS = ("dbt_project.yml", "profiles", "models", "macros", "seeds", "tests/dbt")
DBT = str(Path(sys.executable).parent / "dbt")


def copy_project(destination: Path) -> Path:
    destination.mkdir(parents=True)
    for part in PROJECT_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, destination / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy(source, destination / part)
    return destination


def declared_table(number: int) -> dict:
    return {
        "name": f"table_{number:04d}",
        "description": f"Benchmark table {number}.",
        "config": {"meta": {"primary_key": "record_id", "dedupe": {"latest_by": "updated_at"}}},
        "columns": [
            {
                "name": "Record ID",
                "data_type": "bigint",
                "description": "Key.",
                "meta": {"rename": "record_id"},
            },
            {
                "name": "email",
                "data_type": "varchar",
                "description": "Hashed.",
                "meta": {"pii": True},
            },
            {
                "name": "status",
                "data_type": "varchar",
                "description": "Status.",
                "meta": {
                    "values_map": {"A": "active", "I": "inactive"},
                    "accepted_values": ["active", "inactive"],
                },
            },
            {
                "name": "country",
                "data_type": "varchar",
                "description": "Country.",
                "meta": {"case": "upper"},
            },
            {
                "name": "amount",
                "data_type": "decimal(18, 2)",
                "description": "Amount.",
                "meta": {"safe_cast": True},
            },
            {"name": "quantity", "data_type": "integer", "description": "Quantity."},
            {"name": "updated_at", "data_type": "timestamp", "description": "Last change."},
        ],
    }


def add_declared_tables(project: Path, count: int) -> float:
    """Declare `count` tables in a new source and sync their staging files; return sync seconds."""
    folder = project / "models" / "staging" / "bench"
    folder.mkdir()
    document = {
        "version": 2,
        "sources": [
            {
                "name": "bench",
                "schema": "raw_bench",
                "config": {
                    "loaded_at_field": "_loaded_at",
                    "freshness": {"warn_after": {"count": 26, "period": "hour"}},
                    "meta": {"landing": {"path": "bench/{table}", "format": "csv"}},
                },
                "tables": [declared_table(n) for n in range(count)],
            }
        ],
    }
    (folder / "_bench__sources.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    started = time.perf_counter()
    staging_sync.sync(project)
    return time.perf_counter() - started


def add_plain_models(project: Path, count: int) -> None:
    folder = project / "models" / "plain"
    folder.mkdir()
    for number in range(count):
        (folder / f"plain_{number:04d}.sql").write_text("select 1 as id\n")


def cold_parse(project: Path, home: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one cold `dbt parse` (no partial parsing, fresh process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_"))}
    env.update(
        DATAOPS_HOME=str(home),
        DBT_TARGET_PATH=str(home / "target"),
        DBT_LOG_PATH=str(home / "logs"),
        DBT_PROFILES_DIR=str(project / "profiles"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
    )
    shutil.rmtree(home / "target", ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [DBT, "parse", "--no-partial-parse", "--project-dir", str(project), "--target", "lint"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"dbt parse failed in {project}:\n{result.stdout}\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(kind: str, count: int, repeat: int, workdir: Path) -> tuple[float, float, float]:
    """Median wall and CPU seconds of a cold parse, and the sync seconds, for one project size."""
    project = copy_project(workdir / f"{kind}_{count}" / "project")
    home = workdir / f"{kind}_{count}" / "home"
    home.mkdir()
    sync_seconds = 0.0
    if count and kind == "declared":
        sync_seconds = add_declared_tables(project, count)
    elif count:
        add_plain_models(project, count)
    runs = [cold_parse(project, home) for _ in range(repeat)]
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        sync_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, nargs="*", default=[50, 200, 1000])
    parser.add_argument("--repeat", type=int, default=1, help="parses per size (median)")
    parser.add_argument("--no-plain", action="store_true", help="skip the trivial-model comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_parse_") as tmp:
        workdir = Path(tmp)
        base_wall, base_cpu, _ = measure("declared", 0, args.repeat, workdir)
        print(f"baseline project: cold dbt parse {base_wall:.2f} s wall, {base_cpu:.2f} s CPU")
        kinds = ["declared"] + ([] if args.no_plain else ["plain"])
        for count in args.tables:
            for kind in kinds:
                wall, cpu, sync_seconds = measure(kind, count, args.repeat, workdir)
                per_wall = (wall - base_wall) / count * 1000
                per_cpu = (cpu - base_cpu) / count * 1000
                extra = f", sources sync {sync_seconds:.2f} s" if kind == "declared" else ""
                print(
                    f"{count:>5} {kind:<8} tables: cold dbt parse {wall:6.2f} s wall "
                    f"{cpu:6.2f} s CPU; per table {per_wall:5.2f} ms wall {per_cpu:5.2f} ms CPU"
                    f"{extra}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
