"""Data diff of a model built in a PR environment against the same model in prod.

Rows are matched by the model's primary key: the column with both a ``unique`` and a
``not_null`` test (or a ``primary_key`` constraint), or for a staging model the ``primary_key``
of the source declaration it stages. A model without one gets row counts, column changes and
a whole-row set difference instead. The SQL is built by small pure functions (tested on their
own) and run on one DuckDB connection that has the CI file open and prod attached read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from dataops.core.sql import quote_identifier


def primary_key(manifest: dict[str, Any], unique_id: str) -> str | list[str] | None:
    """The primary-key column of a model (a list for a composite key) from its tests, constraints
    or source declaration."""
    node = manifest["nodes"].get(unique_id) or {}
    for constraint in node.get("constraints") or []:
        if constraint.get("type") == "primary_key" and len(constraint.get("columns") or []) == 1:
            return constraint["columns"][0]
    for name, column in (node.get("columns") or {}).items():
        if any(c.get("type") == "primary_key" for c in column.get("constraints") or []):
            return name
    tested: dict[str, set[str]] = {}
    for test in manifest["nodes"].values():
        if test.get("resource_type") != "test" or test.get("attached_node") != unique_id:
            continue
        test_name = (test.get("test_metadata") or {}).get("name")
        column = test.get("column_name")
        # tests/dbt/generic/test_primary_key.sql, test_staging_rules.sql (staging models)
        if test_name in ("primary_key", "staging_rules"):
            argument = "columns" if test_name == "primary_key" else "primary_key"
            columns = ((test.get("test_metadata") or {}).get("kwargs") or {}).get(argument)
            if isinstance(columns, list) and columns:
                return columns[0] if len(columns) == 1 else list(columns)
            if isinstance(columns, str):
                return columns
        if test_name in ("unique", "not_null") and column:
            tested.setdefault(column, set()).add(test_name)
    keys = sorted(c for c, names in tested.items() if names == {"unique", "not_null"})
    if keys:
        return keys[0]
    for parent in (node.get("depends_on") or {}).get("nodes") or []:
        source = manifest.get("sources", {}).get(parent)
        if source:
            meta = {
                **(source.get("meta") or {}),
                **((source.get("config") or {}).get("meta") or {}),
            }
            if isinstance(meta.get("primary_key"), str | list):
                return meta["primary_key"]
    return None


def keyed_diff_sql(
    pr_relation: str, prod_relation: str, key: str | list[str], columns: list[str]
) -> str:
    """One row: added, removed, changed rows, then one changed-value count per column.

    Rows match on every key column (a composite key is a list). Columns are compared with
    ``is distinct from`` (null = null), over the rows present in both.
    """
    keys = [key] if isinstance(key, str) else list(key)
    k = quote_identifier(keys[0])
    join_on = " and ".join(
        f"pr_rows.{quote_identifier(c)} = prod_rows.{quote_identifier(c)}" for c in keys
    )
    flags = ",\n        ".join(
        f"pr_rows.{quote_identifier(c)} is distinct from prod_rows.{quote_identifier(c)} "
        f"as {quote_identifier('changed__' + c)}"
        for c in columns
    )
    any_changed = " or ".join(quote_identifier("changed__" + c) for c in columns) or "false"
    per_column = "".join(
        f",\n    sum(case when in_both and {quote_identifier('changed__' + c)} then 1 else 0 end)"
        for c in columns
    )
    return f"""with
pr_rows as (select * from {pr_relation}),
prod_rows as (select * from {prod_relation}),
matched as (
    select
        pr_rows.{k} is not null and prod_rows.{k} is not null as in_both,
        prod_rows.{k} is null as only_in_pr,
        pr_rows.{k} is null as only_in_prod{"," if columns else ""}
        {flags}
    from pr_rows
    full outer join prod_rows on {join_on}
)
select
    sum(case when only_in_pr then 1 else 0 end) as added,
    sum(case when only_in_prod then 1 else 0 end) as removed,
    sum(case when in_both and ({any_changed}) then 1 else 0 end) as changed{per_column}
