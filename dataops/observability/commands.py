"""The observability subcommands of `dataops`: `report` and `elementary setup|report`."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dataops.core.settings import Settings


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.dbt.runner import dbt_args, dbt_env, run_dbt_subprocess
    from dataops.observability.report import write_report

    output = Path(args.output or settings.home / "reports" / "observability.html").resolve()
    docs_link = None
    if not args.no_docs:
        # dbt docs generate --static: one self-contained index.html, copied beside the report.
        # In a subprocess: dbt-duckdb keeps its connection open in-process, which would keep
        # the report's read-only connection out.
        generate = run_dbt_subprocess(
            dbt_args("docs generate", settings.target, extra=["--static"]), dbt_env(settings)
        )
        if generate.returncode != 0:
            print(f"dbt docs generate failed:\n{generate.stdout[-3000:]}")
            return 1
        docs = output.parent / "dbt-docs.html"
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(settings.dbt_target_path / "static_index.html", docs)
        docs_link = docs.name
        print(f"wrote {docs}")
    manifest = settings.dbt_target_path / "manifest.json"
    write_report(settings.warehouse_path, output, manifest, docs_link)
    print(f"wrote {output}")
    return 0


def cmd_elementary(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.observability import elementary

    if args.elementary_command == "setup":
        return elementary.setup(settings, hub_url=args.hub_url)
    return elementary.report(settings, Path(args.output) if args.output else None)


def add_commands(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="write the static observability report (HTML) and dbt docs"
    )
    report.add_argument(
        "--output", help="HTML file (default $DATAOPS_HOME/reports/observability.html)"
    )
    report.add_argument("--no-docs", action="store_true", help="skip `dbt docs generate --static`")
    report.set_defaults(func=cmd_report)

    elementary = commands.add_parser(
        "elementary", help="Elementary (needs a reachable dbt package hub): setup, report"
    )
    sub = elementary.add_subparsers(dest="elementary_command", required=True)
    setup = sub.add_parser(
        "setup",
        help="install Elementary's dbt package (pinned to the edr CLI's version) and its monitors",
    )
    setup.add_argument(
        "--hub-url", help="dbt package hub (default $DBT_PACKAGE_HUB_URL or hub.getdbt.com)"
    )
    setup.set_defaults(func=cmd_elementary)
    edr_report = sub.add_parser("report", help="`edr report` to an HTML file")
    edr_report.add_argument(
        "--output", help="HTML file (default $DATAOPS_HOME/reports/elementary.html)"
    )
    edr_report.set_defaults(func=cmd_elementary)
