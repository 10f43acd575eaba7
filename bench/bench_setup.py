"""Benchmark setup: a champion trained by the real pipeline steps on simulated data."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path


def train_champion(wh, spec, steps) -> int:
    from airtrain import simulate

    start, days = dt.date(2026, 1, 1), 45
    tmp = Path(tempfile.mkdtemp(prefix="airtrain-bench-land-"))
    simulate.generate_demo(wh, tmp / spec.source.path, start=start, days=days, rows_per_day=1000)
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    steps.ingest(wh, spec, dates, "bench-setup", tmp)
    steps.validate(wh, spec, dates, "bench-setup", today=dates[-1], reports_root=tmp / "reports")
    out = steps.train(wh, spec, dates[-1], "bench-setup")
    ev = steps.evaluate(wh, spec, out["version"], "bench-setup", dates[-1])
    steps.promote(wh, spec, ev, run_id="bench-setup", actor="bench")
    return out["version"]
