"""The Elementary path (elementary-data), for where a dbt package hub is reachable.

`dataops elementary setup`:
  1. checks the hub (``$DBT_PACKAGE_HUB_URL``, default https://hub.getdbt.com/) answers within a
     few seconds, and says so plainly when it does not;
  2. writes ``packages.yml`` with Elementary's dbt package pinned to the version of the installed
     ``elementary-data`` CLI (the committed project has no packages.yml: a fresh clone builds
     without ``dbt deps``; packages.yml and dbt_packages/ are generated, not committed);
  3. runs ``dbt deps`` (dbt reads ``DBT_PACKAGE_HUB_URL`` itself);
  4. turns Elementary's monitors on for the declared tables, from the same ``monitors`` blocks:
     one view per monitored source table over its staging model, under
     ``models/elementary_monitors/`` (generated), with volume_anomalies and freshness_anomalies
     bucketed by the declared ``event_time`` column, column_anomalies, and
     schema_changes_from_baseline against the staged columns' engine types;
  5. builds Elementary's own models (``dbt run --select elementary``) into the schema
     ``generate_schema_name`` gives the package (``elementary``; the PR schema on CI).
Then ``dataops run`` (or ``dataops build``) builds and tests the project; Elementary's on-run-end
hook stores the results. `dataops elementary report` runs ``edr report`` with a profile that
points at the schema dbt built Elementary's models into (read from the manifest), and writes its
HTML to a file. ``make elementary`` does all of it from a fresh clone.
Usage tracking is off: ``.edr/config.yml`` in the repo (``anonymous_usage_tracking: false``) is
passed as edr's config dir.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import yaml

from dataops.core.settings import PROJECT_DIR, REPO_ROOT, Settings
from dataops.dbt.runner import dbt_args, dbt_env, run_dbt_subprocess
from dataops.sources.registry import load_registry

DEFAULT_HUB = "https://hub.getdbt.com/"
PACKAGE = "elementary-data/elementary"
EDR_CONFIG_DIR = REPO_ROOT / ".edr"
MONITORS_FOLDER = Path("models") / "elementary_monitors"
COLUMN_MONITORS = {  # our metric -> Elementary column monitor
    "null_rate": "null_percent",
    "distinct_count": "count_distinct",
    "min": "min",
    "max": "max",
    "mean": "average",
}


class ElementaryNotSetUpError(RuntimeError):
    """Elementary's models are not in the manifest; the message says what to run."""


def package_version() -> str:
    """Elementary's dbt package version to pin: the same as the installed edr CLI."""
    return version("elementary-data")


def hub_url(explicit: str | None = None) -> str:
    return (explicit or os.environ.get("DBT_PACKAGE_HUB_URL") or DEFAULT_HUB).rstrip("/") + "/"


def hub_reachable(url: str, timeout: float = 3.0) -> str | None:
    """None when the hub serves Elementary's package index, else the reason it does not."""
    index = f"{url}api/v1/{PACKAGE}.json"
    try:
        with urllib.request.urlopen(index, timeout=timeout) as response:  # noqa: S310
            if response.status == 200:
                return None
            return f"{index} answered HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"{index} is not reachable ({error})"


def packages_yml(pinned: str) -> str:
    return yaml.safe_dump({"packages": [{"package": PACKAGE, "version": pinned}]}, sort_keys=False)


def engine_types(declared: dict[str, str]) -> dict[str, str]:
    """Declared types as DuckDB names them in its catalog (``decimal(18, 2)`` -> ``DECIMAL(18,2)``,
    ``int`` -> ``INTEGER``): schema_changes_from_baseline compares them with the catalog's."""
    import duckdb

    with duckdb.connect(":memory:") as con:
        return {
            name: con.execute(f"select typeof(cast(null as {data_type}))").fetchone()[0]
            for name, data_type in declared.items()
        }


def _warned(arguments: dict) -> dict:
    """A generic test's arguments (nested, as dbt 1.10+ expects) at severity warn."""
    return {**({"arguments": dict(arguments)} if arguments else {}),
            "config": {"severity": "warn"}}


