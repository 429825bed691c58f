"""Benchmark the Dagster code location: time to load the definitions (goal < 2 s, and it must
not include a dbt parse), and the latency from a file landing to its downstream marts being
materialised by the daemon (goal < 15 s at the default scale).

    .venv/bin/python bench/bench_dagster.py                    # default scale (50k order items)
    .venv/bin/python bench/bench_dagster.py --order-items 3000 --days 7

Prints one line per figure; record them in docs/benchmarks.md. Not a test: nothing fails on time.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.python.dagster_harness import (  # noqa: E402
    customer_redelivery,
    dagster_env,
    extra_sessions,
    install_instance,
    start_daemon,
)

LOAD_SNIPPET = """
import time
t0 = time.perf_counter()
import dagster, dagster_dbt  # noqa: F401
t1 = time.perf_counter()
from orchestration.definitions import defs
defs.resolve_asset_graph()
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def dataops(home: Path, *args: str) -> float:
    env = dagster_env(home, home / "dagster_home")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dataops.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_load(home: Path, repeat: int) -> None:
    env = dagster_env(home, home / "dagster_home")
    imports, loads, totals, cpus = [], [], [], []
    for _ in range(repeat):
        cpu_before = _children_cpu()
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", LOAD_SNIPPET],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        totals.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu_before)
        imports.append(float(out[0]))
        loads.append(float(out[1]))
    print(f"definitions: import dagster + dagster_dbt        {statistics.median(imports):6.2f} s")
    print(f"definitions: build from the prepared manifest     {statistics.median(loads):6.2f} s")
    print(f"definitions: whole process (python start to defs) {statistics.median(totals):6.2f} s")
    print(f"definitions: whole process, CPU time (user+sys)   {statistics.median(cpus):6.2f} s")


def bench_latency(home: Path, samples: int) -> None:
    from dagster import DagsterInstance, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    dagster_home = install_instance(home / "dagster_home")
    env = dagster_env(home, dagster_home)
    daemon = start_daemon(env, home / "daemon.log")
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))
    try:
        # Let the daemon come up and make its first (empty) sensor tick.
        time.sleep(20)
        for label, land in (
            ("web sessions file", lambda n: extra_sessions(home / "archive", home / "landing", n)),
            (
                "shop customers file",
                lambda n: customer_redelivery(home / "archive", home / "landing", n),
            ),
        ):
            for n in range(1, samples + 1):
                known = {r.run_id for r in instance.get_runs()}
                landed_at = time.time()
                land(n)
                while True:
                    new = [
                        r
                        for r in instance.get_runs(
                            RunsFilter(tags={"dataops/trigger": "landed_files"})
                        )
                        if r.run_id not in known
                    ]
                    if new and all(r.is_finished for r in new):
                        break
                    if not daemon.alive():
                        raise SystemExit(f"daemon died:\n{daemon.tail()}")
                    time.sleep(0.2)
                [run] = new
                record = instance.get_run_record_by_id(run.run_id)
                created = record.create_timestamp.timestamp()
                total = record.end_time - landed_at
                pickup = created - landed_at
                queued = record.start_time - created
                duration = record.end_time - record.start_time
                print(
                    f"latency: {label:<20} landed -> marts materialised {total:6.1f} s  (sensor "
                    f"pickup {pickup:4.1f} s, queue {queued:4.1f} s, run {duration:5.1f} s, "
                    f"{run.status.value})"
                )
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        home = Path(tmp)
        print(f"scale: {args.order_items} order items over {args.days} days")
        dataops(home, "generate", "--order-items", str(args.order_items), "--days", str(args.days))
        print(f"dataops run (setup)                                {dataops(home, 'run'):6.2f} s")
        parse = dataops(home, "dbt", "prepare")
        print(f"dbt parse (`dataops dbt prepare`, once per setup)  {parse:6.2f} s")
        bench_load(home, args.repeat)
        (home / "landing").rename(home / "archive")
        (home / "landing").mkdir()
        bench_latency(home, args.samples)


if __name__ == "__main__":
    main()
