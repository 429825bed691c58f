"""Pruned PR builds (dataops/cicd/prune.py), the pure parts: which compiled SQL cannot be judged
identical to prod, the comparison of two relations on real DuckDB, and which descendants a build
rebuilds, leaves to prod or skips. The real builds are in test_pr_environments.py."""

from __future__ import annotations

import duckdb
import pytest

from dataops.cicd import prune
from dataops.cicd.pr import DEFAULT_SELECTION


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select order_id, now() as built_at from orders", "now()"),
        ("select order_id, current_timestamp as built_at from orders", "CURRENT_TIMESTAMP"),
        ("select * from orders where ordered_at < current_date", "CURRENT_DATE"),
        ("select order_id, random() as r from orders", "RANDOM()"),
        ("select uuid() as id from orders", "UUID()"),
        ("select gen_random_uuid() as id from orders", "UUID()"),
        ("select * from orders using sample 10%", "SAMPLE"),
        ("select order_id, row_number() over () as n from orders", "no order by"),
        ("select customer_id, any_value(order_id) from orders group by 1", "ANY_VALUE"),
        ("select get_current_timestamp() as t", "get_current_timestamp()"),
    ],
)
def test_nondeterministic_sql_is_named(sql, expected):
    reason = prune.nondeterminism(sql)
    assert reason and reason.startswith("nondeterministic SQL") and expected in reason, reason


@pytest.mark.parametrize(
    "sql",
    [
        'with orders as (select * from "warehouse_prod"."staging"."stg_shop__orders"),\n'
        "final as (select order_id, count(*) as n, min(case when status = 'paid' then ordered_at"
        " end) as first_paid_at from orders group by 1)\nselect * from final",
        "select order_id, row_number() over (partition by customer_id order by ordered_at) as n"
        " from orders qualify n = 1",
        "select * exclude (email) from customers",
        "select order_id, ordered_at::date as order_date from orders -- now() in a comment",
    ],
)
def test_deterministic_sql_passes(sql):
    assert prune.nondeterminism(sql) is None


def test_sql_that_cannot_be_parsed_or_is_missing_is_never_judged_deterministic():
    assert "not parsable" in prune.nondeterminism("select from where (((")
    assert prune.nondeterminism(None) == "no compiled SQL"


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        connection.execute(
            "create table prod as select * from (values (1, 'a', 10.50::decimal(18, 2)), "
            "(2, null, 3.00), (2, null, 3.00), (3, 'c', null)) as v(id, name, amount)"
        )
        yield connection


def _pr(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    con.execute(f"create or replace table pr as {sql}")
    return "pr"


def test_the_same_rows_in_another_order_are_identical(con):
    _pr(con, "select * from prod order by id desc, name nulls first")
    assert prune.compare_with_prod(con, "pr", "prod") is None


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select * from prod where id <> 3", "row count differs from prod (4 -> 3)"),
        ("select * from prod union all select * from prod where id = 1", "row count"),
        # duplicates count: prod has (2, null, 3.00) twice; here once, and (1, 'a', 10.50) twice
        (
            "select * from prod where id <> 2 union all select * from prod where id = 1 "
            "union all (select * from prod where id = 2 limit 1)",
            "row values differ",
        ),
        ("select id, coalesce(name, '') as name, amount from prod", "row values differ"),
        ("select id, name, coalesce(amount, 0) as amount from prod", "row values differ"),
        # a value moved to another row of the same column
        (
            "select id, case id when 1 then 'c' when 3 then 'a' else name end as name, amount "
            "from prod",
            "row values differ",
        ),
        ("select id::bigint as id, name, amount from prod", "columns or types differ"),
        ("select name, id, amount from prod", "columns or types differ"),
        ("select id, name, amount::decimal(18, 3) as amount from prod", "columns or types"),
        ("select id, name as label, amount from prod", "columns or types differ"),
    ],
)
def test_any_change_of_rows_columns_or_types_differs(con, sql, expected):
    _pr(con, sql)
    reason = prune.compare_with_prod(con, "pr", "prod")
    assert reason is not None and expected in reason, reason


def test_a_column_named_like_the_row_alias_does_not_hide_the_row(con):
    con.execute("create table prod2 as select 1 as _dataops_row, 2 as x")
    con.execute("create table pr2 as select 1 as _dataops_row, 3 as x")
    assert "row values differ" in prune.compare_with_prod(con, "pr2", "prod2")


def _node(uid: str, materialized: str = "table") -> dict:
    return {
        "unique_id": uid,
        "resource_type": uid.split(".")[0],
        "name": uid.split(".")[-1],
        "fqn": ["dataops", uid.split(".")[-1]],
        "config": {"materialized": materialized},
        "checksum": {"checksum": uid},
    }


