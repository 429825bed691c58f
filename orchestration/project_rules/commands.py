"""`dataops lint sql` and `dataops lint rules`: the quality gates on the command line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestration.project_rules.exceptions import (
    EXCEPTIONS_FILE,
    ExceptionsError,
    Outcome,
    apply_exceptions,
    load_exceptions,
)
from orchestration.project_rules.manifest import (
    ParseError,
    lint_env,
    load_manifest,
    parse_manifest,
)
from orchestration.project_rules.rules import RULES, run_rules, sources
from orchestration.project_rules.rules import models as project_models
from orchestration.settings import PROJECT_DIR

SQL_PATHS = ("models", "tests/dbt/singular")


def sqlfluff_command(action: str, paths: list[str], project_dir: Path) -> list[str]:
    """The sqlfluff command line: lint or fix the paths (default: models and singular tests)."""
    if action not in ("lint", "fix"):
        raise ValueError(f"unknown sqlfluff action {action!r}: expected lint or fix")
    targets = [str(Path(p).resolve()) for p in paths] or [str(project_dir / p) for p in SQL_PATHS]
    return [sys.executable, "-m", "sqlfluff", action, "--disable-progress-bar", *targets]


def cmd_lint_sql(args: argparse.Namespace, settings: Any = None) -> int:
    project_dir = Path(args.project_dir).resolve()
    env = {**os.environ, **lint_env(project_dir)}
    command = sqlfluff_command("fix" if args.fix else "lint", args.paths, project_dir)
    return subprocess.run(command, cwd=project_dir, env=env, check=False).returncode


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


def cmd_lint_rules(args: argparse.Namespace, settings: Any = None) -> int:
    if args.list:
        for rule in RULES.values():
            print(f"{rule.name:<36} {rule.summary}")
        return 0
    project_dir = Path(args.project_dir).resolve()
    exceptions_file = project_dir / EXCEPTIONS_FILE
    try:
        exceptions = load_exceptions(exceptions_file)
        if args.manifest:
            manifest = load_manifest(Path(args.manifest))
        else:
            manifest = parse_manifest(project_dir)
    except (ExceptionsError, ParseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    outcome = apply_exceptions(run_rules(manifest, args.rule), exceptions)
    print(render(outcome, manifest, exceptions_file))
    return 0 if outcome.ok else 1


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
