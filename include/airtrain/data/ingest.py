"""Land one partition from the spec's source into ``raw.<name>_batches``, exactly as received.

* files source: ``<landing root>/<source.path>/<pattern with {date}>`` (CSV or Parquet). The root is
  the project folder (a :class:`~pathlib.Path`) or any pathlib-like object-storage path (the Airflow
  layer passes ``ObjectStoragePath($AIRTRAIN_LANDING_URL)``: ``file://``, ``s3://``, ...). Every value
  is kept as text — '0042' stays '0042' — so that typing problems are validation's to find and
  quarantine, and the raw table shows what arrived. Columns are matched by their source name
  (``source:`` in the spec, else the warehouse name) and stored under the warehouse name. Unknown
  columns go to ``_extra`` (jsonb); expected columns that are absent stay NULL and are reported
  (the target only when labels come from the batch; a missing date column is filled with the
  partition date).
* postgres source: ``INSERT … SELECT col::text …`` inside the server; no data passes through Python.

**When is a landing file complete?** A file an upstream system is still writing must never be
ingested as the day. Two conventions are supported (docs/OPERATING.md "Landing files"): write-then-rename (the
writer fills ``<name>.tmp`` and renames it into place - a rename is atomic, so the file is complete
once it exists; the default) and a **ready marker** (``source.ready_marker``, Hadoop's ``_SUCCESS``
style: a second file written once the data file is complete). With a marker, a file without it is
not complete (:func:`landing_incomplete`): the landing sensor waits, and ingest refuses it
(:class:`LandingIncompleteError`, retried). A marker may carry the file's ``size`` and ``sha256``
(:func:`parse_marker`); the bytes ingested must then match it, so even a marker written before the
data cannot let a half file in.

A re-run of a date replaces that date's rows in ONE transaction (delete + bulk COPY), under an
advisory lock, so readers see the old rows or the new ones, never none. Landing files are never
moved or deleted: the bytes as received stay where they landed.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from psycopg2 import sql

from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.spec import FilesSource, PipelineSpec, PostgresSource
from airtrain.warehouse.connection import Warehouse, ident, xact_lock

META = ("_partition_date", "_row_number", "_run_id", "_source", "_ingested_at", "_extra")


class IngestError(PermanentError, RuntimeError):
    """The partition could not be ingested; the raw table is unchanged."""


class SourceMissingError(IngestError):
    """The partition's source file does not exist (yet)."""


class SourceFormatError(IngestError):
    """The source file cannot be parsed (malformed, truncated or not UTF-8)."""


class LandingIncompleteError(RuntimeError):
    """The landing file is there but not complete yet: its ready marker (``source.ready_marker``) is
    missing, or the file does not match the size/sha256 the marker carries - the upstream system is
    still writing it. Not permanent: the task is retried (the raw table is unchanged)."""


@dataclass
class IngestResult:
    partition_date: dt.date
    source: str
    rows: int
    columns_missing: list[str] = field(default_factory=list)
    columns_extra: list[str] = field(default_factory=list)
    source_sha256: str | None = None


def expected_columns(spec: PipelineSpec) -> list[str]:
    """The raw table's data columns (warehouse names): key, date, features, then the target."""
    return [spec.entity_key, spec.date_column, *spec.feature_names, spec.target.name]


def optional_columns(spec: PipelineSpec, partition_date: dt.date | None = None) -> set[str]:
    """Columns a batch may lack without it being reported as missing: the target when labels come
    from a labels table, and the date column, which the partition gives (the file's name, or the
    source table's ``source.date_column``): every row of the batch then gets the partition date.
    With ``partition_date``: also the features that do not arrive on that date (``since``/``until``)."""
    out = {spec.date_column}
    if not spec.labels_from_batch:
        out.add(spec.target.name)
    if partition_date is not None:
        out.update(f.name for f in spec.features if not f.active_on(partition_date))
    return out


