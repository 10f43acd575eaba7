"""Reports and landing files go through ONE configurable location (Airflow's ObjectStoragePath):
``file://`` by default, any fsspec/provider scheme by configuration. The remote case runs against a
real S3 server on loopback (moto's standalone server, :mod:`airtrain_dev.s3server`; the object store
of the Celery stack) through the amazon provider's s3 filesystem and an Airflow connection with an
``endpoint_url`` - the configuration a production deployment uses - so nothing is read from or
written to the local folder the code would otherwise use."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import traceback
from pathlib import Path

import pytest
from airtrain.data.ingest import missing_landing_files, source_path, source_relpath
from airtrain.spec import parse_spec
from airtrain.warehouse.reports import ReportNotFound

D = dt.date(2026, 1, 5)
BUCKET = "airtrain-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port with the bucket BUCKET (one per test module)."""
    from airtrain_dev.s3server import local_s3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    with local_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """The S3 server as every component sees it: AIRFLOW_CONN_AWS_DEFAULT with its endpoint_url;
    yields a boto3 client to look at the bucket directly (what another host would see)."""
    import boto3
    from airtrain_dev.s3server import ACCESS_KEY, REGION, SECRET_KEY, aws_conn

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_conn(s3_endpoint))
    return boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION)


def _get(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _keys(client, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def files_spec():
    from airtrain.spec import load_spec, spec_dir

    spec = load_spec(spec_dir() / "churn.yaml")
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["source"] = {"kind": "files", "path": "landing/churn", "pattern": "{date}.csv"}
    return parse_spec(data)


def test_default_store_is_the_reports_folder_as_a_file_url(tmp_path, monkeypatch):
    from airtrain_airflow.storage import report_store, reports_url

    monkeypatch.delenv("AIRTRAIN_REPORTS_URL", raising=False)
    monkeypatch.setenv("AIRTRAIN_REPORTS_DIR", str(tmp_path / "reports"))
    assert reports_url() == (tmp_path / "reports").as_uri()
    store = report_store()
    assert type(store.root).__name__ == "ObjectStoragePath" and store.root.protocol == "file"
    where = store.save("churn", "validation", "2026-01-05", "<html>one</html>")
    store.save("churn", "validation", "2026-01-05", "<html>two</html>")  # a re-run replaces it
    assert where == str(tmp_path / "reports/churn/validation/2026-01-05.html")  # a local path, as before
    assert store.read("churn", "validation", "2026-01-05") == "<html>two</html>"
    assert sorted(p.name for p in (tmp_path / "reports/churn/validation").iterdir()) == ["2026-01-05.html"]
    for bad in ("../../etc/passwd", "..", "a/b"):
        with pytest.raises(ReportNotFound):
            store.read("churn", "validation", bad)


@pytest.fixture
def ui_client(monkeypatch):
    """The plugin's FastAPI app (what the api-server mounts at /airtrain) with a logged-in viewer."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from airtrain_airflow.ui import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    saved = api_app._AuthManagerState.instance
    api_app._AuthManagerState.instance = None
    api_app.create_auth_manager()
    app = create_app()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="vera", role="viewer")
    yield TestClient(app)
    api_app._AuthManagerState.instance = saved


def test_a_report_a_worker_wrote_to_s3_is_served_by_the_ui(tmp_path, monkeypatch, s3, ui_client):
    from airtrain_airflow.storage import report_store

    local = tmp_path / "reports"
    monkeypatch.setenv("AIRTRAIN_REPORTS_DIR", str(local))  # set, but the URL wins
    monkeypatch.setenv("AIRTRAIN_REPORTS_URL", f"s3://{BUCKET}/ui/reports")
    monkeypatch.setenv("AIRTRAIN_REPORTS_CONN_ID", "aws_default")
    store = report_store()  # the worker's
    where = store.save("churn", "drift", "2026-01-05_v1", "<html>drift</html>")
    store.save("churn", "validation", "2026-01-05", "<html>old</html>")
    store.save("churn", "validation", "2026-01-05", "<html>validation</html>")  # a re-run replaces it
    assert where == f"s3://{BUCKET}/ui/reports/churn/drift/2026-01-05_v1.html"  # a URL another host can use
    assert _get(s3, "ui/reports/churn/drift/2026-01-05_v1.html") == b"<html>drift</html>"
    assert _keys(s3, "ui/reports/churn/validation/") == ["ui/reports/churn/validation/2026-01-05.html"]
    assert not local.exists()
    # the api-server reads it back through its own store, at the plugin's report route
    page = ui_client.get("/reports/churn/drift/2026-01-05_v1")
    assert page.status_code == 200 and page.text == "<html>drift</html>"
    assert page.headers["content-security-policy"].startswith("sandbox")
    assert ui_client.get("/reports/churn/validation/2026-01-05").text == "<html>validation</html>"
    assert ui_client.get("/reports/churn/drift/2026-01-06_v1").status_code == 404
    # charts and other files of a pipeline go to the same place
    png = store.save_bytes("churn", "demo_stable.png", b"\x89PNG")
    assert png == f"s3://{BUCKET}/ui/reports/churn/files/demo_stable.png"
    assert _get(s3, "ui/reports/churn/files/demo_stable.png") == b"\x89PNG"


def test_a_wrong_bucket_fails_naming_the_url_and_the_connection_never_a_credential(monkeypatch, s3_endpoint,
                                                                                   ui_client, caplog):
    from airtrain_airflow.storage import ObjectStoreError, landing_root, report_store

    secret = "s3cr3t-Key-0f-the-store"  # noqa: S105 - the credential that must never be printed
    monkeypatch.setenv("AIRFLOW_CONN_STORE", json.dumps({
        "conn_type": "aws", "login": "AKIDEXAMPLE", "password": secret,
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))
    monkeypatch.setenv("AIRTRAIN_REPORTS_URL", "s3://no-such-bucket/airtrain/reports")
    monkeypatch.setenv("AIRTRAIN_REPORTS_CONN_ID", "store")
    monkeypatch.setenv("AIRTRAIN_LANDING_URL", "s3://store@typo-bucket/airtrain")  # conn id in the URL
    monkeypatch.delenv("AIRTRAIN_LANDING_CONN_ID", raising=False)
    caplog.set_level(logging.DEBUG)
    printed = []
    for open_store, url, conn in ((report_store, "s3://no-such-bucket/airtrain/reports", "store"),
                                  (landing_root, "s3://store@typo-bucket/airtrain", "store")):
        with pytest.raises(ObjectStoreError) as err:
            open_store()
        text = str(err.value)
        assert url in text and f"connection {conn!r}" in text and "does not exist" in text, text
        assert "\n" not in text  # one line
        printed.append("".join(traceback.format_exception(err.value)))
    # the UI answers 503 with the same line (not a 404 "no such report", not a 500 with a traceback)
    page = ui_client.get("/reports/churn/drift/2026-01-05_v1")
    assert page.status_code == 503 and "s3://no-such-bucket/airtrain/reports" in page.json()["detail"]
    printed += [page.text, caplog.text]
    assert not any(secret in p for p in printed)


@pytest.mark.parametrize("remote", [pytest.param(False, id="file-url"), pytest.param(True, id="s3-url")])
def test_landing_files_are_found_and_read_through_the_landing_url(tmp_path, monkeypatch, s3, remote):
    from airtrain_airflow.storage import landing_root
    from airtrain_airflow.triggers import LandingFilesTrigger

    spec = files_spec()
    prefix = f"landing-{remote}/"
    url = f"s3://{BUCKET}/{prefix}" if remote else (tmp_path / "project").as_uri()

    def deliver(rel: str, body: bytes) -> None:
        if remote:
            s3.put_object(Bucket=BUCKET, Key=prefix + rel, Body=body)
        else:
            (tmp_path / "project" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "project" / rel).write_bytes(body)

    monkeypatch.setenv("AIRTRAIN_LANDING_URL", url)
    monkeypatch.setenv("AIRTRAIN_LANDING_CONN_ID", "aws_default")
    deliver(f"landing/churn/{D}.csv", b"customer_id\n1\n")
    root = landing_root()
    assert source_relpath(spec, D) == f"landing/churn/{D}.csv"
    assert source_path(spec, D, root).read_bytes() == b"customer_id\n1\n"
    later = D + dt.timedelta(days=1)
    missing = missing_landing_files(spec, [D, later], root)
    assert [d for d, _ in missing] == [later]
    # the deferred wait looks through the same URL (the triggerer has no landing folder of its own)
    trig = LandingFilesTrigger([source_relpath(spec, later)], (dt.datetime.now(dt.UTC)).isoformat(), 1.0,
                               root_url=url, conn_id="aws_default")
    classpath, kwargs = trig.serialize()
    assert kwargs["root_url"] == trig.root_url and kwargs["conn_id"] == "aws_default"
    event = asyncio.run(anext(trig.run()))
    assert event.payload == {"status": "deadline", "missing": [f"landing/churn/{later}.csv"]}
    deliver(f"landing/churn/{later}.csv", b"customer_id\n2\n")
    assert missing_landing_files(spec, [D, later], root) == []
    assert asyncio.run(anext(trig.run())).payload["status"] == "arrived"


def test_a_plain_folder_root_still_works_for_the_core(tmp_path):
    spec = files_spec()
    assert source_path(spec, D, tmp_path) == tmp_path / "landing/churn" / f"{D}.csv"
    assert source_path(spec, D, str(tmp_path)) == Path(tmp_path) / "landing/churn" / f"{D}.csv"
