"""Shared fixtures: the sample data and one built platform per test session, copied for each test
that changes anything.

Every test runs against real components: files written by the real generator, a real DuckDB file,
real dbt invocations. Nothing here touches the developer's own .dataops folder.

- ``sample_landing``: the small sample's landing folder (generated once per session).
- ``built_platform``: a platform home after one `dataops run` of that sample, built once per
  session, shared by every pytest-xdist worker (a file lock elects the builder) and READ ONLY:
  its warehouse checksum is compared at the end of the session and a change fails the run.
- ``platform_copy``: a private copy of the built home for a test that writes to it.
- Any test that uses the built platform (directly or through another fixture) is marked slow,
  so `make test-fast` (``-m "not slow"``) never builds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from dataops.core.settings import REPO_ROOT, Settings, load_settings
from dataops.dbt.runner import QUIET_ENV

SMALL = {"order_items": 3_000, "days": 7}
# Tests write a file and ingest it at once: no settle window (dataops/ingestion/landing.py) unless
# a test asks for one (the slow-writer tests do).
NO_SETTLE = {"DATAOPS_SETTLE_SECONDS": "0"}
os.environ.update(NO_SETTLE)
# Fixtures that need the full build; a test using one of them (even indirectly) is slow.
BUILD_FIXTURES = {"built_platform", "platform_copy", "dagster_platform"}


def platform_env(home: Path, target: str = "dev") -> dict[str, str]:
    """Environment for a `dataops`/dbt subprocess working in `home`, with its own dbt target dir."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith(("DATAOPS_", "DBT_"))]:
        del env[key]
    env.update(QUIET_ENV)
    env.update(
        {
            "DATAOPS_HOME": str(home),
            "DBT_TARGET": target,
            "DBT_TARGET_PATH": str(home / "target"),
            "DBT_LOG_PATH": str(home / "logs"),
            "DBT_PROFILES_DIR": str(REPO_ROOT / "profiles"),
            **NO_SETTLE,
        }
    )
    return env


def dataops(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real `dataops` command line in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "dataops", *args],
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


def clone_home(built: Path, destination: Path) -> Path:
    """A private copy of a built home (warehouse, landing, archive, dbt target).

    The copy keeps the same relative layout and warehouse file name (so its DuckDB catalog name);
    its DATAOPS_HOME differs, so dbt re-parses on first use."""
    shutil.copytree(
        built, destination, ignore=shutil.ignore_patterns("logs", "dagster_home", "reports")
    )
    return destination


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shared(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder shared by all pytest-xdist workers of this session (the base temp's parent)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BUILD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def sample_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A landing folder with a small sample of every source, generated once per session."""
    from dataops.sample_data.generator import generate

    folder = _shared(tmp_path_factory, "sample")
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not (folder / ".done").exists():
            shutil.rmtree(folder / "landing", ignore_errors=True)
            generate(folder / "landing", **SMALL)
            (folder / ".done").touch()
    return folder / "landing"


@dataclass(frozen=True)
class BuiltPlatform:
    home: Path
    output: str  # what `dataops run` printed

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse_dev.duckdb"

    def __iter__(self):  # `home, output = built_platform`
        return iter((self.home, self.output))


@pytest.fixture(scope="session")
def built_platform(
    tmp_path_factory: pytest.TempPathFactory, sample_landing: Path
) -> Iterator[BuiltPlatform]:
    """A platform home after one full `dataops run` on the small sample. Read only: copy it
    (``platform_copy`` or :func:`clone_home`) before changing anything."""
    folder = _shared(tmp_path_factory, "built")
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    with FileLock(str(folder / ".lock")):
        if not (folder / ".done").exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir()
            shutil.copytree(sample_landing, home / "landing")
            output = dataops(home, "run").stdout
            (folder / "output.txt").write_text(output, encoding="utf-8")
            (folder / "warehouse.sha256").write_text(_file_digest(home / "warehouse_dev.duckdb"))
            (folder / ".done").touch()
    built = BuiltPlatform(home, (folder / "output.txt").read_text(encoding="utf-8"))
    yield built
    expected = (folder / "warehouse.sha256").read_text()
    if _file_digest(built.warehouse) != expected:
        pytest.fail(
            f"a test changed the shared built platform's warehouse {built.warehouse}: tests that "
            "write must use `platform_copy` (or clone_home) instead of `built_platform`",
            pytrace=False,
        )


@pytest.fixture
def platform_copy(built_platform: BuiltPlatform, tmp_path: Path) -> Path:
    """A private copy of the built platform's home for one test."""
    return clone_home(built_platform.home, tmp_path / "home")


@pytest.fixture(scope="session")
def dagster_platform(
    built_platform: BuiltPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The built platform with its landing folder emptied into ``<home>/archive``: Dagster tests
    start from a warehouse with everything loaded and land new files themselves. Read only:
    copy it with :func:`clone_home` before changing it."""
    home = clone_home(built_platform.home, tmp_path_factory.mktemp("dagster_platform") / "home")
    (home / "landing").rename(home / "archive")
    (home / "landing").mkdir()
    return home