def _root(project_root: Any) -> Any:
    """A landing root: a str is a local folder; a Path or an object-storage path is used as it is."""
    return Path(project_root) if isinstance(project_root, str) else project_root


def source_relpath(spec: PipelineSpec, partition_date: dt.date) -> str:
    """The landing file of a date relative to the landing root (what ``_source`` records)."""
    assert isinstance(spec.source, FilesSource)
    return str(PurePosixPath(spec.source.path) / spec.source.pattern.replace("{date}", partition_date.isoformat()))


def source_path(spec: PipelineSpec, partition_date: dt.date, project_root: Any) -> Any:
    """The landing file of a date under the landing root (a Path, or an object-storage path)."""
    root = _root(project_root)
    for part in PurePosixPath(source_relpath(spec, partition_date)).parts:
        root = root / part
    return root


def marker_relpath(spec: PipelineSpec, partition_date: dt.date) -> str | None:
    """The ready marker of a date's landing file relative to the landing root (None: no marker convention)."""
    assert isinstance(spec.source, FilesSource)
    if not spec.source.ready_marker:
        return None
    return str(PurePosixPath(spec.source.path) / spec.source.ready_marker.replace("{date}", partition_date.isoformat()))


def under_root(project_root: Any, relpath: str) -> Any:
    """``relpath`` (a POSIX path) under the landing root (a Path or an object-storage path)."""
    root = _root(project_root)
    for part in PurePosixPath(relpath).parts:
        root = root / part
    return root


_SHA256SUM = re.compile(r"([0-9a-fA-F]{64})(?:[ \t]+\*?\S.*)?")


def parse_marker(data: bytes) -> dict[str, Any]:
    """What a ready marker says about its data file: ``{}`` (an empty marker: "complete"), or ``size``
    (bytes) and/or ``sha256`` (hex) from a JSON object (``{"size": 1234, "sha256": "..."}``, other keys
    ignored) or a ``sha256sum`` line (``<hex>  <file name>``). Raises ValueError for anything else."""
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        out: dict[str, Any] = {}
        size, sha = obj.get("size"), obj.get("sha256")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ValueError(f"'size' must be a whole number of bytes, not {size!r}")
            out["size"] = size
        if sha is not None:
            if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
                raise ValueError("'sha256' must be 64 hexadecimal digits")
            out["sha256"] = sha.lower()
        return out
    m = _SHA256SUM.fullmatch(text.splitlines()[0].strip())
    if m is None:
        raise ValueError("expected nothing, a JSON object with 'size'/'sha256', or a sha256sum line")
    return {"sha256": m.group(1).lower()}


def marker_mismatch(data: bytes, expected: dict[str, Any]) -> str | None:
    """Why ``data`` is not the file its marker describes (None: it is)."""
    if "size" in expected and len(data) != expected["size"]:
        return f"{len(data)} bytes, but its ready marker says {expected['size']}"
    if "sha256" in expected and hashlib.sha256(data).hexdigest() != expected["sha256"]:
        return "its sha256 differs from its ready marker's"
    return None


def file_incomplete(data: Any, marker: Any | None) -> str | None:
    """Why the landing file ``data`` is not complete yet (None: it is): ``"missing"`` when it does not
    exist; with a ``marker`` (a path), the marker is missing or unreadable, or the file does not match
    the size/sha256 it carries. Paths are Paths or object-storage paths; used by the landing sensor
    and its trigger (the bytes ingest reads are checked again by ingest itself)."""
    if not data.is_file():
        return "missing"
    if marker is None:
        return None
    if not marker.is_file():
        return f"no ready marker {marker.name} yet"
    try:
        expected = parse_marker(marker.read_bytes())
    except ValueError as exc:
        return f"its ready marker {marker.name} is unreadable: {exc}"
    if not expected:
        return None
    if "sha256" not in expected:  # a size alone: no need to read the file
        try:
            size = int(data.stat().st_size)
        except (AttributeError, TypeError, ValueError, OSError):
            size = len(data.read_bytes())
        return None if size == expected["size"] else f"{size} bytes, but its ready marker says {expected['size']}"
    return marker_mismatch(data.read_bytes(), expected)


