"""The run plan (``check_params``): dates decided once, in the spec's timezone, for every mode, also
for a run without a logical date (a manual/REST/asset-triggered run: Airflow 3 allows
``logical_date: null``); unknown run parameters refused before any work. Real ``dag.test()`` runs
on a real warehouse."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from tests.integration.dagtest import TEST_SPEC, Project, fetch, merged, template_project

pytestmark = pytest.mark.integration

#: UTC+14: the spec's calendar date differs from UTC's for 14 hours a day, so a date computed in
#: UTC instead of the spec's timezone shows
TZ = "Pacific/Kiritimati"
YESTERDAY = dt.datetime.now(ZoneInfo(TZ)).date() - dt.timedelta(days=1)  # in the spec's timezone
START = YESTERDAY - dt.timedelta(days=11)
SPEC = merged(TEST_SPEC, {"schedule": {"timezone": TZ}, "scoring": {"shadow": False}})


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    p, mp = template_project(tmp_path_factory, pg_server, "plan", overrides=SPEC, start=START, days=12,
                             bootstrap={"date": str(START), "end_date": str(YESTERDAY - dt.timedelta(days=1))})
    yield p
    mp.undo()


def run_without_logical_date(p: Project, conf: dict) -> tuple:
    """A run the way ``airflow dags trigger`` / the REST API without a logical date makes one."""
    from airtrain_airflow.factory import build_retrain_dag

    dr = build_retrain_dag(p.spec()).test(logical_date=None, run_conf=conf)
    assert dr.logical_date is None
    states = {}
    for ti in dr.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return dr, {k: (v[0] if len(v) == 1 else v) for k, v in states.items()}


def plan_of(dr) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dr.run_id, key="return_value", dag_ids=dr.dag_id,
                                                 task_ids="check_params")).first()
        return XComModel.deserialize_value(row)


def champion(p: Project) -> int:
    return fetch(p.warehouse, "SELECT version FROM registry.champions")[0][0]


def test_a_training_run_without_logical_date_processes_yesterday_in_the_spec_timezone(proj):
    dr, states = run_without_logical_date(proj, {})
    assert str(dr.state) == "success", states
    plan = plan_of(dr)
    assert plan["dates"] == [str(YESTERDAY)] and plan["as_of"] == str(YESTERDAY), plan
    assert plan["run_date"] == str(YESTERDAY + dt.timedelta(days=1))
    assert fetch(proj.warehouse, "SELECT run_id FROM monitoring.validation_runs WHERE partition_date = %s",
                 (YESTERDAY,)) == [(dr.run_id,)]
    assert fetch(proj.warehouse, "SELECT count(*), min(run_id) FROM predictions.churn WHERE as_of_date = %s "
                                 "AND model_version = %s", (YESTERDAY, champion(proj))) == [(400, dr.run_id)]


def test_a_dry_run_without_logical_date_evaluates_yesterday_and_changes_nothing_live(proj):
    log = fetch(proj.warehouse, "SELECT id FROM registry.promotion_log")
    dr, states = run_without_logical_date(proj, {"dry_run": True, "force_train": True})
    assert str(dr.state) == "success", states
    assert plan_of(dr)["as_of"] == str(YESTERDAY)
    assert states["promote"] == "success" and states["begin_scoring"] == "skipped", states
    assert fetch(proj.warehouse, "SELECT id FROM registry.promotion_log") == log


def test_a_rollback_without_logical_date_rescores_yesterday(proj):
    dr, states = run_without_logical_date(proj, {"rollback_version": 1, "reason": "rollback without a date"})
    assert str(dr.state) == "success", states
    assert plan_of(dr)["as_of"] == str(YESTERDAY)
    assert champion(proj) == 1
    assert fetch(proj.warehouse, "SELECT count(*), min(run_id) FROM predictions.churn WHERE as_of_date = %s "
                                 "AND model_version = 1", (YESTERDAY,)) == [(400, dr.run_id)]


def test_an_unknown_run_parameter_is_refused_before_any_work(proj, capfd):
    before = {t: fetch(proj.warehouse, f"SELECT count(*) FROM {t}")  # noqa: S608 - fixed names
              for t in ("registry.promotion_log", "registry.model_versions", "monitoring.ingest_runs")}
    dr, states = run_without_logical_date(proj, {"rollback_verison": 1, "reason": "a typo in the key"})
    out, err = capfd.readouterr()
    assert str(dr.state) == "failed" and states["check_params"] == "failed", states
    others = [s for t, v in states.items() if t != "check_params" for s in (v if isinstance(v, list) else [v])]
    assert set(others) <= {"upstream_failed", "skipped", "None"}, states
    assert "unknown key(s) 'rollback_verison' (did you mean 'rollback_version'?)" in out + err
    known = re.search(r"the known keys are: ([a-z_]+(?:, [a-z_]+)*)", out + err)
    assert known, out[-2000:] + err[-2000:]
    assert {"date", "end_date", "rollback_version", "force_promote", "reason"} <= set(known.group(1).split(", "))
    assert "AirflowFailException" in out + err  # failed at once, no retries
    assert {t: fetch(proj.warehouse, f"SELECT count(*) FROM {t}") for t in before} == before  # noqa: S608
