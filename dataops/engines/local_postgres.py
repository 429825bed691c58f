"""A throw-away PostgreSQL server from Debian's package: initdb + pg_ctl in a temp folder.

Used by the engine tests and benchmarks (and handy for trying the ``postgres`` target locally):
it listens on 127.0.0.1 only, on a free port, trusts local connections, and is removed on stop.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def postgres_bindir() -> Path:
    """The folder with initdb and pg_ctl: Debian's /usr/lib/postgresql/<newest>/bin, or PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise FileNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
        "`postgresql` (listed in system-packages.txt; run `make system-deps`)."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalPostgres:
    """A running server; ``env()`` gives the variables the profile's ``postgres`` output reads."""

    folder: Path
    port: int
    user: str = "dataops"
    database: str = "dataops"

    def env(self) -> dict[str, str]:
        return {
            "DATAOPS_PG_HOST": "127.0.0.1",
            "DATAOPS_PG_PORT": str(self.port),
            "DATAOPS_PG_USER": self.user,
            "DATAOPS_PG_DATABASE": self.database,
        }

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(postgres_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    @classmethod
    def start(cls) -> LocalPostgres:
        folder = Path(tempfile.mkdtemp(prefix="dataops-postgres-"))
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(folder, postgres.pw_uid, postgres.pw_gid)
        server = cls(folder=folder, port=free_port())
        server._run(
            "initdb",
            "-D",
            str(server.data_dir),
            "-U",
            server.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port} -k {folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        server._run(
            "pg_ctl",
            "-D",
            str(server.data_dir),
            "-o",
            options,
            "-l",
            str(folder / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        server._run(
            "createdb",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            server.user,
            server.database,
        )
        return server

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