def landing_incomplete(spec: PipelineSpec, partition_date: dt.date, project_root: Any) -> str | None:
    """Why a date's landing file is not complete yet (None: it is; ``"missing"``: not there at all)."""
    marker = marker_relpath(spec, partition_date)
    return file_incomplete(source_path(spec, partition_date, project_root),
                           under_root(project_root, marker) if marker else None)


def landing_deadline(spec: PipelineSpec, partition_date: dt.date) -> dt.datetime:
    """Until when the landing file of ``partition_date`` may still arrive (UTC): the end of that day
    in the pipeline's timezone plus ``source.wait_minutes``."""
    assert isinstance(spec.source, FilesSource)
    day_end = dt.datetime.combine(partition_date + dt.timedelta(days=1), dt.time(), ZoneInfo(spec.schedule.timezone))
    return (day_end + dt.timedelta(minutes=spec.source.wait_minutes)).astimezone(dt.UTC)


def missing_landing_files(spec: PipelineSpec, dates: list[dt.date], project_root: Any
                          ) -> list[tuple[dt.date, Any]]:
    """The (date, expected path) of every date whose landing file is not there (files sources only)."""
    if not isinstance(spec.source, FilesSource):
        return []
    return [(d, p) for d in dates if not (p := source_path(spec, d, project_root)).is_file()]


def incomplete_landing_files(spec: PipelineSpec, dates: list[dt.date], project_root: Any
                             ) -> list[tuple[dt.date, Any, str]]:
    """(date, expected path, why) of every date whose landing file is not complete: missing, or - with
    ``source.ready_marker`` - without its marker or not matching it (files sources only)."""
    if not isinstance(spec.source, FilesSource):
        return []
    out = []
    for d in dates:
        why = landing_incomplete(spec, d, project_root)
        if why is not None:
            out.append((d, source_path(spec, d, project_root), why))
    return out


