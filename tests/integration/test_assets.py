"""Assets between the DAGs (issue 12): the retrain DAG's publish emits the predictions asset with the
date and version in the event's extra; the monitor is scheduled on that asset, its asset-triggered run
(no logical date) checks exactly the published date, and a time run never checks an unpublished day.

Real runs: dag.test() of the retrain DAG; the monitor run is created by the scheduler's own code from
the queued asset event and its tasks are run in-process like dag.test() runs them."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.dagtest import TEST_SPEC, fetch, merged, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 4, 1)
HISTORY = 10
SCORED = START + dt.timedelta(days=HISTORY)  # landed, not yet scored in the template
UNPUBLISHED = SCORED + dt.timedelta(days=1)  # landed, never scored
SPEC = merged(TEST_SPEC, {"training": {"cadence": "on_trigger"}, "monitoring": {"min_rows": 300},
                         "scoring": {"shadow": False, "partitions": 1}})


@pytest.fixture(scope="module")
def project(tmp_path_factory, pg_server, airflow_db):
    p, mp = template_project(
        tmp_path_factory, pg_server, "assets", overrides=SPEC, start=START, days=HISTORY + 2, rows=300,
        bootstrap={"date": str(START), "end_date": str(START + dt.timedelta(days=HISTORY - 1)), "force_train": True})
    yield p
    mp.undo()


def _unpause(*dag_ids: str) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as s:
        s.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=False))


def run_existing(dag, run_id: str):
    """Run the tasks of an existing DAG run in this process, the way dag.test() runs its own."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as s:
        dr = s.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        dr.state = DagRunState.RUNNING
        s.commit()
        dr.dag = DBDagBag().get_dag_for_run(dr, session=s)
        for _ in range(200):
            if dr.state != DagRunState.RUNNING:
                break
            s.expire_all()
            schedulable, _ = dr.update_state(session=s)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            s.commit()
            for ti in [t for t in dr.get_task_instances(session=s) if t.state == TaskInstanceState.SCHEDULED]:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        return dr.state, dr.logical_date, {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=s)}


def test_a_time_run_never_checks_an_unpublished_day(project):
    """No 'date' param and no asset event: the day before the logical date, only once published."""
    from airtrain_airflow.factory import build_monitor_dag

    logical = dt.datetime.combine(UNPUBLISHED + dt.timedelta(days=1), dt.time(5), tzinfo=dt.UTC)
    dr = build_monitor_dag(project.spec()).test(logical_date=logical)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert states["drift_check"] == "skipped", states
    assert fetch(project.warehouse, "SELECT count(*) FROM monitoring.drift_decisions WHERE window_end = %s",
                 (UNPUBLISHED,)) == [(0,)]


