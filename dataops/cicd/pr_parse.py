"""The dbt parse of a pull-request build: one parse per checkout, shared by every PR and push.

A PR build runs dbt for the ci target with the schema ``pr_<n>``. dbt reuses an earlier parse
(partial parsing: only the changed files are parsed again) only for the same profile and vars,
and the schema is part of the profile: each new PR parsed the whole project (~7 s of every PR
build). Instead, every PR build of a checkout parses it with one fixed schema
(:data:`SHARED_SCHEMA`) in ``$DATAOPS_HOME/pr-parse/<key>/``, where dbt's partial parse serves
the next PR and the next push, then moves the parsed nodes to ``pr_<n>``
(dataops/dbt/relocate.py). The PR's commands run dbt on that manifest in this process
(`dbt ls`, `dbt build`: dbt's programmatic invocation), so none of them parses again.

The key names what a parse depends on beyond the files dbt hashes itself: the project folder
(dbt keeps absolute paths in its parse), the profiles folder, target and vars, dbt's version and
the variables profiles.yml and dbt_project.yml read. A lock beside each folder serialises the
parses that share it (dbt rewrites ``partial_parse.msgpack`` in place).

Later commands on the same build (`pr report`'s `dbt ls`, another process) load the manifest the
build ran on from its ``manifest.json`` (:func:`load_built_manifest`) instead of parsing again.

When the shared parse cannot be used (it fails, its folder cannot be locked or written, or the
move meets something that depends on the target's schema: :class:`SharedParseError`), the caller
parses in full with the PR's own schema, as dbt would, and says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dataops.cicd.environments import Layout, pr_schema
from dataops.core.settings import PROFILES_DIR, PROJECT_DIR, Settings
from dataops.dbt.manifest import manifest_json
from dataops.dbt.relocate import RelocationError, check_moved, relocate_schema
from dataops.dbt.runner import dbt_args, dbt_env, invoke

RAW_DATABASE_VAR = "dataops_raw_database"  # read by `database:` in the sources YAML files
# The schema of the shared parse: a name no model, description or config would contain, so that
# any trace of it left after the move shows a value derived from the target's schema.
SHARED_SCHEMA = "dataops_shared_parse"
PARSE_DIR = "pr-parse"
# What profiles.yml and dbt_project.yml read for the ci target (besides its schema).
KEY_ENV = (
    "DATAOPS_HOME",
    "DATAOPS_LANDING",
    "DATAOPS_WAREHOUSE_CI",
    "DATAOPS_WAREHOUSE_PROD",
    "DATAOPS_PROD_CATALOG",
)
LOCK_WAIT = 600.0  # a parse takes seconds; a holder that died releases the lock at once
KEY = re.compile(r"[0-9a-f]{16}")  # the name of a shared parse's folder (shared_parse_dir)


class SharedParseError(RuntimeError):
    """The shared parse cannot serve this PR build; the message says why."""


def pr_vars(layout: Layout) -> dict[str, str]:
    """The vars of every dbt command of a PR build: sources are read from prod's catalog."""
    return {RAW_DATABASE_VAR: layout.prod_catalog}


