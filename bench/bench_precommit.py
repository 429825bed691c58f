"""Benchmark the quality gates: `pre-commit run` on all files and on a one-model change.

Works in a temp clone of the committed repository (never in the working tree: pre-commit stashes
unstaged changes when run on staged files), using the project's venv and a temp PRE_COMMIT_HOME.
Prints wall times of each run and the duration of each hook (pre-commit --verbose).

    .venv/bin/python bench/bench_precommit.py [--repeat 2]

Cold = first run in a fresh clone (no dbt partial-parse state); warm = the same again.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "models/marts/core/dim_products.sql"


def pre_commit(clone: Path, *args: str) -> tuple[float, int, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "DATAOPS_"))}
    env["PRE_COMMIT_HOME"] = str(clone.parent / "pre-commit-home")
    started = time.perf_counter()
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/pre-commit"), "run", "--verbose", "--color", "never", *args],
        cwd=clone, env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    hooks: dict[str, float] = {}
    name = None
    for line in result.stdout.splitlines():
        if match := re.match(r"^(.+?)\.{3,}.*(Passed|Failed)$", line):
            name = match.group(1).strip()
        elif name and (match := re.match(r"^- duration: ([\d.]+)s", line)):
            hooks[name] = float(match.group(1))
    return elapsed, result.returncode, hooks


def report(label: str, elapsed: float, code: int, hooks: dict[str, float]) -> None:
    status = "ok" if code == 0 else f"exit {code}"
    print(f"{label:<34} {elapsed:6.1f} s  ({status})")
    for name, seconds in sorted(hooks.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.1:
            print(f"    {name:<40} {seconds:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2, help="runs per scenario (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-precommit-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
        (clone / ".venv").symlink_to(REPO_ROOT / ".venv")
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                              capture_output=True, text=True).stdout.strip()
        load = os.getloadavg()[0]
        print(f"clone of {REPO_ROOT} at {head}; {os.cpu_count()} cores, load average {load:.1f}")
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
