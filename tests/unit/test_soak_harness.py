"""The chaos soak's own parts that decide a verdict (scripts/soak.py, issue 23): which fault-free
reference a soak is compared with, the per-date comparison, and the Celery variant's whole-worker kill."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def soak():
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("soak")


def test_the_shortest_cached_reference_covering_the_days_is_used_never_a_partial_one(soak, tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "OUT", tmp_path)
    for name in ("reference-1-4.json", "reference-1-30.json", "reference-1-10-partial.json", "reference-2-8.json"):
        (tmp_path / name).write_text("{}")
    assert soak.find_reference(1, 3).name == "reference-1-4.json"
    assert soak.find_reference(1, 5).name == "reference-1-30.json"  # not the partial 10-day one
    assert soak.find_reference(1, 31).name == "reference-1-31.json"  # none covers 31 days: a new one, that name
    assert soak.find_reference(3, 2).name == "reference-3-2.json"


def test_compare_counts_lost_and_doubled_rows_and_different_partitions_within_the_soaks_days(soak):
    ref = {"digests": {"2026-06-12": {"rows": 10, "keys": 10, "md5": "a"},
                       "2026-06-13": {"rows": 10, "keys": 10, "md5": "b"},
                       "2026-06-14": {"rows": 10, "keys": 10, "md5": "c"},
                       "2026-06-20": {"rows": 10, "keys": 10, "md5": "z"}}}  # past the soak's days: ignored
    got = {"days": 2, "digests": {"2026-06-12": {"rows": 10, "keys": 10, "md5": "a"},
                                  "2026-06-13": {"rows": 11, "keys": 10, "md5": "x"},
                                  "2026-06-14": {"rows": 8, "keys": 8, "md5": "y"}}}
    out = soak.compare(got, ref)
    assert out == {"dates": 3, "partitions_different": ["2026-06-13", "2026-06-14"], "rows_lost": 2,
                   "rows_duplicated": 1}
    same = {d: v for d, v in ref["digests"].items() if d <= "2026-06-14"}
    assert soak.compare({"days": 2, "digests": same}, ref)["partitions_different"] == []
    # a partition the soak has and its days should not: different (never silently ignored)
    assert soak.compare({"days": 2, "digests": ref["digests"]}, ref)["partitions_different"] == ["2026-06-20"]


def test_kill_tree_kills_a_worker_and_every_descendant_at_once(soak):
    code = ("import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(120)\"]); time.sleep(120)'])\n"
            "print(c.pid, flush=True); time.sleep(120)\n")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        leader.stdout.readline()
        deadline = time.monotonic() + 30
        while len(psutil.Process(leader.pid).children(recursive=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        tree = [leader.pid, *(p.pid for p in psutil.Process(leader.pid).children(recursive=True))]
        assert len(tree) == 3
        killed = soak.kill_tree(leader.pid)
        assert sorted(killed) == sorted(tree)
        leader.wait(timeout=10)
        assert leader.returncode == -9  # SIGKILL: nothing got to clean up
        time.sleep(0.5)
        alive = [p for p in tree[1:] if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert alive == []
        assert soak.kill_tree(leader.pid) == []  # gone: nothing to kill, no error
    finally:
        leader.kill()


def test_the_verdict_on_a_worker_kill_needs_a_later_successful_try_on_the_other_worker(soak):
    class Fake(soak.WorkerKiller):
        def __init__(self, entry, final):
            self.entry, self._final = entry, final

        def shard(self, map_index):
            return self._final

    base = {"kind": "kill_worker", "shard": "soak__d/score[1]", "worker": "w1", "killed_try": 1, "map_index": 1}
    ok = Fake({**base, "rerun": {"try": 2, "worker": "w2", "state": "running"}}, (2, "w2", "success"))
    assert ok.verdict() is None and ok.entry["final"] == {"try": 2, "worker": "w2", "state": "success"}
    assert "did not succeed" in Fake({**base, "rerun": {"try": 2, "worker": "w2"}}, (2, "w2", "failed")).verdict()
    assert "other worker" in Fake({**base, "rerun": {"try": 2, "worker": "w1"}}, (2, "w1", "success")).verdict()
    assert "other worker" in Fake(dict(base), (1, "w1", "success")).verdict()  # never ran again
    assert Fake({"kind": "kill_worker", "skipped": "no scoring shard seen running"}, None).verdict() is None
    json.dumps(ok.entry)  # recorded in the soak's result as it is


def test_a_failed_run_is_put_down_to_the_corrupted_artifact_only_when_every_failed_try_shows_it_refused(soak):
    refused = '{"content": [{"event": "Task failed with exception", "error_detail": [{"exc_value": ' \
              '"ArtifactIntegrityError: model artifact checksum mismatch"}]}]}'
    other = '{"content": [{"event": "Task failed with exception", "error_detail": [{"exc_value": "OperationalError"}]}]}'
    assert "permanent" in soak.failure_cause([refused, refused])  # both shards of a manual run on a corrupt day
    assert "permanent" not in soak.failure_cause([refused, other])
    assert "permanent" not in soak.failure_cause([other])
    assert "permanent" not in soak.failure_cause([])  # no evidence is no excuse
    assert "permanent" not in soak.failure_cause([""])  # the log could not be read
