"""The local stack's configuration (scripts/devstack.py) for onboarding and operations (issue 20,
items 16 and 22): DEMO_DAYS=0 loads no demo pipeline; extra users, with per-DAG restrictions, from
.env; `make check` and `make pg-restart` exist."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def devstack():
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("devstack")


@pytest.fixture
def cfg(devstack):
    return {k: make() for k, make in devstack.GENERATED.items()}


def test_demo_days_zero_loads_no_demo_pipeline(devstack, cfg, monkeypatch):
    from airtrain.spec import load_specs

    monkeypatch.delenv("AIRTRAIN_SPEC_DIR", raising=False)
    monkeypatch.delenv("AIRTRAIN_EXCLUDE_PIPELINES", raising=False)
    assert "churn" in [s.name for s in load_specs()]
    env = devstack.airflow_env({**cfg, "DEMO_DAYS": "0"})
    assert env["AIRTRAIN_EXCLUDE_PIPELINES"] == "churn"
    # the DAG files (dags/retrain.py, dags/monitor.py) and `airtrain migrate` build from load_specs()
    monkeypatch.setenv("AIRTRAIN_EXCLUDE_PIPELINES", env["AIRTRAIN_EXCLUDE_PIPELINES"])
    assert "churn" not in [s.name for s in load_specs()]
    assert "AIRTRAIN_EXCLUDE_PIPELINES" not in devstack.airflow_env({**cfg, "DEMO_DAYS": "100"})
    assert "AIRTRAIN_EXCLUDE_PIPELINES" not in devstack.airflow_env(cfg)  # the default: 100 days of demo
    # a stack with its own spec folder (the Celery benchmark: DEMO_DAYS=0 and its own churn spec) loads it all
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(ROOT / "include/pipelines"))
    assert "AIRTRAIN_EXCLUDE_PIPELINES" not in devstack.airflow_env({**cfg, "DEMO_DAYS": "0"})


def test_users_from_env_get_roles_and_dag_restrictions(devstack, cfg, tmp_path):
    users = {**cfg, "AIRFLOW_USERS": "vera:viewer, alice:viewer:telco_*|bikes_*,olga:op"}
    env = devstack.airflow_env(users)
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == "airtrain_airflow.auth.PipelineAuthManager"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,vera:viewer,alice:viewer,olga:op"
    assert json.loads(env["AIRFLOW__AIRTRAIN__DAG_ACCESS"]) == {"alice": ["telco_*", "bikes_*"]}
    assert "AIRFLOW__AIRTRAIN__DAG_ACCESS" not in devstack.airflow_env(cfg)
    # passwords: the admin's from .env, one generated per new user and kept on the next start
    assert devstack.write_passwords(users, tmp_path) == ["vera", "alice", "olga"]
    first = json.loads((tmp_path / "passwords.json").read_text())
    assert first["admin"] == cfg["AIRFLOW_ADMIN_PASSWORD"] and len(first["alice"]) >= 16
    assert devstack.write_passwords(users, tmp_path) == []
    assert json.loads((tmp_path / "passwords.json").read_text()) == first
    # `up` names each user and where the password is, never the password (review 13: new ones were printed)
    printed = "\n".join(devstack.user_lines(users, tmp_path / "passwords.json", ["vera", "alice", "olga"]))
    assert not any(first[n] in printed for n in ("vera", "alice", "olga", "admin")), printed
    assert printed.count(str(tmp_path / "passwords.json")) == 3 and "alice (viewer; DAGs telco_*|bikes_* only)" in printed
    assert (tmp_path / "passwords.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("users, message", [
    pytest.param("alice:boss", "the role must be one of viewer, user, op, admin", id="unknown-role"),
    pytest.param("admin:viewer", "not the admin's", id="the-admin-again"),
    pytest.param("al ice:viewer", "the user name must be", id="space-in-name"),
    pytest.param("alice:viewer:telco;drop", "DAG id patterns are", id="bad-pattern"),
])
def test_bad_user_entries_are_refused_with_the_fix(devstack, cfg, users, message):
    with pytest.raises(RuntimeError, match=message):
        devstack.airflow_env({**cfg, "AIRFLOW_USERS": users})


def test_check_and_pg_restart_are_make_targets_and_commands(devstack):
    makefile = (ROOT / "Makefile").read_text()
    assert "\ncheck: venv ##" in makefile and "scripts/devstack.py check" in makefile
    assert "\npg-restart: venv ##" in makefile and "scripts/devstack.py pg-restart" in makefile
    from airtrain.migrate import cli

    with pytest.raises(SystemExit) as exit_:  # `airtrain check --help`
        cli(["check", "--help"])
    assert exit_.value.code == 0


def test_the_docs_say_how_to_get_the_token_their_rest_examples_use():
    """Every ``$TOKEN`` of docs/RELEASING.md's REST examples comes after the command that gets one
    (``POST /auth/token`` of Airflow 3's SimpleAuthManager, whose route and body the installed Airflow
    has), and any other page that uses ``$TOKEN`` links there; the commands and settings of the local
    stack are documented on the pages the README links."""
    from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody
    from airflow.api_fastapi.auth.managers.simple.routes.login import login_router

    releasing = (ROOT / "docs/RELEASING.md").read_text()
    get = releasing.index('TOKEN=$(curl -s -X POST "$AIRFLOW/auth/token"')
    assert releasing.index("$TOKEN") > get
    assert '\\"username\\": \\"admin\\", \\"password\\": \\"$AIRFLOW_ADMIN_PASSWORD\\"' in releasing[get:get + 300]
    assert "### Answering through the REST API" in releasing[:get]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        if "$TOKEN" in text and page.name != "RELEASING.md":
            assert "RELEASING.md#answering-through-the-rest-api)" in text, f"{page.name} uses $TOKEN: say how to get it"
    assert ("POST", "/token") in {(m, r.path) for r in login_router.routes for m in r.methods}
    assert set(LoginBody.model_fields) == {"username", "password"}
    readme = (ROOT / "README.md").read_text()
    for page, text in [("docs/OPERATING.md", "make check"), ("docs/OPERATING.md", "make pg-restart"),
                       ("docs/OPERATING.md", "AIRFLOW_USERS=vera:viewer,alice:viewer:telco_*"),
                       ("README.md", "DEMO_DAYS=0"),
                       ("docs/MONITORING.md", "**Consecutive windows** are windows that follow each other without "
                                              "overlapping")]:
        assert text in (ROOT / page).read_text(), (page, text)
        assert page == "README.md" or f"]({page})" in readme, f"the README does not link {page}"


def test_a_held_component_is_not_restarted_until_released(devstack, tmp_path, monkeypatch):
    """`.local/run/<name>.hold` keeps a component down (an operator draining a worker; the Celery soak keeps
    a killed worker down until its shard ran on the other one); removing the file lets the supervisor
    restart it as usual."""
    monkeypatch.setattr(devstack, "RUN", tmp_path / "run")
    monkeypatch.setattr(devstack, "LOGS", tmp_path / "logs")
    (tmp_path / "run").mkdir()
    sup = devstack.Supervisor({}, pg_port=1, health_url="http://127.0.0.1:1/",
                              extra={"broker": ([sys.executable, "-c", "pass"], {}, tmp_path)})
    sup.start("broker")
    first = sup.components["broker"].proc
    first.wait(timeout=30)
    (tmp_path / "run" / "broker.hold").write_text("soak")
    sup.check()  # it exited: a restart is planned...
    c = sup.components["broker"]
    assert c.proc is None and c.restart_at is not None
    c.restart_at = 0.0  # ...and due, but the hold keeps it down
    sup.check()
    assert c.proc is None
    (tmp_path / "run" / "broker.hold").unlink()
    sup.check()
    assert c.proc is not None and c.proc.pid != first.pid
    c.proc.wait(timeout=30)
    sup.shutdown()
