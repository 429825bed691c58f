"""`dataops deploy`: a prod release (write -> audit -> publish), then the manifest and the docs.

The build goes to the release's own schemas and every test, unit test and contract runs there
(dataops/publishing/); only a release that passes is switched in, in one transaction. Then the
manifest PR builds defer to is published atomically (written beside, then ``os.replace``) with
the published relation names, so a PR build never compares against a half-written file or
against code whose models failed their audit in prod.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dataops.cicd.environments import CicdError, Layout
from dataops.core.git import git_commit
from dataops.core.settings import Settings, load_settings
from dataops.dbt.runner import DbtOutcome, dbt_args, run_dbt
from dataops.ingestion.loader import IngestionSummary, ingest
from dataops.publishing import wap
from dataops.sources.registry import SourceTable, load_registry

DOCS_FILES = ("index.html", "catalog.json", "manifest.json", "run_results.json")


def deploy_args(layout: Layout, command: str = "build") -> list[str]:
    """dbt arguments of a prod command (`docs generate`) with the deploy target folder."""
    *group, last = command.split()
    return [*group, *dbt_args(last, "prod", extra=["--target-path", str(layout.deploy_target_dir)])]


def _publish(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


def _publish_json(data: dict, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, destination)


def missing_raw_tables(settings: Settings, tables: list[SourceTable]) -> list[str]:
    """Declared raw tables (``raw_shop.orders``) the prod warehouse does not have yet."""
    wanted = {(t.schema, t.name) for t in tables}
    if not settings.warehouse_path.exists():
        return sorted(f"{s}.{n}" for s, n in wanted)
    with wap.connect(settings) as con:
        present = set(
            con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_catalog = current_database()"
            ).fetchall()
        )
    return sorted(f"{s}.{n}" for s, n in wanted - present)


@dataclass
class Deployment:
    outcome: DbtOutcome
    release: wap.ReleaseResult
    ingestion: IngestionSummary | None = None
    docs_outcome: DbtOutcome | None = None

    @property
    def published(self) -> bool:
        return self.release.published


def deploy(layout: Layout, *, docs: bool = True, load_raw: bool = False) -> Deployment:
    """Load prod's raw files (``load_raw``), build and audit a release, publish it when green;
    then the manifest PR builds defer to, the deploy record and the docs."""
    settings = load_settings("prod")
    tables = load_registry()
    summary = None
    if load_raw:
        summary = ingest(settings.warehouse_path, settings.landing_dir, tables)
        if summary.errors:
            raise CicdError(
                "Loading prod's raw files failed, nothing built: " + "; ".join(summary.errors)
            )
    missing = missing_raw_tables(settings, tables)
    if missing:
        raise CicdError(
            f"Prod ({settings.warehouse_path}) has no raw tables {', '.join(missing)}: load the "
            f"files landed in {settings.landing_dir} first, with `dataops deploy --ingest` (loads, "
            "then deploys) or `dataops --target prod ingest`."
        )
    started_at = datetime.now(UTC).replace(tzinfo=None)
    result, outcome = wap.build_release(settings, trigger="deploy")
    deployment = Deployment(outcome, result, summary)
    if not result.published:
        return deployment
    manifest = json.loads((result.target_dir / "manifest.json").read_text())
    # The manifest PR builds defer to, at the published names readers and PR builds use.
    _publish_json(wap.published_manifest(manifest), layout.prod_manifest)
    # ... and the release's results (`state:` selectors such as `result:fail` read them)
    if (result.target_dir / "run_results.json").is_file():
        _publish(result.target_dir / "run_results.json", layout.prod_state_dir / "run_results.json")
    if docs:
        # docs generate reads the warehouse too: take the file the way the release did
        with wap.hold_file(settings.warehouse_path, wap.file_wait_seconds()):
            deployment.docs_outcome = run_dbt(settings, deploy_args(layout, "docs generate"))
        if deployment.docs_outcome.success:
            for name in DOCS_FILES:
                if (layout.deploy_target_dir / name).is_file():
                    _publish(layout.deploy_target_dir / name, layout.prod_state_dir / "docs" / name)
    record = {
        "commit": git_commit(),
        "release": result.name,
        "started_at": started_at.isoformat(),
        "deployed_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
        "warehouse": str(layout.prod_warehouse),
        "models": outcome.count("model", "success"),
        "switch_seconds": result.switch_seconds,
    }
    _publish_json(record, layout.prod_state_dir / "deploy.json")
    return deployment
