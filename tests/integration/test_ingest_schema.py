"""Ingest and schema on real PostgreSQL: as received, replace-by-date, clear errors, grants."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import psycopg2
import pytest
import yaml
from airtrain import simulate
from airtrain.data import ingest, labels
from airtrain.spec import load_spec, parse_spec
from airtrain.steps.schema import apply_schema

from tests.integration.dagtest import fetch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
D = dt.date(2026, 2, 1)


@pytest.fixture
def wh(warehouse):
    apply_schema(warehouse, SPEC)
    return warehouse


def land(tmp_path, text: bytes | str, date=D) -> Path:
    path = tmp_path / "data/landing/churn" / f"{date}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


HEADER = ("customer_id,as_of_date,tenure_months,monthly_charges,total_charges,num_support_tickets,senior_citizen,"
          "contract_type,payment_method,internet_service,region")
ROW = "{id},2026-02-01,0042,1e3,,2,False,one_year,credit_card,dsl,north"


def test_values_are_kept_as_received_and_reruns_replace(wh, tmp_path):
    land(tmp_path, HEADER + "\n" + "\n".join(ROW.format(id=i) for i in range(1, 6)) + "\n")
    for run in ("r1", "r2", "r3"):
        res = ingest.ingest_partition(wh, SPEC, D, run, project_root=tmp_path)
        assert res.rows == 5 and res.columns_missing == [] and res.columns_extra == []
    rows = fetch(wh, "SELECT _row_number, tenure_months, monthly_charges, total_charges, _run_id FROM raw.churn_batches "
                     "ORDER BY 1")
    assert rows == [(i, "0042", "1e3", None, "r3") for i in range(1, 6)]
    assert fetch(wh, "SELECT count(*), max(rows) FROM monitoring.ingest_runs") == [(1, 5)]


def test_extra_and_missing_columns_are_reported(wh, tmp_path):
    header = HEADER.replace(",region", ",surprise")
    land(tmp_path, header + "\n" + ROW.format(id=1).replace(",north", ",boo") + "\n")
    res = ingest.ingest_partition(wh, SPEC, D, "r", project_root=tmp_path)
    assert res.columns_missing == ["region"] and res.columns_extra == ["surprise"]
    assert fetch(wh, "SELECT region, _extra FROM raw.churn_batches") == [(None, {"surprise": "boo"})]


@pytest.mark.parametrize("content, error, message", [
    pytest.param(HEADER + "\n" + ROW.format(id=1) + "\n" + "7,2026-02-01,3", ingest.SourceFormatError,
                 "line 3 has 3 fields", id="truncated-last-line"),
    pytest.param(HEADER + "\n" + ROW.format(id=1), ingest.SourceFormatError, "looks truncated",
                 id="no-final-newline"),
    pytest.param((HEADER + "\n").encode() + b"\xff\xfe,broken\n", ingest.SourceFormatError, "not valid UTF-8",
                 id="bad-encoding"),
])
def test_malformed_files_are_refused_and_nothing_changes(wh, tmp_path, content, error, message):
    land(tmp_path, HEADER + "\n" + ROW.format(id=1) + "\n")
    ingest.ingest_partition(wh, SPEC, D, "good", project_root=tmp_path)
    land(tmp_path, content)
    with pytest.raises(error, match=message):
        ingest.ingest_partition(wh, SPEC, D, "bad", project_root=tmp_path)
    assert fetch(wh, "SELECT _run_id, count(*) FROM raw.churn_batches GROUP BY 1") == [("good", 1)]


def test_missing_and_empty_files(wh, tmp_path):
    with pytest.raises(ingest.SourceMissingError, match=str(tmp_path / "data/landing/churn" / f"{D}.csv")):
        ingest.ingest_partition(wh, SPEC, D, "r", project_root=tmp_path)
    land(tmp_path, "")
    assert ingest.ingest_partition(wh, SPEC, D, "r", project_root=tmp_path).rows == 0
    land(tmp_path, HEADER + "\n")
    assert ingest.ingest_partition(wh, SPEC, D, "r", project_root=tmp_path).rows == 0


def test_parquet_and_postgres_sources(wh, tmp_path):
    feats, _ = simulate.simulate_day(D, rows=50)
    simulate.write_landing_file(feats, tmp_path / "data/landing/churn", D, "parquet")
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["source"] = {"kind": "files", "path": "data/landing/churn", "format": "parquet", "pattern": "{date}.parquet"}
    assert ingest.ingest_partition(wh, parse_spec(data), D, "p", project_root=tmp_path).rows == 50
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA src; CREATE TABLE src.snap AS SELECT * FROM features.churn WHERE false")
        cur.execute("ALTER TABLE src.snap DROP COLUMN _run_id, DROP COLUMN _validated_at, ADD COLUMN extra_col int")
        cur.execute("INSERT INTO src.snap (customer_id, as_of_date, tenure_months, monthly_charges, senior_citizen, "
                    "contract_type, extra_col) VALUES (5, %s, 3, 20.5, true, 'one_year', 9), "
                    "(6, %s, 4, 21.5, false, 'two_year', 8), (7, %s, 1, 1, false, 'x', 1)",
                    (D, D, D + dt.timedelta(days=1)))
    data["source"] = {"kind": "postgres", "schema": "src", "table": "snap", "date_column": "as_of_date"}
    res = ingest.ingest_partition(wh, parse_spec(data), D, "pg", project_root=tmp_path)
    assert res.rows == 2 and res.columns_extra == ["extra_col"] and res.source == "src.snap"
    assert fetch(wh, "SELECT customer_id, monthly_charges, senior_citizen, _extra FROM raw.churn_batches "
                     "ORDER BY _row_number") == [("5", "20.5", "true", {"extra_col": "9"}),
                                                  ("6", "21.5", "false", {"extra_col": "8"})]


def test_labels_respect_availability_and_are_idempotent(wh, tmp_path):
    simulate.generate_demo(wh, tmp_path / "land", start=D, days=3, rows_per_day=100)
    assert labels.load_labels(wh, SPEC, D + dt.timedelta(days=30)) == 100
    assert labels.load_labels(wh, SPEC, D + dt.timedelta(days=30)) == 0
    assert labels.load_labels(wh, SPEC, D + dt.timedelta(days=40)) == 200
    assert fetch(wh, "SELECT count(*) FROM features.churn_labels") == [(300,)]


def test_reader_never_sees_an_empty_partition_during_reingest(wh, tmp_path):
    land(tmp_path, HEADER + "\n" + "\n".join(ROW.format(id=i) for i in range(1, 3001)) + "\n")
    ingest.ingest_partition(wh, SPEC, D, "r0", project_root=tmp_path)
    counts: list[int] = []
    stop = threading.Event()

    def poll():
        conn = psycopg2.connect(wh.uri)
        conn.autocommit = True
        with conn.cursor() as cur:
            for _ in range(100_000):
                if stop.is_set():
                    break
                cur.execute("SELECT count(*) FROM raw.churn_batches WHERE _partition_date = %s", (D,))
                counts.append(cur.fetchone()[0])
        conn.close()

    t = threading.Thread(target=poll)
    t.start()
    for i in range(5):
        ingest.ingest_partition(wh, SPEC, D, f"r{i + 1}", project_root=tmp_path)
    stop.set()
    t.join(30)
    assert len(counts) > 10 and set(counts) == {3000}


def test_schema_is_idempotent_and_additive(wh):
    def catalog():
        return fetch(wh, "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema IN ('raw','features','quarantine','registry','predictions','monitoring') "
                         "ORDER BY 1, 2, 3") + fetch(wh, "SELECT schemaname, indexname FROM pg_indexes WHERE "
                                                         "schemaname IN ('features','predictions','registry') ORDER BY 1, 2")
    before = catalog()
    apply_schema(wh, SPEC)
    assert catalog() == before
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["features"].append({"name": "referrals", "type": "int", "nullable": True})
    report = apply_schema(wh, parse_spec(data))
    assert "features.churn.referrals" in report.columns_added
    types = dict(fetch(wh, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = "
                           "'features' AND table_name = 'churn'"))
    assert types["referrals"] == "bigint" and types["monthly_charges"] == "double precision"
    assert fetch(wh, "SELECT count(*) FROM registry.schema_migrations") == [(2,)]


def test_promotion_log_is_append_only_and_one_champion(wh):
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO registry.model_versions (pipeline, version, run_id, estimator, artifact, "
                    "artifact_sha256, artifact_format) VALUES ('churn', 1, 'r', 'e', '\\x00', 'x', 'skops')")
        cur.execute("INSERT INTO registry.promotion_log (pipeline, to_version, action, actor, reason) "
                    "VALUES ('churn', 1, 'promote', 'test', 'why')")
        cur.execute("INSERT INTO registry.champions (pipeline, version) VALUES ('churn', 1)")
    for stmt in ("UPDATE registry.promotion_log SET reason = 'x'", "DELETE FROM registry.promotion_log",
                 "TRUNCATE registry.promotion_log",
                 "INSERT INTO registry.champions (pipeline, version) VALUES ('churn', 1)"):
        with pytest.raises(psycopg2.Error), wh.connect() as conn, conn.cursor() as cur:
            cur.execute(stmt)
    assert fetch(wh, "SELECT count(*) FROM registry.promotion_log") == [(1,)]
    comments = fetch(wh, "SELECT obj_description('registry.promotion_log'::regclass), "
                         "col_description('predictions.churn'::regclass, 4)")
    assert "Append-only" in comments[0][0] and "Probability" in comments[0][1]
