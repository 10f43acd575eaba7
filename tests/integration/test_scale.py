"""A warehouse-sized day on small data (issue 22): a date in several files, read in record batches
smaller than the date; bad rows in several batches validated in the warehouse; the training sample in
the version's lineage reproduces the model. Batch sizes are tiny so that the data is small and cheap."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import yaml
from airtrain import simulate
from airtrain.data import ingest
from airtrain.spec import load_spec, parse_spec
from airtrain.steps.schema import apply_schema

from tests.integration.dagtest import fetch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
D = dt.date(2026, 2, 1)


def spec_with(**changes):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(data)


MULTI = spec_with(source={"pattern": "{date}-part-*.csv"})


@pytest.fixture
def wh(warehouse):
    apply_schema(warehouse, SPEC)
    return warehouse


def test_a_date_in_several_files_is_read_in_batches_in_name_order(wh, tmp_path):
    folder = tmp_path / "data/landing/churn"
    folder.mkdir(parents=True)
    feats = simulate.simulate_day(D, rows=300)[0]
    parts = [feats.iloc[0:120], feats.iloc[120:130], feats.iloc[130:300]]
    for i, part in zip((2, 10, 11), parts, strict=True):  # name order, not number order: 10 < 11 < 2
        part.to_csv(folder / f"{D}-part-{i}.csv", index=False)
    feats.iloc[:5].to_csv(folder / f"{D + dt.timedelta(days=1)}-part-1.csv", index=False)  # another date
    assert ingest.missing_landing_files(MULTI, [D, D + dt.timedelta(days=2)], tmp_path) == [
        (D + dt.timedelta(days=2), folder / f"{D + dt.timedelta(days=2)}-part-*.csv")]
    res = ingest.ingest_partition(wh, MULTI, D, "r1", project_root=tmp_path, batch_bytes=1024)
    assert res.rows == 300 and res.columns_missing == [] and res.columns_extra == []
    names = [f"{D}-part-{i}.csv" for i in (10, 11, 2)]
    lines = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  data/landing/churn/{n}\n"
                    for n in names)
    assert res.source == f"data/landing/churn/{D}-part-*.csv"
    assert res.source_sha256 == hashlib.sha256(lines.encode()).hexdigest()
    rows = fetch(wh, "SELECT _row_number, _source, customer_id FROM raw.churn_batches ORDER BY 1")
    expected = [*parts[1].customer_id, *parts[2].customer_id, *parts[0].customer_id]
    assert [r[0] for r in rows] == list(range(1, 301))  # one numbering across the files
    assert [r[2] for r in rows] == [str(k) for k in expected]
    assert [r[1] for r in rows[:10]] == [f"data/landing/churn/{names[0]}"] * 10
    assert rows[-1][1] == f"data/landing/churn/{names[2]}"
    # a part with other columns is refused, and the date keeps what it had
    parts[2].drop(columns=["region"]).to_csv(folder / f"{D}-part-11.csv", index=False)
    with pytest.raises(ingest.SourceFormatError, match="the same columns"):
        ingest.ingest_partition(wh, MULTI, D, "r2", project_root=tmp_path, batch_bytes=1024)
    assert fetch(wh, "SELECT _run_id, count(*) FROM raw.churn_batches GROUP BY 1") == [("r1", 300)]
