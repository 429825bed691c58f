"""The dashboard's charts: plotly figures over the metric history, with the anomaly model's
expected band, the anomalies it reported and the incidents opened on the asset.

Plotly draws them in the browser from JSON embedded in the page; its JavaScript is inlined once
(``plotly_js``), so the file works offline.

The expected band is the range the anomaly monitors (``dataops_metric_anomalies``, one generic
test per metric family in tests/dbt/generic/) accept at each measurement: the median of the
earlier measurements in the trailing training window (same weekday when the monitor is seasonal)
plus or minus ``max(sensitivity * 1.4826 * MAD, min_absolute_change, min_relative_change *
|median|)``, with the monitor's arguments read from the manifest (the test's declared arguments
over its macro's defaults). Where a monitor reported an anomaly, the marker carries the expected
value and tolerance it recorded in its ``anomaly.detected`` event.
"""

from __future__ import annotations

import ast
import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Which anomaly monitor judges which metric (tests/dbt/generic/test_<monitor>.sql).
MONITOR_OF_METRIC = {
    "rows_added": "volume_anomaly",
    "row_count": "volume_anomaly",
    "null_rate": "null_rate_anomaly",
    "mean": "distribution_anomaly",
    "min": "distribution_anomaly",
    "max": "distribution_anomaly",
}
BAND_ARGUMENTS = ("sensitivity", "training_days", "min_history", "min_absolute_change",
                  "min_relative_change", "seasonality")
COLORS = {"value": "#2563eb", "band": "rgba(37, 99, 235, 0.14)", "anomaly": "#dc2626",
          "incident": "#b45309", "sla": "#dc2626", "resolved": "#16a34a"}


@dataclass(frozen=True)
class BandRule:
    sensitivity: float
    training_days: float
    min_history: int
    min_absolute_change: float
    min_relative_change: float
    seasonality: str = "none"


