"""Where the HTML reports live: the ONE module that writes and reads them.

Two kinds: ``validation`` (one per partition date, written by the ``validate`` step) and ``drift``
(one per monitoring window and champion, written by the monitor). Steps save a report and record
the location :meth:`ReportStore.save` returns; the UI reads it back with :meth:`ReportStore.read`.
Nobody else touches report files, so moving reports from the local disk to the warehouse or to
object storage (which every component can reach - a worker's disk is not shared) is a change to
this module only.

Today the store is a folder (``$AIRTRAIN_REPORTS_DIR``, default ``data/reports``):
``<root>/<pipeline>/<kind>/<report_id>.html``. Report ids are checked against a strict pattern and
every path is checked to stay inside the root, so a request cannot read anything else.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from airtrain.spec import check_identifier

KINDS = ("validation", "drift")
REPORT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


class ReportNotFound(LookupError):
    """No such report (unknown kind, malformed id, or nothing stored under it)."""


@dataclass(frozen=True)
class ReportStore:
    """HTML reports in a folder."""

    root: Path

    def _path(self, pipeline: str, kind: str, report_id: str) -> Path:
        try:
            check_identifier(pipeline)
        except ValueError:
            raise ReportNotFound(f"no pipeline {pipeline!r}") from None
        if kind not in KINDS or not REPORT_ID.match(report_id) or ".." in report_id:
            raise ReportNotFound(f"no {kind} report {report_id!r}")
        root = Path(self.root).resolve()
        path = (root / pipeline / kind / f"{report_id}.html").resolve()
        if root not in path.parents:
            raise ReportNotFound(f"no {kind} report {report_id!r}")
        return path

    def save(self, pipeline: str, kind: str, report_id: str, html_text: str) -> str:
        """Store (or replace) a report atomically; returns where it is, for the result tables."""
        path = self._path(pipeline, kind, report_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(html_text, encoding="utf-8")
        os.replace(tmp, path)
        return str(path)

    def read(self, pipeline: str, kind: str, report_id: str) -> str:
        """The report's HTML, or :class:`ReportNotFound`."""
        path = self._path(pipeline, kind, report_id)
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ReportNotFound(f"no {kind} report {report_id!r} for {pipeline}") from None


def as_store(where: ReportStore | Path | str) -> ReportStore:
    """A store from a store or a folder (what the steps are given)."""
    return where if isinstance(where, ReportStore) else ReportStore(Path(where))


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
