"""`dataops`: the platform's command line. The Makefile and CI only call these commands."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from dataops.cicd.commands import add_commands as add_cicd_commands
from dataops.core.settings import (
    PUBLISHED_TARGETS,
    TARGETS,
    Settings,
    SettingsError,
    load_settings,
)
from dataops.dbt.commands import add_dbt_commands
from dataops.dbt.runner import DbtOutcome, dbt_args, run_dbt
from dataops.engines import cli as engines_cli
from dataops.extract import commands as extract_commands
from dataops.extract import onboarding as extract_onboarding
from dataops.extract.pipeline import ExtractError, extract_sources
from dataops.ingestion.commands import add_replay_command
from dataops.ingestion.loader import IngestionSummary, WarehouseLocked, ingest
from dataops.observability.commands import add_commands as add_observability_commands
from dataops.publishing import wap
from dataops.publishing.commands import add_commands as add_publishing_commands
from dataops.publishing.releases import PublishingError
from dataops.rules.commands import add_lint_commands
from dataops.sources import onboarding, profiling
from dataops.sources import sync as staging_sync
from dataops.sources.registry import DeclarationError, load_registry, select_tables

if TYPE_CHECKING:
    from dataops.observability.incidents import BuildObservations


def _landed_anything(settings: Settings) -> bool:
    return any(t.landed_files(settings.landing_dir) for t in load_registry())


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.sample_data.generator import generate

    summary = generate(
        settings.landing_dir,
        order_items=args.order_items,
        days=args.days,
        seed=args.seed,
        overwrite=args.overwrite,
        **({"start": args.start} if args.start else {}),
    )
    for key in sorted(summary.rows):
        print(f"  {key:<24} {summary.files[key]:>4} files {summary.rows[key]:>12,} rows")
    return 0


def _print_ingestion(summary: IngestionSummary) -> None:
    by_source: dict[str, list[int]] = {}
    for outcome in summary.tables.values():
        totals = by_source.setdefault(outcome.key.split(".")[0], [0, 0, 0])
        totals[0] += outcome.files_loaded
        totals[1] += outcome.rows_loaded
        totals[2] += outcome.files_skipped
    print(f"Ingestion (batch {summary.batch_id}):")
    for source, (files, rows, skipped) in sorted(by_source.items()):
        print(
            f"  {source:<12} {files:>4} files loaded {rows:>12,} rows   "
            f"{skipped:>4} already loaded"
        )
    for outcome in summary.tables.values():
        for path in outcome.waiting:
            print(f"  WAITING {path}: still being written (changed in the settle window); next run")
        for duplicate, original in outcome.duplicates:
            print(f"  DUPLICATE {duplicate}: same content as {original}, already loaded; skipped")
    if summary.quarantined:
        print(f"  {len(summary.quarantined)} file(s) quarantined (the other files were loaded):")
    for error in summary.errors:
        print(f"  ERROR {error}")


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    tables = select_tables(load_registry(), args.source)
    summary = ingest(settings.warehouse_path, settings.landing_dir, tables)
    _print_ingestion(summary)
    return 1 if summary.errors else 0


def _print_dbt(outcome: DbtOutcome, anomalies: Sequence[str] = ()) -> None:
    """The build's summary line, then each anomaly with its message (the line says how many:
    not just "2 warned") and each failure."""
    models = outcome.count("model", "success")
    seeds = outcome.count("seed", "success")
    tests_passed = outcome.count("test", "pass") + outcome.count("unit_test", "pass")
    tests_failed = outcome.count("test", "fail", "error") + outcome.count(
        "unit_test", "fail", "error"
    )
    warned = outcome.count("test", "warn")
    plural = "anomaly" if len(anomalies) == 1 else "anomalies"
    found = f"; {len(anomalies)} {plural}:" if anomalies else ""
    print(
        f"dbt build: {models} models and {seeds} seeds built, {tests_passed} tests passed, "
        f"{warned} warned, {tests_failed} failed{found}"
    )
    for message in anomalies:
        print(f"  ANOMALY {message}")
    for failure in outcome.failures:
        print(f"  FAILED {failure}")
    if outcome.exception:
        print(f"  dbt error: {outcome.exception}")


def _observe(outcome: DbtOutcome, settings: Settings) -> BuildObservations | None:
    """Each anomaly of the build with its message; open/resolve incidents (and alert)."""
    if not outcome.invocation_id or not settings.warehouse_path.exists():
        return None
    from dataops.observability.incidents import observe_build

    report = settings.home / "reports" / "observability.html"
    return observe_build(
        settings.warehouse_path,
        outcome.invocation_id,
        settings.dbt_target_path / "manifest.json",
        report_url=report.as_uri(),
    )


def _print_build(outcome: DbtOutcome, settings: Settings) -> None:
    """The summary of a dbt build naming its anomalies, then the incidents' alerts."""
    seen = _observe(outcome, settings)
    _print_dbt(outcome, seen.anomalies if seen else ())
    for alert in seen.alerts if seen else ():
        print(f"  {alert['text']}")


