"""Whose stage table ``begin_scoring`` may drop as an orphan (plugins/airtrain_airflow/runtime.py).

Found by the chaos soak (issue 23, 2026-07-03 of seed 1's month): a run failed (its shards refused a
corrupted artifact); the next run's ``begin_scoring`` dropped the failed run's stage as an orphan (its
run was neither queued nor running); once the artifact was restored, clearing the failed shards -
Airflow's way to resume a run - could not recover: every try found its stage gone. A failed run may be
resumed, so its stage is kept (until ``publish.STAGE_MAX_AGE``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))


class FakeTI:
    """``RuntimeTaskInstance.get_dr_count`` over a table of run states, as the execution API answers it."""

    def __init__(self, runs: dict[str, str]) -> None:
        self.runs = runs

    def get_dr_count(self, dag_id: str, run_ids: list[str], states: list[str]) -> int:
        assert dag_id == "churn_retrain"
        return sum(1 for r in run_ids if self.runs.get(r) in states)


def test_a_failed_run_keeps_its_stage_for_a_clear_a_finished_or_unknown_one_does_not():
    from airtrain_airflow.runtime import stage_owner_may_resume

    ti = FakeTI({"queued": "queued", "running": "running", "failed": "failed", "done": "success"})
    assert stage_owner_may_resume(ti, "churn_retrain", "queued")
    assert stage_owner_may_resume(ti, "churn_retrain", "running")
    assert stage_owner_may_resume(ti, "churn_retrain", "failed")  # before the fix: False, its stage dropped
    assert not stage_owner_may_resume(ti, "churn_retrain", "done")
    assert not stage_owner_may_resume(ti, "churn_retrain", "gone")  # deleted run