def test_publish_emits_the_asset_and_the_monitor_checks_the_published_date(project):
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airtrain_airflow.assets import predictions_asset
    from airtrain_airflow.factory import build_monitor_dag
    from sqlalchemy import delete, select

    spec = project.spec()
    asset = predictions_asset(spec)
    # the DAGs exist (the time-run test or an earlier run synced them); a consumer gets queued
    # events only when it is not paused
    build_monitor_dag(spec).test(logical_date=dt.datetime(2026, 1, 2, 5, tzinfo=dt.UTC))  # syncs; nothing published
    _unpause(spec.retrain_dag_id, spec.monitor_dag_id)
    with create_session() as s:
        # events of earlier runs in this worker's metadata DB (e.g. a template's bootstrap) were queued
        # for the monitor; a running scheduler would have turned them into runs long ago
        s.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == spec.monitor_dag_id))
        # and their events, which the first asset-triggered run would consume too (other test modules
        # of this worker publish the same pipeline's asset for other dates)
        s.execute(delete(AssetEvent).where(AssetEvent.asset_id.in_(
            select(AssetModel.id).where(AssetModel.name == asset.name))))
        before = s.scalar(select(AssetEvent.id).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                          .where(AssetModel.name == asset.name).order_by(AssetEvent.id.desc()).limit(1)) or 0

    dr, states = project.run({"date": str(SCORED)})  # ingest, validate, score with the champion, publish
    assert states["publish_predictions"] == "success", states
    champion = fetch(project.warehouse, "SELECT version FROM registry.champions WHERE pipeline = 'churn'")[0][0]
    with create_session() as s:
        events = s.execute(select(AssetEvent.extra, AssetEvent.source_dag_id, AssetEvent.source_task_id,
                                  AssetEvent.source_run_id, AssetModel.uri)
                           .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                           .where(AssetModel.name == asset.name, AssetEvent.id > before)).all()
        assert len(events) == 1, events
        extra, src_dag, src_task, src_run, uri = events[0]
        assert (src_dag, src_task, src_run) == (spec.retrain_dag_id, "publish_predictions", dr.run_id)
        assert uri == "x-airtrain://warehouse/predictions/churn"
        assert extra == {"pipeline": "churn", "date": str(SCORED), "model_version": champion, "rows": 300,
                         "table": "predictions.churn", "run_id": dr.run_id}
        # the monitor is due because of that event (the scheduler's own readiness check)
        queued = s.scalars(select(AssetDagRunQueue.target_dag_id)).all()
        assert spec.monitor_dag_id in queued
        _, triggered = DagModel.dags_needing_dagruns(s)
        assert spec.monitor_dag_id in triggered
        # the scheduler creates the asset-triggered run (as its loop would)
        dms = s.scalars(select(DagModel).where(DagModel.dag_id == spec.monitor_dag_id)).all()
        SchedulerJobRunner(job=Job())._create_dag_runs_asset_triggered(dag_models=dms, session=s)
        s.commit()
        run = s.scalars(select(DagRun).where(DagRun.dag_id == spec.monitor_dag_id,
                                             DagRun.run_type == "asset_triggered")).one()
        run_id = run.run_id

    state, logical_date, tis = run_existing(build_monitor_dag(spec), run_id)
    assert logical_date is None  # an asset-triggered run: the window comes from the event
    assert str(state) == "success" and tis["drift_check"] == "success", tis
    rows = fetch(project.warehouse, "SELECT window_end, run_id, model_version FROM monitoring.drift_decisions "
                                    "WHERE pipeline = 'churn'")
    assert rows == [(SCORED, run_id, champion)]


