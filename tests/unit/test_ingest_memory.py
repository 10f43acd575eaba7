"""Ingest's memory is bounded by its batch size, not by the file (issue 22): the streaming CSV reader
ingest uses (``ingest._csv_batches`` with ``ingest.BATCH_BYTES``) is run over a file and over one three
times as long, each in a fresh process, and the peak RSS the read adds must not grow with the file.

With pyarrow's read-ahead and the former 16 MB blocks the read added 173 MB for the short file and
267 MB for the long one (measured): this test fails on that. With 1 MB blocks: 54 and 56 MB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

READ = """
import json, resource, sys
from pathlib import Path
from airtrain.data import ingest
import pyarrow, pyarrow.csv  # imported before the baseline: only the read is measured
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
header, batches, _ = ingest._csv_batches(Path(sys.argv[1]), ingest.BATCH_BYTES)
rows = sum(b.num_rows for b in batches)
print(json.dumps({"rows": rows, "added_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base}))
"""


def _write(path: Path, megabytes: int) -> int:
    head = b"customer_id,as_of_date,tenure_months,monthly_charges,total_charges,contract_type,region\n"
    block = b"".join(b"%d,2026-02-01,%d,%d.25,%d.5,one_year,north\n" % (i, i % 120, i % 500, i % 9000)
                     for i in range(20_000))
    rows = 0
    with path.open("wb") as f:
        f.write(head)
        while f.tell() < megabytes * 1_000_000:
            f.write(block)
            rows += 20_000
    return rows


def _read(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "include"), "PATH": "/usr/bin:/bin"}, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reading_a_file_three_times_as_long_does_not_need_more_memory(tmp_path):
    short, long = tmp_path / "short.csv", tmp_path / "long.csv"
    short_rows, long_rows = _write(short, 40), _write(long, 120)
    a, b = _read(short), _read(long)
    assert (a["rows"], b["rows"]) == (short_rows, long_rows)  # every row was read
    added_short, added_long = a["added_kb"] / 1024, b["added_kb"] / 1024
    assert added_long <= 1.2 * added_short + 8, (added_short, added_long)  # flat in the file's length
    assert added_long < 128, added_long  # a few blocks, not the 120 MB file
