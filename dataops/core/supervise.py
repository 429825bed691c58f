"""Run a long-lived command (``dagster dev`` for ``make ui``) so that INT or TERM always stops it
and everything it started, however it was launched.

Why a supervisor: a shell started in the background by a script, or a ``make`` under ``setsid``
from one, inherits SIGINT *ignored*; a shell cannot trap a signal ignored on entry, and
``dagster dev`` maps TERM to its INT handler, so it then ignores TERM as well. Its webserver went
away but the daemon and code servers stayed for minutes. Here:

- INT, TERM and HUP are handled whatever was inherited (Python may replace an ignored handler);
  GNU make forwards TERM to its recipe, and a signal to make's process group reaches us too;
- the command runs in its own process group with INT/TERM restored to their defaults, so it
  shuts down gracefully on the INT it is sent; the group id is written to ``--pid-file``;
- after ``--grace`` seconds the group gets TERM, then KILL; when the command has exited, anything
  left in its group (code servers, run workers) is stopped the same way.

Usage: ``python -m dataops.core.supervise [--pid-file F] [--grace S] -- command [args...]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(message: str) -> None:
    print(f"[supervise] {message}", file=sys.stderr, flush=True)


def _restore_default_signals() -> None:  # runs in the child between fork and exec
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group(pgid: int, child: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.poll()  # reap the leader as soon as it exits
        if child.returncode is not None and not group_alive(pgid):
            return True
        time.sleep(0.2)
    child.poll()
    return child.returncode is not None and not group_alive(pgid)


def stop_group(pgid: int, child: subprocess.Popen, grace: float) -> None:
    """INT to the leader, then TERM and KILL to the whole group, until nothing of it is left."""
    if child.poll() is None:
        _say(f"stopping process group {pgid} (SIGINT, up to {grace:.0f} s)")
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT)
        if _wait_group(pgid, child, grace):
            return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if not group_alive(pgid):
            child.poll()
            return
        _say(f"process group {pgid} still running: {signal.Signals(sig).name}")
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if _wait_group(pgid, child, wait):
            return


def supervise(command: list[str], pid_file: Path | None = None, grace: float = 60.0) -> int:
    requested: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        requested.append(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    child = subprocess.Popen(command, process_group=0, preexec_fn=_restore_default_signals)
    pgid = child.pid
    if pid_file is not None:
        pid_file.write_text(f"{pgid}\n")
    try:
        while child.poll() is None and not requested:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.5)
        if requested:
            _say(f"received {signal.Signals(requested[0]).name}")
        stop_group(pgid, child, grace)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    if requested:
        _say("stopped")
        return 0
    return child.returncode or 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dataops.core.supervise")
    parser.add_argument("--pid-file", type=Path, help="where to write the command's group id")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds before TERM/KILL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    sys.exit(supervise(command, args.pid_file, args.grace))


if __name__ == "__main__":
    main()
