"""Where files live for every component: the project root, the landing root of ``files`` sources and the
report store, each an Airflow ``ObjectStoragePath`` (local folders, S3, GCS, ...) checked before use so that
a wrong bucket or connection fails at once with one readable line.
"""

from __future__ import annotations

import os
import re
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
    from airtrain.warehouse import redact_text

    conn = conn_id or getattr(path, "conn_id", None)
    return redact_text(f"connection {conn!r}") if conn else "no connection (the library's default credentials)"


#: ``scheme://<userinfo>@``: ObjectStoragePath reads the userinfo as a connection id; a ':' in it is a
#: credential (``s3://KEY:SECRET@bucket``), never a connection id (Airflow's ids have no ':')
_USERINFO = re.compile(r"^[a-zA-Z][\w+.-]*://(?P<userinfo>[^@]*)@")


def _refuse_credentials(url: str, what: str, setting: str) -> None:
    """A URL with credentials in it fails at once (they would reach logs, the UI and the process list):
    credentials belong in an Airflow connection, named by ``<setting>``'s *_CONN_ID or the URL's userinfo."""
    from airtrain.warehouse import redact_text

    m = _USERINFO.match(url.strip())
    if m and ":" in m["userinfo"]:
        masked = f"{url.strip().split('://', 1)[0]}://***@{url.strip()[m.end():]}"
        raise ObjectStoreError(redact_text(
            f"{what}: {setting}={masked} holds credentials in the URL: put them in an Airflow connection and "
            f"name it in {setting.removesuffix('_URL')}_CONN_ID or as <scheme>://<conn_id>@bucket/..."))


def _require_connection(conn_id: str | None, what: str, setting: str) -> None:
    """The named connection exists, else one line naming it and where it is defined. Without this, the
    provider's filesystem falls back to the default credentials (or anonymous access) when the id is
    undefined and the failure reads "the bucket does not exist" - or, worse, works with other credentials."""
    if not conn_id:
        return
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airtrain.warehouse import redact_text

    try:
        Connection.get(conn_id)
    except AirflowNotFoundException:
        raise ObjectStoreError(redact_text(
            f"{what}: the Airflow connection {conn_id!r} (named by {setting.removesuffix('_URL')}_CONN_ID or in "
            f"{setting}) is not defined: define AIRFLOW_CONN_{conn_id.upper()} (or add it in a secrets backend or "
            "the UI), or fix the id")) from None


def checked_store(url: str, conn_id: str | None, what: str, setting: str):
    """``storage_path(url, conn_id)`` once its bucket answers: a wrong or missing bucket, an unknown
    connection or an unreachable endpoint fails HERE with one readable line naming ``setting``, the
    URL and the connection, instead of later as "file not found" or a library traceback. Local
    folders (``file://``) are not checked: they are created on the first write."""
    from airtrain.warehouse import redact_text

    _refuse_credentials(url, what, setting)
    try:
        path = storage_path(url, conn_id)
    except Exception as exc:  # noqa: BLE001 - an unknown scheme, a provider or fs library missing, a bad URL
        raise ObjectStoreError(redact_text(
            f"{what}: cannot open {setting}={url} ({type(exc).__name__}: {exc})")) from None
    protocol = str(getattr(path, "protocol", "") or "")
    bucket = str(getattr(path, "bucket", "") or "")
    if protocol in ("", "file", "local") or not bucket:
        return path
    _require_connection(conn_id or getattr(path, "conn_id", None), what, setting)
    try:
        # the truth, not a listing an fsspec filesystem cached earlier in this process (s3fs caches its
        # bucket list: a bucket created since would read as missing)
        invalidate = getattr(path.fs, "invalidate_cache", None)
        if callable(invalidate):
            invalidate()
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