def _manifest(edges: dict[str, list[str]], ephemeral: tuple[str, ...] = ()) -> dict:
    uids = set(edges) | {c for cs in edges.values() for c in cs}
    parents: dict[str, list[str]] = {uid: [] for uid in uids}
    for parent, children in edges.items():
        for child in children:
            parents[child].append(parent)
    return {
        "nodes": {
            uid: _node(uid, "ephemeral" if uid in ephemeral else "table") for uid in sorted(uids)
        },
        "child_map": {uid: edges.get(uid, []) for uid in uids},
        "parent_map": parents,
    }


M = "model.dataops."


def test_only_descendants_with_a_parent_whose_data_differs_are_rebuilt():
    #   same -> a -> c        differs -> b -> c ; b -> d ; same -> e -> f ; broken -> g -> h
    edges = {
        f"{M}same": [f"{M}a", f"{M}e"],
        f"{M}a": [f"{M}c", "test.dataops.t_a"],
        f"{M}differs": [f"{M}b"],
        f"{M}b": [f"{M}c", f"{M}d"],
        f"{M}e": [f"{M}f"],
        f"{M}broken": [f"{M}g"],
        f"{M}g": [f"{M}h"],
    }
    manifest = _manifest(edges)
    compared = {
        f"{M}same": prune.IDENTICAL,
        f"{M}differs": "row values differ from prod (3 rows)",
        f"{M}broken": prune.FAILED_UPSTREAM,
    }
    build, pruned, skipped = prune.plan(manifest, manifest, compared)
    assert sorted(build) == [f"{M}b", f"{M}c", f"{M}d"]
    assert build.index(f"{M}b") < build.index(f"{M}c"), "parents first"
    assert pruned == {f"{M}a": [f"{M}same"], f"{M}e": [f"{M}same"], f"{M}f": [f"{M}same"]}
    assert skipped == {f"{M}g": f"{M}broken", f"{M}h": f"{M}g"}


def test_a_modified_ephemeral_model_counts_as_changed_data():
    edges = {f"{M}same": [f"{M}eph"], f"{M}eph": [f"{M}child"]}
    pr_manifest = _manifest(edges, ephemeral=(f"{M}eph",))
    prod_manifest = _manifest(edges, ephemeral=(f"{M}eph",))
    prod_manifest["nodes"][f"{M}eph"]["checksum"] = {"checksum": "before"}
    build, pruned, _ = prune.plan(pr_manifest, prod_manifest, {f"{M}same": prune.IDENTICAL})
    assert build == [f"{M}child"] and not pruned
    unchanged = prune.plan(pr_manifest, pr_manifest, {f"{M}same": prune.IDENTICAL})
    assert unchanged[0] == [] and set(unchanged[1]) == {f"{M}eph", f"{M}child"}


def test_pruning_replaces_the_default_build_only():
    assert prune.applies(DEFAULT_SELECTION, DEFAULT_SELECTION, full_refresh=False)
    assert not prune.applies(DEFAULT_SELECTION, DEFAULT_SELECTION, full_refresh=True)
    assert not prune.applies(("fct_orders+",), DEFAULT_SELECTION, full_refresh=False)


def test_verdicts_compare_only_what_can_be_trusted_and_has_descendants(con):
    con.execute("create schema pr_1")
    for name, sql in {
        "same": "select * from prod",
        "changed": "select * from prod where id <> 3",
        "clock": "select * from prod",
        "tested": "select * from prod",
        "leaf": "select 1 as x",
    }.items():
        con.execute(f"create table pr_1.{name} as {sql}")
    edges = {f"{M}{name}": [f"{M}child_{name}"] for name in ("same", "changed", "clock", "tested")}
    edges[f"{M}tested"].append("test.dataops.unique_tested_id")
    edges[f"{M}new"] = [f"{M}child_new"]
    edges[f"{M}leaf"] = []
    manifest = _manifest(edges)
    prod_manifest = _manifest(edges)
    del prod_manifest["nodes"][f"{M}new"]
    for uid, node in manifest["nodes"].items():
        node["relation_name"] = f"pr_1.{node['name']}"
        if uid in prod_manifest["nodes"]:
            prod_manifest["nodes"][uid]["relation_name"] = "prod"
    manifest["nodes"]["test.dataops.unique_tested_id"]["depends_on"] = {"nodes": [f"{M}tested"]}
    sql = {f"{M}clock": "select *, now() as at from prod"}
    results = [
        {"unique_id": uid, "status": "success", "compiled_code": sql.get(uid, "select 1")}
        for uid in (f"{M}same", f"{M}changed", f"{M}clock", f"{M}tested", f"{M}new", f"{M}leaf")
    ] + [{"unique_id": "test.dataops.unique_tested_id", "status": "fail"}]
    assert prune.verdicts(con, manifest, prod_manifest, results) == {
        f"{M}same": prune.IDENTICAL,
        f"{M}changed": "row count differs from prod (4 -> 3)",
        f"{M}clock": "nondeterministic SQL: now()",
        f"{M}tested": prune.FAILED_UPSTREAM,
        f"{M}new": "new: not in prod",
    }
