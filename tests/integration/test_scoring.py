"""Batch predictions on real PostgreSQL: exact rows, idempotent swaps, readers never see a gap."""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg2
import pytest
from airtrain.registry import champions
from airtrain.serving import publish, scoring
from airtrain.serving.target import NoModelError, ScoringError, ScoringTarget
from airtrain.spec import load_spec
from airtrain.steps import release, retrain, schema

from tests.integration.dagtest import ROOT, TEST_SPEC, fetch, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
DAYS = 12
LAST = START + dt.timedelta(days=DAYS - 1)
ROWS = 600


def _validate_and_promote(p) -> None:
    """Template set-up (real steps, no DAG): every day validated, a champion trained as of LAST."""
    spec, wh = p.spec(), p.warehouse
    schema.prepare(wh, spec)
    dates = [START + dt.timedelta(days=i) for i in range(DAYS)]
    retrain.ingest(wh, spec, dates, "setup", p.root)
    retrain.validate(wh, spec, dates, "setup", today=LAST, reports_root=p.root / "reports")
    out = retrain.train(wh, spec, LAST, "setup")
    ev = retrain.evaluate(wh, spec, out["version"], "setup", LAST)
    assert release.promote(wh, spec, ev, run_id="setup", actor="test")["promoted"]


@pytest.fixture
def trained(tmp_path_factory, pg_server, monkeypatch):
    """A warehouse with validated features for DAYS days and a promoted champion: a copy of a
    session template, so each test starts from the same state in well under a second."""
    p, _ = template_project(tmp_path_factory, pg_server, "scoring", overrides=TEST_SPEC, start=START, days=DAYS,
                            rows=ROWS, setup=_validate_and_promote, monkeypatch=monkeypatch)
    return p.warehouse, p.spec()


def keys(wh, date):
    return fetch(wh, "SELECT customer_id FROM predictions.churn WHERE as_of_date = %s ORDER BY 1", (date,))


def test_exact_rows_and_keys(trained):
    wh, spec = trained
    res = scoring.score_date(wh, spec, LAST, run_id="r1", shards=3)
    assert res["rows"] == ROWS and res["replaced"] is False
    want = fetch(wh, "SELECT customer_id FROM features.churn WHERE as_of_date = %s ORDER BY 1", (LAST,))
    assert keys(wh, LAST) == want
    rows = fetch(wh, "SELECT min(score), max(score), count(DISTINCT model_version), count(*) FILTER "
                     "(WHERE predicted_label = (score >= 0.5)::int) FROM predictions.churn")
    lo, hi, versions, consistent = rows[0]
    assert 0 <= lo < hi <= 1 and versions == 1 and consistent == ROWS
    # the latest view shows the champion's newest prediction per entity
    assert fetch(wh, "SELECT count(*), count(DISTINCT customer_id) FROM predictions.churn_latest") == [(ROWS, ROWS)]


def test_shards_partition_the_entities_exactly_once(trained):
    wh, spec = trained
    target = scoring.begin(wh, spec, LAST)
    parts = [scoring.score_shard(wh, spec, target, run_id="r", shard=s, shards=4) for s in range(4)]
    assert sum(p["rows"] for p in parts) == ROWS and all(p["rows"] > 0 for p in parts)
    assert all(p["threads"] == scoring.scoring_threads(4) for p in parts)  # the shards share the cores
    publish.publish(wh, spec, target, ROWS)
    assert len(keys(wh, LAST)) == ROWS


def test_rerun_three_times_is_identical(trained):
    wh, spec = trained
    snaps = []
    for i in range(3):
        scoring.score_date(wh, spec, LAST, run_id=f"run{i}", shards=2)
        snaps.append(fetch(wh, "SELECT customer_id, as_of_date, model_version, score, predicted_label "
                               "FROM predictions.churn ORDER BY 1, 2, 3"))
    assert snaps[0] == snaps[1] == snaps[2] and len(snaps[0]) == ROWS
    # one partition for (date, version); no stage table left behind
    tables = fetch(wh, "SELECT tablename FROM pg_tables WHERE schemaname = 'predictions' "
                       "AND tablename NOT IN ('churn', 'churn_shadow') ORDER BY 1")
    part = f"churn_p{LAST:%Y%m%d}_v1"
    assert tables == [(part,), (f"{part}_s0",), (f"{part}_s1",)]  # the date's partition and its two shards'
    assert fetch(wh, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                     "WHERE i.inhparent = 'predictions.churn'::regclass") == [(part,)]


def test_grants_and_views_survive_rewrites(trained):
    wh, spec = trained
    for i in range(2):
        scoring.score_date(wh, spec, LAST, run_id=f"g{i}")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SET ROLE predictions_reader")
        cur.execute("SELECT count(*) FROM predictions.churn_latest")
        assert cur.fetchone()[0] == ROWS
        cur.execute("SELECT count(*) FROM predictions.churn")
        assert cur.fetchone()[0] == ROWS
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT count(*) FROM registry.model_versions")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SET ROLE predictions_reader")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("DELETE FROM predictions.churn")


