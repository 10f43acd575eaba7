"""Where files live for every component: the project root, the landing root of ``files`` sources and the
report store, each an Airflow ``ObjectStoragePath`` (local folders, S3, GCS, ...) checked before use so that
a wrong bucket or connection fails at once with one readable line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def project_root() -> Path:
    return Path(os.environ.get("AIRTRAIN_PROJECT_ROOT") or Path(__file__).resolve().parents[2])


def reports_root() -> Path:
    return Path(os.environ.get("AIRTRAIN_REPORTS_DIR") or project_root() / "data" / "reports")


def storage_path(url: str, conn_id: str | None = None):
    """An Airflow ``ObjectStoragePath`` for ``url`` (``file://``, ``s3://``, ``gs://``, ``ftp://``, ...).
    ``conn_id`` (or ``<scheme>://<conn_id>@bucket/...``) names the Airflow connection with the
    credentials; the filesystem comes from the provider that registers the scheme (s3: the amazon
    provider + s3fs)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url, conn_id=conn_id or None)


class ObjectStoreError(RuntimeError):
    """The object store behind a configured URL cannot be used (no such bucket, or the connection
    cannot reach it). The message names the URL and the connection, never a credential."""


def _conn_label(path: Any, conn_id: str | None) -> str:
    conn = conn_id or getattr(path, "conn_id", None)
    return f"connection {conn!r}" if conn else "no connection (the library's default credentials)"


def checked_store(url: str, conn_id: str | None, what: str, setting: str):
    """``storage_path(url, conn_id)`` once its bucket answers: a wrong or missing bucket, an unknown
    connection or an unreachable endpoint fails HERE with one readable line naming ``setting``, the
    URL and the connection, instead of later as "file not found" or a library traceback. Local
    folders (``file://``) are not checked: they are created on the first write."""
    from airtrain.warehouse import redact_text

    try:
        path = storage_path(url, conn_id)
    except Exception as exc:  # noqa: BLE001 - an unknown scheme, a provider or fs library missing, a bad URL
        raise ObjectStoreError(redact_text(
            f"{what}: cannot open {setting}={url} ({type(exc).__name__}: {exc})")) from None
    protocol = str(getattr(path, "protocol", "") or "")
    bucket = str(getattr(path, "bucket", "") or "")
    if protocol in ("", "file", "local") or not bucket:
        return path
    try:
        found = path.fs.exists(bucket)
    except Exception as exc:  # noqa: BLE001 - re-raised as one line without the library's traceback
        raise ObjectStoreError(redact_text(
            f"{what}: the bucket {bucket!r} of {setting}={url} could not be checked through "
            f"{_conn_label(path, conn_id)}: {type(exc).__name__}: {exc}")) from None
    if not found:
        raise ObjectStoreError(redact_text(
            f"{what}: the bucket {bucket!r} of {setting}={url} does not exist or {_conn_label(path, conn_id)} "
            "cannot reach it (check the bucket name, and the connection's endpoint_url, region and credentials)"))
    return path


def reports_url() -> str:
    """Where reports live: ``$AIRTRAIN_REPORTS_URL``, else the folder ``$AIRTRAIN_REPORTS_DIR`` (default
    ``<project>/data/reports``) as a ``file://`` URL. Every component (workers, api-server) must
    reach it: on more than one machine, use object storage (docs/SCALING.md)."""
    url = os.environ.get("AIRTRAIN_REPORTS_URL", "").strip()
    return url or reports_root().resolve().as_uri()


def report_store():
    """The one place reports are written to and read from (:mod:`airtrain.warehouse.reports`), through Airflow's
    ObjectStoragePath at :func:`reports_url` (connection: ``$AIRTRAIN_REPORTS_CONN_ID``)."""
    from airtrain.warehouse.reports import ReportStore

    url = reports_url()
    return ReportStore(checked_store(url, os.environ.get("AIRTRAIN_REPORTS_CONN_ID"), "reports",
                                     "AIRTRAIN_REPORTS_URL"), url=url)


def landing_url() -> str:
    """The root that a ``files`` source's ``source.path`` is relative to: ``$AIRTRAIN_LANDING_URL``
    (e.g. ``s3://aws_default@landing-bucket/airtrain``), else the project root as ``file://``."""
    url = os.environ.get("AIRTRAIN_LANDING_URL", "").strip()
    return url or project_root().resolve().as_uri()


def landing_root():
    """The landing root as an ObjectStoragePath (connection: ``$AIRTRAIN_LANDING_CONN_ID``)."""
    return checked_store(landing_url(), os.environ.get("AIRTRAIN_LANDING_CONN_ID"), "landing files",
                         "AIRTRAIN_LANDING_URL")
