"""`dataops deploy`: build prod, then publish the manifest PR builds defer to, and the docs.

The manifest is published only after a green build, atomically (write beside, then
``os.replace``), so a PR build never compares against a half-written file or against code whose
models failed to build in prod.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dataops.cicd.environments import Layout, connect, git_commit
from dataops.core.events import ensure_events, record_event
from dataops.core.settings import load_settings
from dataops.dbt.runner import DbtOutcome, dbt_args, run_dbt

DOCS_FILES = ("index.html", "catalog.json", "manifest.json", "run_results.json")


def deploy_args(layout: Layout, command: str = "build") -> list[str]:
    """dbt arguments of the prod build (or `docs generate`) with the deploy target folder."""
    *group, last = command.split()
    return [*group, *dbt_args(last, "prod", extra=["--target-path", str(layout.deploy_target_dir)])]


def _publish(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


@dataclass
class Deployment:
    outcome: DbtOutcome
    published: bool
    docs_outcome: DbtOutcome | None = None


def deploy(layout: Layout, *, docs: bool = True) -> Deployment:
    """Build prod; when green, generate docs and publish manifest, deploy record and docs."""
    settings = load_settings("prod")
    commit = git_commit()
    started_at = datetime.now(UTC).replace(tzinfo=None)
    outcome = run_dbt(settings, deploy_args(layout))
    docs_outcome = None
    published = False
    if outcome.success:
        target = layout.deploy_target_dir
        docs_dir = layout.prod_state_dir / "docs"
        # The manifest of the build itself: the one whose relations prod now holds.
        _publish(target / "manifest.json", layout.prod_manifest)
        if docs:
            docs_outcome = run_dbt(settings, deploy_args(layout, "docs generate"))
        if docs_outcome is not None and docs_outcome.success:
            for name in DOCS_FILES:
                if (target / name).is_file():
                    _publish(target / name, docs_dir / name)
        record = {
            "commit": commit,
            "started_at": started_at.isoformat(),
            "deployed_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            "warehouse": str(layout.prod_warehouse),
            "models": outcome.count("model", "success"),
        }
        partial = layout.prod_state_dir / ".deploy.json.partial"
        partial.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial, layout.prod_state_dir / "deploy.json")
        published = True
    with connect(layout.prod_warehouse) as con:
        ensure_events(con)
        record_event(
            con,
            "cicd.deploy",
            status="published" if published else "failed",
            message=f"commit {commit}" if commit else None,
            details={
                "commit": commit,
                "failures": outcome.failures,
                "exception": outcome.exception,
                "manifest": str(layout.prod_manifest),
            },
        )
    return Deployment(outcome, published, docs_outcome)
