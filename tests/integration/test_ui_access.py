"""The reports page checks the auth manager's per-DAG permission, not only the login, and serves
report HTML under a sandboxing Content-Security-Policy.

Users come from Airflow's own SimpleAuthManager (a user without a role is refused by it) and from a
SimpleAuthManager subclass with per-DAG rules - the way FAB or Keycloak answer - to show that the
page asks about the pipeline's own DAG ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airtrain.spec import load_specs
from airtrain.steps.schema import apply_schema
from airtrain.warehouse.reports import ReportStore

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

DRIFT_ID = "churn-20260105-v1"
DAY = "2026-01-05"


class PerDagAuthManager(SimpleAuthManager):
    """SimpleAuthManager, plus per-DAG rules: ``bob`` may not read any ``*_monitor`` DAG."""

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.get_name() == "bob" and details is not None and str(details.id).endswith("_monitor"):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


@pytest.fixture
def client_for(warehouse, tmp_path, monkeypatch):
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.core_api.security import get_user
    from airtrain_airflow.ui import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", warehouse.uri)
    monkeypatch.setenv("AIRTRAIN_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.PerDagAuthManager")
    for spec in load_specs():
        apply_schema(warehouse, spec)
    store = ReportStore(tmp_path / "reports")
    store.save("churn", "drift", DRIFT_ID, "<html><body><script>document.title='x'</script>drift</body></html>")
    store.save("churn", "validation", DAY, "<html><body>validation</body></html>")
    saved = api_app._AuthManagerState.instance
    api_app._AuthManagerState.instance = None
    api_app.create_auth_manager()

    def make(user):
        app = create_app()
        app.dependency_overrides[get_user] = lambda: user
        return TestClient(app)

    yield make
    api_app._AuthManagerState.instance = saved


def test_a_permitted_user_gets_reports_with_a_sandboxing_csp(client_for):
    c = client_for(SimpleAuthManagerUser(username="vera", role="viewer"))
    page = c.get("/")
    assert page.status_code == 200 and "churn_monitor" in page.text and "not permitted" not in page.text
    drift = c.get(f"/reports/churn/drift/{DRIFT_ID}")
    assert drift.status_code == 200 and "drift" in drift.text
    csp = drift.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    val = c.get(f"/reports/churn/validation/{DAY}")
    assert val.status_code == 200
    assert val.headers["content-security-policy"].startswith("sandbox;") and "script-src" not in \
        val.headers["content-security-policy"]  # static HTML: no scripts at all
    assert c.get(f"/reports/churn/{DRIFT_ID}").headers["content-security-policy"] == csp  # older address


def test_a_user_the_auth_manager_refuses_sees_nothing(client_for):
    """A logged-in user without a role: SimpleAuthManager refuses every DAG (the old page served it all)."""
    c = client_for(SimpleAuthManagerUser(username="nobody", role=None))
    page = c.get("/")
    assert page.status_code == 200 and "churn" not in page.text
    assert c.get(f"/reports/churn/drift/{DRIFT_ID}").status_code == 403
    assert c.get(f"/reports/churn/validation/{DAY}").status_code == 403
    assert c.get(f"/reports/churn/{DRIFT_ID}").status_code == 403


def test_the_check_is_per_dag(client_for):
    """bob may read the retrain DAG but not the monitor DAG: validations yes, drift no."""
    c = client_for(SimpleAuthManagerUser(username="bob", role="viewer"))
    page = c.get("/")
    assert page.status_code == 200 and "not permitted: you may not read the DAG churn_monitor" in page.text
    assert "not permitted: you may not read the DAG churn_retrain" not in page.text
    assert c.get(f"/reports/churn/drift/{DRIFT_ID}").status_code == 403
    assert c.get(f"/reports/churn/validation/{DAY}").status_code == 200


def test_a_user_restricted_to_one_pipeline_in_the_local_stack_cannot_see_another_ones_reports_or_cards(
        warehouse, tmp_path, monkeypatch, airflow_db):
    """Issue 20, item 22: the local stack's users (``AIRFLOW_USERS`` in .env, scripts/devstack.py) on
    airtrain's auth manager: alice, a viewer restricted to ``telco_*``, logs in the documented way
    (``POST /auth/token`` with her password) and reads telco's reports and cards but none of churn's;
    vera, a plain viewer, reads both."""
    import importlib
    import sys

    import yaml
    from airflow.api_fastapi import app as api_app
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(ROOT / "scripts"))
    devstack = importlib.import_module("devstack")
    cfg = {**{k: make() for k, make in devstack.GENERATED.items()}, "AIRFLOW_USERS": "vera:viewer,alice:viewer:telco_*"}
    stack = devstack.airflow_env(cfg)
    for key in ("AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
                "AIRFLOW__AIRTRAIN__DAG_ACCESS"):
        monkeypatch.setenv(key, stack[key])
    devstack.write_passwords(cfg, tmp_path)
    passwords = json.loads((tmp_path / "passwords.json").read_text())
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "passwords.json"))
    # two pipelines: churn and a copy named telco
    specs = tmp_path / "pipelines"
    specs.mkdir()
    churn = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    telco = {**churn, "name": "telco", "source": {**churn["source"], "path": "data/landing/telco"},
             "labels": {**churn["labels"], "table": "telco_labels"}}
    for data in (churn, telco):
        (specs / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(specs))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", warehouse.uri)
    monkeypatch.setenv("AIRTRAIN_REPORTS_DIR", str(tmp_path / "reports"))
    store = ReportStore(tmp_path / "reports")
    for spec in load_specs(specs):
        name = spec.name
        apply_schema(warehouse, spec)
        store.save(name, "drift", f"{name}-20260105-v1", f"<html><body>{name} drift</body></html>")
        store.save(name, "validation", DAY, f"<html><body>{name} validation</body></html>")
    saved = api_app._AuthManagerState.instance
    api_app._AuthManagerState.instance = None
    try:
        manager = api_app.create_auth_manager()  # as the API server makes it: airtrain's, from the stack's settings
        manager.init()
        auth = TestClient(manager.get_fastapi_app())  # what the API server mounts at /auth

        def login(user: str) -> dict[str, str]:  # POST /auth/token, as docs/RELEASING.md says
            r = auth.post("/token", json={"username": user, "password": passwords[user]})
            assert r.status_code == 201, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        assert auth.post("/token", json={"username": "alice", "password": "guess"}).status_code == 401
        from airtrain_airflow.ui import create_app

        ui = TestClient(create_app())  # what /airtrain/ serves (the plugin's app), behind Airflow's login
        alice, vera = login("alice"), login("vera")
        assert ui.get("/").status_code == 401  # no token, nothing
        page = ui.get("/", headers=alice)
        assert page.status_code == 200 and "telco_monitor" in page.text and "churn" not in page.text
        for path, mine in (("/reports/telco/drift/telco-20260105-v1", True), (f"/reports/telco/validation/{DAY}", True),
                           ("/cards/telco", True), ("/reports/churn/drift/churn-20260105-v1", False),
                           (f"/reports/churn/validation/{DAY}", False), ("/cards/churn", False),
                           ("/cards/churn/1.json", False), ("/cards/churn/1", False)):
            assert ui.get(path, headers=alice).status_code == (200 if mine else 403), path
            assert ui.get(path, headers=vera).status_code in (200, 404), path  # vera: every pipeline (no card v1)
        assert "churn_monitor" in ui.get("/", headers=vera).text
        # the same check is Airflow's own for its pages and REST API: alice may not open churn's DAGs
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        alice_user = SimpleAuthManagerUser(username="alice", role="viewer")
        assert manager.is_authorized_dag(method="GET", user=alice_user, details=DagDetails(id="telco_retrain"))
        assert not manager.is_authorized_dag(method="GET", user=alice_user, details=DagDetails(id="churn_retrain"))
        assert not manager.is_authorized_dag(method="PUT", user=alice_user, details=DagDetails(id="telco_retrain"))
    finally:
        api_app._AuthManagerState.instance = saved
