"""`make bench-celery` (bench/celery_shards.py): the pieces that decide what its runs measure.

The benchmark itself starts a whole Celery stack (minutes): it is run by hand, never by the tests.
These check, cheaply, that (1) the bench copy of the spec it hands to the stack is a valid spec that
scores a date in exactly the asked number of shards, with no shadow scoring and no scheduled run, and
(2) ``DEMO_DAYS=0`` (what the benchmark puts in its stack's .env) triggers no demo run.
"""

from __future__ import annotations

import datetime as dt
import http.server
import importlib
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    for sub in ("bench", "scripts"):
        if str(ROOT / sub) not in sys.path:
            sys.path.insert(0, str(ROOT / sub))
    return importlib.import_module("celery_shards")


@pytest.mark.parametrize("shards", [pytest.param(1, id="one"), pytest.param(2, id="two"), pytest.param(4, id="four")])
def test_the_bench_spec_scores_in_the_asked_shards_without_shadow_or_schedule(bench, tmp_path, shards):
    from airtrain.spec import load_spec, load_specs

    stack = SimpleNamespace(spec_dir=tmp_path / "pipelines")
    bench.write_spec(stack, shards)
    assert [s.name for s in load_specs(stack.spec_dir)] == ["churn"]  # the one pipeline, nothing else
    spec = load_spec(stack.spec_dir / "churn.yaml")
    original = load_spec(ROOT / "include/pipelines/churn.yaml")
    assert spec.scoring.shards_for(10_000_000) == shards
    assert spec.scoring.shadow is False
    assert spec.schedule.start_date > dt.date.today() and spec.schedule.start_paused
    # the same tables as the real spec: the benchmark's champion and features are where the runs read them
    assert [spec.table(k) for k in ("features", "predictions")] == [original.table(k) for k in ("features",
                                                                                               "predictions")]


def test_demo_days_zero_triggers_no_demo_run(bench):
    import devstack

    calls: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            calls.append(self.path)
            self.send_response(409)
            self.end_headers()

        do_PATCH = do_POST  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert devstack.trigger_demo_runs({"DEMO_DAYS": "0"}, base, "token") is None
        assert calls == []
        devstack.trigger_demo_runs({"DEMO_DAYS": "60"}, base, "token")  # the same server sees a real request
        assert calls and calls[0] == "/api/v2/dags/churn_retrain/dagRuns"
    finally:
        server.shutdown()
