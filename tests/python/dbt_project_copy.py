"""Copy the dbt project into a temp folder: a test breaks a declaration without touching ours."""

from __future__ import annotations

import shutil
from pathlib import Path

from dataops.core.settings import REPO_ROOT

PROJECT_PARTS = ("dbt_project.yml", "profiles", "models", "macros", "seeds", "tests/dbt")


def copy_project(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, destination / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(source, destination / part)
    return destination
