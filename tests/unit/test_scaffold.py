"""`make new-pipeline`: a starting spec profiled from a sample file."""

from __future__ import annotations

from pathlib import Path

import pytest
from airtrain.scaffold import build_spec, main, read_sample, snake_case
from airtrain.spec import parse_spec


@pytest.mark.parametrize("header, name", [
    ("customerID", "customer_id"), ("MonthlyCharges", "monthly_charges"), ("Total Charges", "total_charges"),
    ("SeniorCitizen", "senior_citizen"), ("StreamingTV", "streaming_tv"), ("tenure", "tenure"),
    ("2nd line", "c_2nd_line"), ("order", "order_"), ("  Amount (EUR) ", "amount_eur"), ("é", "col"),
])
def test_snake_case(header, name):
    assert snake_case(header) == name


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "sample.csv"
    f.write_text(text)
    return f


def test_a_regression_sample_with_a_date_column(tmp_path):
    rows = ["OrderId,Date,Region,Units,Price"]
    for d in ("2026-01-01", "2026-01-02"):
        rows += [f"{d[-1]}{i},{d},{'north' if i % 2 else 'south'},{i % 7},{10 + i * 0.5}" for i in range(50)]
    cols = read_sample(write(tmp_path, "\n".join(rows) + "\n"))
    text, data = build_spec(cols, name="sales", target="Price", key=None, date_column=None, positive=None,
                            sample=tmp_path / "sample.csv")
    spec = parse_spec(data)
    assert spec.target.task == "regression" and spec.evaluation.primary_metric == "rmse"
    assert (spec.entity_key, spec.entity_key_source) == ("order_id", "OrderId")
    assert (spec.date_column, spec.date_column_source) == ("date", "Date")
    assert [f.name for f in spec.features] == ["region", "units"]
    assert spec.validation.row_count.max == 150  # 50 rows a day in the sample, x3
    assert "# seen 0..6" in text


@pytest.mark.parametrize("text, args, message", [
    pytest.param("id,x,y\n1,a,Yes\n2,b,No\n", ["--target", "z"], "no column 'z'", id="unknown-target"),
    pytest.param("k,x,y\n1,a,Yes\n1,b,No\n", ["--target", "y"], "name it with --key", id="no-key-column"),
    pytest.param("id,x,y\n1,a,red\n2,b,green\n3,c,blue\n", ["--target", "y"], "two values", id="three-labels"),
])
def test_refusals_say_what_to_do(tmp_path, capsys, text, args, message):
    with pytest.raises(SystemExit, match=message):
        main([str(write(tmp_path, text)), "--name", "x", "--out", str(tmp_path / "x.yaml"), *args])
