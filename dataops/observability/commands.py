"""The observability subcommands of `dataops`: `report`, `incidents`, `slo` and
`elementary setup|report`."""

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


def _print_incidents(rows: list[dict]) -> None:
    if not rows:
        print("No incidents.")
        return
    print(f"{'incident':<12} {'status':<12} {'kind':<12} {'opened (UTC)':<16} {'seen':>4}  "
          f"{'asset':<28} cause")
    for row in rows:
        opened = row["opened_at"].strftime("%Y-%m-%d %H:%M")
        print(
            f"{row['incident_id']:<12} {row['status']:<12} {row['kind']:<12} {opened:<16} "
            f"{row['occurrences']:>4}  {row['asset'] or '-':<28} {row['cause']}"
        )
        if row.get("note"):
            print(f"{'':<12} note: {row['note']}")


def cmd_incidents(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb

    from dataops.core.warehouse import with_warehouse_lock_retry
    from dataops.observability import incidents

    if not settings.warehouse_path.exists():
        print(f"No warehouse at {settings.warehouse_path}: run `dataops run` first.")
        return 1
    action = args.incidents_command or "list"

    def act() -> int:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            if action == "list":
                _print_incidents(incidents.list_incidents(con, include_resolved=not args.open))
                return 0
            status = "acknowledged" if action == "ack" else "resolved"
            try:
                incident = incidents.set_status(con, args.incident_id, status, args.note)
            except (KeyError, ValueError) as error:
                print(f"error: {error.args[0]}")
                return 1
            print(f"{incident['incident_id']} {incident['status']}: {incident['asset']}")
            return 0

    return with_warehouse_lock_retry(act)


def cmd_slo(args: argparse.Namespace, settings: Settings) -> int:
    import json
    from datetime import UTC, datetime

    import duckdb

    from dataops.observability import slo

    manifest_file = settings.dbt_target_path / "manifest.json"
    if not manifest_file.is_file() or not settings.warehouse_path.exists():
        print("No manifest or warehouse yet: run `dataops run` first.")
        return 1
    declared = slo.declared_slos(json.loads(manifest_file.read_text(encoding="utf-8")))
    if not declared:
        print("No SLO declared (config.meta.slo in a model's YAML).")
        return 0
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        slis = slo.measure(con, declared, now)
    print(f"{'model':<24} {'objective':<14} {'window':>6} {'target':>7} {'SLI':>8} "
          f"{'budget left':>12}")
    for sli in slis:
        value = "-" if sli.value is None else f"{sli.value:.2%}"
        left = "-" if sli.budget_left is None else f"{sli.budget_left:.0%}"
        flag = "" if sli.met is not False else "  BREACHED"
        print(f"{sli.model:<24} {sli.objective:<14} {sli.window_days:>5}d {sli.target:>7.1%} "
              f"{value:>8} {left:>12}{flag}")
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

    incidents = commands.add_parser(
        "incidents", help="list incidents (open first); ack or resolve one with a note"
    )
    incidents.add_argument("--open", action="store_true", help="only open/acknowledged ones")
    incidents.set_defaults(func=cmd_incidents, incidents_command=None)
    incident_commands = incidents.add_subparsers(dest="incidents_command")
    for name, verb in (("ack", "acknowledge"), ("resolve", "resolve")):
        sub = incident_commands.add_parser(name, help=f"{verb} an incident, with a note")
        sub.add_argument("incident_id", help="e.g. INC-1a2b3c4d (from `dataops incidents`)")
        sub.add_argument("--note", help="what was done or found")
        sub.set_defaults(func=cmd_incidents, open=False)

    slo_parser = commands.add_parser(
        "slo", help="SLIs over 7 and 30 days and the error budget left, per declared mart SLO"
    )
    slo_parser.set_defaults(func=cmd_slo)

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
