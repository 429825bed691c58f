"""Benchmark the same project on DuckDB, Spark (local session) and PostgreSQL (local server).

For each engine: time to load the landed sample into its raw tables, time of `dbt build` (seeds,
models, data and unit tests), and peak memory (resident set of the dbt process and everything it
starts, such as Spark's JVM, plus the PostgreSQL server's processes), sampled every 0.2 s.

    .venv/bin/python bench/bench_engines.py                    # default scale (50k order items)
    .venv/bin/python bench/bench_engines.py --order-items 3000 --engines duckdb postgres

Prints one line per figure; record them in docs/benchmarks.md. Not a test: nothing fails on time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from dataops.engines.dbt_commands import engine_dbt_args  # noqa: E402
from dataops.engines.local_postgres import LocalPostgres  # noqa: E402
from dataops.sources.registry import load_registry  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(roots: list[int]) -> int:
    """Resident memory of the processes `roots` and all their descendants, in bytes."""
    tree = _children()
    seen, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(tree.get(pid, []))
    return sum(_rss(pid) for pid in seen)


def measured(
    args: list[str], env: dict[str, str], extra_roots: list[int]
) -> tuple[float, int, str]:
    """Run a command; return (seconds, peak resident bytes of it, its children and extra_roots,
    its output)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss([process.pid, *extra_roots]))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{output[-5000:]}")
    return elapsed, peak, output


LOADED = re.compile(r"^\s+\S+\s+(\d+) files loaded\s+([\d,]+) rows", re.MULTILINE)


def require_all_loaded(engine: str, output: str, landed: int) -> int:
    """The rows an engine's load printed; exits unless it loaded every landed file (a file
    left in the settle window, dataops/ingestion/landing.py, would make the build's figures
    those of a partial sample)."""
    counts = [(int(files), int(rows.replace(",", ""))) for files, rows in LOADED.findall(output)]
    files, rows = sum(f for f, _ in counts), sum(r for _, r in counts)
    if files < landed or not rows:
        raise SystemExit(
            f"{engine}: {files} of {landed} landed files loaded ({rows} rows):\n{output[-3000:]}"
        )
    return rows


def _env(home: Path, engine: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOPS_", "DBT_"))}
    env.update(
        DATAOPS_HOME=str(home),
        DBT_TARGET="dev",
        DBT_TARGET_PATH=str(home / f"target-{engine}"),
        DBT_LOG_PATH=str(home / "logs"),
        DBT_PROFILES_DIR=str(REPO_ROOT / "profiles"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
        DATAOPS_SETTLE_SECONDS="0",  # the generated files are complete: ingest them at once
        **extra,
    )
    return env


def _postmaster_pid(server: LocalPostgres) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--engines", nargs="*", default=["duckdb", "spark", "postgres"])
    args = parser.parse_args()
    cli = [sys.executable, "-m", "dataops.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
        home = Path(folder)
        subprocess.run(
            [*cli, "generate", "--order-items", str(args.order_items), "--days", str(args.days)],
            cwd=REPO_ROOT, env=_env(home, "duckdb", {}), check=True, stdout=subprocess.DEVNULL,
        )
        landed = sum(len(t.landed_files(home / "landing")) for t in load_registry())
        print(f"sample: {args.order_items:,} order items over {args.days} days, {landed} files")
        for engine in args.engines:
            server = LocalPostgres.start() if engine == "postgres" else None
            try:
                extra = server.env() if server else {}
                roots = [_postmaster_pid(server)] if server else []
                env = _env(home, engine, extra)
                load = [*cli, "ingest"] if engine == "duckdb" else [*cli, "engines", "load", engine]
                load_s, load_peak, output = measured(load, env, roots)
                rows = require_all_loaded(engine, output, landed)
                build_s, build_peak, _ = measured(engine_dbt_args(engine, "build"), env, roots)
            finally:
                if server:
                    server.stop()
            print(
                f"{engine:<9} load {load_s:7.1f} s (peak {load_peak / 2**20:6.0f} MiB, "
                f"{rows:,} rows)   "
                f"dbt build {build_s:7.1f} s (peak {build_peak / 2**20:6.0f} MiB)"
            )


if __name__ == "__main__":
    main()
