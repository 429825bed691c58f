"""The run launcher's warm worker (orchestration/launcher.py): kept only by the daemon, and
discarded when what the code location is built from changed since it started.

The daemon tests (test_dagster_daemon.py) check that landed files' runs execute in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration.launcher import (
    WarmingQueuedRunCoordinator,
    code_fingerprint,
    is_daemon_process,
    set_sensor_loop_seconds,
)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["/repo/.venv/bin/dagster-daemon", "run", "-m", "orchestration.definitions"], True),
        # `dagster dev` starts its daemon as `python -m dagster._daemon run ...`
        (["/repo/.venv/lib/python3.12/site-packages/dagster/_daemon/__main__.py", "run"], True),
        (["/repo/.venv/bin/dagster-daemon", "liveness-check"], False),
        (["/repo/.venv/bin/dagster-webserver", "-m", "orchestration.definitions"], False),
        (["/repo/.venv/bin/dagster", "dev", "-m", "orchestration.definitions"], False),
        (["/repo/.venv/bin/pytest", "tests/python"], False),
        ([], False),
    ],
)
def test_only_the_daemon_process_keeps_a_warm_worker(argv, expected):
    assert is_daemon_process(argv) is expected


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_change_to_the_code_the_registry_or_the_manifest_discards_the_warm_worker(tmp_path):
    module = _touch(tmp_path / "orchestration" / "assets" / "dbt.py")
    library = _touch(tmp_path / "dataops" / "core" / "settings.py")
    registry = _touch(tmp_path / "models" / "staging" / "shop" / "_shop__sources.yml")
    manifest = _touch(tmp_path / "target" / "manifest.json", "{}")
    _touch(tmp_path / "models" / "staging" / "shop" / "stg_shop__orders.sql")

    def fingerprint():
        return code_fingerprint(manifest, root=tmp_path)

    seen = {fingerprint()}
    assert fingerprint() in seen  # unchanged files, same fingerprint
    for path in (module, library, registry, manifest):
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        assert fingerprint() not in seen, f"a change to {path.name} went unnoticed"
        seen.add(fingerprint())
    _touch(tmp_path / "orchestration" / "sensors" / "new_sensor.py")
    assert fingerprint() not in seen, "a new module went unnoticed"


def test_the_sensor_loop_interval_comes_from_the_instance_config(monkeypatch):
    import yaml
    from dagster._daemon import sensor as sensor_daemon
    from dagster._serdes import ConfigurableClassData

    from dataops.core.settings import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "orchestration/instance/dagster.yaml").read_text())
    coordinator_config = config["run_coordinator"]["config"]
    coordinator = WarmingQueuedRunCoordinator.from_config_value(
        ConfigurableClassData("orchestration.launcher", "WarmingQueuedRunCoordinator", ""),
        coordinator_config,
    )
    assert coordinator._sensor_loop_seconds == coordinator_config["sensor_loop_seconds"] == 1
    assert coordinator.dequeue_interval_seconds == 1  # Dagster's own keys still read

    loop = sensor_daemon.MIN_INTERVAL_LOOP_TIME
    monkeypatch.setattr(sensor_daemon, "MIN_INTERVAL_LOOP_TIME", loop)  # restored afterwards
    set_sensor_loop_seconds(1)
    assert sensor_daemon.MIN_INTERVAL_LOOP_TIME == 1  # what the loop sleeps between iterations
    with pytest.raises(ValueError, match="positive"):
        set_sensor_loop_seconds(0)