def test_several_publish_events_in_one_monitor_run_check_every_date_once_in_order(
        tmp_path_factory, pg_server, airflow_db, monkeypatch):
    """Events pile up (a backfill publishes faster than the monitor checks). Airflow hands an
    asset-triggered run the events up to the moment its dag-run queue entry was made; an event that
    arrives after that, before the run is created, goes to the next run. Here: d9's event starts a
    monitor run that never checks anything (it fails), d10's event arrives meanwhile, and d11's starts
    the next run - which consumes both. Every published date after the newest one checked is checked
    once, oldest first (d9 too: its run failed), so persistence counts across them: drift, retrain
    (one retrain, triggered for that window), and the next window - which would retrain too - waits
    for it and is in its cooldown once it is triggered. Before, the run checked only its newest date:
    one window, 'drift (1 of 2)', no retrain, d9 and d10 never checked."""
    from airflow.assets.manager import AssetManager
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airtrain.monitoring import check
    from airtrain.serving import scoring
    from airtrain.steps import retrain
    from airtrain_airflow.assets import predictions_asset, predictions_event_extra
    from airtrain_airflow.factory import build_monitor_dag
    from sqlalchemy import delete, select

    p, _ = template_project(
        tmp_path_factory, pg_server, "assets", overrides=SPEC, start=START, days=HISTORY + 2, rows=300,
        bootstrap={"date": str(START), "end_date": str(START + dt.timedelta(days=HISTORY - 1)), "force_train": True},
        monkeypatch=monkeypatch)
    # every window drifts (a PSI threshold nothing stays under); two drifted windows in a row retrain
    p.respec(SPEC, {"monitoring": {"default_threshold": 0.000001,
                                   "trigger": {"drift_share": 0.3, "persistence": 2, "cooldown_days": 7}}})
    spec, wh = p.spec(), p.warehouse
    d8, d9, d10, d11 = (START + dt.timedelta(days=i) for i in (8, 9, 10, 11))
    retrain.ingest(wh, spec, [d10, d11], "later", p.root)  # two more days validated and published (d9: bootstrap)
    retrain.validate(wh, spec, [d10, d11], "later", today=d11, reports_root=p.root / "reports")
    published = {d: scoring.score_date(wh, spec, d, run_id=f"publish-{d}") for d in (d10, d11)}
    published[d9] = {"as_of": d9, "version": 1, "rows": 300, "table": "predictions.churn"}
    check.run_check(wh, spec, d8, run_id="an earlier monitor run", reports_root=p.root / "reports")
    asset = predictions_asset(spec)
    build_monitor_dag(spec).test(logical_date=dt.datetime(2026, 1, 3, 5, tzinfo=dt.UTC))  # syncs the DAGs
    _unpause(spec.retrain_dag_id, spec.monitor_dag_id)

    def publish_events(s, *dates):
        model = s.scalars(select(AssetModel).where(AssetModel.name == asset.name)).one()
        for d in dates:
            AssetManager.register_asset_change(asset=model, session=s, source_is_api=True,
                                               extra=predictions_event_extra(spec, published[d], f"pub-{d}"))
        s.commit()

    def scheduler_creates_a_run(s):
        before = set(s.scalars(select(DagRun.run_id).where(DagRun.dag_id == spec.monitor_dag_id)).all())
        dms = s.scalars(select(DagModel).where(DagModel.dag_id == spec.monitor_dag_id)).all()
        SchedulerJobRunner(job=Job())._create_dag_runs_asset_triggered(dag_models=dms, session=s)
        s.commit()
        run, = [r for r in s.scalars(select(DagRun).where(DagRun.dag_id == spec.monitor_dag_id)).all()
                if r.run_id not in before]
        return run.run_id, sorted(e.extra["date"] for e in run.consumed_asset_events)

    with create_session() as s:  # only this test's events (see the test above)
        s.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == spec.monitor_dag_id))
        s.execute(delete(AssetEvent).where(AssetEvent.asset_id.in_(
            select(AssetModel.id).where(AssetModel.name == asset.name))))
        publish_events(s, d9, d10)  # d10's event arrives after d9's queued the monitor
        failed = scheduler_creates_a_run(s)
        publish_events(s, d11)
        run_id, consumed = scheduler_creates_a_run(s)
    assert failed[1] == [str(d9)] and consumed == [str(d10), str(d11)], (failed, consumed)
    state, _, tis = run_existing(build_monitor_dag(spec), run_id)
    assert str(state) == "success" and tis["notify"] == "success", tis
    rows = fetch(wh, "SELECT window_end, decision, run_id, triggered_run_id, details->>'deferred_to' FROM "
                     "monitoring.drift_decisions WHERE pipeline = 'churn' AND window_end > %s ORDER BY created_at",
                 (d8,))
    assert rows == [(d9, "drift", run_id, None, None), (d10, "retrain", run_id, f"drift__{d10}", None),
                    (d11, "cooldown", run_id, None, str(d10))], rows
    assert f"the retrain for window {d10} was triggered" in fetch(
        wh, "SELECT reason FROM monitoring.drift_decisions WHERE window_end = %s", (d11,))[0][0]
    with create_session() as s:  # one retrain, for the window that decided it
        assert s.scalars(select(DagRun.run_id).where(DagRun.dag_id == spec.retrain_dag_id, DagRun.run_id.in_(
            [f"drift__{d}" for d in (d9, d10, d11)]))).all() == [f"drift__{d10}"]
