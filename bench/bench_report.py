"""Markdown for the write-back benchmark (bench/run.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def _rate(n: int, s: float | None) -> str:
    return f"{n / s:,.0f}" if s else "—"


def render(results: list[dict], machine: str) -> str:
    lines = [
        "## Batch predictions: write-back and scoring",
        "",
        f"Measured {dt.date.today()} on {machine}; PostgreSQL started by the benchmark "
        "(default durability settings). Rows/s, and ratios to baselines measured in the same run.",
        "",
        "| rows | server-side INSERT…SELECT (rows/s) | write-back: ADBC COPY + PK + swap (rows/s) | "
        "× server-side | pandas.to_sql (rows/s) | × to_sql | score end-to-end (rows/s) | peak RSS scoring (MB) | "
        "peak RSS frame + to_sql (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n = r["rows"]
        server, wb, to_sql = r["server_insert_select_s"], r["writeback_s"], r.get("to_sql_s")
        lines.append(
            f"| {n:,} | {_rate(n, server)} | {_rate(n, wb)} | {server / wb:.2f}× | {_rate(n, to_sql)} | "
            f"{(to_sql / wb if to_sql else float('nan')):.1f}× | {_rate(n, r['score_e2e_s'])} | {r['score_rss_mb']:,.0f} | "
            f"{r['writeback_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        "* **server-side**: `INSERT INTO t SELECT … FROM generate_series(…)` into a table with the same "
        "columns and primary key — no client involved, the upper bound for a writer.",
        "* **write-back**: the frame of predictions → Arrow record batches → ADBC binary COPY into an "
        "unattached stage table → primary key → `ATTACH PARTITION` in one transaction (what "
        "`airtrain.serving.publish.publish` does).",
        "* **to_sql**: `DataFrame.to_sql(chunksize=50000)` (SQLAlchemy 2 + psycopg2, batched executemany) of the same frame.",
        "* **score end-to-end**: features streamed out of `features.churn` with ADBC, scored by the "
        "champion (HistGradientBoosting pipeline) batch by batch, streamed back and swapped in.",
        "* **peak RSS scoring** is the peak resident memory of a fresh process that only scores the date "
        "(streaming, bounded by `scoring.batch_rows`); **frame + to_sql** is the process that holds the whole "
        "frame for the baselines, for contrast.",
    ]
    return "\n".join(lines)


def replace_section(path: Path, name: str, section: str) -> None:
    """Write ``section`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``
    (appended when the markers are not there yet); the rest of the file is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")
