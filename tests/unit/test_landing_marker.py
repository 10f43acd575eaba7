"""The landing completeness convention (``source.ready_marker``): a file an upstream system is still
writing is never taken for the day. Tiny files in a temporary folder and in a real S3 server on
loopback (moto, the object store of the Celery stack); the ingest itself is tested against
PostgreSQL in tests/integration/test_landing_marker.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging

import pytest
from airtrain.data.ingest import (
    incomplete_landing_files,
    landing_incomplete,
    marker_relpath,
    parse_marker,
)
from airtrain.spec import SpecError, parse_spec

D = dt.date(2026, 3, 4)
FULL = b"customer_id,tenure_months\n1,5\n2,7\n3,9\n"
HALF = FULL[: FULL.index(b"2,7")]  # cut at a line end: a well-formed CSV with fewer rows
BUCKET = "airtrain-marker-test"


def spec(marker: str | None = "{date}.csv.ready", **source):
    from airtrain.spec import load_spec, spec_dir

    data = load_spec(spec_dir() / "churn.yaml").model_dump(by_alias=True, exclude_none=True)
    data["source"] = {"kind": "files", "path": "landing/churn", "pattern": "{date}.csv", **source}
    if marker is not None:
        data["source"]["ready_marker"] = marker
    return parse_spec(data)


def land(root, name: str, body: bytes) -> None:
    path = root / "landing/churn" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(b"", {}, id="empty"),
    pytest.param(b"\n", {}, id="newline"),
    pytest.param(json.dumps({"size": len(FULL), "sha256": hashlib.sha256(FULL).hexdigest().upper(),
                             "rows": 3}).encode(),
                 {"size": len(FULL), "sha256": hashlib.sha256(FULL).hexdigest()}, id="json"),
    pytest.param(b'{"size": 12}', {"size": 12}, id="json-size-only"),
    pytest.param(f"{hashlib.sha256(FULL).hexdigest()}  2026-03-04.csv\n".encode(),
                 {"sha256": hashlib.sha256(FULL).hexdigest()}, id="sha256sum-line"),
    pytest.param(f"{hashlib.sha256(FULL).hexdigest()} *2026-03-04.csv".encode(),
                 {"sha256": hashlib.sha256(FULL).hexdigest()}, id="sha256sum-binary-mode"),
    pytest.param(f"{'a' * 64}  landing/a.csv\n{'B' * 64} *b.csv\n".encode(),
                 {"files": {"a.csv": "a" * 64, "b.csv": "b" * 64}}, id="sha256sum-lines"),
])
def test_a_marker_says_complete_or_carries_size_and_sha256(text, expected):
    assert parse_marker(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param(b"{not json", id="broken-json"),
    pytest.param(b'{"size": -1}', id="negative-size"),
    pytest.param(b'{"size": true}', id="bool-size"),
    pytest.param(b'{"sha256": "abc"}', id="short-sha"),
    pytest.param(b"done", id="free-text"),
    pytest.param(f"{'a' * 64}  a.csv\n{'b' * 64}\n".encode(), id="sha256sum-line-without-name"),
])
def test_an_unreadable_marker_is_refused(text):
    with pytest.raises(ValueError):
        parse_marker(text)


@pytest.mark.parametrize("marker", ["ready", "x/{date}.ready", "../{date}.ready", "{date}.csv"])
def test_a_marker_must_be_a_file_name_with_the_date_other_than_the_data_file(marker):
    with pytest.raises(SpecError, match="ready_marker"):
        spec(marker)


def test_a_marker_the_glob_pattern_matches_is_refused():
    """It would be read as a part of the day."""
    with pytest.raises(SpecError, match="does not match"):
        spec("{date}.csv.ready", pattern="{date}*")
    assert spec("_SUCCESS_{date}", pattern="{date}-part-*.csv").source.ready_marker == "_SUCCESS_{date}"


def test_a_date_in_several_files_is_complete_when_every_part_its_marker_lists_matches(tmp_path):
    s = spec("{date}.sha256", pattern="{date}-part-*.csv")
    parts = {f"{D}-part-1.csv": FULL, f"{D}-part-2.csv": FULL.replace(b"9", b"8")}
    land(tmp_path, f"{D}-part-1.csv", FULL)
    assert landing_incomplete(s, D, tmp_path) == f"no ready marker {D}.sha256 yet"
    land(tmp_path, f"{D}.sha256", "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in parts.items()).encode())
    assert "not there yet" in landing_incomplete(s, D, tmp_path)  # part 2 is listed, not there
    land(tmp_path, f"{D}-part-2.csv", HALF)
    assert landing_incomplete(s, D, tmp_path) == f"{D}-part-2.csv: its sha256 differs from its ready marker's"
    land(tmp_path, f"{D}-part-2.csv", parts[f"{D}-part-2.csv"])
    assert landing_incomplete(s, D, tmp_path) is None
    land(tmp_path, f"{D}-part-3.csv", FULL)  # a part the marker does not list: being delivered after it
    assert "not listed in its ready marker" in landing_incomplete(s, D, tmp_path)
    land(tmp_path, f"{D}.sha256", json.dumps({"size": len(FULL)}).encode())
    assert "describe one file, but 3 files match" in landing_incomplete(s, D, tmp_path)


def test_without_a_marker_a_file_is_complete_once_it_exists(tmp_path):
    s = spec(None)
    assert marker_relpath(s, D) is None
    assert landing_incomplete(s, D, tmp_path) == "missing"
    land(tmp_path, f"{D}.csv", HALF)  # write-then-rename is the writer's job: whatever exists is taken
    assert landing_incomplete(s, D, tmp_path) is None


def test_a_half_file_without_its_marker_is_incomplete_until_the_marker_comes(tmp_path):
    s = spec()
    assert marker_relpath(s, D) == f"landing/churn/{D}.csv.ready"
    land(tmp_path, f"{D}.csv", HALF)
    assert landing_incomplete(s, D, tmp_path) == f"no ready marker {D}.csv.ready yet"
    land(tmp_path, f"{D}.csv", FULL)
    land(tmp_path, f"{D}.csv.ready", b"")
    assert landing_incomplete(s, D, tmp_path) is None
    later = D + dt.timedelta(days=1)
    assert [(d, why) for d, _, why in incomplete_landing_files(s, [D, later], tmp_path)] == [(later, "missing")]


@pytest.mark.parametrize("marker", [
    pytest.param({"size": len(FULL)}, id="size"),
    pytest.param({"sha256": hashlib.sha256(FULL).hexdigest()}, id="sha256"),
    pytest.param({"size": len(FULL), "sha256": hashlib.sha256(FULL).hexdigest()}, id="both"),
])
def test_an_early_marker_with_size_or_sha256_does_not_let_the_half_in(tmp_path, marker):
    s = spec()
    land(tmp_path, f"{D}.csv.ready", json.dumps(marker).encode())  # the marker first, then the data
    land(tmp_path, f"{D}.csv", HALF)
    why = landing_incomplete(s, D, tmp_path)
    assert why is not None and "ready marker" in why, why
    land(tmp_path, f"{D}.csv", FULL)
    assert landing_incomplete(s, D, tmp_path) is None
    land(tmp_path, f"{D}.csv", FULL.replace(b"9", b"8"))  # same size, other bytes: only sha256 catches it
    assert (landing_incomplete(s, D, tmp_path) is None) == ("sha256" not in marker)


@pytest.fixture(scope="module")
def s3_endpoint():
    from airtrain_dev.s3server import local_s3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with local_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.mark.parametrize("remote", [pytest.param(False, id="file-url"), pytest.param(True, id="s3-url")])
def test_the_trigger_waits_for_the_marker_through_the_landing_url(tmp_path, monkeypatch, s3_endpoint, remote):
    """The deferred wait (triggerer) applies the same rule, through the landing URL (S3 for the Celery stack)."""
    import boto3
    from airtrain_airflow.triggers import LandingFilesTrigger
    from airtrain_dev.s3server import ACCESS_KEY, REGION, SECRET_KEY, aws_conn

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_conn(s3_endpoint))
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name=REGION)
    prefix = f"m-{remote}/"
    url = f"s3://{BUCKET}/{prefix}" if remote else tmp_path.as_uri()

    def deliver(rel: str, body: bytes) -> None:
        if remote:
            client.put_object(Bucket=BUCKET, Key=prefix + rel, Body=body)
        else:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(body)

    data, marker = f"landing/churn/{D}.csv", f"landing/churn/{D}.csv.ready"
    trig = LandingFilesTrigger([data], dt.datetime.now(dt.UTC).isoformat(), 1.0, root_url=url,
                               conn_id="aws_default", markers={data: marker})
    assert trig.serialize()[1]["markers"] == {data: marker}
    deliver(data, HALF)
    deliver(marker, json.dumps({"sha256": hashlib.sha256(FULL).hexdigest()}).encode())  # early marker
    assert asyncio.run(anext(trig.run())).payload == {"status": "deadline", "missing": [data]}
    deliver(data, FULL)
    assert asyncio.run(anext(trig.run())).payload["status"] == "arrived"
    # a trigger serialized before markers existed (no 'markers' key) still works
    classpath, kwargs = trig.serialize()
    kwargs.pop("markers")
    assert asyncio.run(anext(LandingFilesTrigger(**kwargs).run())).payload["status"] == "arrived"


def test_the_trigger_echoes_the_sensors_late_delivery_deadlines_in_its_events(tmp_path):
    """Regression (found by the soak's landing fault): the sensor keeps, per late file, the moment it
    stops waiting in its defer kwargs; a runner that resumes it with the event alone (``dag.test()``)
    lost them, so the sensor set a new deadline on every resume and waited forever. The trigger now
    carries them through serialisation and back in every event."""
    from airtrain_airflow.triggers import LandingFilesTrigger

    late = {"landing/churn/2026-03-04.csv": "2026-03-04T00:00:00+00:00"}
    path = tmp_path / "2026-03-04.csv"
    trig = LandingFilesTrigger([str(path)], "2000-01-01T00:00:00+00:00", 0.01, late_until=late)
    classpath, kwargs = trig.serialize()
    again = LandingFilesTrigger(**kwargs)

    async def first(t):
        async for ev in t.run():
            return ev.payload

    payload = asyncio.run(first(again))
    assert payload["status"] == "deadline" and payload["late_until"] == late
    path.write_bytes(FULL)
    assert asyncio.run(first(again)) == {"status": "arrived", "paths": [str(path)], "late_until": late}
