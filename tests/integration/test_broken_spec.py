"""One broken spec breaks only itself: with two specs, ``alpha`` valid and ``beta`` refused (a
``monitoring.trigger.drift_share`` over 1), the DAG processor keeps parsing and
scheduling alpha's DAGs while beta's file is an import error with beta's own message (file, key,
fix) and beta's DAGs stop; the reports page lists alpha and names beta; ``airtrain migrate``
migrates alpha and exits non-zero naming beta - one readable line, no traceback, no password.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.integration.dagtest import ROOT, fetch

pytestmark = pytest.mark.integration

BROKEN_KEY = "monitoring.trigger.drift_share"


def write_specs(folder: Path, *, beta_broken: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("alpha", "beta"):
        data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
        data["name"] = name
        if name == "beta" and beta_broken:
            data["monitoring"]["trigger"]["drift_share"] = 1.5  # refused: a share is at most 1
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def test_the_dag_processor_runs_the_good_spec_and_shows_the_broken_ones_error(tmp_path, monkeypatch, airflow_db):
    """What the DAG processor does with the bundle's files (Airflow's own BundleDagBag and
    sync_bag_to_db, the calls its parsing loop makes): per file, so per spec."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from airtrain_airflow.bundle import SpecDagBundle
    from sqlalchemy import select

    specs = write_specs(tmp_path / "pipelines", beta_broken=False)
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(specs))
    DagBundlesManager().sync_bundles_to_db()
    bundle = SpecDagBundle(name="airtrain", path=str(tmp_path / "dags"))

    def parse() -> BundleDagBag:
        bundle.refresh()  # what the DAG processor does every refresh_interval
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, None)
        return bag

    def states() -> dict[str, tuple[bool, bool]]:
        with create_session() as s:
            rows = s.execute(select(DagModel.dag_id, DagModel.is_stale, DagModel.has_import_errors)
                             .where(DagModel.dag_id.in_(["alpha_retrain", "alpha_monitor", "beta_retrain",
                                                         "beta_monitor"]))).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    def import_errors() -> dict[str, str]:
        with create_session() as s:
            rows = s.execute(select(ParseImportError.filename, ParseImportError.stacktrace)
                             .where(ParseImportError.bundle_name == "airtrain")).all()
        return dict(rows)

    bag = parse()
    assert sorted(p.name for p in bundle.path.glob("*.py")) == ["alpha.py", "beta.py"]  # one DAG file per spec
    assert sorted(bag.dag_ids) == ["alpha_monitor", "alpha_retrain", "beta_monitor", "beta_retrain"]
    assert bag.import_errors == {} and set(states().values()) == {(False, False)}

    write_specs(specs, beta_broken=True)  # a typo in one spec, mounted, no rebuild
    bag = parse()
    assert sorted(bag.dag_ids) == ["alpha_monitor", "alpha_retrain"]  # alpha keeps parsing
    assert list(bag.import_errors) == ["beta.py"]
    error = import_errors()["beta.py"]  # what the UI shows under "DAG import errors"
    assert "beta.yaml" in error and BROKEN_KEY in error and "SpecError" in error
    assert states() == {"alpha_retrain": (False, False), "alpha_monitor": (False, False),  # scheduled as before
                        "beta_retrain": (True, True), "beta_monitor": (True, True)}  # stopped, import error

    (specs / "beta.yaml").unlink()  # a removed spec takes its generated DAG file with it
    bundle.refresh()
    assert sorted(p.name for p in bundle.path.glob("*.py")) == ["alpha.py"]


def test_migrate_migrates_the_good_spec_and_names_the_broken_one_in_one_line(tmp_path, warehouse):
    specs = write_specs(tmp_path / "pipelines", beta_broken=True)
    password = urlsplit(warehouse.uri).password
    out = subprocess.run([sys.executable, "-m", "airtrain.migrate", "--spec-dir", str(specs)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WAREHOUSE_URL": warehouse.uri, "PYTHONPATH": str(ROOT / "include")})
    assert out.returncode == 3, out.stdout + out.stderr  # EXIT_SPECS_SKIPPED: a deploy goes on, warning
    assert out.stdout.startswith("alpha: schema up to date") and "beta" not in out.stdout
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.stderr.splitlines() == errors and len(errors) == 2, out.stderr  # beta's refusal, and the summary
    assert "beta.yaml" in errors[0] and BROKEN_KEY in errors[0] and "fix the spec" in errors[0]
    assert "Traceback" not in out.stderr and password not in out.stdout + out.stderr
    assert fetch(warehouse, "SELECT pipeline FROM registry.schema_migrations") == [("alpha",)]


def test_the_reports_page_lists_the_good_pipelines_and_names_the_broken_one(tmp_path, warehouse, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from airtrain_airflow.ui import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(write_specs(tmp_path / "pipelines", beta_broken=True)))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", warehouse.uri)
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    from airflow.api_fastapi import app as api_app

    saved, api_app._AuthManagerState.instance = api_app._AuthManagerState.instance, None
    try:
        api_app.create_auth_manager()
        app = create_app()
        app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="vera", role="viewer")
        page = TestClient(app).get("/")
    finally:
        api_app._AuthManagerState.instance = saved
    assert page.status_code == 200
    assert "<h2 id='alpha'>alpha</h2>" in page.text and "<h2 id='beta'>" not in page.text
    broken = page.text.split("id='broken-specs'", 1)[1].split("<h2 id='alpha'>", 1)[0]
    assert "beta.yaml" in broken and BROKEN_KEY in broken and "Traceback" not in broken
