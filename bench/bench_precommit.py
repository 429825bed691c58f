"""Benchmark the quality gates: `pre-commit run` on all files and on a one-model change.

Works in a temp clone of the committed repository (never in the working tree: pre-commit stashes
unstaged changes when run on staged files), using the project's venv and a temp PRE_COMMIT_HOME.
Prints each run's wall time and CPU time (user + sys of pre-commit and its hooks: on a shared,
loaded machine the CPU time is what an idle machine's wall time would be, the hooks being
single-threaded and run one after the other) and each hook's wall duration (pre-commit --verbose).

    .venv/bin/python bench/bench_precommit.py [--repeat 2]

Cold = first run in a fresh clone (no dbt partial-parse state); warm = the same again.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "models/marts/core/dim_products.sql"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pre_commit(clone: Path, *args: str) -> tuple[float, float, int, dict[str, float], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "DATAOPS_"))}
    env["PRE_COMMIT_HOME"] = str(clone.parent / "pre-commit-home")
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/pre-commit"), "run", "--verbose", "--color", "never", *args],
        cwd=clone, env=env, capture_output=True, text=True,
    )
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu
    hooks: dict[str, float] = {}
    failed: list[str] = []
    name = None
    for line in result.stdout.splitlines():
        if match := re.match(r"^(.+?)\.{3,}.*(Passed|Failed)$", line):
            name = match.group(1).strip()
            if match.group(2) == "Failed":
                failed.append(name)
        elif name and (match := re.match(r"^- duration: ([\d.]+)s", line)):
            hooks[name] = float(match.group(1))
    return elapsed, cpu, result.returncode, hooks, failed


def report(
    label: str, elapsed: float, cpu: float, code: int, hooks: dict[str, float], failed: list[str]
) -> None:
    status = "ok" if code == 0 else f"exit {code}, failed: {', '.join(failed)}"
    print(f"{label:<34} {elapsed:6.1f} s wall  {cpu:6.1f} s CPU  ({status})")
    for name, seconds in sorted(hooks.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.1:
            print(f"    {name:<40} {seconds:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2, help="runs per scenario (default 2)")
    parser.add_argument("--repo", default=str(REPO_ROOT), help="repository to clone (default ours)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-precommit-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", args.repo, str(clone)], check=True)
        (clone / ".venv").symlink_to(REPO_ROOT / ".venv")
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                              capture_output=True, text=True).stdout.strip()
        load = os.getloadavg()[0]
        print(f"clone of {args.repo} at {head}; {os.cpu_count()} cores, load average {load:.1f}")
        for run in range(args.repeat):
            label = f"all files ({'cold' if run == 0 else 'warm'})"
            report(label, *pre_commit(clone, "--all-files"))
        model = clone / MODEL
        model.write_text(model.read_text().replace("with\n", "with\n\n-- bench edit\n", 1))
        subprocess.run(["git", "add", MODEL], cwd=clone, check=True)
        for run in range(args.repeat):
            report(f"one-model change (run {run + 1})", *pre_commit(clone))


if __name__ == "__main__":
    main()
