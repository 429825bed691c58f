"""SLOs on marts: the SLIs over 7 and 30 days and the error budget, against a constructed history
(a real DuckDB file holding the node results the dbt hooks write), and the declarations'
validation."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from dataops.core import events
from dataops.observability import slo

NOW = datetime(2025, 3, 31)
NODE = "model.dataops.fct_daily_revenue"


def _history(con: duckdb.DuckDBPyConnection) -> None:
    events.ensure_events(con)
    for day in range(30, 0, -1):
        at = NOW - timedelta(days=day)
        skipped = day in (5, 4)  # not rebuilt two days in a row (an upstream test failed)
        events.record_event(con, "dbt.node_result", occurred_at=at, node_id=NODE,
                            status="skipped" if skipped else "success",
                            details={"resource_type": "model"})
        for test in ("unique", "not_null"):
            failed = test == "unique" and day == 2
            events.record_event(
                con, "dbt.node_result", occurred_at=at, node_id=f"test.dataops.{test}_x",
                status="fail" if failed else "pass",
                details={"resource_type": "test", "tested_node_id": NODE},
            )


def test_slis_and_error_budget_over_7_and_30_days(tmp_path) -> None:
    declared = slo.declared_slos({"nodes": {NODE: {
        "resource_type": "model", "name": "fct_daily_revenue",
        "patch_path": "dataops://models/marts/finance/_finance__models.yml",
        "config": {"meta": {"slo": {"freshness_hours": 30, "freshness": 0.9,
                                    "build_success": 0.95, "tests_passing": 0.95}}},
    }}})
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        _history(con)
        slis = {(s.objective, s.window_days): s for s in slo.measure(con, declared, NOW)}
    # Builds at 00:00 each day except 4 and 5 days ago: fresh until 30 h after the build 6 days
    # ago, then stale for 42 h until the build 3 days ago.
    assert slis[("freshness", 7)].value == pytest.approx(1 - 42 / 168)
    assert slis[("freshness", 30)].value == pytest.approx(1 - 42 / 720)
    assert slis[("build_success", 7)].value == pytest.approx(5 / 7)
    assert slis[("build_success", 30)].value == pytest.approx(28 / 30)
    assert slis[("tests_passing", 7)].value == pytest.approx(13 / 14)
    assert slis[("tests_passing", 30)].value == pytest.approx(59 / 60)
    # Error budget: 1 - target allowed to fail; the share left (negative when overspent).
    assert slis[("freshness", 30)].budget_left == pytest.approx(1 - (42 / 720) / 0.1)
    assert slis[("freshness", 7)].budget_left == pytest.approx(1 - 0.25 / 0.1)
    assert slis[("freshness", 30)].met and not slis[("freshness", 7)].met
    assert slis[("tests_passing", 30)].budget_left == pytest.approx(1 - (1 / 60) / 0.05)


def test_fresh_share_counts_only_the_time_over_the_slo() -> None:
    start = datetime(2025, 1, 1)
    builds = [start, start + timedelta(hours=40)]
    # 0-30 h fresh, 30-40 h stale, 40-50 h fresh
    assert slo.fresh_share(builds, 30, start, start + timedelta(hours=50)) == pytest.approx(0.8)
    assert slo.fresh_share([], 30, start, start + timedelta(hours=5)) == 0.0


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"freshness_hours": 0}, "freshness_hours is 0: expected a number of hours above 0"),
        ({"freshness_hours": 30, "build_success": 95}, "build_success is 95: expected a share"),
        ({"freshness_hours": 30, "uptime": 1}, "unknown key(s) ['uptime']"),
        ("daily", "meta.slo is 'daily': expected a mapping"),
    ],
)
def test_a_wrong_slo_declaration_names_the_file_model_and_key(declared, message) -> None:
    manifest = {"nodes": {NODE: {"resource_type": "model", "name": "fct_daily_revenue",
                                 "original_file_path": "models/marts/finance/x.sql",
                                 "config": {"meta": {"slo": declared}}}}}
    with pytest.raises(slo.SloDeclarationError) as error:
        slo.declared_slos(manifest)
    assert message in str(error.value)
    assert "model 'fct_daily_revenue'" in str(error.value)
