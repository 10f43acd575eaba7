"""When the scheduler creates runs of a pipeline's retrain DAG (issue 20, item 12): a history-only
pipeline (``schedule.retrain: null``) gets none; with ``schedule.first_date`` the first scheduled
run processes that day, never one before it; with ``schedule.last_date`` in the past unpausing
creates no run at all, while Airflow's backfill still covers the whole range. Checked on the DAG as
the scheduler sees it (serialized; ``next_dagrun_info`` is what unpausing computes)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from airtrain.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
CHURN = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())


def scheduled(**schedule):
    """The retrain DAG of churn.yaml with ``schedule`` changes, deserialized as the scheduler holds it."""
    from airflow.serialization.serialized_objects import DagSerialization
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag

    spec = parse_spec({**CHURN, "schedule": {**CHURN["schedule"], **schedule}})
    build_monitor_dag(spec)  # builds too
    return DagSerialization.from_dict(DagSerialization.to_dict(build_retrain_dag(spec)))


def partition(info) -> dt.date:
    return info.logical_date.date() - dt.timedelta(days=1)  # a run processes the day before its logical date


def test_a_history_only_pipeline_gets_no_scheduled_run():
    dag = scheduled(retrain=None)
    assert not dag.timetable.can_be_scheduled and dag.next_dagrun_info(last_automated_run_info=None) is None


def test_the_first_scheduled_run_processes_the_first_day_with_data():
    first = dt.date.today() + dt.timedelta(days=10)
    info = scheduled(first_date=str(first)).next_dagrun_info(last_automated_run_info=None)
    assert partition(info) == first
    # without it the first run after unpausing processes a day before the data (what issue 20 saw)
    assert partition(scheduled().next_dagrun_info(last_automated_run_info=None)) < first


def test_historical_data_unpaused_creates_no_run_but_backfills_cover_the_range():
    dag = scheduled(first_date="2011-01-01", last_date="2012-12-31")
    assert dag.next_dagrun_info(last_automated_run_info=None) is None
    assert dag.timetable.periodic  # Airflow's backfill needs a periodic schedule
    # `airflow backfill create --from-date 2011-01-02 --to-date 2013-01-01T03:00:00+00:00`: one run per day
    # (a backfill asked for days outside the range also gets them; they skip with the reason)
    infos = list(dag.iter_dagrun_infos_between(dt.datetime(2011, 1, 2, tzinfo=dt.UTC),
                                               dt.datetime(2013, 1, 1, 3, tzinfo=dt.UTC)))
    assert (partition(infos[0]), partition(infos[-1]), len(infos)) == (dt.date(2011, 1, 1), dt.date(2012, 12, 31),
                                                                       731)


@pytest.mark.parametrize("schedule, message", [
    pytest.param({"retrain": "none"}, "or null (no scheduled runs", id="none-as-text"),
    pytest.param({"first_date": "2012-01-01", "last_date": "2011-01-01"}, "swap them", id="range-reversed"),
])
def test_bad_schedules_are_refused_with_the_fix(schedule, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec({**CHURN, "schedule": {**CHURN["schedule"], **schedule}})


def test_a_range_across_the_data_keeps_only_its_days_with_data_and_says_which_it_left_out():
    """What check_params does with a run's dates (the plan the sensor, ingest and validate follow)."""
    spec = parse_spec({**CHURN, "schedule": {**CHURN["schedule"], "first_date": "2011-01-03",
                                             "last_date": "2011-01-05"}})
    days = [dt.date(2011, 1, d) for d in range(1, 8)]
    kept, why = spec.schedule.with_data(days)
    assert kept == days[2:5]
    assert why == ("4 days (2011-01-01, 2011-01-02, 2011-01-06, 2011-01-07) outside the pipeline's data (schedule.first_date 2011-01-03 and "
                   "schedule.last_date 2011-01-05): no data there, nothing to process")
    assert spec.schedule.with_data(days[2:5]) == (days[2:5], None)
    assert spec.schedule.with_data(days[:1]) == ([], "2011-01-01 outside the pipeline's data (schedule.first_date "
                                                     "2011-01-03 and schedule.last_date 2011-01-05): no data "
                                                     "there, nothing to process")
    many = [dt.date(2010, 12, d) for d in range(1, 32)]
    assert spec.schedule.with_data(many)[1].startswith("31 days from 2010-12-01 to 2010-12-31 outside")
