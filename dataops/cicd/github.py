"""The few GitHub REST calls CI/CD needs: one report comment per PR, the open PRs.

Standard GitHub Actions variables: GITHUB_TOKEN (the workflow passes it), GITHUB_REPOSITORY
(owner/name) and GITHUB_API_URL (https://api.github.com, or a GitHub Enterprise server).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from dataops.cicd.environments import CicdError
from dataops.core.secrets import read_secret

REPORT_MARKER = "<!-- dataops-pr-report -->"
MAX_COMMENT = 65_000  # GitHub refuses comments over 65,536 characters


def _config() -> tuple[str, str, str]:
    token = read_secret("GITHUB_TOKEN")  # or the file named by GITHUB_TOKEN_FILE
    repo = os.environ.get("GITHUB_REPOSITORY")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    missing = [
        name for name, value in (("GITHUB_TOKEN", token), ("GITHUB_REPOSITORY", repo)) if not value
    ]
    if missing:
        raise CicdError(
            f"Set {' and '.join(missing)} to talk to GitHub (in a workflow: "
            "`env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`; GITHUB_REPOSITORY is owner/name)."
        )
    return token, repo, api


def _request(method: str, url: str, token: str, body: dict | None = None) -> tuple[Any, str | None]:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read() or b"null")
            link = response.headers.get("Link")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise CicdError(
            f"GitHub {method} {url} answered {error.code}: {detail}. Check that the token may "
            "write pull-request comments (workflow `permissions: pull-requests: write`)."
        ) from error
    except urllib.error.URLError as error:
        raise CicdError(f"GitHub {method} {url}: {error.reason}") from error
    match = re.search(r'<([^>]+)>;\s*rel="next"', link or "")
    return payload, match.group(1) if match else None


def _pages(url: str, token: str) -> list[Any]:
    items: list[Any] = []
    next_url: str | None = url
    while next_url:
        page, next_url = _request("GET", next_url, token)
        items.extend(page or [])
    return items


def upsert_comment(number: int, body: str) -> str:
    """Create the PR's report comment, or update it if one exists; return its URL."""
    token, repo, api = _config()
    if REPORT_MARKER not in body:
        body = f"{REPORT_MARKER}\n{body}"
    if len(body) > MAX_COMMENT:
        body = body[:MAX_COMMENT] + "\n\n… (truncated: the full report is a workflow artefact)\n"
    comments = _pages(f"{api}/repos/{repo}/issues/{number}/comments?per_page=100", token)
    mine = [c for c in comments if REPORT_MARKER in (c.get("body") or "")]
    if mine:
        comment, _ = _request(
            "PATCH", f"{api}/repos/{repo}/issues/comments/{mine[0]['id']}", token, {"body": body}
        )
    else:
        comment, _ = _request(
            "POST", f"{api}/repos/{repo}/issues/{number}/comments", token, {"body": body}
        )
    return comment.get("html_url") or comment.get("url", "")


def open_pull_requests() -> set[int]:
    token, repo, api = _config()
    pulls = _pages(f"{api}/repos/{repo}/pulls?state=open&per_page=100", token)
    return {pull["number"] for pull in pulls}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _download(url: str, token: str) -> bytes:
    """An artifact's zip: GitHub answers with a redirect to a signed storage URL, fetched
    without the token (storage refuses a foreign Authorization header)."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code not in (301, 302, 303, 307, 308) or not error.headers.get("Location"):
            raise CicdError(f"GitHub GET {url} answered {error.code}") from error
        location = error.headers["Location"]
    try:
        with urllib.request.urlopen(location, timeout=300) as response:
            return response.read()
    except urllib.error.URLError as error:
        raise CicdError(f"Downloading the artifact from {location}: {error}") from error


def latest_artifact(workflow: str, branch: str, prefix: str) -> dict[str, Any]:
    """The newest unexpired artifact named ``prefix...`` of the latest successful run of
    ``workflow`` (its file name) on ``branch``."""
    token, repo, api = _config()
    runs, _ = _request(
        "GET",
        f"{api}/repos/{repo}/actions/workflows/{workflow}/runs"
        f"?branch={branch}&status=success&per_page=20",
        token,
    )
    for run in (runs or {}).get("workflow_runs") or []:
        artifacts, _ = _request(
            "GET", f"{api}/repos/{repo}/actions/runs/{run['id']}/artifacts?per_page=100", token
        )
        for artifact in (artifacts or {}).get("artifacts") or []:
            if artifact["name"].startswith(prefix) and not artifact.get("expired"):
                return {**artifact, "run": run}
    raise CicdError(
        f"No artifact named {prefix}* in the latest successful runs of {workflow} on {branch}: "
        "deploy prod first (the deploy workflow uploads the prod state), or check its name."
    )


def download_prod_state(workflow: str, branch: str, prefix: str, destination: Path) -> dict:
    """Replace ``destination`` (the prod-state folder) with the deploy artifact's files, whole:
    unpacked beside it, then swapped in, so a PR build never reads half of two deploys."""
    token, _, _ = _config()
    artifact = latest_artifact(workflow, branch, prefix)
    payload = _download(artifact["archive_download_url"], token)
    staging = destination.with_name(f".{destination.name}.download")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for member in archive.namelist():
            target = (staging / member).resolve()
            if not target.is_relative_to(staging.resolve()):
                raise CicdError(f"Artifact {artifact['name']}: unsafe path {member!r}")
        archive.extractall(staging)
    if not (staging / "manifest.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise CicdError(
            f"Artifact {artifact['name']} has no manifest.json at its top: it is not a prod state."
        )
    previous = destination.with_name(f".{destination.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if destination.exists():
        destination.rename(previous)
    staging.rename(destination)
    shutil.rmtree(previous, ignore_errors=True)
    return artifact
