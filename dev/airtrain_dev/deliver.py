"""Deliver landing files into ``$AIRTRAIN_LANDING_URL``, as an upstream system delivers into a bucket.

    python -m airtrain_dev.deliver SRC_FOLDER REL_PATH

copies every file under SRC_FOLDER to ``<landing root>/<REL_PATH>/...`` through the same
ObjectStoragePath and connection the tasks read them with (:func:`airtrain_airflow.storage.landing_root`),
e.g. the demo's files into the local S3 server of ``make run EXECUTOR=celery``. A missing bucket or an
unreachable store fails with the one-line message naming the URL and the connection.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def deliver(src: Path, rel: str, attempts: int = 5) -> int:
    from airtrain_airflow.storage import ObjectStoreError, landing_root, landing_url

    for attempt in range(attempts):  # the store may have just started (its bucket comes a moment later)
        try:
            root = landing_root()
            break
        except ObjectStoreError:
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    target = root / rel.strip("/")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for f in files:
        (target / f.relative_to(src).as_posix()).write_bytes(f.read_bytes())
    from airtrain.warehouse.redaction import redact_text

    print(redact_text(f"delivered {len(files)} landing file(s) to {landing_url().rstrip('/')}/{rel.strip('/')}"),
          flush=True)
    return len(files)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    from airtrain_airflow.storage import ObjectStoreError

    try:
        deliver(Path(argv[0]), argv[1])
    except ObjectStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
