"""A local S3 server for the Celery stack and the tests: moto's standalone server on loopback.

`make run EXECUTOR=celery`, `make scale-test` and the object-storage tests keep landing files,
reports and task logs in a real S3 protocol endpoint, so the code path a production deployment uses
(Airflow's ``ObjectStoragePath`` with the amazon provider's s3fs filesystem, and the provider's S3
remote task log IO) is the one tested. Dev tooling only: moto is a dev dependency, never in the image.

    python -m airtrain_dev.s3server --port 18081 --bucket airtrain-local

runs until SIGTERM/SIGINT; the bucket is created at every start (the server keeps objects in memory,
so a restarted server starts empty). :func:`local_s3` does the same in-process for a test.

The connection every component uses (:func:`aws_conn`) is what a deployment against an
S3-compatible store (MinIO, Ceph, ...) would configure: ``AIRFLOW_CONN_AWS_DEFAULT`` as JSON with
``extra.endpoint_url``. moto accepts any key pair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from collections.abc import Generator

#: moto accepts any credentials; these only make the client sign its requests as against real S3
ACCESS_KEY = "airtrain-local"
SECRET_KEY = "airtrain-local-secret"  # noqa: S105 - a local emulator's dummy key
REGION = "us-east-1"


def aws_conn(endpoint: str) -> str:
    """``AIRFLOW_CONN_AWS_DEFAULT`` (JSON) for an S3-compatible endpoint."""
    return json.dumps({"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
                       "extra": {"endpoint_url": endpoint, "region_name": REGION}})


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name=REGION)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


@contextlib.contextmanager
def local_s3(bucket: str, host: str = "127.0.0.1", port: int = 0) -> Generator[str, None, None]:
    """A moto S3 server on ``host:port`` (0: a free port) with ``bucket``; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        h, p = server.get_host_and_port()
        endpoint = f"http://{h}:{p}"
        create_bucket(endpoint, bucket)
        yield endpoint
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with local_s3(args.bucket, args.host, args.port) as endpoint:
        print(f"S3 server on {endpoint}, bucket {args.bucket} (objects are kept in memory)", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
