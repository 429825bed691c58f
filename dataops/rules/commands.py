"""`dataops lint sql|rules|all`: the quality gates on the command line (and in pre-commit)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dataops.core.settings import PROJECT_DIR
from dataops.rules.exceptions import (
    EXCEPTIONS_FILE,
    ExceptionsError,
    Outcome,
    apply_exceptions,
    load_exceptions,
)
from dataops.rules.manifest import (
    ParseError,
    lint_env,
    load_manifest,
    parse_manifest,
)
from dataops.rules.rules import RULES, run_rules, sources
from dataops.rules.rules import models as project_models

SQL_PATHS = ("models", "tests/dbt/singular")


def sql_targets(paths: list[str], project_dir: Path) -> list[str]:
    """The SQL files or folders to lint: the given ones, else models and singular tests."""
    if not paths:
        return [str(project_dir / p) for p in SQL_PATHS]
    roots = [project_dir / p for p in SQL_PATHS]
    resolved = [Path(p).resolve() for p in paths]
    # `lint all` receives every changed file from pre-commit: keep the SQL under the lint roots.
    return [
        str(path) for path in resolved
        if path.is_dir() or (path.suffix == ".sql" and any(path.is_relative_to(r) for r in roots))
    ]


def run_sqlfluff(action: str, targets: list[str], project_dir: Path) -> int:
    """sqlfluff lint|fix in this process (dbt templater, in-memory lint target); its exit code.

    In-process, so that `lint all` pays dbt's import (~3.5 s of CPU) once for both gates.
    The templater gets its own target folder: its dbt flags differ from `dbt parse`'s, and one
    shared partial-parse file made each invalidate the other (a full re-parse every run).
    """
    if action not in ("lint", "fix"):
        raise ValueError(f"unknown sqlfluff action {action!r}: expected lint or fix")
    from sqlfluff.cli.commands import cli  # imported late: heavy

    os.environ.update(lint_env(project_dir, project_dir / "target" / "sqlfluff"))
    previous = Path.cwd()
    os.chdir(project_dir)  # .sqlfluff's project_dir/profiles_dir are relative to it
    try:
        cli.main([action, "--disable-progress-bar", *targets], standalone_mode=False)
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)


def cmd_lint_sql(args: argparse.Namespace, settings: Any = None) -> int:
    project_dir = Path(args.project_dir).resolve()
    targets = sql_targets(args.paths, project_dir)
    if not targets:
        print("No SQL files under models/ or tests/dbt/singular/ to lint.")
        return 0
    return run_sqlfluff("fix" if args.fix else "lint", targets, project_dir)


def render(outcome: Outcome, manifest: dict[str, Any], exceptions_file: Path) -> str:
    model_count = sum(1 for _ in project_models(manifest))
    source_count = sum(1 for _ in sources(manifest))
    lines = [violation.render() + "\n" for violation in outcome.violations]
    for exc in outcome.unused:
        lines.append(
            f"[stale_exception] {exc.rule} on {exc.node} ({exceptions_file})\n"
            "  problem: the exception matches no violation any more\n"
            "  fix: remove the entry from the exceptions file\n"
        )
    status = "OK" if outcome.ok else "FAILED"
    if outcome.violations:
        lines.append(
            f"Where a rule truly does not apply, add an exception with its reason to "
            f"{exceptions_file.name} (reviewed like code); `--list` shows the rules.\n"
        )
    lines.append(
        f"Project rules {status}: {len(RULES)} rules on {model_count} models and "
        f"{source_count} source tables: {len(outcome.violations)} violations, "
        f"{len(outcome.excused)} excused, {len(outcome.unused)} stale exceptions "
        f"({exceptions_file.name})."
    )
    return "\n".join(lines)


def check_rules(project_dir: Path, manifest_path: str | None, only: list[str] | None) -> int:
    exceptions_file = project_dir / EXCEPTIONS_FILE
    try:
        exceptions = load_exceptions(exceptions_file)
        if manifest_path:
            manifest = load_manifest(Path(manifest_path))
        else:
            manifest = parse_manifest(project_dir)
    except (ExceptionsError, ParseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    outcome = apply_exceptions(run_rules(manifest, only), exceptions)
    print(render(outcome, manifest, exceptions_file))
    return 0 if outcome.ok else 1


def cmd_lint_rules(args: argparse.Namespace, settings: Any = None) -> int:
    if args.list:
        for rule in RULES.values():
            print(f"{rule.name:<36} {rule.summary}")
        return 0
    return check_rules(Path(args.project_dir).resolve(), args.manifest, args.rule)


def cmd_lint_all(args: argparse.Namespace, settings: Any = None) -> int:
    """dbt parse + project rules, then sqlfluff on the given SQL files (all when none given)."""
    project_dir = Path(args.project_dir).resolve()
    print("== dbt parse + project rules")
    rules_code = check_rules(project_dir, None, None)
    if rules_code == 2:
        print("sqlfluff not run: the project does not parse (see above).")
        return 2
    targets = sql_targets(args.paths, project_dir) if args.paths or not args.changed_only else []
    if not targets:
        return rules_code
    print("== sqlfluff")
    sql_code = run_sqlfluff("lint", targets, project_dir)
    return max(rules_code, sql_code)


def add_lint_commands(commands: argparse._SubParsersAction) -> None:
    """Register `dataops lint sql` and `dataops lint rules`."""
    lint = commands.add_parser("lint", help="quality gates: sqlfluff and the project rules")
    lint_commands = lint.add_subparsers(dest="lint_command", required=True)

    sql = lint_commands.add_parser(
        "sql", help="sqlfluff (dbt templater, in-memory lint target) on models and tests"
    )
    sql.add_argument(
        "paths", nargs="*", help="files or folders (default: models tests/dbt/singular)"
    )
    sql.add_argument("--fix", action="store_true", help="rewrite the files to the style")
    sql.add_argument("--project-dir", default=str(PROJECT_DIR), help=argparse.SUPPRESS)
    sql.set_defaults(func=cmd_lint_sql)

    rules = lint_commands.add_parser(
        "rules", help="dbt parse, then the project rules on the manifest"
    )
    rules.add_argument("--manifest", help="check this manifest.json instead of parsing")
    rules.add_argument("--rule", action="append", choices=sorted(RULES), help="only this rule")
    rules.add_argument("--list", action="store_true", help="list the rules and exit")
    rules.add_argument(
        "--project-dir", default=str(PROJECT_DIR),
        help="dbt project to check (default: this repository)",
    )
    rules.set_defaults(func=cmd_lint_rules)

    everything = lint_commands.add_parser(
        "all", help="dbt parse + project rules, then sqlfluff (one process: the pre-commit hook)"
    )
    everything.add_argument("paths", nargs="*", help="changed files (SQL ones are linted)")
    everything.add_argument(
        "--changed-only", action="store_true",
        help="lint only the SQL files given (pre-commit); without it and without files, all",
    )
    everything.add_argument("--project-dir", default=str(PROJECT_DIR), help=argparse.SUPPRESS)
    everything.set_defaults(func=cmd_lint_all)
