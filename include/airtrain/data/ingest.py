"""Land one partition from the spec's source into ``raw.<name>_batches``, exactly as received.

* files source: ``<landing root>/<source.path>/<pattern with {date}>`` (CSV or Parquet). The root is
  the project folder (a :class:`~pathlib.Path`) or any pathlib-like object-storage path (the Airflow
  layer passes ``ObjectStoragePath($AIRTRAIN_LANDING_URL)``: ``file://``, ``s3://``, ...). Every value
  is kept as text — '0042' stays '0042' — so that typing problems are validation's to find and
  quarantine, and the raw table shows what arrived. Columns are matched by their source name
  (``source:`` in the spec, else the warehouse name) and stored under the warehouse name. Unknown
  columns go to ``_extra`` (jsonb); expected columns that are absent stay NULL and are reported
  (the target only when labels come from the batch; a missing date column is filled with the
  partition date). A date may arrive as several files: a glob ``pattern`` (``{date}-part-*.csv``) reads
  every matching file in name order, numbering the rows on across them (``_source`` names each row's
  file). Files are streamed: pyarrow reads them in record batches (``BATCH_BYTES`` of CSV,
  ``BATCH_ROWS`` of Parquet) and each batch is COPYed as it is read, so memory is bounded by the batch.
* postgres source: ``INSERT … SELECT col::text …`` inside the server; no data passes through Python.

**When is a landing file complete?** A file an upstream system is still writing must never be
ingested as the day. Two conventions are supported (docs/OPERATING.md "Landing files"): write-then-rename (the
writer fills ``<name>.tmp`` and renames it into place - a rename is atomic, so the file is complete
once it exists; the default) and a **ready marker** (``source.ready_marker``, Hadoop's ``_SUCCESS``
style: a second file written once the data file is complete). With a marker, a file without it is
not complete (:func:`landing_incomplete`): the landing sensor waits, and ingest refuses it
(:class:`LandingIncompleteError`, retried). A marker may carry the file's ``size`` and ``sha256``,
or - a date in several files - one ``sha256sum`` line per file (:func:`parse_marker`); the bytes
ingested must then match it, checked as they stream, so even a marker written before the data cannot
let a half file in.

A re-run of a date replaces that date's rows in ONE transaction (delete + bulk COPY), under an
advisory lock, so readers see the old rows or the new ones, never none. Landing files are never
moved or deleted: the bytes as received stay where they landed.
"""

from __future__ import annotations

import codecs
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


_SHA256SUM = re.compile(r"([0-9a-fA-F]{64})(?:[ \t]+\*?(\S.*))?")


def parse_marker(data: bytes) -> dict[str, Any]:
    """What a ready marker says about its data: ``{}`` (an empty marker: "complete"); ``size`` (bytes)
    and/or ``sha256`` (hex) of the one file, from a JSON object (``{"size": 1234, "sha256": "..."}``,
    other keys ignored) or one ``sha256sum`` line (``<hex>  <file name>``); or ``files`` (file name →
    sha256) from several ``sha256sum`` lines, one per part of a date delivered in several files (a glob
    ``pattern``), as ``sha256sum part-* > marker`` writes them. Raises ValueError for anything else."""
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
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    matches = [_SHA256SUM.fullmatch(ln) for ln in lines]
    if any(m is None for m in matches):
        raise ValueError("expected nothing, a JSON object with 'size'/'sha256', or sha256sum lines")
    if len(matches) == 1:
        return {"sha256": matches[0].group(1).lower()}
    files: dict[str, str] = {}
    for m in matches:
        if not m.group(2):
            raise ValueError("several sha256sum lines must each name their file")
        files[PurePosixPath(m.group(2).strip()).name] = m.group(1).lower()
    return {"files": files}


def _marker_files_mismatch(vouched: dict[str, Any], names: list[str]) -> str | None:
    """Why the files found (their names) are not the set the marker vouches for (None: they are)."""
    if "files" in vouched:
        listed = vouched["files"]
        if absent := [n for n in listed if n not in names]:
            return f"{len(absent)} file(s) its ready marker lists are not there yet (e.g. {absent[0]})"
        if unlisted := [n for n in names if n not in listed]:
            return f"{len(unlisted)} file(s) are not listed in its ready marker (e.g. {unlisted[0]})"
        return None
    if vouched and len(names) > 1:
        return (f"its ready marker's size/sha256 describe one file, but {len(names)} files match: list each "
                "file's sha256 in the marker (sha256sum lines)")
    return None


