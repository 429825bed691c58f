"""Secrets come from the environment or from files named by ``<NAME>_FILE``, through one registry
(dataops/core/secrets.py) that the README lists; the pre-commit hook refuses a committed secret.

The hook test commits for real in a temporary clone: the fake secrets are generated at run time
from a seed (so this file holds none), each kind in its own commit attempt, and a harmless file
commits fine (the hook does not simply refuse everything)."""

from __future__ import annotations

import ast
import random
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest

from dataops.core import secrets
from dataops.core.secrets import SECRETS, SecretError, read_secret, resolve_files
from dataops.core.settings import REPO_ROOT

# --- reading ----------------------------------------------------------------------------------


def test_a_secret_comes_from_its_variable_or_from_the_file_it_names(tmp_path):
    assert read_secret("GITHUB_TOKEN", {}) is None
    assert read_secret("GITHUB_TOKEN", {"GITHUB_TOKEN": "from-env"}) == "from-env"
    file = tmp_path / "token"
    file.write_text("from-file\n")  # `echo value > file` leaves a newline: dropped
    assert read_secret("GITHUB_TOKEN", {"GITHUB_TOKEN_FILE": str(file)}) == "from-file"
    file.write_text("two\nlines")
    assert read_secret("GITHUB_TOKEN", {"GITHUB_TOKEN_FILE": str(file)}) == "two\nlines"


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"GITHUB_TOKEN": "a", "GITHUB_TOKEN_FILE": "/x"}, "Both GITHUB_TOKEN and GITHUB_TOKEN_"),
        ({"GITHUB_TOKEN_FILE": "/nonexistent/token"}, "GITHUB_TOKEN_FILE=/nonexistent/token"),
    ],
)
def test_a_misconfigured_secret_fails_naming_the_variable(environ, message):
    with pytest.raises(SecretError, match=re.escape(message)):
        read_secret("GITHUB_TOKEN", environ)


