"""Dagster resources and the names shared by everything that writes the warehouse."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster import get_dagster_logger
from dagster_dbt import DbtCliResource
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version

from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, Settings
from dataops.dbt.preloaded import PreloadedProject, preload, preloaded
from dataops.dbt.runner import dbt_executable

# DuckDB allows one writing process per file. Every step that opens the warehouse runs in this
# concurrency pool; the instance config (orchestration/instance/dagster.yaml) limits pools to one
# slot, so warehouse writers run one at a time across all runs.
WAREHOUSE_POOL = "warehouse"


class DataopsDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two start-up costs paid on every dbt step.

    - dagster-dbt learns dbt's version by running ``dbt --version`` in a subprocess (a second
      Python start, ~1 s idle); the executable is the dbt of this virtual environment
      (``dbt_executable``), so the version of the installed dbt-core package is the same answer.
    - Before each ``dbt.cli(...)`` dagster-dbt builds a dbt adapter in-process (loads the profile,
      the project and dbt's macros; ~0.5-1 s) that only its ``fetch_column_metadata()`` and
      ``fetch_row_counts()`` use. The platform calls neither (column metadata comes from the
      manifest), so no adapter is built. Calling one of them would then fail loudly, not silently.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__

        return version.parse(__version__)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None

    def preload(self) -> PreloadedProject:
        """Parse the dbt project in this process now (dataops/dbt/preloaded.py): the run worker
        does it while it waits, and its dbt steps then run in-process on that manifest."""
        return preload(Path(self.project_dir), Path(self.profiles_dir or PROFILES_DIR), self.target)

    def cli(self, args: Sequence[str], **kwargs: Any) -> DbtCliInvocation:
        """dagster-dbt's ``cli``; in a process that preloaded the project (the run worker), dbt
        runs in this process on the parsed manifest instead of a new ``dbt`` process, whenever
        that gives what a new process would (else a subprocess, as dagster-dbt does).

        A step whose artefacts go to dagster-dbt's scratch folder (no ``target_path`` given)
        writes no ``manifest.json``/``run_results.json`` there: nothing reads them (the
        observability hooks get dbt's results in memory), and writing them costs ~1.5 s per step.
        A release (``target_path`` given) reads its run results and keeps writing them.
        """
        project = preloaded(
            Path(self.project_dir), Path(self.profiles_dir or PROFILES_DIR), str(self.target)
        )
        if project is None:
            return super().cli(args, **kwargs)
        if kwargs.get("target_path") is None:
            args = [*args, "--no-write-json"]
        with _invocations_in_process(project):
            return super().cli(args, **kwargs)


@contextlib.contextmanager
def _invocations_in_process(project: PreloadedProject) -> Iterator[None]:
    """Within the block, dagster-dbt's ``cli`` starts dbt through :class:`_PreloadedInvocation`
    (dagster-dbt builds the arguments, environment and target folder as always)."""
    import dagster_dbt.core.resource as dagster_dbt_resource

    class Invocation(_PreloadedInvocation):
        preloaded = project

    saved = dagster_dbt_resource.DbtCliInvocation
    dagster_dbt_resource.DbtCliInvocation = Invocation
    try:
        yield
    finally:
        dagster_dbt_resource.DbtCliInvocation = saved


class _PreloadedInvocation(DbtCliInvocation):
    """dagster-dbt's invocation of a dbt command, running it in a thread of this process on the
    preloaded manifest when that serves the command; its events are read as from a subprocess."""

    preloaded: PreloadedProject

    @classmethod
    def run(  # type: ignore[override]  (dagster-dbt's own signature, by keyword)
        cls, args: Sequence[str], env: dict[str, str], project_dir: Path, **kwargs: Any
    ) -> DbtCliInvocation:
        dbt_args = list(args[1:])  # without the executable
        if not cls.preloaded.serves(dbt_args, env, project_dir):
            return DbtCliInvocation.run(args=args, env=env, project_dir=project_dir, **kwargs)
        invocation = cls(
            process=cls.preloaded.start(dbt_args, env),  # type: ignore[arg-type]
            project_dir=project_dir,
            project=kwargs.pop("dbt_project", None),
            **kwargs,
        )
        get_dagster_logger().info(
            f"Running dbt command in-process on the preloaded manifest: `{invocation.dbt_command}`."
        )
        return invocation


def dbt_resource(settings: Settings) -> DbtCliResource:
    """dagster-dbt's resource, running the dbt executable of `dataops.dbt.runner`."""
    return DataopsDbtCliResource(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROFILES_DIR),
        target=settings.target,
        dbt_executable=dbt_executable(),
    )
