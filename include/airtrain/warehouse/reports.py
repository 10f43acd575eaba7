"""Where the HTML reports live: the ONE module that writes and reads them.

Two kinds: ``validation`` (one per partition date, written by the ``validate`` step) and ``drift``
(one per monitoring window and champion, written by the monitor). Steps save a report and record
the location :meth:`ReportStore.save` returns; the UI reads it back with :meth:`ReportStore.read`.
Nobody else touches report files, so moving reports from the local disk to the warehouse or to
object storage (which every component can reach - a worker's disk is not shared) is a change to
this module only.

The store is a root *location* and nothing else: ``<root>/<pipeline>/<kind>/<report_id>.html``.
The root is any pathlib-like object - a :class:`pathlib.Path` (tests, tools), or an object-storage
path with the same interface (``/``, ``mkdir``, ``write_bytes``, ``read_bytes``, ``rename``), which
is what the Airflow layer passes: ``ObjectStoragePath(AIRTRAIN_REPORTS_URL)``
(:func:`airtrain_airflow.runtime.report_store`), so ``file://``, ``s3://``, ``gs://``, ``ftp://`` are
a configuration change. This module never imports Airflow or a filesystem library itself.
Report ids are checked against a strict pattern (no ``/``, no ``..``), pipelines against the
identifier rule, and a local path is also checked to stay inside the root, so a request cannot
read anything else.

Writes replace a report atomically: on a local disk (and FTP/SFTP) a temporary file is renamed over
the old one; on object stores (S3, GCS, Azure) one PUT of the whole object is already atomic.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airtrain.spec import check_identifier

KINDS = ("validation", "drift")
REPORT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


class ReportNotFound(LookupError):
    """No such report (unknown kind, malformed id, or nothing stored under it)."""


# protocols where "write a temporary object, then rename it" is atomic; object stores (s3, gcs, abfs,
# ...) replace an object atomically on a single PUT and rename by copy + delete, so they are written directly.
_RENAME_PROTOCOLS = frozenset({"", "file", "local", "ftp", "sftp", "ssh"})


def _protocol(root: Any) -> str:
    return "" if isinstance(root, Path) else str(getattr(root, "protocol", "") or "")


@dataclass(frozen=True)
class ReportStore:
    """HTML reports under one root location.

    :param root: a :class:`pathlib.Path` or a pathlib-like object-storage path (e.g. Airflow's
        ``ObjectStoragePath``).
    :param url: how the root is named in the result tables when it is not a local folder (an
        object-storage path may not print its host, e.g. ``ftp://host:port/x`` prints ``ftp:///x``).
    """

    root: Any
    url: str | None = None

    @property
    def is_local(self) -> bool:
        return _protocol(self.root) in ("", "file", "local")

    def _path(self, pipeline: str, kind: str, report_id: str) -> Any:
        try:
            check_identifier(pipeline)
        except ValueError:
            raise ReportNotFound(f"no pipeline {pipeline!r}") from None
        if kind not in KINDS or not REPORT_ID.match(report_id) or ".." in report_id:
            raise ReportNotFound(f"no {kind} report {report_id!r}")
        if isinstance(self.root, Path):
            root = self.root.resolve()
            path = (root / pipeline / kind / f"{report_id}.html").resolve()
            if root not in path.parents:
                raise ReportNotFound(f"no {kind} report {report_id!r}")
            return path
        return self.root / pipeline / kind / f"{report_id}.html"

    def location(self, pipeline: str, kind: str, report_id: str) -> str:
        """Where a report is (or would be): a local path for a folder, else a URL."""
        path = self._path(pipeline, kind, report_id)
        if isinstance(self.root, Path):
            return str(path)
        if self.is_local:
            return str(getattr(path, "path", path))
        base = (self.url or str(self.root)).rstrip("/")
        return f"{base}/{pipeline}/{kind}/{report_id}.html"

    def save(self, pipeline: str, kind: str, report_id: str, html_text: str) -> str:
        """Store (or replace) a report atomically; returns where it is, for the result tables."""
        path = self._path(pipeline, kind, report_id)
        data = html_text.encode("utf-8")
        if isinstance(self.root, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        elif _protocol(self.root) in _RENAME_PROTOCOLS:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            try:
                tmp.replace(path)
            except (NotImplementedError, AttributeError):  # an fs without replace: rename over it
                if path.exists():
                    path.unlink()
                tmp.rename(path)
        else:
            path.write_bytes(data)  # one PUT: readers see the old object or the new one
        return self.location(pipeline, kind, report_id)

    def read(self, pipeline: str, kind: str, report_id: str) -> str:
        """The report's HTML, or :class:`ReportNotFound`."""
        path = self._path(pipeline, kind, report_id)
        try:
            return path.read_bytes().decode("utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ReportNotFound(f"no {kind} report {report_id!r} for {pipeline}") from None

    def exists(self, pipeline: str, kind: str, report_id: str) -> bool:
        try:
            return bool(self._path(pipeline, kind, report_id).is_file())
        except ReportNotFound:
            return False

    def save_bytes(self, pipeline: str, name: str, data: bytes) -> str:
        """Store a non-HTML artifact of a pipeline (a chart): ``<root>/<pipeline>/files/<name>``."""
        check_identifier(pipeline)
        if not REPORT_ID.match(name) or ".." in name:
            raise ValueError(f"bad file name {name!r}: letters, digits, '_', '.', '-' only")
        path = self.root / pipeline / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if isinstance(self.root, Path) or self.is_local:
            return str(getattr(path, "path", path)) if not isinstance(path, Path) else str(path)
        return f"{(self.url or str(self.root)).rstrip('/')}/{pipeline}/files/{name}"


def as_store(where: ReportStore | Path | str | Any) -> ReportStore:
    """A store from a store, a folder, or a pathlib-like object-storage path (what the steps are given)."""
    if isinstance(where, ReportStore):
        return where
    if isinstance(where, str):
        return ReportStore(Path(where))
    return ReportStore(where)


def with_title(document: str, title: str, header_html: str = "") -> str:
    """``document`` with a ``<title>`` and, when given, a header shown above the report's body.
    Third-party HTML (Evidently's has no title) is never passed through without one: the title goes
    right after the opening ``<head>`` (the first title wins), the header right after the ``<body>``
    that follows ``</head>`` - never into scripts or data embedded in the document."""
    tag = f"<title>{html.escape(title)}</title>"
    head = re.search(r"<head(\s[^>]*)?>", document, flags=re.I)
    if head:
        document = document[:head.end()] + tag + document[head.end():]
    else:
        document = tag + document
    if header_html:
        end_head = re.search(r"</head\s*>", document, flags=re.I)
        body = re.compile(r"<body(\s[^>]*)?>", flags=re.I).search(document, end_head.end() if end_head else 0)
        if body:
            document = document[:body.end()] + header_html + document[body.end():]
        else:
            document = document.replace(tag, tag + header_html, 1)
    return document
