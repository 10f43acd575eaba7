"""What readers of the warehouse see: the latest-predictions view through champion changes, one
shadow version per date, and an analyst's read-only login running every query of docs/SQL.md and
every other documentation page.

One module-scoped project (real dag.test() runs, real PostgreSQL), dated so that the documented
queries' ``current_date - 1`` is its last scored day:

* run 1 - a range ending the day before yesterday; its challenger v1 is force-promoted (the gate
  of this module refuses every model on its own, so later challengers stay challengers);
* run 2 - yesterday: v1 scores it, the run's challenger v2 is refused and shadow-scores it;
* run 3 - yesterday again, with other estimator params: challenger v3 is refused and shadow-scores
  the date, replacing v2's shadow rows.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import psycopg2
import psycopg2.errors
import pytest
from airtrain import invariants
from airtrain.registry import champions
from airtrain.serving import scoring

from tests.integration.dagtest import ROOT, fetch, land_days, module_project

pytestmark = pytest.mark.integration

END = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # the documented queries ask for current_date - 1
DAYS = 12
START = END - dt.timedelta(days=DAYS - 1)
ROWS = 300
SPEC = {
    "training": {"min_rows": 500, "window_days": 10, "holdout_days": 2},
    "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.999}]},  # nothing passes on its own
    "scoring": {"shadow": True},
    "schedule": {"retry_delay_minutes": 0.01},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pg_server, airflow_db):
    p, mp = module_project(tmp_path_factory, pg_server, "readers", SPEC)
    land_days(p, START, DAYS, rows=ROWS)
    out = {"project": p}
    _, out["run1"] = p.run({"date": str(START), "end_date": str(END - dt.timedelta(days=1)),
                            "force_promote": True, "reason": "bootstrap of the reader tests"})
    _, out["run2"] = p.run({"date": str(END)})
    p.write_spec(**{**SPEC, "training": {**SPEC["training"], "params": {"max_iter": 40}}})
    _, out["run3"] = p.run({"date": str(END)})
    yield out
    mp.undo()


def versions_by_date(p, table: str) -> dict[dt.date, list[int]]:
    rows = fetch(p.warehouse, f"SELECT as_of_date, array_agg(DISTINCT model_version ORDER BY model_version) "
                              f"FROM predictions.{table} GROUP BY 1 ORDER BY 1")
    return dict(rows)


def test_the_shadow_holds_the_runs_own_challenger_one_version_per_date(runs):
    p = runs["project"]
    assert runs["run1"]["promote"] == "success" and runs["run1"]["score_shadow"] == "skipped", runs["run1"]
    for run in ("run2", "run3"):
        assert runs[run]["score_shadow"] == "success", runs[run]
    trained = fetch(p.warehouse, "SELECT version, run_id FROM registry.model_versions ORDER BY 1")
    assert [v for v, _ in trained] == [1, 2, 3], trained
    assert champions.champion_version(p.warehouse, p.spec()) == 1
    # run 2 shadowed yesterday with v2; run 3 (same date) with ITS challenger v3, replacing v2's rows
    assert versions_by_date(p, "churn_shadow") == {END: [3]}
    assert versions_by_date(p, "churn") == {END - dt.timedelta(days=1): [1], END: [1]}
    n = fetch(p.warehouse, "SELECT count(*), count(DISTINCT customer_id) FROM predictions.churn_shadow")[0]
    assert n == (ROWS, ROWS)
    assert invariants.check(p.warehouse, p.spec()) == []


# ---------------------------------------------------------------------------------------------
# the documented SQL, run by an analyst's login
# ---------------------------------------------------------------------------------------------

OWNER_ONLY = re.compile(r"\bquarantine\.")  # quarantined rows are raw data as received: owner only
#: on the other pages also the registry's versions (the model artifacts), which docs/SQL.md says the
#: reader cannot read
OWNER_ONLY_ELSEWHERE = re.compile(r"\bquarantine\.|\bregistry\.model_versions\b")
SQL_PAGE = ROOT / "docs" / "SQL.md"


def doc_queries(page) -> list[str]:
    """Every SQL statement of a documentation page's ```sql blocks."""
    statements = []
    for block in re.findall(r"```sql\n(.*?)```", page.read_text(), flags=re.S):
        body = "\n".join(line for line in block.splitlines() if not line.strip().startswith("--"))
        statements += [s.strip() for s in body.split(";") if s.strip()]
    return statements