from matched"""


def set_diff_sql(pr_relation: str, prod_relation: str, columns: list[str]) -> str:
    """Without a key: rows (whole, over the common columns) only in the PR and only in prod."""
    cols = ", ".join(quote_identifier(c) for c in columns)
    return f"""select
    (select count(*) from (select {cols} from {pr_relation}
                           except all select {cols} from {prod_relation})) as only_in_pr,
    (select count(*) from (select {cols} from {prod_relation}
                           except all select {cols} from {pr_relation})) as only_in_prod"""


SAMPLE_ROWS = 5


@dataclass
class ColumnProfile:
    column: str
    data_type: str
    rows: int
    nulls: int
    distinct: int
    minimum: str | None = None
    maximum: str | None = None


def duplicates_sql(relation: str, key: str | list[str]) -> str:
    """Rows beyond one per key value (0 when the key is unique)."""
    keys = [key] if isinstance(key, str) else list(key)
    columns = ", ".join(quote_identifier(k) for k in keys)
    return (
        f"select (select count(*) from {relation}) - "
        f"(select count(*) from (select distinct {columns} from {relation}))"
    )


def changed_rows_sql(
    pr_relation: str,
    prod_relation: str,
    key: str | list[str],
    columns: list[str],
    limit: int = SAMPLE_ROWS,
) -> str:
    """A few rows present on both sides with a changed value: the key (its columns joined by
    ", "), then each column's prod and PR value, as text."""
    keys = [key] if isinstance(key, str) else list(key)
    key_text = " || ', ' || ".join(f"cast(pr_rows.{quote_identifier(c)} as varchar)" for c in keys)
    join_on = " and ".join(
        f"pr_rows.{quote_identifier(c)} = prod_rows.{quote_identifier(c)}" for c in keys
    )
    order = ", ".join(f"pr_rows.{quote_identifier(c)}" for c in keys)
    pairs = ",\n    ".join(
        f"cast(prod_rows.{quote_identifier(c)} as varchar), "
        f"cast(pr_rows.{quote_identifier(c)} as varchar)"
        for c in columns
    )
    changed = " or ".join(
        f"pr_rows.{quote_identifier(c)} is distinct from prod_rows.{quote_identifier(c)}"
        for c in columns
    )
    return f"""select
    {key_text},
    {pairs}
from {pr_relation} as pr_rows
inner join {prod_relation} as prod_rows on {join_on}
where {changed}
order by {order}
limit {int(limit)}"""


def profile_sql(relation: str, column: str) -> str:
    c = quote_identifier(column)
    return (
        f"select count(*), count(*) - count({c}), count(distinct {c}), "
        f"cast(min({c}) as varchar), cast(max({c}) as varchar) from {relation}"
    )


def profile_columns(
    con: duckdb.DuckDBPyConnection, relation: str, columns: dict[str, str]
) -> list[ColumnProfile]:
    """Rows, nulls, distinct values, min and max of each column (min/max left out for types
    without an order)."""
    profiles = []
    for column, data_type in columns.items():
        try:
            rows, nulls, distinct, low, high = con.execute(profile_sql(relation, column)).fetchone()
        except duckdb.Error:
            c = quote_identifier(column)
            rows, nulls, distinct = con.execute(
                f"select count(*), count(*) - count({c}), count(distinct {c}) from {relation}"
            ).fetchone()
            low = high = None
        profiles.append(ColumnProfile(column, data_type, rows, nulls, distinct, low, high))
    return profiles


@dataclass
class ModelDiff:
    name: str
    change: str  # modified, downstream or new
    key: str | None = None
    pr_rows: int | None = None
    prod_rows: int | None = None
    added: int | None = None
    removed: int | None = None
    changed: int | None = None
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    columns_retyped: list[tuple[str, str, str]] = field(default_factory=list)
    changed_values: dict[str, int] = field(default_factory=dict)
    note: str | None = None
    # rows beyond one per key (a join fan-out makes the key not unique any more)
    pr_duplicates: int | None = None
    prod_duplicates: int | None = None
    # up to SAMPLE_ROWS changed rows: (key value, {column: (prod value, PR value)})
    samples: list[tuple[str, dict[str, tuple[str | None, str | None]]]] = field(
        default_factory=list
    )
    profiles: list[ColumnProfile] = field(default_factory=list)  # of the columns added

    @property
    def key_broken(self) -> bool:
        """The key is unique in prod but not in the PR (a fan-out): counts are not row-to-row."""
        return bool(self.pr_duplicates) and not self.prod_duplicates

    @property
    def identical(self) -> bool:
        return (
            self.pr_rows == self.prod_rows
            and not (self.added or self.removed or self.changed)
            and not (self.columns_added or self.columns_removed or self.columns_retyped)
        )


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {
        name: dtype
        for name, dtype, *_ in con.execute(f"describe select * from {relation}").fetchall()
    }


