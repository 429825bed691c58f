"""`dataops profile <source.table>`: profile a source table's columns over its delivery history
and propose expectations for its declaration; `--write` applies them to the YAML.

The table is read where it is typed and named as declared: its staging model (one row per record,
with the ``_batch_id`` of the delivery it came from). Per column and per batch: null rate,
distinct count, range (numeric and time columns); over the whole history: the value set of a
low-cardinality text column and the shapes of text values (``a`` letters, ``A`` capitals, ``9``
digits; runs collapsed, e.g. ``Aa+ 9+``).

Proposed expectations (only what held in every delivery profiled, and only what the declaration
does not already say):

- ``not_null: true`` for a column never null in any of at least ``min_batches`` batches;
- ``accepted_values`` for a text column (not PII) with at most ``max_values`` distinct values over
  the history, each seen at least ``min_rows_per_value`` times on average;
- monitors, so that a drift from the profile is an anomaly: ``null_rate`` for a column that has
  nulls, ``min``/``max``/``mean`` for a numeric column that is not an identifier (``*_id``):
  its range and level.

``--write`` writes them into the table's declaration (comments and order kept), validates the
file and re-derives the staging files (`dataops sources sync`): the new tests and monitors run
in the next build.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.settings import PROJECT_DIR
from dataops.core.sql import quote_identifier as _quote
from dataops.sources import sync as staging_sync
from dataops.sources.onboarding import round_trip_yaml
from dataops.sources.registry import (
    DeclarationError,
    SourceTable,
    parse_sources_file,
)

BATCH_COLUMN = "_batch_id"
NUMERIC_TYPES = ("tinyint", "smallint", "integer", "int", "bigint", "hugeint", "decimal",
                 "numeric", "double", "float", "real")


@dataclass
class ColumnProfile:
    name: str  # staged name
    declared: str  # the declared column's name (the delivered one)
    data_type: str
    batches: int = 0
    rows: int = 0
    nulls: int = 0
    max_batch_null_rate: float = 0.0
    batches_with_nulls: int = 0
    distinct: int = 0
    max_batch_distinct: int = 0
    minimum: Any = None
    maximum: Any = None
    values: list[tuple[str, int]] | None = None  # the value set, when small
    patterns: list[tuple[str, float]] = field(default_factory=list)

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def is_numeric(self) -> bool:
        return self.data_type.lower().split("(")[0].strip() in NUMERIC_TYPES


@dataclass(frozen=True)
class Proposal:
    column: str  # declared name
    staged: str
    key: str  # not_null | accepted_values | monitors
    value: Any
    reason: str


def profile_relation(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    table: SourceTable,
    max_values: int = 10,
) -> list[ColumnProfile]:
    """Profile every declared column of ``table`` in ``relation`` (its staging model) per batch."""
    present = {row[0] for row in con.execute(f"describe {relation}").fetchall()}
    by_batch = BATCH_COLUMN in present
    profiles = []
    for column in table.columns:
        name = column.staged_name
        if name not in present:
            continue
        quoted = _quote(name)
        profile = ColumnProfile(name, column.name, column.data_type)
        group = BATCH_COLUMN if by_batch else "1"
        per_batch = con.execute(
            f"select count(*), count({quoted}), count(distinct {quoted}) "
            f"from {relation} group by {group}"
        ).fetchall()
        profile.batches = len(per_batch)
        profile.rows = sum(rows for rows, _, _ in per_batch)
        profile.nulls = sum(rows - non_null for rows, non_null, _ in per_batch)
        profile.max_batch_null_rate = max(
            ((rows - non_null) / rows for rows, non_null, _ in per_batch if rows), default=0.0)
        profile.batches_with_nulls = sum(1 for rows, non_null, _ in per_batch if rows > non_null)
        profile.max_batch_distinct = max((d for _, _, d in per_batch), default=0)
        profile.distinct, profile.minimum, profile.maximum = con.execute(
            f"select count(distinct {quoted}), min({quoted}), max({quoted}) from {relation}"
        ).fetchone()
        if profile.distinct <= max_values and not column.meta.pii:
            profile.values = [
                (str(value), count) for value, count in con.execute(
                    f"select {quoted}, count(*) from {relation} where {quoted} is not null "
                    f"group by 1 order by 2 desc, 1"
                ).fetchall()
            ]
        if column.is_string and not column.meta.pii:
            shape = (f"regexp_replace(regexp_replace(regexp_replace({quoted}, '[A-Z]', 'A', 'g'), "
                     f"'[a-z]', 'a', 'g'), '[0-9]', '9', 'g')")
            collapsed = shape  # runs of one class of characters collapsed (RE2: no backrefs)
            for kind in ("a", "A", "9"):
                collapsed = f"regexp_replace({collapsed}, '{kind}{kind}+', '{kind}+', 'g')"
            profile.patterns = [
                (pattern, share) for pattern, share in con.execute(
                    f"select {collapsed} as pattern, count(*) / sum(count(*)) over () as share "
                    f"from {relation} where {quoted} is not null group by 1 "
                    f"order by 2 desc, 1 limit 3"
                ).fetchall()
            ]
        profiles.append(profile)
    return profiles


def propose(
    table: SourceTable,
    profiles: list[ColumnProfile],
    min_batches: int = 3,
    max_values: int = 10,
    min_rows_per_value: int = 5,
) -> list[Proposal]:
    """The expectations the history supports and the declaration does not state yet."""
    declared = {c.staged_name: c for c in table.columns}
    monitors = dict((table.monitors.columns if table.monitors else {}) or {})
    proposals = []
    for profile in profiles:
        column = declared[profile.name]
        if profile.rows == 0:
            continue
        enough = profile.batches >= min_batches
        if (enough and profile.nulls == 0 and not column.meta.not_null
                and profile.name not in table.primary_key):
            proposals.append(Proposal(
                column.name, profile.name, "not_null", True,
                f"never null in {profile.rows:,} rows over {profile.batches} batches"))
        if (enough and column.is_string and not column.meta.pii
                and column.meta.accepted_values is None and profile.values
                and len(profile.values) <= max_values
                and profile.rows >= min_rows_per_value * len(profile.values)
                and profile.name not in table.primary_key):
            values = sorted(value for value, _ in profile.values)
            proposals.append(Proposal(
                column.name, profile.name, "accepted_values", values,
                f"{len(values)} distinct values over {profile.batches} batches"))
        wanted = []
        if profile.nulls:
            wanted.append("null_rate")
        if (profile.is_numeric and profile.name not in table.primary_key
                and not profile.name.endswith("_id")):  # an identifier has no level to watch
            wanted.extend(["min", "max", "mean"])
        missing = [m for m in wanted if m not in monitors.get(profile.name, [])]
        if enough and missing:
            reasons = []
            if "null_rate" in missing:
                reasons.append(f"null rate {profile.null_rate:.1%} (batch max "
                               f"{profile.max_batch_null_rate:.1%})")
            if "min" in missing:
                reasons.append(f"range {profile.minimum} .. {profile.maximum}")
            proposals.append(Proposal(
                column.name, profile.name, "monitors", missing, "; ".join(reasons)))
    return proposals


def apply_proposals(
    table: SourceTable, proposals: list[Proposal], project_dir: Path = PROJECT_DIR
) -> list[Path]:
    """Write the proposals into the table's declaration, validate it, re-derive staging files."""
    path = table.declared_in
    before = path.read_text(encoding="utf-8")
    yaml_rt = round_trip_yaml()
    document = yaml_rt.load(before)
    source = next(s for s in document["sources"] if s.get("name") == table.source)
    node = next(t for t in source["tables"] if t.get("name") == table.name)
    columns = {c["name"]: c for c in node.get("columns") or []}
    for proposal in proposals:
        if proposal.key == "monitors":
            holder = node.get("config") if "meta" in (node.get("config") or {}) else node
            if "meta" not in holder:
                holder = node.setdefault("config", {})
            meta = holder.setdefault("meta", {})
            monitored = meta.setdefault("monitors", {}).setdefault("columns", {})
            current = monitored.setdefault(proposal.staged, [])
            current.extend(m for m in proposal.value if m not in current)
            continue
        column = columns[proposal.column]
        column.setdefault("meta", {})[proposal.key] = proposal.value
    out = io.StringIO()
    yaml_rt.dump(document, out)
    path.write_text(out.getvalue(), encoding="utf-8")
    try:
        parse_sources_file(path)
    except DeclarationError:
        path.write_text(before, encoding="utf-8")
        raise
    return [path, *staging_sync.sync(project_dir)]


