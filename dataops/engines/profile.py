"""Render one output of the dbt profile (profiles/profiles.yml) for Python code.

The loaders and checks connect to an engine exactly as dbt does, from the same profile block, so
there is no second copy of connection settings. Only what profiles.yml uses is supported:
``env_var(name[, default])`` and the ``as_number``/``as_bool`` filters.
"""

from __future__ import annotations

import os
from typing import Any

import jinja2
import yaml

from dataops.core.secrets import SECRETS, read_secret
from dataops.core.settings import PROFILES_DIR

PROFILE_NAME = "dataops"


class ProfileError(ValueError):
    """The profile or one of its outputs is missing or wrong; the message says what to fix."""


def _env_var(name: str, default: str | None = None) -> str:
    if name in SECRETS:  # a secret may also come from the file named by <name>_FILE
        secret = read_secret(name)
        if secret is not None:
            return secret
    elif name in os.environ:
        return os.environ[name]
    if default is None:
        raise ProfileError(
            f"{PROFILES_DIR / 'profiles.yml'}: environment variable {name} is not set and has "
            "no default; set it before connecting."
        )
    return default


def _render(value: Any, env: jinja2.Environment) -> Any:
    if isinstance(value, str):
        return env.from_string(value).render()
    if isinstance(value, dict):
        return {key: _render(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, env) for item in value]
    return value


def profile_output(target: str) -> dict[str, Any]:
    """The rendered output ``target`` of the ``dataops`` profile, e.g. ``spark``."""
    path = PROFILES_DIR / "profiles.yml"
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    outputs = (document.get(PROFILE_NAME) or {}).get("outputs") or {}
    if target not in outputs:
        raise ProfileError(
            f"{path}: profile '{PROFILE_NAME}' has no output '{target}'; "
            f"expected one of {', '.join(sorted(outputs))}."
        )
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.globals["env_var"] = _env_var
    env.filters["as_number"] = lambda value: value
    env.filters["as_bool"] = lambda value: value
    return _render(outputs[target], env)
