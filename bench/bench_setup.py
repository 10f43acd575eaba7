"""Benchmark setup: a champion trained by the real pipeline steps on simulated data."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path


def train_champion(wh, spec) -> int:
    from airtrain import simulate
    from airtrain.steps import release, retrain

    start, days = dt.date(2026, 1, 1), 45
    tmp = Path(tempfile.mkdtemp(prefix="airtrain-bench-land-"))
    simulate.generate_demo(wh, tmp / spec.source.path, start=start, days=days, rows_per_day=1000)
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    retrain.ingest(wh, spec, dates, "bench-setup", tmp)
    retrain.validate(wh, spec, dates, "bench-setup", today=dates[-1], reports_root=tmp / "reports")
    out = retrain.train(wh, spec, dates[-1], "bench-setup")
    ev = retrain.evaluate(wh, spec, out["version"], "bench-setup", dates[-1])
    release.promote(wh, spec, ev, run_id="bench-setup", actor="bench")
    return out["version"]
