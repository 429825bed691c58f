"""The files of deploy/ made runnable here: the systemd units with this checkout's Python, the
nginx template rendered like envsubst does, a self-signed TLS certificate, htpasswd files, and a
minimal nginx main config around the rendered server blocks (what /etc/nginx/nginx.conf is on a
server). Used by the static checks and by the proxy test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dataops.core.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
NGINX_TEMPLATE = DEPLOY / "nginx" / "dataops.conf.template"
NGINX_SNIPPET = DEPLOY / "nginx" / "dataops-proxy.conf"
INSTALLED_PYTHON = "/opt/dataops/.venv/bin/python"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"
TEMPLATE_NAME = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def render(template: str, values: dict[str, str]) -> str:
    """envsubst for the given names only (nginx's own $variables stay); every name must be set."""
    missing = sorted(set(TEMPLATE_NAME.findall(template)) - set(values))
    assert not missing, f"no value for {missing}"
    return TEMPLATE_NAME.sub(lambda match: values[match.group(1)], template)


def units_for_this_checkout(folder: Path) -> list[Path]:
    """The units with the installed Python's path pointing at this checkout's (nothing else)."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for unit in UNITS:
        text = unit.read_text()
        assert INSTALLED_PYTHON in text, f"{unit.name} does not run {INSTALLED_PYTHON}"
        copy = folder / unit.name
        copy.write_text(text.replace(INSTALLED_PYTHON, sys.executable))
        copies.append(copy)
    return copies


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def htpasswd(path: Path, user: str, password: str) -> Path:
    """A bcrypt entry, as README "Run in production" tells an operator to add users."""
    subprocess.run(
        [HTPASSWD, "-B", "-b", *([] if path.exists() else ["-c"]), str(path), user, password],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class ProxyConfig:
    folder: Path
    port: int
    readonly_port: int
    cert: Path
    key: Path

    @property
    def main_config(self) -> Path:
        return self.folder / "nginx.conf"


def write_proxy_config(
    folder: Path,
    *,
    port: int,
    readonly_port: int,
    upstream: str,
    readonly_upstream: str,
    operators: Path,
    analysts: Path,
) -> ProxyConfig:
    """The deploy template rendered into ``folder`` plus a main config that includes it, with
    every path (pid, logs, temp files) inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(folder)
    (folder / "snippets").mkdir(exist_ok=True)
    shutil.copy(NGINX_SNIPPET, folder / "snippets" / NGINX_SNIPPET.name)
    values = {
        "DATAOPS_SERVER_NAME": "localhost",
        "DATAOPS_PROXY_PORT": f"127.0.0.1:{port}",
        "DATAOPS_PROXY_READONLY_PORT": f"127.0.0.1:{readonly_port}",
        "DAGSTER_WEBSERVER_UPSTREAM": upstream,
        "DAGSTER_WEBSERVER_READONLY_UPSTREAM": readonly_upstream,
        "DATAOPS_TLS_CERT": str(cert),
        "DATAOPS_TLS_KEY": str(key),
        "DATAOPS_HTPASSWD_OPERATORS": str(operators),
        "DATAOPS_HTPASSWD_ANALYSTS": str(analysts),
    }
    (folder / "conf.d").mkdir(exist_ok=True)
    (folder / "conf.d" / "dataops.conf").write_text(render(NGINX_TEMPLATE.read_text(), values))
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "tmp" / temp).mkdir(parents=True, exist_ok=True)
    # As root, workers run as root here so they can read the test's private temp folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (
        f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log notice;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {folder}/access.log;\n"
        f"    client_body_temp_path {folder}/tmp/client_body;\n"
        f"    proxy_temp_path {folder}/tmp/proxy;\n"
        f"    fastcgi_temp_path {folder}/tmp/fastcgi;\n"
        f"    uwsgi_temp_path {folder}/tmp/uwsgi;\n"
        f"    scgi_temp_path {folder}/tmp/scgi;\n"
        "    include conf.d/*.conf;\n"
        "}\n"
    )
    config = ProxyConfig(folder, port, readonly_port, cert, key)
    config.main_config.write_text(main)
    return config


def nginx_command(config: ProxyConfig, *extra: str) -> list[str]:
    return [NGINX, "-p", f"{config.folder}/", "-c", str(config.main_config), *extra]