def _read_csv(data: bytes, path: Path) -> tuple[list[str], list[list[str | None]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceFormatError(f"{path}: not valid UTF-8 at line {line} (byte {exc.start}); fix the file's "
                                "encoding and re-run this date") from None
    if not text.strip():
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise SourceFormatError(
                    f"{path}: line {reader.line_num} has {len(row)} fields but the header has {len(header)} "
                    "(truncated or malformed file); fix or re-deliver the file and re-run this date")
            rows.append([v if v != "" else None for v in row])
    except csv.Error as exc:
        raise SourceFormatError(f"{path}: line {reader.line_num}: {exc}; fix the file and re-run this date") from None
    if not text.endswith(("\n", "\r")) and rows:
        # a file cut in the middle of its last line usually still has the right field count;
        # a well-formed CSV ends with a newline, so refuse the partial last line.
        raise SourceFormatError(f"{path}: the last line ({reader.line_num}) has no line end: the file looks "
                                "truncated; re-deliver it and re-run this date")
    return [h.strip() for h in header], rows


def _read_parquet(data: bytes, path: Path) -> tuple[list[str], list[list[str | None]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise SourceFormatError(f"{path}: not a readable Parquet file ({exc}); re-deliver it") from None
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type):
            values = [None if v is None else repr(float(v)) for v in col.to_pylist()]
        elif pa.types.is_boolean(col.type):
            values = [None if v is None else str(v) for v in col.to_pylist()]
        else:
            values = [None if v is None else str(v) for v in col.to_pylist()]
        cols.append(values)
    rows = [list(r) for r in zip(*cols, strict=True)] if cols else []
    return list(table.column_names), rows


def _copy_rows(cur: Any, table: sql.Composable, columns: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    for r in rows:
        w.writerow(["\\N" if v is None else v for v in r])
    buf.seek(0)
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N')").format(
        table, sql.SQL(", ").join(ident(c) for c in columns)).as_string(cur), buf)


def _record(cur: Any, spec: PipelineSpec, res: IngestResult, run_id: str) -> None:
    cur.execute(sql.SQL(
        "INSERT INTO {} (pipeline, partition_date, run_id, source, rows, columns_missing, columns_extra, "
        "source_sha256, ingested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now()) "
        "ON CONFLICT (pipeline, partition_date) DO UPDATE SET run_id = EXCLUDED.run_id, source = EXCLUDED.source, "
        "rows = EXCLUDED.rows, columns_missing = EXCLUDED.columns_missing, columns_extra = EXCLUDED.columns_extra, "
        "source_sha256 = EXCLUDED.source_sha256, ingested_at = now()").format(
        ident(spec.warehouse.monitoring_schema, "ingest_runs")),
        (spec.name, res.partition_date, run_id, res.source, res.rows, res.columns_missing, res.columns_extra,
         res.source_sha256))


def _ingest_file(wh: Warehouse, spec: PipelineSpec, d: dt.date, run_id: str, project_root: Any) -> IngestResult:
    path = source_path(spec, d, project_root)
    if not path.is_file():
        raise SourceMissingError(
            f"no source file for {spec.name} on {d}: expected {path}. Either the file has not landed yet "
            f"(re-run this date when it has) or the date is wrong (trigger with a 'date' param)")
    marker_rel = marker_relpath(spec, d)
    expected: dict[str, Any] = {}
    if marker_rel is not None:  # the marker first: a file it vouches for is complete, whatever comes after
        marker = under_root(project_root, marker_rel)
        if not marker.is_file():
            raise LandingIncompleteError(
                f"{path} has no ready marker ({marker}) yet: the upstream system has not finished writing it "
                "(source.ready_marker); not ingested, retried")
        try:
            expected = parse_marker(marker.read_bytes())
        except ValueError as exc:
            raise LandingIncompleteError(f"the ready marker {marker} of {path} is unreadable ({exc}); not ingested, "
                                         "retried (re-deliver the marker)") from None
    data = path.read_bytes()
    if expected and (why := marker_mismatch(data, expected)) is not None:
        raise LandingIncompleteError(f"{path} does not match its ready marker: {why} (still being written, or "
                                     "re-delivered without a new marker); not ingested, retried")
    header, rows = (_read_parquet if spec.source.format == "parquet" else _read_csv)(data, path)
    expected = expected_columns(spec)
    sources = spec.source_columns()
    pos = {h: i for i, h in enumerate(header)}
    used = {sources[c] for c in expected}
    extra = [h for h in header if h not in used]
    missing = [c for c in expected if sources[c] not in pos and c not in optional_columns(spec, d)]
    rel = source_relpath(spec, d)
    # a file without a date column is the partition's (its name says so): every row gets that date
    fill = ({spec.date_column: d.strftime(spec.date_format) if spec.date_format else d.isoformat()}
            if sources[spec.date_column] not in pos else {})
    out_rows = []
    for n, r in enumerate(rows, start=1):
        vals = [r[pos[sources[c]]] if sources[c] in pos else fill.get(c) for c in expected]
        extras = json.dumps({h: r[pos[h]] for h in extra}) if extra else None
        out_rows.append([d.isoformat(), n, run_id, rel, *vals, extras])
    res = IngestResult(d, rel, len(out_rows), missing, extra, hashlib.sha256(data).hexdigest())
    rs, rt = spec.table("raw")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "ingest", spec.name, d.isoformat())
        cur.execute(sql.SQL("DELETE FROM {} WHERE _partition_date = %s").format(ident(rs, rt)), (d,))
        _copy_rows(cur, ident(rs, rt), ["_partition_date", "_row_number", "_run_id", "_source", *expected, "_extra"],
                   out_rows)
        _record(cur, spec, res, run_id)
        failpoint("ingest.before_commit")
    failpoint("ingest.after_commit")
    return res


def _ingest_table(wh: Warehouse, spec: PipelineSpec, d: dt.date, run_id: str) -> IngestResult:
    src = spec.source
    assert isinstance(src, PostgresSource)
    expected = expected_columns(spec)
    rs, rt = spec.table("raw")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                    "ORDER BY ordinal_position", (src.schema_, src.table))
        have = [r[0] for r in cur.fetchall()]
        if not have:
            raise SourceMissingError(f"source table {src.schema_}.{src.table} does not exist or is not visible")
        if src.date_column not in have:
            raise IngestError(f"source table {src.schema_}.{src.table} has no column {src.date_column!r}")
        sources = spec.source_columns()
        used = {sources[c] for c in expected}
        missing = [c for c in expected if sources[c] not in have and c not in optional_columns(spec, d)]
        extra = [c for c in have if c not in used]
        key_src = sources[spec.entity_key]
        # source names are header text (any case, spaces): quoted by sql.Identifier, never interpolated
        select = [sql.SQL("%s::date"), sql.SQL("row_number() OVER (ORDER BY {})").format(
            sql.Identifier(key_src) if key_src in have else sql.SQL("ctid")), sql.SQL("%s"), sql.SQL("%s")]
        select += [sql.SQL("{}::text").format(sql.Identifier(sources[c])) if sources[c] in have
                   else sql.Literal(d.isoformat()) if c == spec.date_column else sql.SQL("NULL") for c in expected]
        select.append(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
            sql.SQL("{}, {}::text").format(sql.Literal(c), sql.Identifier(c)) for c in extra)) if extra
                      else sql.SQL("NULL"))
        xact_lock(cur, "ingest", spec.name, d.isoformat())
        cur.execute(sql.SQL("DELETE FROM {} WHERE _partition_date = %s").format(ident(rs, rt)), (d,))
        source = f"{src.schema_}.{src.table}"
        cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} = %s").format(
            ident(rs, rt),
            sql.SQL(", ").join(ident(c) for c in ["_partition_date", "_row_number", "_run_id", "_source", *expected,
                                                   "_extra"]),
            sql.SQL(", ").join(select), ident(src.schema_, src.table), ident(src.date_column)),
            (d, run_id, source, d))
        res = IngestResult(d, source, cur.rowcount, missing, extra, None)
        _record(cur, spec, res, run_id)
        failpoint("ingest.before_commit")
    failpoint("ingest.after_commit")
    return res