def test_an_empty_secret_file_and_an_unregistered_name_are_refused(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        read_secret("GITHUB_TOKEN", {"GITHUB_TOKEN_FILE": str(tmp_path / "empty")})
    with pytest.raises(SecretError, match="not a registered secret"):
        read_secret("SOME_PASSWORD", {"SOME_PASSWORD": "x"})


def test_exec_hands_file_secrets_to_a_program_as_variables(tmp_path):
    (tmp_path / "pw").write_text("s3cr3t-from-file\n")
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_PG_PASSWORD_FILE": str(tmp_path / "pw")}
    show = (
        "import os; "
        "print(os.environ['DAGSTER_PG_PASSWORD'], 'DAGSTER_PG_PASSWORD_FILE' in os.environ)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "dataops.core.secrets", "exec", "--", sys.executable, "-c", show],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["s3cr3t-from-file", "False"]
    env["DAGSTER_PG_PASSWORD_FILE"] = str(tmp_path / "missing")
    failed = subprocess.run(
        [sys.executable, "-m", "dataops.core.secrets", "exec", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0
    assert "DAGSTER_PG_PASSWORD_FILE=" in failed.stderr and "cannot read" in failed.stderr


def test_dbt_and_the_engine_loaders_get_the_warehouse_password_from_a_file(tmp_path, monkeypatch):
    from dataops.dbt.runner import dbt_env
    from dataops.engines.profile import profile_output

    password = "pg-pass-from-file"  # pragma: allowlist secret
    (tmp_path / "pg").write_text(password + "\n")
    monkeypatch.delenv("DBT_ENV_SECRET_PG_PASSWORD", raising=False)
    monkeypatch.setenv("DBT_ENV_SECRET_PG_PASSWORD_FILE", str(tmp_path / "pg"))
    env = dbt_env(target="postgres")
    assert env["DBT_ENV_SECRET_PG_PASSWORD"] == password
    assert "DBT_ENV_SECRET_PG_PASSWORD_FILE" not in env
    assert profile_output("postgres")["password"] == password


def test_resolve_files_touches_only_registered_names(tmp_path):
    (tmp_path / "v").write_text("value")
    environ = {"ALERT_WEBHOOK_URL_FILE": str(tmp_path / "v"), "OTHER_FILE": str(tmp_path / "v")}
    assert resolve_files(environ) == ["ALERT_WEBHOOK_URL"]
    assert environ == {"ALERT_WEBHOOK_URL": "value", "OTHER_FILE": str(tmp_path / "v")}


# --- one registry, listed in the README --------------------------------------------------------


def _python_files() -> list[Path]:
    return [
        path
        for package in ("dataops", "orchestration")
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    ]


def test_no_module_reads_a_secret_around_the_registry():
    """`os.environ.get("GITHUB_TOKEN")` (or a constant holding the name) skips *_FILE support."""
    wrong = []
    for path in _python_files():
        if path == Path(secrets.__file__):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call | ast.Subscript):
                continue
            text = ast.unparse(node)
            if not re.match(r"os\.(environ|getenv)\b", text):
                continue
            args = node.args if isinstance(node, ast.Call) else [node.slice]
            for arg in args:
                name = arg.value if isinstance(arg, ast.Constant) else None
                if isinstance(arg, ast.Name):
                    name = constants.get(arg.id)
                if name in SECRETS:
                    wrong.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {text}")
    assert not wrong, "read these through dataops.core.secrets.read_secret:\n" + "\n".join(wrong)


def test_the_readme_lists_every_secret_where_it_is_read():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Secrets", 1)[1].split("\n## ", 1)[0]
    for secret in SECRETS.values():
        assert f"`{secret.name}`" in section, f"README 'Secrets' does not list {secret.name}"
        paths = re.findall(r"[\w./]+\.(?:py|yml|yaml)", secret.read_by)
        assert paths and all((REPO_ROOT / path).exists() for path in paths), secret.read_by
        assert any(
            secret.name in (REPO_ROOT / path).read_text(encoding="utf-8") for path in paths
        ), f"none of {paths} reads {secret.name}"


# --- the pre-commit hook ----------------------------------------------------------------------


def fake_secrets(seed: int) -> dict[str, str]:
    """One committed line per kind of secret, generated (never stored in this file)."""
    rng = random.Random(seed)

    def pick(alphabet: str, n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    upper, alnum = string.ascii_uppercase + string.digits, string.ascii_letters + string.digits
    key_body = "\n".join(pick(alnum + "+/", 64) for _ in range(6))
    begin, end = "-----BEGIN RSA " + "PRIVATE KEY-----", "-----END RSA " + "PRIVATE KEY-----"
    return {
        "aws_key.env": "AWS_ACCESS_KEY_ID=" + "AKIA" + pick(upper, 16) + "\n",
        "deploy_key.pem": f"{begin}\n{key_body}\n{end}\n",
        "github.env": "GITHUB_TOKEN=" + "ghp_" + pick(alnum, 36) + "\n",
        "alerts.yml": "webhook: https://hooks.slack.com/services/"
        + f"T{pick(upper, 8)}/B{pick(upper, 8)}/{pick(alnum, 24)}\n",
        "settings.ini": "[db]\n" + "pass" + "word = " + pick(alnum + "!#%", 24) + "\n",
    }


def _git(clone: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=clone, capture_output=True, text=True, check=check, timeout=300
    )


def test_the_hook_refuses_to_commit_a_secret(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    # The working tree's hook configuration and baseline are what is under test.
    for name in (".pre-commit-config.yaml", ".secrets.baseline"):
        shutil.copy(REPO_ROOT / name, clone / name)
    (clone / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the hooks' entry points
    _git(clone, "config", "user.email", "test@example.invalid")
    _git(clone, "config", "user.name", "Secret Test")
    _git(clone, "add", ".pre-commit-config.yaml", ".secrets.baseline")
    _git(clone, "commit", "-q", "--no-verify", "--allow-empty", "-m", "hook under test")
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"], cwd=clone, check=True, capture_output=True
    )
    head = _git(clone, "rev-parse", "HEAD").stdout

    (clone / "notes.txt").write_text("The warehouse password is in the secret manager.\n")
    _git(clone, "add", "notes.txt")
    harmless = _git(clone, "commit", "-m", "a harmless file", check=False)
    assert harmless.returncode == 0, harmless.stdout + harmless.stderr
    head = _git(clone, "rev-parse", "HEAD").stdout

    for name, content in fake_secrets(seed=17).items():
        (clone / name).write_text(content)
        _git(clone, "add", name)
        refused = _git(clone, "commit", "-m", f"add {name}", check=False)
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0, f"{name} was committed:\n{output}"
        assert "refuse committed secrets" in output and "Failed" in output, output
        assert name in output, output  # the report names the file
        assert _git(clone, "rev-parse", "HEAD").stdout == head
        _git(clone, "rm", "-q", "--cached", name)
        (clone / name).unlink()
