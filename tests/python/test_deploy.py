"""Static checks of deploy/: what cannot run here (containers) is validated, the rest is checked
by the real tools (systemd-analyze, nginx -t) before tests/python/test_deploy_proxy.py runs it.

- systemd units: `systemd-analyze verify` (unknown keys, bad values, missing commands), every
  service started through the secrets wrapper, webservers and code server on loopback only;
- the env template: keys only, no values, no secret, and every variable the configs read;
- nginx: the template renders and `nginx -t` accepts it;
- Dockerfile: hadolint; compose: the compose specification's schema (check-jsonschema), only
  the proxy publishes ports, every platform service gets its database password as a secret file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataops.core.secrets import FILE_SUFFIX, SECRETS
from tests.python.deploy_files import (
    DEPLOY,
    NGINX_TEMPLATE,
    TEMPLATE_NAME,
    UNITS,
    htpasswd,
    nginx_command,
    units_for_this_checkout,
    write_proxy_config,
)
from tests.python.production_harness import PRODUCTION_YAML, WORKSPACE

BIN = Path(sys.executable).parent
WRAPPER = "python -m dataops.core.secrets exec -- "
ENV_TEMPLATE = DEPLOY / "dataops.env.example"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"


def _exec_start(unit: Path) -> str:
    [line] = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=")


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    assert {unit.name for unit in UNITS} == {
        "dataops-code-server.service",
        "dataops-daemon.service",
        "dataops-webserver.service",
        "dataops-webserver-readonly.service",
    }
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is missing: `make system-deps` installs systemd"
    copies = units_for_this_checkout(tmp_path / "units")
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *map(str, copies)], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # The check fails on a broken unit (so a pass means something).
    broken = tmp_path / "units" / "dataops-daemon.service"
    broken.write_text(broken.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(broken)], capture_output=True, text=True
    )
    assert "Failed to parse service restart specifier" in result.stderr


def test_every_service_starts_through_the_secrets_wrapper_on_loopback():
    for unit in UNITS:
        text = unit.read_text()
        assert "EnvironmentFile=/etc/dataops/dataops.env" in text, unit.name
        assert "User=dataops" in text, unit.name
        assert "Environment=DAGSTER_PG_PASSWORD_FILE=%d/dagster_pg_password" in text, unit.name
        assert WRAPPER in _exec_start(unit), unit.name
    web = _exec_start(DEPLOY / "systemd" / "dataops-webserver.service")
    readonly = _exec_start(DEPLOY / "systemd" / "dataops-webserver-readonly.service")
    code = _exec_start(DEPLOY / "systemd" / "dataops-code-server.service")
    for command in (web, readonly, code):
        assert " -h 127.0.0.1 " in command, command
    assert "--read-only" in readonly and "--read-only" not in web
    for command in (web, readonly, _exec_start(DEPLOY / "systemd" / "dataops-daemon.service")):
        assert "-w /opt/dataops/deploy/workspace.yaml" in command


def _template_keys() -> list[str]:
    keys = []
    for number, line in enumerate(ENV_TEMPLATE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=", line)
        assert match, f"{ENV_TEMPLATE.name}:{number}: a template line is `NAME=` (no value): {line}"
        keys.append(match.group(1))
    return keys


def _env_references(path: Path) -> set[str]:
    return set(re.findall(r"\{env: ([A-Z][A-Z0-9_]*)\}", path.read_text()))


def test_the_env_template_has_every_variable_and_no_value_or_secret():
    keys = _template_keys()
    assert len(keys) == len(set(keys)), "a key appears twice"
    secret_names = set(SECRETS) | {name + FILE_SUFFIX for name in SECRETS}
    assert not secret_names & set(keys), "secrets never go in the env file"
    needed = (
        _env_references(PRODUCTION_YAML)
        | _env_references(WORKSPACE)
        | set(TEMPLATE_NAME.findall(NGINX_TEMPLATE.read_text()))
        | {name for unit in UNITS for name in TEMPLATE_NAME.findall(unit.read_text())}
    ) - secret_names
    assert needed - set(keys) == set(), f"missing from {ENV_TEMPLATE.name}"
    assert {"DATAOPS_HOME", "DBT_TARGET", "DAGSTER_HOME"} <= set(keys)


def test_the_nginx_config_renders_and_passes_nginx_t(tmp_path):
    operators = htpasswd(tmp_path / "operators", "operator", "op-secret-1")
    analysts = htpasswd(tmp_path / "analysts", "analyst", "an-secret-1")
    config = write_proxy_config(
        tmp_path / "nginx",
        port=17443,
        readonly_port=17444,
        upstream="127.0.0.1:17300",
        readonly_upstream="127.0.0.1:17301",
        operators=operators,
        analysts=analysts,
    )
    result = subprocess.run(nginx_command(config, "-t"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    rendered = (config.folder / "conf.d" / "dataops.conf").read_text()
    assert "${" not in rendered and "$http_upgrade" in rendered  # nginx's own variables stay
    assert rendered.count("auth_basic_user_file") == 2  # both servers ask for a login


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["python", "-m", "dataops.core.secrets", "exec", "--"]' in text
    assert "orchestration/instance/production/dagster.yaml" in text
    assert re.search(r"^USER \d+", text, re.MULTILINE), "the image runs as a non-root user"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_matches_the_compose_specification(tmp_path):
    check = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*check, str(COMPOSE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    command: [", "    comand: [", 1))
    assert subprocess.run([*check, str(broken)], capture_output=True).returncode != 0


def test_only_the_proxy_is_published_and_secrets_come_as_files(compose):
    services = compose["services"]
    assert {
        "postgres",
        "code-location",
        "daemon",
        "webserver",
        "webserver-readonly",
        "proxy",
    } <= set(services)
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert "--read-only" in services["webserver-readonly"]["command"]
    for name in ("code-location", "daemon", "webserver", "webserver-readonly"):
        service = services[name]
        env = service["environment"]
        assert env["DAGSTER_PG_PASSWORD_FILE"] == "/run/secrets/dagster_pg_password", name
        assert "dagster_pg_password" in service["secrets"], name
        assert not {key for key in env if key in SECRETS}, f"{name}: a secret value in env"
    for volume in services["proxy"]["volumes"]:
        source = volume.split(":")[0]
        assert (DEPLOY / source).exists(), source
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # deploy/secrets/ is never committed