def shared_parse_dir(
    layout: Layout, env: Mapping[str, str], project_dir: Path = PROJECT_DIR
) -> Path:
    """``$DATAOPS_HOME/pr-parse/<key>``: the folder of the parse that serves these settings."""
    material = {
        "project_dir": str(project_dir.resolve()),
        "profiles_dir": str(PROFILES_DIR.resolve()),
        "target": "ci",
        "vars": pr_vars(layout),
        "dbt": version("dbt-core"),
        "env": {name: env.get(name) for name in KEY_ENV},
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    return layout.home / PARSE_DIR / key


def _lock_path(parse_dir: Path) -> str:
    return str(parse_dir) + ".lock"


def shared_parse_args(layout: Layout, parse_dir: Path) -> list[str]:
    """`dbt parse` into the shared folder (its partial parse is kept there; no manifest.json:
    the PR's own is written once its nodes are moved). Only errors on stdout (`pr report`
    prints the report there); dbt's log file has it all."""
    return dbt_args(
        "parse",
        "ci",
        dbt_vars=pr_vars(layout),
        extra=["--target-path", str(parse_dir), "--no-write-json", "--quiet"],
    )


@dataclass
class ParsedCheckout:
    """The checkout parsed for one PR: dbt's manifest (for dbt commands in this process) and
    the text of its manifest.json."""

    manifest: Any  # dbt.contracts.graph.manifest.Manifest
    manifest_text: str
    parse_dir: Path


def parse_for_pr(layout: Layout, number: int, settings: Settings) -> ParsedCheckout:
    """The checkout parsed for PR ``number`` from the shared parse (run in this process, with
    the environment of the PR's dbt commands). Raises :class:`SharedParseError`."""
    schema = pr_schema(number)
    env = dbt_env(settings, extra={"DATAOPS_CI_SCHEMA": SHARED_SCHEMA})
    parse_dir = shared_parse_dir(layout, env)
    env["DBT_TARGET_PATH"] = str(parse_dir)
    try:
        parse_dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(_lock_path(parse_dir), timeout=LOCK_WAIT):
            parse_dir.mkdir(exist_ok=True)  # under the lock, as the janitor removes it
            result = invoke(shared_parse_args(layout, parse_dir), env)
            os.utime(parse_dir)  # when it was last used (the janitor ages it by that)
    except (OSError, Timeout) as error:
        raise SharedParseError(f"{parse_dir} cannot be used: {error}") from error
    if not result.success:
        raise SharedParseError(f"dbt parse with schema {SHARED_SCHEMA} failed: {result.exception}")
    try:
        relocate_schema(result.result, SHARED_SCHEMA, schema)
        text = manifest_json(result.result)
        check_moved(text, SHARED_SCHEMA)
    except RelocationError as error:
        raise SharedParseError(f"cannot move the parse to {schema}: {error}") from error
    return ParsedCheckout(result.result, text, parse_dir)


def load_built_manifest(path: Path) -> Any:
    """The manifest a PR build ran dbt on, loaded from the ``manifest.json`` it wrote into its
    target folder, the way dbt loads the prod manifest given to ``--state``: a later dbt command
    on that build runs on it without parsing. Raises :class:`SharedParseError` when dbt cannot
    load it (missing, truncated, written by another dbt schema version)."""
    from dbt.contracts.graph.manifest import Manifest, WritableManifest  # dbt is heavy
    from dbt_common.exceptions import DbtBaseException

    try:
        writable = WritableManifest.read_and_check_versions(str(path))
        return Manifest.from_writable_manifest(writable)
    except (DbtBaseException, LookupError, ValueError, TypeError) as error:
        raise SharedParseError(f"dbt cannot load {path}: {error}") from error


def last_used(parse_dir: Path) -> datetime:
    """When a PR build last used a shared parse (UTC, naive): the newest time its folder or a file
    in it changed (each use touches the folder; dbt rewrites its files when it parses)."""
    times = [parse_dir.stat().st_mtime]
    for path in parse_dir.iterdir():
        with contextlib.suppress(FileNotFoundError):
            times.append(path.stat().st_mtime)
    return datetime.fromtimestamp(max(times), UTC).replace(tzinfo=None)


def unused_parses(
    layout: Layout, older_than: timedelta, now: datetime
) -> list[tuple[Path, datetime]]:
    """The shared parses under ``$DATAOPS_HOME/pr-parse/`` no PR build used for longer than
    ``older_than`` (a checkout moved or gone, settings or dbt's version changed), with when each
    was last used. Only folders named like a key: nothing else there is touched."""
    root = layout.home / PARSE_DIR
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and KEY.fullmatch(folder.name):
            used = last_used(folder)
            if now - used > older_than:
                found.append((folder, used))
    return found


def remove_unused_parse(parse_dir: Path, older_than: timedelta, now: datetime) -> bool:
    """Remove a shared parse and its lock file if it is still unused for longer than
    ``older_than`` once its lock is taken; False (kept) when a parse holds the lock.

    Call it under the CI file's lock (:func:`dataops.cicd.environments.ci_lock`): PR builds take
    a parse's lock only under that one, so none waits on the lock file removed here. A process
    taking it outside (`pr report` when the build's manifest cannot be loaded) at that moment
    would parse beside the next user of a new lock file; dbt then finds a torn
    partial_parse.msgpack at worst, and parses in full once."""
    lock = FileLock(_lock_path(parse_dir))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    try:
        if now - last_used(parse_dir) <= older_than:
            return False
        shutil.rmtree(parse_dir)
        Path(_lock_path(parse_dir)).unlink(missing_ok=True)
        return True
    finally:
        lock.release()
