"""`make ui` stops on INT and on TERM however it was started: from a script in the background
(make inherits SIGINT ignored) and under `setsid` from a script (its own session, SIGINT ignored).

Each case starts the real `make ui` (dagster dev: webserver, daemon, code servers) on a free port,
waits until GraphQL answers, sends the signal the way a person or a CI job would (INT to the
process group, as Ctrl-C or `kill -INT -- -PGID` does; TERM to make's pid, as `kill PID` or a CI
timeout does), and then requires that make exits, the port closes and no process of that
DAGSTER_HOME is left (the webserver's code servers included).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dataops.core.settings import REPO_ROOT
from tests.python.dagster_harness import dagster_env, dataops, free_port, graphql, wait_for

pytestmark = pytest.mark.slow

SCRIPTS = {
    # A script starting make in the background (SIGINT ignored for make) and waiting for it.
    "script": 'make --no-print-directory ui UI_PORT="$1" > "$2" 2>&1 &\necho $! > "$3"\nwait $!\n',
    # The same under setsid: make leads its own session and process group.
    "setsid": (
        'setsid make --no-print-directory ui UI_PORT="$1" > "$2" 2>&1 &\necho $! > "$3"\nwait $!\n'
    ),
}


def _default_signals() -> None:
    """Start the script as a CI step or a terminal would: INT, TERM and HUP at their defaults.
    This test process may not have them so: a pytest started in the background ignores INT, and
    Dagster's in-process execution (an earlier test in the same worker) copies INT's handler onto
    TERM (dagster._utils.interrupts), so TERM was ignored too and make, which keeps an inherited
    ignored signal ignored, never passed `kill PID` on."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A platform home whose dbt target holds a prepared manifest (make ui re-checks it)."""
    home = tmp_path_factory.mktemp("ui-stop") / "home"
    home.mkdir()
    dataops(home, "dbt", "prepare")
    return home


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (this test's DAGSTER_HOME)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "started, sig",
    [("script", "INT"), ("script", "TERM"), ("setsid", "INT"), ("setsid", "TERM")],
)
def test_make_ui_stops_on_int_and_term(home: Path, tmp_path: Path, started: str, sig: str):
    dagster_home = tmp_path / "dagster_home"
    env = dagster_env(home, dagster_home)
    marker = f"DAGSTER_HOME={dagster_home}"
    port = free_port()
    script = tmp_path / "start.sh"
    script.write_text(SCRIPTS[started])
    make_log, make_pid_file = tmp_path / "make.log", tmp_path / "make.pid"
    # The script leads its own process group, like a CI job step; stdin is not a terminal.
    runner = subprocess.Popen(
        ["bash", str(script), str(port), str(make_log), str(make_pid_file)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    try:

        def up() -> bool:
            assert runner.poll() is None, f"make ui exited:\n{make_log.read_text()[-3000:]}"
            try:
                return bool(graphql(port, "{ assetNodes { id } }")["assetNodes"])
            except OSError:
                return False

        wait_for("the Dagster webserver of make ui", up, interval=2)
        make_pid = int(make_pid_file.read_text())
        group = runner.pid if started == "script" else make_pid
        assert os.getpgid(make_pid) == group
        started_processes = processes_with(marker)
        assert len(started_processes) >= 3, started_processes  # dev, webserver, daemon, ...
        assert (dagster_home / "ui.pid").exists()

        began = time.monotonic()
        if sig == "INT":
            os.killpg(group, signal.SIGINT)  # Ctrl-C, or `kill -INT -- -PGID`
        else:
            os.kill(make_pid, signal.SIGTERM)  # `kill PID`, a CI timeout
        runner.wait(timeout=180)

        def all_gone() -> bool:
            return not processes_with(marker) and not port_open(port)

        wait_for("every process of make ui to exit", all_gone, timeout=30, interval=0.5)
        took = time.monotonic() - began
        log = make_log.read_text()
        assert "[supervise] received SIG" + sig in log, log[-3000:]
        assert "[supervise] stopped" in log, log[-3000:]
        assert not (dagster_home / "ui.pid").exists()
        print(f"{started}, SIG{sig}: everything stopped in {took:.1f} s")
    finally:
        leftovers = processes_with(marker)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
