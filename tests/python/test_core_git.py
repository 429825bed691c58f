"""The commit a release and a PR environment record: the checkout's HEAD, else GITHUB_SHA (a CI
checkout without git), else None."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dataops.core.git import git_commit


@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GITHUB_SHA"):
        monkeypatch.delenv(name, raising=False)


def test_the_commit_is_the_checked_out_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.setenv("GITHUB_SHA", "from-ci")
    assert git_commit(repo) == head


def test_outside_git_the_commit_is_github_sha_else_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    assert git_commit(tmp_path) is None
    monkeypatch.setenv("GITHUB_SHA", "0123abc")
    assert git_commit(tmp_path) == "0123abc"
    assert git_commit(tmp_path / "missing") == "0123abc"  # git cannot even start there