def test_reader_never_sees_zero_rows_or_mixed_runs_during_rewrites(trained):
    wh, spec = trained
    scoring.score_date(wh, spec, LAST, run_id="base")
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader():
        try:
            conn = psycopg2.connect(wh.uri)
            conn.autocommit = True
            with conn.cursor() as cur:
                deadline = time.monotonic() + 60
                while not stop.is_set() and time.monotonic() < deadline:
                    cur.execute("SELECT count(*), count(DISTINCT run_id) FROM predictions.churn WHERE as_of_date = %s",
                                (LAST,))
                    seen.append(cur.fetchone())
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(5):
            scoring.score_date(wh, spec, LAST, run_id=f"rewrite{i}", shards=2)
    finally:
        stop.set()
        t.join(timeout=70)
    assert not errors, errors
    assert len(seen) > 20, "the reader did not get to poll"
    assert set(seen) == {(ROWS, 1)}, sorted(set(seen))


def test_missing_champion_is_a_clear_error_and_writes_nothing(warehouse):
    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    schema.prepare(warehouse, spec)
    with pytest.raises(NoModelError, match="no champion model yet"):
        scoring.score_date(warehouse, spec, LAST, run_id="x")
    assert fetch(warehouse, "SELECT count(*) FROM predictions.churn") == [(0,)]
    assert fetch(warehouse, "SELECT count(*) FROM pg_tables WHERE schemaname = 'predictions' "
                            "AND tablename NOT IN ('churn', 'churn_shadow')") == [(0,)]


@pytest.mark.parametrize("ddl, message", [
    pytest.param("ALTER TABLE features.churn DROP COLUMN region", "column 'region' is missing", id="missing-column"),
    pytest.param("ALTER TABLE features.churn ALTER COLUMN monthly_charges TYPE text", "monthly_charges' is text",
                 id="mistyped-column"),
])
def test_bad_feature_columns_are_a_clear_error_and_write_nothing(trained, ddl, message):
    wh, spec = trained
    scoring.score_date(wh, spec, LAST, run_id="before")
    before = fetch(wh, "SELECT customer_id, score, run_id FROM predictions.churn ORDER BY 1")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(ddl)
    with pytest.raises(ScoringError, match=message):
        scoring.score_date(wh, spec, LAST, run_id="after")
    assert fetch(wh, "SELECT customer_id, score, run_id FROM predictions.churn ORDER BY 1") == before


