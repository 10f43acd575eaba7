"""The UI's trend chart (issue 24): server-rendered inline SVG, no script, every label escaped."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from airtrain_airflow.ui import trend_svg

D = dt.date(2026, 3, 1)
NS = "{http://www.w3.org/2000/svg}"


def _data():
    windows = []
    for i in range(10):
        windows.append({"window_end": D + dt.timedelta(days=i), "decision": "retrain" if i == 6 else "no_drift",
                        "drift_share": 0.1 * i, "model_version": 1, "triggered": i == 6,
                        "estimate": 0.82 - 0.01 * max(i - 4, 0), "band_low": 0.79 - 0.01 * max(i - 4, 0),
                        "band_high": 0.85 - 0.01 * max(i - 4, 0), "baseline": 0.82,
                        "realized": 0.81 if i < 3 else None})
    windows[0].update(estimate=None, band_low=None, band_high=None)  # a window without an estimate
    events = [{"date": D + dt.timedelta(days=6), "kind": "retrain", "label": "retrain triggered"},
              {"date": D + dt.timedelta(days=7), "kind": "promotion", "label": "promote v1 → v2 <script>x</script>"},
              {"date": D + dt.timedelta(days=30), "kind": "rollback", "label": "outside the windows"}]
    return {"metric": "roc_auc", "windows": windows, "events": events}


def test_trend_chart_draws_band_lines_points_and_markers():
    svg = trend_svg(_data())
    root = ET.fromstring(svg)  # well-formed XML: inline SVG in the page, no external resource
    assert root.tag == f"{NS}svg" and not root.findall(f".//{NS}script") and "<script>" not in svg
    assert len(root.findall(f"{NS}polygon")) == 1  # the band, over the 9 windows that have one
    assert len(root.findall(f"{NS}polyline")) == 2  # the estimate and the evaluation value
    realized = [c for c in root.iter(f"{NS}circle") if c.get("fill") == "#ff7f0e"]
    assert len(realized) == 3
    events = root.findall(f"{NS}g")
    assert [g.get("class") for g in events] == ["event retrain", "event promotion"]  # the rollback is out of range
    assert "&lt;script&gt;" in svg
    bars = [r for r in root.findall(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(bars) == 10 and sum(b.get("fill") == "#f4b4ae" for b in bars) == 1  # the retrained window in red


def test_trend_chart_without_windows():
    assert "no monitored windows" in trend_svg({"metric": "roc_auc", "windows": [], "events": []})
