"""Invoking dbt: the one module that runs it for the platform.

Every command of the platform that needs dbt builds its arguments with :func:`dbt_args`, its
environment with :func:`dbt_env`, and runs it here, either in this process (:func:`invoke`,
:func:`run_dbt`: no second Python start-up, results as objects) or in a subprocess
(:func:`run_dbt_subprocess`: when this process must not keep dbt-duckdb's connection to the
warehouse open afterwards, or to stream dbt's own output). The Dagster code location gets the
executable from :func:`dbt_executable` for dagster-dbt's resource.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.core.secrets import SECRETS, resolve_files
from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, Settings

# Keep every dbt run quiet and offline: no usage statistics, no version check against PyPI.
QUIET_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}


def dbt_executable() -> str:
    """The dbt of this virtual environment (beside this Python), else the one on PATH."""
    beside_python = Path(sys.executable).parent / "dbt"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("dbt")
    if not found:
        raise FileNotFoundError(
            f"No dbt executable beside {sys.executable} nor on PATH: run `make install`."
        )
    return found


def dbt_env(
    settings: Settings | None = None,
    *,
    target: str | None = None,
    project_dir: Path = PROJECT_DIR,
    target_path: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a dbt run: this process's, plus what profiles.yml reads.

    With ``settings`` the warehouse paths of its target are set, so Python and dbt agree on the
    file; ``target`` alone (e.g. the in-memory ``lint`` target) sets only dbt's own variables.
    ``target_path`` also puts dbt's logs beside its artefacts.
    """
    env = dict(os.environ)
    env.update(QUIET_ENV)
    env.update(
        {
            "DBT_PROFILES_DIR": str(project_dir / "profiles"),
            "DBT_PROJECT_DIR": str(project_dir),
        }
    )
    if settings is not None:
        env.update(
            {
                "DATAOPS_HOME": str(settings.home),
                "DATAOPS_LANDING": str(settings.landing_dir),
                f"DATAOPS_WAREHOUSE_{settings.target.upper()}": str(settings.warehouse_path),
                "DBT_TARGET": settings.target,
            }
        )
    if target is not None:
        env["DBT_TARGET"] = target
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
        env["DBT_LOG_PATH"] = str(target_path / "logs")
    env.update(extra or {})
    # dbt's env_var() reads DBT_ENV_SECRET_* itself: give it the content of their *_FILE.
    resolve_files(env, [name for name in SECRETS if name.startswith("DBT_ENV_SECRET_")])
    return env


def dbt_args(
    command: str,
    target: str,
    *,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dbt_vars: dict[str, Any] | None = None,
    extra: Sequence[str] = (),
    project_dir: Path = PROJECT_DIR,
) -> list[str]:
    """The argument list of one dbt command (``docs generate``: two words) for a target.

    The project and its profiles are at ``project_dir`` (the repo root by default).
    """
    profiles_dir = PROFILES_DIR if project_dir == PROJECT_DIR else project_dir / "profiles"
    args = [
        *command.split(),
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(profiles_dir),
        "--target",
        target,
    ]
    if select:
        args += ["--select", *select]
    if exclude:
        args += ["--exclude", *exclude]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    return args + list(extra)


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (dbt in this process reads them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def invoke(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    manifest: Any = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> Any:
    """Run dbt in this process with ``env`` set for the call; return dbt's ``dbtRunnerResult``.

    ``manifest``: a project parsed earlier in this process (dbt then skips parsing;
    dataops/dbt/preloaded.py, dataops/cicd/pr_parse.py). dbt runs on a copy of it: a run changes
    the manifest it is given (compiled code, the CTEs of ephemeral models marked as injected, the
    deferred state merged in), which a second run on the same object would inherit.
    ``callbacks`` get each of dbt's events (``EventMsg``)."""
    from dbt.cli.main import dbtRunner  # imported late: dbt is heavy and not needed to plan

    if manifest is not None:
        manifest = manifest.deepcopy()
    with environ(env):
        return dbtRunner(manifest=manifest, callbacks=list(callbacks)).invoke(list(args))


def run_dbt_subprocess(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    capture: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``dbt <args>`` in a child process (its output captured as text unless ``capture`` is
    off); never raises on a failed build: the caller reads ``returncode``."""
    return subprocess.run(
        [dbt_executable(), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=capture,
        text=True,
        timeout=timeout,
    )


@dataclass
class DbtOutcome:
    """What a dbt invocation did, counted by resource type and status."""

    success: bool
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    exception: str | None = None
    invocation_id: str | None = None  # joins platform.events (observability)

    def record(self, resource_type: str, name: str, status: str, message: Any) -> None:
        """Count one node's result; a failed one is named with dbt's message."""
        self.counts[(resource_type, status)] += 1
        if status in ("error", "fail", "runtime error"):
            self.failures.append(f"{resource_type} {name}: {status}: {message}")

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(n for (rtype, status), n in self.counts.items()
                   if rtype == resource_type and (not statuses or status in statuses))


def outcome_of(result: Any) -> DbtOutcome:
    """Summarise a ``dbtRunnerResult`` by resource type and status, failures named."""
    outcome = DbtOutcome(success=result.success)
    from dbt_common.invocation import get_invocation_id  # the invocation just run

    outcome.invocation_id = get_invocation_id()
    if result.exception is not None:
        outcome.exception = str(result.exception)
    for node_result in getattr(result.result, "results", None) or []:
        node = node_result.node
        outcome.record(node.resource_type, node.name, str(node_result.status), node_result.message)
    return outcome


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    extra_env: Mapping[str, str] | None = None,
    *,
    manifest: Any = None,
) -> DbtOutcome:
    """Run dbt in this process with the target's environment; never raises on a failed build.

    ``manifest``: the project as parsed earlier in this process for the same target (dbt then
    does not parse it again; see :func:`invoke`)."""
    return outcome_of(invoke(args, dbt_env(settings, extra=extra_env), manifest=manifest))
