"""Every secret the platform reads, and the one way it reads them.

A secret is never in the repository. Each one comes from its environment variable ``NAME`` or,
when ``NAME_FILE`` is set instead, from the file it names (a Docker/compose secret under
``/run/secrets/``, a systemd credential under ``$CREDENTIALS_DIRECTORY``, a Kubernetes secret
volume); one trailing newline is dropped. Setting both is an error, so a stale value never wins
silently. README "Secrets" lists the same registry (a test keeps the two in step).

Programs that read a secret themselves (dbt's ``env_var()``, Dagster's ``{env: NAME}`` in the
instance config) see only ``NAME``: ``python -m dataops.core.secrets exec -- <command>`` resolves
every ``NAME_FILE`` into ``NAME`` and then replaces itself with the command; the service units
in ``deploy/`` start Dagster that way, and ``dataops.dbt.runner`` passes resolved values to dbt.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

FILE_SUFFIX = "_FILE"


@dataclass(frozen=True)
class Secret:
    name: str
    what: str
    read_by: str


SECRETS: dict[str, Secret] = {
    secret.name: secret
    for secret in (
        Secret(
            "ALERT_WEBHOOK_URL",
            "incoming-webhook URL that failed-run alerts are POSTed to (the URL is the credential)",
            "orchestration/sensors/alerts.py (run_failure_alert), dataops/core/alerts.py",
        ),
        Secret(
            "GITHUB_TOKEN",
            "GitHub token: PR report comments, the list of open PRs",
            "dataops/cicd/github.py",
        ),
        Secret(
            "DBT_ENV_SECRET_PG_PASSWORD",
            "password of the PostgreSQL warehouse (dbt target `postgres`)",
            "profiles/profiles.yml via dataops/dbt/runner.py and dataops/engines/profile.py",
        ),
        Secret(
            "DAGSTER_PG_PASSWORD",
            "password of the PostgreSQL database holding Dagster's runs, events and schedules",
            "orchestration/instance/production/dagster.yaml (`{env: DAGSTER_PG_PASSWORD}`)",
        ),
    )
}


class SecretError(RuntimeError):
    """A secret is misconfigured; the message names the variable and what to do."""


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the registered secret ``name`` (``None`` when neither variable is set)."""
    if name not in SECRETS:
        raise SecretError(
            f"{name} is not a registered secret: add it to SECRETS in {__file__} "
            "(and to README 'Secrets') before reading it."
        )
    environ = os.environ if environ is None else environ
    file_var = name + FILE_SUFFIX
    value, file_name = environ.get(name), environ.get(file_var)
    if value and file_name:
        raise SecretError(f"Both {name} and {file_var} are set: keep only one of them.")
    if file_name:
        path = Path(file_name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SecretError(
                f"{file_var}={file_name}: cannot read the secret file ({error.strerror})."
            ) from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise SecretError(f"{file_var}={file_name}: the secret file is empty.")
        return text
    return value or None


def resolve_files(
    environ: MutableMapping[str, str], names: Iterable[str] | None = None
) -> list[str]:
    """Replace every registered ``NAME_FILE`` in ``environ`` (or those of ``names``) by ``NAME``
    (its file's content); return the names resolved. The ``NAME_FILE`` variables are removed."""
    resolved = []
    for name in SECRETS if names is None else names:
        if environ.get(name + FILE_SUFFIX):
            environ[name] = read_secret(name, environ) or ""
            del environ[name + FILE_SUFFIX]
            resolved.append(name)
    return resolved


def _exec(argv: list[str]) -> None:
    """``exec -- command ...``: resolve the secret files, then become the command."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m dataops.core.secrets exec -- <command> [args...]")
    try:
        resolve_files(os.environ)
    except SecretError as error:
        raise SystemExit(f"dataops secrets: {error}") from None
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        raise SystemExit(f"dataops secrets: cannot run {argv[0]}: {error.strerror}") from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["exec"]:
        _exec(argv[1:])
    elif argv[:1] == ["list"]:
        for secret in SECRETS.values():
            source = (
                "file"
                if os.environ.get(secret.name + FILE_SUFFIX)
                else ("env" if os.environ.get(secret.name) else "unset")
            )
            print(f"{secret.name:28} {source:6} {secret.what}")
    else:
        raise SystemExit(
            "usage: python -m dataops.core.secrets exec -- <command> [args...]\n"
            "       python -m dataops.core.secrets list   (which secrets are set, never values)"
        )


if __name__ == "__main__":
    main()
