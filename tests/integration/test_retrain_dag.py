"""The retrain DAG end to end: real dag.test() runs, real GX, real scikit-learn, real PostgreSQL.

The warehouses come from session templates (tests/integration/dagtest.py): ``landed`` holds 14
simulated days (labels one day late), ``booted`` additionally the state after a real bootstrap run
over the first 12 of them (champion v1); each test gets its own copy."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from airtrain import simulate

from tests.integration.dagtest import ROOT, TEST_SPEC, Project, fetch, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
DAYS = 14  # landed days
ROWS = 400
LAST = START + dt.timedelta(days=11)  # the bootstrap range: 12 days; labels known up to LAST - 1
RANGE = {"date": str(START), "end_date": str(LAST)}
WORSE = {"training": {"estimator": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"},
                      "min_rows": 2000}}


def _template(tmp_path_factory, pg_server, monkeypatch, bootstrap):
    p, _ = template_project(tmp_path_factory, pg_server, "rt_booted" if bootstrap else "rt_landed",
                            overrides=TEST_SPEC, start=START, days=DAYS, rows=ROWS, bootstrap=bootstrap,
                            monkeypatch=monkeypatch)
    return p


@pytest.fixture
def landed(tmp_path_factory, pg_server, monkeypatch, airflow_db) -> Project:
    """14 landed days, nothing run yet."""
    return _template(tmp_path_factory, pg_server, monkeypatch, None)


@pytest.fixture
def project(tmp_path_factory, pg_server, monkeypatch, airflow_db) -> Project:
    """14 landed days after a successful bootstrap run over the first 12 (champion v1 scores LAST)."""
    return _template(tmp_path_factory, pg_server, monkeypatch, RANGE)


@pytest.fixture
def bare(tmp_path, warehouse, monkeypatch, airflow_db) -> Project:
    """An empty warehouse and the test spec: for runs that must be refused before any work."""
    p = Project(tmp_path, warehouse)
    p.respec(TEST_SPEC)
    p.activate(monkeypatch)
    return p


def champion(p: Project) -> list[tuple]:
    return fetch(p.warehouse, "SELECT version FROM registry.champions WHERE pipeline = 'churn'")


def log_rows(p: Project) -> list[tuple]:
    return fetch(p.warehouse, "SELECT from_version, to_version, action, actor FROM registry.promotion_log ORDER BY id")


def snapshot(p: Project) -> dict[str, list[tuple]]:
    """Everything a re-run must reproduce exactly (run ids and timestamps excluded)."""
    q = {
        "raw": "SELECT _partition_date, _row_number, _source, customer_id, monthly_charges, region, _extra "
               "FROM raw.churn_batches ORDER BY 1, 2",
        "quarantine": "SELECT _partition_date, _row_number, reasons, row_data::text FROM quarantine.churn ORDER BY 1, 2",
        "labels": "SELECT customer_id, as_of_date, churned FROM features.churn_labels ORDER BY 1, 2",
        "predictions": "SELECT customer_id, as_of_date, model_version, score, predicted_label FROM predictions.churn "
                       "ORDER BY 1, 2, 3",
        "versions": "SELECT version, lineage->>'data_hash', artifact_sha256 FROM registry.model_versions ORDER BY 1",
        "champions": "SELECT pipeline, version FROM registry.champions",
        "log": "SELECT from_version, to_version, action FROM registry.promotion_log ORDER BY id",
        "validation": "SELECT partition_date, rows_total, rows_valid, rows_quarantined, blocked "
                      "FROM monitoring.validation_runs ORDER BY 1",
    }
    q["features"] = ("SELECT customer_id, as_of_date, tenure_months, monthly_charges, total_charges, "
                     "num_support_tickets, senior_citizen, contract_type, payment_method, internet_service, region "
                     "FROM features.churn ORDER BY 1, 2")
    return {k: fetch(p.warehouse, v) for k, v in q.items()}


def test_clean_run_promotes_the_first_model_and_scores(landed):
    project = landed
    dr, states = project.run(RANGE)
    assert str(dr.state) == "success", states
    assert states["rollback"] == "skipped"
    assert champion(project) == [(1,)]
    log = log_rows(project)
    assert [r[:3] for r in log] == [(None, 1, "promote")]
    assert log[0][3] == "airtrain:gate"  # the gate promoted it (not the user who started the run) ...
    assert fetch(project.warehouse, "SELECT triggered_by FROM registry.promotion_log")[0][0] in (
        "user:dag_test", "airflow:manual")  # ... who did is beside it (dag.test() triggers as user 'dag_test')
    n_days, n_blocked = fetch(project.warehouse,
                              "SELECT count(*), count(*) FILTER (WHERE blocked) FROM monitoring.validation_runs")[0]
    assert (n_days, n_blocked) == (12, 0)
    assert fetch(project.warehouse, "SELECT count(*) FROM features.churn")[0][0] == 12 * ROWS
    # challenger metrics stored, overall and per slice, on the recorded holdout: the 2 newest labeled days
    roles = fetch(project.warehouse, "SELECT DISTINCT role, holdout_start, holdout_end FROM registry.evaluations")
    assert roles == [("challenger", LAST - dt.timedelta(days=2), LAST - dt.timedelta(days=1))]
    slices = fetch(project.warehouse, "SELECT DISTINCT slice_column FROM registry.evaluations ORDER BY 1")
    assert slices == [("",), ("contract_type",), ("region",)]
    auc = fetch(project.warehouse, "SELECT (metrics->'holdout'->>'roc_auc')::float FROM registry.model_versions")[0][0]
    assert 0.7 < auc < 0.97
    lineage = fetch(project.warehouse, "SELECT lineage FROM registry.model_versions")[0][0]
    assert lineage["data_hash"] and lineage["library_versions"]["sklearn"] and lineage["window"]["train_rows"] > 0
    # predictions for the last date by the champion, readable through the latest view
    assert fetch(project.warehouse, "SELECT count(*), min(model_version), max(model_version) FROM predictions.churn "
                                    "WHERE as_of_date = %s", (LAST,)) == [(ROWS, 1, 1)]
    assert fetch(project.warehouse, "SELECT count(*) FROM predictions.churn_latest")[0][0] == ROWS
    assert (project.root / "reports" / "churn" / "validation" / f"{LAST}.html").exists()


def test_worse_challenger_is_not_promoted(project):
    project.respec(TEST_SPEC, WORSE)
    dr, states = project.run({"date": str(LAST + dt.timedelta(days=1))})
    assert str(dr.state) == "success", states  # a refused challenger is a normal outcome
    assert champion(project) == [(1,)]
    assert len(log_rows(project)) == 1
    gate = fetch(project.warehouse, "SELECT metrics->'gate'->>'passed' FROM registry.model_versions WHERE version = 2")
    assert gate == [("false",)]
    # champion and challenger were scored on the same holdout
    both = fetch(project.warehouse, "SELECT role, version, holdout_start, holdout_end FROM registry.evaluations "
                                    "WHERE slice_column = '' AND metric = 'roc_auc' AND run_id = (SELECT run_id FROM "
                                    "registry.model_versions WHERE version = 2) ORDER BY role")
    assert [(r[0], r[1]) for r in both] == [("challenger", 2), ("champion", 1)]
    assert both[0][2:] == both[1][2:]
    # predictions keep coming from the champion
    assert fetch(project.warehouse, "SELECT DISTINCT model_version FROM predictions.churn") == [(1,)]


def test_blocking_validation_failure_stops_the_run_and_keeps_everything(project):
    before = snapshot(project)
    bad_day = LAST + dt.timedelta(days=1)
    feats, _ = simulate.simulate_day(bad_day, rows=ROWS)
    simulate.write_landing_file(feats.drop(columns=["region"]), project.landing, bad_day)
    dr, states = project.run({"date": str(bad_day)})
    assert str(dr.state) == "failed"
    assert states["validate"] == "failed"
    for t in ("train", "evaluate", "promote", "begin_scoring", "publish_predictions"):
        assert states[t] == "upstream_failed", (t, states[t])
    after = snapshot(project)
    for key in ("features", "predictions", "versions", "champions", "log", "labels"):
        assert after[key] == before[key], key
    # the bad batch is kept as received and its result is recorded as blocked
    assert fetch(project.warehouse, "SELECT count(*) FROM raw.churn_batches WHERE _partition_date = %s",
                 (bad_day,)) == [(ROWS,)]
    assert fetch(project.warehouse, "SELECT blocked FROM monitoring.validation_runs WHERE partition_date = %s",
                 (bad_day,)) == [(True,)]


def test_rerunning_a_date_gives_identical_tables(project):
    """LAST was run by the bootstrap already: both runs here are re-runs, and must agree exactly."""
    first = None
    for _ in range(2):
        dr, states = project.run({"date": str(LAST)})
        assert str(dr.state) == "success", states
        snap = snapshot(project)
        if first is None:
            first = snap
        assert snap == first
    assert first["versions"][0][0] == 1 and len(first["versions"]) == 1
    assert first["log"] == [(None, 1, "promote")]


def test_force_promote_and_rollback_are_logged(project):
    project.respec(TEST_SPEC, WORSE)
    dr, states = project.run({"date": str(LAST), "force_promote": True, "reason": "incident 42: test override"})
    assert str(dr.state) == "success", states
    assert champion(project) == [(2,)]
    project.respec(TEST_SPEC)
    from airtrain_airflow.factory import build_retrain_dag

    from tests.integration.tabletouch import check_lineage, record_table_touches

    with record_table_touches(project.warehouse.uri) as touches:  # what each task read and wrote
        dr, states = project.run({"rollback_version": 1, "reason": "v2 is worse, back to v1"})
    assert str(dr.state) == "success", states
    assert states["prepare"] == "skipped" and states["train"] == "skipped"
    assert champion(project) == [(1,)]
    # rollback's OpenLineage datasets are the tables PostgreSQL saw it read and write
    problems = check_lineage(touches, build_retrain_dag(project.spec()), ["rollback"])
    assert not problems, "\n".join(problems)
    log = fetch(project.warehouse, "SELECT from_version, to_version, action, reason FROM registry.promotion_log "
                                   "ORDER BY id")
    assert [r[:3] for r in log] == [(None, 1, "promote"), (1, 2, "force_promote"), (2, 1, "rollback")]
    assert "incident 42" in log[1][3] and "back to v1" in log[2][3]


@pytest.mark.parametrize("conf, message", [
    pytest.param({"force_promote": True}, "force_promote needs a 'reason'", id="force-without-reason"),
    pytest.param({"rollback_version": 1, "reason": "because I say so"}, "has no model version 1",
                 id="rollback-unknown-version"),
    pytest.param({"end_date": "2026-01-05"}, "end_date needs date", id="range-without-start"),
    pytest.param({"date": "2026-02-01", "end_date": "2026-01-01"}, "before date", id="range-reversed"),
    pytest.param({"date": "2099-01-01"}, "in the future", id="future-date"),
    pytest.param({"promotion_hold": "hold"}, "promotion_hold needs a 'reason'", id="hold-without-reason"),
])
def test_bad_params_are_refused_before_any_work(bare, conf, message, capfd):
    project = bare
    dr, states = project.run(conf)
    out, err = capfd.readouterr()
    assert str(dr.state) == "failed"
    assert states["check_params"] == "failed"
    others = [s for t, v in states.items() if t != "check_params" for s in (v if isinstance(v, list) else [v])]
    assert set(others) <= {"upstream_failed", "skipped", None}, states
    assert message in out + err
    assert "AirflowFailException" in out + err  # failed at once, no retries
    # nothing was done: not even the schema exists
    assert fetch(project.warehouse, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('raw', 'registry')") == [(0,)]


@pytest.mark.parametrize("conf", [
    pytest.param({"date": "yesterday"}, id="date-not-iso"),
    pytest.param({"rollback_version": 0}, id="version-below-1"),
    pytest.param({"force_promote": "yes"}, id="bool-as-string"),
    pytest.param({"promotion_hold": "pause"}, id="hold-not-hold-or-release"),
])
def test_params_with_wrong_types_are_refused_by_airflow(conf):
    """Airflow's own JSON-schema check of the params: no data, no warehouse, no run needed."""
    from airflow.sdk.exceptions import ParamValidationError
    from airtrain.spec import load_spec
    from airtrain_airflow.factory import build_retrain_dag

    dag = build_retrain_dag(load_spec(ROOT / "include/pipelines/churn.yaml"))
    dag.params.validate()  # the defaults are valid
    with pytest.raises(ParamValidationError):
        dag.params.update(conf)
        dag.params.validate()


