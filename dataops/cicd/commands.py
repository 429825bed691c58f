"""The `dataops pr build|report|teardown`, `dataops janitor` and `dataops deploy` subcommands.

PR commands always use the ci target and deploy always the prod target, whatever ``--target``
or ``DBT_TARGET`` say: CI runs exactly what a developer runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dataops.cicd import janitor as janitor_module
from dataops.cicd import pr
from dataops.cicd.environments import CicdError, ci_lock, load_layout
from dataops.core.settings import Settings

# The report (sqlglot, the diff) and deploy (ingestion, publishing) are imported by the commands
# that use them: every `dataops` call builds this parser, and most never need them.


def handle_errors(func: Callable[[argparse.Namespace, Settings], int]) -> Callable:
    """Turn a CicdError (prod never deployed, lock held, bad number) into a message, exit 2."""

    @functools.wraps(func)
    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return func(args, settings)
        except CicdError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return wrapped


def pr_number_from_event(event_path: str | None = None) -> int:
    """The PR number of the GitHub event being handled (GITHUB_EVENT_PATH)."""
    path = event_path or os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        raise CicdError(
            "No pull request number given: pass it (`dataops pr build 123`) or run inside a "
            "GitHub Actions pull_request workflow (GITHUB_EVENT_PATH)."
        )
    event = json.loads(Path(path).read_text())
    number = (event.get("pull_request") or {}).get("number") or event.get("number")
    if not isinstance(number, int):
        raise CicdError(f"{path}: no pull_request.number in this GitHub event file.")
    return number


def _number(args: argparse.Namespace) -> int:
    return args.number if args.number is not None else pr_number_from_event()


def _print_outcome(build: pr.PrBuild) -> None:
    outcome = build.outcome
    models = outcome.count("model", "success")
    tests = outcome.count("test", "pass") + outcome.count("unit_test", "pass")
    failed = outcome.count("test", "fail", "error") + outcome.count("unit_test", "fail", "error")
    failed += outcome.count("model", "error") + outcome.count("seed", "error")
    # what was built or tested: not the hooks, nor the exposures dbt lists as no-op
    nodes = [uid for uid in build.selected if not uid.startswith(("operation.", "exposure."))]
    print(
        f"PR #{build.number}: built {models} models into {build.schema}, {tests} tests passed, "
        f"{failed} failed ({len(nodes)} nodes selected by state:modified+)"
    )
    if not nodes and not outcome.exception:
        print("  Nothing to build: no model, seed or source changed against prod.")
    behind = build.behind_prod
    if behind and behind.get("known"):
        print(
            f"  WARNING: this branch is behind prod (deployed from {behind['prod_commit'][:12]}, "
            f"{len(behind['commits'])} commit(s) not merged): the diff shows them as reverted. "
            "Merge main into the branch."
        )
    for uid in build.cloned:
        print(f"  {uid.split('.')[-1]}: prod's table cloned, then run incrementally")
    for uid, parents in sorted(build.pruned.items()):
        print(
            f"  {uid.split('.')[-1]}: not rebuilt, data identical to prod "
            f"({', '.join(p.split('.')[-1] for p in parents)} built prod's data)"
        )
    for failure in outcome.failures:
        print(f"  FAILED {failure}")
    if outcome.exception:
        print(f"  dbt error: {outcome.exception}")


@handle_errors
def cmd_pr_build(args: argparse.Namespace, settings: Settings) -> int:
    layout = load_layout()
    build = pr.build(
        layout,
        _number(args),
        select=args.select or pr.DEFAULT_SELECTION,
        full_refresh=args.full_refresh,
    )
    _print_outcome(build)
    print(f"Artefacts: {build.target_dir}; report: dataops pr report {build.number}")
    return 0 if build.outcome.success else 1


@handle_errors
def cmd_pr_report(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.cicd import report

    layout = load_layout()
    number = _number(args)
    markdown = report.render(layout, number)
    destination = Path(args.output) if args.output else layout.pr_dir(number) / "report.md"
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(markdown)
    if args.post:
        from dataops.cicd import github

        url = github.upsert_comment(number, markdown)
        print(f"Posted the report to {url}", file=sys.stderr)
    print(markdown)
    return 0


@handle_errors
def cmd_pr_query_diff(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.cicd import report

    layout = load_layout()
    sql = Path(args.file).read_text() if args.file else args.sql
    if not sql:
        raise CicdError('Give the query: `dataops pr query-diff 42 "select ..."` or --file.')
    diff, pr_sql, prod_sql = report.query_diff(layout, _number(args), sql, args.key)
    print(report.query_diff_markdown(diff, pr_sql, prod_sql))
    return 0


@handle_errors
def cmd_pr_fetch_state(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.cicd import github

    layout = load_layout()
    with ci_lock(layout, "dataops pr fetch-state"):  # never swapped under a running PR build
        artifact = github.download_prod_state(
            args.workflow, args.branch, args.artifact_prefix, layout.prod_state_dir
        )
    run = artifact.get("run") or {}
    print(
        f"Prod state from {artifact['name']} (run {run.get('id')}, commit "
        f"{str(run.get('head_sha'))[:12]}) in {layout.prod_state_dir}"
    )
    return 0


@handle_errors
def cmd_pr_teardown(args: argparse.Namespace, settings: Settings) -> int:
    layout = load_layout()
    number = _number(args)
    existed = pr.teardown(layout, number)
    print(f"PR #{number}: " + ("environment dropped" if existed else "no environment to drop"))
    return 0


@handle_errors
def cmd_janitor(args: argparse.Namespace, settings: Settings) -> int:
    layout = load_layout()
    open_prs = janitor_module.open_prs_from(args.open_prs, args.open_prs_file, args.github)
    older_than = janitor_module.parse_age(args.older_than) if args.older_than else None
    dropped = janitor_module.sweep(
        layout, older_than=older_than, open_prs=open_prs, dry_run=args.dry_run
    )
    parses = (
        janitor_module.sweep_parses(layout, older_than=older_than, dry_run=args.dry_run)
        if older_than
        else []
    )
    verb = "would drop" if args.dry_run else "dropped"
    for env, reason in dropped:
        print(f"  {verb} {env.schema}: {reason}")
    for folder, reason in parses:
        print(f"  {verb} the shared dbt parse {folder}: {reason}")
    print(
        f"Janitor: {verb} {len(dropped)} PR environment(s) and {len(parses)} unused shared "
        "dbt parse(s)."
    )
    return 0


@handle_errors
def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from dataops.cicd import deploy as deploy_module
    from dataops.publishing import wap
    from dataops.publishing.releases import PublishingError

    layout = load_layout()
    try:
        deployment = deploy_module.deploy(layout, docs=not args.no_docs, load_raw=args.ingest)
    except PublishingError as error:
        raise CicdError(str(error)) from error
    outcome = deployment.outcome
    if deployment.ingestion is not None:
        loaded = sum(t.files_loaded for t in deployment.ingestion.tables.values())
        print(f"deploy: loaded {loaded} new landed file(s) into prod's raw tables")
    print(
        f"deploy: {outcome.count('model', 'success')} models built for release "
        f"{deployment.release.name} of prod ({layout.prod_warehouse}), "
        f"{outcome.count('test', 'pass') + outcome.count('unit_test', 'pass')} tests passed"
    )
    for line in wap.describe(deployment.release):
        print(line)
    if not deployment.published:
        print(f"Not published: {layout.prod_manifest} still holds the previous deploy's manifest.")
        return 1
    print(
        f"Published {layout.prod_manifest} (PR builds defer to it) and docs in "
        f"{layout.prod_state_dir / 'docs'}"
    )
    if deployment.docs_outcome is not None and not deployment.docs_outcome.success:
        print(f"  docs generate failed: {deployment.docs_outcome.exception}")
        return 1
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the CI/CD subcommands on the `dataops` parser."""
    pr_parser = commands.add_parser("pr", help="pull-request environments: build, report, teardown")
    pr_commands = pr_parser.add_subparsers(dest="pr_command", required=True)
    number_help = "pull request number (default: from GITHUB_EVENT_PATH)"

    build = pr_commands.add_parser(
        "build", help="build state:modified+ into schema pr_<number>, the rest read from prod"
    )
    build.add_argument("number", type=int, nargs="?", help=number_help)
    build.add_argument("--select", nargs="*", help="dbt selection (default state:modified+)")
    build.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild incremental models from all data instead of cloning prod's tables (also "
        f"asked by {pr.FULL_REFRESH_MARKER} in the commit message)",
    )
    build.set_defaults(func=cmd_pr_build)

    report_parser = pr_commands.add_parser(
        "report", help="Markdown summary of the PR build with a data diff against prod"
    )
    report_parser.add_argument("number", type=int, nargs="?", help=number_help)
    report_parser.add_argument(
        "--output", help="file to write (default $DATAOPS_HOME/pr/<n>/report.md)"
    )
    report_parser.add_argument(
        "--post",
        action="store_true",
        help="create or update the PR's one report comment (GITHUB_TOKEN, GITHUB_REPOSITORY)",
    )
    report_parser.set_defaults(func=cmd_pr_report)

    query = pr_commands.add_parser(
        "query-diff",
        help="run one query, with {{ ref('model') }}, on the PR environment and on prod; compare",
    )
    query.add_argument("number", type=int, nargs="?", help=number_help)
    query.add_argument("sql", nargs="?", help="the query (or --file)")
    query.add_argument("--file", help="a file holding the query")
    query.add_argument("--key", nargs="*", help="column(s) matching rows (default: whole rows)")
    query.set_defaults(func=cmd_pr_query_diff)

    fetch = pr_commands.add_parser(
        "fetch-state",
        help="download the prod state (manifest, deploy record) the deploy workflow published",
    )
    fetch.add_argument("--workflow", default="deploy.yml", help="the deploy workflow's file name")
    fetch.add_argument("--branch", default="main")
    fetch.add_argument("--artifact-prefix", default="prod-manifest-and-docs-")
    fetch.set_defaults(func=cmd_pr_fetch_state)

    teardown = pr_commands.add_parser("teardown", help="drop the PR's schema and artefacts")
    teardown.add_argument("number", type=int, nargs="?", help=number_help)
    teardown.set_defaults(func=cmd_pr_teardown)

    janitor = commands.add_parser(
        "janitor", help="drop PR environments older than an age or whose pull request is closed"
    )
    janitor.add_argument(
        "--older-than",
        help="age such as 36h, 7d, 90m (also removes the shared dbt parses unused for that long)",
    )
    janitor.add_argument(
        "--open-prs",
        nargs="*",
        type=int,
        help="numbers of the open pull requests (others are dropped)",
    )
    janitor.add_argument(
        "--open-prs-file", help="JSON file: a list of numbers, or GitHub's pulls list"
    )
    janitor.add_argument(
        "--github",
        action="store_true",
        help="ask the GitHub API for the open pull requests (GITHUB_TOKEN)",
    )
    janitor.add_argument("--dry-run", action="store_true", help="list, do not drop")
    janitor.set_defaults(func=cmd_janitor)

    deploy = commands.add_parser(
        "deploy",
        help="build, audit and publish a prod release, then the manifest PR builds defer to",
    )
    deploy.add_argument("--no-docs", action="store_true", help="skip dbt docs generate")
    deploy.add_argument(
        "--ingest",
        action="store_true",
        help="first load new landed files into prod's raw tables (a fresh prod: empty to release)",
    )
    deploy.set_defaults(func=cmd_deploy)
