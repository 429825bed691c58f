"""Helpers for the production tests: a PostgreSQL server that asks for a password, and the
Dagster services started exactly as deploy/systemd/ starts them (gRPC code server, daemon,
webserver, read-only webserver), each through `python -m dataops.core.secrets exec`, the
instance config from orchestration/instance/production/ and the workspace from deploy/.

Nothing here imports Dagster or psycopg2 at module level.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dataops.core.secrets import SECRETS
from dataops.core.settings import REPO_ROOT
from dataops.engines.local_postgres import LocalPostgres
from tests.python.dagster_harness import ProcessGroup, dagster_env, free_port, graphql, wait_for

PRODUCTION_YAML = REPO_ROOT / "orchestration" / "instance" / "production" / "dagster.yaml"
WORKSPACE = REPO_ROOT / "deploy" / "workspace.yaml"
BIN = Path(sys.executable).parent
SECRETS_EXEC = [sys.executable, "-m", "dataops.core.secrets", "exec", "--"]


@dataclass
class DagsterDatabase:
    """A PostgreSQL database for Dagster, reachable with a password only (scram-sha-256)."""

    server: LocalPostgres
    password: str
    password_file: Path
    user: str = "dagster"
    database: str = "dagster"

    def service_env(self) -> dict[str, str]:
        """What the services get: the password only through the file (a compose secret)."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.server.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_PASSWORD_FILE": str(self.password_file),
        }

    def connect(self, password: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.server.port,
            user=self.user,
            dbname=self.database,
            password=self.password if password is None else password,
            connect_timeout=30,
        )

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        con.close()
        return rows


@contextmanager
def dagster_database(folder: Path) -> Iterator[DagsterDatabase]:
    import psycopg2

    server = LocalPostgres.start()
    try:
        password = secrets.token_urlsafe(24)
        admin = psycopg2.connect(
            host="127.0.0.1", port=server.port, user=server.user, dbname=server.database
        )
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("create role dagster login password %s", (password,))
            cur.execute("create database dagster owner dagster")
            # From now on every TCP connection needs its password, as on a real server.
            (server.data_dir / "pg_hba.conf").write_text(
                "local all all trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
                "host all all ::1/128 scram-sha-256\n"
            )
            cur.execute("select pg_reload_conf()")
        admin.close()
        password_file = folder / "dagster_pg_password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        yield DagsterDatabase(server, password, password_file)
    finally:
        server.stop()


def install_production_instance(dagster_home: Path) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_YAML, dagster_home / "dagster.yaml")
    return dagster_home


@dataclass
class Services:
    """The long-running Dagster services of deploy/systemd/, on this machine's loopback."""

    home: Path
    dagster_home: Path
    database: DagsterDatabase
    code_port: int = field(default_factory=free_port)
    running: dict[str, ProcessGroup] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dagster_env(
            self.home,
            self.dagster_home,
            **self.database.service_env(),
            DAGSTER_CODE_SERVER_HOST="127.0.0.1",
            DAGSTER_CODE_SERVER_PORT=str(self.code_port),
        )
        # Secrets reach the services through their files only (the test process may hold one).
        for name in SECRETS:
            env.pop(name, None)
        return env

    def _start(self, name: str, args: list[str]) -> ProcessGroup:
        log = self.home / f"{name}.log"
        self.running[name] = ProcessGroup([*SECRETS_EXEC, *args], self.env, log)
        return self.running[name]

    def start_code_server(self) -> None:
        process = self._start(
            "code-server",
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.code_port),
                "-m",
                "orchestration.definitions",
            ],
        )

        def healthy() -> bool:
            assert process.alive(), f"the code server exited:\n{process.tail()}"
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.code_port)],
                capture_output=True,
                env=self.env,
            )
            return check.returncode == 0

        wait_for("the gRPC code server to be healthy", healthy, interval=2)

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)])

    def start_webserver(self, port: int, *, read_only: bool = False) -> None:
        name = "webserver-readonly" if read_only else "webserver"
        args = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
        process = self._start(name, [*args, *(["--read-only"] if read_only else [])] + [
            "-w",
            str(WORKSPACE),
        ])

        def up() -> bool:
            assert process.alive(), f"the {name} exited:\n{process.tail()}"
            try:
                return bool(graphql(port, "{ assetNodes { id } }")["assetNodes"])
            except OSError:
                return False

        wait_for(f"the {name} to answer GraphQL", up, interval=2)

    def stop(self, *names: str) -> None:
        for name in names or list(self.running):
            process = self.running.pop(name, None)
            if process is not None:
                process.stop()