def _vouched_for(vouched: dict[str, Any], name: str) -> dict[str, Any]:
    """What the marker says about the file ``name`` (its size and/or sha256; {}: nothing)."""
    if "files" in vouched:
        return {"sha256": vouched["files"][name]} if name in vouched["files"] else {}
    return vouched


def marker_mismatch(size: int, sha256: str | None, expected: dict[str, Any]) -> str | None:
    """Why a file of ``size`` bytes and ``sha256`` (None: not computed) is not the file its marker
    describes (None: it is)."""
    if "size" in expected and size != expected["size"]:
        return f"{size} bytes, but its ready marker says {expected['size']}"
    if "sha256" in expected and sha256 is not None and sha256 != expected["sha256"]:
        return "its sha256 differs from its ready marker's"
    return None


def _size_and_sha256(path: Any, need_sha: bool) -> tuple[int, str | None]:
    """A file's size, and its sha256 when ``need_sha`` - read in blocks, never whole."""
    if not need_sha:
        try:
            return int(path.stat().st_size), None
        except (AttributeError, TypeError, ValueError, OSError):
            pass
    sha, n = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            n += len(chunk)
    return n, sha.hexdigest()


def _parts(data: Any) -> list[Any]:
    """The files of a landing path: itself, or (a glob pattern: a date in several files) its matches."""
    if not set("*?[") & set(data.name):
        return [data] if data.is_file() else []
    parent = data.parent
    return sorted((p for p in parent.glob(data.name) if p.is_file()), key=lambda p: p.name) if parent.is_dir() else []


def file_incomplete(data: Any, marker: Any | None) -> str | None:
    """Why the landing file ``data`` (a glob pattern: its parts) is not complete yet (None: it is):
    ``"missing"`` when it does not exist; with a ``marker`` (a path), the marker is missing or
    unreadable, or the files do not match the size/sha256 it carries. Paths are Paths or
    object-storage paths; used by the landing sensor and its trigger (ingest checks the bytes it
    reads again, as it reads them)."""
    parts = _parts(data)
    if not parts:
        return "missing"
    if marker is None:
        return None
    if not marker.is_file():
        return f"no ready marker {marker.name} yet"
    try:
        vouched = parse_marker(marker.read_bytes())
    except ValueError as exc:
        return f"its ready marker {marker.name} is unreadable: {exc}"
    if (why := _marker_files_mismatch(vouched, [p.name for p in parts])) is not None:
        return why
    for p in parts:
        expected = _vouched_for(vouched, p.name)
        if expected:
            size, sha = _size_and_sha256(p, "sha256" in expected)
            if (why := marker_mismatch(size, sha, expected)) is not None:
                return why if len(parts) == 1 else f"{p.name}: {why}"
    return None


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


def is_glob(spec: PipelineSpec) -> bool:
    """Whether a date may arrive as several files (``source.pattern`` has ``*``, ``?`` or ``[...]``)."""
    return isinstance(spec.source, FilesSource) and bool(_GLOB & set(spec.source.pattern))


def source_files(spec: PipelineSpec, partition_date: dt.date, project_root: Any) -> list[tuple[str, Any]]:
    """The landing files of a date, (path relative to the landing root, path), in name order: the one file
    of the pattern, or every file its glob matches (a date delivered in several parts)."""
    path = source_path(spec, partition_date, project_root)
    rel = PurePosixPath(source_relpath(spec, partition_date))
    if not is_glob(spec):
        return [(str(rel), path)] if path.is_file() else []
    parent = path.parent
    if not parent.is_dir():
        return []
    found = sorted((p for p in parent.glob(rel.name) if p.is_file()), key=lambda p: p.name)
    return [(str(rel.parent / p.name), p) for p in found]


