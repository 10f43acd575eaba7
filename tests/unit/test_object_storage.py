"""Reports and landing files go through ONE configurable location (Airflow's ObjectStoragePath):
``file://`` by default, any fsspec/provider scheme by configuration. The remote case runs against a
real FTP server on loopback (pyftpdlib; the object store of the Celery stack), so nothing is read
from or written to the local folder the code would otherwise use."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest
from airtrain.ingest import missing_landing_files, source_path, source_relpath
from airtrain.reports import ReportNotFound
from airtrain.spec import parse_spec

D = dt.date(2026, 1, 5)
pytestmark = pytest.mark.filterwarnings("ignore:write permissions assigned to anonymous user:RuntimeWarning")


@pytest.fixture
def ftp_root(tmp_path):
    """A real FTP server on a free loopback port serving ``tmp_path/ftp`` (anonymous, writable)."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    root = tmp_path / "ftp"
    root.mkdir()
    auth = DummyAuthorizer()
    auth.add_anonymous(str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": auth})
    server = FTPServer(("127.0.0.1", 0), handler)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    yield root, f"ftp://127.0.0.1:{port}"
    server.close_all()
    thread.join(5)


def files_spec():
    from airtrain.spec import load_spec, spec_dir

    spec = load_spec(spec_dir() / "churn.yaml")
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["source"] = {"kind": "files", "path": "landing/churn", "pattern": "{date}.csv"}
    return parse_spec(data)


def test_default_store_is_the_reports_folder_as_a_file_url(tmp_path, monkeypatch):
    from airtrain_airflow.runtime import report_store, reports_url

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


def test_reports_url_puts_every_write_and_read_on_the_remote_store(tmp_path, monkeypatch, ftp_root):
    from airtrain_airflow.runtime import report_store
    from airtrain_airflow.ui import read_report

    served, url = ftp_root
    local = tmp_path / "reports"
    monkeypatch.setenv("AIRTRAIN_REPORTS_DIR", str(local))  # set, but the URL wins
    monkeypatch.setenv("AIRTRAIN_REPORTS_URL", f"{url}/airtrain/reports")
    store = report_store()
    where = store.save("churn", "drift", "2026-01-05_v1", "<html>drift</html>")
    assert where == f"{url}/airtrain/reports/churn/drift/2026-01-05_v1.html"  # a URL another host can use
    assert (served / "airtrain/reports/churn/drift/2026-01-05_v1.html").read_text() == "<html>drift</html>"
    assert not local.exists()
    # the UI page reads it back through the same store (a fresh one, as in the api-server)
    assert read_report("churn", "drift", "2026-01-05_v1", specs={"churn": object()}) == "<html>drift</html>"
    with pytest.raises(ReportNotFound):
        report_store().read("churn", "drift", "2026-01-06_v1")
    assert [p.name for p in (served / "airtrain/reports/churn/drift").iterdir()] == ["2026-01-05_v1.html"]
    # charts and other files of a pipeline go to the same place
    png = store.save_bytes("churn", "demo_stable.png", b"\x89PNG")
    assert png == f"{url}/airtrain/reports/churn/files/demo_stable.png"
    assert (served / "airtrain/reports/churn/files/demo_stable.png").read_bytes() == b"\x89PNG"


@pytest.mark.parametrize("remote", [pytest.param(False, id="file-url"), pytest.param(True, id="ftp-url")])
def test_landing_files_are_found_and_read_through_the_landing_url(tmp_path, monkeypatch, ftp_root, remote):
    from airtrain_airflow.runtime import landing_root
    from airtrain_airflow.triggers import LandingFilesTrigger

    spec = files_spec()
    served, url = ftp_root
    base = served if remote else tmp_path / "project"
    monkeypatch.setenv("AIRTRAIN_LANDING_URL", f"{url}/" if remote else base.as_uri())
    (base / "landing/churn").mkdir(parents=True)
    (base / "landing/churn" / f"{D}.csv").write_text("customer_id\n1\n")
    root = landing_root()
    assert source_relpath(spec, D) == f"landing/churn/{D}.csv"
    assert source_path(spec, D, root).read_bytes() == b"customer_id\n1\n"
    later = D + dt.timedelta(days=1)
    missing = missing_landing_files(spec, [D, later], root)
    assert [d for d, _ in missing] == [later]
    # the deferred wait looks through the same URL (the triggerer has no landing folder of its own)
    trig = LandingFilesTrigger([source_relpath(spec, later)], (dt.datetime.now(dt.UTC)).isoformat(), 1.0,
                               root_url=f"{url}/" if remote else base.as_uri())
    classpath, kwargs = trig.serialize()
    assert kwargs["root_url"] == trig.root_url
    event = asyncio.run(anext(trig.run()))
    assert event.payload == {"status": "deadline", "missing": [f"landing/churn/{later}.csv"]}
    (base / "landing/churn" / f"{later}.csv").write_text("customer_id\n2\n")
    assert missing_landing_files(spec, [D, later], root) == []
    assert asyncio.run(anext(trig.run())).payload["status"] == "arrived"


def test_a_plain_folder_root_still_works_for_the_core(tmp_path):
    spec = files_spec()
    assert source_path(spec, D, tmp_path) == tmp_path / "landing/churn" / f"{D}.csv"
    assert source_path(spec, D, str(tmp_path)) == Path(tmp_path) / "landing/churn" / f"{D}.csv"
