"""Shared fixtures: a throw-away platform home (landing folder + warehouse files) per test session.

Every test runs against real components: files written by the real generator, a real DuckDB file,
real dbt invocations. Nothing here touches the developer's own .dataops folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.settings import REPO_ROOT, Settings, load_settings

SMALL = {"order_items": 3_000, "days": 7}


def platform_env(home: Path, target: str = "dev") -> dict[str, str]:
    """Environment for a `dataops`/dbt subprocess working in `home`, with its own dbt target dir."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith(("DATAOPS_", "DBT_"))]:
        del env[key]
    env.update(
        {
            "DATAOPS_HOME": str(home),
            "DBT_TARGET": target,
            "DBT_TARGET_PATH": str(home / "target"),
            "DBT_LOG_PATH": str(home / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_VERSION_CHECK": "false",
            "DBT_PROFILES_DIR": str(REPO_ROOT / "profiles"),
        }
    )
    return env


def dataops(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real `dataops` command line in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", *args],
        cwd=REPO_ROOT,
        env=platform_env(home),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"dataops {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def settings_for(home: Path, monkeypatch: pytest.MonkeyPatch, target: str = "dev") -> Settings:
    monkeypatch.setenv("DATAOPS_HOME", str(home))
    monkeypatch.delenv("DATAOPS_LANDING", raising=False)
    monkeypatch.delenv(f"DATAOPS_WAREHOUSE_{target.upper()}", raising=False)
    return load_settings(target)


@pytest.fixture(scope="session")
def sample_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A landing folder with a small sample of every source, generated once per session."""
    from orchestration.sample_data.generator import generate

    landing = tmp_path_factory.mktemp("sample") / "landing"
    generate(landing, **SMALL)
    return landing


@pytest.fixture(scope="session")
def built_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A platform home after one full `dataops run` on the small sample: (home, its output)."""
    home = tmp_path_factory.mktemp("platform")
    dataops(
        home, "generate", "--order-items", str(SMALL["order_items"]), "--days", str(SMALL["days"])
    )
    result = dataops(home, "run")
    yield home, result.stdout


# The Dagster tests' session fixture (a built home with an emptied landing folder), shared by
# test_dagster_daemon.py and test_ui.py; defined with its helpers in dagster_harness.py.
from tests.python.dagster_harness import dagster_platform  # noqa: E402, F401
