"""Produce dbt's manifest for the rules: `dbt parse` with the in-memory `lint` target.

The parse writes into its own target folder (`target/lint/` by default), so it neither takes a
warehouse lock nor disturbs the partial-parse state of dev/ci/prod runs; partial parsing keeps it
warm (about 2-3 s when nothing changed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataops.dbt.runner import dbt_args, dbt_env, invoke

LINT_TARGET = "lint"


class ParseError(RuntimeError):
    """`dbt parse` failed; dbt has printed why."""


def lint_target_path(project_dir: Path) -> Path:
    """Where lint-time dbt artefacts go (DBT_TARGET_PATH of the lint commands)."""
    return project_dir / "target" / "lint"


def lint_env(project_dir: Path, target_path: Path | None = None) -> dict[str, str]:
    """Environment for dbt (and the sqlfluff dbt templater) on the in-memory lint target."""
    return dbt_env(
        target=LINT_TARGET,
        project_dir=project_dir,
        target_path=target_path or lint_target_path(project_dir),
    )


def parse_manifest(project_dir: Path, target_path: Path | None = None) -> dict[str, Any]:
    """Run `dbt parse` in this process on the lint target and return the manifest as a dict."""
    project_dir = project_dir.resolve()
    target_path = target_path or lint_target_path(project_dir)
    result = invoke(
        dbt_args("parse", LINT_TARGET, extra=["--quiet"], project_dir=project_dir),
        lint_env(project_dir, target_path),
    )
    if not result.success:
        raise ParseError(
            f"dbt parse failed for {project_dir} ({result.exception or 'see the error above'}); "
            "fix the model, YAML or macro it names, then run `dataops lint rules` again"
        )
    return load_manifest(target_path / "manifest.json")


def load_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ParseError(f"{path} does not exist: run `dbt parse` first or omit --manifest")
    return json.loads(path.read_text())
