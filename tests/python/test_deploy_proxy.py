"""The login in front of the UI, for real: nginx with deploy/'s config (rendered like envsubst,
TLS with a self-signed certificate, htpasswd files made with `htpasswd -B`) in front of the full
and the read-only Dagster webserver, both started as deploy/systemd/ starts them (loopback only,
gRPC code server, production instance on PostgreSQL).

No credentials or wrong ones -> 401; operators' credentials -> the UI and GraphQL answer and a
run can be launched; the analysts' read-only UI answers queries and refuses the same launch."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.python.dagster_harness import ProcessGroup, dataops, free_port, wait_for
from tests.python.deploy_files import htpasswd, nginx_command, write_proxy_config
from tests.python.production_harness import Services, dagster_database, install_production_instance

pytestmark = pytest.mark.slow

OPERATOR = ("operator", "operator-pass-17")  # pragma: allowlist secret
ANALYST = ("analyst", "analyst-pass-17")  # pragma: allowlist secret
DAGSTER_PAGE = re.compile(r"<title[^>]*>Dagster</title>")
ASSET_NODES = "{ assetNodes { assetKey { path } } }"
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""
LAUNCH_PARAMS = {
    "selector": {
        "repositoryLocationName": "orchestration.definitions",
        "repositoryName": "__repository__",
        "jobName": "daily_full_build",
    },
    "runConfigData": {},
}


@dataclass
class Proxy:
    port: int
    readonly_port: int
    tls: ssl.SSLContext
    webserver_port: int
    readonly_webserver_port: int

    def request(
        self,
        port: int,
        path: str = "/",
        *,
        auth: tuple[str, str] | None = None,
        query: str | None = None,
        variables: dict | None = None,
    ) -> tuple[int, str]:
        headers = {}
        data = None
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if query is not None:
            data = json.dumps({"query": query, "variables": variables or {}}).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"https://localhost:{port}{path}", data=data, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=60, context=self.tls) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[Proxy]:
    folder = tmp_path_factory.mktemp("proxy")
    home = folder / "home"
    home.mkdir()
    dataops(home, "dbt", "prepare")  # the definitions load a prepared manifest
    dagster_home = install_production_instance(home / "dagster_home")
    with dagster_database(folder) as database:
        services = Services(home, dagster_home, database)
        web_port, readonly_web_port = free_port(), free_port()
        nginx = None
        try:
            services.start_code_server()
            services.start_webserver(web_port)
            services.start_webserver(readonly_web_port, read_only=True)
            config = write_proxy_config(
                folder / "nginx",
                port=free_port(),
                readonly_port=free_port(),
                upstream=f"127.0.0.1:{web_port}",
                readonly_upstream=f"127.0.0.1:{readonly_web_port}",
                operators=htpasswd(folder / "htpasswd_operators", *OPERATOR),
                analysts=htpasswd(folder / "htpasswd_analysts", *ANALYST),
            )
            nginx = ProcessGroup(nginx_command(config), {}, folder / "nginx.log")
            tls = ssl.create_default_context(cafile=str(config.cert))

            def listening() -> bool:
                assert nginx.alive(), (config.folder / "error.log").read_text()
                with socket.socket() as sock:
                    return sock.connect_ex(("127.0.0.1", config.readonly_port)) == 0

            wait_for("nginx to listen", listening, timeout=60, interval=0.5)
            yield Proxy(config.port, config.readonly_port, tls, web_port, readonly_web_port)
        finally:
            if nginx is not None:
                nginx.stop(first=15)
            services.stop()


def test_without_or_with_wrong_credentials_the_proxy_answers_401(proxy):
    for port in (proxy.port, proxy.readonly_port):
        assert proxy.request(port)[0] == 401
        assert proxy.request(port, "/graphql", query=ASSET_NODES)[0] == 401
        assert proxy.request(port, auth=("operator", "wrong"))[0] == 401
    # Each audience has its own users: an analyst cannot log in to the full UI.
    assert proxy.request(proxy.port, auth=ANALYST)[0] == 401


def test_operators_get_the_ui_and_graphql_and_may_launch_a_run(proxy):
    status, page = proxy.request(proxy.port, auth=OPERATOR)
    assert status == 200 and DAGSTER_PAGE.search(page), page[:500]
    status, body = proxy.request(proxy.port, "/graphql", auth=OPERATOR, query=ASSET_NODES)
    assert status == 200, body
    keys = {"/".join(n["assetKey"]["path"]) for n in json.loads(body)["data"]["assetNodes"]}
    assert {"raw/shop/orders", "marts/fct_orders"} <= keys
    status, body = proxy.request(
        proxy.port, "/graphql", auth=OPERATOR, query=LAUNCH, variables={"params": LAUNCH_PARAMS}
    )
    launched = json.loads(body)["data"]["launchRun"]
    # Queued (no daemon runs in this test): the full UI accepted the launch.
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert launched["run"]["status"] == "QUEUED"


def test_the_read_only_ui_answers_analysts_and_refuses_a_launch(proxy):
    status, page = proxy.request(proxy.readonly_port, auth=ANALYST)
    assert status == 200 and DAGSTER_PAGE.search(page), page[:500]
    status, body = proxy.request(proxy.readonly_port, "/graphql", auth=ANALYST, query=ASSET_NODES)
    assert status == 200 and json.loads(body)["data"]["assetNodes"]
    status, body = proxy.request(
        proxy.readonly_port,
        "/graphql",
        auth=ANALYST,
        query=LAUNCH,
        variables={"params": LAUNCH_PARAMS},
    )
    refused = json.loads(body)["data"]["launchRun"]
    assert refused["__typename"] == "UnauthorizedError", refused


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


def test_the_webservers_listen_on_loopback_only(proxy):
    for port in (proxy.webserver_port, proxy.readonly_webserver_port):
        assert _listening_addresses(port) == {"127.0.0.1"}
