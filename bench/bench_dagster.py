"""Benchmark the Dagster code location: time to load the definitions (goal < 2 s, and it must
not include a dbt parse), and the latency from a file landing to its downstream marts being
materialised by the daemon (goal < 15 s at the default scale).

    .venv/bin/python bench/bench_dagster.py                    # default scale (50k order items)
    .venv/bin/python bench/bench_dagster.py --order-items 3000 --days 7
    .venv/bin/python bench/bench_dagster.py --home /tmp/bd --latency-only   # reuse a built home

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


def _adopt_orphans() -> None:
    """Linux: become the subreaper of every process started from here, so that a process whose
    parent exits first (a run worker of a stopped code server) is still counted in
    ``_children_cpu`` once :func:`_reap_orphans` has waited for it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap_orphans(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.2)


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


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def sensor_tick(instance, landed_at: float, created: float) -> tuple[float, float] | None:
    """(start, end) of the landing sensor's tick that created the run: the last tick that
    started after the file landed and before the run was created."""
    from dagster._core.scheduler.instigation import InstigatorType

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name != "landed_files":
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20)
        started = [t for t in ticks if landed_at <= t.timestamp <= created]
        if started:
            tick = max(started, key=lambda t: t.timestamp)
            return tick.timestamp, tick.end_timestamp or created
    return None