def test_dry_run_trains_and_evaluates_but_changes_nothing_live(project):
    """Against a live champion (v1): the dry run of a new day trains and evaluates v2 and stops there."""
    live = (champion(project), log_rows(project), fetch(project.warehouse, "SELECT as_of_date, model_version, "
                                                                          "count(*) FROM predictions.churn GROUP BY 1, 2"))
    day = LAST + dt.timedelta(days=1)
    dr, states = project.run({"date": str(day), "dry_run": True})
    assert str(dr.state) == "success", states
    assert states["promote"] == "success" and states["begin_scoring"] == "skipped"
    assert (champion(project), log_rows(project), fetch(project.warehouse, "SELECT as_of_date, model_version, "
                                                        "count(*) FROM predictions.churn GROUP BY 1, 2")) == live
    assert champion(project) == [(1,)]
    # the candidate and its evaluation against the champion are kept, so a person can look before promoting
    (version, passed, compared_with), = fetch(
        project.warehouse, "SELECT version, metrics->'gate'->>'passed', "
                           "jsonb_path_exists(metrics, '$.gate.checks[*] ? (@.champion != null)') "
                           "FROM registry.model_versions WHERE version > 1")
    assert version == 2 and passed in ("true", "false") and compared_with


def test_a_promotion_hold_run_records_the_hold_and_nothing_else(project):
    """``promotion_hold: hold`` with a reason: no training, no scoring, the hold recorded with who and why
    (what a hold does to later runs: tests/integration/test_release_registry.py)."""
    before = snapshot(project)
    dr, states = project.run({"promotion_hold": "hold", "reason": "audit of the churn model"})
    assert str(dr.state) == "success", states
    assert states["promotion_hold"] == "success" and states["prepare"] == "skipped", states
    assert states["rollback"] == "skipped" and states["begin_scoring"] == "skipped", states
    assert snapshot(project) == before
    assert fetch(project.warehouse, "SELECT action, actor, reason, run_id FROM registry.promotion_holds") == [
        ("hold", "user:dag_test", "audit of the churn model", dr.run_id)]