def test_shadow_scoring_uses_the_challenger(trained):
    wh, spec = trained
    with pytest.raises(NoModelError, match="no challenger"):
        scoring.score_date(wh, spec, LAST, run_id="s", model="challenger", role="shadow")
    worse = spec.model_copy(update={"training": spec.training.model_copy(update={
        "estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.001, "max_iter": 50}})})
    v2 = retrain.train(wh, worse, LAST, "challenger-run")["version"]  # same data, another estimator
    assert champions.champion_version(wh, spec) == 1 and v2 == 2
    res = scoring.score_date(wh, spec, LAST, run_id="s", model="challenger", role="shadow")
    assert res["table"] == "predictions.churn_shadow" and res["version"] == 2 and res["rows"] == ROWS
    assert fetch(wh, "SELECT count(*) FROM predictions.churn") == [(0,)]


def test_scoring_streams_in_bounded_batches(trained, monkeypatch):
    """Features come out as many record batches, never as one whole-table frame."""
    wh, spec = trained
    day = LAST + dt.timedelta(days=1)
    with wh.connect() as conn, conn.cursor() as cur:  # 20,000 rows for a new day, copied server-side
        cur.execute("INSERT INTO features.churn (customer_id, as_of_date, tenure_months, monthly_charges, "
                    "total_charges, num_support_tickets, senior_citizen, contract_type, payment_method, "
                    "internet_service, region, _run_id) SELECT customer_id * 100 + g, %s, tenure_months, "
                    "monthly_charges, total_charges, num_support_tickets, senior_citizen, contract_type, "
                    "payment_method, internet_service, region, 'copy' FROM features.churn, generate_series(1, 34) g "
                    "WHERE as_of_date = %s LIMIT 20000", (day, LAST))
    small = spec.model_copy(update={"scoring": spec.scoring.model_copy(update={"batch_rows": 1000})})
    sizes: list[int] = []
    original = scoring._prediction_batches

    def counting(reader, *args, **kwargs):
        for batch in original(reader, *args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(scoring, "_prediction_batches", counting)
    res = scoring.score_date(wh, small, day, run_id="stream")
    assert res["rows"] == 20000 == sum(sizes)
    assert len(sizes) >= 10 and max(sizes) < 5000, sizes


def test_shards_follow_the_rows_of_the_date_with_a_max(trained):
    """scoring.rows_per_shard: begin counts the date's rows and decides the shards once (the DAG maps
    over them at run time); max_shards caps them; the shards still publish in one swap."""
    wh, spec = trained

    def with_scoring(**kw):  # model_copy does not re-validate: lets a tiny test use 250 rows per shard
        return spec.model_copy(update={"scoring": spec.scoring.model_copy(update=kw)})

    one = scoring.begin(wh, with_scoring(rows_per_shard=1000), LAST, run_id="one")
    assert (one.shards, one.rows) == (1, ROWS)  # 600 rows: one shard
    scoring.abort(wh, one)
    three = with_scoring(rows_per_shard=250)
    target = scoring.begin(wh, three, LAST, run_id="three")
    assert (target.shards, target.rows) == (3, ROWS)
    assert ScoringTarget.from_dict(target.as_dict()) == target  # survives XCom
    parts = [scoring.score_shard(wh, three, target, run_id="three", shard=s, shards=target.shards)
             for s in range(target.shards)]
    assert sum(p["rows"] for p in parts) == ROWS and all(p["rows"] > 0 for p in parts)
    assert publish.publish(wh, three, target, ROWS)["rows"] == ROWS
    assert len(keys(wh, LAST)) == ROWS
    capped = scoring.begin(wh, with_scoring(rows_per_shard=250, max_shards=2), LAST, run_id="capped")
    assert capped.shards == 2
    scoring.abort(wh, capped)


def _leaf_stats(wh, names: list[str]) -> dict[str, tuple]:
    """Per table: (its oid, its index oids, sequential scans so far). Statistics reach pg_stat_user_tables
    when a backend ends: wait until this test's is the only one on the database."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and fetch(wh, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                    "current_database() AND pid <> pg_backend_pid()")[0][0]:
        time.sleep(0.2)
    out = {}
    for name in names:
        (oid, idx, scans), = fetch(wh, "SELECT c.oid, (SELECT array_agg(indexrelid ORDER BY indexrelid) FROM pg_index "
                                       "WHERE indrelid = c.oid), s.seq_scan FROM pg_class c JOIN pg_stat_user_tables s "
                                       "ON s.relid = c.oid WHERE c.oid = %s::regclass", (f"predictions.{name}",))
        out[name] = (oid, idx, scans)
    return out


def test_each_shard_writes_and_indexes_its_own_sub_partition_and_publish_only_attaches_them(trained):
    """Item 4 of the 10M-row day: the shards build their tables' primary keys and indexes (in parallel,
    as mapped tasks); publish attaches them to the stage and the stage to the table without building an
    index or scanning a row (their CHECK constraints prove the bounds), so the table lock is short."""
    wh, spec = trained
    target = scoring.begin(wh, spec, LAST, run_id="sub")
    parts = [scoring.score_shard(wh, spec, target, run_id="sub", shard=s, shards=3) for s in range(3)]
    assert sum(p["rows"] for p in parts) == ROWS and all(p["rows"] > 0 for p in parts)
    names = [target.shard_table(s) for s in range(3)]
    # each shard's table holds exactly its hash bucket of the stage, under its primary key and the indexes
    for s, name in enumerate(names):
        assert fetch(wh, f'SELECT count(*) FROM predictions."{name}" WHERE NOT satisfies_hash_partition('  # noqa: S608
                         "%s::regclass::oid, 3, %s, customer_id)", (f"predictions.{target.stage}", s)) == [(0,)]
    before = _leaf_stats(wh, names)
    assert all(len(idx) == 3 for _, idx, _ in before.values()), before  # pkey, (as_of_date), (version, as_of_date)
    res = publish.publish(wh, spec, target, ROWS, run_id="sub")
    assert res["rows"] == ROWS
    leaves = [target.leaf(s) for s in range(3)]
    after = _leaf_stats(wh, leaves)
    for name, leaf in zip(names, leaves, strict=True):
        oid, idx, scans = before[name]
        assert after[leaf] == (oid, idx, scans), (name, before[name], after[leaf])  # same table, same indexes, no scan
    # the date is one partition of the table, made of the three sub-partitions; no stage and no CHECK left
    tree = fetch(wh, "SELECT c.relname, t.level FROM pg_partition_tree('predictions.churn') t JOIN pg_class c ON "
                     "c.oid = t.relid WHERE t.level > 0 ORDER BY 2, 1")
    assert tree == [(target.partition, 1), *[(leaf, 2) for leaf in leaves]]
    assert fetch(wh, "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND conrelid = ANY(%s::regclass[])",
                 ([f"predictions.{leaf}" for leaf in leaves],)) == [(0,)]
    assert keys(wh, LAST) == fetch(wh, "SELECT customer_id FROM features.churn WHERE as_of_date = %s ORDER BY 1",
                                   (LAST,))


def test_publish_refuses_a_stage_with_a_shard_missing_and_publishes_nothing(trained):
    wh, spec = trained
    target = scoring.begin(wh, spec, LAST, run_id="half")
    rows = scoring.score_shard(wh, spec, target, run_id="half", shard=1, shards=2)["rows"]
    with pytest.raises(ScoringError, match=r"shard\(s\) \[0\] of 2 .* were not scored: nothing was published"):
        publish.publish(wh, spec, target, rows, run_id="half")
    assert keys(wh, LAST) == []
    # the missing shard scored (a retry), the publish goes through
    rows += scoring.score_shard(wh, spec, target, run_id="half", shard=0, shards=2)["rows"]
    assert publish.publish(wh, spec, target, rows, run_id="half")["rows"] == ROWS