def other_pages_queries() -> dict[str, list[str]]:
    """The SQL of every other page (README.md, docs/*.md), by page."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {page.name: q for page in pages if page != SQL_PAGE and (q := doc_queries(page))}


def run_as_owner(p, query: str) -> list[tuple]:
    with p.warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(query)  # no parameters: a documented query's % and ? are SQL, not placeholders
        return cur.fetchall()


def login_url(uri: str, name: str, password: str) -> str:
    u = urlsplit(uri)
    return f"postgresql://{name}:{password}@{u.hostname}:{u.port}{u.path}"


@pytest.fixture(scope="module")
def reader_login(runs, pg_server):
    """A login made by the documented command; dropped afterwards (roles are cluster-wide)."""
    p = runs["project"]
    name = f"analyst_{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, "-m", "airtrain.schema", "create-reader-login", name],
                         capture_output=True, text=True, cwd=ROOT,  # the URL: environment, never argv
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "include"),
                              "WAREHOUSE_URL": p.warehouse.uri})
    assert out.returncode == 0, out.stderr
    password = re.search(r"^password: (\S+)", out.stdout, flags=re.M).group(1)
    connect = re.search(r"^connect:\s+psql '([^']+)'", out.stdout, flags=re.M).group(1)
    assert name in connect and password not in connect
    yield name, login_url(connect, name, password)
    with p.warehouse.connect(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_every_documented_query_works_for_a_reader_login(runs, reader_login):
    """Every query of docs/SQL.md works for an analyst's login (only the quarantine one needs the
    owner), and so does every query of the other pages, except those reading what the reader may
    not (quarantine, the model versions): refused for it, they work for the owner."""
    p = runs["project"]
    _, url = reader_login
    queries = doc_queries(SQL_PAGE)
    assert len(queries) >= 10, queries  # the page was found and parsed
    elsewhere = other_pages_queries()
    assert len(elsewhere.get("RELEASING.md", [])) >= 10, elsewhere  # the release queries are on that page
    shadow_rows = None
    conn = psycopg2.connect(url)  # a real login over TCP with its password (scram)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0] == reader_login[0]
            for q in queries:
                if OWNER_ONLY.search(q):
                    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                        cur.execute(q)
                    run_as_owner(p, q)  # the page says it needs the owner: it works for the owner
                    continue
                cur.execute(q)
                rows = cur.fetchall()
                if "churn_shadow" in q:
                    shadow_rows = rows
            for page, page_queries in elsewhere.items():
                for q in page_queries:
                    if OWNER_ONLY_ELSEWHERE.search(q):
                        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                            cur.execute(q)
                        run_as_owner(p, q)
                        continue
                    try:
                        cur.execute(q)
                    except psycopg2.Error as e:
                        raise AssertionError(f"{page}: {q}\n{e}") from e
                    cur.fetchall()
    finally:
        conn.close()
    # champion vs shadow: one row per entity, for yesterday's scores
    assert shadow_rows, "the champion-vs-shadow query returned nothing"
    assert len(shadow_rows) == len({r[0] for r in shadow_rows}) == ROWS


def test_the_reader_login_reads_nothing_else_and_writes_nothing(runs, reader_login):
    _, url = reader_login
    refused = ["SELECT count(*) FROM registry.model_versions", "SELECT count(*) FROM features.churn",
               "SELECT count(*) FROM raw.churn_batches", "SELECT count(*) FROM quarantine.churn",
               "SELECT count(*) FROM monitoring.churn_reference", "DELETE FROM predictions.churn",
               "INSERT INTO registry.champions VALUES ('x', 1)", "CREATE TABLE predictions.mine (x int)",
               # nor outside the tables: temporary tables, large objects (PUBLIC has both by default)
               "CREATE TEMP TABLE mine (x int)", "SELECT lo_create(0)", "SELECT lo_creat(-1)",
               "SELECT lo_from_bytea(0, 'x')", "SELECT lo_import('/etc/hostname')"]
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for q in refused:
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(q)
    finally:
        conn.close()


def test_the_login_command_refuses_bad_names_and_existing_roles(runs, reader_login):
    p = runs["project"]
    cmd = [sys.executable, "-m", "airtrain.schema", "create-reader-login"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "include"), "WAREHOUSE_URL": p.warehouse.uri}
    for name, message in [(reader_login[0], "exists already"), ("bob; drop table x", "not a safe SQL identifier"),
                          (urlsplit(p.warehouse.uri).username, "superuser")]:
        out = subprocess.run([*cmd, name], capture_output=True, text=True, cwd=ROOT, env=env)
        assert out.returncode == 1 and message in out.stderr, (name, out.stdout, out.stderr)
    out = subprocess.run([*cmd, reader_login[0], "--reset-password", "--password-stdin"], input="a-new-long-password\n",
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0 and "password reset" in out.stdout and "a-new-long-password" not in out.stdout
    psycopg2.connect(login_url(reader_login[1], reader_login[0], "a-new-long-password")).close()


# ---------------------------------------------------------------------------------------------
# the latest view through champion changes (last: it changes the champion)
# ---------------------------------------------------------------------------------------------


def latest(p) -> list[tuple]:
    return fetch(p.warehouse, "SELECT customer_id, as_of_date, model_version FROM predictions.churn_latest ORDER BY 1")


def test_the_latest_view_never_empties_when_the_champion_changes(runs):
    p = runs["project"]
    wh, spec = p.warehouse, p.spec()
    before = latest(p)
    assert before and {r[2] for r in before} == {1}
    # a promotion: v2 is champion, but has not scored anything yet - readers keep v1's predictions
    champions.promote(wh, spec, 2, action="force_promote", actor="test", reason="new champion", run_id="t1")
    assert latest(p) == before
    # v2 scores yesterday: its rows replace v1's of that date in the same swap (a date holds one
    # scoring: no entity is served the older version's score of it); one row per entity
    scoring.score_date(wh, spec, END, run_id="t2")
    after = latest(p)
    assert len(after) == len(before) == len({r[0] for r in after})
    assert {r[2] for r in after if r[1] == END} == {2}
    assert {r[2] for r in after if r[1] < END} == {1}
    assert versions_by_date(p, "churn")[END] == [2]
    # a rollback to v1: v2's rows stay visible until v1 has re-scored, then v1's are the newest
    champions.promote(wh, spec, 1, action="rollback", actor="test", reason="back to v1", run_id="t3")
    assert latest(p) == after
    scoring.score_date(wh, spec, END, run_id="t4")
    assert latest(p) == before and versions_by_date(p, "churn")[END] == [1]
    assert invariants.check(wh, spec) == []