def test_days_before_the_data_starts_are_skipped_with_the_reason_not_failed(landed):
    """schedule.first_date (issue 20, item 12): a run for days before the pipeline's data starts - the
    first scheduled run after unpausing, a backfill of too early a range - has no landing file to wait
    for; it is skipped with the reason, never failed (the files are gone here: a run that still asked
    for them would fail at once, their deadline long past)."""
    from tests.integration.test_run_plan import plan_of

    first = START + dt.timedelta(days=3)
    landed.respec(TEST_SPEC, {"schedule": {"first_date": str(first)}})
    for i in range(3):
        (landed.landing / f"{START + dt.timedelta(days=i)}.csv").unlink()
    dr, states = landed.run({"date": str(START), "end_date": str(START + dt.timedelta(days=2))})
    assert str(dr.state) == "success", states
    assert states["check_params"] == "success" and states["route"] == "success", states  # it skipped the rest
    assert {states[t] for t in ("wait_for_landing", "ingest", "validate", "train", "begin_scoring",
                                "publish_predictions")} == {"skipped"}, states
    plan = plan_of(dr)
    assert plan["dates"] == [] and plan["skip"] == (
        f"nothing to do: 3 days ({START}, {START + dt.timedelta(days=1)}, {START + dt.timedelta(days=2)}) outside "
        "the pipeline's data "
        f"(schedule.first_date {first}): no data there, nothing to process"), plan
    # nothing touched the warehouse: not even the schema check (prepare) ran
    assert fetch(landed.warehouse, "SELECT to_regclass('monitoring.ingest_runs')") == [(None,)]
    # (a range across the start keeps only its days with data: tests/dags/test_schedule_range.py)