def describe(table: SourceTable, profiles: list[ColumnProfile],
             proposals: list[Proposal]) -> list[str]:
    """The profile and the proposals, as lines for the terminal."""
    lines = [f"{table.key}: {profiles[0].rows:,} rows over {profiles[0].batches} batch(es)"
             if profiles else f"{table.key}: nothing to profile"]
    lines.append(f"  {'column':<22} {'type':<14} {'null %':>7} {'batch max':>9} "
                 f"{'distinct':>9}  range / values / patterns")
    for p in profiles:
        detail = ""
        if p.values is not None and not p.is_numeric:
            detail = ", ".join(f"{v} ({n})" for v, n in p.values)
        elif p.minimum is not None:
            detail = f"{p.minimum} .. {p.maximum}"
        if p.patterns:
            shapes = ", ".join(f"{shape} {share:.0%}" for shape, share in p.patterns)
            detail = f"{detail}; shapes {shapes}" if detail else f"shapes {shapes}"
        lines.append(f"  {p.name:<22} {p.data_type:<14} {p.null_rate:>7.1%} "
                     f"{p.max_batch_null_rate:>9.1%} {p.distinct:>9,}  {detail[:120]}")
    if not proposals:
        lines.append("No expectation to propose: the declaration already says what the history "
                     "shows.")
        return lines
    lines.append(f"Proposed expectations for {table.declared_in}:")
    for proposal in proposals:
        where = (f"columns[{proposal.column}].meta.{proposal.key}" if proposal.key != "monitors"
                 else f"config.meta.monitors.columns.{proposal.staged}")
        lines.append(f"  {where}: {proposal.value}   # {proposal.reason}")
    return lines


