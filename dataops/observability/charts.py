"""The dashboard's charts: plotly figures over the metric history, with the band the anomaly
monitor judged each measurement with, the anomalies it reported and the incidents opened on the
asset.

Plotly draws them in the browser from JSON embedded in the page; its JavaScript is inlined once
(``plotly_js``), so the file works offline.

The expected band is not re-derived here: the metric monitors (``dataops_metric_anomalies``)
record, for every measurement they judge, the expected value and the lower and upper bound they
judged it against (platform.metric_history ``expected_value``, ``lower_bound``, ``upper_bound``,
written by the on-run-end hook), and the chart draws those. Measurements no monitor judged (too
little history, or taken before bands were recorded) have no band. Where a monitor reported an
anomaly, the marker carries the expected value and tolerance it recorded in its
``anomaly.detected`` event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

COLORS = {"value": "#2563eb", "band": "rgba(37, 99, 235, 0.14)", "anomaly": "#dc2626",
          "incident": "#b45309", "sla": "#dc2626", "resolved": "#16a34a"}

# (measured at, expected value, lower bound, upper bound) as the monitor recorded them; a bound
# is None where the monitor judges one direction only.
Band = tuple[datetime, float, float | None, float | None]


def _iso(at: datetime | str) -> str:
    return at if isinstance(at, str) else at.strftime("%Y-%m-%d %H:%M:%S")


def metric_figure(
    title: str,
    points: Sequence[tuple[datetime, float]],
    *,
    unit: str,
    band: Sequence[Band] = (),
    anomalies: Sequence[Mapping[str, Any]] = (),
    incidents: Sequence[Mapping[str, Any]] = (),
    sla: float | None = None,
    nonnegative: bool = True,
) -> dict[str, Any]:
    """One metric over time as a plotly figure (dict): the measurements, the band the monitor
    judged them with (as recorded), anomaly markers (with the recorded expected value and
    tolerance), incident markers and an optional SLA line."""
    import plotly.graph_objects as go

    figure = go.Figure()
    times = [_iso(at) for at, _ in points]
    if band:
        # A one-sided monitor's open side runs to the chart's edge; a count's band stops at 0.
        seen = [value for _, value in points] + [expected for _, expected, _, _ in band]
        floor, ceiling = (0.0 if nonnegative else min(seen)), max(seen)
        band_times = [_iso(at) for at, *_ in band]
        figure.add_trace(go.Scatter(
            x=band_times, y=[ceiling if high is None else high for *_, high in band],
            mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False,
            name="band upper",
        ))
        figure.add_trace(go.Scatter(
            x=band_times, y=[floor if low is None else max(low, floor) if nonnegative else low
                             for _, _, low, _ in band],
            mode="lines", line={"width": 0}, fill="tonexty", fillcolor=COLORS["band"],
            name="expected band", hoverinfo="skip",
        ))
        figure.add_trace(go.Scatter(
            x=band_times, y=[expected for _, expected, _, _ in band], mode="lines",
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