def test_airtrain_check_prints_each_invariant_and_fails_when_one_does(project, capsys, tmp_path):
    """`airtrain check` / `make check` (issue 20, item 22): every invariant with its result; exit 1 and the
    violation when one fails; exit 2 without printing the password when the warehouse cannot be read."""
    from airtrain.invariants import INVARIANTS
    from airtrain.migrate import cli

    args = ["check", "--url", project.warehouse.uri, "--spec-dir", str(project.spec_dir)]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("churn:\n") and out.rstrip().endswith("all invariants hold")
    assert [line.split(". ", 1)[1] for line in out.splitlines() if line.startswith("  ok    ")] == list(INVARIANTS)
    # a promotion the champion never made: the log is no longer a chain ending at the champion
    fetch(project.warehouse, "INSERT INTO registry.promotion_log (pipeline, from_version, to_version, action, actor, "
                             "reason) VALUES ('churn', 7, 8, 'promote', 'test', 'forged')")
    assert cli(args) == 1
    out = capsys.readouterr().out
    assert "  FAIL  5. the promotion log is a chain ending at the champion" in out
    assert "promotion log ends at v8 but the champion is v1" in out and "1 invariant(s) failed" in out
    assert sum(line.startswith("  ok    ") for line in out.splitlines()) == len(INVARIANTS) - 1
    # review 4: a broken spec beside it is named (file and key) and the others are still checked; exit 1
    specs = tmp_path / "pipelines"
    specs.mkdir()
    text = (project.spec_dir / "churn.yaml").read_text()
    (specs / "churn.yaml").write_text(text)
    broken = yaml.safe_load(text)
    broken["name"], broken["monitoring"]["trigger"]["drift_share"] = "aaa_broken", 7
    (specs / "aaa_broken.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))
    assert cli(["check", "--url", project.warehouse.uri, "--spec-dir", str(specs)]) == 1
    out, err = capsys.readouterr()
    assert "invalid pipeline spec" in err and "aaa_broken.yaml" in err and "drift_share" in err, err
    assert out.startswith("churn:\n") and "  FAIL  5. the promotion log is a chain ending at the champion" in out
    wrong = project.warehouse.uri.replace("@", "-wrong@", 1)  # a wrong password
    assert cli(["check", "--url", wrong, "--spec-dir", str(project.spec_dir)]) == 2
    out, err = capsys.readouterr()
    assert "cannot check" in err and "-wrong" not in out + err
