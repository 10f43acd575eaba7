"""The reports page checks the auth manager's per-DAG permission, not only the login, and serves
report HTML under a sandboxing Content-Security-Policy.

Users come from Airflow's own SimpleAuthManager (a user without a role is refused by it) and from a
SimpleAuthManager subclass with per-DAG rules - the way FAB or Keycloak answer - to show that the
page asks about the pipeline's own DAG ids.
"""

from __future__ import annotations

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airtrain.reports import ReportStore
from airtrain.schema import apply_schema
from airtrain.spec import load_specs

pytestmark = pytest.mark.integration

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
