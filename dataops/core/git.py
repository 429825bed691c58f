"""The commit the project is checked out at: what a release and a PR environment record as
theirs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dataops.core.settings import PROJECT_DIR


def git_commit(project_dir: Path = PROJECT_DIR) -> str | None:
    """The checked-out commit of the project, else GITHUB_SHA, else None (outside git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        result = None
    if result is not None and result.returncode == 0:
        return result.stdout.strip()
    return os.environ.get("GITHUB_SHA")