def ingest_partition(wh: Warehouse, spec: PipelineSpec, partition_date: dt.date, run_id: str, *,
                     project_root: Any) -> IngestResult:
    """Replace ``partition_date``'s rows in the raw table with the source's, as received.
    ``project_root``: the landing root (a folder, or a pathlib-like object-storage path)."""
    if isinstance(spec.source, FilesSource):
        return _ingest_file(wh, spec, partition_date, run_id, _root(project_root))
    return _ingest_table(wh, spec, partition_date, run_id)


def read_partition(wh: Warehouse, spec: PipelineSpec, partition_date: dt.date):
    """The raw partition as strings, with ``_row_number`` and ``_extra``, in source order."""
    import pandas as pd

    rs, rt = spec.table("raw")
    cols = ["_row_number", *expected_columns(spec), "_extra"]
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} WHERE _partition_date = %s ORDER BY _row_number").format(
            sql.SQL(", ").join(ident(c) for c in cols), ident(rs, rt)), (partition_date,))
        df = pd.DataFrame.from_records(cur.fetchall(), columns=cols)
        cur.execute(sql.SQL("SELECT columns_missing FROM {} WHERE pipeline = %s AND partition_date = %s").format(
            ident(spec.warehouse.monitoring_schema, "ingest_runs")), (spec.name, partition_date))
        row = cur.fetchone()
    df.attrs["columns_missing"] = list(row[0]) if row else []
    return df
