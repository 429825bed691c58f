"""The one reviewed file of exceptions to the project rules, each with a reason.

    # project_rules_exceptions.yml
    exceptions:
      - rule: primary_key_tested
        node: fct_page_views          # a model name, `source.table` or a unique_id; `*` wildcards
        reason: Event grain without a natural key; deduplicated upstream (ticket DATA-123).

An exception that no longer matches a violation is reported, so the file never goes stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from dataops.rules.rules import RULES, Violation

EXCEPTIONS_FILE = "project_rules_exceptions.yml"
MIN_REASON = 10


class ExceptionsError(ValueError):
    """The exceptions file is malformed; the message names the file, entry and key."""


class RuleException(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    node: str
    reason: str

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in RULES:
            raise ValueError(f"unknown rule {value!r}: expected one of {', '.join(RULES)}")
        return value

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty node: expected a model name, `source.table` or a unique_id")
        return value.strip()

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if len(value.strip()) < MIN_REASON:
            raise ValueError(
                f"reason {value!r} is too short: say why the rule does not apply "
                f"(at least {MIN_REASON} characters; a reviewer approves it)"
            )
        return value.strip()

    def matches(self, violation: Violation) -> bool:
        return self.rule == violation.rule and any(
            fnmatchcase(name, self.node) for name in (violation.node, violation.unique_id)
        )


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exceptions: list[RuleException] = []


def load_exceptions(path: Path) -> list[RuleException]:
    """The exceptions in `path` (none when the file does not exist)."""
    if not path.exists():
        return []
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ExceptionsError(f"{path}: not valid YAML: {error}") from error
    try:
        return _File.model_validate(raw).exceptions
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ExceptionsError(
            f"{path}: {problems} (expected `exceptions:` with entries of rule, node and reason)"
        ) from error


@dataclass
class Outcome:
    """Violations left after exceptions, those excused, and exceptions that matched nothing."""

    violations: list[Violation] = field(default_factory=list)
    excused: list[tuple[Violation, RuleException]] = field(default_factory=list)
    unused: list[RuleException] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unused


def apply_exceptions(violations: list[Violation], exceptions: list[RuleException]) -> Outcome:
    outcome = Outcome()
    used: set[int] = set()
    for violation in violations:
        match = next((i for i, exc in enumerate(exceptions) if exc.matches(violation)), None)
        if match is None:
            outcome.violations.append(violation)
        else:
            used.add(match)
            outcome.excused.append((violation, exceptions[match]))
    outcome.unused = [exc for i, exc in enumerate(exceptions) if i not in used]
    return outcome