def _macro_defaults(macro_sql: str, test_name: str) -> dict[str, Any]:
    """The keyword defaults of ``{% test name(model, a=1, ...) %}`` in a generic test's source."""
    found = re.search(r"\{%-?\s*test\s+" + re.escape(test_name) + r"\s*\((.*?)\)\s*-?%\}",
                      macro_sql, re.S)
    if not found:
        return {}
    call = ast.parse(f"f({found.group(1).replace('model,', '', 1)})", mode="eval").body
    defaults = {}
    for keyword in getattr(call, "keywords", []):
        try:
            defaults[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            continue
    return defaults


def band_rules(manifest: Mapping[str, Any] | None) -> dict[str, BandRule]:
    """The band rule of each monitor (volume_anomaly, ...) as the project declares it."""
    rules: dict[str, BandRule] = {}
    manifest = manifest or {}
    for monitor in set(MONITOR_OF_METRIC.values()):
        macro = next((m for m in manifest.get("macros", {}).values()
                      if m.get("name") == f"test_{monitor}"), None)
        arguments = _macro_defaults(macro["macro_sql"], monitor) if macro else {}
        for node in manifest.get("nodes", {}).values():
            metadata = node.get("test_metadata") or {}
            if node.get("resource_type") == "test" and metadata.get("name") == monitor:
                arguments.update({k: v for k, v in (metadata.get("kwargs") or {}).items()
                                  if k in BAND_ARGUMENTS})
        if all(name in arguments for name in BAND_ARGUMENTS[:-1]):
            rules[monitor] = BandRule(**{k: arguments[k] for k in BAND_ARGUMENTS if k in arguments})
    return rules


def expected_band(
    points: Sequence[tuple[datetime, float]], rule: BandRule
) -> list[tuple[float, float, float] | None]:
    """(expected, low, high) at each point from the points before it, or None where the
    training window holds fewer than ``min_history`` measurements (the monitor does not judge)."""
    band: list[tuple[float, float, float] | None] = []
    window = timedelta(days=rule.training_days)
    for index, (at, _) in enumerate(points):
        training = [
            value for earlier, value in points[:index]
            if at - window <= earlier < at
            and (rule.seasonality != "day_of_week" or earlier.weekday() == at.weekday())
        ]
        if len(training) < max(rule.min_history, 1):
            band.append(None)
            continue
        median = statistics.median(training)
        mad = statistics.median(abs(value - median) for value in training)
        tolerance = max(rule.sensitivity * 1.4826 * mad, rule.min_absolute_change,
                        rule.min_relative_change * abs(median))
        band.append((median, median - tolerance, median + tolerance))
    return band


def _iso(at: datetime | str) -> str:
    return at if isinstance(at, str) else at.strftime("%Y-%m-%d %H:%M:%S")


def metric_figure(
    title: str,
    points: Sequence[tuple[datetime, float]],
    *,
    unit: str,
    rule: BandRule | None = None,
    anomalies: Sequence[Mapping[str, Any]] = (),
    incidents: Sequence[Mapping[str, Any]] = (),
    sla: float | None = None,
    nonnegative: bool = True,
) -> dict[str, Any]:
    """One metric over time as a plotly figure (dict): the measurements, the expected band,
    anomaly markers (with the recorded expected value and tolerance), incident markers and an
    optional SLA line."""
    import plotly.graph_objects as go

    figure = go.Figure()
    times = [_iso(at) for at, _ in points]
    if rule is not None:
        band = expected_band(points, rule)
        judged = [(t, b) for t, b in zip(times, band, strict=True) if b is not None]
        if judged:
            figure.add_trace(go.Scatter(
                x=[t for t, _ in judged], y=[b[2] for _, b in judged], mode="lines",
                line={"width": 0}, hoverinfo="skip", showlegend=False, name="band upper",
            ))
            figure.add_trace(go.Scatter(
                x=[t for t, _ in judged], y=[max(b[1], 0) if nonnegative else b[1]
                                             for _, b in judged],
                mode="lines", line={"width": 0}, fill="tonexty", fillcolor=COLORS["band"],
                name="expected band", hoverinfo="skip",
            ))
            figure.add_trace(go.Scatter(
                x=[t for t, _ in judged], y=[b[0] for _, b in judged], mode="lines",
                line={"color": COLORS["value"], "dash": "dot", "width": 1}, name="expected",
            ))
    figure.add_trace(go.Scatter(
        x=times, y=[value for _, value in points], mode="lines+markers", name=unit,
        line={"color": COLORS["value"], "width": 2}, marker={"size": 5},
    ))
    if anomalies:
        figure.add_trace(go.Scatter(
            x=[_iso(a["at"]) for a in anomalies], y=[a["value"] for a in anomalies],
            mode="markers", name="anomaly",
            marker={"color": COLORS["anomaly"], "size": 12, "symbol": "x"},
            error_y={"type": "data", "symmetric": True, "visible": True,
                     "array": [a.get("tolerance") or 0 for a in anomalies]},
            text=[a["message"] for a in anomalies], hovertemplate="%{text}<extra>anomaly</extra>",
        ))
    for incident in incidents:
        figure.add_vline(x=_iso(incident["at"]), line={"color": COLORS["incident"], "dash": "dash",
                                                        "width": 1})
    if incidents:
        figure.add_trace(go.Scatter(
            x=[_iso(i["at"]) for i in incidents], y=[0] * len(incidents), mode="markers",
            name="incident opened", marker={"color": COLORS["incident"], "size": 11,
                                            "symbol": "triangle-up"},
            text=[f"{i['incident_id']}: {i['cause']}" for i in incidents],
            hovertemplate="%{text}<extra>incident</extra>",
        ))
    if sla is not None:
        figure.add_hline(y=sla, line={"color": COLORS["sla"], "dash": "dash", "width": 1},
                         annotation_text=f"SLA {sla:g} h", annotation_position="top left")
    figure.update_layout(
        title={"text": title, "font": {"size": 13}}, height=260,
        margin={"l": 50, "r": 10, "t": 36, "b": 36}, template="plotly_white",
        legend={"orientation": "h", "y": -0.25, "font": {"size": 10}},
        xaxis={"type": "date", "showgrid": True, "tickformat": "%b %d\n%H:%M"},
        yaxis={"showgrid": True, "title": {"text": unit, "font": {"size": 11}},
               "rangemode": "tozero" if nonnegative else "normal"},
    )
    return json.loads(figure.to_json())


def plotly_js() -> str:
    """plotly.js, to inline in the page (no network when it is opened)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