def _dbt_build(settings: Settings, select: Sequence[str], trigger: str) -> tuple[DbtOutcome, bool]:
    """`dbt build` on the target; on a published target (prod) as a release: built and tested
    in its own schemas, published only when everything passed (dataops/publishing/)."""
    if settings.target not in PUBLISHED_TARGETS:
        outcome = run_dbt(settings, dbt_args("build", settings.target, select=select))
        _print_build(outcome, settings)
        return outcome, outcome.success
    try:
        result, outcome = wap.build_release(settings, trigger=trigger, select=select)
    except PublishingError as error:
        print(f"error: {error}", file=sys.stderr)
        return DbtOutcome(success=False, exception=str(error)), False
    _print_build(outcome, settings)
    for line in wap.describe(result):
        print(line)
    return outcome, result.published


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    _, ok = _dbt_build(settings, args.select or (), "build")
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The main job: extract database/API sources, sample data if none landed, ingest what is
    new, dbt build, summary."""
    started = time.perf_counter()
    registry = load_registry()
    extract_errors = []
    if extract_sources(registry):
        print("Extract (dlt):")
        extract_errors = extract_commands.run_extracts(settings, registry)
    generated = not _landed_anything(settings)
    if generated:
        print(f"No landed files under {settings.landing_dir}: generating the sample shop data.")
        args.overwrite = False
        cmd_generate(args, settings)
    # The sample this process just wrote is complete: no settle window (ingestion/landing.py),
    # else its newest files would wait for the next run.
    summary = ingest(
        settings.warehouse_path,
        settings.landing_dir,
        load_registry(),
        settle=0.0 if generated else None,
    )
    _print_ingestion(summary)
    outcome, built = _dbt_build(settings, (), "run")
    elapsed = time.perf_counter() - started
    status = "OK" if built and not summary.errors and not extract_errors else "FAILED"
    print(
        f"{status} in {elapsed:.1f} s "
        f"(target {settings.target}, warehouse {settings.warehouse_path})"
    )
    return 0 if status == "OK" else 1


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        problems = staging_sync.check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("Staging files are in sync with the source declarations.")
        return 1 if problems else 0
    for path in staging_sync.sync():
        print(f"wrote {path}")
    return 0


def _add_generate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--order-items", type=int, default=50_000, help="approximate total (default 50000)"
    )
    parser.add_argument("--days", type=int, default=30, help="daily batches to write (default 30)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        help="date of the first daily batch, YYYY-MM-DD (default 2025-01-01); a recent start "
        "gives monitors that look back from today (Elementary's) data to look at",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataops", description=__doc__)
    parser.add_argument("--target", choices=TARGETS, help="dbt target (default $DBT_TARGET or dev)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="the main job: extract, generate if empty, ingest, dbt build"
    )
    _add_generate_options(run)
    run.set_defaults(func=cmd_run)

    generate = commands.add_parser(
        "generate", help="write the sample shop data to the landing folder"
    )
    _add_generate_options(generate)
    generate.add_argument("--overwrite", action="store_true", help="replace existing sample files")
    generate.set_defaults(func=cmd_generate)

    extract_commands.add_parser(commands)  # extract [source ...]

    ingest_parser = commands.add_parser("ingest", help="load new landed files into raw tables")
    ingest_parser.add_argument(
        "--source", nargs="*", help="source or source.table names (default all)"
    )
    ingest_parser.set_defaults(func=cmd_ingest)

    build = commands.add_parser("build", help="dbt build (seeds, models, tests) on the target")
    build.add_argument("--select", nargs="*", help="dbt selection")
    build.set_defaults(func=cmd_build)

    sources = commands.add_parser("sources", help="derive the staging files from the declarations")
    sources_commands = sources.add_subparsers(dest="sources_command", required=True)
    sync = sources_commands.add_parser("sync", help="write the staging models and their YAML")
    sync.add_argument(
        "--check", action="store_true", help="fail when files and declarations differ"
    )
    sync.set_defaults(func=cmd_sources)
    onboarding.add_parser(sources_commands)  # sources add <name> --sample <file> | --all
    extract_onboarding.add_arguments(sources_commands)  # ... | --postgres ENV | --api ENV
    profiling.add_parser(commands)  # profile <source.table> [--write]
    add_lint_commands(commands)  # lint sql|rules
    add_dbt_commands(commands)  # dbt prepare (the manifest Dagster loads)
    engines_cli.add_parser(commands)
    add_cicd_commands(commands)  # pr build|report|teardown, janitor, deploy
    add_publishing_commands(commands)  # releases, rollback
    add_observability_commands(commands)  # report, elementary setup|report
    add_replay_command(commands)  # replay <quarantined file>
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.target)
        return args.func(args, settings)
    except (DeclarationError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WarehouseLocked as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except ExtractError as error:
        print(f"error: {error}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
