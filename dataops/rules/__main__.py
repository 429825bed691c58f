"""`python -m dataops.rules sql|rules`: the lint commands without the rest of the CLI.

The pre-commit hooks call this form: it imports only what linting needs, so a hook starts fast
and does not depend on the other commands' modules.
"""

from __future__ import annotations

import argparse
import sys

from dataops.rules.commands import add_lint_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataops.rules")
    commands = parser.add_subparsers(dest="command", required=True)
    add_lint_commands(commands)
    # `dataops lint sql ...` == `python -m dataops.rules lint sql ...`
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
