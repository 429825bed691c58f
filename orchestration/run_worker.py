"""A run worker started before its run: ``python -m orchestration.run_worker <module>``
(``--no-dbt-preload``: its dbt steps start dbt processes, as a new run worker's do).

Started by the run launcher (orchestration/launcher.py) while no run needs it, it imports
Dagster's run execution and the code location ``<module>`` (Dagster, dagster-dbt, the asset graph
built from the prepared manifest: the seconds a new run worker otherwise spends before its first
step) and parses the dbt project for its dbt steps (dataops/dbt/preloaded.py: they then run dbt
in this process instead of starting a ``dbt`` process that parses it again), then waits for one
line on stdin: the serialized arguments of ``dagster api execute_run``. It executes that run
exactly as ``dagster api execute_run`` does, then exits. An empty stdin (the launcher closed it,
or the daemon stopped) ends it at once, also mid-warm-up, without running anything.
"""

from __future__ import annotations

import os
import queue
import sys
import threading


def warm_up(module_name: str, preload_dbt: bool = True) -> None:
    """Import what executing a run of ``module_name`` imports, and build its definitions; with
    ``preload_dbt``, also parse the dbt project of its dbt resource."""
    import importlib

    import dagster._cli.api  # noqa: F401  (the entry point of `dagster api execute_run`)
    from dagster import DagsterInstance, Definitions

    if os.environ.get("DAGSTER_HOME"):
        # The run opens the instance (its storage modules and SQLAlchemy: seconds of imports).
        with DagsterInstance.get() as instance:
            instance.run_storage  # noqa: B018
            instance.event_log_storage  # noqa: B018
    from orchestration.resources import DataopsDbtCliResource

    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, Definitions):
            value.get_repository_def()  # cached on the object; the run reuses it
            for resource in (value.resources or {}).values():
                if preload_dbt and isinstance(resource, DataopsDbtCliResource):
                    try:
                        resource.preload()
                    except Exception as error:  # the steps then run dbt as a subprocess
                        print(f"run worker: dbt project not preloaded: {error}", file=sys.stderr)


def main(argv: list[str]) -> int:
    preload_dbt = "--no-dbt-preload" not in argv
    argv = [arg for arg in argv if arg != "--no-dbt-preload"]
    if len(argv) != 1:
        print(
            "usage: python -m orchestration.run_worker <code location module> [--no-dbt-preload]",
            file=sys.stderr,
        )
        return 2
    received: queue.Queue[str] = queue.Queue()

    def read_stdin() -> None:
        line = sys.stdin.readline().strip()
        if not line:
            os._exit(0)  # the launcher is gone or discarded this worker: nothing to run
        received.put(line)

    threading.Thread(target=read_stdin, daemon=True).start()
    warm_up(argv[0], preload_dbt)
    serialized = received.get()
    from dagster._cli.api import execute_run_command

    # The body of `dagster api execute_run <args>` (it exits non-zero when the run fails).
    execute_run_command.callback(input_json=serialized, compressed_input_json=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
