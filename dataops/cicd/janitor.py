"""`dataops janitor`: drop the PR environments nobody needs any more.

An environment goes when it is older than ``--older-than`` (its age comes from the
``_pr_environment`` row written when the PR build created it) or when its pull request is not
among the open ones. An environment without that row (a build that crashed while creating it)
counts as infinitely old.

With ``--older-than``, the shared dbt parses of PR builds (``$DATAOPS_HOME/pr-parse/<key>/``,
dataops/cicd/pr_parse.py: one per checkout folder and CI settings) that no build used for that
long go too; one in use is never removed (its lock is taken first).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dataops.cicd.environments import (
    CicdError,
    Layout,
    PrEnvironment,
    ci_lock,
    connect,
    drop_environment,
    list_environments,
    pr_schema,
)
from dataops.cicd.pr_parse import remove_unused_parse, unused_parses

AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*")
UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
OPEN_PRS_ENV = "DATAOPS_OPEN_PRS"
PR_NUMBER = re.compile(r"[1-9][0-9]*")


def parse_age(text: str) -> timedelta:
    """`90m`, `36h`, `7d`, `2w` as a timedelta."""
    match = AGE.fullmatch(text or "")
    if not match:
        raise CicdError(
            f"--older-than {text!r}: expected a number and a unit, m (minutes), h (hours), "
            "d (days) or w (weeks), e.g. 36h or 7d."
        )
    return timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


def _numbers(values: Iterable[object], where: str) -> set[int]:
    numbers = set()
    for value in values:
        if isinstance(value, dict):  # an entry of GitHub's GET /pulls list
            value = value.get("number")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise CicdError(f"{where}: {value!r} is not a pull request number.")
        numbers.add(value)
    return numbers


def open_prs_from(numbers: list[int] | None, file: str | None, github: bool) -> set[int] | None:
    """The open PRs, from the command line, a JSON file, DATAOPS_OPEN_PRS or the GitHub API.

    None means "not known": then only the age decides.
    """
    if numbers is not None:
        return set(numbers)
    if file:
        path = Path(file)
        try:
            document = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CicdError(f"--open-prs-file {path}: cannot read a JSON list: {error}") from error
        if not isinstance(document, list):
            raise CicdError(
                f"--open-prs-file {path}: expected a JSON list of PR numbers "
                f"(or GitHub's pulls list), got {type(document).__name__}."
            )
        return _numbers(document, str(path))
    if github:
        from dataops.cicd import github as github_api

        return github_api.open_pull_requests()
    if os.environ.get(OPEN_PRS_ENV) is not None:
        return _numbers(
            re.split(r"[\s,]+", os.environ[OPEN_PRS_ENV].strip())
            if os.environ[OPEN_PRS_ENV].strip()
            else [],
            OPEN_PRS_ENV,
        )
    return None


def reasons_to_drop(
    environments: list[PrEnvironment],
    *,
    older_than: timedelta | None,
    open_prs: set[int] | None,
    now: datetime,
) -> list[tuple[PrEnvironment, str]]:
    """Which environments go and why (pure: the tests check every rule)."""
    doomed = []
    for env in environments:
        if open_prs is not None and env.number not in open_prs:
            doomed.append((env, "pull request is not open"))
        elif older_than is not None and env.created_at is None:
            doomed.append((env, "no creation record (an interrupted build)"))
        elif older_than is not None and now - env.created_at > older_than:
            doomed.append(
                (env, f"created {env.created_at:%Y-%m-%d %H:%M} UTC, older than {older_than}")
            )
    return doomed


def orphan_folders(layout: Layout, known: set[int]) -> list[PrEnvironment]:
    """Artefact folders ``$DATAOPS_HOME/pr/<n>/`` without a PR schema (a build refused or
    interrupted before its schema existed, a CI file replaced): aged by the folder's mtime."""
    found = []
    root = layout.home / "pr"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        match = PR_NUMBER.fullmatch(folder.name)
        if not folder.is_dir() or not match or int(folder.name) in known:
            continue
        modified = datetime.fromtimestamp(folder.stat().st_mtime, UTC).replace(tzinfo=None)
        found.append(PrEnvironment(int(folder.name), pr_schema(int(folder.name)), modified, None))
    return found


def sweep(
    layout: Layout,
    *,
    older_than: timedelta | None,
    open_prs: set[int] | None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[tuple[PrEnvironment, str]]:
    """Drop every trace (schema, artefacts folder, platform rows) of the environments to drop."""
    if older_than is None and open_prs is None:
        raise CicdError(
            "The janitor needs a rule: --older-than AGE, and/or the open pull requests "
            f"(--open-prs N..., --open-prs-file FILE, --github, or ${OPEN_PRS_ENV})."
        )
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if not layout.ci_warehouse.is_file():
        doomed = reasons_to_drop(
            orphan_folders(layout, set()), older_than=older_than, open_prs=open_prs, now=now
        )
        if not dry_run:
            for env, _ in doomed:
                shutil.rmtree(layout.pr_dir(env.number), ignore_errors=True)
        return doomed
    with ci_lock(layout, "dataops janitor"), connect(layout.ci_warehouse) as con:
        environments = list_environments(con)
        environments += orphan_folders(layout, {env.number for env in environments})
        doomed = reasons_to_drop(
            sorted(environments, key=lambda env: env.number),
            older_than=older_than,
            open_prs=open_prs,
            now=now,
        )
        if not dry_run:
            for env, reason in doomed:
                drop_environment(layout, con, env.number, reason=f"janitor: {reason}")
    return doomed


def sweep_parses(
    layout: Layout,
    *,
    older_than: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[tuple[Path, str]]:
    """Remove the shared dbt parses no PR build used for longer than ``older_than``; under the
    CI file's lock, as PR builds take them. Returns each removed (or, dry, removable) folder."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    removed = []
    with ci_lock(layout, "dataops janitor"):
        for folder, used in unused_parses(layout, older_than, now):
            if dry_run or remove_unused_parse(folder, older_than, now):
                removed.append((folder, f"last used {used:%Y-%m-%d %H:%M} UTC, over {older_than}"))
    return removed