def _find_table(name: str, registry: list[SourceTable]) -> SourceTable:
    for table in registry:
        if name in (table.key, table.staging_model):
            return table
    known = ", ".join(sorted(t.key for t in registry))
    raise DeclarationError(
        f"{name!r} is not a declared source table or its staging model: expected one of {known} "
        "(or stg_<source>__<table>); profiling other models is not supported yet")


def cmd_profile(args, settings) -> int:
    import json

    from dataops.sources.registry import load_registry

    table = _find_table(args.table, load_registry())
    manifest_path = settings.dbt_target_path / "manifest.json"
    if not manifest_path.is_file() or not settings.warehouse_path.exists():
        print("No manifest or warehouse yet: run `dataops run` first.")
        return 1
    nodes = json.loads(manifest_path.read_text(encoding="utf-8")).get("nodes", {})
    node = next((n for n in nodes.values()
                 if n.get("resource_type") == "model" and n.get("name") == table.staging_model),
                None)
    if node is None or not node.get("relation_name"):
        print(f"{table.staging_model} is not in {manifest_path}: run `dataops dbt prepare`.")
        return 1
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        try:
            profiles = profile_relation(con, node["relation_name"], table, args.max_values)
        except duckdb.CatalogException:
            print(f"{node['relation_name']} does not exist yet: run `dataops run` first.")
            return 1
    proposals = propose(table, profiles, min_batches=args.min_batches,
                        max_values=args.max_values)
    for line in describe(table, profiles, proposals):
        print(line)
    if args.write and proposals:
        for path in apply_proposals(table, proposals):
            print(f"wrote {path}")
    elif proposals:
        print("Run again with --write to add them to the declaration.")
    return 0


def add_parser(commands) -> None:
    """`dataops profile <source.table> [--write]` (wired in dataops/cli.py)."""
    parser = commands.add_parser(
        "profile",
        help="profile a source table's columns over its deliveries; propose expectations",
        description="Null rates, distinct counts, ranges, value sets and shapes per column over "
        "the table's batches (read from its staging model); proposes not_null, accepted_values "
        "and monitors for its declaration; --write adds them to the YAML.",
    )
    parser.add_argument("table", help="source.table (e.g. shop.orders) or its staging model")
    parser.add_argument("--write", action="store_true",
                        help="add the proposals to the declaration and re-derive staging files")
    parser.add_argument("--min-batches", type=int, default=3,
                        help="batches a property must hold in before it is proposed (default 3)")
    parser.add_argument("--max-values", type=int, default=10,
                        help="largest value set proposed as accepted_values (default 10)")
    parser.set_defaults(func=cmd_profile)
