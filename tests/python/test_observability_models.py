"""Model monitors: a mart is measured and judged in the dbt invocation that builds it, and a model
not rebuilt within its freshness SLO is reported (model_freshness).

Real dbt invocations on a copy of the built platform, with a constructed metric history for the
mart (earlier measurements 50% above what the build will measure) and a simulated clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from dataops.core.settings import REPO_ROOT
from tests.python.conftest import platform_env

MART = "model.dataops.fct_daily_revenue"
AS_OF = datetime(2030, 1, 15, 6, 0)


def _dbt(home: Path, *args: str, as_of: datetime) -> subprocess.CompletedProcess[str]:
    env = platform_env(home)
    env["DATAOPS_AS_OF"] = as_of.strftime("%Y-%m-%d %H:%M:%S")
    dbt = str(Path(sys.executable).parent / "dbt")
    return subprocess.run([dbt, *args, "--project-dir", str(REPO_ROOT)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_mart_is_judged_in_the_build_that_rebuilds_it_and_flagged_when_stale(
    platform_copy: Path,
) -> None:
    warehouse = platform_copy / "warehouse_dev.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        measured = con.execute(
            "select column_name, metric_name, metric_value from platform.metric_history "
            "where node_id = ? and measured_at = (select max(measured_at) from "
            "platform.metric_history where node_id = ?)", [MART, MART],
        ).fetchall()
        assert {m for _, m, _ in measured} >= {"row_count", "mean", "min"}, measured
        # 14 earlier daily measurements, net revenue 50% above today's, a little noise.
        for day in range(1, 15):
            for column, metric, value in measured:
                earlier = value if metric == "row_count" else value * (1.5 + 0.01 * (day % 3))
                con.execute(
                    "insert into platform.metric_history (measured_at, dbt_invocation_id, node_id, "
                    "table_kind, table_name, column_name, metric_name, metric_value) "
                    "values (?, 'constructed', ?, 'model', 'fct_daily_revenue', ?, ?, ?)",
                    [AS_OF - timedelta(days=day), MART, column, metric, earlier],
                )

    built = _dbt(platform_copy, "build", "--select", "fct_daily_revenue", as_of=AS_OF)
    assert built.returncode == 0, built.stdout[-3000:]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        invocation = con.execute(
            "select dbt_invocation_id from platform.events where event_type = 'dbt.model_built' "
            "and node_id = ? and occurred_at = ?", [MART, AS_OF],
        ).fetchone()[0]
        anomalies = con.execute(
            "select details, message, dbt_invocation_id from platform.events "
            "where event_type = 'anomaly.detected' and dbt_invocation_id = ?", [invocation],
        ).fetchall()
    judged = [(json.loads(d), m) for d, m, _ in anomalies]
    # Measured by the build's post-hook at this run's clock, judged by the same invocation.
    assert {(d["monitor"], d["metric_name"], d["measured_at"][:19]) for d, _ in judged} == {
        ("model_metrics_anomaly", "mean", "2030-01-15 06:00:00"),
        ("model_metrics_anomaly", "min", "2030-01-15 06:00:00"),
    }, judged
    assert all(m.startswith("fct_daily_revenue.net_revenue: ") for _, m in judged), judged

    # Freshness: 29 hours later the mart (SLO 30 h) is fresh; 31 hours later it is not.
    fresh = _dbt(platform_copy, "test", "--select", "test_name:model_freshness",
                 as_of=AS_OF + timedelta(hours=29))
    stale = _dbt(platform_copy, "test", "--select", "test_name:model_freshness",
                 as_of=AS_OF + timedelta(hours=31))
    assert fresh.returncode == 0 and stale.returncode == 0  # severity warn
    with duckdb.connect(str(warehouse), read_only=True) as con:
        reported = dict(con.execute(
            "select details::json ->> 'measured_at', list(table_name order by table_name) "
            "from platform.events where event_type = 'anomaly.detected' "
            "and details::json ->> 'monitor' = 'model_freshness' group by 1"
        ).fetchall())
        message = con.execute(
            "select message from platform.events where event_type = 'anomaly.detected' "
            "and table_name = 'fct_daily_revenue' and details::json ->> 'monitor' = "
            "'model_freshness'"
        ).fetchone()[0]
    # (the other models' builds, years before this simulated clock, fell out of the event log's
    # retention, so they are not judged: only the mart's build is on record)
    assert reported == {"2030-01-16 13:00:00": ["fct_daily_revenue"]}, reported
    assert message == ("fct_daily_revenue: not rebuilt for 31.0 hours (last successful build "
                       "2030-01-15 06:00 UTC), over its freshness SLO of 30 hours")


def test_model_freshness_judges_a_build_after_the_models_it_rebuilt(platform_copy: Path) -> None:
    """In a build, model_freshness is evaluated after every model of the invocation: the models
    the build rebuilds are fresh, the ones it does not rebuild are judged on their last build."""
    as_of = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(hours=48)
    built = _dbt(platform_copy, "build", "--select", "+fct_daily_revenue",
                 "test_name:model_freshness", as_of=as_of)
    assert built.returncode == 0, built.stdout[-3000:]
    manifest = json.loads((platform_copy / "target" / "manifest.json").read_text())
    models = {uid for uid, node in manifest["nodes"].items()
              if node["resource_type"] == "model" and node["config"]["enabled"]
              and node["config"]["materialized"] != "ephemeral"}
    rebuilt, pending = set(), [MART]
    while pending:  # the mart and its upstream models: what this build rebuilt
        uid = pending.pop()
        if uid in models and uid not in rebuilt:
            rebuilt.add(uid)
            pending.extend(manifest["parent_map"].get(uid, []))
    assert MART in rebuilt and rebuilt < models
    with duckdb.connect(str(platform_copy / "warehouse_dev.duckdb"), read_only=True) as con:
        [invocation] = con.execute(
            "select distinct dbt_invocation_id from platform.events "
            "where event_type = 'dbt.model_built' and occurred_at = ?", [as_of]).fetchone()
        flagged = {row[0] for row in con.execute(
            "select details::json ->> 'monitored_node_id' from platform.events "
            "where event_type = 'anomaly.detected' and dbt_invocation_id = ? "
            "and details::json ->> 'monitor' = 'model_freshness'", [invocation]).fetchall()}
        [(status, message)] = con.execute(
            "select status, message from platform.events where event_type = 'dbt.node_result' "
            "and dbt_invocation_id = ? and details::json ->> 'test_name' = 'model_freshness'",
            [invocation]).fetchall()
    # Every model is 48 hours past its last build except those this build rebuilt.
    assert flagged == models - rebuilt, sorted(flagged ^ (models - rebuilt))
    assert status == "warn" and f"Got {len(flagged)} results" in message, message
    # dbt itself ran the test as soon as platform.events was ready, before those models were
    # rebuilt: its own result (run_results.json, console) flagged them too.
    run_results = json.loads((platform_copy / "target" / "run_results.json").read_text())
    [early] = [r for r in run_results["results"] if "model_freshness" in r["unique_id"]]
    assert early["failures"] > len(flagged), early
