"""No secret in any output: the one redaction function (``airtrain.warehouse.redact_text``) and the error paths
that print keys or connection strings without a database (the ones with one are in
tests/integration/test_no_secret_in_output.py)."""

from __future__ import annotations

import re
import traceback

import psycopg2
import pytest
from airtrain.model.artifacts import ArtifactSignatureError, parse_keys
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.redaction import redact_exception, redact_text

SECRET = "Zq9-hunter2-SEEDED"


@pytest.mark.parametrize("text", [
    pytest.param(f"postgresql://bob:{SECRET}@db:5432/x", id="uri"),
    pytest.param(f"redis://:{SECRET}@redis:6379/0", id="uri-empty-user"),
    pytest.param(f"slackwebhook://:{SECRET}@hooks.slack.com/services/T0/B0", id="slack-empty-user"),
    pytest.param(f"postgresql://bob:{'p@ss ' + SECRET}@db:5432/x failed", id="unencoded-space-and-at"),
    pytest.param(f"postgresql://bob:{'a/b:' + SECRET + '#?'}@db/x", id="unencoded-slash-colon-hash"),
    pytest.param(f"host=db user=bob password={SECRET} dbname=x", id="libpq-dsn"),
    pytest.param(f"host=db password='p w {SECRET}' dbname=x", id="libpq-dsn-quoted"),
    pytest.param(f"https://api.example.com/v1?user=bob&password={SECRET}&x=1", id="query-parameter"),
    pytest.param(f"https://api.example.com/v1?access_token={SECRET}", id="query-token"),
    pytest.param(f'{{"login": "bob", "password": "{SECRET}"}}', id="json"),
    pytest.param(f"{{'api_key': '{SECRET}'}}", id="python-repr"),
    pytest.param(f"export AIRFLOW__CORE__FERNET_KEY={SECRET}", id="env-line"),
    pytest.param(f"AIRTRAIN_ARTIFACT_SECRET_KEYS=k1:{SECRET}", id="artifact-keys-env"),
    pytest.param(f"psql --password {SECRET} -h db", id="cli-flag"),
    pytest.param(f"Authorization: Bearer {SECRET}abc", id="bearer"),
    pytest.param(f"https://hooks.slack.com/services/T000/B000/{SECRET}", id="slack-webhook-path"),
    pytest.param(f"first postgresql://a:{SECRET}@h1/x then redis://:{SECRET}@h2/0", id="two-uris"),
])
def test_redact_text_masks_every_form_of_secret(text):
    out = redact_text(text)
    assert SECRET not in out and "***" in out


@pytest.mark.parametrize("text", [
    "password authentication failed for user \"bob\"",
    "http://localhost:8080/dags/churn_retrain/runs/manual__2026-01-05T00:00:00+00:00/tasks/score?try_number=2",
    "postgresql://airtrain@127.0.0.1:5433/warehouse",
    "x-airtrain://warehouse/predictions/churn",
    "key 'monitoring.trigger.drift_share': Input should be less than or equal to 1",
    "max_tokens=5, the password is in LOCAL_PG_PASSWORD",
])
def test_redact_text_leaves_ordinary_text_alone(text):
    assert redact_text(text) == text


def test_a_known_secret_is_masked_in_the_pieces_libpq_quotes():
    """libpq quotes parts of a malformed URI (an unencoded '@' or space in the password) in its error:
    the warehouse's password is known to the process and masked wherever a piece of it appears."""
    password = f"p@ss {SECRET}"
    wh = Warehouse(f"postgresql://bob:{password}@127.0.0.1:1/x")
    assert password not in repr(wh) and SECRET not in repr(wh)
    with pytest.raises(psycopg2.OperationalError) as info:  # libpq: 'could not translate host name "ss ...@127.0.0.1"'
        with wh.connect():
            pass
    printed = "".join(traceback.format_exception(info.value))
    assert SECRET not in printed and "***" in printed


def test_redact_exception_keeps_the_type_and_cleans_the_chain():
    class Boom(RuntimeError):
        pass

    try:
        try:
            raise ValueError(f"cannot reach postgresql://bob:{SECRET}@db/x")
        except ValueError as inner:
            raise Boom(f"wrapped: password={SECRET}") from inner
    except Boom as exc:
        assert redact_exception(exc) is exc and type(exc) is Boom
        printed = "".join(traceback.format_exception(exc))
    assert SECRET not in printed and printed.count("***") == 2


@pytest.mark.parametrize("keys", [
    pytest.param("Zq9hunter2SEEDEDkeymaterialwithoutanid0123456789", id="no-id-prefix"),
    pytest.param("k1:" + "a" * 40 + ",Zq9hunter2SEEDEDkeymaterialwithoutanid0123456789", id="second-key"),
    pytest.param("bad id!:Zq9hunter2SEEDEDkeymaterialwithoutanid0123456789", id="invalid-id"),
])
def test_the_artifact_key_error_echoes_no_key_material(keys):
    with pytest.raises(ArtifactSignatureError) as info:
        parse_keys(keys)
    message = str(info.value)
    secret = keys.split(",")[-1]
    assert not any(secret[i:i + 6] in message for i in range(len(secret) - 6)), message
    assert re.search(r"artifact key \d of \d", message)  # which key, by position


def test_local_postgres_repr_has_no_password(tmp_path):
    from airtrain_dev.localpg import LocalPostgres

    pg = LocalPostgres(tmp_path, 5433, SECRET)
    assert SECRET not in repr(pg) and SECRET not in str(pg)


def test_devstack_env_prints_no_secret_and_writes_them_to_a_private_file(tmp_path):
    """`python scripts/devstack.py env` used to print the Fernet key, the JWT secret and the database
    URIs: now it writes them to .local/airflow.env (mode 600) for `source` and prints them masked."""
    import os
    import stat
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "AIRTRAIN_ENV_FILE": str(tmp_path / ".env"), "AIRTRAIN_LOCAL_DIR": str(tmp_path / "local"),
           "AIRTRAIN_DATA_ROOT": str(tmp_path)}
    env.pop("EXECUTOR", None)
    out = subprocess.run([sys.executable, str(root / "scripts/devstack.py"), "env"], env=env, cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dotenv = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    secrets = {k: v for k, v in dotenv.items() if v and k in (
        "LOCAL_PG_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_SECRET_KEY",
        "AIRFLOW_FERNET_KEY", "AIRTRAIN_ARTIFACT_SECRET_KEYS")}
    assert len(secrets) == 6, secrets.keys()  # generated on the first run
    printed = out.stdout + out.stderr
    for key, value in secrets.items():
        assert value not in printed and value.split(":")[-1] not in printed, key
    assert "export AIRFLOW__CORE__FERNET_KEY=" in printed and "source " in printed
    written = tmp_path / "local/airflow.env"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert secrets["AIRFLOW_FERNET_KEY"] in written.read_text() and secrets["LOCAL_PG_PASSWORD"] in written.read_text()