def missing_landing_files(spec: PipelineSpec, dates: list[dt.date], project_root: Any
                          ) -> list[tuple[dt.date, Any]]:
    """The (date, expected path) of every date whose landing file is not there (files sources only);
    with a glob pattern, a date is there when at least one file matches."""
    if not isinstance(spec.source, FilesSource):
        return []
    return [(d, source_path(spec, d, project_root)) for d in dates if not source_files(spec, d, project_root)]


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


#: bytes of CSV per record batch (pyarrow's block size), rows per Parquet record batch: what bounds an
#: ingest's memory, whatever the size of the file. pyarrow's streaming CSV reader reads blocks ahead of
#: its consumer in the background, more of them the longer the file: with 16 MB blocks the read alone
#: peaked at 287 MB for 1M rows and 491 MB for 5M; with 1 MB blocks at 135 / 140 MB, and no slower
#: (docs/BENCHMARKS.md, "Reading the scale numbers")
BATCH_BYTES = 1 << 20
BATCH_ROWS = 100_000
_GLOB = set("*?[")


def _utf8_error(path: Any) -> SourceFormatError | None:
    """Where a file stops being UTF-8, None when it is UTF-8 (streamed: on the error path only)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                return SourceFormatError(f"{path}: not valid UTF-8 at line {line} (byte {offset + exc.start}); fix "
                                         "the file's encoding and re-run this date")
            line += chunk.count(b"\n")
            offset += len(chunk)
    return None


class _Hashing:
    """A read-only stream that hashes what is read through it and remembers the last byte."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.last, self.closed, self.n = f, hashlib.sha256(), b"", False, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        if b:
            self.sha.update(b)
            self.last = b[-1:]
            self.n += len(b)
        return b

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _csv_batches(path: Any, batch_bytes: int) -> Any:
    """(header, iterator of record batches of text columns ``c0..cn``, hashing stream) of a CSV file,
    read in blocks of ``batch_bytes``: the whole file is never in memory. Empty values are nulls."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    f = path.open("rb")
    stream = _Hashing(f)
    first = stream.read(1 << 16)
    if not first.strip():
        rest = stream.read(1 << 16)
        if not rest.strip() and not stream.read(1):
            f.close()
            return [], iter(()), stream
        first += rest
    while b"\n" not in first and (more := stream.read(1 << 16)):
        first += more
    head, _, tail = first.partition(b"\n")
    try:
        header_line = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        f.close()
        raise _utf8_error(path) or SourceFormatError(f"{path}: the header is not valid UTF-8") from None
    header = [h.strip() for h in next(csv.reader([header_line.rstrip("\r")]), [])]
    names = [f"c{i}" for i in range(len(header))]
    bad: list[Any] = []

    def invalid(row: Any) -> str:  # pyarrow stops at the first bad row; its text may not even be UTF-8
        bad.append(row)
        return "error"

    class _Rest:  # the bytes after the header line, then the rest of the stream
        def __init__(self) -> None:
            self.buf, self.closed = tail, False

        def read(self, n: int = -1) -> bytes:
            if self.buf:
                out, self.buf = (self.buf, b"") if n < 0 or n >= len(self.buf) else (self.buf[:n], self.buf[n:])
                return out
            return stream.read(n)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def close(self) -> None:
            self.closed = True

    try:
        reader = pacsv.open_csv(
            pa.PythonFile(_Rest(), mode="r"),
            read_options=pacsv.ReadOptions(column_names=names, block_size=batch_bytes, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), null_values=[""],
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        f.close()
        if "Empty CSV file" in str(exc):
            return header, iter(()), stream
        raise _csv_error(path, exc, bad, len(header)) from None

    def batches() -> Any:
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    raise _csv_error(path, exc, bad, len(header)) from None
                yield batch
        finally:
            f.close()

    return header, batches(), stream


def _csv_error(path: Any, exc: Exception, bad: list[Any], width: int) -> SourceFormatError:
    """The message of a CSV that pyarrow refused: not UTF-8 first (as a whole-file decode said), then a
    row with the wrong number of fields, then pyarrow's own words."""
    if (enc := _utf8_error(path)) is not None:
        return enc
    if bad:
        row = bad[0]
        line = row.number + 1 if row.number is not None else "?"
        return SourceFormatError(
            f"{path}: line {line} has {row.actual_columns} fields but the header has {width} "
            "(truncated or malformed file); fix or re-deliver the file and re-run this date")
    return SourceFormatError(f"{path}: {exc}; fix the file and re-run this date")