def diff_model(
    con: duckdb.DuckDBPyConnection,
    name: str,
    change: str,
    pr_relation: str,
    prod_relation: str | None,
    key: str | list[str] | None,
    *,
    sample: bool = False,
) -> ModelDiff:
    """Compare one PR relation with its prod counterpart (None: the model is new).

    With ``sample`` (marts), a few changed rows are fetched with their values before and after.
    Added columns are profiled; a key that stops being unique is counted.
    """
    keys = [key] if isinstance(key, str) else list(key or [])
    diff = ModelDiff(name=name, change=change, key=", ".join(keys) or None)
    pr_columns = _columns(con, pr_relation)
    [(diff.pr_rows,)] = con.execute(f"select count(*) from {pr_relation}").fetchall()
    if keys and all(k in pr_columns for k in keys):
        [(diff.pr_duplicates,)] = con.execute(duplicates_sql(pr_relation, keys)).fetchall()
    if prod_relation is None:
        diff.change = "new"
        diff.columns_added = list(pr_columns)
        diff.profiles = profile_columns(con, pr_relation, pr_columns)
        return diff
    try:
        prod_columns = _columns(con, prod_relation)
    except duckdb.CatalogException:
        diff.note = f"{prod_relation} does not exist in prod (never built there)"
        diff.columns_added = list(pr_columns)
        return diff
    [(diff.prod_rows,)] = con.execute(f"select count(*) from {prod_relation}").fetchall()
    if keys and all(k in prod_columns for k in keys):
        [(diff.prod_duplicates,)] = con.execute(duplicates_sql(prod_relation, keys)).fetchall()
    diff.columns_added = [c for c in pr_columns if c not in prod_columns]
    diff.profiles = profile_columns(
        con, pr_relation, {c: pr_columns[c] for c in diff.columns_added}
    )
    diff.columns_removed = [c for c in prod_columns if c not in pr_columns]
    common = [c for c in pr_columns if c in prod_columns]
    diff.columns_retyped = [
        (c, prod_columns[c], pr_columns[c]) for c in common if prod_columns[c] != pr_columns[c]
    ]
    if keys and all(k in common for k in keys):
        compared = [c for c in common if c not in keys]
        try:
            row = con.execute(keyed_diff_sql(pr_relation, prod_relation, key, compared)).fetchone()
        except duckdb.Error:  # retyped columns that do not compare: compare their text
            text = [c for c in compared if c not in {r[0] for r in diff.columns_retyped}]
            row = con.execute(keyed_diff_sql(pr_relation, prod_relation, key, text)).fetchone()
            compared = text
            diff.note = "retyped columns not compared value by value"
        diff.added, diff.removed, diff.changed, *per_column = (int(v or 0) for v in row)
        diff.changed_values = {c: n for c, n in zip(compared, per_column, strict=True) if n}
        if sample and diff.changed_values:
            columns = list(diff.changed_values)
            for key_value, *values in con.execute(
                changed_rows_sql(pr_relation, prod_relation, keys, columns)
            ).fetchall():
                pairs = {
                    c: (values[2 * i], values[2 * i + 1])
                    for i, c in enumerate(columns)
                    if values[2 * i] != values[2 * i + 1]
                }
                diff.samples.append((key_value, pairs))
    else:
        diff.key = None
        diff.note = (
            "no primary key: give one column both a unique and a not_null test "
            "for a row-by-row diff; rows compared whole"
            if not key
            else f"primary key {diff.key!r} is not in both versions; rows compared whole"
        )
        if common:
            row = con.execute(set_diff_sql(pr_relation, prod_relation, common)).fetchone()
            diff.added, diff.removed = (int(v or 0) for v in row)
    return diff
