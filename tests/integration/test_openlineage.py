"""OpenLineage (issue 13, part C): a real retrain DAG run (``dag.test()``) with the OpenLineage
provider's file transport emits events whose inputs/outputs are the real warehouse tables.

Issue 20, item 20: the same run records which tables each task really read and wrote, as PostgreSQL
counts them (``tests/integration/tabletouch.py``), and every task's COMPLETE event must name exactly
those: nothing touched is missing from the lineage, nothing in the lineage was left untouched. (The
monitor's tasks, the approval tasks, rollback and the canary tasks are held to the same check
in-process, in the runs of test_prediction_explain_fairness_monitor, test_approval,
test_retrain_dag and test_canary.)

The run happens in a fresh Python process: the provider reads its configuration (and decides
whether it is enabled) once per process, and this test's worker has Airflow loaded without it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from tests.integration.dagtest import ROOT, TEST_SPEC, template_project

pytestmark = pytest.mark.integration

# the same template as tests/integration/test_retrain_dag.py (14 landed days, nothing run): shared
from tests.integration.test_retrain_dag import DAYS, LAST, ROWS, START  # noqa: E402

# six days are enough to train (labels one day late: 5 labeled days, a 2-day holdout) and keep it cheap
RANGE = {"date": str(LAST - dt.timedelta(days=5)), "end_date": str(LAST)}

RUN = """
import datetime as dt, json, os, sys
from airtrain.spec import load_spec, spec_dir
from airtrain_airflow.factory import build_retrain_dag
from tests.integration.tabletouch import record_table_touches
spec = load_spec(spec_dir() / "churn.yaml")
dag = build_retrain_dag(spec)
conf = json.loads(sys.argv[1])
with record_table_touches(os.environ["AIRFLOW_CONN_WAREHOUSE"]) as touches:
    dr = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf=conf)
print("STATE", dr.state)
print("TOUCHES", json.dumps(touches.as_json()))
import os, sqlalchemy
engine = sqlalchemy.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
with engine.connect() as c:
    link = c.execute(sqlalchemy.text("SELECT value FROM xcom WHERE dag_id = :d AND run_id = :r AND task_id = 'evaluate' "
                                     "AND key = '_link_ModelCardLink'"), {"d": dag.dag_id, "r": dr.run_id}).scalar()
print("CARD_LINK", json.dumps(link))
"""


#: bookkeeping, not data lineage: prepare checks the schema fingerprint
NOT_LINEAGE = frozenset({"registry.schema_migrations"})


def test_a_retrain_run_emits_openlineage_events_naming_the_real_tables(tmp_path_factory, pg_server, monkeypatch,
                                                                      airflow_db):
    from airtrain.migrate import main as migrate

    from tests.integration.tabletouch import Touches, lineage_mismatches

    p, _ = template_project(tmp_path_factory, pg_server, "rt_landed", overrides=TEST_SPEC, start=START, days=DAYS,
                            rows=ROWS, monkeypatch=monkeypatch)
    migrate(["--url", p.warehouse.uri, "--spec-dir", str(p.spec_dir)])  # deploy time: prepare only verifies
    events_file = p.root / "ol_events.jsonl"
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file),
                                                          "append": True}),
           "AIRFLOW__OPENLINEAGE__NAMESPACE": "airtrain_test",
           "AIRFLOW__OPENLINEAGE__EXTRACTORS": "airtrain_airflow.lineage.AirtrainExtractor",
           "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True"}
    out = subprocess.run([sys.executable, "-c", RUN, json.dumps(RANGE)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert "STATE success" in out.stdout, (out.stdout[-3000:], out.stderr[-5000:])
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    assert "churn_retrain.validate" in complete, sorted(complete)
    db = p.warehouse.uri.rsplit("/", 1)[1].split("?")[0]
    host_port = p.warehouse.uri.split("@", 1)[1].split("/", 1)[0]

    def names(task: str, side: str) -> set[str]:
        ds = [d for d in complete[f"churn_retrain.{task}"][side] if d["namespace"] != "file"]
        assert {d["namespace"] for d in ds} <= {f"postgres://{host_port}"}, ds
        return {d["name"].removeprefix(f"{db}.") for d in ds}

    assert names("ingest", "outputs") == {"raw.churn_batches", "monitoring.ingest_runs"}
    assert names("validate", "inputs") == {"raw.churn_batches", "monitoring.ingest_runs"}
    assert {"features.churn", "quarantine.churn"} <= names("validate", "outputs")
    assert "features.churn_labels" not in names("validate", "outputs")  # labels come from the labels table here
    assert "demo_source.churn_labels" in names("train", "inputs")
    assert names("train", "outputs") == {"registry.model_versions", "features.churn_labels"}
    assert {"registry.evaluations", "registry.model_cards"} <= names("evaluate", "outputs")
    # explain.importance and fairness are off in the test spec: nothing written there, nothing named
    assert not {"registry.feature_importance", "registry.fairness"} & names("evaluate", "outputs")
    assert {"registry.champions", "registry.promotion_log"} <= names("promote", "outputs")
    assert names("score", "outputs") == {"predictions.churn"}
    assert "features.churn" in names("score", "inputs")
    assert names("publish_predictions", "outputs") == {"predictions.churn"}
    # the job namespace is the configured one; a task that touches no table names none
    assert complete["churn_retrain.validate"]["job"]["namespace"] == "airtrain_test"
    assert complete["churn_retrain.check_params"]["inputs"] == []
    # every task's lineage = the tables PostgreSQL saw it read and write
    raw = json.loads(out.stdout.split("TOUCHES ", 1)[1].splitlines()[0])
    touches = Touches()
    for side in ("read", "written"):
        for task, tables in raw[side].items():
            getattr(touches, side)[task] = set(tables)
    assert not raw["unsettled"], raw["unsettled"]
    ran = {t for t, state in raw["finished"].items() if state == "success"}
    assert {"ingest", "validate", "train", "evaluate", "promote", "begin_scoring", "score",
            "publish_predictions"} <= ran, raw["finished"]
    problems = []
    for task in sorted(ran):
        problems += lineage_mismatches(touches, task, names(task, "inputs"), names(task, "outputs"),
                                       ignore=NOT_LINEAGE)
    assert problems == [], "\n".join(problems)
    # the landing files ingest read are its input datasets (OpenLineage's local-file naming)
    files = sorted(d["name"] for d in complete["churn_retrain.ingest"]["inputs"] if d["namespace"] == "file")
    first = dt.date.fromisoformat(RANGE["date"])
    assert files == [str((p.landing / f"{first + dt.timedelta(days=i)}.csv").resolve()) for i in range(6)], files

    # part D: the evaluate task's "Model card" extra link points at the version it evaluated
    link = json.loads(out.stdout.split("CARD_LINK ", 1)[1].splitlines()[0])
    assert link == "/airtrain/cards/churn/1", link