def _text(col: Any) -> Any:
    """A Parquet column as the text ingest keeps (floats as Python writes them, booleans True/False)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if pa.types.is_boolean(col.type):
        return pc.if_else(col, "True", "False")
    if pa.types.is_integer(col.type) or pa.types.is_date(col.type):
        return col.cast(pa.string())
    if pa.types.is_floating(col.type):
        return pa.array([None if v is None else repr(float(v)) for v in col.to_pylist()], pa.string())
    return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())


def _parquet_batches(path: Any, batch_rows: int) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = path.open("rb")
    try:
        pf = pq.ParquetFile(f)
        header = list(pf.schema_arrow.names)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        f.close()
        raise SourceFormatError(f"{path}: not a readable Parquet file ({exc}); re-deliver it") from None

    def batches() -> Any:
        try:
            it = pf.iter_batches(batch_size=batch_rows)
            while True:
                try:
                    b = next(it)
                except StopIteration:
                    return
                except Exception as exc:  # noqa: BLE001
                    raise SourceFormatError(f"{path}: not a readable Parquet file ({exc}); re-deliver it") from None
                yield pa.RecordBatch.from_arrays([_text(c) for c in b.columns],
                                                 names=[f"c{i}" for i in range(len(header))])
        finally:
            f.close()

    return header, batches()


def read_rows(path: Any, fmt: str) -> tuple[list[str], list[list[str | None]]]:
    """The header and every row of one file as text (None: empty), read by the same readers ingest
    streams with - for a small file (the scaffold's sample); ingest itself never holds a file."""
    if fmt == "parquet":
        header, batches = _parquet_batches(path, BATCH_ROWS)
    else:
        header, batches, _ = _csv_batches(path, BATCH_BYTES)
    rows: list[list[str | None]] = []
    for b in batches:
        rows.extend(list(r) for r in zip(*(c.to_pylist() for c in b.columns), strict=True))
    return header, rows


def _copy_batch(cur: Any, table: sql.Composable, columns: list[str], batch: Any) -> None:
    """COPY one Arrow record batch (text columns) into ``table``, inside the caller's transaction:
    the CSV is written by pyarrow (C++), never row by row in Python. Nulls are unquoted empty fields."""
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buf.seek(0)
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
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


def _ingest_file(wh: Warehouse, spec: PipelineSpec, d: dt.date, run_id: str, project_root: Any, *,
                 batch_bytes: int = BATCH_BYTES, batch_rows: int = BATCH_ROWS) -> IngestResult:
    import pyarrow as pa

    files = source_files(spec, d, project_root)
    if not files:
        raise SourceMissingError(
            f"no source file for {spec.name} on {d}: expected {source_path(spec, d, project_root)}. Either the file "
            f"has not landed yet (re-run this date when it has) or the date is wrong (trigger with a 'date' param)")
    marker_rel = marker_relpath(spec, d)
    vouched: dict[str, Any] = {}
    if marker_rel is not None:  # the marker first: a file it vouches for is complete, whatever comes after
        marker = under_root(project_root, marker_rel)
        where = source_path(spec, d, project_root)
        if not marker.is_file():
            raise LandingIncompleteError(
                f"{where} has no ready marker ({marker}) yet: the upstream system has not finished writing it "
                "(source.ready_marker); not ingested, retried")
        try:
            vouched = parse_marker(marker.read_bytes())
        except ValueError as exc:
            raise LandingIncompleteError(f"the ready marker {marker} of {where} is unreadable ({exc}); not ingested, "
                                         "retried (re-deliver the marker)") from None
        if (why := _marker_files_mismatch(vouched, [p.name for _, p in files])) is not None:
            raise LandingIncompleteError(f"{where}: {why}; not ingested, retried")
    expected = expected_columns(spec)
    sources = spec.source_columns()
    used = {sources[c] for c in expected}
    optional = optional_columns(spec, d)
    rel = source_relpath(spec, d)
    rs, rt = spec.table("raw")
    table = ident(rs, rt)
    out_cols = ["_partition_date", "_row_number", "_run_id", "_source", *expected, "_extra"]
    rows, digests = 0, []
    first: tuple[str, set[str]] | None = None
    missing: list[str] = []
    extra: list[str] = []
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "ingest", spec.name, d.isoformat())
        cur.execute(sql.SQL("DELETE FROM {} WHERE _partition_date = %s").format(table), (d,))
        for file_rel, path in files:
            stream = None
            if spec.source.format == "parquet":
                header, batches = _parquet_batches(path, batch_rows)
            else:
                header, batches, stream = _csv_batches(path, batch_bytes)
            if first is None:
                first = (file_rel, set(header))
                pos = {h: i for i, h in enumerate(header)}
                extra = [h for h in header if h not in used]
                missing = [c for c in expected if sources[c] not in pos and c not in optional]
            elif set(header) != first[1]:
                raise SourceFormatError(
                    f"{path}: the files of one date must have the same columns, but {file_rel} has "
                    f"{sorted(set(header) ^ first[1])} where {first[0]} differs; re-deliver them and re-run this date")
            pos = {h: i for i, h in enumerate(header)}
            # a file without a date column is the partition's (its name says so): every row gets that date
            fill = (d.strftime(spec.date_format) if spec.date_format else d.isoformat())
            extra_idx = {h: pos[h] for h in extra}
            file_rows = 0
            for batch in batches:
                m = batch.num_rows
                if not m:
                    continue
                cols = [pa.repeat(d.isoformat(), m), pa.array(range(rows + 1, rows + m + 1), pa.int64()),
                        pa.repeat(run_id, m), pa.repeat(file_rel, m)]
                for c in expected:
                    if sources[c] in pos:
                        cols.append(batch.column(pos[sources[c]]))
                    elif c == spec.date_column:
                        cols.append(pa.repeat(fill, m))
                    else:
                        cols.append(pa.nulls(m, pa.string()))
                if extra_idx:
                    values = {h: batch.column(i).to_pylist() for h, i in extra_idx.items()}
                    cols.append(pa.array([json.dumps({h: values[h][j] for h in extra_idx}) for j in range(m)],
                                         pa.string()))
                else:
                    cols.append(pa.nulls(m, pa.string()))
                _copy_batch(cur, table, out_cols, pa.RecordBatch.from_arrays(cols, names=out_cols))
                rows += m
                file_rows += m
            if stream is not None:
                if file_rows and stream.last not in (b"\n", b"\r"):
                    # a file cut in the middle of its last line usually still has the right field count;
                    # a well-formed CSV ends with a newline, so refuse the partial last line.
                    raise SourceFormatError(f"{path}: the last line ({file_rows + 1}) has no line end: the file looks "
                                            "truncated; re-deliver it and re-run this date")
                digests.append((stream.sha.hexdigest(), file_rel))
                size = stream.n
            else:
                size, sha = _size_and_sha256(path, True)
                digests.append((sha, file_rel))
            # the bytes read are the bytes the marker vouches for (or the transaction rolls back)
            if (vouched_file := _vouched_for(vouched, path.name)) and (
                    why := marker_mismatch(size, digests[-1][0], vouched_file)) is not None:
                raise LandingIncompleteError(f"{path} does not match its ready marker: {why} (still being written, "
                                             "or re-delivered without a new marker); not ingested, retried")
        # one file: its own sha256; several: the sha256 of their "sha256  name" lines (as sha256sum prints)
        sha = digests[0][0] if len(digests) == 1 else hashlib.sha256(
            "".join(f"{h}  {n}\n" for h, n in digests).encode()).hexdigest()
        res = IngestResult(d, rel, rows, missing, extra, sha)
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
                     project_root: Any, batch_bytes: int = BATCH_BYTES, batch_rows: int = BATCH_ROWS) -> IngestResult:
    """Replace ``partition_date``'s rows in the raw table with the source's, as received.
    ``project_root``: the landing root (a folder, or a pathlib-like object-storage path). Files are read
    and COPYed in record batches (``batch_bytes`` of CSV, ``batch_rows`` of Parquet): memory is bounded
    by the batch, not by the file."""
    if isinstance(spec.source, FilesSource):
        return _ingest_file(wh, spec, partition_date, run_id, _root(project_root), batch_bytes=batch_bytes,
                            batch_rows=batch_rows)
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