def monitor_files(project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """Generated model + YAML per monitored source table, from the `monitors` declarations.

    Each model is a view over the table's staging model, so the monitors see staged names and
    types (the raw tables hold text as delivered). Volume and freshness are bucketed by the
    declared ``event_time``; a table without one gets a table-level volume monitor (row count per
    run) and no freshness monitor: the load time (`_loaded_at`) says when a file arrived, not when
    its records happened. Anomaly monitors warn, as the built-in ones do; a schema change errors.
    """
    files: dict[str, str] = {}
    models = []
    for table in load_registry(project_dir):
        if not table.monitors:
            continue
        monitors = table.monitors
        name = f"mon_{table.source}__{table.name}"
        files[f"{name}.sql"] = (
            "-- Generated by `dataops elementary setup` from the monitors declaration.\n"
            f"select * from {{{{ ref('{table.staging_model}') }}}}\n"
        )
        bucketed = {"timestamp_column": monitors.event_time} if monitors.event_time else {}
        tests: list = []
        if monitors.volume:
            tests.append({"elementary.volume_anomalies": _warned(bucketed)})
        if monitors.freshness and monitors.event_time:
            tests.append({"elementary.freshness_anomalies": _warned(bucketed)})
        tests.append("elementary.schema_changes_from_baseline")
        declared = {c.staged_name: c.data_type for c in table.columns}
        declared.update({d.name: d.data_type for d in table.derived})
        columns = []
        for column, data_type in engine_types(declared).items():
            entry: dict = {"name": column, "data_type": data_type}
            metrics = monitors.columns.get(column)
            if metrics:
                entry["data_tests"] = [{"elementary.column_anomalies": _warned(
                    {"column_anomalies": [COLUMN_MONITORS[m] for m in metrics], **bucketed}
                )}]
            columns.append(entry)
        models.append({
            "name": name,
            "description": f"Elementary monitors of source {table.key} (generated).",
            "config": {"materialized": "view", "schema": "elementary_monitors"},
            "data_tests": tests,
            "columns": columns,
        })
    files["_elementary_monitors__models.yml"] = (
        "# Generated by `dataops elementary setup` from the monitors declarations; do not edit.\n"
        + yaml.safe_dump({"version": 2, "models": models}, sort_keys=False)
    )
    return files


def _dbt(settings: Settings, project_dir: Path, command: str, *args: str) -> int:
    """dbt in a subprocess with its output shown (deps, run and build take a while)."""
    return run_dbt_subprocess(
        dbt_args(command, settings.target, extra=args, project_dir=project_dir),
        dbt_env(settings, project_dir=project_dir),
        cwd=project_dir,
        capture=False,
    ).returncode


def setup(
    settings: Settings, hub_url: str | None = None, project_dir: Path = PROJECT_DIR
) -> int:
    url = globals()["hub_url"](hub_url)
    reason = hub_reachable(url)
    if reason:
        print(
            f"Elementary needs a dbt package hub: {reason}. Set DBT_PACKAGE_HUB_URL to a reachable "
            "hub or mirror (or pass --hub-url). The built-in monitors keep working without it.",
            file=sys.stderr,
        )
        return 2
    pinned = package_version()
    (project_dir / "packages.yml").write_text(
        "# Generated by `dataops elementary setup`; not committed.\n" + packages_yml(pinned),
        encoding="utf-8",
    )
    print(f"wrote packages.yml: {PACKAGE} {pinned} (the version of the installed edr CLI)")
    os.environ["DBT_PACKAGE_HUB_URL"] = url
    if _dbt(settings, project_dir, "deps") != 0:
        return 1
    monitors = project_dir / MONITORS_FOLDER
    monitors.mkdir(parents=True, exist_ok=True)
    for name, text in monitor_files(project_dir).items():
        (monitors / name).write_text(text, encoding="utf-8")
    print(f"wrote Elementary monitors for the declared tables into {monitors}")
    # Only Elementary's own tables: the monitor views read staging models, built by the build.
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has none
    code = _dbt(settings, project_dir, "run", "--select", "package:elementary")
    if code == 0:
        print("Elementary is set up: now build (`dataops run`), then `dataops elementary report`.")
    return code


def elementary_schema(settings: Settings) -> str:
    """The schema dbt built Elementary's models into (``generate_schema_name`` decides), read from
    the manifest of the last dbt invocation, so that edr reads where dbt wrote."""
    path = settings.dbt_target_path / "manifest.json"
    try:
        nodes = json.loads(path.read_text(encoding="utf-8"))["nodes"]
    except (OSError, ValueError, KeyError):
        nodes = {}
    schemas = {n["schema"] for n in nodes.values()
               if n.get("package_name") == "elementary" and n.get("resource_type") == "model"}
    if len(schemas) != 1:
        raise ElementaryNotSetUpError(
            f"{path} has no Elementary models (found schemas {sorted(schemas)}): run "
            "`dataops elementary setup` and a build (`dataops run`) first, with the same "
            "DBT_TARGET_PATH."
        )
    return schemas.pop()


def edr_profiles(settings: Settings, directory: Path, schema: str) -> Path:
    """A profiles.yml with the `elementary` profile edr connects with: the same warehouse file,
    and the schema Elementary's models were built into."""
    directory.mkdir(parents=True, exist_ok=True)
    profile = {"elementary": {"target": settings.target, "outputs": {settings.target: {
        "type": "duckdb", "path": str(settings.warehouse_path), "schema": schema,
    }}}}
    path = directory / "profiles.yml"
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


def report(
    settings: Settings, output: Path | None = None, project_dir: Path = PROJECT_DIR
) -> int:
    output = (output or settings.home / "reports" / "elementary.html").resolve()
    try:
        schema = elementary_schema(settings)
    except ElementaryNotSetUpError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output.parent.mkdir(parents=True, exist_ok=True)
    profiles = edr_profiles(settings, settings.home / "elementary", schema)
    edr = str(Path(sys.executable).parent / "edr")
    command = [edr, "report", "--file-path", str(output), "--config-dir", str(EDR_CONFIG_DIR),
               "--profiles-dir", str(profiles.parent), "--project-dir", str(project_dir),
               "--project-profile-target", settings.target]
    # edr runs dbt on its own internal project: its artefacts go to a folder of their own, never
    # to the project's target path (they would replace the manifest the Dagster definitions load).
    env = dbt_env(settings, project_dir=project_dir, target_path=profiles.parent / "target")
    code = subprocess.run(command, env=env, cwd=project_dir).returncode
    if code == 0:
        print(f"wrote {output}")
    return code