def run_parts(instance, run_id: str) -> list[tuple[str, float]]:
    """Where a run's time goes, from its event log: the daemon dequeuing it, the run worker
    starting (a new process importing the code location), each step, and the gaps between."""
    stamps: dict[str, float] = {}
    steps: dict[str, list[float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type.name  # enum names (RUN_START); values still say PIPELINE_
        if kind in (
            "RUN_ENQUEUED",
            "RUN_DEQUEUED",
            "RUN_STARTING",
            "RUN_START",
            "RUN_SUCCESS",
            "RUN_FAILURE",
        ):
            stamps.setdefault(kind, entry.timestamp)
        elif kind in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE") and event.step_key:
            steps.setdefault(event.step_key, []).append(entry.timestamp)
    parts = []
    for name, first, last in (
        ("dequeue", "RUN_ENQUEUED", "RUN_DEQUEUED"),
        ("launch", "RUN_DEQUEUED", "RUN_STARTING"),
        ("run worker start", "RUN_STARTING", "RUN_START"),
    ):
        if first in stamps and last in stamps:
            parts.append((name, stamps[last] - stamps[first]))
    previous = stamps.get("RUN_START")
    for key, times in sorted(steps.items(), key=lambda item: item[1][0]):
        if previous is not None:
            parts.append(("wait", times[0] - previous))
        parts.append((f"step {key}", times[-1] - times[0]))
        previous = times[-1]
    end = stamps.get("RUN_SUCCESS", stamps.get("RUN_FAILURE"))
    if previous is not None and end is not None:
        parts.append(("run end", end - previous))
    return [(name, seconds) for name, seconds in parts if name != "wait" or seconds >= 0.05]


STARTUP_SNIPPET = """
import resource as resource_module
import time
from dagster_dbt import DbtCliResource
from orchestration.definitions import defs
from dataops.core.settings import load_settings
from orchestration.resources import dbt_resource
ours = dbt_resource(load_settings())
theirs = DbtCliResource(**{k: getattr(ours, k) for k in
    ("project_dir", "profiles_dir", "target", "dbt_executable")})
def cpu():
    own = resource_module.getrusage(resource_module.RUSAGE_SELF)
    kids = resource_module.getrusage(resource_module.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
for label, resource in (("dagster-dbt", theirs), ("platform", ours)):
    t0, c0 = time.perf_counter(), cpu()
    resource._cli_version
    t1, c1 = time.perf_counter(), cpu()
    resource._initialize_dbt_core_adapter(["build"])
    t2, c2 = time.perf_counter(), cpu()
    print(label, f"{t1 - t0:.3f}", f"{c1 - c0:.3f}", f"{t2 - t1:.3f}", f"{c2 - c1:.3f}")
"""


def bench_startup(home: Path) -> None:
    """What dagster-dbt's resource costs before each dbt step, beside the platform's resource."""
    env = dagster_env(home, home / "dagster_home")
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_SNIPPET],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for at in range(0, len(out), 5):
        label, version, version_cpu, adapter, adapter_cpu = out[at : at + 5]
        print(
            f"dbt step start-up, {label + ' resource:':<22} `dbt --version` "
            f"{float(version):5.2f} s / {float(version_cpu):5.2f} s CPU (once per run worker), "
            f"dbt adapter {float(adapter):5.2f} s / {float(adapter_cpu):5.2f} s CPU (every dbt "
            "step)"
        )


def bench_latency(
    home: Path,
    samples: int,
    standby_workers: int,
    bytecode: bool = True,
    preload_dbt: bool = True,
    fast_sensor_loop: bool = True,
) -> None:
    """``standby_workers`` 0: every run worker is a new process (Dagster's default launch path);
    1: the instance config's launcher hands runs to a worker warmed up in advance.
    ``preload_dbt`` False: the warm worker does not parse the dbt project in advance (each dbt
    step starts a dbt process). ``fast_sensor_loop`` False: the daemon's sensor loop keeps
    Dagster's 5 s (no ``sensor_loop_seconds``). ``bytecode`` False: every process compiles its
    imports from source (an environment without compiled bytecode and PYTHONDONTWRITEBYTECODE
    set, as before `make install` compiled it)."""
    from dagster import DagsterInstance, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    shutil.rmtree(home / "dagster_home", ignore_errors=True)
    dagster_home = install_instance(home / "dagster_home")
    config = dagster_home / "dagster.yaml"
    text = (
        config.read_text()
        .replace("standby_workers: 1", f"standby_workers: {standby_workers}")
        .replace("preload_dbt: true", f"preload_dbt: {str(preload_dbt).lower()}")
    )
    if not fast_sensor_loop:
        text = "\n".join(
            line for line in text.splitlines() if "sensor_loop_seconds:" not in line
        )
    config.write_text(text)
    print(
        f"--- run launcher: standby_workers {standby_workers}, preload_dbt {preload_dbt}; "
        f"sensor loop {'1 s' if fast_sensor_loop else '5 s (Dagster default)'}; "
        f"compiled bytecode: {bytecode}",
        flush=True,
    )
    env = dagster_env(home, dagster_home)
    if not bytecode:
        # An empty cache folder: Python then finds no .pyc and, not writing any, compiles each
        # module from source in every process.
        env["PYTHONPYCACHEPREFIX"] = str(home / "no-bytecode")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Landed files are new content in every session (a kept --home has loaded earlier ones).
    counter = home / "bench_dagster_samples"
    first = int(counter.read_text()) if counter.exists() else 1
    counter.write_text(str(first + samples))
    cpu_before, started = _children_cpu(), time.perf_counter()
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
            for n in range(first, first + samples):
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
                tick = sensor_tick(instance, landed_at, created)
                queued = record.start_time - created
                duration = record.end_time - record.start_time
                print(
                    f"latency: {label:<20} landed -> marts materialised {total:6.1f} s  (sensor "
                    f"pickup {pickup:4.1f} s, queue {queued:4.1f} s, run {duration:5.1f} s, "
                    f"{run.status.value}, load {_load()})"
                )
                print(
                    "         parts: "
                    + (
                        f"sensor tick started {tick[0] - landed_at:.1f} s after landing, "
                        f"run created {created - tick[0]:.1f} s after the tick started, "
                        if tick
                        else ""
                    )
                    + ", ".join(
                        f"{name} {seconds:.1f} s"
                        for name, seconds in run_parts(instance, run.run_id)
                    )
                )
    finally:
        daemon.stop()
        _reap_orphans()
    # The daemon's CPU includes every process started under it (this script is their subreaper):
    # its code server, the run workers, dbt; and its idle loops (sensors every 5 s).
    print(
        f"daemon session: {time.perf_counter() - started:.1f} s wall, "
        f"{_children_cpu() - cpu_before:.1f} s CPU (daemon, code server, run workers, dbt) for "
        f"{2 * samples} runs, load {_load()}"
    )


def build_home(home: Path, order_items: int, days: int) -> None:
    print(f"scale: {order_items} order items over {days} days")
    dataops(home, "generate", "--order-items", str(order_items), "--days", str(days))
    print(f"dataops run (setup)                                {dataops(home, 'run'):6.2f} s")
    parse = dataops(home, "dbt", "prepare")
    print(f"dbt parse (`dataops dbt prepare`, once per setup)  {parse:6.2f} s")
    (home / "landing").rename(home / "archive")
    (home / "landing").mkdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument(
        "--home", type=Path, help="build the platform here and keep it (reused when built)"
    )
    parser.add_argument(
        "--latency-only", action="store_true", help="skip the definitions' load and start-up"
    )
    parser.add_argument(
        "--standby-workers", type=int, default=1, help="the launcher's warm workers (0: none)"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="latency with the warm run worker alone (no dbt preload, Dagster's 5 s sensor "
        "loop), then with the dbt project preloaded in it (dbt steps in-process), then also "
        "with the 1 s sensor loop",
    )
    parser.add_argument(
        "--compare-startup",
        action="store_true",
        help="latency before (no compiled bytecode, a new run worker per run), then with "
        "compiled bytecode, then also with a warm run worker",
    )
    args = parser.parse_args()
    _adopt_orphans()
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        home = args.home.resolve() if args.home else Path(tmp)
        if not (home / "archive").is_dir():
            home.mkdir(parents=True, exist_ok=True)
            build_home(home, args.order_items, args.days)
        if not args.latency_only:
            bench_load(home, args.repeat)
            bench_startup(home)
        print(f"load average before the latency runs: {_load()}")
        if args.compare:  # the warm worker alone, + the dbt preload, + the 1 s sensor loop
            for preload, fast_loop in ((False, False), (True, False), (True, True)):
                bench_latency(
                    home, args.samples, 1, preload_dbt=preload, fast_sensor_loop=fast_loop
                )
        elif args.compare_startup:  # before (no bytecode, a new run worker per run), then each
            for standby, bytecode in ((0, False), (0, True), (1, True)):
                bench_latency(
                    home, args.samples, standby, bytecode, preload_dbt=False, fast_sensor_loop=False
                )
        else:
            bench_latency(home, args.samples, args.standby_workers)


if __name__ == "__main__":
    main()
